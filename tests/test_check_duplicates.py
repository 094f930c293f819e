"""Near-duplicate search without all pairs, and the perceptual hash it searches."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sushitui.check.hashing import _pairs_brute, groups_from_pairs, hamming, inspect_file, near_pairs


def _planted(n: int, copies: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
    u = h.view(np.uint64)
    for i in range(copies):  # near copies of the first items at the end, 0..8 bits flipped
        v = u[i]
        for bit in rng.choice(64, size=int(rng.integers(0, 9)), replace=False):
            v ^= np.uint64(1) << np.uint64(int(bit))
        u[n - 1 - i] = v
    return h


@pytest.mark.parametrize("k", [0, 3, 6, 8])
def test_banded_search_finds_exactly_the_pairs_brute_force_finds(k):
    h = _planted(6000, 300)  # above the brute-force cut-over, so the bands are used
    got = near_pairs(h, k)
    want = _pairs_brute(h.view(np.uint64), k)
    assert {tuple(r) for r in got.tolist()} == {tuple(r) for r in want.tolist()}
    assert all(hamming(int(h[i]), int(h[j])) == d <= k for i, j, d in got.tolist())


def test_groups_are_connected_components():
    pairs = np.array([[0, 1, 2], [1, 2, 3], [5, 6, 0]])
    assert sorted(groups_from_pairs(8, pairs)) == [[0, 1, 2], [5, 6]]


def _picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((512, 384), Image.Resampling.BICUBIC)


def test_phash_survives_resizing_and_jpeg_but_tells_pictures_apart(tmp_path):
    _picture(1).save(tmp_path / "a.png")
    _picture(1).resize((300, 225)).save(tmp_path / "a_small.jpg", quality=70)
    _picture(2).save(tmp_path / "b.png")
    a, a_small, b = (inspect_file(tmp_path / n, n).phash for n in ("a.png", "a_small.jpg", "b.png"))
    assert hamming(a, a_small) <= 6
    assert hamming(a, b) > 16


def test_hashes_are_kept_by_content_across_a_rebuild_and_findings_go_with_their_item(tmp_path, db):
    from sushitui.check import CheckOptions, run_check
    from sushitui.dataset.registry import DatasetSettings, add_dataset, remove_dataset
    from sushitui.store import current_database

    root = tmp_path / "set"
    root.mkdir()
    _picture(1).save(root / "a.png")
    (root / "a.txt").write_text("x")
    add_dataset(DatasetSettings("set", str(root)))
    first = run_check("set", CheckOptions(resolution=1024, t5=False))
    assert first.hashed == 1
    assert current_database().execute_sql("SELECT COUNT(*) FROM check_finding").fetchone()[0] > 0
    remove_dataset("set")
    assert current_database().execute_sql("SELECT COUNT(*) FROM check_finding").fetchone()[0] == 0
    add_dataset(DatasetSettings("set", str(root)))
    again = run_check("set", CheckOptions(resolution=1024, t5=False))
    assert again.hashed == 0  # the same bytes: nothing decoded again
