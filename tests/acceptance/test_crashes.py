"""A worker that dies takes only the test it was running with it.

That test is reported failed with evidence (which worker, which test, the tail of the
worker's stderr); every other test still runs on a replacement worker, and with no
restarts left the tests nobody can run are reported rather than silently dropped.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

#: Code for a test body that kills its worker process, by crash kind.
CRASHES = {
    "os_exit": """
        with capfd.disabled():
            print("last words before os._exit", file=sys.stderr, flush=True)
        os._exit(3)
    """,
    "segfault": """
        ctypes.string_at(0)
    """,
}

CRASH_SUITE = """
    import ctypes
    import os
    import sys
    import time

    import pytest


    @pytest.mark.parametrize("n", range(6))
    def test_before(n):
        time.sleep(0.05)


    def test_crashes(capfd):
    {body}


    @pytest.mark.parametrize("n", range(6))
    def test_after(n):
        time.sleep(0.05)
"""

CRASHING_NODEID = "test_crash_suite.py::test_crashes"


def crash_suite(kind: str) -> str:
    body = "\n".join("    " + line for line in CRASHES[kind].strip("\n").splitlines())
    return CRASH_SUITE.replace("    {body}", body)


def failure_section(lines: list[str], test_name: str) -> str:
    """The text of one test's entry in the FAILURES section of the terminal output."""
    header = re.compile(rf"^_+ {re.escape(test_name)} _+$")
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    assert start is not None, f"no FAILURES entry for {test_name}"
    end = next(
        (i for i in range(start + 1, len(lines)) if re.match(r"^(_{3,} \S|={3,})", lines[i])),
        len(lines),
    )
    return "\n".join(lines[start:end])


@pytest.mark.slow
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
@pytest.mark.parametrize("kind", sorted(CRASHES))
def test_crashing_test_fails_and_the_rest_still_run(
    runner: PluginRunner, kind: str, start: str
) -> None:
    runner.pytester.makepyfile(test_crash_suite=crash_suite(kind))
    run = runner.observe("--start-method", start, workers=2)

    assert run.exit_code == 1, run.output
    outcomes = run.outcomes
    crashed = outcomes.pop("test_crash_suite::test_crashes")
    assert crashed == "failed"
    assert len(outcomes) == 12
    assert set(outcomes.values()) == {"passed"}, outcomes
    assert run.counts == {"failed": 1, "passed": 12}

    assert run.junit is not None
    message = run.junit.case("::test_crashes").message("failure")
    assert re.search(r"\bgw\d+\b", message), message
    assert CRASHING_NODEID in message

    section = failure_section(run.result.outlines, "test_crashes")
    assert re.search(r"\bgw\d+\b", section), section
    assert CRASHING_NODEID in section, section
    if kind == "segfault":
        assert "Fatal Python error" in section, section
        assert "Segmentation fault" in section, section
        assert "killed by signal SIGSEGV" in message, message
    else:
        assert "last words before os._exit" in section, section
        assert "exit code 3" in message, message


@pytest.mark.slow
def test_no_test_vanishes_when_restarts_run_out(runner: PluginRunner) -> None:
    """Two crashes, no restarts allowed: every collected test is still reported once."""
    runner.pytester.makepyfile(
        test_many_crashes="""
        import os
        import time

        import pytest

        CRASH_AT = {5, 20}


        @pytest.mark.parametrize("n", range(32))
        def test_step(n):
            time.sleep(0.05)
            if n in CRASH_AT:
                os._exit(3)
        """
    )
    run = runner.observe("--max-worker-restart", "0", workers=2)

    assert run.exit_code == 1, run.output
    assert "collected 32 items" in run.output
    reported = run.counts.get("passed", 0) + run.counts.get("failed", 0)
    assert reported + run.counts.get("errors", 0) == 32, run.counts
    assert run.junit is not None
    assert len(run.junit.order) == 32
    assert all(len(cases) == 1 for cases in run.junit.cases.values())
    assert run.outcomes["test_many_crashes::test_step[5]"] == "failed"
    assert run.outcomes["test_many_crashes::test_step[20]"] == "failed"
