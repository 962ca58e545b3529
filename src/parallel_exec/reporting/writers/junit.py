"""``--report-junit``: JUnit XML enriched with what a parallel run knows.

The file is shaped like pytest's own ``--junitxml`` (``<testsuites>`` around one
``<testsuite>``, ``classname``/``name`` derived from the node id the same way, the same
``<failure>``/``<error>``/``<skipped>`` messages and types) so that any consumer of
pytest's file reads it, and by default it validates against the common JUnit schema
(``junit-10.xsd``, the one pytest's xunit2 family follows).  What a parallel run adds:

- run properties on the suite (run id, workers, strategy, exit code), and one property
  per test that needed more than one attempt (``--retries``);
- one ``<testcase>`` per test, its final attempt, in canonical collection order, with
  exactly one result element (so suite counts are the counts of the file's test cases);
- captured stdout/log and stderr as ``<system-out>``/``<system-err>``.

``extended=True`` adds what many consumers read but the schema has no place for:
``file``/``line`` (1-based) attributes and a ``<properties>`` block per test case, and
the earlier failed attempts as Maven Surefire's ``<flakyFailure>``/``<rerunFailure>``
(``...Error`` for attempts that errored).  The format is documented in
``docs/reports-junit.md``.
"""

from __future__ import annotations

import platform
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from ...files import write_atomically
from .. import events
from .common import (
    Results,
    captured,
    crash_message,
    decide,
    longrepr_text,
    message_of,
    test_location,
    visible,
    xfail_reason,
)

#: Budget of a ``message`` attribute (pytest's): the full text is in the element.
MESSAGE_BUDGET = 500
#: Prefix of the properties this writer adds, apart from the user's ``record_property``.
PROPERTY_PREFIX = "parallel_exec."
#: The ``type`` of results the controller made for tests it could not get a result for.
ORIGIN_TYPES = {
    "crash": "parallel_exec.crash",
    "not-run": "parallel_exec.not-run",
    "lost": "parallel_exec.lost",
}
#: ``ExceptionName: message`` as pytest's crash entry words it.
_EXCEPTION_NAME = re.compile(r"([A-Za-z_][\w.]*)(?::|$)")
_IDENTIFIER = re.compile(r"[A-Za-z_][\w.]*")


def mangle_test_address(nodeid: str) -> list[str]:
    """``classname`` parts then ``name``, as pytest's junitxml derives them.

    The path becomes dotted without ``.py``; parameters stay one opaque bracket on the
    last name (only the part after the first ``::`` is searched for ``[``: a file name
    may contain one).
    """
    path, sep, tail = nodeid.partition("::")
    names = [path]
    if sep:
        name_part, bracket, params = tail.partition("[")
        names.extend(name_part.split("::"))
        if bracket:
            names[-1] += f"[{params.removesuffix(']')}]"
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    return names


def shorten_message(message: str, budget: int = MESSAGE_BUDGET) -> str:
    """Whole lines of ``message`` while they fit ``budget``, noting what was left out.

    The same rule as pytest's junitxml, so both files carry the same messages.
    """
    lines = message.splitlines() or [""]
    kept: list[str] = []
    size = 0
    for line in lines:
        if kept and size + len(line) + 1 > budget:
            break
        kept.append(line)
        size += len(line) + 1
    shortened = "\n".join(kept)
    first_line_cut = len(shortened) > budget
    if first_line_cut:
        shortened = shortened[:budget] + "..."
    remaining = len(lines) - len(kept)
    if remaining:
        note = f"+{remaining} more line{'s' if remaining > 1 else ''}"
    elif first_line_cut:
        note = "truncated"
    else:
        return message
    return f"{shortened}\n[{note}; full report in element text]"


def format_time(seconds: float) -> str:
    """Seconds with three decimals, never negative: what ``SUREFIRE_TIME`` allows."""
    return f"{max(seconds, 0.0):.3f}"


def _crash_message(report: pytest.TestReport) -> str:
    """pytest's ``message`` source: the whole crash message, else the whole text."""
    message = crash_message(report)
    return message if message is not None else longrepr_text(report)


def _exception_type(report: pytest.TestReport) -> str | None:
    """The exception's class name, where pytest's traceback or crash line names one.

    The last traceback entry ends with the type name (``test_x.py:3: KeyError``); the
    crash line says ``KeyError: ...``, but ``assert ...`` without the type for a plain
    assertion.
    """
    traceback = getattr(report.longrepr, "reprtraceback", None)
    entries = getattr(traceback, "reprentries", None) or []
    name = getattr(getattr(entries[-1], "reprfileloc", None), "message", None) if entries else None
    if isinstance(name, str) and _IDENTIFIER.fullmatch(name):
        return name
    message = crash_message(report) or ""
    if message.startswith("assert "):
        return "AssertionError"
    match = _EXCEPTION_NAME.match(message)
    return match.group(1) if match else None


@dataclass(frozen=True)
class Verdict:
    """The one result element of a test case (``tag`` None: it passed)."""

    tag: str | None
    message: str = ""
    type: str | None = None
    text: str = ""


def _failed_in(report: pytest.TestReport) -> str:
    return f"failed on {'teardown' if report.when == 'teardown' else 'setup'} with"


def verdict(reports: Sequence[pytest.TestReport], origin: str = "worker") -> Verdict:
    """What a test's reports come to, as pytest's junitxml would word it.

    The deciding report (``common.decide``) makes the one element: a failed call is a
    ``<failure>``; any other failed phase an ``<error>``; a skip (``type="pytest.xfail"``
    for an expected failure) ``<skipped>``.  The further failed phases (a teardown error
    after a failed call) are appended to the element's text: one element per test case
    keeps the suite counts equal to the test cases.
    """
    decision = decide(reports)
    decisive = decision.failure
    result: Verdict
    if decision.report is None:
        return Verdict(None)
    if decisive is None:
        result = _skipped(decision.report)
    elif hasattr(decisive, "wasxfail"):
        result = Verdict("skipped", "xfail-marked test passes unexpectedly")
    else:
        reason = _crash_message(decisive)
        kind = ORIGIN_TYPES.get(origin) or _exception_type(decisive)
        if decisive.when == "call":
            result = Verdict("failure", shorten_message(reason), kind, longrepr_text(decisive))
        else:
            message = shorten_message(f'{_failed_in(decisive)} "{reason}"')
            result = Verdict("error", message, kind, longrepr_text(decisive))
    if not decision.further:
        return result
    more = [f'{_failed_in(r)} "{_crash_message(r)}"\n{longrepr_text(r)}' for r in decision.further]
    text = "\n\n".join([result.text, *more]) if result.text else "\n\n".join(more)
    return Verdict(result.tag, result.message, result.type, text)


def _skipped(report: pytest.TestReport) -> Verdict:
    if hasattr(report, "wasxfail"):
        return Verdict("skipped", xfail_reason([report]), "pytest.xfail")
    reason = message_of(report)
    if isinstance(report.longrepr, tuple):
        filename, lineno, _ = report.longrepr
        return Verdict("skipped", reason, "pytest.skip", f"{filename}:{lineno}: {reason}")
    return Verdict("skipped", reason, "pytest.skip")


def _element(tag: str, attributes: dict[str, str | None], text: str = "") -> ET.Element:
    """An element whose attribute values and text can all be written as XML."""
    element = ET.Element(tag, {k: visible(v) for k, v in attributes.items() if v is not None})
    if text:
        element.text = visible(text)
    return element


def _output_sections(reports: Iterable[pytest.TestReport]) -> tuple[str, str]:
    """(system-out, system-err): pytest's ``junit_logging = all`` layout, empty parts left out."""
    out = captured(reports)

    def section(title: str, content: str) -> str:
        return "\n".join([title.center(80, "-"), content, ""]) if content else ""

    return (
        section(" Captured Log ", out.log) + section(" Captured Out ", out.stdout),
        section(" Captured Err ", out.stderr),
    )


def _append_output(parent: ET.Element, reports: Sequence[pytest.TestReport]) -> None:
    stdout, stderr = _output_sections(reports)
    if stdout:
        parent.append(_element("system-out", {}, stdout))
    if stderr:
        parent.append(_element("system-err", {}, stderr))


def _properties(pairs: Iterable[tuple[str, str]]) -> ET.Element | None:
    found = [_element("property", {"name": n, "value": v}) for n, v in pairs]
    if not found:
        return None
    properties = ET.Element("properties")
    properties.extend(found)
    return properties


class JunitWriter:
    """Consumer of the run-event stream that writes ``path`` when the session ends."""

    def __init__(self, path: Path, *, extended: bool = False, suite_name: str = "pytest") -> None:
        self.description = f"JUnit report ({path})"
        self.path = Path(path)
        self.extended = extended
        self.suite_name = suite_name
        self.results = Results()
        self.collect_reports: dict[str, pytest.CollectReport] = {}
        self.created_at = datetime.now().timestamp()
        self.shard: events.ShardSelected | None = None

    def __call__(self, event: events.RunEvent) -> None:
        self.results.note(event)
        if isinstance(event, events.ShardSelected):
            self.shard = event
        elif isinstance(event, events.CollectionFinished):
            for report in event.collect_reports:
                if not report.passed:
                    self.collect_reports.setdefault(report.nodeid, report)
        elif isinstance(event, events.SessionEnded):
            write_atomically(self.path, self.render(event))

    def render(self, ended: events.SessionEnded) -> str:
        """The whole document for a session that ended with ``ended``."""
        cases = [self._collect_case(r) for r in self.collect_reports.values()]
        tests = self.results.in_order()
        cases.extend(self._test_case(test) for test in tests)
        counts = {tag: sum(1 for c in cases if c.find(tag) is not None) for tag in _RESULT_TAGS}
        run = self.results.started
        started = run.started_at if run is not None else self.created_at
        elapsed = format_time(ended.finished_at - started)
        suite = ET.Element(
            "testsuite",
            {
                "name": visible(self.suite_name),
                "errors": str(counts["error"]),
                "failures": str(counts["failure"]),
                "skipped": str(counts["skipped"]),
                "tests": str(len(cases)),
                "time": elapsed,
                "timestamp": datetime.fromtimestamp(started).astimezone().isoformat(),
                "hostname": visible(platform.node()),
            },
        )
        properties = _properties(self._suite_properties(ended, tests))
        if properties is not None:
            suite.append(properties)
        suite.extend(cases)
        root = ET.Element(
            "testsuites",
            {
                "name": "pytest tests",
                "tests": str(len(cases)),
                "failures": str(counts["failure"]),
                "errors": str(counts["error"]),
                "time": elapsed,
            },
        )
        root.append(suite)
        ET.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"

    def _suite_properties(
        self, ended: events.SessionEnded, tests: Sequence[events.TestFinished]
    ) -> list[tuple[str, str]]:
        pairs: list[tuple[str, str]] = []
        run = self.results.started
        if run is not None:
            pairs += [
                (f"{PROPERTY_PREFIX}run_id", run.run_id),
                (f"{PROPERTY_PREFIX}workers", str(run.workers)),
                (f"{PROPERTY_PREFIX}strategy", run.strategy),
            ]
        if self.shard is not None:
            pairs += self.shard.properties()
        pairs.append((f"{PROPERTY_PREFIX}exit_code", str(ended.exit_code)))
        if ended.aborted:
            pairs.append((f"{PROPERTY_PREFIX}aborted", "true"))
        pairs += [
            (f"{PROPERTY_PREFIX}attempts:{t.nodeid}", str(t.attempt_count))
            for t in tests
            if t.attempts
        ]
        return pairs

    def _case_attributes(self, nodeid: str, duration: float) -> dict[str, str | None]:
        names = mangle_test_address(nodeid)
        return {"classname": ".".join(names[:-1]), "name": names[-1], "time": format_time(duration)}

    def _collect_case(self, report: pytest.CollectReport) -> ET.Element:
        """A collection error or skip, as pytest's junitxml shows it."""
        case = _element("testcase", self._case_attributes(report.nodeid, 0.0))
        if self.extended:
            case.set("file", visible(report.nodeid.partition("::")[0]))
        if report.failed:
            case.append(_element("error", {"message": "collection failure"}, str(report.longrepr)))
        else:
            case.append(
                _element("skipped", {"message": "collection skipped"}, str(report.longrepr))
            )
        return case

    def _test_case(self, test: events.TestFinished) -> ET.Element:
        attributes = self._case_attributes(test.nodeid, test.duration)
        if self.extended:
            where = test_location(test)
            attributes["file"] = where.path
            attributes["line"] = str(where.line) if where.line is not None else None
        case = _element("testcase", attributes)
        if self.extended:
            properties = _properties(self._case_properties(test))
            if properties is not None:
                case.append(properties)
        result = verdict(test.reports, test.origin)
        if result.tag is not None:
            case.append(
                _element(result.tag, {"message": result.message, "type": result.type}, result.text)
            )
        if self.extended:
            final_failed = test.outcome in events.FAILING_OUTCOMES
            case.extend(self._attempt(a, final_failed) for a in test.attempts)
        _append_output(case, test.reports)
        return case

    def _case_properties(self, test: events.TestFinished) -> list[tuple[str, str]]:
        pairs = [
            (f"{PROPERTY_PREFIX}worker", test.worker_id),
            (f"{PROPERTY_PREFIX}attempts", str(test.attempt_count)),
        ]
        if test.attempts:
            workers = [a.worker_id for a in test.attempts] + [test.worker_id]
            pairs.append((f"{PROPERTY_PREFIX}attempt_workers", ",".join(workers)))
            pairs.append((f"{PROPERTY_PREFIX}flaky", "true" if test.flaky else "false"))
        if test.origin != "worker":
            pairs.append((f"{PROPERTY_PREFIX}origin", test.origin))
        user = next((r.user_properties for r in reversed(test.reports) if r.user_properties), [])
        pairs += [(str(name), str(value)) for name, value in user]
        return pairs

    def _attempt(self, attempt: events.Attempt, final_failed: bool) -> ET.Element:
        """An earlier failed attempt, as Surefire's ``flaky*`` / ``rerun*`` element."""
        result = verdict(attempt.reports)
        kind = "Error" if result.tag == "error" else "Failure"
        tag = f"{'rerun' if final_failed else 'flaky'}{kind}"
        element = _element(tag, {"message": result.message, "type": result.type or kind.lower()})
        if result.text:
            element.append(_element("stackTrace", {}, result.text))
        _append_output(element, attempt.reports)
        return element


_RESULT_TAGS = ("failure", "error", "skipped")
