"""Limits a worker keeps itself, test by test: what it can see better than the
controller (where a test starts and ends), decided from plain numbers.

- ``marker_limit``: a test's own ``--test-timeout`` from its markers, written to the
  progress file so that the controller's guard applies it (``effective_limit``: that
  or the run's, for the guard and the in-process timer alike).
- ``LeakWatch``: processes a test started and left running (reported with the test's
  record; ``--fail-on-leak``: the test's teardown fails), killed when the worker ends.
- ``Retirement``: when the worker should end and be replaced between two tests
  (``--max-worker-tests``, or its memory would pass ``--max-worker-memory`` during the
  next test), without failing anybody.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from .. import processes

#: Below the memory ceiling, the margin a worker keeps for its next test at least
#: (a share of the ceiling); more when its tests grew it by more than that.
MEMORY_MARGIN = 0.1


def marker_limit(item: pytest.Item, timeout_marker: bool) -> float:
    """The test's own time limit in seconds (0: the run's).

    ``@pytest.mark.parallel_exec(timeout=N)``, else ``@pytest.mark.timeout(N)`` when
    pytest-timeout is not installed to enforce it itself (``timeout_marker``)."""
    marker = item.get_closest_marker("parallel_exec")
    if marker is not None and "timeout" in marker.kwargs:
        return _seconds(marker.kwargs["timeout"])
    if timeout_marker:
        marker = item.get_closest_marker("timeout")
        if marker is not None:
            value = marker.kwargs.get("timeout", marker.args[0] if marker.args else None)
            return _seconds(value)
    return 0.0


def effective_limit(own: float, run_limit: float | None) -> float | None:
    """A test's limit: its own (``marker_limit``; ``inf``: none), else the run's."""
    if own > 0:
        return None if own == float("inf") else own
    return run_limit


def _seconds(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return 0.0
    # 0 or less in a marker means "no limit" (pytest-timeout's meaning): a huge one.
    return seconds if seconds > 0 else float("inf")


class LeakWatch:
    """Processes a test left behind: started during the test (setup, call, teardown),
    still running after its teardown, descended from this worker or in its process
    group.  A test that set up a fixture of wider scope is not blamed for what it
    started (the fixture may own a server until the session ends): those are ended
    with the worker.  Costs one ``pread`` per test unless some process was created."""

    def __init__(self) -> None:
        self._mark = processes.PidWatermark()
        self._pid = os.getpid()
        self._group = os.getpgrp() if hasattr(os, "getpgrp") else None
        self._since = 0
        self._wider_scope = False
        self._seen: set[int] = set()
        self._checked = False
        #: What the last test left: ``(pid, command)`` each.
        self.leaked: tuple[tuple[int, str], ...] = ()

    def started(self) -> None:
        self._mark.moved()
        self._since = processes.now_ticks()
        self._wider_scope = False
        self._checked = False
        self.leaked = ()

    @pytest.hookimpl
    def pytest_fixture_setup(self, fixturedef: Any) -> None:
        if fixturedef.scope != "function":
            self._wider_scope = True

    def check(self) -> tuple[tuple[int, str], ...]:
        """After the test's teardown: what it left running (looked at once per test)."""
        if self._checked:
            return self.leaked
        self._checked = True
        if not self._mark.moved():
            return ()
        found = [
            info
            for info in processes.owned_by(self._pid, processes.snapshot(), self._group)
            if info.started >= self._since and info.pid not in self._seen
        ]
        self._seen.update(info.pid for info in found)
        if self._wider_scope:
            return ()
        self.leaked = tuple((info.pid, processes.command(info.pid)) for info in found)
        return self.leaked


class FailOnLeak:
    """``--fail-on-leak``: the teardown of a test that left a process running fails
    (registered only then: a hook wrapper on every phase of every test costs)."""

    def __init__(self, watch: LeakWatch) -> None:
        self.watch = watch

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if call.when == "teardown":
            leaked = self.watch.check()
            if leaked and report.outcome != "failed":
                report.outcome = "failed"
                report.longrepr = f"Failed: {leak_text(leaked)} (--fail-on-leak)"
        return report


def leak_text(leaked: tuple[tuple[int, str], ...]) -> str:
    return ", ".join(f"leaked process {pid} {command!r}" for pid, command in leaked)


class Retirement:
    """Whether the worker should end between two tests and be replaced."""

    def __init__(self, max_tests: int, memory_limit: int) -> None:
        self.max_tests = max_tests
        self.memory_limit = memory_limit
        self._ran = 0
        self._memory = processes.OwnMemory() if memory_limit else None
        self._last = self._memory.rss() if self._memory is not None else 0
        self._largest_growth = 0

    def after_test(self) -> str | None:
        """After each test: why the worker retires now (None: it goes on)."""
        self._ran += 1
        if self.max_tests and self._ran >= self.max_tests:
            return f"ran {self._ran} tests (--max-worker-tests)"
        if self._memory is not None:
            now = self._memory.rss()
            self._largest_growth = max(self._largest_growth, now - self._last)
            self._last = now
            margin = max(self._largest_growth, int(self.memory_limit * MEMORY_MARGIN))
            if now + margin >= self.memory_limit:
                return (
                    f"its memory grew to {processes.format_size(now)} across its tests, near "
                    f"--max-worker-memory {processes.format_size(self.memory_limit)}"
                )
        return None
