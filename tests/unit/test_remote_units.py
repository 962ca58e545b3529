"""Remote workers on plain data: ``--tx`` parsing and merging, the worker count, the
set-up made true on the remote machine, the agent's handshake, what is kept of a
remote worker's stderr, and where the pool places workers."""

from __future__ import annotations

import os
import types
from typing import Any

import pytest

from parallel_exec._version import __version__
from parallel_exec.controller.pool import NOWHERE, WorkerHandle, WorkerPool
from parallel_exec.controller.remote import STDERR_KEPT_BYTES, Seen, unreachable_reason
from parallel_exec.errors import OptionError
from parallel_exec.settings import (
    TxSpec,
    WorkerCount,
    combined_workers,
    parse_tx,
    parse_tx_one,
    remote_machines,
)
from parallel_exec.wire import protocol, remote


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("popen", TxSpec(1, "popen")),
        ("3*popen", TxSpec(3, "popen")),
        ("socket=10.0.0.5:8888", TxSpec(1, "socket", "10.0.0.5:8888")),
        (
            "2*ssh=ci@build-3//python=/opt/py/bin/python//chdir=/srv/app//id=b3",
            TxSpec(2, "ssh", "ci@build-3", "/opt/py/bin/python", "/srv/app", "b3"),
        ),
    ],
)
def test_specs_parse_as_xdist_writes_them(text: str, expected: TxSpec) -> None:
    assert parse_tx_one(text) == expected


def test_a_spec_names_its_machine_and_its_gateway() -> None:
    spec = parse_tx_one("2*ssh=ci@b3//python=python3.11//chdir=/srv/app")
    assert spec.name == "ssh=ci@b3"
    assert spec.gateway_spec == "ssh=ci@b3//python=python3.11//chdir=/srv/app"
    assert parse_tx_one("socket=h:1//id=lab").name == "lab"
    assert parse_tx_one("socket=h:1//id=lab").gateway_spec == "socket=h:1"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tcp=x",
        "socket=x",
        "socket=x:0",
        "socket=:80",
        "ssh=",
        "17*popen",
        "x*popen",
        "popen=1",
        "popen//python=py",
        "socket=h:1//nice=5",
        "socket=h:1//chdir=",
    ],
)
def test_malformed_specs_are_refused(text: str) -> None:
    with pytest.raises(OptionError):
        parse_tx_one(text)


def test_ini_gives_one_spec_per_word_or_line() -> None:
    assert parse_tx("2*popen\n socket=h:1 ") == (TxSpec(2, "popen"), TxSpec(1, "socket", "h:1"))
    assert parse_tx(["popen", "popen"]) == (TxSpec(1, "popen"), TxSpec(1, "popen"))


def test_the_same_machine_is_one_agent_with_its_workers_added_up() -> None:
    tx = parse_tx(["socket=h:1", "2*popen", "2*socket=h:1", "socket=h:1//chdir=/b", "ssh=x"])
    machines = remote_machines(tx)
    assert [(m.name, m.count, m.chdir) for m in machines] == [
        ("socket=h:1", 3, None),
        ("socket=h:1", 1, "/b"),
        ("ssh=x", 1, None),
    ]


def test_workers_are_n_plus_every_tx_up_to_the_cap() -> None:
    tx = parse_tx(["2*popen", "3*socket=h:1"])
    assert combined_workers(WorkerCount("4", 4), tx) == WorkerCount("4", 9)
    assert combined_workers(None, tx) == WorkerCount("5", 5)
    assert combined_workers(WorkerCount("4", 4), ()) == WorkerCount("4", 4)
    with pytest.raises(OptionError, match="ask for 17 \\(12 from -n, 5 from --tx\\)"):
        combined_workers(WorkerCount("12", 12), tx)


def setup_for(**overrides: Any) -> protocol.WorkerSetup:
    fields: dict[str, Any] = dict(
        worker_id="gw3",
        worker_count=3,
        run_id="r",
        protocol_version=protocol.PROTOCOL_VERSION,
        package_version=__version__,
        args=["tests", "/home/me/proj/tests/test_a.py::test_x", "/etc/other", "-k", "x"],
        option_dict={},
        invocation_dir="/home/me/proj",
        sys_path=["/home/me/proj", "/home/me/proj/src", "/usr/lib/python3.11", "/home/me/projx"],
        basetemp="/tmp/pytest-of-me/pytest-1/gw3",
        progress_path="/tmp/parallel_exec-abc/gw3.progress",
        capture_off=False,
        share=None,
        controller_pid=100,
        environment={"PATH": "/mine", "PYTEST_ADDOPTS": "-v", "PARALLEL_EXEC_X": "1"},
    )
    fields.update(overrides)
    return protocol.WorkerSetup(**fields)


def test_the_set_up_is_made_true_on_the_remote_machine() -> None:
    local = remote.localize(
        setup_for(), "/srv/app", "/tmp/r", 42, {"PATH": "/theirs", "HOME": "/h"}
    )
    assert local.invocation_dir == "/srv/app"
    assert local.args == ["tests", "/srv/app/tests/test_a.py::test_x", "/etc/other", "-k", "x"]
    assert local.sys_path == ["/srv/app", "/srv/app/src"]  # not /home/me/projx
    assert local.basetemp == os.path.join("/tmp/r", "basetemp", "gw3")
    assert local.progress_path == os.path.join("/tmp/r", "gw3.progress")
    assert local.controller_pid == 42  # the agent: the worker ends when it goes
    assert local.environment == {
        "PATH": "/theirs",
        "HOME": "/h",
        "PYTEST_ADDOPTS": "-v",
        "PARALLEL_EXEC_X": "1",
    }
    assert (local.worker_id, local.share, local.run_id) == ("gw3", None, "r")


def hello(**overrides: Any) -> remote.AgentHello:
    fields: dict[str, Any] = dict(
        pid=1,
        package_version=__version__,
        python="3.11.2",
        executable="/usr/bin/python3",
        platform="linux",
        hostname="h",
        cpus=8,
        cwd="/srv/app",
        version_info=(3, 11, 2, "final", 0),
    )
    fields.update(overrides)
    return remote.AgentHello(**fields)


def test_the_agent_handshake_compares_package_and_python_minor() -> None:
    assert remote.agent_mismatch(hello(), (3, 11), __version__) is None  # patch may differ
    assert remote.agent_mismatch(hello(), (3, 12), __version__) == (
        "Python version: controller 3.12, remote 3.11"
    )
    assert remote.agent_mismatch(hello(package_version="0.1"), (3, 11), __version__) == (
        f"parallel_exec version: controller {__version__}, remote 0.1"
    )
    assert "agent protocol: controller" in str(
        remote.agent_mismatch(hello(protocol_version=99), (3, 11), __version__)
    )


def test_agent_messages_round_trip_and_others_are_refused() -> None:
    message = remote.WorkerUpdate("gw1", protocol_entry(), b"out", b"err", 5, True, -9)
    assert remote.decode(remote.encode(message)) == message
    with pytest.raises(TypeError):
        remote.decode(protocol.encode(protocol.Drain()))


def protocol_entry() -> Any:
    from parallel_exec.wire.progress import ProgressEntry

    return ProgressEntry(3, 10, 1.5, 0.0)


def test_a_remote_workers_stderr_keeps_its_start_and_its_end() -> None:
    seen = Seen()
    seen.add_stderr(b"start\n")
    assert seen.stderr_since(0) == b"start\n"
    assert seen.stderr_since(2) == b"art\n"
    seen.add_stderr(b"x" * STDERR_KEPT_BYTES)
    seen.add_stderr(b"the end\n")
    assert len(seen.stderr) <= STDERR_KEPT_BYTES
    assert bytes(seen.stderr).startswith(b"start\n")
    total = 6 + STDERR_KEPT_BYTES + 8
    assert seen.stderr_since(total - 8) == b"the end\n"  # offsets of the whole stream


def test_why_a_machine_cannot_be_used_is_one_line() -> None:
    assert unreachable_reason(ConnectionRefusedError(111, "Connection refused")) == (
        "unreachable (ConnectionRefusedError: [Errno 111] Connection refused)"
    )
    missing = RuntimeError("Traceback...\nModuleNotFoundError: No module named 'parallel_exec'")
    assert unreachable_reason(missing).startswith("parallel_exec is not importable there")


class FakeHost:
    def __init__(self, name: str, count: int, usable: bool = True) -> None:
        self.name = name
        self.spec = types.SimpleNamespace(count=count)
        self.hello = hello()
        self.usable = usable
        self.lost = "" if usable else "its connection closed"
        self.error = ""
        self.on_output = None

    def worker(self, worker_id: str) -> Seen:
        return Seen()

    def close(self, timeout: float) -> None:
        pass


def test_workers_fill_this_machine_then_each_remote_in_order() -> None:
    a, b = FakeHost("a", 2), FakeHost("b", 1)
    pool = WorkerPool(lambda w, p: None, hosts=[a, b], local=1)  # type: ignore[arg-type,list-item,return-value]
    try:
        places = []
        for n in range(4):
            place = pool._place_for_next()
            places.append(place)
            pool.workers[f"gw{n}"] = WorkerHandle(f"gw{n}", "", place=place)
        assert places == [0, 1, 1, 2]
        # No room left: the usable place running the fewest takes one more; a lost
        # machine takes none.
        a.usable = False
        assert pool._place_for_next() == 0
    finally:
        pool.shutdown(timeout=0.1)


def test_with_every_machine_lost_a_worker_has_nowhere_to_start() -> None:
    a = FakeHost("a", 2)
    pool = WorkerPool(lambda w, p: None, hosts=[a], local=0)  # type: ignore[arg-type,list-item,return-value]
    try:
        assert pool._place_for_next() == 1
        a.usable = False
        assert pool._place_for_next() == NOWHERE
    finally:
        pool.shutdown(timeout=0.1)
