"""Crash attribution: the reports the controller makes for tests no worker reported.

A worker that dies while running a test, or in the teardown after its last test, or
that ends its session without reporting a test it was given, leaves tests without
reports.  This unit decides what each of them gets, from plain data: the evidence the
transport gathered (``CrashEvidence``) and the partial record a worker sends before the
teardown that ends the session's fixtures.  One wording for every case, here only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from ..reporting.events import describe_exit
from ..wire import protocol
from .guards import EndReason
from .transports import CrashEvidence

Location = tuple[str, int | None, str]


def location_of(nodeid: str) -> Location:
    """A location for a test that never reported one (it crashed, or never ran)."""
    path, _, rest = nodeid.partition("::")
    return (path, None, rest.replace("::", ".") or path)


def _report(
    nodeid: str,
    location: Location,
    when: str,
    outcome: str,
    longrepr: str | None = None,
    sections: list[tuple[str, str]] | None = None,
) -> pytest.TestReport:
    return pytest.TestReport(
        nodeid=nodeid,
        location=location,  # type: ignore[arg-type]
        keywords={},
        outcome=outcome,  # type: ignore[arg-type]
        longrepr=longrepr,
        when=when,  # type: ignore[arg-type]
        sections=sections or [],
        duration=0.0,
        user_properties=[],
    )


def crash_report(
    nodeid: str, location: Location, message: str, stderr: str, when: str
) -> pytest.TestReport:
    """A failed report of phase ``when``, with what the worker wrote to stderr."""
    sections = [("Captured stderr (worker)", stderr)] if stderr.strip() else []
    return _report(nodeid, location, when, "failed", message, sections)


def closing_report(nodeid: str, location: Location) -> pytest.TestReport:
    """A passed teardown, so that consumers that close a test on teardown do so."""
    return _report(nodeid, location, "teardown", "passed")


def not_run_reports(nodeid: str, why: str, stderr: str = "") -> tuple[pytest.TestReport, ...]:
    """A test that never ran (or whose result never came): an error of its setup."""
    location = location_of(nodeid)
    return (crash_report(nodeid, location, why, stderr, "setup"), closing_report(nodeid, location))


def lost_in_session_reason(worker_id: str, exitstatus: int) -> str:
    return (
        f"lost: worker {worker_id} ended its session (exit status {exitstatus}) "
        "without reporting this test"
    )


def lost_at_end_reason(holder: str | None) -> str:
    where = f"assigned to {holder}" if holder else "never assigned to a worker"
    return f"lost: the run ended without a result for this test ({where})"


def restarts_exhausted_reason(limit: int) -> str:
    return f"not run: workers crashed and --max-worker-restart ({limit}) is exhausted"


@dataclass(frozen=True)
class Attributed:
    """The result the controller publishes for a test a worker died under."""

    index: int
    reports: tuple[Any, ...]
    location: Location
    #: It ended in the teardown after its last test (the test itself had finished).
    in_teardown: bool
    #: Not a crash: a plugin ended the worker for the test (``pytest-timeout``).
    ended_by: str = ""


_PYTEST_TIMEOUT_LINE = re.compile(
    re.escape(protocol.ENDED_BY_PYTEST_TIMEOUT).replace(re.escape("{seconds}"), "[^)]*") + "$",
    re.MULTILINE,
)


def ended_by_pytest_timeout(stderr: str) -> tuple[str, str, str] | None:
    """``(failure message, what pytest-timeout wrote, stderr before)`` when the worker's
    stderr says pytest-timeout's thread method ended it (None: it did not)."""
    found = _PYTEST_TIMEOUT_LINE.search(stderr)
    if found is None:
        return None
    message = "Failed: " + found.group(0).split(": ", 2)[-1]
    return message, stderr[found.end() :].strip("\n"), stderr[: found.start()]


def split_captured(text: str) -> tuple[str, list[tuple[str, str]]]:
    """A timed-out worker's stderr since its test began: the stacks, then what the test
    had captured (``protocol.CAPTURED_SO_FAR`` before each stream), as report sections."""
    parts = re.split(_CAPTURED_RE, text)
    sections = [
        (f"Captured {stream} call", body.strip("\n") + "\n")
        for stream, body in zip(parts[1::2], parts[2::2], strict=False)
        if body.strip()
    ]
    return parts[0].strip(), sections


_CAPTURED_RE = re.compile(
    "^"
    + re.escape(protocol.CAPTURED_SO_FAR).replace(re.escape("{stream}"), "(stdout|stderr)")
    + "$",
    re.MULTILINE,
)


class CrashAttribution:
    """Keeps the partial records workers send before their session's last teardown and
    turns a worker's end into the result of the test it was running."""

    def __init__(self) -> None:
        #: The reports so far of a worker's last test, by canonical index.
        self._partial: dict[int, protocol.TestRecord] = {}

    def partial(self, index: int, record: protocol.TestRecord) -> None:
        """The worker's last test has run; its session's teardown comes next."""
        self._partial[index] = record

    def finished(self, index: int) -> None:
        """The rest of a partial record came: nothing to attribute any more."""
        self._partial.pop(index, None)

    def in_teardown(self, index: int) -> bool:
        return index in self._partial

    def ended(
        self,
        worker_id: str,
        index: int,
        nodeid: str,
        evidence: CrashEvidence,
        reason: EndReason,
        seconds: float,
    ) -> Attributed:
        """The result of a test the controller ended its worker for (a timeout, memory):
        failed, with the stacks the worker wrote when asked (its stderr since the test
        began) and what the test had captured so far as its captured output."""
        self._partial.pop(index, None)
        location = location_of(nodeid)
        message = reason.message
        stacks, sections = split_captured(evidence.stderr_since_test) if reason.stacks else ("", [])
        if stacks:
            message += f"\n\nThe worker's threads when the limit was reached ({worker_id}):\n"
            message += stacks
        failed = _report(nodeid, location, "call", "failed", message, sections)
        failed.duration = seconds  # it ran that long: the history learns it is long
        return Attributed(index, (failed, closing_report(nodeid, location)), location, False)

    def detail(self, worker_id: str, evidence: CrashEvidence, error: str = "") -> str:
        """What is known beyond the exit code: a start error, a lost exit status."""
        lines = [error] if error else []
        if evidence.note:
            lines.append(evidence.note)
        return "\n".join(lines)

    def attribute(
        self,
        worker_id: str,
        index: int,
        nodeid: str,
        evidence: CrashEvidence,
        detail: str,
        deserialize: Any,
    ) -> Attributed:
        """The result of the test ``worker_id`` was running when it ended.
        ``deserialize``: turns a serialized report back into a pytest report."""
        location = location_of(nodeid)
        exit_text = describe_exit(evidence.exit_code)
        stderr = evidence.stderr_since_test
        partial = self._partial.pop(index, None)
        if partial is not None:
            # Its last test had run; the process ended in the teardown that ends the
            # session's fixtures: an error of that teardown, as pytest reports one.
            message = (
                f"worker {worker_id} ended during the teardown after {nodeid}, its last "
                f"test ({exit_text}): the session's fixtures did not finish their teardown"
            )
            if detail:
                message += "\n" + detail
            reports = tuple(deserialize(dict(d)) for d in partial.reports)
            return Attributed(
                index,
                (*reports, crash_report(nodeid, location, message, stderr, "teardown")),
                partial.location,
                in_teardown=True,
            )
        by_plugin = ended_by_pytest_timeout(stderr)
        if by_plugin is not None:
            # pytest-timeout's thread method: the test failed with its message, the
            # stacks it wrote are the failure's text; the worker did not crash.
            message, text, before = by_plugin
            return Attributed(
                index,
                (
                    crash_report(nodeid, location, f"{message}\n\n{text}".rstrip(), before, "call"),
                    closing_report(nodeid, location),
                ),
                location,
                in_teardown=False,
                ended_by="pytest-timeout",
            )
        message = f"worker {worker_id} crashed while running {nodeid} ({exit_text})"
        if detail:
            message += "\n" + detail
        return Attributed(
            index,
            (
                crash_report(nodeid, location, message, stderr, "call"),
                closing_report(nodeid, location),
            ),
            location,
            in_teardown=False,
        )
