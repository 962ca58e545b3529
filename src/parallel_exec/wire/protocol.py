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

import io
import pickle
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

PROTOCOL_VERSION = 4

#: The signal (by name) on which a worker writes every thread's stack to its stderr file:
#: the controller sends it before it ends a test that ran past ``--test-timeout``.
STACKS_SIGNAL = "SIGUSR1"
#: The line before what a test had captured when its stacks were asked for.
CAPTURED_SO_FAR = "--- parallel_exec: captured {stream} of the test so far ---"
#: The line a worker writes to its stderr when pytest-timeout's ``thread`` method ends
#: it (what pytest-timeout wrote follows); its failure message after the colon.
ENDED_BY_PYTEST_TIMEOUT = (
    "--- parallel_exec: pytest-timeout ended this worker: "
    "Timeout (>{seconds}s) from pytest-timeout."
)

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
    #: The controller's process id: a worker ends itself when that process is gone (its
    #: own parent is the fork server for a forked worker).
    controller_pid: int = 0
    #: Import every test module in walk order, those outside the share too, without
    #: building their tests (the ``imports`` collection mode; see ``collection.py``).
    import_all: bool = False
    #: The worker's ``config.workerinput``: pytest-xdist's keys and what plugins added in
    #: ``pytest_configure_node``.
    workerinput: dict[str, Any] = field(default_factory=dict)
    #: The environment pytest was started with, before plugins changed it (pytest-env):
    #: the worker starts from it and its own plugins change it once.  None: keep it.
    environment: dict[str, str] | None = None
    #: What the controller changed in it since (None: removed); the worker takes the
    #: changes its own set-up did not make (see ``wire/environment.py``).
    environment_changes: dict[str, str | None] = field(default_factory=dict)
    #: Processes a test leaves running: ``report`` them, ``fail`` its teardown, or ``off``.
    leak_check: str = "report"
    #: Retire after this many tests (0: never; ``--max-worker-tests``).
    max_tests: int = 0
    #: ``--max-worker-memory`` in bytes (0: none): the worker retires between tests
    #: before its memory reaches it (the controller fails a test that passes it).
    memory_limit: int = 0
    #: ``@pytest.mark.timeout`` sets a test's limit (pytest-timeout is not installed).
    timeout_marker: bool = False


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


@dataclass(frozen=True)
class Release:
    """Give back these tests (the controller's numbers) if they have not started; the
    one the worker runs next stays (pytest already tore down for it).  Handled at once,
    also while a test runs; answered with ``Released``."""

    indices: tuple[int, ...]


ControllerMessage = WorkerSetup | Assign | Drain | Stop | Release

# ---------------------------------------------------------------- worker -> controller


@dataclass(frozen=True)
class Hello:
    """The worker's side of the handshake: the controller compares every version with
    its own and refuses a worker that differs (``handshake_mismatch``)."""

    worker_id: str
    pid: int
    python: str
    package_version: str
    protocol_version: int = PROTOCOL_VERSION
    #: What pytest-xdist's ``gateway._rinfo()`` tells plugins about the worker.
    platform: str = ""
    version_info: tuple[Any, ...] = ()
    executable: str = ""
    cwd: str = ""


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

    @classmethod
    def ours(cls, message: str, filename: str, nodeid: str = "") -> SerializedWarning:
        """A warning of parallel_exec's own (``ParallelExecWarning``), shown in pytest's
        warnings summary under ``filename`` (and ``nodeid``, if about one test)."""
        return cls(
            message=message,
            category_module="parallel_exec.errors",
            category_name="ParallelExecWarning",
            filename=filename,
            lineno=0,
            line=None,
            when="runtest",
            nodeid=nodeid,
            location=None,
        )


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
    #: Sent before the test is over: the reports so far of a worker's last test, before
    #: its teardown ends the session's fixtures (which may end the process).  The full
    #: record follows unless the worker dies.
    partial: bool = False
    #: When the test began, on the worker's clock (``time.time()``).
    started_at: float = 0.0
    #: Processes it started and left running: ``(pid, command)`` each.
    leaked: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class Progress:
    """A batch of finished tests and warnings; ``want_more`` asks for more work.

    ``running`` is the test the worker runs now or starts at once, after the finished
    ones; None: it runs nothing until it hears from the controller (it holds no test, or
    one it keeps until it knows the next one or is drained).  The scheduler times a test
    from the message that names it, so a test a worker holds but has not started is never
    taken for a slow one.  A worker says it only when it changes between running and not
    running (or along with a message it sends anyway): fast tests cost no extra message.
    """

    worker_id: str
    tests: tuple[TestRecord, ...] = ()
    warnings: tuple[SerializedWarning, ...] = ()
    want_more: bool = False
    queued: int = 0
    running: str | None = None
    #: When ``running`` began (or begins: now), on the worker's clock (``time.time()``).
    running_since: float = 0.0
    #: The worker retires after these tests (why; empty: it does not): it runs nothing
    #: more and ends its session, and the tests it still holds go back to the scheduler.
    retiring: str = ""


@dataclass(frozen=True)
class SessionFinished:
    worker_id: str
    exitstatus: int
    workeroutput: dict[str, Any] = field(default_factory=dict)
    #: ``record_testsuite_property`` values, for the controller's ``--junitxml``.
    junit_properties: tuple[tuple[str, str], ...] = ()


#: ``usage``: the worker's command line was refused (pytest's exit code 4);
#: ``internal``: pytest's machinery or a plugin raised (an INTERNALERROR, exit code 3).
WorkerErrorKind = Literal["usage", "internal"]


@dataclass(frozen=True)
class WorkerError:
    """An error inside the worker machinery (not a test failure)."""

    worker_id: str
    traceback: str
    kind: WorkerErrorKind = "internal"


@dataclass(frozen=True)
class Exited:
    """A test or plugin called ``pytest.exit`` in this worker: the whole run ends so, as
    a serial session does (its message, its exit code)."""

    worker_id: str
    reason: str
    returncode: int | None


@dataclass(frozen=True)
class Released:
    """The tests of a ``Release`` the worker gave back (perhaps none): it will not run
    them."""

    worker_id: str
    indices: tuple[int, ...]


WorkerMessage = (
    Hello | Collected | NotFound | Progress | SessionFinished | WorkerError | Exited | Released
)

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


def _checked(message: Any) -> Message:
    if not isinstance(message, MESSAGE_TYPES):
        raise TypeError(f"not a parallel_exec protocol message: {type(message)!r}")
    return message  # type: ignore[return-value]


def decode(payload: bytes) -> Message:
    return _checked(pickle.loads(payload))


class Unresolved:
    """Stands for an object whose class the receiving process cannot import (a class
    defined in a test module the controller never imports): its repr names the class."""

    _qualified = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Unresolved:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{self._qualified} object (its class is not importable here)>"

    __str__ = __repr__


class _TolerantUnpickler(pickle.Unpickler):
    def __init__(self, payload: bytes) -> None:
        super().__init__(io.BytesIO(payload))
        self.unresolved: list[str] = []

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            qualified = f"{module}.{name}"
            self.unresolved.append(qualified)
            return type(name, (Unresolved,), {"_qualified": qualified, "__module__": module})


def decode_tolerant(payload: bytes) -> tuple[Message, tuple[str, ...]]:
    """``decode``, but a class this process cannot import becomes an ``Unresolved``
    stand-in instead of an error; also returns the names of such classes."""
    try:
        return decode(payload), ()
    except (ImportError, AttributeError):
        pass
    unpickler = _TolerantUnpickler(payload)
    message = _checked(unpickler.load())
    return message, tuple(dict.fromkeys(unpickler.unresolved))


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return False
    return True


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:
        return f"<{type(value).__qualname__} object (repr failed: {type(exc).__name__})>"


def make_picklable(value: Any, replaced: list[str]) -> Any:
    """``value`` with every part that cannot be pickled replaced by its ``repr``; the
    reprs of the replaced parts are appended to ``replaced``."""
    if _picklable(value):
        return value
    if isinstance(value, dict):
        return {make_picklable(k, replaced): make_picklable(v, replaced) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [make_picklable(v, replaced) for v in value]
        return items if isinstance(value, list) else tuple(items)
    text = _safe_repr(value)
    replaced.append(text)
    return text


def handshake_mismatch(hello: Hello, python: str, package_version: str) -> str | None:
    """What differs between a worker (``hello``) and the controller, in words naming
    both sides; None when they match.  Pickled messages need the same protocol, the same
    package and the same Python on both sides."""
    differences = [
        f"{what}: controller {ours}, worker {theirs}"
        for what, ours, theirs in (
            ("protocol version", PROTOCOL_VERSION, hello.protocol_version),
            ("parallel_exec version", package_version, hello.package_version),
            ("Python version", python, hello.python),
        )
        if ours != theirs
    ]
    return "; ".join(differences) or None
