"""Ctrl-C on the controller ends the run like a serial Ctrl-C, and leaves no workers.

A parallel run owns child processes; an interrupted run that left them behind would keep
burning CPU (and holding files) after the user got their prompt back.  A terminal sends
Ctrl-C to the whole process group: the workers (and the fork server) must not die of it,
the controller decides how the run ends; and what a test starts must still be
interruptible (an ignored SIGINT would be inherited across ``exec``).
"""

from __future__ import annotations

import contextlib
import os
import re
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
    """True once the terminal shows a passed test: a line of outcome characters after
    ``collected`` (results of a parallel run are one stream, without file names)."""
    text = output.read_text(errors="replace")
    _, collected, rest = text.partition("collected ")
    return bool(collected) and re.search(r"^\.+", rest.split("\n", 1)[-1], re.M) is not None


def still_running(pid: int) -> bool:
    """A process that exited but is not reaped yet (a zombie) counts as gone."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def wait_until_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still running after up to ``timeout`` seconds (killed, if any)."""
    deadline = time.monotonic() + timeout
    survivors = [p for p in processes if still_running(p.pid)]
    while survivors and time.monotonic() < deadline:
        time.sleep(0.1)
        survivors = [p for p in survivors if still_running(p.pid)]
    for process in survivors:  # a failing test must not leave them running either
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    return survivors


@pytest.mark.slow
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
@pytest.mark.parametrize("target", ["controller", "process-group"])
def test_ctrl_c_exits_2_and_leaves_no_worker(
    runner: PluginRunner, monkeypatch: pytest.MonkeyPatch, start: str, target: str
) -> None:
    """With forked workers, the fork server is among the processes that must go.

    ``process-group`` is a terminal's Ctrl-C: the controller runs in a session of its
    own (so that the signal does not reach this test's own processes) and SIGINT goes to
    that whole group, workers included.
    """
    pytester = runner.pytester
    pytester.makepyfile(test_slow_suite=SLOW_SUITE)
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")  # see progress in the file as it happens
    output = pytester.path / "controller-output.txt"
    command = runner.command("--start-method", start, workers=2)
    with output.open("w") as sink:
        controller = pytester.popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=target == "process-group",
        )
    workers: list[psutil.Process] = []
    try:
        wait_for(lambda: progress_shown(output), timeout=60, what="the first test results")
        time.sleep(0.5)
        workers = psutil.Process(controller.pid).children(recursive=True)
        assert len(workers) >= (3 if start == "forkserver" else 2), workers

        if target == "process-group":
            os.killpg(controller.pid, signal.SIGINT)
        else:
            controller.send_signal(signal.SIGINT)
        exit_code = controller.wait(timeout=30)
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait()

    text = output.read_text(errors="replace")
    assert exit_code == 2, text
    assert "KeyboardInterrupt" in text
    survivors = wait_until_gone(workers, timeout=15)
    assert not survivors, f"worker processes survived the controller: {survivors}"


SURVIVOR_SUITE = """
    import os
    import pathlib
    import subprocess
    import sys
    import time

    HERE = pathlib.Path(__file__).parent
    SHOW_SIGINT = "import signal; print(signal.getsignal(signal.SIGINT))"


    def test_interrupted_while_running():
        child = subprocess.run(
            [sys.executable, "-c", SHOW_SIGINT], capture_output=True, text=True, timeout=60
        )
        # What a test starts can be interrupted: SIGINT is not ignored there.
        assert "default_int_handler" in child.stdout, child.stdout + child.stderr
        (HERE / f"running-{os.getpid()}").write_text("")
        deadline = time.monotonic() + 60
        while not (HERE / "release").exists():
            assert time.monotonic() < deadline, "never released"
            time.sleep(0.02)
"""


@pytest.mark.slow
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_workers_survive_sigint_and_what_tests_start_can_be_interrupted(
    runner: PluginRunner, monkeypatch: pytest.MonkeyPatch, start: str
) -> None:
    """SIGINT to every process of the run but the controller (what a terminal's Ctrl-C
    does to them) changes nothing: the running test passes, the run exits 0.  And a
    process a test starts gets Python's default SIGINT handling."""
    pytester = runner.pytester
    pytester.makepyfile(test_survivor=SURVIVOR_SUITE)
    output = pytester.path / "controller-output.txt"
    # One worker: a worker still starting (before it sets its handler) is not the point.
    command = runner.command("--start-method", start, workers=1)
    with output.open("w") as sink:
        controller = pytester.popen(command, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for(
            lambda: any(pytester.path.glob("running-*")) or controller.poll() is not None,
            timeout=60,
            what="the test to run",
        )
        assert controller.poll() is None, output.read_text(errors="replace")
        children = psutil.Process(controller.pid).children(recursive=True)
        (running,) = pytester.path.glob("running-*")
        assert int(running.name.removeprefix("running-")) in {p.pid for p in children}
        for process in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGINT)
        time.sleep(0.5)  # a worker that SIGINT ends is interrupted before it is released
        (pytester.path / "release").touch()
        exit_code = controller.wait(timeout=60)
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait()

    text = output.read_text(errors="replace")
    assert exit_code == 0, text
    assert "1 passed" in text, text
