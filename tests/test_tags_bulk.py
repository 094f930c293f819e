"""Bulk tag edits on real caption files: exactly the matching files change, the index
follows, a reindex agrees, kaomoji and escaped parentheses survive, aliases apply."""

from __future__ import annotations

from pathlib import Path

import pytest
from pg_support import both_backends_db_path  # noqa: F401  (each database test on SQLite and PostgreSQL)

from sushitui.dataset import bulk_edit
from sushitui.dataset.captions import item_tags
from sushitui.dataset.registry import DatasetSettings, add_dataset, reindex
from sushitui.dataset.synthetic import png_bytes
from sushitui.store import Item
from sushitui.tags import aliases
from sushitui.tags.query import matching_item_ids

CAPTIONS = {
    "a": "1girl, long hair, smile",
    "b": "1girl, short hair, smile",
    "c": "1boy, short_hair, grin",
    "d": r"1girl, ^_^, kaga \(kancolle\), long_hair",
    "e": "solo, >_<, 0_0",
    "f": "",  # an empty caption file
}


def make_dataset(root: Path, captions: dict[str, str | None], name: str = "ds"):
    root.mkdir(parents=True, exist_ok=True)
    for i, (base, text) in enumerate(captions.items()):
        (root / f"{base}.png").write_bytes(png_bytes(8, 8, i + 1))
        if text is not None:
            (root / f"{base}.txt").write_text(text, encoding="utf-8")
    ds, report = add_dataset(DatasetSettings(name=name, root_path=str(root)))
    assert report.items_added == len(captions)
    return ds


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (p.read_text(encoding="utf-8"), p.stat().st_mtime_ns) for p in sorted(root.glob("*.txt"))}


def tags_of(ds, base: str) -> list[str]:
    return item_tags(Item.get((Item.dataset == ds.id) & (Item.base_name == base)))


@pytest.fixture
def ds(db, tmp_path):
    return make_dataset(tmp_path / "ds", {**CAPTIONS, "g": None})


def test_add_changes_exactly_the_matching_files(ds, tmp_path):
    root = tmp_path / "ds"
    before = snapshot(root)
    report = bulk_edit.bulk_add(ds, "1girl, -short hair", "blue eyes")
    assert report.items_matched == 2 and report.items_changed == 2
    assert sorted(report.files) == ["a.txt", "d.txt"]
    after = snapshot(root)
    changed = {n for n in after if after[n] != before.get(n)}
    assert changed == {"a.txt", "d.txt"}
    assert after["a.txt"][0] == "1girl, long hair, smile, blue eyes"
    # kaomoji and escaped parentheses are written back exactly as they were
    assert after["d.txt"][0] == r"1girl, ^_^, kaga \(kancolle\), long_hair, blue eyes"
    assert matching_item_ids(ds.id, "blue_eyes") == matching_item_ids(ds.id, "1girl, -short hair")
    # the index agrees with the files: a reindex changes nothing
    rep = reindex(ds.name)
    assert rep.items_added == 0 and rep.items_removed == 0
    assert tags_of(ds, "d") == ["1girl", "^_^", r"kaga \(kancolle\)", "long_hair", "blue eyes"]
    assert snapshot(root) == after


def test_add_creates_a_caption_for_an_item_without_one(ds, tmp_path):
    report = bulk_edit.bulk_add(ds, None, "photo")
    assert report.items_changed == 7
    assert (tmp_path / "ds" / "g.txt").read_text() == "photo"
    assert (tmp_path / "ds" / "f.txt").read_text() == "photo"
    again = bulk_edit.bulk_add(ds, None, "PHOTO")  # already there by match key: nothing to do
    assert again.items_changed == 0 and again.files == []


def test_add_at_position_puts_a_trigger_first(ds, tmp_path):
    bulk_edit.bulk_add(ds, "grin", "sks style", position=0)
    assert (tmp_path / "ds" / "c.txt").read_text() == "sks style, 1boy, short_hair, grin"


def test_remove_and_wildcard_remove(ds, tmp_path):
    root = tmp_path / "ds"
    report = bulk_edit.bulk_remove(ds, None, "short hair")  # matches short_hair too
    assert sorted(report.files) == ["b.txt", "c.txt"]
    assert (root / "c.txt").read_text() == "1boy, grin"
    report = bulk_edit.bulk_remove(ds, "1girl", "*hair")
    assert sorted(report.files) == ["a.txt", "d.txt"]
    assert (root / "d.txt").read_text() == r"1girl, ^_^, kaga \(kancolle\)"
    assert (root / "e.txt").read_text() == "solo, >_<, 0_0"


def test_replace_keeps_position_and_dedupes(ds, tmp_path):
    root = tmp_path / "ds"
    bulk_edit.bulk_replace(ds, None, "smile", "grin")
    assert (root / "a.txt").read_text() == "1girl, long hair, grin"
    bulk_edit.bulk_replace(ds, None, "1boy", "grin")  # c already has grin: 1boy just goes
    assert (root / "c.txt").read_text() == "grin, short_hair"


def test_dry_run_reports_and_writes_nothing(ds, tmp_path):
    root = tmp_path / "ds"
    before = snapshot(root)
    report = bulk_edit.bulk_add(ds, "smile", "new tag", dry_run=True)
    assert report.dry_run and report.items_changed == 2 and sorted(report.files) == ["a.txt", "b.txt"]
    report = bulk_edit.bulk_add(ds, "grin", "new tag", dry_run=True)
    assert report.files == ["c.txt"]
    report = bulk_edit.bulk_add(ds, [Item.get(Item.base_name == "g").id], "new tag", dry_run=True)
    assert report.files == ["g.txt"]  # the file that would be created
    assert snapshot(root) == before
    assert matching_item_ids(ds.id, "new tag") == []


def test_item_ids_target_and_other_datasets_untouched(ds, tmp_path):
    other = make_dataset(tmp_path / "other", {"z": "1girl, smile"}, name="other")
    a = Item.get((Item.dataset == ds.id) & (Item.base_name == "a"))
    z = Item.get(Item.dataset == other.id)
    report = bulk_edit.bulk_add(ds, [a.id, z.id], "picked")
    assert report.items_matched == 1 and report.files == ["a.txt"]
    assert (tmp_path / "other" / "z.txt").read_text() == "1girl, smile"


def test_aliases_apply_when_adding(ds, tmp_path):
    aliases.add_alias("girl", "1girl")
    aliases.add_alias("happy", "smile")
    bulk_edit.bulk_add(ds, "1boy", "happy")
    assert (tmp_path / "ds" / "c.txt").read_text() == "1boy, short_hair, grin, smile"
    report = bulk_edit.bulk_replace(ds, None, "grin", "girl")
    assert report.new_tag == "1girl"
    assert (tmp_path / "ds" / "c.txt").read_text() == "1boy, short_hair, 1girl, smile"


def test_alias_apply_to_dataset_with_dry_run_counts(ds, tmp_path):
    root = tmp_path / "ds"
    aliases.add_alias("short_hair", "short cut")
    aliases.add_alias("grin", "smile")
    before = snapshot(root)
    preview = bulk_edit.apply_aliases(ds, dry_run=True)
    assert preview.items_changed == 2 and sorted(preview.files) == ["b.txt", "c.txt"]
    assert snapshot(root) == before
    done = bulk_edit.apply_aliases(ds)
    assert done.items_changed == 2
    assert (root / "c.txt").read_text() == "1boy, short cut, smile"
    assert (root / "b.txt").read_text() == "1girl, short cut, smile"
    assert bulk_edit.apply_aliases(ds, dry_run=True).items_changed == 0


def test_a_file_changed_behind_our_back_is_a_conflict_not_overwritten(ds, tmp_path):
    root = tmp_path / "ds"
    (root / "a.txt").write_text("edited elsewhere, smile")
    report = bulk_edit.bulk_add(ds, "smile", "x")
    assert (root / "a.txt").read_text() == "edited elsewhere, smile"
    assert [p.path for p in report.problems] == ["a.txt"]
    assert report.items_changed == 1 and (root / "b.txt").read_text().endswith(", x")


def test_bad_arguments(ds):
    with pytest.raises(bulk_edit.BulkError):
        bulk_edit.bulk_add(ds, None, "a, b")
    with pytest.raises(bulk_edit.BulkError):
        bulk_edit.bulk_add(ds, None, "   ")
    from sushitui.dataset.registry import DatasetNotFound  # one error for an unknown dataset (issue 15 §3)

    with pytest.raises(DatasetNotFound, match="sushitui dataset list"):
        bulk_edit.bulk_add("no such dataset", None, "x")
    with pytest.raises(bulk_edit.BulkError):
        bulk_edit.bulk_add(ds, None, "caf\udce9")
    from sushitui.tags.query import QueryError

    with pytest.raises(QueryError):
        bulk_edit.bulk_add(ds, "1girl,,", "x")


def test_progress_and_cancel(ds):
    from sushitui.progress import CancelToken

    events = []
    bulk_edit.bulk_add(ds, None, "p", progress=events.append)
    assert events and events[-1].done == events[-1].total == 7
    token = CancelToken()
    token.cancel()
    report = bulk_edit.bulk_add(ds, None, "q", cancel=token)
    assert report.cancelled and report.items_changed == 0


@pytest.mark.slow
def test_many_items_in_parallel_sub_batches_all_land(db, tmp_path, monkeypatch):
    """More items than one sub-batch: every matching file is written once, the index and
    a reindex agree, nothing else changes."""
    from sushitui.dataset.synthetic import generate_dataset

    root = tmp_path / "big"
    monkeypatch.setattr(bulk_edit, "SUB_BATCH", 20)  # many sub-batches in the writer threads
    generate_dataset(
        root, 300, seed=3, nested=True, items_per_dir=40, group_fraction=0, prose_fraction=0, uncaptioned_fraction=0
    )
    ds, _ = add_dataset(DatasetSettings(name="big", root_path=str(root)))
    before = {p: p.read_text() for p in root.rglob("*.txt")}
    want = set(matching_item_ids(ds.id, "-long hair"))
    assert len(want) > 2 * bulk_edit.SUB_BATCH
    report = bulk_edit.bulk_add(ds, "-long hair", "zz marker")
    assert report.items_changed == len(want) and not report.problems
    changed = {p for p in before if p.read_text() != before[p]}
    assert len(changed) == len(want) == len(report.files)
    assert all(p.read_text().endswith(", zz marker") for p in changed)
    assert set(matching_item_ids(ds.id, "zz marker")) == want
    rep = reindex(ds.name)
    assert rep.items_added == 0 and rep.items_removed == 0
    assert set(matching_item_ids(ds.id, "zz marker")) == want


def test_staged_batch_writes_are_atomic_and_conflict_checked(tmp_path):
    from sushitui.dataset.caption_files import (
        CaptionConflict,
        is_temp_file,
        publish_staged,
        read_caption,
        stage_atomic,
    )

    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    a.write_text("old a")
    b.write_text("old b")
    sa, sb = read_caption(a).state, read_caption(b).state
    staged = [
        stage_atomic(a, "new a", expected=sa),
        stage_atomic(b, "new b", expected=sb),
        stage_atomic(c, "new c", expected=None),
    ]
    assert a.read_text() == "old a"  # nothing visible before publishing
    b.write_text("changed by another program")
    results = publish_staged(staged)
    assert a.read_text() == "new a" and c.read_text() == "new c"
    assert b.read_text() == "changed by another program" and isinstance(results[1], CaptionConflict)
    assert results[0].sha256 == read_caption(a).state.sha256
    assert not [p for p in tmp_path.iterdir() if is_temp_file(p.name)]


def test_each_items_own_tag_caption_when_main_is_prose(db, tmp_path):
    """The browser's bulk edits use subtype 'auto': on a kohya GUI folder (BLIP prose in
    x.txt, WD14 tags in x.cap) every item was a problem ("holds a natural language
    caption") because the edit went to main."""
    from sushitui.dataset.captions import EACH_ITEM

    root = tmp_path / "k"
    prose = "A skull with a gas mask lies on a table. It is painted in oil."
    ds = make_dataset(root, {"x": prose, "y": "solo, smile", "z": "A quiet lake at dawn. Mist rises from it.", "w": ""})
    (root / "x.cap").write_text("skull,steampunk", encoding="utf-8")
    (root / "w_alt.txt").write_text("cat, dog", encoding="utf-8")  # main is an empty tag file: stays main
    reindex(ds.name)

    dry = bulk_edit.bulk_add(ds, None, "oil painting", subtype=EACH_ITEM, dry_run=True)
    assert sorted(dry.files) == ["w.txt", "x.cap", "y.txt", "z.txt"]
    report = bulk_edit.bulk_add(ds, None, "oil painting", subtype=EACH_ITEM)
    assert (root / "x.cap").read_text() == "skull, steampunk, oil painting"
    assert (root / "x.txt").read_text() == prose
    assert (root / "y.txt").read_text() == "solo, smile, oil painting"
    assert (root / "w.txt").read_text() == "oil painting" and (root / "w_alt.txt").read_text() == "cat, dog"
    # z has only prose: nothing to add the tag to, and the user is told, not silently skipped
    assert [p.path for p in report.problems] == ["z.txt"] and "natural language" in report.problems[0].reason
    assert report.items_changed == 3

    removed = bulk_edit.bulk_remove(ds, None, "steampunk", subtype=EACH_ITEM)
    assert removed.items_changed == 1 and (root / "x.cap").read_text() == "skull, oil painting"
    # the plain 'main' edit is what it was: x's main is prose, so it is a problem there
    x_id = Item.get(Item.base_name == "x").id
    main_only = bulk_edit.bulk_add(ds, [x_id], "sketch")
    assert main_only.items_changed == 0 and [p.path for p in main_only.problems] == ["x.txt"]

    # the browser's bulk dialog runs the per-item form
    from sushitui.tui.screens.bulk_tag import BulkChoice, run_bulk

    summary = run_bulk(ds.id, BulkChoice("add", "sketch", scope="selection"), item_ids=[x_id], query="")
    assert summary.changed == 1 and (root / "x.cap").read_text() == "skull, oil painting, sketch"
