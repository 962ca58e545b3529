"""The run-event stream: what happened in a parallel run, as typed events.

The controller publishes; consumers (the replay into pytest's hooks, and the report
writers and history that build on it) subscribe and never talk to each other.  A test
is published once, as ``TestFinished``, with all of its reports already grouped, so no
consumer has to re-assemble pytest's setup/call/teardown sequence; a crashed or
never-run test is published the same way, with reports the controller made for it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pytest


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    workers: int
    strategy: str
    started_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class WorkerStarted:
    worker_id: str
    pid: int


@dataclass(frozen=True)
class CollectionFinished:
    worker_id: str
    nodeids: tuple[str, ...]
    collect_reports: tuple[pytest.CollectReport, ...]
    deselected: tuple[str, ...]
    warnings: tuple[WarningRecorded, ...]


@dataclass(frozen=True)
class WarningRecorded:
    warning_message: warnings.WarningMessage
    when: str
    nodeid: str
    location: tuple[str, int, str] | None


@dataclass(frozen=True)
class TestFinished:
    """A test's complete result: every report pytest produced for it, in order."""

    __test__ = False  # not a test class, despite the name

    worker_id: str
    nodeid: str
    location: tuple[str, int | None, str]
    reports: tuple[pytest.TestReport, ...]
    warnings: tuple[WarningRecorded, ...] = ()
    #: "worker": reports a worker produced; "crash" / "not-run": made by the controller
    #: for a test whose worker died under it, or that could not be run at all.
    origin: str = "worker"

    @property
    def outcome(self) -> str:
        """One word for the test, as pytest's summary would count it.

        ``error`` for a failure outside the call phase, ``xfailed``/``xpassed`` for
        expected failures, else the call's outcome (``passed``/``failed``/``skipped``).
        """
        result = "passed"
        for report in self.reports:
            wasxfail = hasattr(report, "wasxfail")
            if report.when == "call":
                if report.skipped and wasxfail:
                    result = "xfailed"
                elif report.passed and wasxfail:
                    result = "xpassed"
                else:
                    result = report.outcome
            elif report.failed:
                return "error" if result == "passed" else result
            elif report.skipped:
                result = "xfailed" if wasxfail else "skipped"
        return result

    @property
    def duration(self) -> float:
        return sum(getattr(r, "duration", 0.0) or 0.0 for r in self.reports)


@dataclass(frozen=True)
class WorkerOutput:
    worker_id: str
    stream: str
    text: str


@dataclass(frozen=True)
class WorkerCrashed:
    worker_id: str
    exit_code: int | None
    nodeid: str | None
    stderr_tail: str


@dataclass(frozen=True)
class RunFinished:
    tests_not_run: int
    finished_at: float = field(default_factory=time.time)


RunEvent = (
    RunStarted
    | WorkerStarted
    | CollectionFinished
    | WarningRecorded
    | TestFinished
    | WorkerOutput
    | WorkerCrashed
    | RunFinished
)


class Consumer(Protocol):
    def __call__(self, event: RunEvent) -> None: ...


class EventStream:
    """Publish/subscribe, synchronous and in order, on the controller's main thread."""

    def __init__(self, consumers: Sequence[Callable[[RunEvent], None]] = ()) -> None:
        self._consumers: list[Callable[[RunEvent], None]] = list(consumers)

    def subscribe(self, consumer: Callable[[RunEvent], None]) -> None:
        self._consumers.append(consumer)

    def publish(self, event: RunEvent) -> None:
        for consumer in self._consumers:
            consumer(event)
