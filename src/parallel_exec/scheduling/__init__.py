"""Schedulers decide which worker runs which test; they never do I/O.

A scheduler receives events (a worker joined, asked for work, finished a test, was lost,
gave tests back, time passed) as method calls and answers with decisions (``Assign``,
``Drain``, ``Reclaim``).  The
controller turns decisions into protocol messages.  Because nothing here touches a
process, a clock or a channel, schedulers are unit- and property-tested on plain data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .base import Assign, Decision, Drain, Reclaim, Scheduler
from .load import LoadScheduler
from .plan import PlanScheduler

__all__ = [
    "STRATEGIES",
    "Assign",
    "Decision",
    "Drain",
    "LoadScheduler",
    "PlanScheduler",
    "Reclaim",
    "Scheduler",
    "TestPlanInput",
    "make_scheduler",
    "unit_key",
]

#: Our strategies.  ``settings.DIST_ALIASES`` maps pytest-xdist's names onto them.
STRATEGIES = ("load", "time", "file", "suite", "round-robin")


@dataclass(frozen=True)
class TestPlanInput:
    """What a scheduler may know about the canonical tests."""

    __test__ = False

    nodeids: Sequence[str]
    test_files: Sequence[int]
    groups: Sequence[str | None]
    owners: Mapping[int, str]
    estimates: Sequence[float]
    stdevs: Sequence[float | None]


#: ``time`` keeps a file's tests together when the file holds at most this fraction of
#: one worker's share of the work: its module fixtures are then set up once, and
#: nothing is lost in balance.  Larger files are split test by test.
SMALL_FILE_FRACTION = 0.25


def unit_key(
    strategy: str, nodeid: str, file: int, group: str | None, small_file: bool = False
) -> str | None:
    """Tests with the same key must run on one worker (None: free to move alone)."""
    if group is not None:
        return "group:" + group
    if strategy == "file" or (strategy == "time" and small_file):
        return f"file:{file}"
    if strategy == "suite":
        parts = split_nodeid(nodeid)
        scope = parts[:2] if len(parts) > 2 else parts[:1]
        return "suite:" + "::".join(scope)
    return None


def split_nodeid(nodeid: str) -> list[str]:
    """``a.py::Class::test[x::y]`` -> ``["a.py", "Class", "test[x::y]"]``: a ``::``
    inside a parametrization id does not separate names."""
    base, bracket, params = nodeid.partition("[")
    parts = base.split("::")
    if bracket:
        parts[-1] += bracket + params
    return parts


def make_scheduler(strategy: str, plan: TestPlanInput, planned_workers: int) -> Scheduler:
    if strategy == "load" and not any(g is not None for g in plan.groups):
        return LoadScheduler(plan.test_files, plan.owners, planned_workers)
    if strategy not in STRATEGIES:
        raise ValueError(f"no scheduler for strategy {strategy!r}")
    file_totals: dict[int, float] = {}
    for file, estimate in zip(plan.test_files, plan.estimates, strict=True):
        file_totals[file] = file_totals.get(file, 0.0) + estimate
    small = SMALL_FILE_FRACTION * sum(file_totals.values()) / max(1, planned_workers)
    keys = [
        unit_key(strategy, nodeid, file, group, file >= 0 and file_totals[file] <= small)
        for nodeid, file, group in zip(plan.nodeids, plan.test_files, plan.groups, strict=True)
    ]
    return PlanScheduler(
        test_files=plan.test_files,
        unit_keys=keys,
        estimates=plan.estimates,
        stdevs=plan.stdevs,
        owners=plan.owners,
        planned_workers=planned_workers,
        round_robin=strategy == "round-robin",
    )
