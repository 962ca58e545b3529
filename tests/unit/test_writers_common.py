"""The writers' single rules (``writers.common``), and the three writers keeping to them.

Plain data: ``pytest.TestReport`` objects shaped as pytest and the controller make them.
Each rule is checked on its own, then the same events are given to the JUnit, JSON and
TAP writers and their files read back: each says the same thing its own way.
"""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]
from inline_reports import report

from parallel_exec.reporting import events
from parallel_exec.reporting.writers import common
from parallel_exec.reporting.writers.json_report import TEXT_CAP, JsonWriter
from parallel_exec.reporting.writers.junit import JunitWriter
from parallel_exec.reporting.writers.tap import TapWriter

# --------------------------------------------------------------------------- plain data


def phases(
    nodeid: str, setup: str = "passed", call: str = "passed", teardown: str = "passed"
) -> tuple[pytest.TestReport, ...]:
    found = [report(nodeid, "setup", setup)]
    if setup == "passed":
        found.append(report(nodeid, "call", call))
    found.append(report(nodeid, "teardown", teardown))
    return tuple(found)


def finished(reports: Sequence[pytest.TestReport], origin: str = "worker") -> events.TestFinished:
    first = reports[0]
    return events.TestFinished("gw0", first.nodeid, first.location, tuple(reports), origin=origin)


def run(
    tests: Sequence[events.TestFinished],
    nodeids: Sequence[str] | None = None,
    not_run: int | None = 0,
    extra: Sequence[events.RunEvent] = (),
) -> list[events.RunEvent]:
    names = tuple(t.nodeid for t in tests) if nodeids is None else tuple(nodeids)
    stream: list[events.RunEvent] = [
        events.RunStarted("run-1", 1, "load", started_at=1_700_000_000.0),
        events.CollectionFinished("gw0", names, (), (), ()),
        *tests,
        *extra,
    ]
    if not_run is not None:
        stream.append(events.RunFinished(not_run))
    stream.append(events.SessionEnded(1, aborted=True))
    return stream


@dataclass
class Point:
    ok: bool
    line: str
    block: dict[str, Any]


@dataclass
class Written:
    json: dict[str, Any]
    cases: list[ET.Element]
    tap: list[str]

    @property
    def points(self) -> list[Point]:
        found: list[Point] = []
        lines = iter(self.tap)
        for line in lines:
            if line.startswith(("ok ", "not ok ")):
                found.append(Point(line.startswith("ok "), line, {}))
            elif line == "  ---":
                block = []
                for inner in lines:
                    if inner == "  ...":
                        break
                    block.append(inner)
                found[-1].block = yaml.safe_load(textwrap.dedent("\n".join(block)))
        return found


def write_all(tmp_path: Path, stream: Sequence[events.RunEvent]) -> Written:
    paths = (tmp_path / "r.json", tmp_path / "r.xml", tmp_path / "r.tap")
    writers = (JsonWriter(paths[0]), JunitWriter(paths[1]), TapWriter(paths[2]))
    for event in stream:
        for writer in writers:
            writer(event)
    data = json.loads(paths[0].read_text(encoding="utf-8"))
    cases = list(ET.parse(paths[1]).getroot().iter("testcase"))
    return Written(data, cases, paths[2].read_text(encoding="utf-8").splitlines())


def result_element(case: ET.Element) -> ET.Element | None:
    return next((e for e in case if e.tag in ("failure", "error", "skipped")), None)


# --------------------------------------------------------------------------- order


def test_a_nodeid_collected_twice_takes_its_positions_in_turn() -> None:
    order = common.CollectionOrder(["m.py::a", "m.py::b", "m.py::a"])
    assert order.place("m.py::b") == 1
    assert order.place("m.py::a") == 0
    assert order.unfilled == 1
    assert order.place("x.py::stray") == 3 + 2, "after the collection, in arrival order"
    assert order.place("m.py::a") == 2
    assert order.place("m.py::a") == 3 + 4, "reported once more than collected: after"
    assert order.unfilled == 0


def test_every_writer_keeps_both_results_of_a_nodeid_collected_twice(tmp_path: Path) -> None:
    nodeids = ("m.py::t", "m.py::u", "m.py::t")
    arrivals = [
        finished(phases("m.py::u")),
        finished(phases("m.py::t", call="failed")),
        finished(phases("m.py::t")),
        finished(phases("x.py::stray")),
    ]
    written = write_all(tmp_path, run(arrivals, nodeids))

    expected = [("m.py::t", "failed"), ("m.py::u", "passed"), ("m.py::t", "passed")]
    expected.append(("x.py::stray", "passed"))
    assert [(t["nodeid"], t["outcome"]) for t in written.json["tests"]] == expected
    junit = [(c.get("classname"), c.get("name"), result_element(c)) for c in written.cases]
    assert [(kind, name, element is not None) for kind, name, element in junit] == [
        ("m", "t", True),
        ("m", "u", False),
        ("m", "t", False),
        ("x", "stray", False),
    ]
    # TAP is written as results arrive: every result is a point, none is dropped.
    assert [p.line.rpartition(" - ")[2] for p in written.points] == [t.nodeid for t in arrivals]
    assert written.json["summary"]["not_reached"] == 0


# --------------------------------------------------------------------------- tests not run


def test_tests_not_run_count_collected_positions_without_a_result() -> None:
    results = common.Results()
    results.note(events.CollectionFinished("gw0", ("m.py::a", "m.py::b", "m.py::a"), (), (), ()))
    results.note(finished(phases("m.py::a")))
    assert results.not_run == 2, "one a and b: a node id collected twice counts twice"
    results.note(events.RunFinished(tests_not_run=5))
    assert results.not_run == 5, "the controller's count, once it says it"


def test_every_writer_counts_the_same_tests_not_run(tmp_path: Path) -> None:
    nodeids = ("m.py::a", "m.py::b", "m.py::a")
    written = write_all(tmp_path, run([finished(phases("m.py::a"))], nodeids, not_run=None))
    assert written.json["summary"]["not_reached"] == 2
    assert written.tap[-1] == "Bail out! run aborted (exit code 1): 2 tests not run"

    said = write_all(tmp_path, run([finished(phases("m.py::a"))], nodeids, not_run=3))
    assert said.json["summary"]["not_reached"] == 3
    assert said.tap[-1] == "Bail out! run aborted (exit code 1): 3 tests not run"


# --------------------------------------------------------------------------- deciding report


@pytest.mark.parametrize(
    ("setup", "call", "teardown", "deciding", "further", "fails"),
    [
        ("passed", "passed", "passed", None, (), False),
        ("passed", "skipped", "passed", "call", (), False),
        ("skipped", "passed", "passed", "setup", (), False),
        ("failed", "passed", "passed", "setup", (), True),
        ("passed", "failed", "failed", "call", ("teardown",), True),
        ("passed", "skipped", "failed", "teardown", (), True),
        ("passed", "passed", "failed", "teardown", (), True),
    ],
)
def test_the_deciding_report_is_the_first_failed_phase_else_the_skip(
    setup: str,
    call: str,
    teardown: str,
    deciding: str | None,
    further: tuple[str, ...],
    fails: bool,
) -> None:
    reports = phases("m.py::t", setup, call, teardown)
    decision = common.decide(reports)
    assert decision.report is events.deciding_report(reports)
    assert (decision.report.when if decision.report else None) == deciding
    assert tuple(r.when for r in decision.further) == further
    assert (decision.failure is not None) == fails


def test_every_writer_reports_the_deciding_phase(tmp_path: Path) -> None:
    both = finished(phases("m.py::both", call="failed", teardown="failed"))
    skip_then_error = finished(phases("m.py::skip", call="skipped", teardown="failed"))
    written = write_all(tmp_path, run([both, skip_then_error]))

    tests = {t["nodeid"]: t for t in written.json["tests"]}
    assert tests["m.py::both"]["message"] == "AssertionError: m.py::both call"
    assert tests["m.py::skip"]["message"] == "AssertionError: m.py::skip teardown"
    assert tests["m.py::skip"]["outcome"] == "skipped", "pytest: 1 skipped, 1 error"

    first, second = (result_element(c) for c in written.cases)
    assert first is not None
    assert second is not None
    assert first.tag == "failure"
    assert first.get("message") == "AssertionError: m.py::both call"
    assert 'failed on teardown with "AssertionError: m.py::both teardown"' in (first.text or "")
    assert second.tag == "error"
    assert (
        second.get("message", "") == 'failed on teardown with "AssertionError: m.py::skip teardown"'
    )

    tap_both, tap_skip = written.points
    assert not tap_both.ok, "any failed phase fails the point"
    assert not tap_skip.ok, "whatever the call did"
    assert tap_both.block["phase"] == "call"
    assert [f["phase"] for f in tap_both.block["more_failures"]] == ["teardown"]
    assert tap_skip.block["phase"] == "teardown"
    assert "more_failures" not in tap_skip.block


# --------------------------------------------------------------------------- reasons, crash wording


def test_skip_and_xfail_reasons_are_read_one_way(tmp_path: Path) -> None:
    skipped = finished(phases("m.py::skip", call="skipped"))
    xfailed = finished(
        (
            report("m.py::xfail", "setup", "passed"),
            report(
                "m.py::xfail", "call", "skipped", longrepr="E   assert 0", wasxfail="reason: known"
            ),
            report("m.py::xfail", "teardown", "passed"),
        )
    )
    assert common.message_of(skipped.reports[1]) == "because"
    assert common.xfail_reason(xfailed.reports) == "known"
    written = write_all(tmp_path, run([skipped, xfailed]))

    assert written.json["tests"][0]["message"] == "because"
    junit_skip, junit_xfail = (result_element(c) for c in written.cases)
    assert junit_skip is not None
    assert junit_xfail is not None
    assert junit_skip.get("message") == "because"
    assert junit_xfail.get("message") == "known"
    tap_skip, tap_xfail = written.points
    assert tap_skip.line.endswith(" # SKIP because")
    assert tap_xfail.line.endswith(" # TODO known")


CRASH = "worker gw1 crashed while running m.py::dies (killed by signal SIGKILL)"


def test_a_crashed_test_is_worded_by_the_first_line_of_the_controller_text(
    tmp_path: Path,
) -> None:
    text = f"{CRASH}\nits last words:\nSegmentation fault"
    crashed = finished(
        (
            report("m.py::dies", "call", "failed", longrepr=text),
            report("m.py::dies", "teardown", "passed"),
        ),
        origin="crash",
    )
    assert common.message_of(crashed.reports[0], "crash") == CRASH
    assert common.message_of(crashed.reports[0]) == "Segmentation fault", "pytest's: the end"
    gone = events.WorkerCrashed("gw1", -9, "m.py::dies", "Segmentation fault\n")
    assert (
        common.crash_note(gone)
        == "worker gw1 crashed while running m.py::dies (killed by signal SIGKILL)"
    )
    written = write_all(tmp_path, run([crashed], extra=[gone]))

    assert written.json["tests"][0]["message"] == CRASH
    element = result_element(written.cases[0])
    assert element is not None
    assert element.get("message", "").splitlines()[0] == CRASH
    assert element.get("type") == "parallel_exec.crash"
    assert written.points[0].block["message"] == CRASH
    assert f"# {common.crash_note(gone)}" in written.tap


# --------------------------------------------------------------------------- truncation


def test_one_truncation_limit() -> None:
    assert TEXT_CAP == common.TEXT_LIMIT == 65_536, "as docs/reports-json.md says"
    kept = "x" * common.TEXT_LIMIT
    assert common.cap(kept) == kept
    longer = kept + "y"
    cut = common.cap(longer)
    assert cut.startswith("x" * (common.TEXT_LIMIT // 2))
    assert cut.endswith("x" * (common.TEXT_LIMIT // 2 - 1) + "y")
    assert "[... 1 characters cut by parallel_exec ...]" in cut


@pytest.mark.parametrize("extra", [0, 1])
def test_every_capping_writer_cuts_at_the_same_length(tmp_path: Path, extra: int) -> None:
    tail = "\nE   AssertionError: long"
    text = "x" * (common.TEXT_LIMIT - len(tail) + extra) + tail
    assert len(text) == common.TEXT_LIMIT + extra
    failing = finished((report("m.py::long", "call", "failed", longrepr=text),))
    written = write_all(tmp_path, run([failing]))

    note = "characters cut by parallel_exec"
    assert (written.json["tests"][0]["truncated"] == ["longrepr"]) == bool(extra)
    assert (note in written.points[0].block["details"]) == bool(extra)
    failure = result_element(written.cases[0])
    assert failure is not None
    assert failure.text == text, "JUnit keeps the whole text, as pytest's file does"
