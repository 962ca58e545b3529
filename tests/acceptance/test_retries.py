"""``--retries``: a failed test runs again, elsewhere when it can; fail-then-pass is flaky.

The flaky test here fails on its first attempt and passes on its second: it keeps a
count of its attempts in a file beside it, and writes which worker ran each attempt.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

#: pytest-rerunfailures (installed with the test extras) would re-run failures too, so
#: --retries refuses to run beside it: these runs disable it.
NO_RERUNFAILURES = ("-p", "no:rerunfailures")

SUITE = """
    import json
    import os
    import pathlib
    import time

    import pytest

    LOG = pathlib.Path(__file__).with_name("attempts.log")


    def attempt(name):
        with LOG.open("a", encoding="utf-8") as log:
            log.write(json.dumps([name, os.environ.get("PARALLEL_EXEC_WORKER", "serial")]))
            log.write("\\n")
        return sum(1 for line in LOG.read_text().splitlines() if json.loads(line)[0] == name)


    def test_flaky():
        assert attempt("flaky") >= 2, "fails on its first attempt"


    def test_always_fails():
        attempt("always")
        assert False, "fails every time"


    @pytest.mark.parametrize("n", range(16))
    def test_filler(n):
        time.sleep(0.1)
"""


def attempts(runner: PluginRunner) -> dict[str, list[str]]:
    by_test: dict[str, list[str]] = {}
    log = runner.pytester.path / "attempts.log"
    for line in log.read_text(encoding="utf-8").splitlines():
        name, worker = json.loads(line)
        by_test.setdefault(name, []).append(worker)
    log.unlink()
    return by_test


@pytest.mark.slow
def test_a_test_that_fails_then_passes_is_flaky_and_passes(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(test_retry=SUITE)
    outcome_path = runner.pytester.path / "outcome.json"
    result = runner.run(
        "--retries=2", f"--report-outcome={outcome_path}", *NO_RERUNFAILURES, workers=2
    )
    ran = attempts(runner)

    result.assert_outcomes(passed=17, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert len(ran["flaky"]) == 2
    assert ran["flaky"][0] != ran["flaky"][1], "the retry ran on the same worker"
    assert len(ran["always"]) == 3  # first attempt + 2 retries
    output = runner.output(result)
    assert "parallel_exec: 1 flaky test (failed, then passed on a retry):" in output
    assert "flaky test_retry.py::test_flaky" in output
    # The failed attempts are not reported as results of their own.
    assert output.count("FAILED test_retry.py::test_always_fails") == 1
    assert "FAILED test_retry.py::test_flaky" not in output

    record = json.loads(outcome_path.read_text(encoding="utf-8"))
    assert record["flaky_tests"] == ["test_retry.py::test_flaky"]
    assert record["retries"] == 3
    assert record["reward"] <= 0.5


@pytest.mark.slow
def test_fail_on_flaky_makes_the_run_fail(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(test_retry=SUITE)
    result = runner.run(
        "--retries=1",
        "--fail-on-flaky",
        "--deselect=test_retry.py::test_always_fails",
        *NO_RERUNFAILURES,
        workers=2,
    )
    result.assert_outcomes(passed=17, deselected=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "--fail-on-flaky: the run fails" in runner.output(result)

    again = runner.run(
        "--retries=1", "--deselect=test_retry.py::test_always_fails", *NO_RERUNFAILURES, workers=2
    )
    again.assert_outcomes(passed=17, deselected=1)
    assert again.ret == pytest.ExitCode.OK


@pytest.mark.slow
def test_exitfirst_stops_at_the_first_final_failure_not_at_a_retried_one(
    runner: PluginRunner,
) -> None:
    runner.pytester.makepyfile(test_retry=SUITE)
    result = runner.run("-x", "--retries=1", *NO_RERUNFAILURES, workers=2)
    ran = attempts(runner)
    # test_flaky's failed first attempt does not stop the run; test_always_fails's
    # second failure does.
    assert len(ran["flaky"]) == 2
    assert len(ran["always"]) == 2
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    counts = result.parseoutcomes()
    assert counts.get("failed") == 1
    assert counts.get("passed", 0) >= 1


def test_no_retries_by_default(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(test_retry=SUITE)
    result = runner.run("-k", "flaky or always", workers=2)
    result.assert_outcomes(failed=2, deselected=16)
    assert not [
        line for line in result.outlines if line.startswith("parallel_exec:") and "flaky" in line
    ]


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_an_invalid_retry_count_is_a_usage_error(runner: PluginRunner, value: str) -> None:
    runner.pytester.makepyfile(test_retry=SUITE)
    result = runner.run(f"--retries={value}", *NO_RERUNFAILURES, workers=2)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--retries" in runner.output(result)
    runner.assert_no_traceback(result)


def test_retries_in_process_warn_that_nothing_is_retried(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(test_retry=SUITE)
    result = runner.run("--retries=1", "-k", "always", *NO_RERUNFAILURES)
    result.assert_outcomes(failed=1, deselected=17, warnings=1)
    assert "--retries applies to runs on workers" in runner.output(result)


def test_retries_with_pytest_rerunfailures_is_a_usage_error(runner: PluginRunner) -> None:
    pytest.importorskip("pytest_rerunfailures")
    runner.pytester.makepyfile(test_retry=SUITE)
    result = runner.run("--retries=1", workers=2)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "pytest-rerunfailures" in runner.output(result)
    assert "-p no:rerunfailures" in runner.output(result)
    runner.assert_no_traceback(result)

    alone = runner.run("--retries=1", *NO_RERUNFAILURES, "-k", "always", workers=2)
    alone.assert_outcomes(failed=1, deselected=17)


def test_fail_on_flaky_is_shared_with_pytest_rerunfailures(runner: PluginRunner) -> None:
    """Both plugins define the flag; loaded together, neither breaks the command line."""
    pytest.importorskip("pytest_rerunfailures")
    runner.pytester.makepyfile(test_retry=SUITE)
    result = runner.run("--fail-on-flaky", "-k", "filler", workers=2)
    result.assert_outcomes(passed=16, deselected=2)
    runner.assert_no_traceback(result)
