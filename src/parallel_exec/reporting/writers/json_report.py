"""The ``--report-json`` file: one run as a versioned JSON document.

The document is described by pydantic models so that its JSON schema is generated, not
written by hand: ``parallel-exec schema report`` prints it, and the copy committed as
``parallel_exec/schemas/report.schema.json`` is checked against the models by a unit
test, so the two cannot drift apart unnoticed.  Field reference: docs/reports-json.md.

``JsonWriter`` is a consumer of the run-event stream.  It notes what it needs as events
arrive (with ``time.monotonic()`` at arrival, for worker lifetimes) and writes the file
atomically when ``SessionEnded`` arrives.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, Literal

import pytest
from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field

from ..._version import __version__
from ...files import write_atomically
from ...history.learning import LearningOutcome
from .. import events
from . import common

#: Bumped when a field is removed, renamed or changes meaning or type; adding a field
#: does not bump it (the schema allows unknown fields, so older validators still pass).
SCHEMA_VERSION: Final = 1
#: Most characters kept of one text (a traceback, one captured stream): ``common.TEXT_LIMIT``.
TEXT_CAP = common.TEXT_LIMIT
#: JSON Schema dialect the generated schema is written in.
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

Outcome = Literal["passed", "failed", "error", "skipped", "xfailed", "xpassed"]
Origin = Literal["worker", "crash", "not-run", "lost"]
CappedField = Literal["longrepr", "stdout", "stderr", "log"]


# --------------------------------------------------------------------------- the models


class Location(BaseModel):
    """A file and a 1-based line (null when unknown)."""

    path: str
    line: int | None = Field(description="1-based line number")


class Phase(BaseModel):
    """One of setup / call / teardown, as pytest reported it."""

    outcome: Literal["passed", "failed", "skipped"]
    duration: float = Field(description="seconds")


class Phases(BaseModel):
    """The phases that ran (a phase that did not run is null)."""

    setup: Phase | None = None
    call: Phase | None = None
    teardown: Phase | None = None


class EarlierAttempt(BaseModel):
    """A failed run of a test that ``--retries`` ran again."""

    outcome: Outcome
    worker: str
    duration: float = Field(description="setup + call + teardown, seconds")
    longrepr: str = Field(description="failure text, capped (see longrepr_truncated)")
    longrepr_truncated: bool
    started: float | None = Field(None, description="seconds after the run started")


class Attempts(BaseModel):
    count: int = Field(ge=1, description="runs of the test, the final one included")
    earlier: list[EarlierAttempt] = Field(description="the earlier (failed) runs, oldest first")


class TestRecord(BaseModel):
    """One test's final result, with its earlier attempts."""

    __test__ = False  # not a test class, despite the name

    nodeid: str
    outcome: Outcome
    origin: Origin = Field(
        description="worker: a worker ran it; crash: its worker died running it; "
        "not-run: it could not be run (reported as an error in setup); lost: it was given "
        "to a worker that never reported it (reported as an error in setup)"
    )
    worker: str | None = Field(description="the worker of the final attempt; null if not run")
    location: Location = Field(description="where the test is defined")
    phases: Phases
    duration: float = Field(description="setup + call + teardown of the final attempt, seconds")
    attempts: Attempts
    flaky: bool = Field(description="it failed, was retried, and its final attempt did not fail")
    crash: Location | None = Field(description="where the failure was raised, if known")
    message: str = Field(description="one-line reason: crash message, skip reason")
    longrepr: str = Field(description="failure or skip text as pytest prints it, capped")
    stdout: str = Field(description="captured standard output of all phases, capped")
    stderr: str = Field(description="captured standard error of all phases, capped")
    log: str = Field(description="captured log records of all phases, capped")
    truncated: list[CappedField] = Field(description="the capped texts that were cut")
    started: float | None = Field(
        None, description="when the final attempt began, seconds after the run started"
    )
    predicted: float | None = Field(
        None, description="the timing history's mean duration, seconds (null: unknown)"
    )


class CollectionError(BaseModel):
    nodeid: str = Field(description="the file or node that failed to collect")
    longrepr: str = Field(description="the error as pytest prints it, capped")
    longrepr_truncated: bool


class WorkerStats(BaseModel):
    """The per-worker figures older consumers read (``workerStats``)."""

    tests_run: int = Field(description="test executions, earlier attempts included")
    busy_seconds: float = Field(description="sum of the durations of the tests it ran")
    idle_seconds: float = Field(description="lifetime minus busy time, at least 0")
    restarts: int = Field(description="replacement workers started for it after it crashed")


class WorkerRecord(WorkerStats):
    id: str
    pid: int | None
    lifetime_seconds: float = Field(
        description="from its WorkerStarted to its WorkerCrashed or the end of the run"
    )
    crashed: bool
    exit_code: int | None = Field(description="exit code after a crash, if known")
    crashed_running: str | None = Field(description="nodeid it was running when it crashed")
    started_at: float | None = Field(None, description="seconds after the run started")
    ready_at: float | None = Field(
        None, description="when its collection was accepted and it took work (null: never)"
    )
    ended_at: float | None = Field(None, description="when it ended (null: at the run's end)")


class Summary(BaseModel):
    """Counts of tests.  ``total`` is the sum of the six outcome counts."""

    total: int
    passed: int
    failed: int
    error: int
    skipped: int
    xfailed: int
    xpassed: int
    flaky: int = Field(description="tests that failed, were retried, then did not fail")
    not_run: int = Field(description="tests with origin not-run (counted as error)")
    crashed: int = Field(description="tests with origin crash (counted as failed)")
    collection_errors: int = Field(description="failed collection reports (not tests)")
    deselected: int = Field(description="tests deselected (-k, -m, --deselect); not tests")
    not_reached: int = Field(
        description="collected tests with no result: the run stopped first (-x, --maxfail, "
        "an interrupt); not in tests"
    )


class Environment(BaseModel):
    python_version: str
    python_implementation: str
    platform: str
    pytest_version: str
    parallel_exec_version: str
    cpu_count: int | None
    hostname: str


class ShardInfo(BaseModel):
    """``--shard I/N``: which shard of which matrix (``parallel-exec merge`` reads it)."""

    shard: str = Field(description="I/N")
    run_id: str = Field(description="the matrix's id")
    plan: str = Field(description="the plan's fingerprint, the same on every shard")
    positions: dict[str, int] = Field(
        description="each test of this shard: its place in the whole suite's order"
    )


class JsonReport(BaseModel):
    """A parallel_exec run, as written by ``--report-json`` (docs/reports-json.md)."""

    model_config = ConfigDict(populate_by_name=True, title="parallel_exec JSON report")

    schema_version: Literal[1]
    tool: Literal["parallel_exec"]
    run_id: str | None
    strategy: str | None
    planned_workers: int | None
    created: AwareDatetime = Field(description="when the file was written, UTC")
    started: AwareDatetime = Field(description="when the run started, UTC")
    finished: AwareDatetime = Field(description="when the pytest session ended, UTC")
    duration: float = Field(description="wall seconds from the run's start to the session end")
    exit_code: int
    aborted: bool = Field(description="the run was cut short and some tests were not run")
    passed: int = Field(description="= summary.passed")
    failed: int = Field(description="= summary.failed")
    skipped: int = Field(description="= summary.skipped")
    environment: Environment
    summary: Summary
    worker_stats: dict[str, WorkerStats] = Field(
        validation_alias=AliasChoices("workerStats", "worker_stats"),
        serialization_alias="workerStats",
        description="the workers' figures, by worker id",
    )
    workers: list[WorkerRecord] = Field(description="in the order they started")
    collection_errors: list[CollectionError]
    tests: list[TestRecord] = Field(description="in collection order")
    learning_outcome: LearningOutcome | None
    shard: ShardInfo | None = Field(None, description="set when the run was one shard")
    plan: list[list[str]] | None = Field(
        None,
        description="the scheduler's plan: the tests planned on each worker slot, in order "
        "(null: no plan, dist load)",
    )


def report_schema() -> dict[str, Any]:
    """The JSON schema of the report, generated from the models."""
    return {"$schema": SCHEMA_DIALECT, **JsonReport.model_json_schema(by_alias=True)}


def schema_text() -> str:
    """The schema as committed in ``schemas/report.schema.json`` (and printed by the CLI)."""
    return json.dumps(report_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- the writer

#: Lone surrogates: a Python string can hold them, UTF-8 (and so a JSON file) cannot.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _encodable(value: Any) -> Any:
    """``value`` with lone surrogates in every string shown as ``\\udXXX`` text.

    Everything else JSON carries as it is (control characters as ``\\u00XX`` escapes).
    """
    if isinstance(value, str):
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    return value


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc)


def _seconds(value: float) -> float:
    return round(max(0.0, value), 6)


@dataclass
class _Worker:
    id: str
    started: float
    pid: int | None = None
    ended: float | None = None
    crashed: bool = False
    exit_code: int | None = None
    crashed_running: str | None = None
    ready: float | None = None
    #: Its session ended normally (``ended`` is a crash).
    finished: float | None = None
    tests_run: int = 0
    busy: float = 0.0
    restarts: int = 0


class JsonWriter:
    """Consumer: collects the run and writes ``path`` when the session ends."""

    def __init__(
        self,
        path: Path | None,
        *,
        text_cap: int = TEXT_CAP,
        clock: Callable[[], float] = time.monotonic,
        then: Sequence[tuple[str, Callable[[dict[str, Any]], None]]] = (),
    ) -> None:
        """``path``: the JSON file (None: none); ``then``: what else is made of the same
        report (the timeline), each ``(what, function of the report's document)``."""
        made = ([f"JSON report ({path})"] if path is not None else []) + [w for w, _ in then]
        self.description = " and ".join(made)
        self.path = Path(path) if path is not None else None
        self._then = list(then)
        self.text_cap = text_cap
        self._clock = clock
        self._run_clock = clock()
        self._run_time = time.time()
        self._end_clock: float | None = None
        self._results = common.Results()
        self._workers: dict[str, _Worker] = {}
        self._shard: events.ShardSelected | None = None
        #: When each test's attempts began (wall clock), the history's predictions and
        #: the scheduler's plan.
        self._starts: dict[str, list[float]] = {}
        self._predictions: dict[str, float] = {}
        self._plan: tuple[tuple[str, ...], ...] = ()

    def __call__(self, event: events.RunEvent) -> None:
        report = self.collect(event)
        if report is None:
            return
        if self.path is not None:
            write_atomically(self.path, self.render(report))
        if self._then:
            document = report.model_dump(mode="json", by_alias=True)
            for _, make in self._then:
                make(document)

    def collect(self, event: events.RunEvent) -> JsonReport | None:
        """Take one event; at the session's end, the report (None before)."""
        now = self._clock()
        self._results.note(event)
        if isinstance(event, events.RunStarted):
            self._run_clock = now
            self._run_time = event.started_at
        elif isinstance(event, events.WorkerStarted):
            self._worker_started(event, now)
        elif isinstance(event, events.ShardSelected):
            self._shard = event
        elif isinstance(event, events.TestStarted):
            self._starts.setdefault(event.nodeid, []).append(event.started_at)
        elif isinstance(event, events.WorkerReady):
            self._worker(event.worker_id).ready = now
        elif isinstance(event, events.WorkerFinished):
            self._worker(event.worker_id).finished = now
        elif isinstance(event, events.RunPlanned):
            self._predictions = {k: v[0] for k, v in event.predictions.items()}
            self._plan = event.plan
        elif isinstance(event, events.TestFinished):
            self._test_finished(event)
        elif isinstance(event, events.WorkerCrashed):
            worker = self._worker(event.worker_id)
            worker.ended = now
            worker.crashed = True
            worker.exit_code = event.exit_code
            worker.crashed_running = event.nodeid
        elif isinstance(event, events.RunFinished):
            self._end_clock = now
        elif isinstance(event, events.SessionEnded):
            if self._end_clock is None:
                self._end_clock = now
            return self.report(event, now)
        return None

    # ------------------------------------------------------------------ noting

    def _worker(self, worker_id: str) -> _Worker:
        """The worker's record; one never seen starting (the pytest process itself, in a
        run without workers) is taken to have lived since the run started."""
        worker = self._workers.get(worker_id)
        if worker is None:
            worker = self._workers[worker_id] = _Worker(worker_id, started=self._run_clock)
        return worker

    def _worker_started(self, event: events.WorkerStarted, now: float) -> None:
        known = event.worker_id in self._workers
        worker = self._worker(event.worker_id)
        if not known:
            worker.started = now
        worker.pid = event.pid
        if not known and event.replaces is not None:
            self._worker(event.replaces).restarts += 1

    def _test_finished(self, event: events.TestFinished) -> None:
        runs = [(a.worker_id, a.duration) for a in event.attempts]
        if event.origin not in events.NOT_RUN_ORIGINS:
            runs.append((event.worker_id, event.duration))
        for worker_id, duration in runs:
            worker = self._worker(worker_id)
            worker.tests_run += 1
            worker.busy += duration

    # ------------------------------------------------------------------ rendering

    @staticmethod
    def render(report: JsonReport) -> str:
        """The file's text (UTF-8 JSON; every string encodable, see ``_encodable``)."""
        data = _encodable(report.model_dump(mode="json", by_alias=True))
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    def report(self, ended: events.SessionEnded, now: float) -> JsonReport:
        tests = self._results.in_order()
        counts = common.tally(tests)
        collection = self._results.collection
        failed_collection = (
            [r for r in collection.collect_reports if r.failed] if collection else []
        )
        summary = Summary(
            total=len(tests),
            passed=counts["passed"],
            failed=counts["failed"],
            error=counts["error"],
            skipped=counts["skipped"],
            xfailed=counts["xfailed"],
            xpassed=counts["xpassed"],
            flaky=counts["flaky"],
            not_run=sum(t.origin == "not-run" for t in tests),
            crashed=sum(t.origin == "crash" for t in tests),
            collection_errors=len(failed_collection),
            deselected=len(collection.deselected) if collection else 0,
            not_reached=self._results.not_run,
        )
        workers = [self._worker_record(w) for w in self._workers.values()]
        run = self._results.started
        return JsonReport(
            schema_version=SCHEMA_VERSION,
            tool="parallel_exec",
            run_id=run.run_id if run else None,
            strategy=run.strategy if run else None,
            planned_workers=run.workers if run else None,
            created=_utc(time.time()),
            started=_utc(self._run_time),
            finished=_utc(ended.finished_at),
            duration=_seconds(now - self._run_clock),
            exit_code=int(ended.exit_code),
            aborted=ended.aborted,
            passed=summary.passed,
            failed=summary.failed,
            skipped=summary.skipped,
            environment=environment(),
            summary=summary,
            worker_stats={
                w.id: WorkerStats(
                    tests_run=w.tests_run,
                    busy_seconds=w.busy_seconds,
                    idle_seconds=w.idle_seconds,
                    restarts=w.restarts,
                )
                for w in workers
            },
            workers=workers,
            collection_errors=[self._collection_error(r) for r in failed_collection],
            tests=[self._test_record(t) for t in tests],
            learning_outcome=ended.outcome,
            shard=self._shard_info(),
            plan=[list(lane) for lane in self._plan] if self._plan else None,
        )

    def _shard_info(self) -> ShardInfo | None:
        shard = self._shard
        if shard is None:
            return None
        collection = self._results.collection
        nodeids = collection.nodeids if collection is not None else ()
        return ShardInfo(
            shard=shard.label,
            run_id=shard.run_id,
            plan=shard.fingerprint,
            positions=dict(zip(nodeids, shard.positions, strict=False)),
        )

    def _worker_record(self, worker: _Worker) -> WorkerRecord:
        end = worker.ended if worker.ended is not None else self._end_clock
        lifetime = max(0.0, (end if end is not None else worker.started) - worker.started)
        return WorkerRecord(
            id=worker.id,
            pid=worker.pid,
            tests_run=worker.tests_run,
            busy_seconds=_seconds(worker.busy),
            idle_seconds=_seconds(lifetime - worker.busy),
            restarts=worker.restarts,
            lifetime_seconds=_seconds(lifetime),
            crashed=worker.crashed,
            exit_code=worker.exit_code,
            crashed_running=worker.crashed_running,
            started_at=self._since_start(worker.started),
            ready_at=self._since_start(worker.ready),
            ended_at=self._since_start(
                worker.ended if worker.ended is not None else worker.finished
            ),
        )

    def _since_start(self, clock: float | None) -> float | None:
        """A moment of this writer's clock, in seconds after the run started."""
        return None if clock is None else _seconds(clock - self._run_clock)

    def _started(self, nodeid: str, attempt: int) -> float | None:
        """When attempt ``attempt`` of a test began (-1: the last), seconds after the
        run started (None: not known)."""
        starts = self._starts.get(nodeid, [])
        try:
            return _seconds(starts[attempt] - self._run_time)
        except IndexError:
            return None

    def _capped(self, text: str) -> tuple[str, bool]:
        return common.cap(text, self.text_cap), len(text) > self.text_cap

    def _collection_error(self, report: pytest.CollectReport) -> CollectionError:
        text, truncated = self._capped(common.longrepr_text(report))
        return CollectionError(nodeid=report.nodeid, longrepr=text, longrepr_truncated=truncated)

    def _test_record(self, test: events.TestFinished) -> TestRecord:
        failing = test.failing_report
        output = common.captured(test.reports)
        texts: dict[CappedField, str] = {
            "longrepr": common.longrepr_text(failing),
            "stdout": output.stdout,
            "stderr": output.stderr,
            "log": output.log,
        }
        capped: dict[CappedField, str] = {}
        truncated: list[CappedField] = []
        for name, text in texts.items():
            capped[name], cut = self._capped(text)
            if cut:
                truncated.append(name)
        where = common.test_location(test)
        crash = common.crash_location(failing)
        phases = {
            r.when: Phase(outcome=r.outcome, duration=_seconds(getattr(r, "duration", 0.0) or 0.0))
            for r in test.reports
            if r.when in ("setup", "call", "teardown")
        }
        earlier = []
        for number, attempt in enumerate(test.attempts):
            text, cut = self._capped(common.longrepr_text(attempt.failing_report))
            earlier.append(
                EarlierAttempt(
                    outcome=attempt.outcome,  # type: ignore[arg-type]
                    worker=attempt.worker_id,
                    duration=_seconds(attempt.duration),
                    longrepr=text,
                    longrepr_truncated=cut,
                    started=self._started(test.nodeid, number),
                )
            )
        return TestRecord(
            nodeid=test.nodeid,
            outcome=test.outcome,  # type: ignore[arg-type]
            origin=test.origin,  # type: ignore[arg-type]
            worker=None if test.origin == "not-run" or test.worker_id == "-" else test.worker_id,
            location=Location(path=where.path, line=where.line),
            phases=Phases(**phases),
            duration=_seconds(test.duration),
            attempts=Attempts(count=test.attempt_count, earlier=earlier),
            flaky=test.flaky,
            crash=Location(path=crash.path, line=crash.line) if crash else None,
            message=common.message_of(failing, test.origin),
            longrepr=capped["longrepr"],
            stdout=capped["stdout"],
            stderr=capped["stderr"],
            log=capped["log"],
            truncated=truncated,
            started=self._started(test.nodeid, -1) if test.origin != "not-run" else None,
            predicted=self._predictions.get(test.nodeid),
        )


def environment() -> Environment:
    """Where the run happened: the controller's interpreter and machine."""
    return Environment(
        python_version=platform.python_version(),
        python_implementation=platform.python_implementation(),
        platform=platform.platform(),
        pytest_version=pytest.__version__,
        parallel_exec_version=__version__,
        cpu_count=os.cpu_count(),
        hostname=socket.gethostname(),
    )
