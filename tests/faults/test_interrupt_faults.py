"""Ctrl-C on a run with a hung test: the summary names the tests that were running, with
their worker and how long they had run (a hung test is why people press Ctrl-C), and no
process of the run is left."""

from __future__ import annotations

import re
import signal
import time
from typing import TYPE_CHECKING

import pytest
from faults_helpers import assert_no_process_left, start_run

if TYPE_CHECKING:
    from conftest import PluginRunner

SUITE = """
    import pathlib
    import time

    import pytest

    @pytest.mark.parametrize("n", range(4))
    def test_quick(n):
        pass

    def test_hangs():
        (pathlib.Path(__file__).parent / "hanging").touch()
        time.sleep(120)
"""


@pytest.mark.slow
def test_ctrl_c_names_the_running_tests(
    runner: PluginRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner.pytester.makepyfile(test_hung=SUITE)
    run = start_run(runner, monkeypatch, "-v")
    try:
        for n in range(4):
            run.wait_for(f"PASSED test_hung.py::test_quick[{n}]")  # -v: "[gw0] [..] PASSED ..."
        hanging = runner.pytester.path / "hanging"
        deadline = time.monotonic() + 60
        while not hanging.exists():  # the worker noted the test's start before it ran it
            assert run.process.poll() is None, run.text
            assert time.monotonic() < deadline, f"test_hangs never started:\n{run.text}"
            time.sleep(0.02)
        time.sleep(1.0)
        run.process.send_signal(signal.SIGINT)
    finally:
        exit_code = run.finish(timeout=30)
    assert exit_code == 2, run.text
    assert "interrupted while these tests were running:" in run.text
    found = re.search(r"test_hung.py::test_hangs on gw\d, running for (\d+\.\d)s", run.text)
    assert found, run.text
    assert float(found.group(1)) >= 0.9
    assert_no_process_left(run.as_fault_run())
