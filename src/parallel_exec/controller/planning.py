"""Turning the timing history into the scheduler's input, from plain data."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from ..history.store import TestTiming, estimate_durations
from ..scheduling import TestPlanInput
from .canonical import CanonicalCollection


def plan_input(
    canonical: CanonicalCollection, timings: Mapping[str, TestTiming], alive: Collection[str]
) -> tuple[TestPlanInput, dict[str, tuple[float, float]]]:
    """The scheduler's input for the canonical collection (files owned only by workers
    still ``alive``), and the history's ``(mean, stdev)`` of the tests it knows."""
    nodeids = canonical.nodeids
    known = {n: timings[n] for n in nodeids if n in timings}
    estimates = estimate_durations(nodeids, timings)
    plan = TestPlanInput(
        nodeids=nodeids,
        test_files=canonical.test_files,
        groups=canonical.groups,
        owners={f: w for f, w in canonical.owners.items() if w in alive},
        estimates=[estimates[n] for n in nodeids],
        stdevs=[known[n].stdev if n in known else None for n in nodeids],
    )
    return plan, {n: (t.mean, t.stdev) for n, t in known.items()}
