"""Report files and report sections that only the controller can produce correctly.

``--junitxml`` must be written once, by the controller, holding every test (workers
writing their own partial files over it would lose tests), and be valid JUnit XML.
``--durations`` must list the slowest tests from the replayed reports.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

JUNIT_SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "reference" / "junit-10.xsd"

TIMED_SUITE = """
    import time

    import pytest


    @pytest.mark.parametrize("n", range(7))
    def test_sleeps(n):
        time.sleep(0.1 * n if n >= 2 else 0)  # the 5 slowest stand out by 0.2 s at least


    @pytest.mark.parametrize("n", range(6))
    def test_fast(n):
        assert n != 4
"""

#: Notes when each worker's session started, to prove who wrote the junit file.
SESSION_START_CONFTEST = """
    import os
    import pathlib
    import time

    STARTS = pathlib.Path(__file__).parent / "worker-starts"


    def pytest_sessionstart(session):
        if hasattr(session.config, "workerinput"):
            STARTS.mkdir(exist_ok=True)
            (STARTS / str(os.getpid())).write_text(repr(time.time()))
"""


def junit_suite_timestamp(path: Path) -> float:
    text = path.read_text(encoding="utf-8")
    match = re.search(r'<testsuite [^>]*timestamp="([^"]+)"', text)
    assert match, "no testsuite timestamp"
    return datetime.fromisoformat(match.group(1)).timestamp()


@pytest.mark.slow
def test_junitxml_is_complete_and_written_by_the_controller(runner: PluginRunner) -> None:
    pytester = runner.pytester
    pytester.makepyfile(test_timed=TIMED_SUITE)
    pytester.makeconftest(SESSION_START_CONFTEST)
    run = runner.observe("--durations=5", workers=2)

    assert run.exit_code == 1
    assert run.junit is not None
    assert len(run.junit.order) == 13
    assert all(len(cases) == 1 for cases in run.junit.cases.values())
    assert run.junit.suite["tests"] == "13"
    assert run.junit.suite["failures"] == "1"

    starts = [float(p.read_text()) for p in (pytester.path / "worker-starts").iterdir()]
    assert len(starts) == 2
    junit = next((pytester.path / "reports").glob("*.xml"))
    assert junit_suite_timestamp(junit) < min(starts), "the junit suite began in a worker"

    lines = run.result.outlines
    header = next(i for i, line in enumerate(lines) if "slowest 5 durations" in line)
    durations = [line for line in lines[header + 1 : header + 6]]
    slowest = {m.group(1) for line in durations if (m := re.search(r"call\s+(\S+)$", line))}
    assert slowest == {f"test_timed.py::test_sleeps[{n}]" for n in (2, 3, 4, 5, 6)}, durations


def test_junitxml_matches_the_junit_schema(runner: PluginRunner) -> None:
    if not JUNIT_SCHEMA.is_file():
        pytest.skip(f"the JUnit schema is not beside this checkout ({JUNIT_SCHEMA})")
    xmlschema = pytest.importorskip("xmlschema")
    runner.pytester.makepyfile(test_timed=TIMED_SUITE.replace("0.1 * n", "0.01 * n"))
    junit = runner.junit_path("schema")
    result = runner.run(f"--junitxml={junit}", workers=2)

    assert result.ret == 1, result.stdout.str()
    xmlschema.XMLSchema(JUNIT_SCHEMA).validate(junit)
