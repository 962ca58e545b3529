"""Reports do not depend on where tests ran: an in-process run writes the same results.

The zoo (every outcome kind) is run once without workers and once with ``-n 2``, each
with all three report options.  Per test id, the outcome in the JSON report, the JUnit
result element and the TAP verdict must be the same in both runs.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

TAP_POINT = re.compile(r"^(?P<ok>ok|not ok) \d+ - (?P<name>.+?)(?: # (?P<directive>\w+).*)?$")


def report_args(directory: Path) -> tuple[str, ...]:
    return (
        f"--report-json={directory / 'report.json'}",
        f"--report-junit={directory / 'report.xml'}",
        f"--report-tap={directory / 'report.tap'}",
    )


def json_outcomes(directory: Path) -> dict[str, str]:
    data = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    return {test["nodeid"]: test["outcome"] for test in data["tests"]}


def junit_results(directory: Path) -> list[tuple[str, str, str]]:
    root = ET.parse(directory / "report.xml").getroot()
    results = []
    for case in root.iter("testcase"):
        tags = sorted(child.tag for child in case if child.tag in {"failure", "error", "skipped"})
        results.append((case.get("classname", ""), case.get("name", ""), ",".join(tags)))
    return sorted(results)


def tap_verdicts(directory: Path) -> list[tuple[str, str, str]]:
    verdicts = []
    for line in (directory / "report.tap").read_text(encoding="utf-8").splitlines():
        match = TAP_POINT.match(line)
        if match:
            verdicts.append((match["name"], match["ok"], match["directive"] or ""))
    return sorted(verdicts)


@pytest.mark.slow
def test_in_process_and_parallel_reports_agree(runner: PluginRunner, zoo: tuple[str, ...]) -> None:
    serial_dir = runner.pytester.path / "serial-reports"
    parallel_dir = runner.pytester.path / "parallel-reports"
    serial = runner.run(*report_args(serial_dir))
    parallel = runner.run(*report_args(parallel_dir), workers=2)
    assert serial.ret == parallel.ret

    serial_outcomes = json_outcomes(serial_dir)
    assert serial_outcomes, "the in-process run wrote no tests"
    assert json_outcomes(parallel_dir) == serial_outcomes
    assert junit_results(parallel_dir) == junit_results(serial_dir)
    assert tap_verdicts(parallel_dir) == tap_verdicts(serial_dir)

    data = json.loads((serial_dir / "report.json").read_text(encoding="utf-8"))
    assert {w["id"] for w in data["workers"]} == {"master"}
