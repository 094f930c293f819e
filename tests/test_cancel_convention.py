"""One cancellation convention (issue 15 §3): a cancelled long operation keeps what it
finished and returns its report with ``cancelled = True``; it never raises. These are the
operations that used to raise ``Cancelled`` instead."""

from __future__ import annotations

from training_support import make_dataset

from sushitui.progress import CancelToken


def _cancelled() -> CancelToken:
    token = CancelToken()
    token.cancel()
    return token


def test_a_cancelled_sample_file_returns_a_cancelled_report_and_writes_no_file(db, db_path, tmp_path):
    from sushitui.training import create_run, open_run
    from sushitui.training.sample_file import write_sample_file

    ds = make_dataset(tmp_path / "data", 10)
    create_run("r", ds.name)
    out = tmp_path / "plan.txt"
    with open_run("r", db_path=db_path) as run:
        report = write_sample_file(run, out, epochs=2, cancel=_cancelled())
    assert report.cancelled and report.path == ""
    assert not out.exists() and not list(tmp_path.glob(".plan.txt.*")), "a partial file was left"


def test_a_cancelled_dictionary_load_returns_a_cancelled_report_and_loads_nothing(db, tmp_path):
    from sushitui.tags import dictionary

    folder = tmp_path / "taglist"
    folder.mkdir()
    (folder / "General.json").write_text('{"long_hair": 100, "smile": 50}')
    report = dictionary.load_dir(folder, cancel=_cancelled())
    assert report.cancelled and report.imported == 0
    assert dictionary.get_tag("long_hair") is None


def test_a_cancelled_translation_import_returns_a_cancelled_report_and_writes_nothing(db, tmp_path):
    from sushitui.tags import translations

    f = tmp_path / "ja.csv"
    f.write_text("cat_ears,猫耳\n", encoding="utf-8")
    report = translations.import_file(f, "ja", cancel=_cancelled())
    assert report.cancelled
    assert db.execute_sql("SELECT COUNT(*) FROM tag_translation").fetchone()[0] == 0


def test_the_cli_exits_130_for_a_cancelled_sample(db, db_path, tmp_path, monkeypatch, capsys):
    from sushitui.cli import main as cli_main
    from sushitui.training import create_run, sample_file

    ds = make_dataset(tmp_path / "data", 10)
    create_run("r", ds.name)
    real = sample_file.write_sample_file
    monkeypatch.setattr(sample_file, "write_sample_file", lambda *a, **kw: real(*a, **{**kw, "cancel": _cancelled()}))
    code = cli_main(["--db", str(db_path), "run", "sample", "r", "--epochs", "2", "--out", str(tmp_path / "p.txt")])
    assert code == 130 and "cancelled" in capsys.readouterr().err
