"""xdist's hooks on the controller side, driven by run events (no workers): which hook,
when, with what node."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from parallel_exec.controller.nodes import XdistNodes
from parallel_exec.reporting import events


class Hooks:
    """Records every hook call; ``pytest_configure_node`` adds to ``workerinput``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(**kwargs: Any) -> None:
            self.calls.append((name, kwargs))
            if name == "pytest_configure_node":
                kwargs["node"].workerinput["seed"] = 7

        return call


def nodes() -> tuple[XdistNodes, Hooks]:
    hooks = Hooks()
    config = SimpleNamespace(hook=hooks, invocation_params=SimpleNamespace(dir="/here"))
    return XdistNodes(cast(pytest.Config, config), "run-1", 2), hooks


def test_configure_node_fills_the_workerinput_sent() -> None:
    made, hooks = nodes()
    workerinput = made.configure("gw0")
    assert workerinput["seed"] == 7
    assert (workerinput["workerid"], workerinput["workercount"], workerinput["testrunuid"]) == (
        "gw0",
        2,
        "run-1",
    )
    assert [name for name, _ in hooks.calls] == ["pytest_configure_node"]


def test_the_life_of_a_node() -> None:
    made, hooks = nodes()
    made.configure("gw0")
    made(events.CollectionFinished("gw0", ("a", "b"), (), (), ()))
    made(events.WorkerStarted("gw0", 42, platform="linux", executable="/py", cwd="/here"))
    made(events.WorkerReady("gw0"))
    made(events.WorkerFinished("gw0", 0, {"data": 1}))
    names = [name for name, _ in hooks.calls]
    assert names == [
        "pytest_configure_node",
        "pytest_testnodeready",
        "pytest_xdist_node_collection_finished",
        "pytest_testnodedown",
    ]
    node = made.node("gw0")
    assert node is not None
    assert node.gateway._rinfo().platform == "linux"
    assert node.workerinfo["executable"] == "/py"
    assert hooks.calls[2][1]["ids"] == ["a", "b"]
    assert hooks.calls[3][1]["error"] is None
    assert node.workeroutput == {"data": 1, "exitstatus": 0}  # type: ignore[attr-defined]
    assert node.shutting_down


def test_a_crashed_node_goes_down_without_workeroutput_once() -> None:
    made, hooks = nodes()
    made.configure("gw1")
    crash = events.WorkerCrashed("gw1", -9, "t.py::test", "")
    made(crash)
    made(crash)
    down = [kwargs for name, kwargs in hooks.calls if name == "pytest_testnodedown"]
    assert len(down) == 1
    assert "crashed while running t.py::test" in str(down[0]["error"])
    assert not hasattr(down[0]["node"], "workeroutput")
