"""Invalid option values are usage errors: exit code 4 and a message naming the option.

The same rule holds whether the value comes from the command line or from the ini file
(``parallel_exec_<long option name>``), and neither may show a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

TRIVIAL_SUITE = "def test_trivial():\n    pass\n"


def assert_usage_error_naming(runner: PluginRunner, result: pytest.RunResult, name: str) -> None:
    """Exit code 4, the offending option named, and no traceback."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR, runner.output(result)
    assert name in runner.output(result)
    runner.assert_no_traceback(result)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("-n", "-1"), "--numprocesses"),
        (("-n", "abc"), "--numprocesses"),
        (("--dist", "nonsense"), "--dist"),
        (("--max-worker-restart", "-1"), "--max-worker-restart"),
        (("--start-method", "vfork"), "--start-method"),
        (("--test-timeout", "soon"), "--test-timeout"),
        (("--timeout-grace", "-1"), "--timeout-grace"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else value,
)
def test_invalid_command_line_value(
    runner: PluginRunner, args: tuple[str, ...], option: str
) -> None:
    runner.pytester.makepyfile(test_trivial=TRIVIAL_SUITE)
    assert_usage_error_naming(runner, runner.run(*args), option)


@pytest.mark.parametrize(
    ("ini_line", "ini_name"),
    [
        ("parallel_exec_numprocesses = many", "parallel_exec_numprocesses"),
        ("parallel_exec_dist = nonsense", "parallel_exec_dist"),
        ("parallel_exec_max_worker_restart = -1", "parallel_exec_max_worker_restart"),
        ("parallel_exec_start_method = thread", "parallel_exec_start_method"),
    ],
)
def test_invalid_ini_value(runner: PluginRunner, ini_line: str, ini_name: str) -> None:
    runner.pytester.makeini(f"[pytest]\n{ini_line}\n")
    runner.pytester.makepyfile(test_trivial=TRIVIAL_SUITE)
    assert_usage_error_naming(runner, runner.run(), ini_name)


def test_more_workers_than_the_pool_holds_run_sixteen(runner: PluginRunner) -> None:
    """``-n 32`` from an xdist configuration: 16 workers, said once in the header."""
    runner.pytester.makepyfile(test_trivial=TRIVIAL_SUITE)
    result = runner.run(workers=32)
    assert result.ret == 0, runner.output(result)
    headers = [line for line in runner.header_lines(result) if "32 asked for" in line]
    assert len(headers) == 1, runner.header_lines(result)
    assert headers[0].startswith("parallel_exec: 16 workers (32 asked for; at most 16")


def test_workers_from_the_environment(
    runner: PluginRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``PARALLEL_EXEC_WORKERS``: below the command line, above ini; an invalid value is
    a usage error naming the variable."""
    runner.pytester.makeini("[pytest]\nparallel_exec_numprocesses = 3\n")
    runner.pytester.makepyfile(test_trivial=TRIVIAL_SUITE)
    monkeypatch.setenv("PARALLEL_EXEC_WORKERS", "2")
    result = runner.run()
    assert any(h.startswith("parallel_exec: 2 workers") for h in runner.header_lines(result))
    result = runner.run(workers=1)
    assert any(h.startswith("parallel_exec: 1 worker,") for h in runner.header_lines(result))
    monkeypatch.setenv("PARALLEL_EXEC_WORKERS", "lots")
    assert_usage_error_naming(runner, runner.run(), "PARALLEL_EXEC_WORKERS")


def test_misspelt_ini_key_names_the_closest(runner: PluginRunner) -> None:
    runner.pytester.makeini("[pytest]\nparallel_exec_numprocess = 2\n")
    runner.pytester.makepyfile(test_trivial=TRIVIAL_SUITE)
    result = runner.run()
    assert_usage_error_naming(runner, result, "parallel_exec_numprocess")
    assert "did you mean 'parallel_exec_numprocesses'?" in runner.output(result)


#: Leaves a file behind when its test runs: a usage error must stop the run before that.
RECORDING_SUITE = """
import pathlib

def test_records():
    pathlib.Path(__file__).with_name("ran").write_text("yes")
"""


def assert_nothing_ran(runner: PluginRunner) -> None:
    assert not (runner.pytester.path / "ran").exists(), "a test ran despite the usage error"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--report-junit", "somedir"),
        ("--report-json", "somedir"),
        ("--report-tap", "somedir"),
        ("--report-outcome", "somedir"),
        ("--report-junit", "afile/report.xml"),
        ("--report-json", "afile/deeper/report.json"),
    ],
)
def test_report_path_that_cannot_be_a_file(runner: PluginRunner, option: str, value: str) -> None:
    """Refused up front, as pytest refuses such a ``--junitxml``, not after the run."""
    runner.pytester.mkdir("somedir")
    runner.pytester.path.joinpath("afile").write_text("")
    runner.pytester.makepyfile(test_records=RECORDING_SUITE)
    result = runner.run(option, value, workers=2)
    assert_usage_error_naming(runner, result, option)
    assert_nothing_ran(runner)
    assert list((runner.pytester.path / "somedir").iterdir()) == []


def test_report_path_in_ini_that_is_a_directory(runner: PluginRunner) -> None:
    runner.pytester.mkdir("somedir")
    runner.pytester.makeini("[pytest]\nparallel_exec_report_json = somedir\n")
    runner.pytester.makepyfile(test_records=RECORDING_SUITE)
    result = runner.run(workers=2)
    assert_usage_error_naming(runner, result, "parallel_exec_report_json")
    assert_nothing_ran(runner)


def test_report_paths_that_can_be_written_are_accepted(runner: PluginRunner) -> None:
    """A missing parent directory is created at the end; ``--report-tap -`` is stdout."""
    runner.pytester.makepyfile(test_records=RECORDING_SUITE)
    result = runner.run("--report-junit", "new/dir/report.xml", "--report-tap", "-", workers=2)
    assert result.ret == pytest.ExitCode.OK, runner.output(result)
    assert (runner.pytester.path / "new" / "dir" / "report.xml").is_file()
    assert "TAP version 13" in result.stdout.str()
