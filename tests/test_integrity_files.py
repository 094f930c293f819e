"""Issue 14, items 3-7: what a bulk edit does with caption files a hostile or careless
user left: links out of the dataset, FIFOs and devices, read-only files, binary files,
names that look like our temporary files. Each was reproduced on the old code."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_support import run_cli
from PIL import Image
from reliability_support import cli_env

from sushitui.tags.normalize import split_tags

CLI = [sys.executable, "-m", "sushitui"]


def _images(root: Path, names: list[str], caption: str = "cat, solo") -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", (8, 8), (i * 20 % 255, 90, 30)).save(root / f"{name}.png")
        if caption is not None:
            (root / f"{name}.txt").write_text(caption)


def _cli(db_path: Path, *args: str, timeout: float | None = None):
    """The command in this process (cli_support.run_cli); with ``timeout``, in a process
    of its own that the test kills if it hangs (FIFOs, /dev/zero)."""
    if timeout is None:
        return run_cli(*args, env=cli_env(db_path))
    return subprocess.run([*CLI, *args], env=cli_env(db_path), capture_output=True, text=True, timeout=timeout)


def _add(db_path: Path, root: Path, name: str = "ds") -> None:
    res = _cli(db_path, "dataset", "add", name, str(root))
    assert res.returncode == 0, res.stderr


def _tag_add(db_path: Path, tag: str, name: str = "ds", timeout: float | None = None):
    return _cli(db_path, "tag", "add", name, tag, timeout=timeout)


# --- 3. links ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_folder_link_out_of_the_dataset_is_never_written_through(db_path, tmp_path):
    outside = tmp_path / "outside"
    _images(outside, ["secret"], "private, words")
    root = tmp_path / "ds"
    _images(root, ["a"])
    os.symlink(outside, root / "linked")
    _add(db_path, root)
    before = (outside / "secret.txt").read_bytes()
    res = _tag_add(db_path, "new_tag")
    assert (outside / "secret.txt").read_bytes() == before, "a file outside the dataset was rewritten"
    assert "linked/secret.txt" in res.stdout + res.stderr and "outside the dataset" in res.stdout + res.stderr
    assert split_tags((root / "a.txt").read_text()) == ["cat", "solo", "new_tag"], "the rest of the edit goes on"


@pytest.mark.slow
def test_a_caption_that_is_a_link_inside_the_dataset_is_written_through_and_stays_a_link(db_path, tmp_path):
    root = tmp_path / "ds"
    _images(root, ["a", "b"])
    shared = root / "shared_caption.txt.keep"
    shared.write_text("shared, tags")
    (root / "b.txt").unlink()
    os.symlink("shared_caption.txt.keep", root / "b.txt")
    _add(db_path, root)
    res = _tag_add(db_path, "added")
    assert res.returncode == 0, res.stderr
    assert (root / "b.txt").is_symlink(), "the link was replaced by a regular file"
    assert split_tags(shared.read_text()) == ["shared", "tags", "added"]


@pytest.mark.slow
def test_a_caption_link_to_a_file_outside_is_reported_not_followed(db_path, tmp_path):
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("outside, file")
    root = tmp_path / "ds"
    _images(root, ["a"], caption=None)
    os.symlink(outside, root / "a.txt")
    _add(db_path, root)
    res = _tag_add(db_path, "x")
    assert outside.read_text() == "outside, file"
    assert (root / "a.txt").is_symlink()
    assert "a.txt" in res.stdout + res.stderr and "outside the dataset" in res.stdout + res.stderr


# --- 4. FIFOs, devices --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_caption_never_hangs_a_bulk_edit(db_path, tmp_path):
    root = tmp_path / "ds"
    _images(root, ["a", "b"])
    _add(db_path, root)
    # the FIFO replaces b's caption after the scan: the bulk edit meets it on its own
    (root / "b.txt").unlink()
    os.mkfifo(root / "b.txt")
    start = time.monotonic()
    res = _tag_add(db_path, "z", timeout=30)
    assert time.monotonic() - start < 30
    assert stat.S_ISFIFO(os.lstat(root / "b.txt").st_mode), "the FIFO was replaced"
    assert "b.txt" in res.stdout + res.stderr and "not a regular file" in res.stdout + res.stderr
    assert split_tags((root / "a.txt").read_text())[-1] == "z"


@pytest.mark.slow
def test_a_caption_linked_to_dev_zero_is_a_problem_not_a_memory_error(db_path, tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    root = tmp_path / "ds"
    _images(root, ["a", "b"])
    _add(db_path, root)
    (root / "b.txt").unlink()
    os.symlink("/dev/zero", root / "b.txt")
    res = _tag_add(db_path, "z", timeout=60)
    assert "MemoryError" not in res.stderr and "Traceback" not in res.stderr
    assert "b.txt" in res.stdout + res.stderr
    assert os.path.islink(root / "b.txt")
    # the scanner reports it too, without reading it
    res = _cli(db_path, "dataset", "reindex", "ds", "--full", "--json")
    assert res.returncode == 0 and "Traceback" not in res.stderr
    assert "b.txt" in res.stdout


def test_reading_a_fifo_or_device_is_refused_at_once(tmp_path):
    from sushitui.dataset.caption_files import CaptionFileError, read_caption

    fifo = tmp_path / "x.txt"
    os.mkfifo(fifo)
    with pytest.raises(CaptionFileError, match="not a regular file"):
        read_caption(fifo)
    if os.path.exists("/dev/zero"):
        with pytest.raises(CaptionFileError, match="not a regular file"):
            read_caption("/dev/zero")


# --- 5. read-only and unreadable files ----------------------------------------------------


@pytest.mark.slow
def test_a_read_only_caption_is_reported_not_replaced(db_path, tmp_path):
    root = tmp_path / "ds"
    _images(root, ["a", "b", "c"])
    _add(db_path, root)
    os.chmod(root / "b.txt", 0o444)
    os.chmod(root / "c.txt", 0o000)
    try:
        res = _tag_add(db_path, "new")
        assert "Traceback" not in res.stderr
        assert stat.S_IMODE(os.stat(root / "b.txt").st_mode) == 0o444
        assert stat.S_IMODE(os.stat(root / "c.txt").st_mode) == 0o000
        os.chmod(root / "c.txt", 0o644)
        assert (root / "b.txt").read_text() == "cat, solo" and (root / "c.txt").read_text() == "cat, solo"
        out = res.stdout + res.stderr
        assert "b.txt" in out and "read-only" in out
        assert "c.txt" in out
        assert split_tags((root / "a.txt").read_text()) == ["cat", "solo", "new"], "the rest of the edit goes on"
    finally:
        for n in ("b", "c"):
            os.chmod(root / f"{n}.txt", 0o644)


# --- 6. binary and NUL-bearing captions ---------------------------------------------------


@pytest.mark.slow
def test_binary_and_nul_captions_are_never_rewritten_by_a_bulk_edit(db_path, tmp_path):
    root = tmp_path / "ds"
    _images(root, ["a", "bin", "nul"])
    binary = bytes(range(256)) * 5 + b"\xff\xfe\x00\x81"
    (root / "bin.txt").write_bytes(binary)
    (root / "nul.txt").write_bytes(b"cat, sm\x00ile")
    _add(db_path, root)
    res = _tag_add(db_path, "added")
    assert (root / "bin.txt").read_bytes() == binary
    assert (root / "nul.txt").read_bytes() == b"cat, sm\x00ile"
    out = res.stdout + res.stderr
    assert "bin.txt" in out and "nul.txt" in out and "not rewritten" in out
    assert split_tags((root / "a.txt").read_text()) == ["cat", "solo", "added"]


def test_an_explicit_edit_may_replace_a_binary_caption_when_the_user_agrees(db, tmp_path):
    from detail_helpers import make_dataset

    from sushitui.dataset.caption_files import LossyCaption
    from sushitui.dataset.item_view import load_item_view, save_tags

    _ds, ids = make_dataset(tmp_path / "ds", {"a": "x"})
    path = tmp_path / "ds" / "a.txt"
    path.write_bytes(b"cat, sm\x00ile")
    from sushitui.dataset.registry import reindex

    reindex("ds")
    view = load_item_view(ids[0])
    with pytest.raises(LossyCaption, match="NUL or control"):
        save_tags(ids[0], "main", ["cat", "smile"], view=view)
    assert path.read_bytes() == b"cat, sm\x00ile"
    save_tags(ids[0], "main", ["cat", "smile"], view=view, allow_lossy=True)
    assert path.read_text() == "cat, smile"


# --- 7. temporary-file names --------------------------------------------------------------


@pytest.mark.slow
def test_a_scan_never_deletes_user_files_that_look_like_temp_files(db_path, tmp_path):
    root = tmp_path / "ds"
    _images(root, ["a"])
    Image.new("RGB", (8, 8)).save(root / "photo.sushitui-tmp-.png")
    user_files = [
        root / "photo.sushitui-tmp-.png",
        root / "notes.sushitui-tmp-x.md",
        root / ".hidden.sushitui-tmp-draft.txt",
        root / "a.sushitui-tmp-2.txt",
    ]
    for p in user_files[1:]:
        p.write_text("mine")
    old = time.time() - 7200
    for p in user_files:
        os.utime(p, (old, old))
    _add(db_path, root)
    res = _cli(db_path, "dataset", "reindex", "ds", "--full")
    assert res.returncode == 0
    assert all(p.exists() for p in user_files), [p.name for p in user_files if not p.exists()]
    res = _cli(db_path, "items", "ds", "--json")
    assert "photo.sushitui-tmp-.png" in res.stdout, "a user's image with the marker in its name is indexed"


def test_a_dead_writers_temp_files_are_cleaned_without_waiting_an_hour(db_path, tmp_path):
    root = tmp_path / "ds"
    _images(root, ["a"])
    _add(db_path, root)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    leftover = root / f".a.txt.sushitui-tmp-{pid}-q7w8e9r0~"
    leftover.write_text("half")
    two_minutes_ago = time.time() - 120
    os.utime(leftover, (two_minutes_ago, two_minutes_ago))
    live = root / f".a.txt.sushitui-tmp-{os.getpid()}-a1b2c3d4~"  # a writer still at work
    live.write_text("half")
    os.utime(live, (two_minutes_ago, two_minutes_ago))
    # a process of its own: the live writer's pid is this test's, not the reindex's
    assert _cli(db_path, "dataset", "reindex", "ds", "--full", timeout=60).returncode == 0
    assert not leftover.exists() and live.exists()


def test_temp_files_have_a_shape_no_user_file_has(tmp_path):
    from sushitui.dataset.caption_files import discard_staged, is_temp_file, stage_atomic

    staged = stage_atomic(tmp_path / "a.txt", "x", expected=None)
    name = os.path.basename(staged.tmp)
    assert is_temp_file(name) and name.startswith(".a.txt.") and str(os.getpid()) in name
    discard_staged([staged])
    for user_name in (
        "a.sushitui-tmp-.png",
        "notes.sushitui-tmp-x.md",
        ".x.sushitui-tmp-old.txt",
        "x.sushitui-tmp-12345678",
    ):
        assert not is_temp_file(user_name), user_name


def test_a_scan_records_links_that_lead_outside_the_dataset(db_path, tmp_path):
    import json

    outside = tmp_path / "outside"
    _images(outside, ["secret"], "private, words")
    (tmp_path / "lone.txt").write_text("lone, caption")
    root = tmp_path / "ds"
    _images(root, ["a", "b"])
    os.symlink(outside, root / "linked")
    (root / "b.txt").unlink()
    os.symlink(tmp_path / "lone.txt", root / "b.txt")
    os.symlink("a.txt", root / "inside_link.txt")  # inside: no note
    res = _cli(db_path, "dataset", "add", "ds", str(root), "--json")
    assert res.returncode == 0, res.stderr
    problems = {p["path"]: p["reason"] for p in json.loads(res.stdout)["report"]["problems"]}
    assert "outside the dataset" in problems["linked"] and str(outside) in problems["linked"]
    assert "outside the dataset" in problems["b.txt"]
    assert "outside" not in problems.get("inside_link.txt", "")
