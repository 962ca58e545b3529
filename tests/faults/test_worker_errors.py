"""Errors inside a worker's pytest machinery (not test failures) reach the user.

A hook that raises only in workers, or a plugin that fails while a worker starts, ends
the run as a serial INTERNALERROR would (exit 3) with the worker's traceback shown and
tagged; no test silently disappears.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from faults_helpers import assert_accounted, assert_no_process_left, run_fault

if TYPE_CHECKING:
    from conftest import PluginRunner

SUITE = """
    import pytest

    @pytest.mark.parametrize("n", range(20))
    def test_many(n):
        pass

    def test_fails():
        assert 0
"""


@pytest.mark.slow
def test_hook_raising_in_workers_is_an_internal_error(runner: PluginRunner) -> None:
    runner.pytester.makeconftest(
        """
        import os

        def pytest_runtest_logreport(report):
            if os.environ.get("PYTEST_XDIST_WORKER") and report.when == "call" \\
                    and report.nodeid.endswith("test_many[3]"):
                raise RuntimeError("hook exploded in a worker")
        """
    )
    runner.pytester.makepyfile(test_suite=SUITE)
    run = run_fault(runner)
    assert run.exit_code == 3, run.output
    assert "hook exploded in a worker" in run.output
    assert "INTERNALERROR" in run.output
    assert_no_process_left(run)


@pytest.mark.slow
def test_plugin_failing_at_worker_start_is_shown_and_not_retried(runner: PluginRunner) -> None:
    """pytest-cov 7.1 and pytest-randomly 5.1 fail this way in workers (a KeyError on
    ``config.workerinput``): the traceback is shown at once, the run exits 3."""
    runner.pytester.makeconftest(
        """
        def pytest_configure(config):
            if hasattr(config, "workerinput"):
                config.workerinput["cov_master_host"]
        """
    )
    runner.pytester.makepyfile(test_suite=SUITE)
    run = run_fault(runner, workers=4, timeout=60)
    assert run.exit_code == 3, run.output
    assert "KeyError: 'cov_master_host'" in run.output
    assert "INTERNALERROR> [gw0]" in run.output
    # Shown once; the other workers' identical errors are named, not repeated.
    assert run.output.count("KeyError: 'cov_master_host'") == 1, run.output
    assert "gw4" not in run.output, "a replacement worker was started"
    assert_no_process_left(run)


@pytest.mark.slow
def test_worker_ending_before_collection_is_not_restarted_until_the_budget_ends(
    runner: PluginRunner,
) -> None:
    """A conftest that ends every worker process at import: the share is tried twice,
    then the run fails with the evidence, instead of 4 x N restarts."""
    runner.pytester.makeconftest(
        """
        import os
        if os.environ.get("PYTEST_XDIST_WORKER"):
            os._exit(9)
        """
    )
    runner.pytester.makepyfile(test_suite=SUITE)
    run = run_fault(runner, workers=2, timeout=60)
    assert run.exit_code != 0, run.output
    assert "ended before it finished collecting (exit code 9)" in run.output
    assert "gw5" not in run.output
    assert_no_process_left(run)


UNSENDABLE = """
    import threading

    import pytest


    class Local:
        def __init__(self, value):
            self.value = value


    @pytest.mark.parametrize("n", range(20))
    def test_many(n):
        pass


    def test_lock(record_property):
        record_property("lock", threading.Lock())


    def test_local_class(record_property):
        record_property("local", Local(3))


    def test_fails():
        assert 0
"""


@pytest.mark.slow
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_unpicklable_value_loses_no_test(runner: PluginRunner, start: str) -> None:
    runner.pytester.makepyfile(test_unsendable=UNSENDABLE)
    run = run_fault(runner, "--start-method", start, "-p", "no:randomly")
    ids = [f"test_unsendable.py::test_many[{n}]" for n in range(20)] + [
        "test_unsendable.py::test_lock",
        "test_unsendable.py::test_local_class",
        "test_unsendable.py::test_fails",
    ]
    assert_accounted(run, ids)
    assert run.exit_code == 1, run.output
    outcomes = dict(run.results())
    assert outcomes["test_unsendable.py::test_fails"] == "failed"
    assert outcomes["test_unsendable.py::test_lock"] == "passed"
    assert "lock object at 0x" in run.junit.read_text()  # the value's repr
    assert "could not be sent from the worker" in run.output
    assert "worker crashed" not in run.output
    assert_no_process_left(run)


@pytest.mark.slow
def test_worker_ending_its_session_early_reports_its_tests_lost(runner: PluginRunner) -> None:
    """A plugin stops a worker's session on its own (the controller's session goes on):
    the tests that worker was given and never ran are errors, not silently missing."""
    runner.pytester.makeconftest(
        """
        import os

        def pytest_runtest_makereport(item, call):
            if os.environ.get("PYTEST_XDIST_WORKER") == "gw0" and call.when == "call":
                item.session.shouldstop = "a worker-only stop"
        """
    )
    runner.pytester.makepyfile(
        test_suite="""
        import pytest

        @pytest.mark.parametrize("n", range(40))
        def test_many(n):
            pass
        """
    )
    run = run_fault(runner, "--dist", "round-robin", workers=2)
    assert_accounted(run, 40)
    lost = [nodeid for nodeid, outcome in run.results() if outcome == "error"]
    assert lost, run.output
    assert run.exit_code == 1, run.output
    assert "lost: worker gw0 ended its session (exit status" in run.output
    assert_no_process_left(run)


@pytest.mark.slow
def test_pytest_exit_in_a_worker_ends_the_run_as_serially(runner: PluginRunner) -> None:
    """``pytest.exit`` in a test ends a serial session with its message and exit code;
    in a worker it ends the whole run the same way, and no test is reported lost."""
    runner.pytester.makepyfile(
        test_exit="""
        import time
        import pytest

        @pytest.mark.parametrize("n", range(10))
        def test_before(n):
            time.sleep(0.05)

        def test_exit():
            pytest.exit("enough of this", returncode=7)

        @pytest.mark.parametrize("n", range(10))
        def test_after(n):
            time.sleep(0.05)
        """
    )
    run = run_fault(runner)
    assert run.exit_code == 7, run.output
    assert "Exit: enough of this" in run.output
    assert "lost" not in run.output
    results = run.results()
    assert results, run.output
    assert all(outcome == "passed" for _, outcome in results), run.output
    assert_no_process_left(run)
