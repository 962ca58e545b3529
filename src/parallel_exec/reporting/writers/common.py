"""What every writer reads off a finished test: text, location, captured output, counts."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import pytest

from .. import events

#: Outcomes a writer can see, in the order summaries list them.
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")

#: Characters XML 1.0 cannot carry at all (C0 controls other than tab/newline/return,
#: lone surrogates, U+FFFE/U+FFFF).  Writers replace each with a visible escape.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def visible(text: str) -> str:
    """``text`` with characters XML cannot hold shown as ``\\xNN`` / ``\\uNNNN``."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _NOT_XML.sub(escape, text)


def longrepr_text(report: pytest.TestReport | None) -> str:
    """The failure or skip text as pytest prints it (empty when there is none)."""
    if report is None or report.longrepr is None:
        return ""
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    return str(report.longreprtext)


def message_of(report: pytest.TestReport | None) -> str:
    """A one-line reason: the crash message, a skip reason, or the first line."""
    if report is None or report.longrepr is None:
        return ""
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return str(crash.message).splitlines()[0] if str(crash.message) else ""
    text = longrepr_text(report).strip()
    return text.splitlines()[-1] if text else ""


@dataclass(frozen=True)
class Where:
    """A file and a 1-based line."""

    path: str
    line: int | None


def test_location(event: events.TestFinished) -> Where:
    """Where the test is defined: pytest's 0-based line made 1-based."""
    path, line, _ = event.location
    return Where(path, line + 1 if line is not None else None)


def crash_location(report: pytest.TestReport | None) -> Where | None:
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


def cap(text: str, limit: int) -> str:
    """At most ``limit`` characters: the head and the tail, with a note of what was cut."""
    if len(text) <= limit:
        return text
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... {cut} characters cut by parallel_exec ...]\n{text[-half:]}"


def tally(tests: Iterable[events.TestFinished]) -> Counter[str]:
    """Tests per outcome (every key of ``OUTCOMES`` present), plus ``flaky``."""
    counts: Counter[str] = Counter(dict.fromkeys(OUTCOMES, 0))
    counts["flaky"] = 0
    for test in tests:
        counts[test.outcome] += 1
        if test.flaky:
            counts["flaky"] += 1
    return counts
