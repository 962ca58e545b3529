"""The worker side: a real pytest session in a child process, driven by the controller.

The controller's transport starts ``main`` in an execnet gateway (spawned, or forked by
the fork server).  The worker answers the handshake, sets its process up (output
files, environment, parent watch), builds its config from the controller's command line
(so ini, ``addopts`` and ``PYTEST_ADDOPTS`` apply exactly as they did there) and runs a
pytest session with ``session.WorkerSession`` registered.

Crash evidence does not depend on this process surviving: its stdout and stderr are
files the controller reads, faulthandler writes to that stderr, and the index of the
test being run is kept in a small progress file.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

import pytest

from .. import processes
from .._pytest_compat import ensure_unconfigure, prepare_config
from .._version import __version__
from ..wire import protocol
from .session import WorkerSession

# ---------------------------------------------------------------- process set-up


def _redirect_output(base: str) -> None:
    """Point fd 1 and fd 2 at files the controller reads (survives a crash)."""
    for fd, suffix in ((1, ".out"), (2, ".err")):
        target = os.open(base + suffix, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(target, fd)
        os.close(target)
    # New text streams on the redirected descriptors; they live as long as the process.
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.__stdout__ = sys.stdout  # type: ignore[misc]
    sys.__stderr__ = sys.stderr  # type: ignore[misc]
    global _stderr_file_fd
    _stderr_file_fd = os.dup(2)  # stays on the file while pytest captures fd 2


_hard_exit = os._exit
_stderr_file_fd = 2


_config: pytest.Config | None = None


def _stacks_on_request() -> None:
    """On ``protocol.STACKS_SIGNAL`` faulthandler writes every thread's stack to the
    stderr file itself (the descriptor that stays on it while pytest captures fd 2), from
    its own C handler: it works while the test is stuck in C code.  It then chains to a
    Python handler that adds what the test captured so far, when the main thread gets
    back to Python code (a ``sleep`` is interrupted for it; C code that never returns
    keeps it from running)."""
    signum = getattr(signal, protocol.STACKS_SIGNAL, None)
    if signum is not None:
        signal.signal(signum, _captured_on_request)
        faulthandler.register(signum, file=_stderr_file_fd, all_threads=True, chain=True)


def _captured_on_request(signum: int, frame: Any) -> None:
    capman = _config.pluginmanager.get_plugin("capturemanager") if _config else None
    if capman is None:
        return
    try:
        out, err = capman.read_global_capture()
    except Exception:
        return
    for label, text in (("stdout", out), ("stderr", err)):
        if text:
            header = protocol.CAPTURED_SO_FAR.format(stream=label)
            os.write(_stderr_file_fd, f"\n{header}\n".encode())
            os.write(_stderr_file_fd, text.encode("utf-8", "replace"))


def _watch_parent(controller_pid: int) -> None:
    """End this worker if the controller disappears without telling it.

    A spawned worker is the controller's child: its parent changes when the controller
    dies.  A forked worker is the fork server's child, and must outlive that server if it
    dies: it watches the controller's process id itself.
    """
    parent = os.getppid()

    def gone() -> bool:
        if parent == controller_pid:
            return os.getppid() != parent
        try:
            os.kill(controller_pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if gone():
                _hard_exit(70)

    threading.Thread(target=watch, name="parallel_exec-parent-watch", daemon=True).start()


def _set_environment(setup: protocol.WorkerSetup) -> None:
    """The environment pytest started with in the controller (so a plugin that edits it
    while configuring, pytest-env, edits it once here too), and xdist's variables."""
    if setup.environment is not None:
        os.environ.clear()
        os.environ.update(setup.environment)
    count = str(setup.worker_count)
    os.environ.update(
        {
            "PARALLEL_EXEC_WORKER": setup.worker_id,
            "PARALLEL_EXEC_WORKER_COUNT": count,
            "PARALLEL_EXEC_RUN_ID": setup.run_id,
            "PYTEST_XDIST_WORKER": setup.worker_id,
            "PYTEST_XDIST_WORKER_COUNT": count,
            "PYTEST_XDIST_TESTRUNUID": setup.run_id,
        }
    )


def ignore_interrupts() -> None:
    """Make this process immune to Ctrl-C: the controller owns it.

    A terminal's Ctrl-C goes to the whole process group, workers included; the
    controller decides how the run ends.  A no-op handler, not ``SIG_IGN``: an ignored
    signal stays ignored across ``exec``, so every process a test starts (a nested
    pytest run, a server under test) could not be interrupted either, whereas a handler
    is reset to the default in the new program.
    """
    signal.signal(signal.SIGINT, _interrupt_ignored)


def _interrupt_ignored(signum: int, frame: Any) -> None:
    """SIGINT in a worker: nothing to do (see ``ignore_interrupts``)."""


class BeforeWorkerConfig:
    """Hooks registered only in a worker's config, from its very start.

    pytest-cov starts a coverage controller in every process at
    ``pytest_load_initial_conftests`` (replaced by its worker side at session start),
    and that start erases every parallel data file in the directory unless
    ``--cov-append`` is given.  Under pytest-xdist all workers start together; here a
    worker may start after others have finished (started in turn, or replacing a
    crashed one), and would erase their data.  In a worker it appends: its own data
    file is new anyway, and the controller still erases when the run starts.
    """

    @pytest.hookimpl(wrapper=True)
    def pytest_load_initial_conftests(self, early_config: pytest.Config) -> Any:
        namespace = early_config.known_args_namespace
        if getattr(namespace, "cov_source", None) and hasattr(namespace, "cov_append"):
            namespace.cov_append = True
        return (yield)


def _make_config(setup: protocol.WorkerSetup) -> pytest.Config:
    config = prepare_config(list(setup.args), plugins=["parallel_exec", BeforeWorkerConfig()])
    config.option.basetemp = setup.basetemp
    # What pytest-xdist's workers hold: plugins asking whether to distribute see "no".
    config.option.numprocesses = None
    config.option.dist = "no"
    return config


def main(channel: Any) -> None:
    """Entry point inside the worker process (called by ``bootstrap_source``)."""
    processes.lead_own_group()  # what its tests start can be ended with it
    setup = protocol.decode(channel.receive())
    assert isinstance(setup, protocol.WorkerSetup)
    channel.send(
        protocol.encode(
            protocol.Hello(
                worker_id=setup.worker_id,
                pid=os.getpid(),
                python=sys.version.split()[0],
                package_version=__version__,
                platform=sys.platform,
                version_info=tuple(sys.version_info[:5]),
                executable=sys.executable,
                cwd=setup.invocation_dir,
            )
        )
    )
    ignore_interrupts()  # the controller owns Ctrl-C
    _watch_parent(setup.controller_pid or os.getppid())
    _redirect_output(setup.progress_path.rsplit(".", 1)[0])
    _stacks_on_request()
    os.chdir(setup.invocation_dir)
    for entry in reversed(setup.sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    _set_environment(setup)
    worker_id = setup.worker_id
    try:
        config = _make_config(setup)
        global _config
        _config = config
        config.workerinput = {  # type: ignore[attr-defined]
            "workerid": worker_id,
            "workercount": setup.worker_count,
            "testrunuid": setup.run_id,
            "mainargv": list(setup.args),
            **setup.workerinput,
        }
        config.workeroutput = {}  # type: ignore[attr-defined]
        session = WorkerSession(config, channel, setup, _stderr_file_fd)
        config.pluginmanager.register(session, "parallel_exec_worker")
        exitstatus = config.hook.pytest_cmdline_main(config=config)
        ensure_unconfigure(config)
        channel.send(
            protocol.encode(
                protocol.SessionFinished(
                    worker_id=worker_id,
                    exitstatus=int(exitstatus),
                    workeroutput=dict(config.workeroutput),  # type: ignore[attr-defined]
                    junit_properties=tuple(session.junit_properties),
                )
            )
        )
        # What its tests started and left running ends with it.
        processes.end_descendants(os.getpid())
    except BaseException as exc:
        if isinstance(exc, pytest.UsageError):
            error = protocol.WorkerError(worker_id, str(exc), "usage")
        else:
            detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            error = protocol.WorkerError(worker_id, detail.rstrip("\n"), "internal")
        with contextlib.suppress(Exception):
            channel.send(protocol.encode(error))
