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
        (("-n", "17"), "--numprocesses"),
        (("-n", "-1"), "--numprocesses"),
        (("-n", "abc"), "--numprocesses"),
        (("--dist", "nonsense"), "--dist"),
        (("--max-worker-restart", "-1"), "--max-worker-restart"),
        (("--start-method", "vfork"), "--start-method"),
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
        ("parallel_exec_numprocesses = 99", "parallel_exec_numprocesses"),
        ("parallel_exec_dist = nonsense", "parallel_exec_dist"),
        ("parallel_exec_max_worker_restart = -1", "parallel_exec_max_worker_restart"),
        ("parallel_exec_start_method = thread", "parallel_exec_start_method"),
    ],
)
def test_invalid_ini_value(runner: PluginRunner, ini_line: str, ini_name: str) -> None:
    runner.pytester.makeini(f"[pytest]\n{ini_line}\n")
    runner.pytester.makepyfile(test_trivial=TRIVIAL_SUITE)
    assert_usage_error_naming(runner, runner.run(), ini_name)
