"""The three bulk caption edits (tag add/remove/replace, alias apply, dict remove
--from-datasets) stop the same way when cancelled: the report says ``cancelled``, nothing
is raised, the batches written so far stay, and the CLI says so and exits 130."""

from __future__ import annotations

import contextlib
import json

import pytest
from dict_helpers import make_dataset
from pg_support import both_backends_db_path  # noqa: F401  (each database test on SQLite and PostgreSQL)

from sushitui.cli import main
from sushitui.dataset.bulk_edit import apply_aliases, remove_tag_everywhere
from sushitui.progress import CancelToken
from sushitui.tags import aliases
from sushitui.tags import dictionary as d


def _cancelled() -> CancelToken:
    token = CancelToken()
    token.cancel()
    return token


@pytest.fixture
def tiny_taglist(tmp_path, monkeypatch):
    taglist = tmp_path / "taglist"
    taglist.mkdir()
    (taglist / "General.json").write_text('{"long_hair": 4000, "short_hair": 2000}')
    monkeypatch.setattr("sushitui.config.taglist_dir", lambda: taglist)
    return taglist


@contextlib.contextmanager
def _ctrl_c_at_once():
    """``cancel_on_sigint`` as if Ctrl-C came before the first batch."""
    yield _cancelled()


def test_dict_remove_everywhere_cancelled_is_a_report_not_an_exception(db, tmp_path, tiny_taglist):
    d.ensure_loaded()
    make_dataset(tmp_path / "a", "a", ["1girl, long_hair", "long_hair, solo"])
    report = remove_tag_everywhere("long_hair", cancel=_cancelled())
    assert report.cancelled and report.items_changed == 0 and not report.removed
    # nothing written, and the entry stays so that running it again finishes the job
    assert (tmp_path / "a" / "img_000.txt").read_text() == "1girl, long_hair"
    assert d.get_tag("long_hair") is not None
    done = remove_tag_everywhere("long_hair")
    assert not done.cancelled and done.removed and done.items_changed == 2
    assert (tmp_path / "a" / "img_001.txt").read_text() == "solo"


def test_dict_remove_everywhere_of_an_unknown_tag_is_a_dictionary_error(db, tiny_taglist):
    with pytest.raises(d.DictionaryError, match="not in the dictionary"):
        remove_tag_everywhere("no_such_tag")


def test_cli_dict_remove_from_datasets_cancelled_exits_130_and_says_what_stays(
    db, db_path, tmp_path, tiny_taglist, monkeypatch, capsys
):
    d.ensure_loaded()
    make_dataset(tmp_path / "a", "a", ["long_hair, solo"])
    with monkeypatch.context() as m:
        m.setattr("sushitui.cli.dict_cmd.cancel_on_sigint", _ctrl_c_at_once)
        code = main(["--db", str(db_path), "dict", "remove", "long_hair", "--from-datasets", "--yes"])
    cap = capsys.readouterr()
    assert code == 130, cap.err
    assert "Traceback" not in cap.err
    assert "cancelled" in cap.out and "still in the dictionary" in cap.out and "run the command again" in cap.out
    assert (tmp_path / "a" / "img_000.txt").read_text() == "long_hair, solo"
    # no Ctrl-C this time: it finishes
    code = main(["--db", str(db_path), "dict", "remove", "long_hair", "--from-datasets", "--yes", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["removed"] and out["items_changed"] == 1 and out["cancelled"] is False


def test_alias_apply_cancelled_keeps_files_and_cli_exits_130(db, db_path, tmp_path, monkeypatch, capsys):
    ds = make_dataset(tmp_path / "a", "a", ["girl, solo"])
    aliases.add_alias("girl", "1girl")
    report = apply_aliases(ds, cancel=_cancelled())
    assert report.cancelled and report.items_changed == 0
    assert (tmp_path / "a" / "img_000.txt").read_text() == "girl, solo"
    monkeypatch.setattr("sushitui.cli.tags_cmd.cancel_on_sigint", _ctrl_c_at_once)
    code = main(["--db", str(db_path), "alias", "apply", "a"])
    cap = capsys.readouterr()
    assert code == 130 and "cancelled" in cap.out, (cap.out, cap.err)
    assert (tmp_path / "a" / "img_000.txt").read_text() == "girl, solo"
