"""A check run again gives exactly the findings of the first, stored and reported, and a
change between two checks changes exactly the findings it should (the second check writes
only what changed)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def _picture(seed: int, size=(1024, 1024)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)


def _dataset(root):
    root.mkdir()
    _picture(1).save(root / "square.png")
    (root / "square.txt").write_text("ohwx, 1girl, smile, Smile")  # duplicate tags
    _picture(2, (300, 200)).save(root / "tiny.png")  # upscaled, small image, own bucket
    (root / "tiny.txt").write_text("ohwx, (smile")  # unbalanced
    _picture(1).save(root / "copy.png")  # exact duplicate of square
    (root / "copy.txt").write_text("ohwx, a woman is standing in a field of flowers")  # prose
    _picture(1).resize((1000, 1000)).resize((1024, 1024)).save(root / "near.png")  # near duplicate
    (root / "near.txt").write_text("ohwx, " + ", ".join(f"tag number {i}" for i in range(40)))  # long
    _picture(3).convert("RGBA").save(root / "alpha.png")
    (root / "alpha.txt").write_text("ohwx")  # trigger only
    _picture(4).save(root / "nocap.png")


def _stored():
    from sushitui.store import current_database

    return (
        current_database()
        .execute_sql("SELECT item_id, code, severity, message, detail FROM check_finding ORDER BY item_id, code")
        .fetchall()
    )


def _reported(report):
    out = report.to_dict()
    out.pop("elapsed_s")
    out.pop("hashed")  # the first check decodes the images, the second finds them hashed (asserted)
    out["items"] = [it.to_dict() for it in report.items]
    return out


def test_a_second_check_gives_exactly_the_first_findings(tmp_path, db):
    from sushitui.check import CheckOptions, run_check
    from sushitui.check.report import findings_count, item_findings
    from sushitui.dataset.registry import DatasetSettings, add_dataset

    _dataset(tmp_path / "set")
    add_dataset(DatasetSettings("set", str(tmp_path / "set")))
    options = CheckOptions(resolution=1024, batch_size=2, t5=False, trigger="ohwx")
    first = run_check("set", options)
    stored, ids = _stored(), [it.id for it in first.items]
    codes = {f.code for it in first.items for f in it.findings}
    assert {
        "duplicate_tags",
        "unbalanced",
        "upscaled",
        "small_bucket",
        "exact_duplicate",
        "near_duplicate",
        "clip_tokens",
        "alpha",
        "trigger_only",
        "missing_caption",
    } <= codes
    badges = item_findings(ids)

    again = run_check("set", options)
    assert again.hashed == 0
    assert _reported(again) == _reported(first)
    assert _stored() == stored
    assert item_findings(ids) == badges and findings_count(first.dataset_id) == len(first.items_with_findings())


def test_what_changed_between_two_checks_is_all_that_changes(tmp_path, db):
    from sushitui.check import CheckOptions, run_check
    from sushitui.store import current_database

    _dataset(tmp_path / "set")
    from sushitui.dataset.registry import DatasetSettings, add_dataset

    add_dataset(DatasetSettings("set", str(tmp_path / "set")))
    run_check("set", CheckOptions(resolution=1024, batch_size=2, t5=False))
    before = {(r[0], r[1]): r for r in _stored()}
    conn = current_database().connection()
    tiny = conn.execute("SELECT id FROM item WHERE base_name = 'tiny'").fetchone()[0]
    square = conn.execute("SELECT id FROM item WHERE base_name = 'square'").fetchone()[0]
    with current_database().atomic():
        conn.execute("UPDATE caption SET content = 'ohwx, smile' WHERE item_id = ?", (tiny,))  # bracket fixed
        conn.execute("UPDATE caption SET content = 'ohwx, 1girl, smile, (x' WHERE item_id = ?", (square,))

    # batch size 1: no small buckets any more, and the two captions' findings follow their text
    run_check("set", CheckOptions(resolution=1024, batch_size=1, t5=False))
    after = {(r[0], r[1]): r for r in _stored()}
    assert (tiny, "unbalanced") in before and (tiny, "unbalanced") not in after
    assert (square, "duplicate_tags") in before and (square, "duplicate_tags") not in after
    assert (square, "unbalanced") in after
    assert not any(code == "small_bucket" for _i, code in after)
    changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    assert changed == {(tiny, "unbalanced"), (square, "duplicate_tags"), (square, "unbalanced")} | {
        key for key in before if key[1] == "small_bucket"
    }
    # and a fresh store of the same report gives the same rows
    fresh = run_check("set", CheckOptions(resolution=1024, batch_size=1, t5=False))
    conn.execute("DELETE FROM check_finding")
    from sushitui.check.report import store_findings

    store_findings(fresh.dataset_id, fresh)
    assert {(r[0], r[1]): r for r in _stored()} == after
