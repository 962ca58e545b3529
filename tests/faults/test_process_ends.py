"""A worker process that ends (its own code, a signal, a kill from outside, the end of
the session's fixtures) takes no test with it: each test has exactly one result, the
evidence is shown, and no process is left behind."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from faults_helpers import assert_accounted, assert_no_process_left, run_fault

if TYPE_CHECKING:
    from conftest import PluginRunner

IDS = [f"test_suite.py::test_many[{n}]" for n in range(10)] + ["test_suite.py::test_fails"]

SUITE = """
    import pytest

    @pytest.mark.parametrize("n", range(10))
    def test_many(n):
        pass

    def test_fails():
        assert 0
"""


@pytest.mark.slow
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_session_teardown_ending_the_process_is_a_teardown_error(
    runner: PluginRunner, start: str
) -> None:
    """Serially this is one ``ERROR at teardown of <last test>``; in parallel it is one
    such error per worker whose session teardown ended its process, naming the worker,
    and every test keeps its own outcome."""
    runner.pytester.makeconftest(
        """
        import os, sys, pytest

        @pytest.fixture(scope="session", autouse=True)
        def ends_process():
            yield
            print("tearing down badly", file=sys.stderr, flush=True)
            os._exit(4)
        """
    )
    runner.pytester.makepyfile(test_suite=SUITE)
    run = run_fault(runner, "-rA", "--start-method", start)
    assert_accounted(run, IDS)
    assert run.exit_code == 1, run.output
    outcomes = dict(run.results())
    assert outcomes["test_suite.py::test_fails"] == "failed", outcomes
    assert {outcomes[i] for i in IDS[:-1]} <= {"passed", "error"}, outcomes
    errors = re.findall(r"^ERROR test_suite.py::\S+ - worker (gw\d)", run.output, re.M)
    assert 1 <= len(errors) <= 2, run.output  # at most once per worker
    assert len(set(errors)) == len(errors), run.output
    assert "ended during the teardown after" in run.output
    assert "tearing down badly" in run.output
    assert "FAILED test_suite.py::test_fails - assert 0" in run.output
    assert_no_process_left(run)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "body", "evidence"),
    [
        ("os_exit", "os._exit(3)", "exit code 3"),
        ("segfault", "ctypes.string_at(0)", "killed by signal SIGSEGV"),
        ("sigkill", "os.kill(os.getpid(), signal.SIGKILL)", "killed by signal SIGKILL"),
    ],
)
def test_worker_ending_in_a_test_fails_that_test_only(
    runner: PluginRunner, kind: str, body: str, evidence: str
) -> None:
    runner.pytester.makepyfile(
        test_suite=SUITE
        + f"""
    def test_dies():
        import ctypes, os, signal
        {body}
    """
    )
    run = run_fault(runner)
    assert_accounted(run, [*IDS, "test_suite.py::test_dies"])
    assert run.exit_code == 1, run.output
    assert dict(run.results())["test_suite.py::test_dies"] == "failed"
    assert evidence in run.output
    assert_no_process_left(run)


@pytest.mark.slow
def test_odd_characters_in_ids_are_accounted(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(
        test_suite="""
        import pytest

        @pytest.mark.parametrize("v", ["a::b", "x[y]", "sp ace", "ünï", "tab\\t", "new\\nline"])
        def test_odd(v):
            assert v != "sp ace"
        """
    )
    run = run_fault(runner)
    assert_accounted(run, 6)
    assert run.exit_code == 1, run.output
    assert_no_process_left(run)


@pytest.mark.slow
def test_collection_error_in_one_file_is_reported_once(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(
        test_ok=SUITE, test_broken="import does_not_exist\n\ndef test_never():\n    pass\n"
    )
    run = run_fault(runner)
    assert run.exit_code == 2, run.output
    assert run.output.count("ERROR collecting test_broken.py") == 1, run.output
    assert "Interrupted: 1 error during collection" in run.output
    assert_no_process_left(run)


@pytest.mark.slow
def test_fork_server_killed_mid_run_loses_nothing(runner: PluginRunner) -> None:
    """Forked workers are the fork server's children: killed, it takes no worker and no
    test with it, and the user is told it ended."""
    runner.pytester.makepyfile(
        test_fs="""
        import os, signal, time
        import pytest

        @pytest.mark.parametrize("n", range(24))
        def test_sleep(n):
            time.sleep(0.3)

        def test_kills_the_fork_server():
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(0.2)
        """
    )
    run = run_fault(runner, "--start-method", "forkserver", workers=4)
    assert_accounted(run, 25)
    assert run.exit_code == 0, run.output
    assert "the fork server ended during the run" in run.output
    assert "worker crashed" not in run.output
    assert_no_process_left(run)


@pytest.mark.slow
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_results_not_yet_sent_when_the_next_test_crashes_are_kept(
    runner: PluginRunner, start: str
) -> None:
    """A worker sends results in batches; the next test crashing it at once must not
    take the finished tests' results with it (they would run again elsewhere, here
    with another outcome: each test counts its runs in a file)."""
    runner.pytester.makepyfile(
        test_suite="""
        import os, pathlib, pytest

        def ran(name):
            path = pathlib.Path(os.environ["RUNS_DIR"]) / name
            count = int(path.read_text()) + 1 if path.exists() else 1
            path.write_text(str(count))
            return count

        @pytest.mark.parametrize("n", range(40))
        def test_before(n):
            pass

        def test_first():
            assert ran("first") > 1, "fails on its first run only"

        def test_second():
            assert ran("second") > 1, "fails on its first run only"

        def test_crashes():
            os._exit(3)

        @pytest.mark.parametrize("n", range(40))
        def test_after(n):
            pass
        """
    )
    runs = runner.pytester.path / "runs"
    runs.mkdir()
    run = run_fault(
        runner, "-p", "no:randomly", "--start-method", start, workers=1, env={"RUNS_DIR": str(runs)}
    )
    failing = [f"test_suite.py::{name}" for name in ("test_first", "test_second", "test_crashes")]
    ids = [f"test_suite.py::test_before[{n}]" for n in range(40)] + failing
    ids += [f"test_suite.py::test_after[{n}]" for n in range(40)]
    assert_accounted(run, ids)
    outcomes = dict(run.results())
    assert {n: outcomes[n] for n in failing} == dict.fromkeys(failing, "failed"), run.output
    assert set(outcomes.values()) == {"passed", "failed"}, run.output
    assert (runs / "first").read_text() == "1", "test_first ran again"
    assert (runs / "second").read_text() == "1", "test_second ran again"
    assert "worker gw0 crashed while running test_suite.py::test_crashes" in run.output
