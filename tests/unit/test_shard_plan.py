"""``--shard I/N`` plans, as properties over any suite: disjoint shards whose union is
the suite, none empty while there are at least N units, the same plan whatever the
collection order, groups kept whole, and the largest shard within LPT's bound."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parallel_exec.scheduling.shards import plan_shards, shard_unit_key

durations = st.floats(min_value=0.0, max_value=100.0, allow_nan=False, width=32)


@st.composite
def suites(draw: st.DrawFn) -> tuple[list[str], list[str | None], list[float]]:
    count = draw(st.integers(min_value=0, max_value=60))
    files = draw(st.integers(min_value=1, max_value=6))
    nodeids = [f"tests/test_{i % files}.py::test_{i}" for i in range(count)]
    groups = [draw(st.sampled_from([None, None, None, "db", "net"])) for _ in nodeids]
    estimates = [draw(durations) for _ in nodeids]
    return nodeids, groups, estimates


def units_of(nodeids: list[str], groups: list[str | None], strategy: str) -> int:
    return len({shard_unit_key(strategy, n, g) for n, g in zip(nodeids, groups, strict=True)})


@settings(max_examples=300, deadline=None)
@given(suites(), st.integers(min_value=1, max_value=12), st.sampled_from(["time", "file", "suite"]))
def test_shards_partition_the_suite(
    suite: tuple[list[str], list[str | None], list[float]], count: int, strategy: str
) -> None:
    nodeids, groups, estimates = suite
    plan = plan_shards(nodeids, groups, estimates, count, strategy)
    parts = [plan.tests_of(s) for s in range(count)]
    everything = [i for part in parts for i in part]
    assert sorted(everything) == list(range(len(nodeids)))  # disjoint, and the whole suite
    assert list(plan.sizes) == [len(p) for p in parts]
    if units_of(nodeids, groups, strategy) >= count:
        assert all(parts), "no shard is empty while there are at least N units"
    # Groups stay whole.
    for group in ("db", "net"):
        shards = {plan.shard_of[i] for i, g in enumerate(groups) if g == group}
        assert len(shards) <= 1


@settings(max_examples=200, deadline=None)
@given(suites(), st.integers(min_value=1, max_value=8), st.randoms(use_true_random=False))
def test_the_plan_does_not_depend_on_the_collection_order(
    suite: tuple[list[str], list[str | None], list[float]], count: int, rnd: object
) -> None:
    nodeids, groups, estimates = suite
    plan = plan_shards(nodeids, groups, estimates, count)
    order = list(range(len(nodeids)))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    shuffled = plan_shards(
        [nodeids[i] for i in order],
        [groups[i] for i in order],
        [estimates[i] for i in order],
        count,
    )
    assert {nodeids[i]: plan.shard_of[i] for i in range(len(nodeids))} == {
        nodeids[i]: shuffled.shard_of[k] for k, i in enumerate(order)
    }
    assert plan.fingerprint == shuffled.fingerprint
    assert plan.inputs_digest == shuffled.inputs_digest


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.01, max_value=50.0, allow_nan=False), min_size=1, max_size=7),
    st.integers(min_value=1, max_value=4),
)
def test_the_largest_shard_is_within_lpt_s_bound_of_the_optimum(
    estimates: list[float], count: int
) -> None:
    nodeids = [f"t.py::test_{i}" for i in range(len(estimates))]
    plan = plan_shards(nodeids, [None] * len(nodeids), estimates, count)
    best = min(
        max(
            sum(e for e, s in zip(estimates, assignment, strict=True) if s == k)
            for k in range(count)
        )
        for assignment in itertools.product(range(count), repeat=len(estimates))
    )
    rounding = 1e-6 * (len(estimates) + 1)  # durations are rounded to the microsecond
    assert max(plan.loads) <= (4 / 3 - 1 / (3 * count)) * best + rounding
    assert plan.lower_bound <= best + rounding


def test_the_fingerprint_tells_plans_apart() -> None:
    nodeids = [f"t.py::test_{i}" for i in range(6)]
    base = plan_shards(nodeids, [None] * 6, [1.0] * 6, 3)
    assert base.fingerprint == plan_shards(nodeids, [None] * 6, [1.0] * 6, 3).fingerprint
    assert base.fingerprint != plan_shards(nodeids, [None] * 6, [1.0] * 6, 2).fingerprint
    assert base.fingerprint != plan_shards(nodeids[:5], [None] * 5, [1.0] * 5, 3).fingerprint
    assert base.fingerprint != plan_shards(nodeids, [None] * 6, [2.0] + [1.0] * 5, 3).fingerprint


def test_fewer_units_than_shards_leaves_shards_empty() -> None:
    plan = plan_shards(["a.py::t1", "a.py::t2"], ["g", "g"], [1.0, 1.0], 2)
    assert sorted(plan.sizes) == [0, 2]


def test_a_matrix_needs_a_shard() -> None:
    with pytest.raises(ValueError, match="at least one shard"):
        plan_shards([], [], [], 0)
