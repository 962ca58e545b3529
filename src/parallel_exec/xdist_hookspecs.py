"""pytest-xdist's hook specifications, for plugins written for xdist.

Registered when pytest-xdist is not installed (when it is, its own ``xdist.newhooks``
is registered instead, so that plugins validated against it see exactly its specs).
The signatures and meanings are xdist's; ``controller/nodes.py`` says when parallel_exec
calls each one.  Hooks it never calls are declared all the same, so that a plugin
implementing one without ``optionalhook=True`` still loads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pytest


@pytest.hookspec()
def pytest_xdist_setupnodes(config: pytest.Config, specs: Sequence[Any]) -> None:
    """Called before any remote node is set up (not called by parallel_exec)."""


@pytest.hookspec()
def pytest_xdist_newgateway(gateway: Any) -> None:
    """Called on new raw gateway creation (not called by parallel_exec)."""


@pytest.hookspec()
def pytest_xdist_rsyncstart(source: str | os.PathLike[str], gateways: Sequence[Any]) -> None:
    """Called before rsyncing a directory to remote gateways (not called)."""


@pytest.hookspec()
def pytest_xdist_rsyncfinish(source: str | os.PathLike[str], gateways: Sequence[Any]) -> None:
    """Called after rsyncing a directory to remote gateways (not called)."""


@pytest.hookspec(firstresult=True)
def pytest_xdist_getremotemodule() -> Any:
    """Called when creating a remote node (not called: workers run parallel_exec's)."""


@pytest.hookspec()
def pytest_configure_node(node: Any) -> None:
    """Configure a node before it starts: what it puts in ``node.workerinput`` reaches
    the worker's ``config.workerinput``."""


@pytest.hookspec()
def pytest_testnodeready(node: Any) -> None:
    """The node's process is up and its session starts."""


@pytest.hookspec()
def pytest_testnodedown(node: Any, error: object | None) -> None:
    """The node is down: ``node.workeroutput`` holds what its session put in
    ``config.workeroutput`` (absent when it crashed; ``error`` then says why)."""


@pytest.hookspec()
def pytest_xdist_node_collection_finished(node: Any, ids: Sequence[str]) -> None:
    """The node finished collecting; ``ids`` are the run's test ids."""


@pytest.hookspec(firstresult=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Return a node scheduler implementation (not called: see ``--dist``)."""


@pytest.hookspec(firstresult=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """The number of workers for ``-n auto`` / ``-n logical``."""
    raise NotImplementedError()


@pytest.hookspec(firstresult=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: Any) -> None:
    """A worker crashed while running ``crashitem``: the hook may change ``report`` and
    run the test again with ``sched.mark_test_pending(crashitem)``."""
