"""Incremental reindex (SCAN-8), cancellation and progress (SCAN-11), the worker pool."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sushitui.dataset import scan_worker
from sushitui.dataset.captions import set_tags
from sushitui.dataset.items import count_items, item_to_dict, list_items
from sushitui.dataset.registry import DatasetSettings, add_dataset, get_dataset, reindex, remove_dataset
from sushitui.dataset.scanner import scan_dataset
from sushitui.dataset.synthetic import generate_dataset, png_bytes
from sushitui.progress import CancelToken
from sushitui.store import Caption, Dataset, Item, ItemTag


def write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)


def bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


@pytest.fixture
def reads(monkeypatch):
    """Counts image probes and caption reads done by the scan (in-process for small sets)."""
    counts = {"images": [], "captions": []}
    real_probe, real_read = scan_worker.probe_image, scan_worker.read_caption_file

    def probe(path, ext, read_meta=False):
        counts["images"].append(os.path.basename(path))
        return real_probe(path, ext, read_meta)

    def read(path, subtype, name, overrides):
        counts["captions"].append(name)
        return real_read(path, subtype, name, overrides)

    monkeypatch.setattr(scan_worker, "probe_image", probe)
    monkeypatch.setattr(scan_worker, "read_caption_file", read)
    return counts


def small_dataset(root: Path) -> None:
    for i in range(5):
        write(root / f"img{i}.png", png_bytes(8, 8, i))
        write(root / f"img{i}.txt", f"tag{i}, common")


def test_unchanged_reindex_reads_nothing(db, tmp_path, reads):
    small_dataset(tmp_path / "ds")
    add_dataset(DatasetSettings("r", str(tmp_path / "ds")))
    assert len(reads["images"]) == 5 and len(reads["captions"]) == 5
    reads["images"].clear(), reads["captions"].clear()
    report = reindex("r")
    assert reads == {"images": [], "captions": []}
    assert report.items_unchanged == 5 and report.items_added == report.items_updated == report.items_removed == 0


def test_changed_caption_is_reread_new_added_vanished_removed(db, tmp_path, reads):
    root = tmp_path / "ds"
    small_dataset(root)
    ds, _ = add_dataset(DatasetSettings("r", str(root)))
    first_ids = {i.image_path: i.id for i in Item.select()}
    caption_id = Caption.get(Caption.file_path == "img1.txt").id
    reads["images"].clear(), reads["captions"].clear()

    write(root / "img1.txt", "edited elsewhere, new_tag")
    bump_mtime(root / "img1.txt")
    write(root / "img9.png", png_bytes(8, 8, 9))
    write(root / "img9.txt", "fresh")
    (root / "img2.png").unlink()
    (root / "img3.txt").unlink()

    report = reindex("r")
    assert sorted(reads["captions"]) == ["img1.txt", "img9.txt"]
    assert reads["images"] == ["img9.png"]  # img1's image is unchanged: not re-hashed
    assert (report.items_added, report.items_updated, report.items_removed) == (1, 2, 1)
    items = {i.image_path: i for i in Item.select()}
    assert "img2.png" not in items
    assert items["img1.png"].id == first_ids["img1.png"]  # same item, updated in place
    tags = [t.tag for t in ItemTag.select().where(ItemTag.item == items["img1.png"].id).order_by(ItemTag.position)]
    assert tags == ["edited elsewhere", "new_tag"]
    assert items["img1.png"].tag_count == 2
    # re-read in place: an editor holding the caption row keeps a valid id
    assert Caption.get(Caption.file_path == "img1.txt").id == caption_id
    assert Caption.get(caption_id).content == "edited elsewhere, new_tag"
    assert Caption.select().where(Caption.item == items["img3.png"].id).count() == 0
    assert items["img3.png"].tag_count == 0
    assert ItemTag.select().where(ItemTag.norm == "tag2").count() == 0  # vanished item's tags went with it
    assert get_dataset("r").total_items == 5


def test_changed_image_is_rehashed(db, tmp_path, reads):
    root = tmp_path / "ds"
    small_dataset(root)
    add_dataset(DatasetSettings("r", str(root)))
    old = Item.get(Item.image_path == "img0.png")
    write(root / "img0.png", png_bytes(24, 16, 100))
    bump_mtime(root / "img0.png")
    reads["images"].clear()
    reindex("r")
    new = Item.get(Item.image_path == "img0.png")
    assert reads["images"] == ["img0.png"]
    assert new.id == old.id and (new.width, new.height) == (24, 16) and new.sha256 != old.sha256


def test_app_edits_survive_reindex(db, tmp_path):
    root = tmp_path / "ds"
    small_dataset(root)
    add_dataset(DatasetSettings("r", str(root)))
    item = Item.get(Item.image_path == "img4.png")
    set_tags(item, ["edited", "in", "app"])
    report = reindex("r")
    assert report.items_unchanged == 5
    assert [t.tag for t in ItemTag.select().where(ItemTag.item == item.id).order_by(ItemTag.position)] == [
        "edited",
        "in",
        "app",
    ]
    assert (root / "img4.txt").read_text() == "edited, in, app"
    # a forced full re-read gives the same result: the file is the truth
    reindex("r", full=True)
    assert [t.tag for t in ItemTag.select().where(ItemTag.item == item.id).order_by(ItemTag.position)] == [
        "edited",
        "in",
        "app",
    ]


def test_group_gains_an_image_on_reindex(db, tmp_path):
    root = tmp_path / "ds"
    write(root / "g_source.png", png_bytes(8, 8, 1))
    write(root / "g_target.png", png_bytes(8, 8, 2))
    add_dataset(DatasetSettings("g", str(root)))
    write(root / "g_mask.png", png_bytes(8, 8, 3))
    report = reindex("g")
    assert report.items_updated == 1
    assert Item.get().related_images == {"source": "g_source.png", "target": "g_target.png", "mask": "g_mask.png"}
    assert get_dataset("g").total_images == 3


def test_missing_root_on_reindex_is_an_error_and_keeps_index(db, tmp_path):
    from sushitui.dataset.registry import DatasetError

    root = tmp_path / "ds"
    small_dataset(root)
    add_dataset(DatasetSettings("r", str(root)))
    root.rename(tmp_path / "moved")
    with pytest.raises(DatasetError, match="cannot be opened"):
        reindex("r")
    assert Item.select().count() == 5


def test_progress_events_and_cancel_keep_what_was_indexed(db, tmp_path, monkeypatch):
    import sushitui.dataset.scanner as scanner

    monkeypatch.setattr(scanner, "BATCH", 10)
    generate_dataset(tmp_path / "ds", 60, seed=3, nested=False)
    token = CancelToken()
    events = []

    def progress(ev):
        events.append((ev.phase, ev.done, ev.total))
        if ev.phase == "indexing" and ev.done >= 20:
            token.cancel()

    monkeypatch.setattr(scanner, "Throttle", lambda cb, interval=0.1: lambda ev, force=False: cb and cb(ev))
    ds, report = add_dataset(DatasetSettings("big", str(tmp_path / "ds")), progress=progress, cancel=token)
    assert report.cancelled
    assert 20 <= report.items_added < 60
    assert Item.select().count() == report.items_added  # committed, not rolled back
    assert any(p == "walking" for p, _, _ in events)
    assert all(t == 60 for p, _, t in events if p == "indexing")
    assert get_dataset("big").last_scan_report["cancelled"] is True
    # the next reindex finishes the job and removes nothing
    report = reindex("big")
    assert not report.cancelled and Item.select().count() == 60 and report.items_removed == 0


@pytest.mark.slow
def test_pool_and_inline_give_the_same_index(db, tmp_path):
    gen = generate_dataset(tmp_path / "ds", 450, seed=7)
    ds_pool, r1 = add_dataset(DatasetSettings("pool", str(tmp_path / "ds")))  # 450 ≥ POOL_MIN_TASKS: 2 processes
    ds_inline = Dataset.create(name="inline", root_path=str(tmp_path / "ds"))
    r2 = scan_dataset(ds_inline, workers=1)
    assert r1.items_added == r2.items_added == gen.n_items
    a = [item_to_dict(i) for i in list_items(ds_pool.id)]
    b = [item_to_dict(i) for i in list_items(ds_inline.id)]
    strip = lambda d: {k: v for k, v in d.items() if k != "id"}  # noqa: E731
    assert [strip(x) for x in a] == [strip(x) for x in b]
    assert ItemTag.select().join(Item).where(Item.dataset == ds_pool.id).count() == gen.n_tag_rows
    assert get_dataset("pool").total_images == gen.n_images
    assert get_dataset("pool").total_captions == gen.n_captions


def test_items_sort_limit_offset_and_count(db, tmp_path):
    root = tmp_path / "ds"
    for i, (w, h) in enumerate([(30, 10), (10, 30), (20, 20)]):
        write(root / f"i{i}.png", png_bytes(w, h, i))
        write(root / f"i{i}.txt", ", ".join(f"t{k}" for k in range(i + 1)))
    ds, _ = add_dataset(DatasetSettings("s", str(root)))
    names = lambda items: [i.base_name for i in items]  # noqa: E731
    assert names(list_items(ds.id, sort="width")) == ["i1", "i2", "i0"]
    assert names(list_items(ds.id, sort="height", desc=True)) == ["i1", "i2", "i0"]
    assert names(list_items(ds.id, sort="tags", desc=True)) == ["i2", "i1", "i0"]
    assert names(list_items(ds.id, sort="name", limit=1, offset=1)) == ["i1"]
    assert names(list_items(ds.id, offset=2)) == ["i2"]
    assert count_items(ds.id) == 3


def test_remove_dataset_removes_index_not_files(db, tmp_path):
    root = tmp_path / "ds"
    small_dataset(root)
    add_dataset(DatasetSettings("r", str(root)))
    assert remove_dataset("r") == 5
    assert Item.select().count() == Caption.select().count() == ItemTag.select().count() == 0
    assert len(list(root.iterdir())) == 10


def test_unchanged_folders_are_skipped_whole_and_keep_their_problems(db, tmp_path, reads):
    root = tmp_path / "ds"
    for sub in ("a", "b", "c"):
        small_dataset(root / sub)
    write(root / "b" / "empty.png", b"")
    add_dataset(DatasetSettings("r", str(root)))
    reads["images"].clear(), reads["captions"].clear()
    report = reindex("r")
    assert report.dirs_unchanged == 4  # the root and a, b, c
    assert report.items_unchanged == 15
    assert [(p.path, "0 bytes" in p.reason) for p in report.problems] == [("b/empty.png", True)]
    assert reads == {"images": [], "captions": []}
    write(root / "c" / "img0.txt", "changed")
    bump_mtime(root / "c" / "img0.txt")
    report = reindex("r")
    assert report.dirs_unchanged == 3 and report.items_updated == 1 and report.items_unchanged == 14
    assert reads["captions"] == ["img0.txt"]
    assert [p.path for p in report.problems] == ["b/empty.png"]


def test_items_missing_from_the_index_are_restored_even_in_an_unchanged_folder(db, tmp_path):
    root = tmp_path / "ds"
    small_dataset(root)
    ds, _ = add_dataset(DatasetSettings("r", str(root)))
    victim = Item.get(Item.image_path == "img3.png")
    ItemTag.delete().where(ItemTag.item == victim.id).execute()
    Caption.delete().where(Caption.item == victim.id).execute()
    Item.delete().where(Item.id == victim.id).execute()
    report = reindex("r")
    assert report.items_added == 1 and Item.select().count() == 5


def test_removed_folder_removes_its_items(db, tmp_path):
    import shutil

    root = tmp_path / "ds"
    small_dataset(root / "keep")
    small_dataset(root / "drop" / "deep")
    add_dataset(DatasetSettings("r", str(root)))
    shutil.rmtree(root / "drop")
    report = reindex("r")
    assert report.items_removed == 5
    assert {i.rel_dir for i in Item.select()} == {"keep"}


def test_worker_tag_split_matches_normalize_split_tags():
    """The workers' memoised split must give exactly normalize.split_tags + match_key."""
    import random

    from sushitui.tags.normalize import match_key, split_tags

    rnd = random.Random(11)
    alphabet = list("ab_ (),\\\n\r\t^>< 猫X1") + ["long_hair", "^_^", "Solo"]
    texts = ["", ",", " , ,", "a,a", "A_b, a b, a\\(b\\)", "^_^, >_<, x_x"]
    texts += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40))) for _ in range(3000)]
    for text in texts:
        assert scan_worker.tag_pairs(text) == [(t, match_key(t)) for t in split_tags(text)], repr(text)


def test_worker_caption_typing_matches_caption_type_and_split():
    """The workers type and split a caption in one pass; the result must be exactly
    caption_type (SCAN-6, normalize.looks_like_tags) + tag_pairs, prose included."""
    import random

    rnd = random.Random(5)
    words = [
        "a",
        "long_hair",
        "the",
        "cat sat",
        "on the mat.",
        "Hello!",
        "1girl",
        "blue sky",
        "x y z w v u t s",
        "\n",
        ", ",
        "\r\n",
        "  ",
    ]
    texts = ["", " ", ",", "1girl", "one two three", "one two three four", "A photo. Of a cat", "a cat sat on the mat."]
    texts += [
        "".join(rnd.choice(words) + rnd.choice([" ", ", ", ",", "\n", ". "]) for _ in range(rnd.randint(1, 30)))
        for _ in range(3000)
    ]
    overrides = {"alt": "social_media", "t": "tags"}
    for text in texts:
        for subtype in ("main", "alt", "t", "instruction", ""):
            ctype, pairs = scan_worker.typed_tags(subtype, text, overrides)
            assert ctype == scan_worker.caption_type(subtype, text, overrides), (subtype, text)
            assert pairs == (scan_worker.tag_pairs(text) if ctype == "tags" else None), (subtype, text)


def test_image_warnings_survive_caption_changes_and_reindexes(db, tmp_path):
    root = tmp_path / "ds"
    small_dataset(root)
    write(root / "wrong.jpg", png_bytes(8, 8, 77))  # a PNG named .jpg: indexed with a warning
    write(root / "wrong.txt", "a")
    add_dataset(DatasetSettings("w", str(root)))
    write(root / "wrong.txt", "b, c")
    bump_mtime(root / "wrong.txt")
    write(root / "img0.txt", "changed")  # and a change elsewhere in the folder
    bump_mtime(root / "img0.txt")
    for _ in range(2):  # the folder changed, then it is unchanged
        report = reindex("w")
        assert [(p.path, "extension" in p.reason) for p in report.problems] == [("wrong.jpg", True)]
        item = Item.get(Item.image_path == "wrong.jpg")
        assert len(item.problems) == 1 and item.problems[0].startswith("wrong.jpg: ")
    assert [t.tag for t in ItemTag.select().where(ItemTag.item == item.id).order_by(ItemTag.position)] == ["b", "c"]


def test_first_scan_bulk_settings_do_not_outlive_the_scan(db, tmp_path):
    """The first scan writes with foreign-key probes off and a larger page cache; after
    it the connection enforces foreign keys again (a delete cascades) and every row it
    wrote has its parent."""
    generate_dataset(tmp_path / "g", 60, seed=3)
    cache_before = db.execute_sql("PRAGMA cache_size").fetchone()[0]
    ds, report = add_dataset(DatasetSettings("g", str(tmp_path / "g")))
    assert report.items_added == ds.total_items > 0
    assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute_sql("PRAGMA cache_size").fetchone()[0] == cache_before
    assert db.execute_sql("PRAGMA foreign_key_check").fetchall() == []
    item = Item.select().where(Item.tag_count > 0).first()
    db.execute_sql("DELETE FROM item WHERE id = ?", (item.id,))
    assert ItemTag.select().where(ItemTag.item == item.id).count() == 0  # cascaded
    assert Caption.select().where(Caption.item == item.id).count() == 0
