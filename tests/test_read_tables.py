"""Caption tables (issue 17, Read): Hugging Face imagefolder metadata.jsonl/.csv, cog's
caption.csv, sd-scripts metadata JSON and any CSV/TSV/JSONL named with
--captions-table. Each column is a caption subtype; bad rows are problems named by file
and line; an edit of a table caption is written back into its cell."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from cli_support import run_cli
from PIL import Image

from sushitui.dataset.captions import set_tags
from sushitui.dataset.registry import DatasetError, DatasetSettings, add_dataset, reindex
from sushitui.store import Caption, Dataset, Item


def img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)
    return path


def caps(image_path: str) -> dict[str, Caption]:
    item = Item.get(Item.image_path == image_path)
    return {c.subtype: c for c in Caption.select().where(Caption.item == item.id)}


def problems(report) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in report.problems:
        out.setdefault(p.path, []).append(p.reason)
    return out


def test_hf_imagefolder_metadata_jsonl(db, tmp_path):
    # the layout of https://huggingface.co/docs/datasets/image_dataset#imagefolder
    root = tmp_path / "hf"
    img(root / "train" / "0001.png")
    img(root / "train" / "sub" / "0002.png")
    img(root / "train" / "0003.png")  # no row
    rows = [
        {"file_name": "0001.png", "text": "a cat on a sofa", "tags": ["cat", "sofa"], "aesthetic": 6.1},
        {"file_name": "sub/0002.png", "text": "a red car"},
        {"file_name": "missing.png", "text": "nothing here"},
    ]
    (root / "train" / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    ds, report = add_dataset(DatasetSettings("hf", str(root)))
    c = caps("train/0001.png")
    assert (c["main"].type, c["main"].content, c["main"].source) == ("natural_language", "a cat on a sofa", "table")
    assert c["main"].source_field == "train/metadata.jsonl: text" and c["main"].file_path is None
    assert (c["tags"].type, c["tags"].content) == ("tags", "cat, sofa")
    assert caps("train/sub/0002.png")["main"].content == "a red car"
    got = problems(report)
    assert any("line 3" in r and "missing.png" in r for r in got["train/metadata.jsonl"])
    assert got["train/0003.png"] == ["no row in the captions table train/metadata.jsonl"]
    assert ds.total_items == 3


def test_metadata_csv_with_bom_crlf_quotes_and_extra_columns(db, tmp_path):
    root = tmp_path / "hf"
    img(root / "a.png")
    img(root / "b.png")
    data = '\ufefffile_name,text,source\r\n"a.png","a dog, running\r\non grass",web\r\nb.png,a bird,\r\n'
    (root / "metadata.csv").write_bytes(data.encode("utf-8"))
    _, report = add_dataset(DatasetSettings("hf", str(root)))
    assert report.problems == []
    assert caps("a.png")["main"].content == "a dog, running\r\non grass"
    assert caps("b.png")["main"].content == "a bird"
    assert "source" not in caps("a.png")  # not a caption column of the convention


def test_cog_caption_csv_found_by_name(db, tmp_path):
    root = tmp_path / "cog"
    img(root / "photo-1.jpg")
    (root / "caption.csv").write_text("caption,image_file\na photo of TOK,photo-1.jpg\n", "utf-8")
    add_dataset(DatasetSettings("cog", str(root)))
    assert caps("photo-1.jpg")["main"].content == "a photo of TOK"


def test_sd_scripts_metadata_json_with_windows_keys(db, tmp_path, testdata):
    # kohya_ss's own test metadata: keys like test\\img\\10_darius kawasaki person\\Dariusz_Zawadzki.jpg
    source = testdata / "kohya-ss-gui-test"
    root = tmp_path / "kohya"
    shutil.copytree(source / "img", root / "img")
    for p in root.rglob("*.txt"):
        p.unlink()  # the captions must come from the table
    for p in root.rglob("*.cap"):
        p.unlink()
    shutil.copy(source / "config" / "meta-1_lat.json", root / "meta_lat.json")
    _, report = add_dataset(DatasetSettings("k", str(root)))
    data = json.loads((source / "config" / "meta-1_lat.json").read_text("utf-8"))
    for key, value in data.items():
        rel = "img/" + "/".join(key.replace("\\", "/").split("/")[-2:])
        assert caps(rel)["main"].content == value["caption"].strip(), rel
    assert not any(p.path == "meta_lat.json" for p in report.problems)


def test_named_tsv_table_with_subtypes(db, tmp_path):
    root = tmp_path / "t"
    img(root / "images" / "1.png")
    img(root / "images" / "2.png")
    (root / "captions.tsv").write_text(
        "path\tshort\tlong\nimages/1.png\tcat\tA cat asleep on a chair.\nimages/2.png\tdog\tA dog.\n", "utf-8"
    )
    ds, report = add_dataset(
        DatasetSettings(
            "t",
            str(root),
            caption_tables=[
                {"file": "captions.tsv", "image_column": "path", "columns": {"short": "main", "long": "alt"}}
            ],
        )
    )
    assert report.problems == []
    c = caps("images/1.png")
    assert c["main"].content == "cat" and c["alt"].content == "A cat asleep on a chair."
    assert Dataset.get_by_id(ds.id).caption_tables[0]["file"] == "captions.tsv"


def test_a_named_table_with_a_missing_column_is_refused_and_nothing_registered(db, tmp_path):
    root = tmp_path / "t"
    img(root / "1.png")
    (root / "c.csv").write_text("image,caption\n1.png,cat\n", "utf-8")
    with pytest.raises(
        DatasetError, match=r"c.csv: line 1 \(the header\) has no column 'text' \(columns: image, caption\)"
    ):
        add_dataset(
            DatasetSettings(
                "t", str(root), caption_tables=[{"file": "c.csv", "image_column": "image", "columns": {"text": "main"}}]
            )
        )
    assert Dataset.select().count() == 0


def test_duplicate_rows_and_paths_leaving_the_folder_are_named_by_line(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "a.png")
    (root / "metadata.jsonl").write_text(
        '{"file_name": "a.png", "text": "first"}\n'
        '{"file_name": "./a.png", "text": "second"}\n'
        '{"file_name": "../../etc/passwd.png", "text": "x"}\n'
        "not json\n",
        "utf-8",
    )
    _, report = add_dataset(DatasetSettings("d", str(root)))
    assert caps("a.png")["main"].content == "first"
    reasons = problems(report)["metadata.jsonl"]
    assert any(r.startswith("line 2:") and "already on line 1" in r for r in reasons)
    assert any(r.startswith("line 3:") and "outside the dataset folder" in r for r in reasons)
    assert any(r.startswith("line 4:") and "not valid JSON" in r for r in reasons)


def test_an_auto_table_without_known_columns_says_how_to_name_them(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "a.png")
    (root / "metadata.csv").write_text("img,words\na.png,cat\n", "utf-8")
    _, report = add_dataset(DatasetSettings("d", str(root)))
    (reason,) = problems(report)["metadata.csv"]
    assert reason.startswith("line 1: no image column (file_name / image_file") and "columns: img, words" in reason
    assert "--captions-table FILE --image-column C" in reason


def test_the_items_own_caption_file_wins_and_an_edit_writes_the_table_cell(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "a.png")
    img(root / "b.png")
    (root / "a.txt").write_text("own caption", "utf-8")
    table = root / "metadata.jsonl"
    table.write_text(
        '{"file_name": "a.png", "text": "from table"}\n{"file_name": "b.png", "text": "b, from table"}\n', "utf-8"
    )
    ds, _ = add_dataset(DatasetSettings("d", str(root)))
    assert caps("a.png")["main"].content == "own caption" and caps("a.png")["main"].source == "txt_file"
    assert caps("b.png")["main"].type == "tags"
    set_tags(Item.get(Item.image_path == "b.png"), ["b", "edited"])
    # the edit lands in b's cell (tests/test_table_edits.py covers this in depth), not in b.txt
    assert table.read_text("utf-8").splitlines()[1] == '{"file_name": "b.png", "text": "b, edited"}'
    assert not (root / "b.txt").exists()
    reindex(ds)
    main = caps("b.png")["main"]
    assert (main.content, main.file_path, main.source) == ("b, edited", None, "table")
    assert caps("a.png")["main"].content == "own caption"


def test_a_changed_root_table_updates_items_in_unchanged_subfolders(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "deep" / "er" / "a.png")
    table = root / "metadata.jsonl"
    table.write_text('{"file_name": "deep/er/a.png", "text": "old"}\n', "utf-8")
    ds, _ = add_dataset(DatasetSettings("d", str(root)))
    table.write_text('{"file_name": "deep/er/a.png", "text": "new text"}\n', "utf-8")
    report = reindex(ds)
    assert report.items_updated == 1
    assert caps("deep/er/a.png")["main"].content == "new text"
    assert reindex(ds).items_updated == 0
    table.unlink()
    reindex(ds)
    assert "main" not in caps("deep/er/a.png")


def test_cli_captions_table_options(db_path, tmp_path):
    root = tmp_path / "ds"
    img(root / "x.png")
    (root / "list.csv").write_text("image,en,ja\nx.png,a cat,猫\n", "utf-8")
    cmd = [
        "dataset",
        "add",
        "d",
        str(root),
        "--db",
        str(db_path),
        "--captions-table",
        "list.csv",
        "--image-column",
        "image",
        "--caption-column",
        "en",
        "--caption-column",
        "ja=ja",
        "--json",
    ]
    run = run_cli(*cmd, env={**os.environ, "NO_COLOR": "1"})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["dataset"]["caption_tables"] == [
        {"file": "list.csv", "image_column": "image", "columns": {"en": "main", "ja": "ja"}}
    ]
    items = run_cli("items", "d", "--db", str(db_path), "--json")
    contents = {c["subtype"]: c["content"] for c in json.loads(items.stdout.splitlines()[0])["captions"]}
    assert contents == {"main": "a cat", "ja": "猫"}
    bad = run_cli(
        "dataset",
        "add",
        "e",
        str(root),
        "--db",
        str(db_path),
        "--captions-table",
        "list.csv",
    )
    assert bad.returncode == 2 and "--image-column" in bad.stderr


def test_windows_absolute_paths_in_a_table_are_matched_by_their_trailing_names(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "set" / "a.png")
    (root / "metadata.jsonl").write_text(
        json.dumps({"file_name": "C:\\Users\\me\\ds\\set\\a.png", "text": "win"}) + "\n", "utf-8"
    )
    _, report = add_dataset(DatasetSettings("d", str(root)))
    assert report.problems == []
    assert caps("set/a.png")["main"].content == "win"


def test_cli_edit_sets_and_clears_a_captions_table(db_path, tmp_path):
    root = tmp_path / "ds"
    img(root / "x.png")
    (root / "t.csv").write_text("img,words\nx.png,hello\n", "utf-8")

    def sushi(*args):
        return run_cli(*args, "--db", str(db_path))

    assert sushi("dataset", "add", "d", str(root)).returncode == 0
    bad = sushi(
        "dataset", "edit", "d", "--captions-table", "t.csv", "--image-column", "image", "--caption-column", "words"
    )
    assert bad.returncode == 1 and "t.csv: line 1 (the header) has no column 'image'" in bad.stderr
    ok = sushi(
        "dataset",
        "edit",
        "d",
        "--captions-table",
        "t.csv",
        "--image-column",
        "img",
        "--caption-column",
        "words",
        "--reindex",
    )
    assert ok.returncode == 0, ok.stderr
    assert "captions tables: none → t.csv (image: img; captions: words=main)" in ok.stdout
    items = json.loads(sushi("items", "d", "--json").stdout.splitlines()[0])
    assert [c["content"] for c in items["captions"]] == ["hello"]
    cleared = sushi("dataset", "edit", "d", "--no-captions-tables", "--reindex")
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(sushi("items", "d", "--json").stdout.splitlines()[0])["captions"] == []
    lone = sushi("dataset", "edit", "d", "--image-column", "img")
    assert lone.returncode == 2 and "--captions-table" in lone.stderr


def test_a_diffusers_export_reads_back_with_its_extra_caption_columns(db, tmp_path):
    # what `sushitui export --format diffusers --caption main,alt` writes
    root = tmp_path / "out"
    img(root / "images" / "src" / "0.png")
    (root / "metadata.jsonl").write_text(
        json.dumps(
            {
                "file_name": "images/src/0.png",
                "text": "cat, sofa",
                "alt": "A cat on a sofa.",
                "main": "cat, sofa",
                "source_file_name": "images/src/0_source.png",
            }
        )
        + "\n",
        "utf-8",
    )
    _, report = add_dataset(DatasetSettings("back", str(root)))
    c = caps("images/src/0.png")
    assert {k: v.content for k, v in c.items()} == {"main": "cat, sofa", "alt": "A cat on a sofa."}


def test_a_table_caption_cannot_be_deleted_from_the_app_core(db, tmp_path):
    """The row lives in a shared file: deleting it from the index would come back at the
    next reindex, so the delete is refused with what to do."""
    import pytest as _pytest
    from PIL import Image as _Image

    from sushitui.dataset.caption_files import CaptionFileError
    from sushitui.dataset.item_view import delete_caption
    from sushitui.dataset.registry import DatasetSettings, add_dataset
    from sushitui.store import Caption

    root = tmp_path / "hf"
    root.mkdir()
    _Image.new("RGB", (8, 8)).save(root / "a.png")
    (root / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "a red square"}\n')
    add_dataset(DatasetSettings(name="hf", root_path=str(root)))
    cap = Caption.get(Caption.source == "table")
    with _pytest.raises(CaptionFileError, match="shared table file"):
        delete_caption(cap.id)
    assert "a red square" in (root / "metadata.jsonl").read_text()
