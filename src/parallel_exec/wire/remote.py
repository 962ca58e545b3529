"""What crosses between the controller and an agent on another machine.

A remote machine (``--tx socket=HOST:PORT``, ``--tx ssh=HOST``) runs one *agent* per
run: the execnet gateway the controller opens there.  The agent starts the workers on
that machine, relays each worker's channel, and sends what a local transport reads
from a worker's files: the test in progress, what the worker writes to stdout and
stderr, its memory, its exit status.  It outlives its workers, so a worker that dies
there leaves its evidence with the controller as data; no path of the remote machine
is ever opened by the controller.  ``worker/agent.py`` is the agent.

Messages are frozen dataclasses, pickled (``protocol.encode``/``decode`` are for the
worker protocol; these use ``encode``/``decode`` here): a remote agent is trusted as
the controller trusts its local workers.
"""

from __future__ import annotations

import os
import pickle
import typing
from dataclasses import dataclass, replace
from typing import Any

from . import protocol
from .progress import ProgressEntry

AGENT_PROTOCOL_VERSION = 1

#: Environment variables of the controller that remote workers take: the ones that
#: shape a pytest run (``PYTEST_ADDOPTS``, ``PYTEST_PLUGINS``...); the rest of a
#: remote worker's environment is the remote machine's own.
PASSED_PREFIXES = ("PYTEST_", "PARALLEL_EXEC_")


def bootstrap_source(package_parent: str, nice: int = 0) -> str:
    """The code executed in a new gateway to enter the worker's ``main``; ``nice``
    lowers the process's priority before anything heavy is imported."""
    return (
        (f"import os\nif hasattr(os, 'nice'): os.nice({int(nice)})\n" if nice else "")
        + "import sys\n"
        f"_p = {package_parent!r}\n"
        "if _p not in sys.path: sys.path.append(_p)\n"
        "from parallel_exec.worker.main import main\n"
        "main(channel)\n"
    )


#: Executed in the agent's gateway: the agent serves the controller on this channel.
AGENT_SOURCE = "from parallel_exec.worker.agent import serve\nserve(channel)\n"


def relay_source(worker_id: str, nice: int) -> str:
    """Executed in the agent's gateway for each worker: start it, relay its channel."""
    return (
        "from parallel_exec.worker.agent import serve_worker\n"
        f"serve_worker(channel, {worker_id!r}, {int(nice)})\n"
    )


# ---------------------------------------------------------------- controller -> agent


@dataclass(frozen=True)
class AgentSetup:
    """The first message: the controller's versions (the agent checks nothing; the
    controller compares the agent's ``AgentHello``) and what to watch."""

    package_version: str
    protocol_version: int = AGENT_PROTOCOL_VERSION
    #: Send what workers write to stdout (``-s``); stderr is always sent.
    stdout: bool = False
    #: Sample each worker's resident memory (``--max-worker-memory``).
    memory: bool = False


@dataclass(frozen=True)
class SignalWorker:
    """A signal to a worker (its stacks) or to its process group (SIGTERM)."""

    worker_id: str
    signum: int
    group: bool


@dataclass(frozen=True)
class KillWorker:
    """SIGKILL to a worker and to every process left in its group."""

    worker_id: str


@dataclass(frozen=True)
class ReleaseWorker:
    """The worker finished its session: let its process exit."""

    worker_id: str


@dataclass(frozen=True)
class GatherEvidence:
    """The worker ended (or must be looked at): wait briefly for its exit, then send
    what it left (``Evidence``)."""

    worker_id: str
    wait: float = 2.0


AgentRequest = AgentSetup | SignalWorker | KillWorker | ReleaseWorker | GatherEvidence

# ---------------------------------------------------------------- agent -> controller


@dataclass(frozen=True)
class AgentHello:
    """Who the agent is and what runs there (the header shows it)."""

    pid: int
    package_version: str
    python: str
    executable: str
    platform: str
    hostname: str
    cpus: int
    #: The directory workers run in (``//chdir=``, or the gateway's own).
    cwd: str
    protocol_version: int = AGENT_PROTOCOL_VERSION
    #: ``sys.version_info[:5]``, for the header and xdist's ``rinfo``.
    version_info: tuple[Any, ...] = ()


@dataclass(frozen=True)
class WorkerUpdate:
    """What changed for a worker since the last update: its progress entry, what it
    wrote since (bytes), its memory (0: not sampled)."""

    worker_id: str
    progress: ProgressEntry
    stdout: bytes = b""
    stderr: bytes = b""
    rss: int = 0
    #: It has ended (the last update about it), with this exit status.
    ended: bool = False
    exit_code: int | None = None


@dataclass(frozen=True)
class Evidence:
    """What a worker left when it ended (the answer to ``GatherEvidence``)."""

    worker_id: str
    #: Its exit code, a negative signal number, or None when it has not ended.
    exit_code: int | None
    progress: ProgressEntry
    stderr_since_test: str
    stderr: str
    #: Tests it finished but had not sent (its results journal).
    finished: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class StartError:
    """The agent could not start a worker."""

    worker_id: str
    error: str


AgentMessage = AgentHello | WorkerUpdate | Evidence | StartError
AGENT_MESSAGE_TYPES: tuple[type, ...] = typing.get_args(AgentMessage) + typing.get_args(
    AgentRequest
)


def encode(message: AgentMessage | AgentRequest) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def decode(payload: bytes) -> AgentMessage | AgentRequest:
    message = pickle.loads(payload)
    if not isinstance(message, AGENT_MESSAGE_TYPES):
        raise TypeError(f"not a parallel_exec agent message: {type(message)!r}")
    return message  # type: ignore[return-value]


def agent_mismatch(hello: AgentHello, python: tuple[int, int], package_version: str) -> str | None:
    """What differs between a remote agent and the controller, in words naming both
    sides (None: they can work together).  Reports are pickled: the same package and
    the same Python ``major.minor`` on both sides."""
    theirs = ".".join(str(part) for part in hello.version_info[:2]) or hello.python
    ours = f"{python[0]}.{python[1]}"
    differences = [
        f"{what}: controller {mine}, remote {other}"
        for what, mine, other in (
            ("agent protocol", AGENT_PROTOCOL_VERSION, hello.protocol_version),
            ("parallel_exec version", package_version, hello.package_version),
            ("Python version", ours, theirs),
        )
        if mine != other
    ]
    return "; ".join(differences) or None


def localize(
    setup: protocol.WorkerSetup, cwd: str, run_dir: str, agent_pid: int, environ: dict[str, str]
) -> protocol.WorkerSetup:
    """The controller's set-up of a worker, made true on the remote machine: its files
    in the agent's run directory, the project at ``cwd`` (where the controller's
    invocation directory is there), paths under the controller's invocation directory
    mapped to ``cwd``, the remote's own environment plus the controller's pytest
    variables, the agent as the process it watches."""
    home = setup.invocation_dir.rstrip(os.sep) or os.sep

    def mapped(path: str) -> str | None:
        if path == home:
            return cwd
        if path.startswith(home + os.sep):
            return os.path.join(cwd, path[len(home) + 1 :])
        return None

    def argument(arg: str) -> str:
        # ``tests/test_x.py::test`` stays; an absolute path into the project follows it.
        path, sep, rest = arg.partition("::")
        target = mapped(path) if os.path.isabs(path) else None
        return target + sep + rest if target is not None else arg

    start = dict(environ)
    start.update(
        {k: v for k, v in (setup.environment or {}).items() if k.startswith(PASSED_PREFIXES)}
    )
    return replace(
        setup,
        args=[argument(a) for a in setup.args],
        invocation_dir=cwd,
        sys_path=[p for p in (mapped(entry) for entry in setup.sys_path) if p is not None],
        basetemp=os.path.join(run_dir, "basetemp", setup.worker_id),
        progress_path=os.path.join(run_dir, setup.worker_id + ".progress"),
        controller_pid=agent_pid,
        environment=start,
    )
