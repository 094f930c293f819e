"""kohya's other caption extensions: ``.caption`` (sd-scripts' default) and ``.cap``
(the kohya_ss GUI's WD14 captioner) are caption files like ``.txt``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PIL import Image

from sushitui.dataset.captions import set_tags
from sushitui.dataset.items import item_to_dict, list_items
from sushitui.dataset.registry import DatasetSettings, add_dataset, reindex
from sushitui.store import Caption, Item, ItemTag

KOHYA_GUI = Path("kohya-ss-gui-test") / "img" / "10_darius kawasaki person"


def img(path: Path, size=(16, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (30, 120, 200)).save(path)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def items_by_base(ds) -> dict[str, dict]:
    return {d["base_name"]: d for d in (item_to_dict(i) for i in list_items(ds.id))}


def captions_by_subtype(d: dict) -> dict[str, dict]:
    caps = {c["subtype"]: c for c in d["captions"]}
    assert len(caps) == len(d["captions"]), f"two captions share a subtype: {d['captions']}"
    return caps


def problems_by_path(report) -> dict[str, str]:
    return {p.path: p.reason for p in report.problems}


def copy_kohya_gui(testdata, tmp_path) -> Path:
    root = tmp_path / "kohya"
    shutil.copytree(testdata / KOHYA_GUI, root / KOHYA_GUI.name)
    # shared/ is read-only; a read-only caption is (rightly) never rewritten, and the
    # copy stands for the user's own, writable folder
    for p in root.rglob("*"):
        if p.is_file():
            p.chmod(0o644)
    return root


def test_kohya_gui_folder_txt_is_main_and_cap_is_tags(db, testdata, tmp_path):
    root = copy_kohya_gui(testdata, tmp_path)
    folder = root / KOHYA_GUI.name
    ds, report = add_dataset(DatasetSettings("kohya", str(root)))
    assert report.items_added == 8 and report.problems == []
    assert ds.total_captions == 16
    items = items_by_base(ds)
    assert set(items) == {"Dariusz_Zawadzki", *(f"Dariusz_Zawadzki_{n}" for n in range(2, 9))}
    for base, d in items.items():
        caps = captions_by_subtype(d)
        assert set(caps) == {"main", "cap"}, base
        main, cap = caps["main"], caps["cap"]
        assert main["type"] == "natural_language" and main["file"] == f"{KOHYA_GUI.name}/{base}.txt"
        assert main["content"] == (folder / f"{base}.txt").read_text(encoding="utf-8")
        assert cap["type"] == "tags" and cap["file"] == f"{KOHYA_GUI.name}/{base}.cap"
        assert cap["content"] == (folder / f"{base}.cap").read_text(encoding="utf-8")
        # the tag rows come from the .cap, under its subtype
        expected = [t.strip() for t in cap["content"].split(",") if t.strip()]
        assert [t["tag"] for t in d["tags"] if t["subtype"] == "cap"] == expected
        assert not [t for t in d["tags"] if t["subtype"] == "main"]
    first = items["Dariusz_Zawadzki"]
    assert [t["tag"] for t in first["tags"]][:3] == ["solo", "simple background", "teeth"]
    assert captions_by_subtype(first)["main"]["content"].startswith("a painting of a steam punk skull")
    assert ItemTag.select().where(ItemTag.norm == "gas mask").count() == 4
    # nothing changed on disk: a reindex reads nothing again
    again = reindex("kohya")
    assert again.items_unchanged == 8 and again.captions == 0


def test_caption_extension_alone_is_main(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "a.png")
    write(root / "a.caption", "1girl, solo, smile")
    img(root / "B.png")
    write(root / "B.CAPTION", "1boy, hat")  # extensions compare case-insensitively
    img(root / "c.png")
    write(root / "c.cap", "a cat sitting on a windowsill in the afternoon sun.")
    ds, report = add_dataset(DatasetSettings("cap", str(root)))
    assert report.problems == [] and report.items_added == 3
    items = items_by_base(ds)
    a = captions_by_subtype(items["a"])
    assert set(a) == {"main"} and a["main"]["type"] == "tags" and a["main"]["file"] == "a.caption"
    assert [t["tag"] for t in items["a"]["tags"]] == ["1girl", "solo", "smile"]
    assert {t["subtype"] for t in items["a"]["tags"]} == {"main"}
    assert Item.get(Item.base_name == "a").tag_count == 3
    assert captions_by_subtype(items["B"])["main"]["file"] == "B.CAPTION"
    c = captions_by_subtype(items["c"])
    assert set(c) == {"main"} and c["main"]["type"] == "natural_language" and c["main"]["file"] == "c.cap"


def test_caption_and_cap_without_txt(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "x.png")
    write(root / "x.caption", "a woman reading a book in a quiet library.")
    write(root / "x.cap", "1girl, book, library")
    ds, report = add_dataset(DatasetSettings("two", str(root)))
    assert report.problems == []
    caps = captions_by_subtype(items_by_base(ds)["x"])
    assert {s: c["file"] for s, c in caps.items()} == {"main": "x.caption", "cap": "x.cap"}
    assert caps["cap"]["type"] == "tags"


def test_suffixed_cap_and_group_caption(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "x.png")
    write(root / "x.txt", "1girl, solo")
    write(root / "x_alt.cap", "a girl alone on a beach at sunset, looking at the sea.")
    img(root / "pair_source.png")
    img(root / "pair_target.png")
    write(root / "pair_instruction.cap", "make the sky red")
    ds, report = add_dataset(DatasetSettings("sfx", str(root)))
    assert report.problems == []
    items = items_by_base(ds)
    x = captions_by_subtype(items["x"])
    assert {s: c["file"] for s, c in x.items()} == {"main": "x.txt", "alt": "x_alt.cap"}
    assert x["alt"]["type"] == "natural_language"
    pair = items["pair"]
    assert pair["type"] == "group"
    caps = captions_by_subtype(pair)
    assert set(caps) == {"instruction"}
    assert caps["instruction"]["type"] == "instruction" and caps["instruction"]["file"] == "pair_instruction.cap"


def test_two_files_for_one_subtype_txt_wins_and_the_user_is_told(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "x.png")
    write(root / "x.txt", "1girl")
    write(root / "x_alt.txt", "red, blue")
    write(root / "x_alt.cap", "green, yellow")
    ds, report = add_dataset(DatasetSettings("clash", str(root)))
    caps = captions_by_subtype(items_by_base(ds)["x"])
    assert caps["alt"]["file"] == "x_alt.txt" and caps["alt"]["content"] == "red, blue"
    reason = problems_by_path(report)["x_alt.cap"]
    assert "two 'alt' captions" in reason and "x_alt.txt is used" in reason and "ignored" in reason
    assert ".txt captions come before .cap" in reason
    assert "x_alt.txt" not in problems_by_path(report)
    # both stay on disk
    assert (root / "x_alt.cap").read_text(encoding="utf-8") == "green, yellow"
    assert not ItemTag.select().where(ItemTag.norm == "green").exists()


def test_suffixed_txt_beats_a_derived_subtype_of_another_extension(db, tmp_path):
    # x.caption beside x.txt would be 'caption', which x_caption.txt names explicitly
    root = tmp_path / "ds"
    img(root / "x.png")
    write(root / "x.txt", "1girl")
    write(root / "x.caption", "from the caption file")
    write(root / "x_caption.txt", "from the suffixed txt")
    ds, report = add_dataset(DatasetSettings("clash2", str(root)))
    caps = captions_by_subtype(items_by_base(ds)["x"])
    assert {s: c["file"] for s, c in caps.items()} == {"main": "x.txt", "caption": "x_caption.txt"}
    assert "x_caption.txt is used" in problems_by_path(report)["x.caption"]


def test_editing_cap_tags_rewrites_the_cap_file_only(db, testdata, tmp_path):
    root = copy_kohya_gui(testdata, tmp_path)
    folder = root / KOHYA_GUI.name
    txt_before = (folder / "Dariusz_Zawadzki_2.txt").read_bytes()
    ds, _ = add_dataset(DatasetSettings("kohya", str(root)))
    item = Item.get(Item.base_name == "Dariusz_Zawadzki_2")
    report = set_tags(item, ["no humans", "painting", "skull"], subtype="cap")
    assert report.changed == 1 and report.files_written == [f"{KOHYA_GUI.name}/Dariusz_Zawadzki_2.cap"]
    assert (folder / "Dariusz_Zawadzki_2.cap").read_text(encoding="utf-8") == "no humans, painting, skull"
    assert (folder / "Dariusz_Zawadzki_2.txt").read_bytes() == txt_before
    assert not (folder / "Dariusz_Zawadzki_2_cap.txt").exists()
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("Dariusz_Zawadzki_2.")) == [
        "Dariusz_Zawadzki_2.cap",
        "Dariusz_Zawadzki_2.jpg",
        "Dariusz_Zawadzki_2.txt",
    ]
    d = item_to_dict(Item.get_by_id(item.id))
    assert [t["tag"] for t in d["tags"] if t["subtype"] == "cap"] == ["no humans", "painting", "skull"]
    # the index knows the new file: the next reindex sees no external change
    again = reindex("kohya")
    assert again.captions == 0 and again.problems == []


def test_reindex_picks_up_an_external_edit_of_a_cap_file(db, tmp_path):
    root = tmp_path / "ds"
    img(root / "x.png")
    write(root / "x.txt", "a red car parked in front of a house.")
    cap = write(root / "x.cap", "car, red, house")
    ds, _ = add_dataset(DatasetSettings("ext", str(root)))
    write(cap, "car, blue, garage, night")
    st = cap.stat()
    os.utime(cap, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # coarse-mtime filesystems
    report = reindex("ext")
    assert report.captions == 1
    caps = captions_by_subtype(items_by_base(ds)["x"])
    assert caps["cap"]["content"] == "car, blue, garage, night"
    assert [t.tag for t in ItemTag.select().where(ItemTag.subtype == "cap").order_by(ItemTag.position)] == [
        "car",
        "blue",
        "garage",
        "night",
    ]
    assert caps["main"]["content"] == "a red car parked in front of a house."


def test_adding_a_txt_beside_a_cap_moves_the_cap_out_of_main(db, tmp_path):
    # x.cap alone is main; once a BLIP x.txt appears it is main and x.cap becomes 'cap'
    root = tmp_path / "ds"
    img(root / "x.png")
    write(root / "x.cap", "1girl, solo, smile")
    ds, _ = add_dataset(DatasetSettings("grow", str(root)))
    assert Item.get().tag_count == 3
    write(root / "x.txt", "a girl smiling at the camera in a garden.")
    reindex("grow")
    caps = captions_by_subtype(items_by_base(ds)["x"])
    assert {s: (c["file"], c["type"]) for s, c in caps.items()} == {
        "main": ("x.txt", "natural_language"),
        "cap": ("x.cap", "tags"),
    }
    assert {t.subtype for t in ItemTag.select()} == {"cap"}
    assert Item.get().tag_count == 0  # tag_count counts main tags
    # and back: removing the .txt makes the .cap main again
    (root / "x.txt").unlink()
    reindex("grow")
    caps = captions_by_subtype(items_by_base(ds)["x"])
    assert {s: c["file"] for s, c in caps.items()} == {"main": "x.cap"}
    assert {t.subtype for t in ItemTag.select()} == {"main"} and Item.get().tag_count == 3
    assert Caption.select().count() == 1
