"""Export of images whose names are near the file-system limit (issue 14 item 12).

A name of 201-255 bytes used to stop every export format with "unsafe export name".
Now such stems are shortened to a stable ``<prefix cut on a character boundary>-<8 hex
of sha256 of the full name>``, every file of the item (image, caption, mask, control
image, metadata key) uses that stem, and the report says which names were shortened.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from export_helpers import register
from PIL import Image

from sushitui.export import ExportOptions, export_dataset
from sushitui.export.writer import MAX_STEM_BYTES, NAME_MAX_BYTES

FORMATS = ["txt", "kohya-json", "kohya-toml", "ai-toolkit"]
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp"}
SIZE = (32, 24)
# endings added to an exported stem, by the export or by trainers writing beside the image:
# our extensions, sd-scripts' latent / text-encoder caches, ai-toolkit's latent cache
# (``_latent_cache/<stem>_<22-char hash>.safetensors``), a mask named after the image
TRAINER_SUFFIXES = [
    ".jpeg",
    ".txt",
    ".npz",
    "_mask.png",
    "_1024x1024_flux.npz",
    "_1024x1024_lumina.npz",
    "_lumina_te.npz",
    "_te_outputs.npz",
    "_" + "A" * 22 + ".safetensors",
]
HASHED = re.compile(r"-([0-9a-f]{8})(?:_\d+)?$")
JA = "写真"  # 3 bytes per character: a cut on a byte count can fall inside one


def nbytes(s: str) -> int:
    return len(s.encode("utf-8"))


def ja_stem(n: int, fill: str = "x") -> str:
    """A stem of exactly ``n`` UTF-8 bytes that starts with Japanese (so the shortening
    cut, far beyond byte 100, falls among 3-byte characters)."""
    chars = (JA * n)[: n // 3]
    return chars + fill * (n - nbytes(chars))


# (folder, stem) of the single images; the image file is <stem>.png
SINGLE_STEMS = [
    "short",
    "a" * 197,  # 201-byte file name, stem under the limit: kept as it is
    "b" * 200,  # stem exactly at the limit: kept
    "d" * 201,  # 205-byte file name: the first stem that is shortened
    "e" * 236,  # 240-byte file name
    "f" * 251,  # 255-byte file name, the longest a file system allows
    ja_stem(197),
    ja_stem(201),
    ja_stem(236),
    ja_stem(251),
    # two 255-byte names that share a 250-byte prefix: shortened, they must not collide
    "c" * 250 + "1",
    "c" * 250 + "2",
    # and two that differ only in case (exported names are unique case-insensitively)
    "g" * 250 + "X",
    "g" * 250 + "x",
]
# group items (layout C): X_target.png + X_source.png + X_mask.png + X.txt, the longest
# file name (X_target.png) 255 bytes
GROUP_STEMS = ["grp", "h" * 244, ja_stem(244, "h"), "i" * 200]


def make_long_dataset(tmp_path: Path):
    """``10_single/`` with single images and ``5_groups/`` with target/source/mask groups;
    every image's pixels and every caption are unique, so the pairing can be checked by
    content. Returns the dataset and {item key: expected files} where the key is the
    caption's unique tag."""
    root = tmp_path / "src"
    single, groups = root / "10_single", root / "5_groups"
    single.mkdir(parents=True)
    groups.mkdir()
    expected = {}
    n = 0

    def image(path: Path, mode: str = "RGB") -> bytes:
        nonlocal n
        n += 1
        color = (n * 7 % 256, n * 13 % 256, n * 29 % 256) if mode == "RGB" else n * 11 % 256
        Image.new(mode, SIZE, color).save(path)
        assert nbytes(path.name) <= NAME_MAX_BYTES
        return path.read_bytes()

    for i, stem in enumerate(SINGLE_STEMS):
        key = f"single_{i}"
        data = image(single / f"{stem}.png")
        (single / f"{stem}.txt").write_text(f"{key}, 1girl\n", encoding="utf-8")
        expected[key] = {"stem": stem, "folder": "10_single", "image": data, "source": f"10_single/{stem}.png"}
    for i, stem in enumerate(GROUP_STEMS):
        key = f"group_{i}"
        target = image(groups / f"{stem}_target.png")
        control = image(groups / f"{stem}_source.png")
        mask = image(groups / f"{stem}_mask.png", "L")
        (groups / f"{stem}.txt").write_text(f"{key}, 1boy\n", encoding="utf-8")
        expected[key] = {
            "stem": stem,
            "folder": "5_groups",
            "image": target,
            "control": control,
            "mask": mask,
            "source": f"5_groups/{stem}_target.png",
        }
    ds = register("long", root)
    from sushitui.store import Item

    assert Item.select().where(Item.dataset == ds.id).count() == len(expected)
    return ds, expected


def exported_files(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def by_content(out: Path, sub: str) -> dict[bytes, Path]:
    found = {}
    for p in (out / sub).rglob("*") if sub else out.rglob("*"):
        if p.is_file() and p.suffix in IMAGE_EXTS:
            data = p.read_bytes()
            assert data not in found, f"{p} and {found[data]} hold one image"
            found[data] = p
    return found


def caption_key(text: str) -> str:
    return text.split(",")[0].strip()


def assert_stem_shape(original: str, exported: str) -> None:
    """Short stems are kept; long ones are a prefix of the original plus the hash of
    the whole original name, within the limit."""
    assert nbytes(exported) <= MAX_STEM_BYTES, (nbytes(exported), exported)
    if nbytes(original) <= MAX_STEM_BYTES:
        assert exported == original or re.fullmatch(re.escape(original) + r"_\d+", exported), exported
        return
    m = HASHED.search(exported)
    assert m, f"{exported!r} has no hash suffix"
    assert m.group(1) == hashlib.sha256(original.encode("utf-8")).hexdigest()[:8]
    prefix = exported[: m.start()]
    assert original.startswith(prefix) and nbytes(prefix) >= MAX_STEM_BYTES - 20, prefix
    assert "\ufffd" not in exported


def check_export(out: Path, fmt: str, report, expected: dict) -> dict[str, str]:
    """Every item exported, its files paired by stem, names within the limit; returns
    {item key: exported image path relative to OUTDIR}."""
    assert report.items_exported == len(expected), report.problems
    assert [p for p in report.problems if p.item_id is not None] == []
    for rel in exported_files(out):
        name = rel.rsplit("/", 1)[-1]
        assert nbytes(name) <= NAME_MAX_BYTES
        stem = os.path.splitext(name)[0]
        if name not in ("dataset.toml", "metadata.json", "dataset.yaml"):
            assert nbytes(stem) <= MAX_STEM_BYTES, rel
            assert all(nbytes(stem + suffix) <= NAME_MAX_BYTES for suffix in TRAINER_SUFFIXES), rel

    images_root = "images" if fmt == "ai-toolkit" else ""
    images = by_content(out, images_root)
    exported: dict[str, str] = {}
    for key, exp in expected.items():
        img = images.get(exp["image"])
        assert img is not None, f"{key} ({exp['source']}) is missing"
        if fmt == "ai-toolkit":
            assert img.parent.parent == out / "images"
        assert_stem_shape(exp["stem"], img.stem)
        exported[key] = img.relative_to(out).as_posix()
        if fmt == "kohya-json":
            continue
        caption = img.with_suffix(".txt")
        assert caption_key(caption.read_text(encoding="utf-8")) == key, caption
        if "mask" not in exp:
            continue
        if fmt == "ai-toolkit":
            folder = img.parent.name
            control = out / "control" / folder / img.name
            assert control.read_bytes() == exp["control"], control
            mask = out / "mask" / folder / img.name
        else:
            mask = out / "masks" / img.relative_to(out).parent / img.name
        assert mask.read_bytes() == exp["mask"], mask

    if fmt == "kohya-json":
        meta = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
        assert len(meta) == len(expected)
        for key, rel in exported.items():
            # sd-scripts finds the image of a metadata key by trying the extensions
            assert os.path.splitext(rel)[0] in meta, rel
            assert caption_key(meta[os.path.splitext(rel)[0]]["tags"]) == key
    if fmt == "kohya-toml":
        doc = tomllib.loads((out / "dataset.toml").read_text(encoding="utf-8"))
        for sub in (s for d in doc["datasets"] for s in d["subsets"]):
            image_dir = Path(sub["image_dir"])
            stems = {p.stem for p in image_dir.iterdir() if p.suffix in IMAGE_EXTS}
            assert stems and all((image_dir / f"{s}.txt").is_file() for s in stems)
            if "conditioning_data_dir" in sub:
                cond = Path(sub["conditioning_data_dir"])
                assert {p.stem for p in cond.iterdir()} == stems
    if fmt == "ai-toolkit":
        doc = yaml.safe_load((out / "dataset.yaml").read_text(encoding="utf-8"))
        for entry in doc["datasets"]:
            folder = Path(entry["folder_path"])
            stems = {p.stem for p in folder.iterdir() if p.suffix in IMAGE_EXTS}
            for extra in ("control_path", "mask_path"):
                if extra in entry:
                    assert {p.stem for p in Path(entry[extra]).iterdir()} == stems
    return exported


@pytest.mark.parametrize("fmt", FORMATS)
def test_long_names_are_shortened_paired_and_reported(db, tmp_path, fmt):
    ds, expected = make_long_dataset(tmp_path)
    out = tmp_path / "out"
    report = export_dataset(ds.id, out, ExportOptions(format=fmt))
    exported = check_export(out, fmt, report, expected)

    # the two names that share a 250-byte prefix (and the two that differ in case) stay apart
    stems = [Path(p).stem.casefold() for p in exported.values()]
    assert len(stems) == len(set(stems))

    # the report names each shortened item: source image -> exported image, and all its files
    long_keys = {k for k, e in expected.items() if nbytes(e["stem"]) > MAX_STEM_BYTES}
    assert len(long_keys) == 12
    shortened = {s.source: s for s in report.shortened}
    assert set(shortened) == {expected[k]["source"] for k in long_keys}
    for key in long_keys:
        entry = shortened[expected[key]["source"]]
        assert entry.exported == exported[key]
        stem = Path(exported[key]).stem
        assert all(Path(f).stem == stem for f in entry.files)
        assert entry.exported in entry.files
        if fmt != "kohya-json":
            assert str(Path(entry.exported).with_suffix(".txt").as_posix()) in entry.files
        if "mask" in expected[key] and fmt == "ai-toolkit":
            assert {f.split("/")[0] for f in entry.files} == {"images", "control", "mask"}
        elif "mask" in expected[key] and fmt != "kohya-json":
            assert any(f.startswith("masks/") for f in entry.files)
    # shortening alone is not "made unique": no name here collides once shortened
    assert report.renamed == []
    as_json = report.to_dict()
    json.dumps(as_json)
    assert {d["source"]: d["exported"] for d in as_json["shortened"]} == {
        s.source: s.exported for s in report.shortened
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_second_export_gives_the_same_names_and_configs(db, tmp_path, fmt):
    ds, expected = make_long_dataset(tmp_path)
    outs = [tmp_path / "one", tmp_path / "two"]
    for out in outs:
        export_dataset(ds.id, out, ExportOptions(format=fmt, config_root="/train"))
    assert exported_files(outs[0]) == exported_files(outs[1])
    for cfg in ("dataset.toml", "metadata.json", "dataset.yaml"):
        if (outs[0] / cfg).exists():
            assert (outs[0] / cfg).read_bytes() == (outs[1] / cfg).read_bytes()


def test_zip_export_of_long_names(db, tmp_path):
    import zipfile

    ds, expected = make_long_dataset(tmp_path)
    out = tmp_path / "out"
    report = export_dataset(ds.id, out, ExportOptions(format="ai-toolkit", zip=True))
    assert report.items_exported == len(expected)
    with zipfile.ZipFile(report.zip_path) as zf:
        names = zf.namelist()
    assert all(nbytes(n.rsplit("/", 1)[-1]) <= NAME_MAX_BYTES for n in names)
    assert {s.exported for s in report.shortened} <= set(names)


def test_long_folder_names_are_shortened_the_same_way(db, tmp_path):
    root = tmp_path / "src"
    long_a = "10_" + "k" * 240 + "a"
    long_b = "10_" + "k" * 240 + "b"
    for folder in (long_a, long_b):
        (root / folder).mkdir(parents=True)
        Image.new("RGB", SIZE, (len(folder), 1, 2) if folder.endswith("a") else (3, 4, 5)).save(root / folder / "x.png")
        (root / folder / "x.txt").write_text(f"{folder[-1]}_tag\n", encoding="utf-8")
    ds = register("longdirs", root)
    for fmt in FORMATS:
        out = tmp_path / f"out-{fmt}"
        report = export_dataset(ds.id, out, ExportOptions(format=fmt))
        assert report.items_exported == 2, (fmt, report.problems)
        pngs = sorted(out.rglob("*.png"))
        assert len(pngs) == 2 and pngs[0].parent != pngs[1].parent, fmt  # two folders, not merged
        for p in out.rglob("*"):
            assert nbytes(p.name) <= NAME_MAX_BYTES
        assert {s.source for s in report.shortened} == {long_a, long_b}, fmt


def test_cli_reports_the_shortened_names(db, db_path, tmp_path, capsys):
    from sushitui.cli import main

    make_long_dataset(tmp_path)
    out = tmp_path / "out"
    assert main(["--db", str(db_path), "export", "long", str(out), "--format", "kohya-toml", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["shortened"]) == 12
    for entry in report["shortened"]:
        assert (out / entry["exported"]).is_file()
        assert all((out / f).is_file() for f in entry["files"])

    assert main(["--db", str(db_path), "export", "long", str(tmp_path / "human")]) == 0
    text = capsys.readouterr().out
    assert "12 names longer than 200 bytes were shortened" in text
    first = "10_single/" + "d" * 201 + ".png"
    assert first in text
    assert "-" + hashlib.sha256(("d" * 201).encode()).hexdigest()[:8] + ".png" in text


def test_dialog_reports_the_shortened_names(db, tmp_path):
    import asyncio

    from test_export_dialog import Host
    from textual.widgets import Input, Static
    from tui_support import settle

    from sushitui.tui.screens.export_dialog import ExportDialog

    ds, _ = make_long_dataset(tmp_path)
    dialog = ExportDialog(ds.id)
    app = Host(dialog)
    out = tmp_path / "out"

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot, lambda: len(dialog.preview_texts) == 3)
            await pilot.press(*"sks")
            dialog.query_one("#ex-outdir", Input).value = str(out)
            await pilot.press("ctrl+s")
            await settle(pilot, lambda: dialog.report is not None, timeout=30)
            assert dialog.report.items_exported == 18
            result = str(dialog.query_one("#export-result", Static).render())
            assert "12 long names shortened" in result
            first = dialog.report.shortened[0]
            assert first.source in result.replace("\n", "") and first.exported in result.replace("\n", "")

    asyncio.run(go())


def test_the_same_long_name_twice_in_one_output_folder_is_made_unique_within_the_limit(db, tmp_path):
    # ai-toolkit flattens p/q to p__q, so both folders' items land in images/p__q
    root = tmp_path / "src"
    stem = ja_stem(251)
    for i, folder in enumerate(("p/q", "p__q")):
        (root / folder).mkdir(parents=True)
        Image.new("RGB", SIZE, (i * 90, 10, 10)).save(root / folder / f"{stem}.png")
        (root / folder / f"{stem}.txt").write_text(f"item_{i}\n", encoding="utf-8")
    ds = register("twice", root)
    out = tmp_path / "out"
    report = export_dataset(ds.id, out, ExportOptions(format="ai-toolkit"))
    assert report.items_exported == 2
    pngs = sorted((out / "images" / "p__q").glob("*.png"))
    assert len(pngs) == 2
    for p in pngs:
        assert_stem_shape(stem, p.stem)
        assert caption_key(p.with_suffix(".txt").read_text(encoding="utf-8")) in ("item_0", "item_1")
    assert {caption_key(p.with_suffix(".txt").read_text(encoding="utf-8")) for p in pngs} == {"item_0", "item_1"}
    assert sorted(p.stem for p in pngs)[1].endswith("_2")
    assert len(report.renamed) == 1 and len(report.shortened) == 2
