"""What a worker writes to its standard error outside pytest's capture reaches the
terminal, tagged with the worker: a serial run shows a ``faulthandler_timeout`` dump or a
plugin's banner, and so must a parallel one."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from faults_helpers import assert_accounted, assert_no_process_left, run_fault

if TYPE_CHECKING:
    from conftest import PluginRunner


@pytest.mark.slow
def test_faulthandler_timeout_dump_is_shown(runner: PluginRunner) -> None:
    runner.pytester.makeini("[pytest]\nfaulthandler_timeout = 0.3\n")
    runner.pytester.makepyfile(
        test_slow="""
        import time

        def test_quick():
            pass

        def test_slow_enough_to_dump():
            time.sleep(1.2)
        """
    )
    run = run_fault(runner)
    assert_accounted(run, 2)
    assert run.exit_code == 0, run.output
    assert re.search(r"^\[gw\d\] Timeout \(0:00:00\.3", run.output, re.M), run.output
    assert re.search(r"^\[gw\d\] .*in test_slow_enough_to_dump", run.output, re.M), run.output
    assert_no_process_left(run)


@pytest.mark.slow
def test_plugin_writing_to_stderr_is_shown(runner: PluginRunner) -> None:
    """pytest-timeout prints its banner like this: capture suspended, on stderr."""
    runner.pytester.makeconftest(
        """
        import sys

        def pytest_runtest_call(item):
            capman = item.config.pluginmanager.getplugin("capturemanager")
            capman.suspend_global_capture(in_=True)
            sys.stderr.write(f"+++ banner for {item.name} +++\\n")
            sys.stderr.flush()
            capman.resume_global_capture()
        """
    )
    runner.pytester.makepyfile(test_banner="def test_one():\n    pass\n")
    run = run_fault(runner)
    assert_accounted(run, 1)
    assert re.search(r"^\[gw\d\] \+\+\+ banner for test_one \+\+\+$", run.output, re.M), run.output
    assert_no_process_left(run)
