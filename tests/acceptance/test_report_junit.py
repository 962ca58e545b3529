"""``--report-junit``: a real ``-n 2`` run of the zoo, read by real JUnit consumers.

The same run also writes pytest's own ``--junitxml``: both files must hold the same
test cases (classname and name), in the same order, with the same outcomes.  The one
difference by design: pytest writes a second ``<testcase>`` for a test whose call
failed and whose teardown errored; ``--report-junit`` writes one test case per test
(its ``<failure>``, with the teardown error in its text).  See docs/reports-junit.md.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import junitparser
import pytest
import xmlschema
from junitparser import xunit2

if TYPE_CHECKING:
    from conftest import JunitReport, Observation, PluginRunner

JUNIT_SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "reference" / "junit-10.xsd"
XS = "{http://www.w3.org/2001/XMLSchema}"

#: Fails on its first attempt, passes on the second (it counts attempts in a file).
FLAKY = """
    import pathlib

    COUNT = pathlib.Path(__file__).with_name("flaky.count")


    def test_flaky():
        runs = int(COUNT.read_text()) + 1 if COUNT.exists() else 1
        COUNT.write_text(str(runs))
        assert runs >= 2, "fails on its first attempt"
"""

BROKEN = """
    import no_such_module_for_the_junit_report

    def test_never():
        pass
"""


def extended_schema(tmp_path: Path) -> xmlschema.XMLSchema:
    """The shared schema plus the documented additions (see tests/unit/test_writer_junit.py)."""
    root = ET.fromstring(JUNIT_SCHEMA.read_text(encoding="utf-8"))
    testcase = next(e for e in root.findall(f"{XS}element") if e.get("name") == "testcase")
    complex_type = testcase.find(f"{XS}complexType")
    assert complex_type is not None
    choice = complex_type.find(f"{XS}sequence/{XS}choice")
    assert choice is not None
    choice.insert(0, ET.Element(f"{XS}element", ref="properties"))
    ET.SubElement(complex_type, f"{XS}attribute", name="file", type="xs:string")
    ET.SubElement(complex_type, f"{XS}attribute", name="line", type="xs:positiveInteger")
    path = tmp_path / "junit-10-extended.xsd"
    path.write_text(ET.tostring(root, encoding="unicode"), encoding="utf-8")
    return xmlschema.XMLSchema(str(path))


def counted_right(path: Path) -> None:
    """junitparser's recount from the test cases equals the counts the file states."""
    for parsed in (junitparser.JUnitXml.fromfile(str(path)), xunit2.JUnitXml.fromfile(str(path))):
        for suite in parsed:
            stated = (suite.tests, suite.failures, suite.errors, suite.skipped)
            suite.update_statistics()  # type: ignore[no-untyped-call]
            assert stated == (suite.tests, suite.failures, suite.errors, suite.skipped)


def collapsed(outcome: str) -> str:
    """pytest's two test cases for a failed call plus a teardown error, as one outcome."""
    words = outcome.split(",")
    return "failed" if "failed" in words else outcome


def assert_same_cases(mine: JunitReport, theirs: JunitReport) -> None:
    assert set(mine.cases) == set(theirs.cases)
    assert all(len(cases) == 1 for cases in mine.cases.values())
    doubled = {key for key, value in theirs.outcomes.items() if "," in value}
    assert {key.rpartition("::")[2] for key in doubled} <= {"test_fail_and_teardown_error"}
    assert mine.outcomes == {key: collapsed(value) for key, value in theirs.outcomes.items()}
    assert list(mine.order) == list(dict.fromkeys(theirs.order))
    for key, (case,) in mine.cases.items():  # pytest's second test case: the teardown error
        assert first_result(case.children) in [first_result(c.children) for c in theirs.cases[key]]


def first_result(children: tuple[tuple[str, tuple[tuple[str, str], ...], str], ...]) -> object:
    """A test case's first result element: tag, message (and type, for a skip)."""
    for tag, attributes, _ in children:
        if tag in ("failure", "error", "skipped"):
            found = dict(attributes)
            return (tag, found.get("message"), found.get("type") if tag == "skipped" else None)
    return None


def reports_of(run: Observation, mine: Path) -> tuple[JunitReport, JunitReport]:
    """(this file, pytest's ``--junitxml``), parsed by the suite's own junit reader."""
    theirs = run.junit
    assert theirs is not None, run.output
    assert mine.is_file(), run.output
    return type(theirs).parse(mine), theirs


def case_elements(path: Path) -> dict[str, ET.Element]:
    return {
        f"{e.get('classname')}::{e.get('name')}": e
        for e in ET.parse(path).getroot().iter("testcase")
    }


@pytest.mark.slow
@pytest.mark.parametrize("extended", [False, True], ids=["default", "extended"])
def test_the_zoo_report_agrees_with_pytests_own_junitxml(
    runner: PluginRunner, zoo: tuple[str, ...], extended: bool, tmp_path: Path
) -> None:
    mine = runner.pytester.path / "enriched.xml"
    # pytest-rerunfailures, when installed, would compete with --retries.
    retries = ["--retries=1", "-p", "no:rerunfailures"]
    options = ["--report-junit-extended", *retries] if extended else []
    if extended:
        runner.pytester.makepyfile(test_zoo_flaky=FLAKY)
    run = runner.observe(f"--report-junit={mine}", *options, *zoo, workers=2)

    assert run.exit_code == pytest.ExitCode.TESTS_FAILED, run.output
    mine_report, theirs_report = reports_of(run, mine)
    assert_same_cases(mine_report, theirs_report)
    counted_right(mine)
    assert mine_report.suite["name"] == "zoo"  # junit_suite_name, as pytest's file has it
    properties = dict(mine_report.suite_properties)
    assert properties["parallel_exec.workers"] == "2"
    assert properties["parallel_exec.run_id"]
    assert properties["parallel_exec.strategy"]

    cases = case_elements(mine)
    output = cases["test_zoo_outcomes::test_output_in_failure"]
    assert "stdout line from a failing test" in output.findtext("system-out", "")
    assert "stderr line from a failing test" in output.findtext("system-err", "")
    if extended:
        for key, case in cases.items():
            worker = case.find("properties/property[@name='parallel_exec.worker']")
            assert worker is not None, key
            # A retry may run on a worker started for it once the others were drained.
            assert re.fullmatch(r"gw\d+", worker.get("value", "")), key
            module = case.get("file", "").removesuffix(".py").replace("/", ".")
            assert f"{case.get('classname')}.".startswith(f"{module}."), key
            assert case.get("line") is None or int(case.get("line", "")) >= 1, key
        flaky = cases["test_zoo_flaky::test_flaky"]
        assert flaky.find("failure") is None
        assert [e.tag for e in flaky if e.tag.startswith(("flaky", "rerun"))] == ["flakyFailure"]
        assert properties["parallel_exec.attempts:test_zoo_flaky.py::test_flaky"] == "2"
        failed = cases["test_zoo_outcomes::test_fails_exception"]
        assert [e.tag for e in failed if e.tag.startswith("rerun")] == ["rerunFailure"]
        source = (runner.pytester.path / "test_zoo_outcomes.py").read_text().splitlines()
        assert source[int(failed.get("line", "")) - 1] == "def test_fails_exception():"

    if not JUNIT_SCHEMA.is_file():
        pytest.skip(f"everything but the schema check passed: {JUNIT_SCHEMA} is not there")
    schema = extended_schema(tmp_path) if extended else xmlschema.XMLSchema(str(JUNIT_SCHEMA))
    schema.validate(str(mine))


@pytest.mark.slow
def test_a_collection_error_is_reported_as_pytest_reports_it(
    runner: PluginRunner, tmp_path: Path
) -> None:
    runner.pytester.makepyfile(test_fine="def test_fine():\n    pass\n", test_broken=BROKEN)
    mine = runner.pytester.path / "enriched.xml"
    run = runner.observe(f"--report-junit={mine}", workers=2)

    assert run.exit_code == pytest.ExitCode.INTERRUPTED, run.output
    mine_report, theirs_report = reports_of(run, mine)
    assert_same_cases(mine_report, theirs_report)
    counted_right(mine)
    (case,) = mine_report.all_cases
    assert case.key == "::test_broken"
    assert case.message("error") == "collection failure"
    assert mine_report.suite["errors"] == "1"

    if not JUNIT_SCHEMA.is_file():
        pytest.skip(f"everything but the schema check passed: {JUNIT_SCHEMA} is not there")
    xmlschema.XMLSchema(str(JUNIT_SCHEMA)).validate(str(mine))
