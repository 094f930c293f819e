"""Writing a caption back into its table (sushitui.dataset.tables.write_table_caption):
one cell changes, every other byte stays (columns, row order, quoting, CRLF, BOM), and a
cell changed by another program since it was indexed is a conflict."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from sushitui.dataset.caption_files import CaptionConflict
from sushitui.dataset.tables import TableError, read_only_reason, write_table_caption


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_csv_cell_is_replaced_and_every_other_byte_kept(tmp_path):
    before = (
        '\ufefffile_name,text,score\r\n"a.png","a dog, running",5\r\nb.png,a bird,3\r\n"c.png","say ""hi""",1\r\n'
    ).encode("utf-8")
    table = _write(tmp_path / "metadata.csv", before)
    write_table_caption(str(tmp_path), "metadata.csv: text", ["b.png"], "a bird", 'a small bird, "blue"')
    after = table.read_bytes()
    assert after == before.replace(b"b.png,a bird,3", b'b.png,"a small bird, ""blue""",3')
    rows = list(csv.reader(io.StringIO(after.decode("utf-8-sig"), newline="")))
    assert rows[2] == ["b.png", 'a small bird, "blue"', "3"]
    # a quoted field stays quoted
    write_table_caption(str(tmp_path), "metadata.csv: text", ["a.png"], "a dog, running", "a dog")
    assert b'"a.png","a dog",5\r\n' in table.read_bytes()


def test_tsv_in_a_subfolder_names_images_relative_to_itself(tmp_path):
    table = _write(tmp_path / "sub" / "caps.tsv", b"image\tshort\nx.png\tcat\ny.png\tdog\n")
    write_table_caption(str(tmp_path), "sub/caps.tsv: short", ["sub/y.png"], "dog", "puppy", image_column="image")
    assert table.read_bytes() == b"image\tshort\nx.png\tcat\ny.png\tpuppy\n"


def test_jsonl_line_is_rewritten_with_its_key_order_and_separators(tmp_path):
    lines = ['{"file_name": "a.png", "text": "old", "aesthetic": 6.1}', '{"file_name":"b.png","text":"keep"}']
    table = _write(tmp_path / "metadata.jsonl", ("\r\n".join(lines) + "\r\n").encode("utf-8"))
    write_table_caption(str(tmp_path), "metadata.jsonl: text", ["a.png"], "old", "new caption ✓")
    out = table.read_bytes().decode("utf-8").split("\r\n")
    assert out[0] == '{"file_name": "a.png", "text": "new caption ✓", "aesthetic": 6.1}'
    assert out[1] == lines[1] and out[2] == ""
    assert json.loads(out[0])["text"] == "new caption ✓"


def test_a_cell_changed_since_it_was_indexed_is_a_conflict_and_nothing_is_written(tmp_path):
    before = b"file_name,text\na.png,changed elsewhere\n"
    table = _write(tmp_path / "metadata.csv", before)
    with pytest.raises(CaptionConflict) as info:
        write_table_caption(str(tmp_path), "metadata.csv: text", ["a.png"], "what the index holds", "mine")
    assert info.value.disk_text == "changed elsewhere"
    assert table.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metadata.csv"]  # no temporary file left


@pytest.mark.parametrize(
    "name, data, words",
    [
        ("metadata.csv", "file_name,text\na.png,x\n".encode("cp1252") + b"\xe9\n", "not UTF-8"),
        ("meta_cap.json", b'{"a.png": {"caption": "x"}}', "CSV, TSV and JSONL tables only"),
        ("metadata.csv", b'file_name,text\n"a.png,x\n', "never closed"),
        ("metadata.csv", b"file_name,text\nb.png,x\n", "no row names this image"),
    ],
)
def test_tables_that_cannot_be_rewritten_safely_are_refused_untouched(tmp_path, name, data, words):
    table = _write(tmp_path / name, data)
    with pytest.raises(TableError, match=words):
        write_table_caption(str(tmp_path), f"{name}: text", ["a.png"], "x", "y")
    assert table.read_bytes() == data


def test_a_read_only_table_is_refused(tmp_path):
    table = _write(tmp_path / "metadata.csv", b"file_name,text\na.png,x\n")
    os.chmod(table, 0o444)
    with pytest.raises(TableError, match="read-only"):
        write_table_caption(str(tmp_path), "metadata.csv: text", ["a.png"], "x", "y")


def test_read_only_reason_names_the_table():
    # CSV/TSV/JSONL table captions are written back into their cell; sd-scripts JSON is not
    assert read_only_reason("table", "metadata.jsonl: text") is None
    assert "meta_cap.json: caption" in read_only_reason("table", "meta_cap.json: caption")
    assert "prompt.json" in read_only_reason("folder", "a/prompt.json: edit")
    assert read_only_reason("txt_file", None) is None
