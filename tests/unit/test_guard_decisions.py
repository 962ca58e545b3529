"""The guards' decisions, on plain data: when a test is over its time or memory limit,
the steps that end its worker, in order, each once; the run's deadline; slowness."""

from __future__ import annotations

from parallel_exec.controller.guards import (
    DUMP_SECONDS,
    SLOW_MIN,
    DumpStacks,
    Ending,
    Guard,
    Kill,
    Slow,
    Terminate,
)


def test_no_limit_nothing_happens() -> None:
    guard = Guard(None, 5.0)
    assert guard.check("gw0", 3, since=0.0, wall=1e9, now=0.0) == []


def test_within_the_limit_or_idle_nothing_happens() -> None:
    guard = Guard(2.0, 5.0)
    assert guard.check("gw0", 3, since=100.0, wall=101.9, now=0.0) == []
    assert guard.check("gw0", -1, since=0.0, wall=1e9, now=0.0) == []
    assert guard.ending("gw0") is None


def test_over_the_limit_stacks_then_sigterm_then_sigkill_after_the_grace() -> None:
    guard = Guard(2.0, 1.0)
    first = guard.check("gw0", 3, since=100.0, wall=102.0, now=10.0)
    assert [type(a) for a in first] == [Ending, DumpStacks]
    ending = first[0]
    assert isinstance(ending, Ending)
    assert ending.index == 3
    assert ending.reason.kind == "timeout"
    assert ending.reason.message == "Timeout: exceeded 2.0 s"
    state = guard.ending("gw0")
    assert state is not None
    assert state.index == 3
    # Whatever the worker reports now, it is being ended for test 3.
    assert guard.check("gw0", 4, since=0.0, wall=0.0, now=10.0) == []
    assert guard.check("gw0", 3, 100.0, 103.0, now=10.0 + DUMP_SECONDS) == [Terminate("gw0")]
    assert guard.check("gw0", 3, 100.0, 103.0, now=10.0 + DUMP_SECONDS + 0.5) == []
    assert guard.check("gw0", 3, 100.0, 104.0, now=10.0 + DUMP_SECONDS + 1.0) == [Kill("gw0")]
    assert guard.check("gw0", 3, 100.0, 200.0, now=100.0) == []
    ended = guard.ended("gw0")
    assert ended is not None
    assert ended.index == 3
    assert guard.ended("gw0") is None


def test_workers_are_guarded_apart() -> None:
    guard = Guard(1.0, 1.0)
    assert DumpStacks("gw0") in guard.check("gw0", 1, since=0.0, wall=5.0, now=0.0)
    assert guard.check("gw1", 2, since=4.5, wall=5.0, now=0.0) == []
    assert guard.ending("gw1") is None


def test_a_tests_own_limit_wins_over_the_runs() -> None:
    guard = Guard(10.0, 1.0)
    # Its marker says 1 s: ended after 1 s although the run allows 10.
    actions = guard.check("gw0", 1, since=0.0, wall=1.5, now=0.0, own_limit=1.0)
    assert isinstance(actions[0], Ending)
    assert actions[0].reason.limit == 1.0
    # A marker of 0 (inf here) lifts the limit; no run limit and no marker: none.
    assert guard.check("gw1", 2, since=0.0, wall=1e6, now=0.0, own_limit=float("inf")) == []
    assert Guard(None).check("gw2", 3, since=0.0, wall=1e6, now=0.0) == []
    assert isinstance(Guard(None).check("gw3", 4, 0.0, 3.0, 0.0, own_limit=2.0)[0], Ending)


def test_memory_over_the_limit_kills_at_once_while_a_test_runs() -> None:
    guard = Guard(memory=300 * 2**20)
    assert guard.sample_memory("gw0", 5, 200 * 2**20, now=0.0) == []
    # Between tests the worker retires by itself: nobody is failed.
    assert guard.sample_memory("gw0", -1, 400 * 2**20, now=0.0) == []
    actions = guard.sample_memory("gw0", 5, 350 * 2**20, now=1.0)
    assert actions[1:] == [Kill("gw0")]
    ending = actions[0]
    assert isinstance(ending, Ending)
    assert ending.reason.kind == "memory"
    assert ending.reason.message == "MemoryError: worker exceeded 300.0 MiB (peak 400.0 MiB)"
    assert guard.sample_memory("gw0", 5, 500 * 2**20, now=1.2) == []  # once
    assert guard.peaks["gw0"] == 500 * 2**20


def test_the_deadline_ends_every_running_test_but_not_idle_workers() -> None:
    guard = Guard(None)
    guard.deadline(3.0)
    actions = guard.check("gw0", 7, since=99.0, wall=100.0, now=0.0)
    assert isinstance(actions[0], Ending)
    assert actions[0].reason.kind == "run-timeout"
    assert actions[0].reason.message == "Timeout: the run reached --run-timeout 3.0 s"
    assert guard.check("gw1", -1, since=0.0, wall=100.0, now=0.0) == []


def test_slow_is_said_once_per_period() -> None:
    guard = Guard(slow_after=10.0)
    said = []
    for second in range(0, 35):
        said += guard.check("gw0", 1, since=0.0, wall=float(second), now=0.0)
    assert said == [Slow("gw0", 1, 10.0), Slow("gw0", 1, 20.0), Slow("gw0", 1, 30.0)]
    # Another test on the same worker starts its own count.
    assert guard.check("gw0", 2, since=100.0, wall=105.0, now=0.0) == []
    assert guard.check("gw0", 2, since=100.0, wall=110.0, now=0.0) == [Slow("gw0", 2, 10.0)]


def test_slow_auto_uses_three_times_the_prediction_and_at_least_five_seconds() -> None:
    guard = Guard(slow_after=-1.0)
    assert guard.check("gw0", 1, since=0.0, wall=1e6, now=0.0, predicted=None) == []
    assert guard.check("gw0", 1, since=0.0, wall=SLOW_MIN - 0.1, now=0.0, predicted=0.1) == []
    assert guard.check("gw0", 1, since=0.0, wall=SLOW_MIN, now=0.0, predicted=0.1) != []
    assert guard.check("gw1", 2, since=0.0, wall=29.0, now=0.0, predicted=10.0) == []
    assert guard.check("gw1", 2, since=0.0, wall=30.0, now=0.0, predicted=10.0) != []
