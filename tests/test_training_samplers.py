"""TR-3 samplers: each one's distribution matches its definition, balancing samplers
lower the spread of times seen over runs, and a seed reproduces the order."""

from __future__ import annotations

import numpy as np
import pytest
from pg_support import both_backends_db_path  # noqa: F401  (each database test on SQLite and PostgreSQL)

from sushitui.training.samplers import (
    STRATA_SHARES,
    EpochPlanner,
    SamplerError,
    canonical_sampler,
    epoch_order,
    stratum_of,
    weights,
)


def skewed_history(n: int = 2000, seed: int = 5) -> np.ndarray:
    """A generated history: many never-used items, a long tail of heavy ones."""
    rng = np.random.default_rng(seed)
    counts = rng.geometric(0.05, size=n) - 1
    counts[rng.random(n) < 0.25] = 0
    return counts.astype(np.int64)


def test_random_is_a_permutation_every_epoch():
    counts = skewed_history(500)
    planner = EpochPlanner(counts, "random", seed=3)
    for epoch in (1, 2, 3):
        order = planner.order(epoch)
        assert sorted(order.tolist()) == list(range(500)), "every image once before any repeats"
    assert planner.order(1).tolist() != planner.order(2).tolist()


def test_random_with_larger_epoch_completes_rounds_before_repeating():
    order = epoch_order(np.zeros(10, dtype=np.int64), "random", np.random.default_rng(0), size=25)
    assert sorted(order[:10].tolist()) == list(range(10))
    assert sorted(order[10:20].tolist()) == list(range(10))


@pytest.mark.parametrize("sampler", ["min-usage", "variance"])
def test_weighted_sampler_frequencies_match_their_weights(sampler):
    counts = np.array([0] * 5 + [3] * 5 + [20] * 5 + [80] * 5, dtype=np.int64)
    expected = weights(counts, sampler)
    expected = expected / expected.sum()
    draws = epoch_order(counts, sampler, np.random.default_rng(11), size=200_000)
    observed = np.bincount(draws, minlength=counts.size) / draws.size
    np.testing.assert_allclose(observed, expected, atol=0.004)
    if sampler == "min-usage":
        assert expected[0] == pytest.approx(expected[19] * 81)  # 1/(0+1) vs 1/(80+1)
    else:
        mean = counts.mean()
        assert expected[0] / expected[19] == pytest.approx((mean + 0.1) / 0.1)  # deficit + 0.1 vs 0.1


def test_stratified_draws_40_30_20_10_percent_per_stratum():
    counts = skewed_history(3000)
    strata = stratum_of(counts)
    assert set(strata.tolist()) == {0, 1, 2, 3}
    size = 10_000
    order = epoch_order(counts, "stratified", np.random.default_rng(2), size=size)
    drawn = np.bincount(strata[order], minlength=4)
    assert drawn.tolist() == [round(share * size) for share in STRATA_SHARES]
    # inside a stratum items are drawn in rounds: no item twice before all once
    per_item = np.bincount(order, minlength=counts.size)
    for k in range(4):
        members = per_item[strata == k]
        assert members.max() - members.min() <= 1


def test_stratified_gives_the_share_of_an_empty_stratum_to_the_others():
    counts = np.array([0] * 10 + [5] * 10, dtype=np.int64)  # only "never" and "1-10"
    order = epoch_order(counts, "stratified", np.random.default_rng(0), size=700)
    drawn = np.bincount(stratum_of(counts)[order], minlength=4)
    assert drawn.tolist() == [400, 300, 0, 0]


def test_stratified_reaches_every_never_used_item_in_one_epoch():
    counts = skewed_history(2000)
    order = epoch_order(counts, "stratified", np.random.default_rng(4))
    never = np.flatnonzero(counts == 0)
    assert set(never.tolist()) <= set(order.tolist())
    shuffled = epoch_order(counts, "random", np.random.default_rng(4))
    # the never-used share is 40 % instead of its size share
    assert (counts[order] == 0).mean() == pytest.approx(0.4, abs=0.001)
    assert (counts[shuffled] == 0).mean() == pytest.approx(never.size / counts.size)


def test_stratum_boundaries():
    assert stratum_of(np.array([0, 1, 10, 11, 50, 51, 1000])).tolist() == [0, 1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("sampler", ["min-usage", "variance"])
def test_after_k_runs_balancing_samplers_lower_the_std_versus_random(sampler):
    history = skewed_history(1500)
    runs, epochs = 4, 3

    def after_runs(name: str) -> np.ndarray:
        counts = history.copy()
        for k in range(runs):
            planner = EpochPlanner(counts, name, seed=k)
            for e in range(1, epochs + 1):
                counts = counts + np.bincount(planner.order(e), minlength=counts.size)
        return counts

    random_std = after_runs("random").std()
    assert random_std == pytest.approx(history.std())  # a shuffle adds the same to everyone
    balanced_std = after_runs(sampler).std()
    assert balanced_std < 0.9 * random_std


def test_min_usage_favours_items_that_were_under_used_earlier_in_the_run():
    counts = np.zeros(100, dtype=np.int64)
    planner = EpochPlanner(counts, "min-usage", seed=1, size=100)
    seen = np.zeros(100, dtype=np.int64)
    for e in range(1, 21):
        seen += np.bincount(planner.order(e), minlength=100)
    # weights follow the in-run counts, so usage stays much more even than pure
    # with-replacement draws (binomial std ~ sqrt(20) ≈ 4.5)
    assert seen.std() < 3.0


@pytest.mark.parametrize("sampler", ["random", "min-usage", "stratified", "variance"])
def test_same_seed_same_order_and_other_seed_other_order(sampler):
    counts = skewed_history(800)
    a = EpochPlanner(counts, sampler, seed=42)
    b = EpochPlanner(counts, sampler, seed=42)
    c = EpochPlanner(counts, sampler, seed=43)
    for e in (1, 2, 3):
        assert a.order(e).tolist() == b.order(e).tolist()
    assert a.order(1).tolist() != c.order(1).tolist()
    # asking for an old epoch again replays to the same answer
    assert a.order(1).tolist() == b.order(1).tolist()


def test_planner_jumping_to_a_later_epoch_equals_sequential_planning():
    counts = skewed_history(300)
    seq = EpochPlanner(counts, "variance", seed=9)
    for e in range(1, 5):
        last = seq.order(e)
    jump = EpochPlanner(counts, "variance", seed=9)
    assert jump.order(4).tolist() == last.tolist()


def test_unknown_sampler_and_aliases():
    assert canonical_sampler("min-usage-first") == "min-usage"
    assert canonical_sampler("Variance-Minimisation") == "variance"
    with pytest.raises(SamplerError, match="use one of"):
        canonical_sampler("bogus")
    with pytest.raises(SamplerError):
        EpochPlanner(np.zeros(3), "random").order(0)
