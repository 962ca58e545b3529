"""The worker's pytest plugin: turns a pytest session into a worker of the controller.

It reports the worker's collection, then runs the tests it is assigned, in order,
streaming serialized reports back in batches.  It keeps one test in hand until it knows
the next one, because pytest tears fixtures down by comparing a test with its successor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import queue
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO, cast

import pytest

from .._pytest_compat import install_worker_logxml, take_worker_logxml, terminal_to
from ..wire import environment, protocol
from ..wire.progress import IDLE, ProgressFile, ResultJournal, journal_path
from ..wire.reports import serialize
from .collection import SplitCollection
from .limits import FailOnLeak, LeakWatch, Retirement, marker_limit

#: Ask for more work when this many tests or fewer are left in the local queue.
LOW_WATER = 2
#: Send finished tests at least this often (seconds) and in batches of at most this size.
FLUSH_INTERVAL = 0.02
FLUSH_SIZE = 500


def serialize_warning(
    warning_message: warnings.WarningMessage,
    when: str,
    nodeid: str,
    location: tuple[str, int, str] | None,
) -> protocol.SerializedWarning:
    category = warning_message.category or UserWarning
    return protocol.SerializedWarning(
        message=str(warning_message.message),
        category_module=getattr(category, "__module__", "builtins"),
        category_name=getattr(category, "__qualname__", "UserWarning"),
        filename=str(warning_message.filename),
        lineno=int(warning_message.lineno or 0),
        line=warning_message.line,
        when=when,
        nodeid=nodeid,
        location=location,
    )


def unsendable_warning(nodeid: str, replaced: list[str]) -> protocol.SerializedWarning:
    """The warning for a test whose reports held values that could not be sent."""
    shown = ", ".join(replaced[:3]) + (", ..." if len(replaced) > 3 else "")
    return protocol.SerializedWarning.ours(
        f"parallel_exec: {len(replaced)} value(s) in the reports of {nodeid} could not "
        f"be sent from the worker (not picklable) and are reported as their repr: {shown}",
        filename=nodeid.split("::", 1)[0],
        nodeid=nodeid,
    )


GROUP_MARKERS = ("parallel_exec_group", "xdist_group")


def group_of(item: pytest.Item) -> str | None:
    """The name of the group a test is pinned to with a group marker, if any."""
    for name in GROUP_MARKERS:
        marker = item.get_closest_marker(name)
        if marker is not None:
            value = marker.args[0] if marker.args else marker.kwargs.get("name")
            if value is not None:
                return str(value)
    return None


class WorkerSession:
    """The plugin that turns a pytest session into a worker of the controller."""

    def __init__(
        self,
        config: pytest.Config,
        channel: Any,
        setup: protocol.WorkerSetup,
        stderr_fd: int = 2,
    ) -> None:
        self.config = config
        self.channel = channel
        self.setup = setup
        self.worker_id = setup.worker_id
        self.inbox: queue.SimpleQueue[protocol.ControllerMessage | None] = queue.SimpleQueue()
        self.stop_requested = threading.Event()
        self.stderr_fd = stderr_fd
        self.progress = ProgressFile(setup.progress_path, stderr_fd)
        self.journal = ResultJournal(journal_path(setup.progress_path))
        self.collection = SplitCollection(config, setup.share, setup.import_all)
        config.pluginmanager.register(self.collection, "parallel_exec_collection")
        self._queue: deque[pytest.Item] = deque()
        #: Tests of ``Assign`` messages not taken in yet, and those of them given back
        #: (a ``Release``) before they were: they are left out when it is.
        self._arriving: set[int] = set()
        self._revoked: set[int] = set()
        self._drained = False
        self._asked = False
        self._told_running = False  # what the last Progress said: a test runs
        self._batch: list[protocol.TestRecord] = []
        self._batch_warnings: list[protocol.SerializedWarning] = []
        self._current_reports: list[dict[str, Any]] | None = None
        self._current_warnings: list[protocol.SerializedWarning] = []
        self._last_flush = time.monotonic()
        #: Held while the batch changes or a message is sent: the flusher thread sends
        #: what finished while a long test runs (see ``_flush_while_running``).
        self._lock = threading.RLock()
        #: The test running now (None between tests), for the flusher.
        self._running: pytest.Item | None = None
        #: When the test in ``_running`` began (``time.time()``), and the size of this
        #: worker's stdout file then.
        self._started_at = 0.0
        self._stdout_at = 0
        self._flusher_stop = threading.Event()
        self._collect_reports: list[dict[str, Any]] = []
        self._collect_warnings: list[protocol.SerializedWarning] = []
        self._deselected: list[str] = []
        self._collected_sent = False
        self.junit_properties: list[tuple[str, str]] = []
        self.phase_output = PhaseOutput()
        #: The controller's number for each assigned test, written to the progress file.
        self._index_of: dict[str, int] = {}
        #: Processes tests leave running (None: not looked for).
        self.leaks: LeakWatch | None = None
        if setup.leak_check != "off":
            self.leaks = LeakWatch()
            config.pluginmanager.register(self.leaks, "parallel_exec_leaks")
            if setup.leak_check == "fail":
                config.pluginmanager.register(FailOnLeak(self.leaks), "parallel_exec_fail_on_leak")
        self.retirement = Retirement(setup.max_tests, setup.memory_limit)
        #: Why this worker retires (empty: it does not), and whether it said so.
        self.retiring = ""
        self._said_retiring = False
        channel.setcallback(self._on_message, endmarker=None)

    # ------------------------------------------------------------ channel

    def _on_message(self, payload: bytes | None) -> None:
        """Runs on execnet's receiver thread: decode and hand over to the main thread."""
        if payload is None:  # the controller went away
            self.stop_requested.set()
            self.inbox.put(None)
            return
        message = protocol.decode(payload)
        if isinstance(message, protocol.Release):
            self._release(message.indices)  # now: the main thread may be in a long test
            return
        if isinstance(message, protocol.Assign):
            with self._lock:  # queued only when the main thread comes round
                self._arriving.update(message.indices)
        if isinstance(message, protocol.Stop):
            self.stop_requested.set()
        self.inbox.put(message)  # type: ignore[arg-type]

    def _release(self, indices: tuple[int, ...]) -> None:
        """Give back the tests of ``indices`` that are queued, but the first in the queue
        (the running test's ``nextitem``: pytest tore down for it), or still on their way
        to the queue (an ``Assign`` the main thread has not taken in yet), and say
        which."""
        wanted = set(indices)
        with self._lock:
            given = sorted(wanted & self._arriving)
            self._arriving.difference_update(given)
            self._revoked.update(given)
            kept: list[pytest.Item] = []
            for position, item in enumerate(self._queue):
                index = self._index_of[item.nodeid]  # set when it was queued
                if position and index in wanted:
                    given.append(index)
                else:
                    kept.append(item)
            if given:
                self._queue = deque(kept)
            self.send(protocol.Released(self.worker_id, tuple(given)))

    def send(self, message: protocol.WorkerMessage) -> None:
        payload = protocol.encode(message)
        with self._lock:
            self.channel.send(payload)

    def _apply(self, message: protocol.ControllerMessage | None) -> None:
        if message is None or isinstance(message, protocol.Stop):
            self.stop_requested.set()
        elif isinstance(message, protocol.Assign):
            with self._lock:
                assigned = [
                    (nodeid, index)
                    for nodeid, index in zip(message.nodeids, message.indices, strict=True)
                    if index not in self._revoked
                ]
                self._revoked.difference_update(message.indices)
                self._arriving.difference_update(message.indices)
            self._index_of.update(assigned)
            items, missing = self.collection.resolve([nodeid for nodeid, _ in assigned])
            with self._lock:
                self._queue.extend(items)
            self._asked = False
            if missing:
                self.send(protocol.NotFound(self.worker_id, tuple(missing)))
        elif isinstance(message, protocol.Drain):
            self._drained = True

    def _pump(self, block: bool) -> None:
        try:
            if block:
                self._apply(self.inbox.get())
            while True:
                self._apply(self.inbox.get_nowait())
        except queue.Empty:
            pass

    def _next_to_run(self) -> pytest.Item | None:
        """The test the run loop starts as soon as it comes round, if it may start one."""
        queue = self._queue
        return queue[0] if len(queue) >= 2 or (queue and self._drained) else None

    def flush(self, want_more: bool = False, running: pytest.Item | None = None) -> None:
        """Send finished tests and warnings, ask for more work (``want_more``), and say
        which test runs now or starts at once (``running``; None: none, the worker waits
        or ends).  Sent with nothing else only when it changes between running and not
        running, so that fast tests cost no message of their own."""
        with self._lock:
            self._flush(want_more, running)

    def _flush(self, want_more: bool, running: pytest.Item | None) -> None:
        if not (
            self._batch
            or self._batch_warnings
            or want_more
            or self._told_running != (running is not None)
            or (self.retiring and not self._said_retiring)
        ):
            return
        message = protocol.Progress(
            worker_id=self.worker_id,
            tests=tuple(self._batch),
            warnings=tuple(self._batch_warnings),
            want_more=want_more,
            queued=len(self._queue),
            running=running.nodeid if running is not None else None,
            running_since=self._started_at if running is self._running else time.time(),
            retiring=self.retiring,
        )
        payload = self._encode(message)
        self._batch.clear()
        self._batch_warnings.clear()
        self._last_flush = time.monotonic()
        self.channel.send(payload)
        self.journal.clear()  # in the channel: it reaches the controller if we die now
        self._told_running = running is not None
        self._said_retiring = bool(self.retiring)

    def _journal(self, record: protocol.TestRecord) -> None:
        """Keep the finished test on disk until its batch is sent (``ResultJournal``)."""
        message = protocol.Progress(worker_id=self.worker_id, tests=(record,))
        # The batch still carries it: only a crash would lose it.
        with contextlib.suppress(Exception):
            self.journal.append(self._encode(message))

    def _flush_while_running(self) -> None:
        """Runs on a thread of its own: what finished must not wait in the batch while
        the next test runs long (a fast test, then a five-second one: the fast one's
        result reaches the controller at once, not five seconds later).  Results still
        travel in batches: at most one message per ``FLUSH_INTERVAL``."""
        while not self._flusher_stop.wait(FLUSH_INTERVAL):
            with self._lock:
                running = self._running
                if (
                    running is not None
                    and (self._batch or self._batch_warnings)
                    and time.monotonic() - self._last_flush >= FLUSH_INTERVAL
                ):
                    with contextlib.suppress(Exception):  # the main thread sees it fail too
                        self._flush(False, running)

    def _encode(self, message: protocol.Progress) -> bytes:
        """``message`` encoded; what cannot be pickled in it sent as its ``repr``."""
        try:
            return protocol.encode(message)
        except Exception:
            return protocol.encode(self._picklable(message))

    def _picklable(self, message: protocol.Progress) -> protocol.Progress:
        """The batch with what cannot be sent (a lock in ``record_property``...) replaced
        by its ``repr``, test by test, with a warning on each test concerned: one test's
        value never takes the other tests of its batch with it."""
        records = []
        for record in message.tests:
            replaced: list[str] = []
            reports = tuple(protocol.make_picklable(r, replaced) for r in record.reports)
            warned = list(protocol.make_picklable(w, replaced) for w in record.warnings)
            if replaced:
                warned.append(unsendable_warning(record.nodeid, list(dict.fromkeys(replaced))))
            records.append(dataclasses.replace(record, reports=reports, warnings=tuple(warned)))
        replaced = []
        warnings_ = tuple(protocol.make_picklable(w, replaced) for w in message.warnings)
        return dataclasses.replace(message, tests=tuple(records), warnings=warnings_)

    # ------------------------------------------------------------ junitxml mirror

    @pytest.hookimpl
    def pytest_configure(self, config: pytest.Config) -> None:
        """Give fixtures a junitxml object, as they have in a serial run.

        pytest does not open ``--junitxml`` in a worker, so ``record_property`` would not
        warn about xunit2 and ``record_testsuite_property`` would record nothing.  An
        unregistered ``LogXML`` writes no file; its suite properties go back to the
        controller with ``SessionFinished``.
        """
        if config.option.xmlpath:
            install_worker_logxml(config)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Silence this worker's terminal reporter: the controller reports everything.

        A worker's stdout is the channel for output that escapes capture (streamed with
        ``-s``), so the worker's own progress lines must not land there.  What a plugin
        writes to the terminal while a test runs (pytest-timeout's ``+++ Timeout +++``
        banner and thread stacks) still goes where it goes in a serial run: see
        ``PhaseOutput``.
        """
        terminal_to(self.config, cast(TextIO, self.phase_output))
        keep_output_on_exit(self.config, self.stderr_fd, self._stdout_since_test)
        if self.setup.environment is not None:
            # This process's configuration and session start are done: what the
            # controller changed and nothing here changed again is inherited.
            environment.inherit(self.setup.environment, self.setup.environment_changes)

    # The terminal gate (``PhaseOutput``) opens when a phase starts and closes when its
    # report is made, before pytest logs it.  Plain hooks, not wrappers: a wrapper's
    # frame would be in the traceback of every failure, which plugins that format their
    # own tracebacks (pytest-mypy-plugins) would print where a serial run does not.

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.phase_output.open = True

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        self.phase_output.open = True

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> None:
        self.phase_output.open = False

    @pytest.hookimpl(tryfirst=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Take the suite properties, and the unregistered ``LogXML`` away from pytest's
        junitxml plugin, whose own unconfigure would try to unregister it."""
        self.junit_properties = take_worker_logxml(config)

    # ------------------------------------------------------------ collection hooks

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if self._collected_sent or report.passed:
            return
        if self.collection.reports_for(report.nodeid):
            self._collect_reports.append(serialize(self.config, report))

    @pytest.hookimpl
    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        if not self._collected_sent:
            self._deselected.extend(item.nodeid for item in items)

    @pytest.hookimpl
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collection.walk_finished(session)

    def _send_collected(self, session: pytest.Session) -> None:
        """Sent when the run loop starts, not at ``pytest_collection_finish``: pytest
        records the warnings of collection only after its collection hook returns."""
        collection = self.collection
        failed = bool(session.testsfailed) and not self.config.option.continue_on_collection_errors
        self.send(
            protocol.Collected(
                worker_id=self.worker_id,
                share=self.setup.share,
                files=tuple(collection.files),
                nodeids=tuple(item.nodeid for item in session.items),
                item_files=tuple(collection.file_of(item) for item in session.items),
                item_groups=tuple(group_of(item) for item in session.items),
                collect_reports=tuple(self._collect_reports),
                deselected=tuple(self._deselected),
                warnings=tuple(self._collect_warnings),
                collection_failed=failed,
            )
        )
        self._collected_sent = True

    # ------------------------------------------------------------ run hooks

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        self._send_collected(session)
        if session.testsfailed and not self.config.option.continue_on_collection_errors:
            self._pump(block=True)  # wait for the controller's Stop
            return True
        flusher = threading.Thread(
            target=self._flush_while_running, name="parallel_exec-flush", daemon=True
        )
        flusher.start()
        try:
            self._run_loop(session)
        finally:
            self._flusher_stop.set()
            flusher.join()
        self.flush()
        return True

    def _run_loop(self, session: pytest.Session) -> None:
        while True:
            self._pump(block=False)
            if self.stop_requested.is_set():
                break
            with self._lock:  # a Release (another thread) keeps the queue's first test
                item = self._queue.popleft() if self._next_to_run() is not None else None
                nextitem = self._queue[0] if item is not None and self._queue else None
            if item is not None:
                if not self._drained and not self._asked and len(self._queue) <= LOW_WATER:
                    # Ask before running, so that the answer travels while the test runs
                    # (asking after it would leave the worker waiting for a round trip).
                    self._asked = True
                    self.flush(want_more=True, running=item)
                elif not self._told_running:
                    self.flush(running=item)  # it starts after waiting: its clock starts
                self._run_one(item, nextitem)
                if (session.shouldfail or session.shouldstop) and self.setup.stop_on_failure:
                    break  # -x, --maxfail, stepwise: the same stop as a serial loop
                retiring = self.retirement.after_test()
                if retiring is not None:
                    # Replaced between two tests: what it holds goes to another worker.
                    self.retiring = retiring
                    break
                if not self._drained and not self._asked and len(self._queue) <= LOW_WATER:
                    self._asked = True
                    self.flush(want_more=True, running=self._next_to_run())
                elif (
                    len(self._batch) >= FLUSH_SIZE
                    or time.monotonic() - self._last_flush >= FLUSH_INTERVAL
                ):
                    self.flush(running=self._next_to_run())
            elif self._drained and not self._queue:
                break
            else:
                # It holds one test it cannot start yet, or none: it says it runs nothing.
                if not self._asked and not self._drained:
                    self._asked = True
                    self.flush(want_more=True)
                else:
                    self.flush()
                self._pump(block=True)

    def _stdout_since_test(self) -> bytes:
        """What this worker wrote to its stdout file since the running test began."""
        try:
            with open(self.setup.progress_path.rsplit(".", 1)[0] + ".out", "rb") as fh:
                fh.seek(self._stdout_at)
                return fh.read()
        except OSError:
            return b""

    def _run_one(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        self._current_reports = []
        self._current_warnings = []
        self.progress.write(
            self._index_of[item.nodeid], marker_limit(item, self.setup.timeout_marker)
        )
        if self.leaks is not None:
            self.leaks.started()
        self._stdout_at = os.fstat(1).st_size
        self._started_at = time.time()
        self._running = item
        try:
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        finally:
            self.progress.write(IDLE)
            record = protocol.TestRecord(
                nodeid=item.nodeid,
                location=item.location,
                reports=tuple(self._current_reports),
                warnings=tuple(self._current_warnings),
                started_at=self._started_at,
                leaked=self.leaks.check() if self.leaks is not None else (),
            )
            self._current_reports = None
            self._current_warnings = []
            with self._lock:
                self._running = None
                self._batch.append(record)
                self._journal(record)

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self._current_reports is not None:
            self._current_reports.append(serialize(self.config, report))

    @pytest.hookimpl
    def pytest_warning_recorded(
        self,
        warning_message: warnings.WarningMessage,
        when: str,
        nodeid: str,
        location: tuple[str, int, str] | None,
    ) -> None:
        if when == "config":  # the controller records its own configuration warnings
            return
        serialized = serialize_warning(warning_message, when, nodeid, location)
        if self._current_reports is not None:
            self._current_warnings.append(serialized)
        elif not self._collected_sent:
            self._collect_warnings.append(serialized)  # the controller removes repeats
        else:
            with self._lock:
                self._batch_warnings.append(serialized)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """Before the last test's teardown (which ends the session's fixtures, and may end
        the process with them), send what is known of the test: the controller can then
        attach an end of the process there to the teardown, as pytest would an error."""
        self._send_partial(item, nextitem)
        self.phase_output.open = True

    def _send_partial(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        if nextitem is None and self._current_reports is not None:
            partial = protocol.TestRecord(
                nodeid=item.nodeid,
                location=item.location,
                reports=tuple(self._current_reports),
                partial=True,
                started_at=self._started_at,
            )
            with self._lock:
                self._batch.append(partial)
                self._journal(partial)
                self._flush(False, item)  # still running: its teardown

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.flush()

    @pytest.hookimpl
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """``pytest.exit`` in a test or plugin (a worker's SIGINT handler does nothing, so
        nothing else gets here): the controller ends the whole run the same way."""
        value = excinfo.value
        if isinstance(value, pytest.exit.Exception):
            with contextlib.suppress(Exception):
                self.flush()
            with contextlib.suppress(Exception):
                self.send(protocol.Exited(self.worker_id, value.msg, value.returncode))

    @pytest.hookimpl
    def pytest_internalerror(self, excrepr: Any, excinfo: Any) -> bool:
        """pytest's machinery or a plugin raised in this worker: the controller shows it
        and ends the run as a serial INTERNALERROR ends it.  What finished before is
        sent first.  Handled here: pytest does not also print it to this worker's stderr
        (which the controller shows too)."""
        with contextlib.suppress(Exception):
            self.flush()
        with contextlib.suppress(Exception):
            self.send(protocol.WorkerError(self.worker_id, str(excrepr), "internal"))
        return True


class PhaseOutput(io.TextIOBase):
    """The stream under a worker's terminal writer.

    While a test's setup, call or teardown runs it writes to ``sys.stdout`` as the
    terminal does in a serial run, so what a plugin writes there lands where it lands
    serially: in the test's captured output, or with ``-s`` on the worker's stdout,
    which the controller shows tagged with the worker.  Between phases only the
    terminal reporter's own lines are written (progress, headers, summaries): those go
    nowhere, the controller reports.
    """

    def __init__(self) -> None:
        super().__init__()
        #: A test's phase is running.
        self.open = False

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if self.open:
            sys.stdout.write(text)
        return len(text)

    def flush(self) -> None:
        if self.open:
            sys.stdout.flush()


def keep_output_on_exit(
    config: pytest.Config, stderr_fd: int, stdout_since_test: Callable[[], bytes] = bytes
) -> None:
    """Make ``os._exit`` in a test leave the test's captured output in the stderr file.

    pytest captures into an anonymous temporary file, which dies with the process; a
    test that calls ``os._exit`` would take its own last words with it.  Only this
    process is affected (a forked child calls the original).
    """
    original = os._exit
    pid = os.getpid()
    capman = config.pluginmanager.get_plugin("capturemanager")

    def _exit(code: int) -> None:  # type: ignore[misc]
        if os.getpid() == pid and capman is not None:
            try:
                out, err = capman.read_global_capture()
                for label, text in (("stdout", out), ("stderr", err)):
                    if text:
                        header = f"--- captured {label} before os._exit({code}) ---\n"
                        os.write(stderr_fd, header.encode())
                        os.write(stderr_fd, text.encode("utf-8", "replace"))
            except Exception:
                pass
            with contextlib.suppress(Exception):
                _ended_by_pytest_timeout(stderr_fd, stdout_since_test)
        original(code)

    os._exit = _exit  # type: ignore[assignment]


def _ended_by_pytest_timeout(stderr_fd: int, stdout_since_test: Callable[[], bytes]) -> None:
    """pytest-timeout's ``thread`` method ends the process from its timer thread, after
    writing its banner and the stacks to the terminal (this worker's stdout file): say
    so on stderr, with that text, so that the controller reports the test failed with
    pytest-timeout's message instead of an unexplained crash."""
    timer = threading.current_thread()
    if not (isinstance(timer, threading.Timer) and timer.name.startswith("pytest_timeout ")):
        return
    args: Any = getattr(timer, "args", ())
    seconds = getattr(args[1], "timeout", "?") if len(args) > 1 else "?"
    line = protocol.ENDED_BY_PYTEST_TIMEOUT.format(seconds=seconds) + "\n"
    os.write(stderr_fd, line.encode() + stdout_since_test())
