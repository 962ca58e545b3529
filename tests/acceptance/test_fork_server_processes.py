"""The fork server below the pool: real processes, real execnet gateways, no pytest run.

What the pool relies on: a forked child is a gateway of the pool's group whose pid is
the child's own, the server is its parent, exit statuses (signals included) come back,
``kill`` works through the server, and a server that goes away fails pending work fast
instead of leaving anyone waiting.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import execnet
import pytest

from parallel_exec.controller import forkserver

pytestmark = pytest.mark.skipif(not forkserver.available(), reason="needs fork and AF_UNIX")

WHO = "import os; channel.send((os.getpid(), os.getppid()))"


@pytest.fixture
def server() -> Iterator[forkserver.ForkServer]:
    fork_server = forkserver.ForkServer()
    yield fork_server
    fork_server.shutdown(timeout=5.0)


@pytest.fixture
def group() -> Iterator[execnet.Group]:
    workers = execnet.Group()
    yield workers
    workers.terminate(timeout=5.0)


def test_a_forked_gateway_is_a_child_of_the_server(
    server: forkserver.ForkServer, group: execnet.Group
) -> None:
    first, first_process = server.fork(group, "gw0", nice=0)
    second, second_process = server.fork(group, "gw1", nice=0)
    assert "gw0" in group
    assert "gw1" in group

    pid, parent = first.remote_exec(WHO).receive(timeout=30)
    other_pid, other_parent = second.remote_exec(WHO).receive(timeout=30)
    assert (pid, other_pid) == (first_process.pid, second_process.pid)
    assert parent == other_parent
    assert parent not in (os.getpid(), pid, other_pid)

    first.exit()
    assert first_process.wait(timeout=30) == 0


def test_exit_statuses_and_signals_come_back(
    server: forkserver.ForkServer, group: execnet.Group
) -> None:
    gateway, process = server.fork(group, "gw0", nice=0)
    gateway.remote_exec("import os; os._exit(7)")
    assert process.wait(timeout=30) == 7

    gateway, process = server.fork(group, "gw1", nice=0)
    gateway.remote_exec("import time; channel.send('sleeping'); time.sleep(60)").receive(timeout=30)
    assert process.poll() is None
    process.kill()
    assert process.wait(timeout=30) == -9


def test_the_child_takes_the_environment_of_the_request(
    server: forkserver.ForkServer, group: execnet.Group, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PE_FORK_TEST", "after the server started")
    gateway, _ = server.fork(group, "gw0", nice=3)
    channel = gateway.remote_exec(
        "import os; channel.send((os.environ.get('PE_FORK_TEST'), os.nice(0)))"
    )
    assert channel.receive(timeout=30) == ("after the server started", os.nice(0) + 3)


def test_a_server_that_stopped_fails_at_once(server: forkserver.ForkServer) -> None:
    group = execnet.Group()
    try:
        gateway, process = server.fork(group, "gw0", nice=0)
        server.shutdown(timeout=5.0)
        with pytest.raises(OSError):
            server.fork(group, "gw1", nice=0)
        gateway.exit()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("a forked worker's exit was never reported")
    finally:
        group.terminate(timeout=5.0)
