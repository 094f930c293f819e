"""Edits of captions read from a caption table (issue 17) go back into the table's cell:
from the CLI (`tag add`), bulk edits, the item editor (item_view.save_tags/save_text) and
batch text writes; every other byte of the table is kept, no x.txt appears, a reindex
reads the edit back, and a cell changed by another program is a conflict naming the
table. Also: the edit of a caption read from elsewhere (folder prompt.json, XMP sidecar)
becomes a caption file of its own that a reindex keeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from sushitui.dataset import bulk_edit, captions
from sushitui.dataset.caption_files import CaptionConflict
from sushitui.dataset.captions import MAIN, TextEdit, set_tags, set_texts_many
from sushitui.dataset.item_view import load_item_view, save_tags, save_text
from sushitui.dataset.registry import DatasetSettings, add_dataset, reindex
from sushitui.store import Caption, Item


def img(path: Path, color=(1, 2, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def caps(image_path: str) -> dict[str, Caption]:
    item = Item.get(Item.image_path == image_path)
    return {c.subtype: c for c in Caption.select().where(Caption.item == item.id)}


def item_id(image_path: str) -> int:
    return Item.get(Item.image_path == image_path).id


CSV_BEFORE = (
    '\ufefffile_name,text,score\r\n"a.png","cat, sofa",5\r\nb.png,"dog, grass",3\r\n"c.png","say ""hi"", bird",1\r\n'
).encode("utf-8")


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    from sushitui.cli import main

    db_file = tmp_path / "db.sqlite"
    monkeypatch.setenv("SUSHITUI_DB", str(db_file))

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    run.db_file = db_file
    return run


def _open(db_file: Path):
    from sushitui.store import open_database

    return open_database(db_file)


def test_cli_tag_add_changes_one_csv_cell_and_every_other_byte_is_kept(cli, tmp_path):
    root = tmp_path / "ds"
    for n in "abc":
        img(root / f"{n}.png")
    table = root / "metadata.csv"
    table.write_bytes(CSV_BEFORE)
    assert cli("dataset", "add", "d", str(root))[0] == 0
    _open(cli.db_file)
    b = item_id("b.png")
    assert caps("b.png")["main"].source == "table" and caps("b.png")["main"].type == "tags"

    code, out, err = cli("tag", "add", "d", "red", "--items", str(b), "--json")
    assert code == 0, err
    # BOM, CRLF, the quoting of every field, the other rows and columns: all as they were
    assert table.read_bytes() == CSV_BEFORE.replace(b'b.png,"dog, grass",3', b'b.png,"dog, grass, red",3')
    assert json.loads(out)["files"] == ["metadata.csv"]
    assert sorted(p.name for p in root.iterdir()) == ["a.png", "b.png", "c.png", "metadata.csv"]  # no b.txt
    _open(cli.db_file)
    assert caps("b.png")["main"].content == "dog, grass, red"

    assert cli("dataset", "reindex", "d")[0] == 0
    _open(cli.db_file)
    main = caps("b.png")["main"]
    assert (main.content, main.source, main.file_path) == ("dog, grass, red", "table", None)
    assert caps("c.png")["main"].content == 'say "hi", bird'
    assert Caption.select().where(Caption.subtype == "main").count() == 3  # nothing duplicated


def test_cli_edits_of_a_metadata_jsonl_in_a_subfolder(cli, tmp_path):
    root = tmp_path / "hf"
    img(root / "train" / "0001.png")
    img(root / "train" / "0002.png")
    lines = [
        '{"file_name": "0001.png", "text": "cat, sofa", "tags": ["cat", "sofa"], "aesthetic": 6.1}',
        '{"file_name":"0002.png","text":"ça, naïve","tags":["x"]}',
    ]
    table = root / "train" / "metadata.jsonl"
    table.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    assert cli("dataset", "add", "d", str(root))[0] == 0
    _open(cli.db_file)
    first = item_id("train/0001.png")

    assert cli("tag", "add", "d", "indoors", "--items", str(first))[0] == 0
    assert cli("tag", "remove", "d", "sofa", "--items", str(first), "--subtype", "tags")[0] == 0
    out = table.read_bytes().decode("utf-8").split("\n")
    assert out[0] == '{"file_name": "0001.png", "text": "cat, sofa, indoors", "tags": ["cat"], "aesthetic": 6.1}'
    assert out[1:] == [lines[1], ""]  # the other row byte for byte
    assert not (root / "train" / "0001.txt").exists() and not (root / "train" / "0001_tags.txt").exists()

    assert cli("dataset", "reindex", "d")[0] == 0
    _open(cli.db_file)
    got = caps("train/0001.png")
    assert (got["main"].content, got["tags"].content) == ("cat, sofa, indoors", "cat")
    assert got["main"].source == got["tags"].source == "table"


def test_a_cell_changed_by_another_program_is_a_conflict_naming_the_table(db, tmp_path):
    root = tmp_path / "ds"
    for n in "abc":
        img(root / f"{n}.png")
    table = root / "metadata.csv"
    table.write_bytes(CSV_BEFORE)
    add_dataset(DatasetSettings("d", str(root)))
    elsewhere = CSV_BEFORE.replace(b'"dog, grass"', b'"dog, grass, edited elsewhere"')
    table.write_bytes(elsewhere)  # after sushitui read it, before the edit
    with pytest.raises(CaptionConflict) as info:
        set_tags(Item.get(Item.image_path == "b.png"), ["dog", "mine"])
    assert "metadata.csv" in str(info.value)
    assert info.value.disk_text == "dog, grass, edited elsewhere"
    assert table.read_bytes() == elsewhere  # their edit kept, nothing of mine written
    assert not (root / "b.txt").exists()
    assert caps("b.png")["main"].content == "dog, grass"  # the index is left as it was

    # the bulk path reports it per item, and names the table
    report = bulk_edit.bulk_add("d", [item_id("b.png")], "mine")
    assert [(p.path, "metadata.csv" in p.reason) for p in report.problems] == [("metadata.csv", True)]
    assert table.read_bytes() == elsewhere


def test_another_rows_change_since_the_read_is_kept_and_the_edit_lands(db, tmp_path):
    root = tmp_path / "ds"
    for n in "abc":
        img(root / f"{n}.png")
    table = root / "metadata.csv"
    table.write_bytes(CSV_BEFORE)
    add_dataset(DatasetSettings("d", str(root)))
    other = CSV_BEFORE.replace(b'"cat, sofa"', b'"cat, sofa, by hand"')
    table.write_bytes(other)
    set_tags(Item.get(Item.image_path == "b.png"), ["dog", "mine"])
    assert table.read_bytes() == other.replace(b'"dog, grass"', b'"dog, mine"')


@pytest.mark.slow
def test_a_bulk_edit_of_50_items_in_one_table_rewrites_it_once_and_lands_every_edit(db, tmp_path, monkeypatch):
    root = tmp_path / "ds"
    rows = ["file_name,text,note"]
    for n in range(50):
        img(root / f"{n:03d}.png", (n, 2, 3))
        rows.append(f'{n:03d}.png,"tag{n}, common",keep {n}')
    table = root / "metadata.csv"
    table.write_text("\n".join(rows) + "\n", "utf-8")
    ds, _ = add_dataset(DatasetSettings("d", str(root)))
    calls: list[int] = []
    real = captions.write_table_cells

    def counting(root_path, rel, edits, image_column=None):
        calls.append(len(edits))
        return real(root_path, rel, edits, image_column)

    monkeypatch.setattr(captions, "write_table_cells", counting)
    monkeypatch.setattr(bulk_edit, "SUB_BATCH", 7)  # the other edits would run in parallel sub-batches
    report = bulk_edit.bulk_add("d", None, "extra")
    assert report.problems == [] and report.items_changed == 50
    assert calls == [50]  # one rewrite of the table for the whole batch
    got = table.read_text("utf-8").splitlines()
    assert got[0] == rows[0]
    assert got[1:] == [f'{n:03d}.png,"tag{n}, common, extra",keep {n}' for n in range(50)]
    assert list(root.glob("*.txt")) == []
    reindex(ds)
    assert {c.content for c in Caption.select().where(Caption.subtype == "main")} == {
        f"tag{n}, common, extra" for n in range(50)
    }


def test_the_item_editor_saves_tags_and_text_into_the_table(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "a.png")
    img(root / "b.png")
    table = root / "metadata.jsonl"
    table.write_text(
        '{"file_name": "a.png", "text": "A red square on a white wall.", "tags": "red, square"}\n'
        '{"file_name": "b.png", "text": "A blue circle.", "tags": "blue, circle"}\n',
        "utf-8",
    )
    ds, _ = add_dataset(DatasetSettings("d", str(root)))
    a = item_id("a.png")
    assert caps("a.png")["main"].type == "natural_language"
    view = load_item_view(a)
    save_tags(a, "tags", ["red", "square", "wall"], view=view)
    save_text(a, "natural_language", "main", "A red square on a grey wall.", view=view)
    assert table.read_text("utf-8").splitlines() == [
        '{"file_name": "a.png", "text": "A red square on a grey wall.", "tags": "red, square, wall"}',
        '{"file_name": "b.png", "text": "A blue circle.", "tags": "blue, circle"}',
    ]
    assert sorted(p.name for p in root.iterdir()) == ["a.png", "b.png", "metadata.jsonl"]
    reindex(ds)
    got = caps("a.png")
    assert (got["main"].content, got["tags"].content) == ("A red square on a grey wall.", "red, square, wall")
    assert got["main"].source == "table"


def test_batch_text_writes_go_into_the_table_too(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "a.png")
    img(root / "b.png")
    table = root / "caption.csv"
    table.write_text("caption,image_file\nA cat.,a.png\nA dog.,b.png\n", "utf-8")
    add_dataset(DatasetSettings("d", str(root)))
    items = [Item.get(Item.image_path == p) for p in ("a.png", "b.png")]
    report = set_texts_many(
        [TextEdit(items[0], "A black cat."), TextEdit(items[1], "A dog, asleep.")], "natural_language", "main"
    )
    assert report.problems == [] and report.changed == 2 and report.files_written == ["caption.csv"]
    assert set(report.written) == {items[0].id, items[1].id}  # what VLM captioning counts as written
    assert table.read_text("utf-8") == 'caption,image_file\nA black cat.,a.png\n"A dog, asleep.",b.png\n'
    assert caps("a.png")["main"].source == "table"


def test_a_folder_caption_edit_becomes_a_file_of_its_own_that_a_reindex_keeps(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "pairs" / "1.png")
    img(root / "pairs" / "2.png")
    prompt = root / "pairs" / "prompt.json"
    prompt.write_text('{"edit": "make it blue"}', "utf-8")
    ds, _ = add_dataset(DatasetSettings("d", str(root)))
    assert caps("pairs/1.png")["instruction"].source == "folder"
    saved = save_text(item_id("pairs/1.png"), "instruction", "instruction", "make it red")
    assert (saved.source, saved.source_field, saved.file_path) == ("txt_file", None, "pairs/1_instruction.txt")
    assert prompt.read_text("utf-8") == '{"edit": "make it blue"}'
    reindex(ds)
    rows = [c for c in Caption.select().where(Caption.item == item_id("pairs/1.png")) if c.type == "instruction"]
    assert [(c.content, c.source, c.file_path) for c in rows] == [
        ("make it red", "txt_file", "pairs/1_instruction.txt")
    ]
    assert caps("pairs/2.png")["instruction"].content == "make it blue"


def test_an_xmp_sidecar_tag_edit_is_a_caption_file_that_a_reindex_keeps(db, tmp_path):
    root = tmp_path / "photos"
    img(root / "beach.png")
    (root / "beach.xmp").write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<dc:subject><rdf:Bag><rdf:li>sea</rdf:li><rdf:li>sand</rdf:li></rdf:Bag></dc:subject>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>",
        "utf-8",
    )
    ds, _ = add_dataset(DatasetSettings("p", str(root)))
    set_tags(Item.get(Item.image_path == "beach.png"), ["sea", "sand", "dawn"], subtype="xmp_dc_subject")
    mine = caps("beach.png")["xmp-dc-subject"]
    assert (mine.source, mine.file_path, mine.content) == ("txt_file", "beach_xmp-dc-subject.txt", "sea, sand, dawn")

    def snapshot():
        return sorted(
            (c.subtype, c.source, c.file_path, c.content)
            for c in Caption.select().where(Caption.item == item_id("beach.png"))
        )

    before = snapshot()
    reindex(ds)
    assert snapshot() == before


def test_taking_the_tables_version_after_a_conflict_indexes_the_cell(db, tmp_path):
    """The editor's "take the disk version" of a table caption reads the cell as it is now;
    it never treats the whole table as the item's caption file."""
    from sushitui.dataset.item_view import take_disk_tags, take_disk_text

    root = tmp_path / "ds"
    img(root / "a.png")
    img(root / "b.png")
    table = root / "metadata.jsonl"
    table.write_text(
        '{"file_name": "a.png", "text": "A cat.", "tags": "cat"}\n{"file_name": "b.png", "text": "A dog.", "tags": "dog"}\n',
        "utf-8",
    )
    add_dataset(DatasetSettings("d", str(root)))
    a = item_id("a.png")
    view = load_item_view(a)
    changed = table.read_text("utf-8").replace('"cat"}', '"cat, by hand"}').replace("A cat.", "A cat, by hand.")
    table.write_text(changed, "utf-8")
    with pytest.raises(CaptionConflict):
        save_tags(a, "tags", ["cat", "mine"], view=view)
    assert take_disk_tags(a, "tags", "metadata.jsonl", view=view) == ["cat", "by hand"]
    assert take_disk_text(a, "natural_language", "main", "metadata.jsonl", view=view) == "A cat, by hand."
    got = caps("a.png")
    assert (got["tags"].content, got["tags"].source, got["tags"].file_path) == ("cat, by hand", "table", None)
    assert (got["main"].content, got["main"].file_path) == ("A cat, by hand.", None)
    assert table.read_text("utf-8") == changed
    save_tags(a, "tags", ["cat", "by hand", "mine"], view=view)  # now the edit lands
    assert '"tags": "cat, by hand, mine"' in table.read_text("utf-8")


def test_edits_of_one_table_from_two_threads_all_land(db, tmp_path):
    """Each edit rewrites the table as it is under the dataset's write lock, so an edit of
    one row never puts back another row's old text."""
    import threading

    from sushitui.store import current_database

    root = tmp_path / "ds"
    rows = ["file_name,text"]
    for n in range(12):
        img(root / f"{n:02d}.png", (n, 0, 0))
        rows.append(f'{n:02d}.png,"t{n}, x"')
    table = root / "metadata.csv"
    table.write_text("\n".join(rows) + "\n", "utf-8")
    add_dataset(DatasetSettings("d", str(root)))
    items = [Item.get(Item.image_path == f"{n:02d}.png") for n in range(12)]
    errors: list[BaseException] = []

    def edit(part):
        try:
            for item in part:
                set_tags(item, [f"t{int(item.base_name)}", "x", "mine"])
        except Exception as exc:  # noqa: BLE001 (reported below, in the test's thread)
            errors.append(exc)
        finally:
            current_database().close()

    threads = [threading.Thread(target=edit, args=(items[k::2],)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert table.read_text("utf-8").splitlines()[1:] == [f'{n:02d}.png,"t{n}, x, mine"' for n in range(12)]


def test_the_editor_saves_against_the_cell_it_showed_even_after_a_reindex(db, tmp_path):
    """A reindex between the editor's load and its save brings another program's cell
    into the index; the save must still be a conflict, not overwrite it."""
    root = tmp_path / "ds"
    img(root / "a.png")
    table = root / "metadata.jsonl"
    table.write_text('{"file_name": "a.png", "text": "red, square"}\n', "utf-8")
    ds, _ = add_dataset(DatasetSettings("d", str(root)))
    a = item_id("a.png")
    view = load_item_view(a)
    table.write_text('{"file_name": "a.png", "text": "red, square, theirs"}\n', "utf-8")
    reindex(ds)
    with pytest.raises(CaptionConflict):
        save_tags(a, MAIN, ["red", "square", "mine"], view=view)
    assert table.read_text("utf-8") == '{"file_name": "a.png", "text": "red, square, theirs"}\n'
    save_tags(a, MAIN, ["red", "square", "mine"], view=view, force=True)  # "keep mine"
    assert '"text": "red, square, mine"' in table.read_text("utf-8")
    save_tags(a, MAIN, ["red", "mine"], view=view)  # the view's base is now what it wrote
    assert '"text": "red, mine"' in table.read_text("utf-8")
