"""The guards on real processes: a memory ceiling per worker, workers replaced between
tests, processes tests leave running, the run's deadline, tests' own time limits and
slow tests.  Every run checks that each collected test has exactly one result, the
exit code, and that no process of the run is left behind."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

import pytest
from faults_helpers import assert_accounted, assert_no_process_left, run_fault

if TYPE_CHECKING:
    from conftest import PluginRunner

pytestmark = pytest.mark.slow

QUICK = """
    import pytest

    @pytest.mark.parametrize("n", range(4))
    def test_quick(n):
        pass
"""
QUICK_IDS = [f"test_quick.py::test_quick[{n}]" for n in range(4)]


def test_a_test_allocating_past_the_ceiling_fails_with_memory_error(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(
        test_quick=textwrap.dedent(QUICK),
        test_big=textwrap.dedent(
            """
            import time

            def test_big():
                data = b"x" * (400 * 2**20)
                time.sleep(30)
            """
        ),
    )
    run = run_fault(runner, "--max-worker-memory", "300MB")
    assert run.exit_code == pytest.ExitCode.TESTS_FAILED, run.output
    assert_accounted(run, [*QUICK_IDS, "test_big.py::test_big"])
    outcomes = dict(run.results())
    assert outcomes.pop("test_big.py::test_big") == "failed"
    assert set(outcomes.values()) == {"passed"}
    assert "MemoryError: worker exceeded 286.1 MiB (peak " in run.case_text("test_big")
    assert "MEMORY test_big.py::test_big" in run.output
    assert "1 test over --max-worker-memory" in run.output
    assert "crashed" not in run.output
    assert_no_process_left(run)


def test_a_suite_leaking_memory_gets_fresh_workers_and_nothing_fails(
    runner: PluginRunner,
) -> None:
    runner.pytester.makepyfile(
        test_leaky=textwrap.dedent(
            """
            import pytest

            KEPT = []

            @pytest.mark.parametrize("n", range(16))
            def test_leaks(n):
                KEPT.append(b"x" * (50 * 2**20))
            """
        )
    )
    run = run_fault(runner, "--max-worker-memory", "300MB")
    assert run.exit_code == pytest.ExitCode.OK, run.output
    assert_accounted(run, 16)
    assert set(dict(run.results()).values()) == {"passed"}
    assert "worker replaced: its memory grew to" in run.output
    assert "workers replaced between tests" in run.output
    assert_no_process_left(run)


def test_max_worker_tests_replaces_workers_between_tests(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(
        test_pids=textwrap.dedent(
            """
            import os

            import pytest

            @pytest.mark.parametrize("n", range(12))
            def test_pid(n, record_property):
                record_property("pid", os.getpid())
            """
        )
    )
    run = run_fault(runner, "--max-worker-tests", "3", workers=1)
    assert run.exit_code == pytest.ExitCode.OK, run.output
    assert_accounted(run, 12)
    pids: dict[str, int] = {}
    for case in ET.parse(run.junit).getroot().iter("testcase"):
        for prop in case.iter("property"):
            pid = str(prop.get("value"))
            pids[pid] = pids.get(pid, 0) + 1
    assert len(pids) == 4, pids  # 12 tests, 3 per worker
    assert set(pids.values()) == {3}, pids
    assert run.output.count("ran 3 tests (--max-worker-tests)") >= 3
    assert_no_process_left(run)


LEAKS = """
    import subprocess

    def test_leaves_a_process():
        subprocess.Popen(["sleep", "300"])

    def test_cleans_up():
        process = subprocess.Popen(["sleep", "300"])
        process.kill()
        process.wait()
"""


@pytest.mark.parametrize("fail", [False, True], ids=["reported", "fail-on-leak"])
def test_a_process_left_running_is_reported_and_ended(runner: PluginRunner, fail: bool) -> None:
    runner.pytester.makepyfile(test_quick=textwrap.dedent(QUICK), test_leaks=textwrap.dedent(LEAKS))
    run = run_fault(runner, *(["--fail-on-leak"] if fail else []))
    leaker = "test_leaks.py::test_leaves_a_process"
    assert_accounted(run, [*QUICK_IDS, leaker, "test_leaks.py::test_cleans_up"])
    outcomes = dict(run.results())
    assert run.output.count("LEAK ") == 1, run.output
    assert f"LEAK {leaker} left process " in run.output
    assert "'sleep 300' running (ended with its worker)" in run.output
    assert "1 process left running by a test" in run.output
    if fail:
        assert run.exit_code == pytest.ExitCode.TESTS_FAILED, run.output
        assert outcomes.pop(leaker) == "error"  # its teardown failed
        assert "(--fail-on-leak)" in run.case_text("test_leaves_a_process")
    else:
        assert run.exit_code == pytest.ExitCode.OK, run.output
    assert set(outcomes.values()) == {"passed"}
    # The sleep carries the run's marker variable: it was ended too.
    assert_no_process_left(run)


def test_the_run_timeout_stops_everything_and_writes_every_report(
    runner: PluginRunner,
) -> None:
    runner.pytester.makepyfile(
        test_slow=textwrap.dedent(
            """
            import time

            import pytest

            @pytest.mark.parametrize("n", range(20))
            def test_slow(n):
                time.sleep(2)
            """
        )
    )
    tap = runner.pytester.path / "run.tap"
    outcome = runner.pytester.path / "outcome.json"
    run = run_fault(
        runner,
        "--run-timeout",
        "3",
        "--report-tap",
        str(tap),
        "--report-outcome",
        str(outcome),
        timeout=60,
    )
    assert run.exit_code == pytest.ExitCode.INTERRUPTED, run.output
    assert_accounted(run, 20)
    outcomes = dict(run.results())
    assert "passed" in outcomes.values()
    assert "error" in outcomes.values()  # not run, with the reason
    assert "not run: the run reached --run-timeout 3.0 s" in run.output
    assert "Interrupted: the run reached --run-timeout 3.0 s" in run.output
    assert len(list(ET.parse(run.junit).getroot().iter("testcase"))) == 20
    assert tap.read_text().count("ok ") == 20
    assert json.loads(outcome.read_text())["not_run"] > 0
    assert run.result.duration < 20, "the deadline stopped a 20 s suite"
    assert_no_process_left(run)


MARKED = """
    import time

    import pytest

    @pytest.mark.parallel_exec(timeout=1)
    def test_own_limit():
        time.sleep(60)

    @pytest.mark.timeout(1)
    def test_pytest_timeout_marker():
        time.sleep(60)

    @pytest.mark.parallel_exec(timeout=0)
    def test_no_limit():
        time.sleep(2.5)
"""


@pytest.mark.parametrize("workers", [2, 0], ids=["workers", "in-process"])
def test_tests_own_limits_from_their_markers(runner: PluginRunner, workers: int) -> None:
    """``@pytest.mark.parallel_exec(timeout=...)``, and ``@pytest.mark.timeout`` when
    pytest-timeout is not installed (it is not, here), override ``--test-timeout``."""
    runner.pytester.makepyfile(test_marked=textwrap.dedent(MARKED))
    run = run_fault(
        runner, "--test-timeout", "2", "--timeout-grace", "1", "--strict-markers", workers=workers
    )
    assert run.exit_code == pytest.ExitCode.TESTS_FAILED, run.output
    assert_accounted(run, 3)
    outcomes = dict(run.results())
    assert outcomes == {
        "test_marked.py::test_own_limit": "failed",
        "test_marked.py::test_pytest_timeout_marker": "failed",
        "test_marked.py::test_no_limit": "passed",
    }, run.output
    assert "Timeout: exceeded 1.0 s" in run.case_text("test_own_limit")
    assert "Timeout: exceeded 1.0 s" in run.case_text("test_pytest_timeout_marker")
    assert_no_process_left(run)


def test_slow_tests_are_said_while_they_run(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(
        test_long=textwrap.dedent(
            """
            import time

            def test_long():
                time.sleep(3.5)
            """
        ),
        test_quick=textwrap.dedent(QUICK),
    )
    run = run_fault(runner, "--slow-after", "1", "-p", "no:randomly")
    assert run.exit_code == pytest.ExitCode.OK, run.output
    assert_accounted(run, 5)
    for seconds in (1, 2, 3):
        assert f"] test_long.py::test_long running for {seconds} s" in run.output, run.output
    assert "SLOW [gw" in run.output
    assert "1 slow test" in run.output
    assert_no_process_left(run)


def test_the_run_timeout_also_bounds_a_collection_that_hangs(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(
        test_hangs_at_import=textwrap.dedent(
            """
            import time

            time.sleep(120)

            def test_never():
                pass
            """
        )
    )
    run = run_fault(runner, "--run-timeout", "2", timeout=60)
    assert run.exit_code == pytest.ExitCode.INTERRUPTED, run.output
    assert "Interrupted: the run reached --run-timeout 2.0 s" in run.output
    assert run.junit.exists()
    assert run.result.duration < 30
    assert_no_process_left(run)
