"""``--test-timeout``: a hung test is ended by the controller and reported failed with
its stacks; every other test still runs; nothing is left behind."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import pytest
from faults_helpers import assert_accounted, assert_no_process_left, run_fault

if TYPE_CHECKING:
    from conftest import PluginRunner

QUICK = """
    import pytest

    @pytest.mark.parametrize("n", range(4))
    def test_quick(n):
        pass
"""

HANGS = {
    "sleeping": """
        import time

        def test_hangs():
            time.sleep(120)
    """,
    "ignoring SIGTERM": """
        import signal
        import time

        def test_hangs():
            # SIGTERM blocked: only the SIGKILL after the grace period ends it.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            time.sleep(120)
    """,
    "in fixture teardown": """
        import time

        import pytest

        @pytest.fixture
        def stuck():
            yield
            time.sleep(120)

        def test_hangs(stuck):
            pass
    """,
}


@pytest.mark.slow
@pytest.mark.parametrize("how", list(HANGS))
def test_a_hung_test_fails_with_its_stacks_and_the_run_goes_on(
    runner: PluginRunner, how: str
) -> None:
    runner.pytester.makepyfile(
        test_quick=textwrap.dedent(QUICK), test_hung=textwrap.dedent(HANGS[how])
    )
    run = run_fault(runner, "--test-timeout", "2", "--timeout-grace", "1", timeout=90)
    assert run.exit_code == pytest.ExitCode.TESTS_FAILED, run.output
    assert_accounted(
        run, [f"test_quick.py::test_quick[{n}]" for n in range(4)] + ["test_hung.py::test_hangs"]
    )
    outcomes = dict(run.results())
    assert outcomes["test_hung.py::test_hangs"] == "failed", run.output
    assert {outcomes[f"test_quick.py::test_quick[{n}]"] for n in range(4)} == {"passed"}
    text = run.case_text("test_hangs")
    assert "Timeout: exceeded 2.0 s" in text
    assert "test_hung.py" in text, "the stacks name the test's file"
    assert "TIMEOUT test_hung.py::test_hangs" in run.output
    assert_no_process_left(run)


@pytest.mark.slow
def test_a_timeout_is_the_tests_failure_not_a_worker_crash(runner: PluginRunner) -> None:
    """One worker, no restarts allowed: the worker ended for the hung test is replaced
    all the same (a timeout is not a crash), and the tests after it run."""
    runner.pytester.makepyfile(
        test_a_hung=textwrap.dedent(HANGS["sleeping"]), test_quick=textwrap.dedent(QUICK)
    )
    run = run_fault(
        runner, "--test-timeout", "2", "--max-worker-restart", "0", "-p", "no:randomly", workers=1
    )
    assert run.exit_code == pytest.ExitCode.TESTS_FAILED, run.output
    outcomes = dict(run.results())
    assert outcomes.pop("test_a_hung.py::test_hangs") == "failed"
    assert set(outcomes.values()) == {"passed"}, run.output
    assert len(outcomes) == 4
    assert (
        "was ended: test_a_hung.py::test_hangs reached its time limit (--test-timeout)"
        in run.output
    )
    assert "crashed" not in run.output
    assert_no_process_left(run)


@pytest.mark.slow
@pytest.mark.parametrize("how", list(HANGS))
def test_in_process_a_hung_test_fails_best_effort(runner: PluginRunner, how: str) -> None:
    """No workers: a timer in the pytest process fails the test from inside (it cannot
    stop C code that never returns to Python); the stacks are in its captured stderr.
    A hang in a fixture's teardown fails that teardown: pytest reports it as an error."""
    runner.pytester.makepyfile(
        test_quick=textwrap.dedent(QUICK), test_hung=textwrap.dedent(HANGS[how])
    )
    run = run_fault(runner, "--test-timeout", "2", workers=0, timeout=90)
    assert run.exit_code == pytest.ExitCode.TESTS_FAILED, run.output
    outcomes = dict(run.results())
    in_teardown = how == "in fixture teardown"
    expected = "error" if in_teardown else "failed"
    assert outcomes.pop("test_hung.py::test_hangs") == expected, run.output
    assert set(outcomes.values()) == {"passed"}
    assert len(outcomes) == 4
    text = run.case_text("test_hangs")
    assert "Timeout: exceeded 2.0 s" in text
    # The stacks are in the test's captured stderr, shown with its failure.
    section = "Captured stderr teardown" if in_teardown else "Captured stderr call"
    assert section in run.output
    where = "in stuck" if in_teardown else "in test_hangs"
    assert where in run.output.split(section, 1)[1], run.output
