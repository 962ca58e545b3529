"""The timeout guard's decisions, on plain data: when a test is over its limit, the
steps that end its worker, in order, each once."""

from __future__ import annotations

from parallel_exec.controller.guards import (
    DUMP_SECONDS,
    DumpStacks,
    Kill,
    Terminate,
    TimeoutGuard,
)


def test_off_without_a_limit() -> None:
    guard = TimeoutGuard(None, 5.0)
    assert not guard.enabled
    assert guard.check("gw0", 3, since=0.0, wall=1e9, now=0.0) == []


def test_within_the_limit_or_idle_nothing_happens() -> None:
    guard = TimeoutGuard(2.0, 5.0)
    assert guard.check("gw0", 3, since=100.0, wall=101.9, now=0.0) == []
    assert guard.check("gw0", -1, since=0.0, wall=1e9, now=0.0) == []
    assert guard.ending("gw0") is None


def test_over_the_limit_stacks_then_sigterm_then_sigkill_after_the_grace() -> None:
    guard = TimeoutGuard(2.0, 1.0)
    assert guard.check("gw0", 3, since=100.0, wall=102.0, now=10.0) == [DumpStacks("gw0")]
    assert guard.ending("gw0") == 3
    # Whatever the worker reports now, it is being ended for test 3.
    assert guard.check("gw0", 4, since=0.0, wall=0.0, now=10.0) == []
    assert guard.check("gw0", 3, 100.0, 103.0, now=10.0 + DUMP_SECONDS) == [Terminate("gw0")]
    assert guard.check("gw0", 3, 100.0, 103.0, now=10.0 + DUMP_SECONDS + 0.5) == []
    assert guard.check("gw0", 3, 100.0, 104.0, now=10.0 + DUMP_SECONDS + 1.0) == [Kill("gw0")]
    assert guard.check("gw0", 3, 100.0, 200.0, now=100.0) == []
    assert guard.ended("gw0") == 3
    assert guard.ended("gw0") is None


def test_workers_are_guarded_apart() -> None:
    guard = TimeoutGuard(1.0, 1.0)
    assert guard.check("gw0", 1, since=0.0, wall=5.0, now=0.0) == [DumpStacks("gw0")]
    assert guard.check("gw1", 2, since=4.5, wall=5.0, now=0.0) == []
    assert guard.ending("gw1") is None
