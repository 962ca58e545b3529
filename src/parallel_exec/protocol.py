"""Every message that crosses a channel (controller <-> worker, pool <-> fork server),
as typed records.

One module owns the wire so that neither side dispatches on strings: a message is a
frozen dataclass, ``encode`` turns it into bytes for the execnet channel and ``decode``
turns bytes back into the same class.  Pickle is used because both ends run the same
interpreter and package version (checked in the handshake) and because it is an
order of magnitude cheaper than execnet's own serializer for the report dictionaries a
worker streams back; overhead per test is what decides whether many fast tests gain
anything from running in parallel.

Tests are named by node id on the wire (a worker may not have collected a test's file
until it is assigned); the controller's canonical index travels alongside in ``Assign``
so that a worker can name the test in progress in its progress file.
"""

from __future__ import annotations

import pickle
import typing
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1

# ---------------------------------------------------------------- controller -> worker


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a worker needs to build the same pytest config as the controller."""

    worker_id: str
    worker_count: int
    run_id: str
    protocol_version: int
    package_version: str
    args: list[str]
    option_dict: dict[str, Any]
    invocation_dir: str
    sys_path: list[str]
    basetemp: str
    progress_path: str
    capture_off: bool
    #: Which files to collect up front: ``(k, n)`` = every n-th from the k-th, ``None`` = none.
    share: tuple[int, int] | None
    #: Stop on ``-x`` / ``--maxfail`` by itself (False with ``--retries``: a failure may be
    #: retried, so only the controller knows whether it is final).
    stop_on_failure: bool = True


@dataclass(frozen=True)
class Assign:
    """Run these tests after the ones already queued (collecting their files if needed).

    ``indices`` are the controller's numbers for the same tests; the worker writes the
    one in progress to its progress file, for crash attribution.
    """

    nodeids: tuple[str, ...]
    indices: tuple[int, ...]


@dataclass(frozen=True)
class Drain:
    """No more work will come: finish the queue (last test with nextitem=None) and end."""


@dataclass(frozen=True)
class Stop:
    """Finish the test that is running, start no other, and end the session."""

    reason: str


ControllerMessage = WorkerSetup | Assign | Drain | Stop

# ---------------------------------------------------------------- worker -> controller


@dataclass(frozen=True)
class Hello:
    worker_id: str
    pid: int
    python: str
    package_version: str


@dataclass(frozen=True)
class SerializedWarning:
    """A ``warnings.WarningMessage`` reduced to what the controller needs to replay it."""

    message: str
    category_module: str
    category_name: str
    filename: str
    lineno: int
    line: str | None
    when: str
    nodeid: str
    location: tuple[str, int, str] | None


@dataclass(frozen=True)
class Collected:
    """The worker's collection, sent once, before any test runs.

    With split collection a worker collected only its share of the files (see
    ``collection.SplitCollection``); ``files`` still lists every file it walked past,
    and ``item_files`` gives each collected test's position in that list.
    """

    worker_id: str
    share: tuple[int, int] | None
    files: tuple[str, ...]
    #: In the worker's collection order.  Locations travel with each test's record,
    #: because computing them for every collected item costs as much as a test.
    nodeids: tuple[str, ...]
    item_files: tuple[int, ...]
    #: The ``xdist_group`` / ``parallel_exec_group`` name of each test, if any.
    item_groups: tuple[str | None, ...]
    #: Non-passing collect reports, as produced by ``pytest_report_to_serializable``.
    collect_reports: tuple[dict[str, Any], ...]
    deselected: tuple[str, ...]
    warnings: tuple[SerializedWarning, ...]
    #: True when collection errors make pytest refuse to run tests (no
    #: ``--continue-on-collection-errors``); the worker then waits for Stop.
    collection_failed: bool


@dataclass(frozen=True)
class NotFound:
    """Assigned tests this worker could not find after collecting their files."""

    worker_id: str
    nodeids: tuple[str, ...]


@dataclass(frozen=True)
class TestRecord:
    """One test's serialized reports (setup, call, teardown), in the order produced."""

    __test__ = False  # not a test class, despite the name

    nodeid: str
    location: tuple[str, int | None, str]
    reports: tuple[dict[str, Any], ...]
    warnings: tuple[SerializedWarning, ...] = ()


@dataclass(frozen=True)
class Progress:
    """A batch of finished tests and warnings; ``want_more`` asks for more work."""

    worker_id: str
    tests: tuple[TestRecord, ...] = ()
    warnings: tuple[SerializedWarning, ...] = ()
    want_more: bool = False
    queued: int = 0


@dataclass(frozen=True)
class SessionFinished:
    worker_id: str
    exitstatus: int
    workeroutput: dict[str, Any] = field(default_factory=dict)
    #: ``record_testsuite_property`` values, for the controller's ``--junitxml``.
    junit_properties: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class WorkerError:
    """An internal error inside the worker machinery (not a test failure)."""

    worker_id: str
    traceback: str


WorkerMessage = Hello | Collected | NotFound | Progress | SessionFinished | WorkerError

# ---------------------------------------------------------------- pool <-> fork server


@dataclass(frozen=True)
class ForkWorker:
    """Fork a worker: it connects back to the pool's socket and serves a gateway there.

    ``environ`` is the controller's environment now (a spawned worker would inherit
    it; the fork server's is the one it had when it started).
    """

    worker_id: str
    nice: int
    environ: dict[str, str]


@dataclass(frozen=True)
class KillWorker:
    """Kill a forked worker, if the fork server has not yet seen it exit (only its
    parent knows that its process id still names it)."""

    worker_id: str


ForkServerRequest = ForkWorker | KillWorker


@dataclass(frozen=True)
class WorkerForked:
    worker_id: str
    pid: int


@dataclass(frozen=True)
class ForkFailed:
    worker_id: str
    error: str


@dataclass(frozen=True)
class WorkerExited:
    """A forked worker's exit status, as ``subprocess`` gives it (negative: a signal)."""

    worker_id: str
    returncode: int


ForkServerMessage = WorkerForked | ForkFailed | WorkerExited

Message = ControllerMessage | WorkerMessage | ForkServerRequest | ForkServerMessage
MESSAGE_TYPES: tuple[type, ...] = typing.get_args(Message)


def encode(message: Message) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def decode(payload: bytes) -> Message:
    message = pickle.loads(payload)
    if not isinstance(message, MESSAGE_TYPES):
        raise TypeError(f"not a parallel_exec protocol message: {type(message)!r}")
    return message  # type: ignore[return-value]
