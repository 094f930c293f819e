"""Issue 14, items 1-2: sushitui processes serialise their caption writes (no lost or
refused edits between them), and an editor's save is checked against what the editor
read, so another process's edit since is a conflict, never silently overwritten."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from reliability_support import cli_env, reindex_and_check

from sushitui.tags.normalize import split_tags

CLI = [sys.executable, "-m", "sushitui"]


def _folder(root: Path, n: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (8, 8), (10, 90, 30))
    for i in range(n):
        img.save(root / f"i{i:05d}.png")
        (root / f"i{i:05d}.txt").write_text(f"base_{i}, solo")


def _cli(db_path: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=cli_env(db_path), capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_two_cli_bulk_edits_at_once_both_land_on_every_item(db_path, tmp_path):
    """The reproduction: two `tag add` on one 2,000-item dataset at the same time. On the
    old code about half of each was refused as 'changed by another program' (the other
    program being sushitui) and some were lost silently."""
    root = tmp_path / "ds"
    n = 2000
    _folder(root, n)
    assert _cli(db_path, "dataset", "add", "ds", str(root)).returncode == 0
    procs = [
        subprocess.Popen(
            [*CLI, "tag", "add", "ds", tag, "--json"],
            env=cli_env(db_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("left", "right")
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "another program" not in out + err, (out + err)[-2000:]
    import json

    for out, _err in outs:
        report = json.loads(out)
        assert report["items_changed"] == n and not report["problems"], report["problems"][:3]
    for i in range(n):
        tags = split_tags((root / f"i{i:05d}.txt").read_text())
        assert sorted(tags[2:]) == ["left", "right"] and tags[:2] == [f"base_{i}", "solo"], (i, tags)
    res = _cli(db_path, "items", "ds", "--query", "left, right", "--json", "--limit", str(n + 1))
    assert len(res.stdout.splitlines()) == n, "the index lost tags the files have"
    report = reindex_and_check(db_path, "ds", n)  # the index holds what every file holds
    assert report["items_updated"] == 0, "the index did not match the files"


def test_an_editor_save_after_another_process_edited_the_item_is_a_conflict(db, tmp_path):
    from detail_helpers import make_dataset

    from sushitui.dataset.bulk_edit import bulk_add
    from sushitui.dataset.caption_files import CaptionConflict
    from sushitui.dataset.item_view import load_item_view, save_tags, take_disk_tags

    ds, ids = make_dataset(tmp_path / "ds", {"a": "cat, dog"})
    view = load_item_view(ids[0])  # the editor shows cat, dog
    bulk_add(ds, [ids[0]], "from_cli")  # another process adds a tag and updates the index
    path = tmp_path / "ds" / "a.txt"
    with pytest.raises(CaptionConflict):
        save_tags(ids[0], "main", ["cat", "dog", "mine"], view=view)
    assert split_tags(path.read_text()) == ["cat", "dog", "from_cli"], "the other edit was overwritten"
    # the user takes the file's version; the next save starts from it
    assert take_disk_tags(ids[0], "main", view=view) == ["cat", "dog", "from_cli"]
    save_tags(ids[0], "main", ["cat", "dog", "from_cli", "mine"], view=view)
    assert split_tags(path.read_text()) == ["cat", "dog", "from_cli", "mine"]
    # and a save of the editor's own last write is no conflict
    save_tags(ids[0], "main", ["cat", "dog", "from_cli", "mine", "more"], view=view)


def test_a_hand_edit_then_reindex_is_a_conflict_for_an_open_editor(db, tmp_path):
    from detail_helpers import make_dataset

    from sushitui.dataset.caption_files import CaptionConflict
    from sushitui.dataset.item_view import load_item_view, save_tags, save_text
    from sushitui.dataset.registry import reindex

    _ds, ids = make_dataset(tmp_path / "ds", {"a": "cat, dog", "b": "A photo of a cat sitting on a mat."})
    view = load_item_view(ids[0])
    (tmp_path / "ds" / "a.txt").write_text("cat, dog, by_hand")
    reindex("ds")  # the index now agrees with the file; the editor still shows the old text
    with pytest.raises(CaptionConflict):
        save_tags(ids[0], "main", ["cat"], view=view)
    assert (tmp_path / "ds" / "a.txt").read_text() == "cat, dog, by_hand"
    text_view = load_item_view(ids[1])
    assert text_view.text_caption("natural_language").subtype == "main"
    (tmp_path / "ds" / "b.txt").write_text("Changed by hand. A dog on a mat.")
    reindex("ds")
    with pytest.raises(CaptionConflict):
        save_text(ids[1], "natural_language", "main", "My text.", view=text_view)
    assert (tmp_path / "ds" / "b.txt").read_text() == "Changed by hand. A dog on a mat."


def test_a_scan_committing_after_an_edit_keeps_the_edit(db, tmp_path, monkeypatch):
    """A reindex whose worker read a caption before an editor wrote it must not put the
    old text back into the index (then every later edit is refused as a conflict)."""
    from detail_helpers import make_dataset

    from sushitui.dataset import scanner
    from sushitui.dataset.bulk_edit import bulk_add
    from sushitui.dataset.captions import set_tags
    from sushitui.dataset.registry import reindex
    from sushitui.store import Caption, Item

    ds, ids = make_dataset(tmp_path / "ds", {"a": "cat", "b": "dog"})
    (tmp_path / "ds" / "a.txt").write_text("cat, changed")  # makes the reindex read a.txt
    real_write = scanner.Writer.write
    item_a = Item.get_by_id(ids[0])

    def edit_then_write(self, batches):
        # after the worker's read; force: this editor had adopted the file's version
        set_tags(item_a, ["cat", "changed", "edited_meanwhile"], force=True)
        real_write(self, batches)

    monkeypatch.setattr(scanner.Writer, "write", edit_then_write)
    reindex("ds")
    monkeypatch.undo()
    cap = Caption.get(Caption.item == ids[0])
    assert split_tags(cap.content) == ["cat", "changed", "edited_meanwhile"]
    report = bulk_add(ds, None, "next")
    assert not report.problems, report.problems
    assert split_tags((tmp_path / "ds" / "a.txt").read_text()) == ["cat", "changed", "edited_meanwhile", "next"]


def test_the_write_lock_waits_a_bounded_time_and_names_the_holder(db, tmp_path):
    from sushitui.dataset.write_lock import DatasetBusy, dataset_write_lock

    root = tmp_path / "ds"
    root.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from sushitui.store import open_database; "
                "from sushitui.dataset.write_lock import dataset_write_lock; open_database(sys.argv[1]); "
                "cm = dataset_write_lock(sys.argv[2], what='tag add'); cm.__enter__(); print('held', flush=True); time.sleep(30)"
            ),
            str(db.database),
            str(root),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        with pytest.raises(DatasetBusy) as info:
            with dataset_write_lock(root, name="ds", wait=0.5):
                pass
        assert 0.4 < time.monotonic() - start < 5
        message = str(info.value)
        assert "'ds' is busy" in message and f"pid {holder.pid}" in message and "tag add" in message
    finally:
        holder.kill()
        holder.wait()
    with dataset_write_lock(root, wait=5):  # the kernel released it with the dead holder
        pass


@pytest.mark.slow
def test_the_app_shows_a_conflict_when_the_cli_edited_the_open_item(db_path, tmp_path):
    """Item detail open; `sushitui tag add X --items ID` in another process; the user's
    next save must not wipe X (on the old code the autosave did, with no dialog)."""
    import asyncio

    from tui_support import settle

    from sushitui.tui.app import SushiApp
    from sushitui.tui.screens.conflict import ConflictDialog
    from sushitui.tui.screens.item_detail import ItemDetailScreen

    root = tmp_path / "ds"
    _folder(root, 3)
    assert _cli(db_path, "dataset", "add", "ds", str(root)).returncode == 0
    from sushitui.store import Item, open_database

    db = open_database(db_path)
    ids = [i.id for i in Item.select().order_by(Item.base_name)]
    db.close()

    async def drive() -> None:
        app = SushiApp(db_path, first_start=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            app.push_screen(ItemDetailScreen(ids[0], ids))
            screen = app.screen
            await settle(pilot, lambda: screen.view is not None, timeout=10, what="item loaded")
            res = await asyncio.to_thread(_cli, db_path, "tag", "add", "ds", "from_cli", "--items", str(ids[0]))
            assert res.returncode == 0, res.stderr
            await pilot.press("a", *"mine", "enter", "escape", "ctrl+s")
            await settle(pilot, lambda: isinstance(app.screen, ConflictDialog), timeout=10, what="conflict dialog")
            assert "from_cli" in split_tags((root / "i00000.txt").read_text())

    asyncio.run(drive())


def test_quick_tagging_shows_a_conflict_when_another_process_edited_the_image(db, tmp_path):
    """Quick tagging loaded the image's tags; a bulk edit (another sushitui process, same
    index) adds one; the preset toggle saved on Enter must ask, not overwrite."""
    import asyncio

    from detail_helpers import ScreenApp, make_dataset
    from tui_support import settle

    from sushitui.dataset.bulk_edit import bulk_add
    from sushitui.dataset.item_view import set_presets
    from sushitui.tui.screens.conflict import ConflictDialog
    from sushitui.tui.screens.quick_tag import QuickTagScreen

    root = tmp_path / "q"
    ds, ids = make_dataset(root, {"a": "1girl", "b": "cat"})
    set_presets(ds.id, ["smile"])

    async def drive() -> None:
        app = ScreenApp(lambda: QuickTagScreen(ds.id, ids))
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await asyncio.to_thread(bulk_add, ds.id, [ids[0]], "from_cli")
            await pilot.press("1", "enter")
            await settle(pilot, lambda: isinstance(app.screen, ConflictDialog), timeout=10, what="conflict dialog")
            assert split_tags((root / "a.txt").read_text()) == ["1girl", "from_cli"]

    asyncio.run(drive())


@pytest.mark.slow
def test_item_detail_asks_before_replacing_a_caption_that_is_not_clean_text(db, tmp_path):
    import asyncio

    from detail_helpers import ScreenApp, make_dataset
    from tui_support import screen_text, settle

    from sushitui.dataset.registry import reindex
    from sushitui.tui.screens.item_detail import ItemDetailScreen
    from sushitui.tui.widgets.confirm import ConfirmDialog

    root = tmp_path / "ds"
    _ds, ids = make_dataset(root, {"a": "x", "b": "y"})
    (root / "a.txt").write_bytes(b"cat, sm\x00ile")
    reindex("ds")

    async def drive(answer: str) -> None:
        app = ScreenApp(lambda: ItemDetailScreen(ids[0], ids))
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot, lambda: getattr(app.screen, "view", None) is not None, what="item loaded")
            await pilot.press("a", *"new", "enter", "escape", "ctrl+s")
            await settle(pilot, lambda: isinstance(app.screen, ConfirmDialog), timeout=10, what="confirm dialog")
            assert "NUL or control" in screen_text(app) and "original bytes are lost" in screen_text(app)
            await pilot.press(answer)
            await settle(pilot)

    asyncio.run(drive("n"))
    assert (root / "a.txt").read_bytes() == b"cat, sm\x00ile", "refusing kept the bytes"
    asyncio.run(drive("y"))
    assert "new" in split_tags((root / "a.txt").read_text())
