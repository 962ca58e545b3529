"""``--report-tap``: the run as a TAP version 13 stream.

TAP is read as it is written, so a test point is emitted as soon as its ``TestFinished``
arrives: points are numbered in completion order and the plan comes last.  With no path
the stream goes to standard output, each point flushed as it is written; with a path the
same document is written atomically when the session ends.  The format (directives,
YAML diagnostics, escaping, ``Bail out!``) is documented in ``docs/reports-tap.md``.

Two consumers were the yardstick: Perl's ``TAP::Parser`` (what ``prove`` runs, whose
YAMLish reader is stricter than YAML) and the ``tap.py`` package.  Everything written is
therefore the subset both read: double-quoted single-line scalars with only ``\\\\``,
``\\"``, ``\\t``, ``\\n`` and ``\\r`` escapes, and literal block scalars only where
YAMLish reads them back unchanged.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

import pytest

from ...files import write_atomically
from .. import events
from .common import (
    OUTCOMES,
    Results,
    cap,
    captured,
    crash_location,
    crash_note,
    decide,
    longrepr_text,
    message_of,
    tally,
    test_location,
    visible,
    xfail_reason,
)

#: Two spaces: the indentation of a YAML diagnostic block under its test point.
INDENT = "  "

#: Characters a TAP line cannot hold as they are: line breaks of any reader (Python's
#: universal newlines, ``str.splitlines``, YAML 1.1), other controls, lone surrogates
#: and non-characters (not encodable, or rejected by YAML parsers).
_NOT_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")
#: What ``common.visible`` leaves but YAML forbids or breaks lines at.
_NOT_IN_YAML = re.compile("[\x7f-\x9f\u2028\u2029]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: A ``#`` in a description, with the backslashes just before it (they must be doubled,
#: or the escape of the ``#`` would be read as an escaped backslash).
_HASH = re.compile(r"(\\*)#")
#: The double-quoted escapes both YAML and TAP::Parser's YAMLish reader understand.
_QUOTED_ESCAPES = {"\\": "\\\\", '"': '\\"', "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_NEEDS_QUOTED_ESCAPE = re.compile('[\\\\"\t\n\r]')

Scalar = Union[str, int, float, bool, None]  # noqa: UP007 (a runtime alias on 3.10)
Value = Union[Scalar, "Mapping[str, Value]", "Sequence[Mapping[str, Value]]"]


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """``text`` on one TAP line: breaks and controls shown as ``\\n``, ``\\xNN``..."""
    return _NOT_IN_LINE.sub(_escape_char, text)


def description(name: str) -> str:
    """A test point's description: one line, ``#`` escaped as ``\\#`` (Test::Builder's
    convention, which TAP::Parser reads) so that a name never starts a directive."""
    return _HASH.sub(lambda m: m.group(1) * 2 + "\\#", one_line(name))


def yaml_text(text: str) -> str:
    """``text`` with what YAML cannot carry made visible (see ``common.visible``)."""
    return _NOT_IN_YAML.sub(_escape_char, visible(text))


def quoted(text: str) -> str:
    """A double-quoted YAML scalar that YAMLish reads back too."""
    body = _NEEDS_QUOTED_ESCAPE.sub(lambda m: _QUOTED_ESCAPES[m.group()], yaml_text(text))
    return f'"{body}"'


def _block_safe(lines: Sequence[str]) -> bool:
    """Whether a literal block scalar carries these lines exactly through every reader.

    YAMLish has no indentation indicator, so the first line must not be indented;
    it counts a tab as one column of indentation; ``tap.py`` ends a block at any line
    that starts with ``...`` after its indentation.
    """
    if not lines or not lines[0] or lines[0][0].isspace():
        return False
    for line in lines:
        rest = line.lstrip(" ")
        if rest and (rest[0].isspace() or rest.startswith("...")):
            return False
    return True


def _scalar(value: Scalar) -> str:
    if value is None:
        return "~"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6f}"
    return quoted(value)


def yaml_lines(mapping: Mapping[str, Value], indent: str) -> list[str]:
    """``mapping`` as YAML block lines, each prefixed by ``indent``.

    Multi-line strings become literal block scalars when that is exact (they then end
    with one newline, as YAML's default chomping has it), otherwise double-quoted.
    """
    lines: list[str] = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            lines.append(f"{indent}{key}:")
            lines.extend(yaml_lines(value, indent + INDENT))
        elif isinstance(value, (list, tuple)):
            lines.append(f"{indent}{key}:")
            for item in value:
                item_lines = yaml_lines(item, indent + INDENT + INDENT)
                first = item_lines[0]
                lines.append(f"{indent}{INDENT}- {first[len(indent) + 2 * len(INDENT) :]}")
                lines.extend(item_lines[1:])
        elif isinstance(value, str) and "\n" in value:
            text = yaml_text(value).rstrip("\n")
            body = text.split("\n")
            if "\r" not in text and _block_safe(body):
                pad = indent + INDENT
                lines.append(f"{indent}{key}: |")
                lines.extend(f"{pad}{line}" for line in body)
            else:
                lines.append(f"{indent}{key}: {quoted(value)}")
        else:
            lines.append(f"{indent}{key}: {_scalar(value)}")  # type: ignore[arg-type]
    return lines


def diagnostic_block(mapping: Mapping[str, Value]) -> list[str]:
    """A TAP 13 YAML block: ``---`` ... ``...`` indented under its test point."""
    return [f"{INDENT}---", *yaml_lines(mapping, INDENT), f"{INDENT}..."]


def _where(path: str, line: int | None) -> dict[str, Value]:
    where: dict[str, Value] = {"file": path}
    if line is not None:
        where["line"] = line
    return where


def _failure(report: pytest.TestReport, origin: str) -> dict[str, Value]:
    """What one failed phase says: phase, message, where it failed, the full text."""
    found: dict[str, Value] = {"phase": report.when or "", "message": message_of(report, origin)}
    at = crash_location(report)
    if at is not None:
        found["at"] = _where(at.path, at.line)
    text = longrepr_text(report)
    if text.strip() and text.strip() != found["message"]:
        found["details"] = cap(text)
    return found


def _attempt(attempt: events.Attempt) -> dict[str, Value]:
    failed = decide(attempt.reports).failure
    found: dict[str, Value] = {"worker": attempt.worker_id, "outcome": attempt.outcome}
    if failed is not None:
        found["phase"] = failed.when or ""
        found["message"] = message_of(failed)
    found["duration"] = attempt.duration
    return found


def diagnostics_of(event: events.TestFinished) -> dict[str, Value] | None:
    """The YAML block of a test point, or None when a bare line says it all."""
    outcome = event.outcome
    decision = decide(event.reports)
    deciding = decision.failure
    if deciding is None and not event.attempts:
        return None
    where = test_location(event)
    found: dict[str, Value] = {"outcome": outcome}
    if deciding is not None:
        found["message"] = message_of(deciding, event.origin)
        found["phase"] = deciding.when or ""
    elif event.flaky:
        found["message"] = f"flaky: {outcome} on attempt {event.attempt_count}"
    found.update(_where(where.path, where.line))
    found["worker"] = event.worker_id
    found["duration"] = event.duration
    if event.origin != "worker":
        found["origin"] = event.origin
    if event.attempts:
        found["flaky"] = event.flaky
        found["attempts"] = event.attempt_count
    if deciding is not None:
        first = _failure(deciding, event.origin)
        for key in ("at", "details"):
            if key in first:
                found[key] = first[key]
        more = [_failure(r, event.origin) for r in decision.further]
        if more:
            found["more_failures"] = more
        output = captured(event.reports)
        for key, text in (
            ("stdout", output.stdout),
            ("stderr", output.stderr),
            ("log", output.log),
        ):
            if text:
                found[key] = cap(text)
    if event.attempts:
        found["earlier_attempts"] = [_attempt(a) for a in event.attempts]
    return found


def point_lines(number: int, event: events.TestFinished) -> list[str]:
    """A test point's line and, for a failure or a retried test, its YAML block."""
    outcome = event.outcome
    name = description(event.nodeid)
    decision = decide(event.reports)
    if decision.failure is not None:
        # Whatever the call did: a failed setup or teardown fails the point.
        line = f"not ok {number} - {name}"
    elif outcome == "skipped":
        reason = one_line(message_of(decision.report, event.origin).strip())
        line = f"ok {number} - {name} # SKIP {reason}".rstrip()
    elif outcome in ("xfailed", "xpassed"):
        status = "not ok" if outcome == "xfailed" else "ok"
        reason = xfail_reason(event.reports) or "expected to fail"
        line = f"{status} {number} - {name} # TODO {one_line(reason)}"
    else:
        line = f"ok {number} - {name}"
    found = diagnostics_of(event)
    return [line] if found is None else [line, *diagnostic_block(found)]


def collection_error_point(number: int, report: pytest.CollectReport, worker_id: str) -> list[str]:
    """A failed collection as a ``not ok`` point, so a consumer counts it as a failure."""
    what = report.nodeid or "session"
    text = longrepr_text(report)
    found: dict[str, Value] = {
        "outcome": "error",
        "message": message_of(report),
        "phase": "collect",
        "file": what.partition("::")[0],
        "worker": worker_id,
    }
    at = crash_location(report)
    if at is not None:
        found["at"] = _where(at.path, at.line)
    if text.strip():
        found["details"] = cap(text)
    line = f"not ok {number} - {description(f'ERROR collecting {what}')}"
    return [line, *diagnostic_block(found)]


#: The comment a shard's TAP report carries (``parallel-exec merge`` reads it).
SHARD_COMMENT = "# parallel_exec shard {shard} of matrix {run_id}, plan {plan}"


def shard_comment(event: events.ShardSelected) -> str:
    return SHARD_COMMENT.format(shard=event.label, run_id=event.run_id, plan=event.fingerprint)


def summary_comment(tests: Sequence[events.TestFinished], collection_errors: int) -> str:
    counts = tally(tests)
    parts = [f"{counts[o]} {o}" for o in OUTCOMES if counts[o]]
    if counts["flaky"]:
        parts.append(f"{counts['flaky']} flaky")
    if collection_errors:
        plural = "s" if collection_errors != 1 else ""
        parts.append(f"{collection_errors} collection error{plural}")
    return "# " + (", ".join(parts) or "no tests ran")


class TapWriter:
    """Consumer: one TAP test point per finished test, the plan at session end.

    ``path=None`` streams to standard output (``sys.stdout`` looked up at each write, so
    pytest's capture and ``capsys`` see it); a path gets the document atomically.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.description = f"TAP report ({path or 'standard output'})"
        self._lines: list[str] = []
        self._count = 0
        self._started = False
        self._ended = False
        self._results = Results()
        self._collection_errors = 0

    def __call__(self, event: events.RunEvent) -> None:
        if self._ended:
            return
        self._results.note(event)
        if isinstance(event, events.RunStarted):
            self._emit(
                [
                    f"# parallel_exec run {one_line(event.run_id)}: {event.workers} "
                    f"worker{'s' if event.workers != 1 else ''}, {one_line(event.strategy)}"
                ]
            )
        elif isinstance(event, events.ShardSelected):
            self._emit([shard_comment(event)])
        elif isinstance(event, events.CollectionFinished):
            for report in event.collect_reports:
                if report.failed:
                    self._count += 1
                    self._collection_errors += 1
                    self._emit(collection_error_point(self._count, report, event.worker_id))
        elif isinstance(event, events.TestFinished):
            self._count += 1
            self._emit(point_lines(self._count, event))
        elif isinstance(event, events.WorkerCrashed):
            self._emit([f"# {one_line(crash_note(event))}"])
        elif isinstance(event, events.SessionEnded):
            self._end(event)

    def _end(self, event: events.SessionEnded) -> None:
        self._ended = True
        closing = [summary_comment(self._results.arrived, self._collection_errors)]
        closing.append(f"1..{self._count}" if self._count else "1..0 # SKIP no tests ran")
        if event.aborted:
            closing.append(f"Bail out! {self._bail_reason(event)}")
        self._emit(closing)
        if self.path is not None:
            write_atomically(self.path, "".join(f"{line}\n" for line in self._lines))

    def _bail_reason(self, event: events.SessionEnded) -> str:
        not_run = self._results.not_run
        reason = f"run aborted (exit code {event.exit_code})"
        if not_run:
            reason += f": {not_run} test{'s' if not_run != 1 else ''} not run"
        return reason

    def _emit(self, lines: list[str]) -> None:
        if not self._started:
            self._started = True
            lines = ["TAP version 13", *lines]
        if self.path is not None:
            self._lines.extend(lines)
            return
        stream = sys.stdout
        encoding = getattr(stream, "encoding", None) or "utf-8"
        text = "".join(f"{line}\n" for line in lines)
        with contextlib.suppress(LookupError):  # an encoding Python does not know
            text = text.encode(encoding, "backslashreplace").decode(encoding)
        stream.write(text)
        stream.flush()
