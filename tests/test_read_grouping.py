"""Grouping conventions beyond x_source.png (issue 17, Read): the suffix separator
('.', '-'), suffix roles (0=source), and folder captions (InstructPix2Pix prompt.json, a
named text file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import run_cli
from PIL import Image

from sushitui.dataset.captions import set_text
from sushitui.dataset.registry import DatasetError, DatasetSettings, add_dataset, reindex, update_settings
from sushitui.store import Caption, Dataset, Item


def img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)
    return path


def items() -> dict[str, Item]:
    return {i.group_key: i for i in Item.select()}


def caps(item: Item) -> dict[str, Caption]:
    return {c.subtype: c for c in Caption.select().where(Caption.item == item.id)}


def test_dot_separator_groups_src_and_mask(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "0.src.jpg")
    img(root / "0.mask.png")
    (root / "0.txt").write_text("a cat", "utf-8")
    img(root / "1.src.jpg")
    ds, report = add_dataset(
        DatasetSettings("d", str(root), suffix_separator=".", image_suffixes=["src", "mask"], primary_suffix="src")
    )
    assert report.problems == []
    got = items()
    assert set(got) == {"0", "1"}
    assert got["0"].related_images == {"src": "0.src.jpg", "mask": "0.mask.png"}
    assert got["0"].image_path == "0.src.jpg" and caps(got["0"])["main"].content == "a cat"
    assert Dataset.get_by_id(ds.id).suffix_separator == "."


def test_onetrainer_dash_masklabel_and_condlabel(db, tmp_path):
    root = tmp_path / "ot"
    img(root / "x.png")
    img(root / "x-masklabel.png")
    img(root / "x-condlabel.png")
    (root / "x.txt").write_text("photo of sks dog", "utf-8")
    (root / "x_alt.txt").write_text("a dog", "utf-8")  # what sushitui writes for subtype alt: still read
    ds, report = add_dataset(
        DatasetSettings("o", str(root), suffix_separator="-", image_suffixes=["masklabel", "condlabel"])
    )
    assert report.problems == []
    (item,) = items().values()
    assert item.image_path == "x.png"
    assert item.related_images == {"image": "x.png", "masklabel": "x-masklabel.png", "condlabel": "x-condlabel.png"}
    assert caps(item)["main"].content == "photo of sks dog" and caps(item)["alt"].content == "a dog"


def test_default_separator_keeps_dotted_and_dashed_names_apart(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "x.png")
    img(root / "x-masklabel.png")
    add_dataset(DatasetSettings("d", str(root), image_suffixes=["masklabel"]))
    assert set(items()) == {"x", "x-masklabel"}


def test_changing_the_separator_regroups_at_the_next_reindex(db, tmp_path):
    root = tmp_path / "ot"
    img(root / "x.png")
    img(root / "x-masklabel.png")
    ds, _ = add_dataset(DatasetSettings("o", str(root), image_suffixes=["masklabel"]))
    assert len(items()) == 2
    update_settings(ds, suffix_separator="-")
    reindex(ds)
    assert set(items()) == {"x"}


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"suffix_separator": "/"}, "not one of"),
        ({"suffix_separator": "-", "image_suffixes": ["mask-label"]}, "contains the suffix separator"),
        ({"folder_caption": "sub/instruction.txt"}, "not a path"),
        ({"image_suffixes": ["0=sou rce"]}, "letters, digits"),
    ],
)
def test_bad_layout_settings_are_refused_with_the_reason(db, tmp_path, changes, words):
    (tmp_path / "ds").mkdir()
    with pytest.raises(DatasetError, match=words):
        add_dataset(DatasetSettings("d", str(tmp_path / "ds"), **changes))
    assert Dataset.select().count() == 0


def _ip2p(root: Path, seed: str, prompt: dict) -> None:
    folder = root / seed
    img(folder / f"{seed}_0.jpg")
    img(folder / f"{seed}_1.jpg")
    img(folder / f"{int(seed) + 1}_0.jpg")
    img(folder / f"{int(seed) + 1}_1.jpg")
    (folder / "prompt.json").write_text(json.dumps(prompt), "utf-8")


def test_instructpix2pix_folders_pairs_with_the_folder_prompt(db, tmp_path):
    root = tmp_path / "ip2p"
    _ip2p(root, "1000", {"input": "a photo of a house", "edit": "make it snow", "output": "a photo of a snowy house"})
    _ip2p(root, "2000", {"input": "a dog", "edit": "give it a hat", "output": "a dog in a hat"})
    ds, report = add_dataset(DatasetSettings("p", str(root), image_suffixes=["0=source", "1=target"]))
    assert report.problems == []
    got = items()
    assert set(got) == {"1000/1000", "1000/1001", "2000/2000", "2000/2001"}
    pair = got["1000/1001"]
    assert pair.related_images == {"source": "1000/1001_0.jpg", "target": "1000/1001_1.jpg"}
    assert pair.image_path == "1000/1001_1.jpg"  # the target is the primary image
    c = caps(pair)
    assert (c["instruction"].type, c["instruction"].content) == ("instruction", "make it snow")
    assert c["input"].content == "a photo of a house" and c["output"].content == "a photo of a snowy house"
    assert c["instruction"].source == "folder" and c["instruction"].file_path is None
    assert caps(got["2000/2000"])["instruction"].content == "give it a hat"


def test_a_changed_prompt_json_updates_every_pair_of_its_folder_and_only_those(db, tmp_path):
    root = tmp_path / "ip2p"
    _ip2p(root, "1000", {"edit": "make it snow"})
    _ip2p(root, "2000", {"edit": "give it a hat"})
    ds, _ = add_dataset(DatasetSettings("p", str(root), image_suffixes=["0=source", "1=target"]))
    (root / "1000" / "prompt.json").write_text(json.dumps({"edit": "make it rain"}), "utf-8")
    report = reindex(ds)
    assert report.items_updated == 2 and report.items_unchanged == 2
    assert {caps(i)["instruction"].content for k, i in items().items() if k.startswith("1000/")} == {"make it rain"}
    (root / "1000" / "prompt.json").unlink()
    reindex(ds)
    assert all("instruction" not in caps(i) for k, i in items().items() if k.startswith("1000/"))


def test_an_edited_folder_instruction_becomes_the_items_own_file(db, tmp_path):
    root = tmp_path / "ip2p"
    _ip2p(root, "1000", {"edit": "make it snow"})
    ds, _ = add_dataset(DatasetSettings("p", str(root), image_suffixes=["0=source", "1=target"]))
    prompt_before = (root / "1000" / "prompt.json").read_bytes()
    pair = items()["1000/1000"]
    set_text(pair, "instruction", "instruction", "make it snow at night")
    assert (root / "1000" / "prompt.json").read_bytes() == prompt_before  # never rewritten
    assert (root / "1000" / "1000_instruction.txt").read_text("utf-8") == "make it snow at night"
    reindex(ds)
    assert caps(items()["1000/1000"])["instruction"].content == "make it snow at night"
    assert caps(items()["1000/1001"])["instruction"].content == "make it snow"  # the others keep the folder's


def test_a_broken_prompt_json_is_a_problem_naming_the_file(db, tmp_path):
    root = tmp_path / "ip2p"
    _ip2p(root, "1000", {})
    (root / "1000" / "prompt.json").write_text("{not json", "utf-8")
    _, report = add_dataset(DatasetSettings("p", str(root), image_suffixes=["0=source", "1=target"]))
    assert any(p.path == "1000/prompt.json" and "not valid JSON" in p.reason for p in report.problems)


def test_named_folder_caption_text_file(db, tmp_path):
    root = tmp_path / "edits"
    img(root / "a" / "x_source.png")
    img(root / "a" / "x_target.png")
    (root / "a" / "instruction.txt").write_text("remove the background\n", "utf-8")
    img(root / "b" / "instruction.png")  # an image named like the file keeps being an image
    _, report = add_dataset(DatasetSettings("e", str(root), folder_caption="instruction.txt"))
    assert report.problems == []
    got = items()
    assert caps(got["a/x"])["instruction"].content == "remove the background"
    assert "b/instruction" in got


def test_cli_add_with_separator_and_folder_caption(db_path, tmp_path):
    root = tmp_path / "ds"
    img(root / "0.src.jpg")
    img(root / "0.mask.png")
    (root / "instruction.txt").write_text("inpaint the masked area", "utf-8")
    run = run_cli(
        "dataset",
        "add",
        "d",
        str(root),
        "--db",
        str(db_path),
        "--suffix-separator",
        ".",
        "--image-suffixes",
        "src=source,mask",
        "--folder-caption",
        "instruction.txt",
        "--json",
    )
    assert run.returncode == 0, run.stderr
    d = json.loads(run.stdout)["dataset"]
    assert d["suffix_separator"] == "." and d["folder_caption"] == "instruction.txt"
    show = run_cli("dataset", "show", "d", "--db", str(db_path))
    assert "suffix separator: ." in show.stdout and "folder caption:   instruction.txt" in show.stdout
