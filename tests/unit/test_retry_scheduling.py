"""``retry``: where a failed test runs again, for every strategy's scheduler.

A retry goes to another worker that still takes work (the one with the least queued),
else back to the worker it failed on, else it waits among the unassigned tests for a
worker that joins.  A drained or straggling worker takes no retry.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from parallel_exec.scheduling import Assign, Drain, LoadScheduler, Scheduler
from parallel_exec.scheduling.base import retry_target
from parallel_exec.scheduling.plan import PlanScheduler


def load(tests: int, workers: int) -> LoadScheduler:
    return LoadScheduler([0] * tests, {}, workers)


def timed(tests: int, workers: int) -> PlanScheduler:
    return PlanScheduler(
        test_files=[0] * tests,
        unit_keys=[None] * tests,
        estimates=[1.0] * tests,
        stdevs=[0.0] * tests,
        owners={},
        planned_workers=workers,
        feed_seconds=1.0,
    )


MakeScheduler = Callable[[int, int], Scheduler]
SCHEDULERS = [pytest.param(load, id="load"), pytest.param(timed, id="time")]


def test_retry_target_prefers_another_worker_with_the_least_queued() -> None:
    pending = {"gw0": [1, 2], "gw1": [3, 4, 5], "gw2": [6]}
    assert retry_target(pending, set(), "gw2") == "gw0"
    assert retry_target(pending, {"gw0"}, "gw2") == "gw1"
    assert retry_target(pending, {"gw0", "gw1"}, "gw2") == "gw2"
    assert retry_target(pending, {"gw0", "gw1", "gw2"}, "gw2") is None


@pytest.mark.parametrize("make", SCHEDULERS)
def test_a_retry_goes_to_another_worker(make: MakeScheduler) -> None:
    scheduler = make(8, 2)
    first = scheduler.worker_joined("gw0")[0]
    scheduler.worker_joined("gw1")
    assert isinstance(first, Assign)
    failed = first.tests[0]
    scheduler.test_finished("gw0", failed)
    assert scheduler.retry(failed, "gw0") == [Assign("gw1", (failed,))]
    assert failed in scheduler.pending("gw1")
    assert not scheduler.done


@pytest.mark.parametrize("make", SCHEDULERS)
def test_a_retry_stays_on_its_worker_when_it_is_the_only_one(make: MakeScheduler) -> None:
    scheduler = make(4, 1)
    first = scheduler.worker_joined("gw0")[0]
    assert isinstance(first, Assign)
    failed = first.tests[0]
    scheduler.test_finished("gw0", failed)
    assert scheduler.retry(failed, "gw0") == [Assign("gw0", (failed,))]


@pytest.mark.parametrize("make", SCHEDULERS)
def test_a_retry_with_every_worker_drained_waits_for_a_new_worker(
    make: MakeScheduler,
) -> None:
    scheduler = make(1, 1)
    assert scheduler.worker_joined("gw0") == [Assign("gw0", (0,))]
    scheduler.test_finished("gw0", 0)
    assert scheduler.work_requested("gw0") == [Drain("gw0")]
    assert scheduler.retry(0, "gw0") == []
    assert scheduler.unassigned == (0,)
    assert not scheduler.done
    assert scheduler.worker_joined("gw1") == [Assign("gw1", (0,))]
    scheduler.test_finished("gw1", 0)
    assert scheduler.work_requested("gw1") == [Drain("gw1")]
    assert scheduler.done


@pytest.mark.parametrize("make", SCHEDULERS)
def test_no_retry_after_a_stop(make: MakeScheduler) -> None:
    scheduler = make(4, 2)
    scheduler.worker_joined("gw0")
    scheduler.worker_joined("gw1")
    scheduler.stop()
    assert scheduler.retry(0, "gw0") == []
