"""What every writer reads off a run: one rule each, shared by the JUnit, JSON and TAP writers.

- **order**: ``CollectionOrder`` / ``Results.in_order`` (collection order; a node id
  collected twice takes its positions in turn);
- **tests not run**: ``Results.not_run``;
- **which report decides**: ``decide`` (``events.deciding_report``, plus the further
  failed phases);
- **reasons**: ``message_of`` (one line), ``crash_message``, ``xfail_reason``;
- **crash wording**: ``message_of`` for a test's result, ``crash_note`` for a worker;
- **truncation**: ``cap`` with ``TEXT_LIMIT``;

and the text, location and captured output of a finished test.
"""

from __future__ import annotations

import io
import re
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from ..._pytest_compat import TerminalWriter
from .. import events

#: Outcomes a writer can see, in the order summaries list them.
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")

#: Most characters one text (a traceback, one captured stream) keeps: 64 Ki characters.
TEXT_LIMIT = 64 * 1024

#: Characters XML 1.0 cannot carry at all (C0 controls other than tab/newline/return,
#: lone surrogates, U+FFFE/U+FFFF).  Writers replace each with a visible escape.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

#: What pytest puts before a skip reason (its junitxml and terminal summary leave it out).
_SKIPPED_PREFIX = "Skipped: "
#: What older pytest put before the reason of an imperative ``pytest.xfail``.
_XFAIL_PREFIX = "reason: "

Report = pytest.TestReport | pytest.CollectReport


def visible(text: str) -> str:
    """``text`` with characters XML cannot hold shown as ``\\xNN`` / ``\\uNNNN``."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _NOT_XML.sub(escape, text)


def cap(text: str, limit: int = TEXT_LIMIT) -> str:
    """At most ``limit`` characters: the head and the tail, with a note of what was cut."""
    if len(text) <= limit:
        return text
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... {cut} characters cut by parallel_exec ...]\n{text[-half:]}"


# --------------------------------------------------------------------------- order


class CollectionOrder:
    """Where each result goes, as results arrive: the position of its test in collection.

    A result takes the first collection position of its node id that no earlier result
    took, so a node id collected twice (``--keep-duplicates``, in-process) takes its
    positions in turn, in arrival order.  A result with no free position (a test not
    collected, or reported once more than it was collected) goes after every collected
    test, in arrival order.
    """

    def __init__(self, nodeids: Sequence[str] = ()) -> None:
        self._free: dict[str, deque[int]] = {}
        for index, nodeid in enumerate(nodeids):
            self._free.setdefault(nodeid, deque()).append(index)
        self._size = len(nodeids)
        self._arrivals = 0

    def place(self, nodeid: str) -> int:
        """The position of the next result for ``nodeid``."""
        free = self._free.get(nodeid)
        position = free.popleft() if free else self._size + self._arrivals
        self._arrivals += 1
        return position

    @property
    def unfilled(self) -> int:
        """Collection positions no result took: collected tests without a result."""
        return sum(len(free) for free in self._free.values())


class Results:
    """What a writer notes of a run: its start, the collection, each result as it
    arrives, and the controller's count of tests not run (``note`` takes any event)."""

    def __init__(self) -> None:
        self.started: events.RunStarted | None = None
        self.collection: events.CollectionFinished | None = None
        #: Every ``TestFinished``, in arrival order (a node id reported twice: twice).
        self.arrived: list[events.TestFinished] = []
        self.run_finished: events.RunFinished | None = None

    def note(self, event: events.RunEvent) -> None:
        if isinstance(event, events.RunStarted):
            self.started = event
        elif isinstance(event, events.CollectionFinished):
            self.collection = event
        elif isinstance(event, events.TestFinished):
            self.arrived.append(event)
        elif isinstance(event, events.RunFinished):
            self.run_finished = event

    @property
    def nodeids(self) -> tuple[str, ...]:
        return self.collection.nodeids if self.collection is not None else ()

    def _placed(self) -> tuple[list[events.TestFinished], CollectionOrder]:
        order = CollectionOrder(self.nodeids)
        keyed = [(order.place(test.nodeid), test) for test in self.arrived]
        return [test for _, test in sorted(keyed, key=lambda pair: pair[0])], order

    def in_order(self) -> list[events.TestFinished]:
        """Every result, in collection order (see ``CollectionOrder``)."""
        return self._placed()[0]

    @property
    def not_run(self) -> int:
        """Collected tests that have no result (the run stopped first): the controller's
        count once ``RunFinished`` says it, else the collection positions no result took."""
        if self.run_finished is not None:
            return self.run_finished.tests_not_run
        return self._placed()[1].unfilled


# --------------------------------------------------------------------------- which report decides


@dataclass(frozen=True)
class Decision:
    """What decided a test's result (see ``decide``)."""

    #: ``events.deciding_report``: the first failed phase, else the first skipped one;
    #: None for a clean pass.
    report: pytest.TestReport | None
    #: The other failed phases, in order (a teardown error after a failed call).
    further: tuple[pytest.TestReport, ...] = ()

    @property
    def failure(self) -> pytest.TestReport | None:
        """The deciding report when a phase failed: any failed phase fails the test in
        pytest's counts, whatever the call did (a skip then a teardown error is an error)."""
        return self.report if self.report is not None and self.report.failed else None


def decide(reports: Sequence[pytest.TestReport]) -> Decision:
    """Which of a test's (or an attempt's) reports decides its result, and what else failed."""
    deciding = events.deciding_report(reports)
    return Decision(deciding, tuple(r for r in reports if r.failed and r is not deciding))


# --------------------------------------------------------------------------- reasons


def longrepr_text(report: Report | None) -> str:
    """The failure or skip text as pytest prints it (empty when there is none)."""
    if report is None or report.longrepr is None:
        return ""
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    # ``report.longreprtext`` without the ``[gw0] linux -- Python ...`` line pytest adds
    # to a report that carries its worker's node.
    longrepr: Any = report.longrepr
    if hasattr(longrepr, "toterminal"):
        text = io.StringIO()
        writer = TerminalWriter(text)
        writer.hasmarkup = False
        longrepr.toterminal(writer)
        return text.getvalue().strip()
    return str(longrepr).strip()


def crash_message(report: Report | None) -> str | None:
    """The message of the crash entry of a failure's traceback (``KeyError: 'x'``, or
    pytest's ``assert ...``), whole; None when the report has no traceback."""
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    message = getattr(crash, "message", None)
    return None if message is None else str(message)


def message_of(report: Report | None, origin: str = "worker") -> str:
    """The reason a deciding report gives, on one line.

    A skip's reason without pytest's ``Skipped: ``; else the first line of the crash
    message; else, for a result the controller made (``origin`` other than ``worker``),
    the first line of its text (which worker, what happened: the crash wording); else
    the last line of the text (where pytest puts the error).
    """
    if report is None or report.longrepr is None:
        return ""
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
    else:
        crash = crash_message(report)
        if crash:
            reason = crash.splitlines()[0]
        else:
            lines = longrepr_text(report).strip().splitlines()
            reason = (lines[0] if origin != "worker" else lines[-1]) if lines else ""
    return reason.removeprefix(_SKIPPED_PREFIX) if report.skipped else reason


def xfail_reason(reports: Iterable[pytest.TestReport]) -> str:
    """The reason of an expected failure (``xfail(reason=...)``, ``pytest.xfail(...)``);
    empty when none was given or the test is not marked."""
    for report in reports:
        reason = getattr(report, "wasxfail", None)
        if reason is not None:
            return str(reason).removeprefix(_XFAIL_PREFIX)
    return ""


def crash_note(event: events.WorkerCrashed) -> str:
    """``worker gw1 crashed while running <test> (exit code N)``: a worker's crash, in
    the words of ``WorkerCrashed.description``."""
    return f"worker {event.worker_id} {event.description}"


# --------------------------------------------------------------------------- where, output, counts


@dataclass(frozen=True)
class Where:
    """A file and a 1-based line."""

    path: str
    line: int | None


def test_location(event: events.TestFinished) -> Where:
    """Where the test is defined: pytest's 0-based line made 1-based."""
    path, line, _ = event.location
    return Where(path, line + 1 if line is not None else None)


def crash_location(report: Report | None) -> Where | None:
    """Where a failure happened (the crash entry of its traceback), 1-based."""
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    if crash is None:
        return None
    return Where(str(crash.path), int(crash.lineno) if crash.lineno is not None else None)


@dataclass(frozen=True)
class Captured:
    stdout: str
    stderr: str
    log: str


def captured(reports: Iterable[pytest.TestReport]) -> Captured:
    """Output captured across a test's phases, each section once, in phase order.

    pytest gives a later phase's report the sections of the earlier phases too
    ("Captured stdout setup" reappears in the call report), so sections are taken
    once per title.
    """
    sections: dict[str, str] = {}
    for report in reports:
        for title, content in report.sections:
            sections[title] = content
    out: list[str] = []
    err: list[str] = []
    log: list[str] = []
    for title, content in sections.items():
        if title.startswith("Captured stdout"):
            out.append(content)
        elif title.startswith("Captured stderr"):
            err.append(content)
        elif title.startswith("Captured log"):
            log.append(content)
    return Captured("".join(out), "".join(err), "".join(log))


def tally(tests: Iterable[events.TestFinished]) -> Counter[str]:
    """Tests per outcome (every key of ``OUTCOMES`` present), plus ``flaky``."""
    counts: Counter[str] = Counter(dict.fromkeys(OUTCOMES, 0))
    counts["flaky"] = 0
    for test in tests:
        counts[test.outcome] += 1
        if test.flaky:
            counts["flaky"] += 1
    return counts
