"""Caption-table write-back (issue 17) tried as a user who keeps datasets on shared disks
would (issue 14's integrity rules): links, hard links, FIFOs, read-only folders, huge
tables, another program rewriting the table, two sushitui processes at once, kill -9 in
the middle of a rewrite, and tables in other encodings. Every edit lands or is reported
naming the table (and its line); no byte of anyone else's is lost; nothing hangs."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from sushitui.dataset import bulk_edit, tables
from sushitui.dataset.caption_files import CaptionConflict, CaptionFileError, is_temp_file
from sushitui.dataset.captions import set_tags
from sushitui.dataset.registry import DatasetSettings, add_dataset, reindex
from sushitui.store import Caption, Item

CLI = [sys.executable, "-m", "sushitui"]
CSV = "file_name,text\na.png,cat\nb.png,dog\nc.png,bird\n"


def img(path: Path, color=(1, 2, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def dataset(root: Path, table: str = "metadata.csv", text: str | bytes = CSV, names="abc"):
    for n in names:
        img(root / f"{n}.png")
    path = root / table
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, "utf-8")
    ds, _ = add_dataset(DatasetSettings(root.name, str(root)))
    return ds, path


def item(ds, image: str) -> Item:
    return Item.get((Item.image_path == image) & (Item.dataset == ds.id))


def main_caption(ds, image: str) -> Caption:
    return Caption.get((Caption.item == item(ds, image).id) & (Caption.subtype == "main"))


def edit_in_thread(fn, timeout: float = 10.0):
    """(finished, exception) of ``fn`` run in a thread: a hang shows as not finished."""
    out: list = []

    def run():
        try:
            fn()
            out.append(None)
        except Exception as exc:  # noqa: BLE001 (handed to the test)
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    return bool(out), (out[0] if out else None)


# --- links, odd files, permissions, size -------------------------------------------------------


def test_a_table_that_links_outside_the_dataset_is_never_written(db, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "metadata.csv").write_text(CSV, "utf-8")
    root = tmp_path / "ds"
    root.mkdir()
    os.symlink(outside / "metadata.csv", root / "metadata.csv")
    ds, _ = dataset(root, "real.csv", "x", names="abc")  # the link is the table found by name
    assert main_caption(ds, "a.png").source == "table"
    with pytest.raises(CaptionFileError) as info:
        set_tags(item(ds, "a.png"), ["cat", "mine"])
    assert "metadata.csv" in str(info.value) and "outside the dataset" in str(info.value)
    assert (outside / "metadata.csv").read_text("utf-8") == CSV
    assert (root / "metadata.csv").is_symlink()


def test_a_table_in_a_folder_linked_from_outside_is_never_written(db, tmp_path):
    outside = tmp_path / "elsewhere"
    img(outside / "a.png")
    (outside / "metadata.csv").write_text("file_name,text\na.png,cat\n", "utf-8")
    root = tmp_path / "ds"
    img(root / "top.png")
    os.symlink(outside, root / "sub")
    ds, _ = add_dataset(DatasetSettings("d", str(root)))
    assert main_caption(ds, "sub/a.png").source == "table"
    report = bulk_edit.bulk_add("d", [item(ds, "sub/a.png").id], "mine")
    assert [p.path for p in report.problems] == ["sub/metadata.csv"]
    assert "outside the dataset" in report.problems[0].reason
    assert (outside / "metadata.csv").read_text("utf-8") == "file_name,text\na.png,cat\n"


def test_a_table_link_inside_the_dataset_is_written_through_and_stays_a_link(db, tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "shared").mkdir()
    (root / "shared" / "all.csv").write_text(CSV, "utf-8")
    os.symlink("shared/all.csv", root / "metadata.csv")
    ds, _ = dataset(root, "other.txt", "x")
    set_tags(item(ds, "b.png"), ["dog", "mine"])
    assert (root / "metadata.csv").is_symlink()
    assert (root / "shared" / "all.csv").read_text("utf-8") == CSV.replace("b.png,dog", 'b.png,"dog, mine"')


def test_a_hard_linked_table_is_refused_naming_the_file(db, tmp_path):
    """Replacing a hard-linked table would leave its other names with the old text and
    quietly split what the user made one file (a table shared by two dataset folders)."""
    outside = tmp_path / "backup.csv"
    outside.write_text(CSV, "utf-8")
    root = tmp_path / "ds"
    root.mkdir()
    os.link(outside, root / "metadata.csv")
    ds, _ = dataset(root, "other.txt", "x")
    with pytest.raises(CaptionFileError) as info:
        set_tags(item(ds, "a.png"), ["cat", "mine"])
    msg = str(info.value)
    assert "metadata.csv" in msg and "hard link" in msg
    assert outside.read_text("utf-8") == CSV and (root / "metadata.csv").read_text("utf-8") == CSV
    assert os.stat(outside).st_nlink == 2  # still one file


def test_a_fifo_put_in_the_tables_place_is_refused_without_hanging(db, tmp_path):
    root = tmp_path / "ds"
    ds, table = dataset(root)
    table.unlink()
    os.mkfifo(table)
    finished, exc = edit_in_thread(lambda: set_tags(item(ds, "a.png"), ["cat", "mine"]))
    assert finished, "the edit hangs on a FIFO named like the table"
    assert isinstance(exc, CaptionFileError) and "metadata.csv" in str(exc) and "not a regular file" in str(exc)
    # and the dataset's write lock is free again for the next edit
    finished, exc = edit_in_thread(lambda: bulk_edit.bulk_add(root.name, None, "x"))
    assert finished and exc is None


def test_a_table_over_the_size_limit_is_refused_naming_the_file(db, tmp_path, monkeypatch):
    root = tmp_path / "ds"
    ds, table = dataset(root)
    monkeypatch.setattr(tables, "MAX_TABLE_BYTES", 20)
    with pytest.raises(CaptionFileError) as info:
        set_tags(item(ds, "a.png"), ["cat", "mine"])
    assert "metadata.csv" in str(info.value) and "larger than" in str(info.value)
    assert table.read_text("utf-8") == CSV


def test_a_read_only_table_folder_is_a_per_item_problem_and_the_bulk_edit_goes_on(db, tmp_path, monkeypatch):
    import tempfile

    root = tmp_path / "ds"
    img(root / "plain" / "p.png")
    (root / "plain" / "p.txt").write_text("plain", "utf-8")
    ds, table = dataset(root / "t", names="ab")
    ds, _ = add_dataset(DatasetSettings("whole", str(root)))
    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **kw):  # tests run as root: permission bits would not bind
        if dir is not None and str(dir).startswith(str(root / "t")):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real(*a, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    report = bulk_edit.bulk_add("whole", None, "mine")
    assert sorted((p.path, "not writable" in p.reason) for p in report.problems) == [
        ("t/metadata.csv", True),
        ("t/metadata.csv", True),
    ]
    assert (root / "plain" / "p.txt").read_text("utf-8") == "plain, mine"  # the rest went on
    assert table.read_text("utf-8") == CSV


def test_a_read_only_table_is_refused(db, tmp_path):
    root = tmp_path / "ds"
    ds, table = dataset(root)
    table.chmod(0o444)
    with pytest.raises(CaptionFileError) as info:
        set_tags(item(ds, "a.png"), ["cat", "mine"])
    assert "metadata.csv" in str(info.value) and "read-only" in str(info.value)
    assert table.read_text("utf-8") == CSV


# --- another program rewrites the table -------------------------------------------------------

THEIRS = {
    "another row changed": CSV.replace("c.png,bird", "c.png,bird by hand"),
    "a row added": CSV + "d.png,new row\n",
    "rows reordered": "file_name,text\nc.png,bird\nb.png,dog\na.png,cat\n",
    "a column added": "file_name,text,score\na.png,cat,1\nb.png,dog,2\nc.png,bird,3\n",
    "CRLF line ends": CSV.replace("\n", "\r\n"),
}


@pytest.mark.parametrize("change", sorted(THEIRS))
def test_another_programs_rewrite_since_the_scan_is_kept_and_the_edit_lands(db, tmp_path, change):
    root = tmp_path / "ds"
    ds, table = dataset(root)
    theirs = THEIRS[change]
    table.write_bytes(theirs.encode("utf-8"))
    report = bulk_edit.bulk_add(ds.name, [item(ds, "a.png").id], "mine")
    assert report.problems == []
    assert table.read_bytes() == theirs.replace("a.png,cat", 'a.png,"cat, mine"').encode("utf-8")


def test_another_program_converting_the_table_to_utf16_refuses_the_edit(db, tmp_path):
    root = tmp_path / "ds"
    ds, table = dataset(root)
    table.write_bytes(CSV.encode("utf-16"))
    report = bulk_edit.bulk_add(ds.name, [item(ds, "a.png").id], "mine")
    assert [p.path for p in report.problems] == ["metadata.csv"]
    assert "utf-16" in report.problems[0].reason and "UTF-8" in report.problems[0].reason
    assert table.read_bytes() == CSV.encode("utf-16")


def test_a_cell_conflict_names_the_table_and_the_line(db, tmp_path):
    root = tmp_path / "ds"
    ds, table = dataset(root)
    table.write_text("file_name,text\nc.png,bird\na.png,cat by hand\nb.png,dog\n", "utf-8")
    with pytest.raises(CaptionConflict) as info:
        set_tags(item(ds, "a.png"), ["cat", "mine"])
    assert "metadata.csv" in str(info.value) and "line 3" in str(info.value)
    assert info.value.disk_text == "cat by hand"


def test_a_change_made_during_the_rewrite_is_merged_not_lost_or_refused(db, tmp_path, monkeypatch):
    """Another program writes the table after sushitui read it for the rewrite but before
    the rename: its row is kept and sushitui's edit is redone on top, not refused."""
    import tempfile

    root = tmp_path / "ds"
    ds, table = dataset(root)
    real = tempfile.mkstemp
    calls: list[int] = []

    def mkstemp(*a, **kw):
        calls.append(1)
        if len(calls) == 1:
            table.write_text(CSV.replace("c.png,bird", "c.png,bird by hand"), "utf-8")
        return real(*a, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    report = bulk_edit.bulk_add(ds.name, [item(ds, "a.png").id], "mine")
    assert report.problems == []
    assert table.read_text("utf-8") == 'file_name,text\na.png,"cat, mine"\nb.png,dog\nc.png,bird by hand\n'
    assert [p.name for p in root.iterdir() if is_temp_file(p.name)] == []


# --- two sushitui processes; kill -9 ----------------------------------------------------------


@pytest.mark.slow
def test_two_cli_tag_adds_on_different_items_of_one_table_all_land(db_path, tmp_path):
    from sushitui.store import open_database

    root = tmp_path / "ds"
    n = 24
    lines = ["file_name,text,note"]
    for k in range(n):
        img(root / f"{k:03d}.png", (k, 0, 0))
        lines.append(f"{k:03d}.png,t{k},keep {k}")
    table = root / "metadata.csv"
    table.write_text("\n".join(lines) + "\n", "utf-8")
    database = open_database(db_path)
    try:
        ds, _ = add_dataset(DatasetSettings("d", str(root)))
        ids = {k: item(ds, f"{k:03d}.png").id for k in range(n)}
    finally:
        database.close()
    env = {**os.environ, "SUSHITUI_DB": str(db_path)}

    def side(parity: int) -> list[subprocess.CompletedProcess]:
        mine = [ids[k] for k in range(n) if k % 2 == parity]
        out = []
        for round_ in range(3):  # one item at a time, then the whole half at once
            for one in mine[round_::6]:
                out.append(
                    subprocess.run(
                        [*CLI, "tag", "add", "d", f"s{parity}r{round_}", "--items", str(one)],
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=120,
                    )
                )
        out.append(
            subprocess.run(
                [*CLI, "tag", "add", "d", f"all{parity}", "--items", ",".join(map(str, mine))],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
        )
        return out

    results: dict[int, list] = {}
    threads = [threading.Thread(target=lambda p=p: results.__setitem__(p, side(p))) for p in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for res in results[0] + results[1]:
        assert res.returncode == 0, res.stderr
    import csv

    got = list(csv.reader(table.read_text("utf-8").splitlines()))
    assert got[0] == ["file_name", "text", "note"]
    for k in range(n):
        parity = k % 2
        idx = [j for j in range(n) if j % 2 == parity].index(k)
        want = [f"t{k}"] + [f"s{parity}r{r}" for r in range(3) if idx % 6 == r] + [f"all{parity}"]
        assert (got[k + 1][0], got[k + 1][1].split(", "), got[k + 1][2]) == (f"{k:03d}.png", want, f"keep {k}")


KILL_WRITER = r"""
import sys
from sushitui.dataset.tables import CellEdit, write_table_cells
root, k = sys.argv[1], 0
print("ready", flush=True)
while True:
    old, new = ("a", "b") if k % 2 == 0 else ("b", "a")
    write_table_cells(root, "metadata.jsonl", [CellEdit(["img.png"], "text", old, new)])
    k += 1
"""


@pytest.mark.slow
def test_kill_9_during_table_rewrites_leaves_a_whole_table_and_no_table_like_temp_file(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "img.png")
    filler = "".join(f'{{"file_name": "row{k}.png", "text": "{"x" * 200}"}}\n' for k in range(20000))
    versions = {f'{{"file_name": "img.png", "text": "{v}"}}\n{filler}'.encode() for v in "ab"}
    table = root / "metadata.jsonl"
    table.write_text(f'{{"file_name": "img.png", "text": "a"}}\n{filler}', "utf-8")
    rng = random.Random(7)
    for _ in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_WRITER, str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert table.read_bytes() in versions, "a torn table"
    leftovers = [p.name for p in root.iterdir() if p.name not in ("img.png", "metadata.jsonl")]
    print("temporary files left by the kills:", len(leftovers))
    assert all(is_temp_file(name) for name in leftovers), leftovers
    ds, report = add_dataset(DatasetSettings("d", str(root)))
    assert main_caption(ds, "img.png").source_field == "metadata.jsonl: text"
    assert not [p for p in report.problems if ".sushitui-tmp-" in str(p)], report.problems


# --- encodings, JSONL bytes -------------------------------------------------------------------


def test_a_latin1_csv_reads_its_accents_and_an_edit_is_refused_not_corrupting_it(db, tmp_path):
    raw = "file_name,text\na.png,café noir\nb.png,crème brûlée\n".encode("latin-1")
    root = tmp_path / "ds"
    ds, table = dataset(root, text=raw, names="ab")
    assert main_caption(ds, "a.png").content == "café noir"
    assert main_caption(ds, "b.png").content == "crème brûlée"
    report = bulk_edit.bulk_add(ds.name, None, "mine")
    assert {p.path for p in report.problems} == {"metadata.csv"}
    assert "not UTF-8" in report.problems[0].reason and "Convert it to UTF-8" in report.problems[0].reason
    assert table.read_bytes() == raw


def test_a_utf16_csv_reads_and_an_edit_is_refused(db, tmp_path):
    raw = CSV.encode("utf-16")
    root = tmp_path / "ds"
    ds, table = dataset(root, text=raw)
    assert main_caption(ds, "b.png").content == "dog"
    with pytest.raises(CaptionFileError) as info:
        set_tags(item(ds, "b.png"), ["dog", "mine"])
    assert "metadata.csv" in str(info.value) and "utf-16" in str(info.value)
    assert table.read_bytes() == raw


def test_a_jsonl_edit_changes_only_the_cell_other_values_keep_their_bytes(db, tmp_path):
    lines = [
        '{"file_name": "a.png", "text": "caf\\u00e9, \\ud83d\\ude00", "n": 6.10, "x": 1e5, "extra": {"k": [1,2]}}',
        '{"file_name":"b.png","text":"ça, naïve","w":[1, 2],"f":1.50}',
        '{"file_name": "c.png", "text": "plain", "note": "日本"}',
    ]
    raw = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    root = tmp_path / "ds"
    ds, table = dataset(root, "metadata.jsonl", raw)
    assert main_caption(ds, "a.png").content == "café, \U0001f600"
    set_tags(item(ds, "a.png"), ["café", "\U0001f600", "thé"])
    set_tags(item(ds, "b.png"), ["ça", "naïve", "été"])
    set_tags(item(ds, "c.png"), ["plain", "🍣"])
    got = table.read_bytes().decode("utf-8").split("\r\n")
    assert got == [
        # escaped stays escaped, every other value as it was written (6.10, 1e5, [1,2])
        '{"file_name": "a.png", "text": "caf\\u00e9, \\ud83d\\ude00, th\\u00e9", "n": 6.10, "x": 1e5, '
        '"extra": {"k": [1,2]}}',
        '{"file_name":"b.png","text":"ça, naïve, été","w":[1, 2],"f":1.50}',
        '{"file_name": "c.png", "text": "plain, 🍣", "note": "日本"}',
        "",
    ]
    reindex(ds)
    assert main_caption(ds, "a.png").content == "café, \U0001f600, thé"
    assert main_caption(ds, "c.png").content == "plain, 🍣"


# --- a save in a big table does not parse every row; rows it skips are skipped exactly ----------


def test_one_save_in_a_big_jsonl_parses_only_rows_that_could_name_the_image(db, tmp_path, monkeypatch):
    rows = [f'{{"file_name": "r{k:05d}.png", "text": "t{k}"}}' for k in range(3000)]
    root = tmp_path / "ds"
    ds, table = dataset(root, "metadata.jsonl", "\n".join(['{"file_name": "a.png", "text": "cat"}', *rows]) + "\n", "a")
    parsed: list[str] = []
    real = tables.json.loads

    def counting(s, *a, **kw):
        parsed.append(s)
        return real(s, *a, **kw)

    monkeypatch.setattr(tables.json, "loads", counting)
    set_tags(item(ds, "a.png"), ["cat", "mine"])
    rows_parsed = [s for s in parsed if '"file_name"' in str(s)]
    assert len(rows_parsed) <= 2, f"{len(rows_parsed)} rows parsed for one save"
    assert table.read_text("utf-8").split("\n")[:2] == ['{"file_name": "a.png", "text": "cat, mine"}', rows[0]]


@pytest.mark.parametrize(
    "table, text, want",
    [
        (  # the image named with an escape: the row is parsed, not skipped
            "metadata.jsonl",
            '{"file_name": "r.png", "text": "x"}\n{"file_name": "\\u0061.png", "text": "cat"}\n',
            '{"file_name": "\\u0061.png", "text": "cat, mine"}',
        ),
        (  # a Windows path, as written on the machine that made the table
            "metadata.csv",
            "file_name,text\nC:\\train\\b.png,dog\nC:\\train\\a.png,cat\n",
            'C:\\train\\a.png,"cat, mine"',
        ),
        (  # a caption over several lines before the row, and a lone quote in the last row
            "metadata.csv",
            'file_name,text\nb.png,"dog\nsecond line"\na.png,cat\nc.png,5" screen\n',
            'a.png,"cat, mine"',
        ),
    ],
)
def test_rows_written_in_unusual_ways_are_still_found(db, tmp_path, table, text, want):
    root = tmp_path / "ds"
    ds, path = dataset(root, table, text)
    assert main_caption(ds, "a.png").content == "cat"
    set_tags(item(ds, "a.png"), ["cat", "mine"])
    assert want in path.read_text("utf-8").splitlines()


def test_a_conflict_after_a_multiline_caption_names_the_right_line(db, tmp_path):
    root = tmp_path / "ds"
    ds, path = dataset(root, text='file_name,text\nb.png,"dog\nsecond line"\na.png,cat\nc.png,bird\n')
    path.write_text('file_name,text\nb.png,"dog\nsecond line"\na.png,cat by hand\nc.png,bird\n', "utf-8")
    with pytest.raises(CaptionConflict, match="line 4"):
        set_tags(item(ds, "a.png"), ["cat", "mine"])


def test_reading_a_fifo_named_as_a_table_does_not_wait_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "metadata.csv")
    spec = tables.TableSpec("metadata.csv", "file_name", {"text": "main"})
    got: list = []
    finished, exc = edit_in_thread(lambda: got.append(tables.read_table(str(tmp_path), "metadata.csv", spec)))
    assert finished and exc is None, "reading the table waits on the FIFO"
    assert "not a regular file" in (got[0].fatal or "") and "metadata.csv" in got[0].fatal
