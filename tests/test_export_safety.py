"""OUTDIR safety (EX-3): only new or empty folders, nothing written outside them, the
source dataset untouched, unique names, clean cancellation."""

from __future__ import annotations

import errno
import os
import zipfile
from pathlib import Path

import pytest
from export_helpers import make_synthetic, register, tree_state

from sushitui.export import ExportError, ExportOptions, export_dataset
from sushitui.export.writer import STAGING_NAME, safe_component
from sushitui.progress import CancelToken


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


def test_non_empty_outdir_is_refused_and_left_alone(db, tmp_path):
    ds, _ = make_synthetic(tmp_path, 10)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export_dataset(ds.id, out, ExportOptions())
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ExportError, match="not a folder"):
        export_dataset(ds.id, tmp_path / "afile", ExportOptions())


def test_outdir_inside_the_dataset_is_refused(db, tmp_path):
    ds, root = make_synthetic(tmp_path, 10)
    before = tree_state(root)
    with pytest.raises(ExportError, match="inside the dataset folder"):
        export_dataset(ds.id, root / "export", ExportOptions())
    assert tree_state(root) == before


def test_empty_outdir_is_fine_and_new_parents_are_created(db, tmp_path):
    ds, _ = make_synthetic(tmp_path, 10)
    (tmp_path / "empty").mkdir()
    assert export_dataset(ds.id, tmp_path / "empty", ExportOptions()).items_exported == 10
    assert export_dataset(ds.id, tmp_path / "a" / "b" / "new", ExportOptions()).items_exported == 10


@pytest.mark.parametrize("fmt", ["txt", "kohya-json", "kohya-toml", "ai-toolkit"])
def test_source_tree_is_untouched(db, tmp_path, fmt):
    ds, root = make_synthetic(tmp_path, 40, group_fraction=0.2)
    before = tree_state(root)
    out = tmp_path / "out"
    report = export_dataset(ds.id, out, ExportOptions(format=fmt, trigger="ohwx", underscores_to_spaces=True))
    assert report.items_exported == 40
    assert tree_state(root) == before
    # hard links share the image bytes but nothing of the source was rewritten
    assert not list(out.rglob(f"*{STAGING_NAME}*"))


def test_hostile_paths_from_the_database_cannot_escape(db, tmp_path):
    from sushitui.store import Item, write_transaction

    ds, root = make_synthetic(tmp_path, 6, nested=False)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not yours")
    items = list(Item.select().where(Item.dataset == ds.id).order_by(Item.id))
    with write_transaction():
        Item.update(image_path="../secret.png").where(Item.id == items[0].id).execute()
        Item.update(image_path=str(secret)).where(Item.id == items[1].id).execute()
        Item.update(rel_dir="../../escape", base_name="../../../evil").where(Item.id == items[2].id).execute()
        Item.update(rel_dir="/etc", base_name="/etc/passwd").where(Item.id == items[3].id).execute()
    out = tmp_path / "out"
    report = export_dataset(ds.id, out, ExportOptions())
    bad = {p.item_id for p in report.problems}
    assert {items[0].id, items[1].id} <= bad
    assert report.items_exported == 4
    real_out = os.path.realpath(out)
    for p in all_files(out):
        assert os.path.realpath(p.parent).startswith(real_out + os.sep)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "evil.png").exists()
    assert secret.read_bytes() == b"not yours"
    assert not any(p.read_bytes() == b"not yours" for p in all_files(out))


def test_safe_component_never_yields_traversal():
    for name in ["..", ".", "", "a/b", "..\\x", "\x1b[31mred", "x\u202e", STAGING_NAME, "..hidden", "/abs"]:
        c = safe_component(name)
        assert c not in ("", ".", "..") and "/" not in c and "\\" not in c and not c.startswith("..")
        assert c != STAGING_NAME and all(ord(ch) >= 32 for ch in c)


def test_colliding_names_are_made_unique(db, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    from sushitui.dataset.synthetic import png_bytes

    # three images that would all become a.png / a.txt (case-insensitively) in one folder
    for name in ("a.png", "A.jpg", "a.webp"):
        (src / name).write_bytes(png_bytes(16, 16, 1))
    (src / "a.txt").write_text("one, two")
    ds = register("coll", src)
    out = tmp_path / "out"
    report = export_dataset(ds.id, out, ExportOptions())
    folder = next(out.iterdir())
    names = sorted(p.name for p in folder.iterdir())
    stems = [Path(n).stem.casefold() for n in names if not n.endswith(".txt")]
    assert len(stems) == len(set(stems)) == report.items_exported
    # every item whose export name collides (case-insensitively) with an earlier one is renamed
    from sushitui.store import Item

    export_stems = [i.base_name.casefold() for i in Item.select().where(Item.dataset == ds.id)]
    assert len(report.renamed) == len(export_stems) - len(set(export_stems)) >= 1


def test_cancel_leaves_outdir_empty(db, tmp_path):
    ds, _ = make_synthetic(tmp_path, 150)
    token = CancelToken()

    def progress(ev):
        token.cancel()  # the user presses Esc as soon as the export starts

    out = tmp_path / "out"
    report = export_dataset(ds.id, out, ExportOptions(), progress=progress, cancel=token)
    assert report.cancelled and report.items_exported < 150
    assert list(out.iterdir()) == []


def test_hard_link_falls_back_to_copy_across_devices(db, tmp_path, monkeypatch):
    ds, root = make_synthetic(tmp_path, 8, nested=False)

    def cross_device(src, dst, *a, **k):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    out = tmp_path / "out"
    report = export_dataset(ds.id, out, ExportOptions())
    assert report.images_copied == 8 and report.images_linked == 0
    img = next(p for p in all_files(out) if p.suffix == ".png")
    assert os.stat(img).st_nlink == 1


def test_link_symlink_and_copy_modes(db, tmp_path):
    ds, root = make_synthetic(tmp_path, 5, nested=False)
    for mode in ("link", "symlink", "copy"):
        out = tmp_path / f"out-{mode}"
        report = export_dataset(ds.id, out, ExportOptions(link_mode=mode))
        img = next(p for p in all_files(out) if p.suffix == ".png")
        src = root / img.name
        if mode == "link":
            assert report.images_linked == 5 and os.path.samefile(img, src)
        elif mode == "symlink":
            assert report.images_symlinked == 5 and img.is_symlink() and os.path.samefile(img, src)
        else:
            assert report.images_copied == 5 and not os.path.samefile(img, src)
            assert img.read_bytes() == src.read_bytes()


def test_zip_holds_the_whole_export(db, tmp_path):
    ds, _ = make_synthetic(tmp_path, 12)
    out = tmp_path / "out"
    report = export_dataset(ds.id, out, ExportOptions(format="kohya-toml", zip=True))
    assert [p.name for p in out.iterdir()] == ["out.zip"] and report.zip_path == str(out / "out.zip")
    with zipfile.ZipFile(out / "out.zip") as zf:
        names = zf.namelist()
        assert "dataset.toml" in names
        assert sum(n.endswith(".png") for n in names) == 12
        assert b'image_dir = "./' in zf.read("dataset.toml")  # relative to where it is unpacked


def test_missing_image_is_a_problem_not_a_crash(db, tmp_path):
    ds, root = make_synthetic(tmp_path, 6, nested=False)
    victim = sorted(root.glob("*.png"))[0]
    victim.unlink()
    report = export_dataset(ds.id, tmp_path / "out", ExportOptions())
    assert report.items_exported == 5
    assert len(report.problems) == 1 and "missing" in report.problems[0].reason


def test_full_disk_stops_with_a_clear_message_and_leaves_nothing(db, tmp_path, monkeypatch):
    import sushitui.dataset.caption_files as cf

    ds, _ = make_synthetic(tmp_path, 30, nested=False)
    real_write = os.write
    calls = {"n": 0}

    def failing_write(fd, data):
        calls["n"] += 1
        if calls["n"] > 10:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(cf.os, "write", failing_write)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="full"):
        export_dataset(ds.id, out, ExportOptions())
    monkeypatch.undo()
    assert list(out.iterdir()) == []
