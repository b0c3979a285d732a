"""Length groups: every row once, cut where padding costs more than a run."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from maas.core.tasks.length_groups import RUN_COST_TOKENS, length_groups


def cost(lengths: np.ndarray, groups: list[np.ndarray]) -> int:
    return sum(RUN_COST_TOKENS + len(rows) * int(lengths[rows].max()) for rows in groups)


def test_every_row_is_in_one_group_and_groups_ascend_in_length() -> None:
    lengths = np.random.default_rng(3).integers(2, 257, 200)
    groups = length_groups(lengths)
    assert sorted(np.concatenate(groups).tolist()) == list(range(200))
    assert all(lengths[a].max() <= lengths[b].min() for a, b in pairwise(groups))
    assert cost(lengths, groups) < RUN_COST_TOKENS + 200 * int(lengths.max())


def test_equal_lengths_are_one_run_and_one_long_text_runs_apart() -> None:
    assert len(length_groups([12] * 32)) == 1
    lengths = np.array([9] * 31 + [256])
    groups = length_groups(lengths)
    assert [g.tolist() for g in groups] == [list(range(31)), [31]]
    assert cost(lengths, groups) == 2 * RUN_COST_TOKENS + 31 * 9 + 256


def test_the_cut_is_optimal_against_every_split_of_a_small_batch() -> None:
    lengths = np.array([3, 40, 5, 38, 7, 120, 6])
    ordered = np.sort(lengths)
    best = min(
        sum(RUN_COST_TOKENS + len(part) * int(part.max()) for part in np.split(ordered, cuts))
        for mask in range(1 << (len(ordered) - 1))
        for cuts in [[i + 1 for i in range(len(ordered) - 1) if mask >> i & 1]]
    )
    assert cost(lengths, length_groups(lengths)) == best
