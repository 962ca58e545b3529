"""Ctrl-C on the controller ends the run like a serial Ctrl-C, and leaves no workers.

A parallel run owns child processes; an interrupted run that left them behind would keep
burning CPU (and holding files) after the user got their prompt back.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

SLOW_SUITE = """
    import time

    import pytest


    @pytest.mark.parametrize("n", range(40))
    def test_slow(n):
        time.sleep(0.5)
"""


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is true; fail the test naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def progress_shown(output: Path) -> bool:
    """True once the terminal shows a passed test (a ``.`` after the file name)."""
    text = output.read_text(errors="replace")
    return "test_slow_suite.py ." in text or "test_slow_suite.py::" in text


def still_running(pid: int) -> bool:
    """A process that exited but is not reaped yet (a zombie) counts as gone."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_ctrl_c_exits_2_and_leaves_no_worker(
    runner: PluginRunner, monkeypatch: pytest.MonkeyPatch, start: str
) -> None:
    """With forked workers, the fork server is among the processes that must go."""
    pytester = runner.pytester
    pytester.makepyfile(test_slow_suite=SLOW_SUITE)
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")  # see progress in the file as it happens
    output = pytester.path / "controller-output.txt"
    command = runner.command("--start-method", start, workers=2)
    with output.open("w") as sink:
        controller = pytester.popen(command, stdout=sink, stderr=subprocess.STDOUT)
    workers: list[psutil.Process] = []
    try:
        wait_for(lambda: progress_shown(output), timeout=60, what="the first test results")
        time.sleep(0.5)
        workers = psutil.Process(controller.pid).children(recursive=True)
        assert len(workers) >= (3 if start == "forkserver" else 2), workers

        controller.send_signal(signal.SIGINT)
        exit_code = controller.wait(timeout=30)
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait()

    text = output.read_text(errors="replace")
    assert exit_code == 2, text
    assert "KeyboardInterrupt" in text
    time.sleep(2)
    survivors = [p for p in workers if still_running(p.pid)]
    for process in survivors:  # a failing test must not leave them running either
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    assert not survivors, f"worker processes survived the controller: {survivors}"
