"""Caption files: encodings (SCAN-9), atomic writes and no silent clobbering (IT-8, NF-3)."""

import os

import pytest

from sushitui.dataset.caption_files import (
    CaptionConflict,
    CaptionFileError,
    read_caption,
    write_atomic,
)


def test_utf8_with_and_without_bom(tmp_path):
    a = tmp_path / "a.txt"
    a.write_bytes("1girl, 笑顔".encode())
    b = tmp_path / "b.txt"
    b.write_bytes(b"\xef\xbb\xbf" + "1girl, 笑顔".encode())
    ra, rb = read_caption(a), read_caption(b)
    assert ra.text == rb.text == "1girl, 笑顔"
    assert (ra.encoding, ra.flagged) == ("utf-8", False)
    assert (rb.encoding, rb.flagged) == ("utf-8-sig", False)


def test_shift_jis_caption_is_read_and_flagged(tmp_path):
    p = tmp_path / "sjis.txt"
    p.write_bytes("女の子, 長い髪".encode("cp932"))
    r = read_caption(p)
    assert r.text == "女の子, 長い髪"
    assert r.flagged and r.encoding == "cp932"


def test_write_keeps_bom_and_mode_and_leaves_no_temp_file(tmp_path):
    p = tmp_path / "c.txt"
    p.write_bytes(b"\xef\xbb\xbfold")
    p.chmod(0o640)
    state = read_caption(p).state
    write_atomic(p, "new, tags", expected=state, encoding="utf-8-sig")
    assert p.read_bytes() == b"\xef\xbb\xbfnew, tags"
    assert (p.stat().st_mode & 0o777) == 0o640
    assert [x.name for x in tmp_path.iterdir()] == ["c.txt"]


def test_changed_file_is_never_overwritten(tmp_path):
    p = tmp_path / "d.txt"
    p.write_text("original")
    state = read_caption(p).state
    p.write_text("edited elsewhere, longer")
    with pytest.raises(CaptionConflict) as exc:
        write_atomic(p, "mine", expected=state)
    assert p.read_text() == "edited elsewhere, longer"
    assert exc.value.disk_text == "edited elsewhere, longer"
    assert "changed by another program" in str(exc.value)


def test_same_content_rewritten_with_new_mtime_is_not_a_conflict(tmp_path):
    p = tmp_path / "e.txt"
    p.write_text("same")
    state = read_caption(p).state
    os.utime(p, ns=(state.mtime_ns + 10**9, state.mtime_ns + 10**9))
    write_atomic(p, "mine", expected=state)
    assert p.read_text() == "mine"


def test_deleted_or_newly_created_file_is_a_conflict(tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("x")
    state = read_caption(p).state
    p.unlink()
    with pytest.raises(CaptionConflict, match="deleted"):
        write_atomic(p, "mine", expected=state)
    assert not p.exists()
    q = tmp_path / "g.txt"
    q.write_text("someone else's")
    with pytest.raises(CaptionConflict, match="created"):
        write_atomic(q, "mine", expected=None)
    assert q.read_text() == "someone else's"


def test_failed_write_reports_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    p = tmp_path / "h.txt"
    p.write_text("precious")
    state = read_caption(p).state

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(CaptionFileError, match="disk is full"):
        write_atomic(p, "new", expected=state)
    assert p.read_text() == "precious"
    assert [x.name for x in tmp_path.iterdir()] == ["h.txt"]


def test_unreadable_and_oversized_captions_name_the_file(tmp_path):
    d = tmp_path / "dir.txt"
    d.mkdir()
    with pytest.raises(CaptionFileError, match="dir.txt"):
        read_caption(d)
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * (5 * 1024 * 1024))
    with pytest.raises(CaptionFileError, match="too large"):
        read_caption(big)


def test_reindex_removes_temp_files_a_killed_writer_left_but_not_fresh_ones(db, tmp_path):
    from sushitui.dataset.registry import DatasetSettings, add_dataset, reindex

    root = tmp_path / "ds"
    root.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(root / "a.png")
    (root / "a.txt").write_text("cat")
    add_dataset(DatasetSettings(name="t", root_path=str(root)))
    # the names writers really leave: an earlier release's (mkstemp's 8 characters) and
    # this one's (with the writer's pid; this process is alive, so only age counts)
    stale = root / ".a.txt.sushitui-tmp-k3j_9x0q"
    stale.write_text("half a capt")
    os.utime(stale, (1, 1))
    fresh = root / f".a.txt.sushitui-tmp-{os.getpid()}-ab12cd34~"
    fresh.write_text("being written")
    report = reindex("t", full=True)
    assert not stale.exists() and fresh.exists()
    assert not report.problems
