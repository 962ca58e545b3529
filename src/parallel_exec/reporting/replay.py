"""The first consumer of the run-event stream: replay into pytest's own hooks.

Everything a serial run reports through hooks (terminal, ``--junitxml``,
``--report-log``, ``-r`` summaries, ``--durations``, the ``--lf`` cache, third-party
plugins) sees the same calls here, in the order pytest makes them for one test:
``logstart``, each report, ``logfinish``, then the test's warnings.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from .._pytest_compat import TerminalRepr, end_current_line
from ..errors import WorkerInternalError
from ..wire import protocol
from . import events


def warning_category(module_name: str, qualname: str) -> type[Warning]:
    """The warning class named by the worker, without importing anything here.

    A class from a module the controller already has (builtins, pytest, a library) is
    the real one.  A class defined in a test module is not, because the controller never
    imports test modules (that would run their code in the controller): a stand-in
    subclass of ``UserWarning`` with the same name keeps the summary's wording.
    """
    module = sys.modules.get(module_name)
    if module is not None:
        candidate: Any = module
        for part in qualname.split("."):
            candidate = getattr(candidate, part, None)
        if isinstance(candidate, type) and issubclass(candidate, Warning):
            return candidate
    name = qualname.rsplit(".", 1)[-1] or "UserWarning"
    stand_in = type(name, (UserWarning,), {"__module__": module_name, "__qualname__": qualname})
    return stand_in


def rebuild_warning(data: protocol.SerializedWarning) -> events.WarningRecorded:
    """Recreate a ``WarningMessage`` close enough for pytest's formatting and counting."""
    message = warnings.WarningMessage(
        message=data.message,
        category=warning_category(data.category_module, data.category_name),
        filename=data.filename,
        lineno=data.lineno,
        line=data.line,
    )
    return events.WarningRecorded(message, data.when, data.nodeid, data.location)


class HookReplay:
    """Calls pytest's hooks for each run event, as a serial session would have."""

    #: A plugin raising in a replayed hook is an error of the run, as it is serially.
    isolated = False

    def __init__(self, config: pytest.Config, node_of: Callable[[str], Any] | None = None) -> None:
        self.config = config
        self.hook = config.hook
        self._stream_output = config.getoption("capture", None) == "no"
        #: The worker's pytest-xdist node, set on its reports as ``report.node`` (as
        #: xdist does: pytest's terminal and plugins read it).
        self._node_of = node_of or (lambda worker_id: None)

    def __call__(self, event: events.RunEvent) -> None:
        if isinstance(event, events.TestFinished):
            self._test(event)
        elif isinstance(event, events.WarningRecorded):
            self._warning(event)
        elif isinstance(event, events.CollectionFinished):
            node = self._node_of(event.worker_id)
            for report in event.collect_reports:
                if node is not None:
                    report.node = node  # type: ignore[attr-defined]
                self.hook.pytest_collectreport(report=report)
            if event.deselected:
                self.hook.pytest_deselected(items=[DeselectedItem(n) for n in event.deselected])
            for warning in event.warnings:
                self._warning(warning)
        elif isinstance(event, events.WorkerOutput):
            if self._stream_output or event.stream == "stderr":
                self._write_line(f"[{event.worker_id}] {event.text}")
        elif isinstance(event, events.TestLimitReached):
            label = "MEMORY" if event.kind == "memory" else "TIMEOUT"
            self._write_line(
                f"[{event.worker_id}] {label} {event.nodeid}: {event.message}; its worker is ended"
            )
        elif isinstance(event, events.TestSlow):
            self._write_line(
                f"SLOW [{event.worker_id}] {event.nodeid} running for {event.seconds:.0f} s"
            )
        elif isinstance(event, events.ProcessLeaked):
            self._write_line(
                f"[{event.worker_id}] LEAK {event.nodeid} left process {event.pid} "
                f"{event.command!r} running (ended with its worker)"
            )
        elif isinstance(event, events.WorkerRecycled):
            self._write_line(f"[{event.worker_id}] worker replaced: {event.reason}")
        elif isinstance(event, events.WorkerCrashed):
            self._write_line(f"[{event.worker_id}] worker {event.description}")
        elif isinstance(event, events.RunNotice):
            markup = {"warning": {"yellow": True}, "error": {"red": True}}.get(event.level, {})
            terminal_line(self.config, event.text, **markup)
        elif isinstance(event, events.InternalError):
            if event.same_as is not None:
                terminal_line(
                    self.config,
                    f"INTERNALERROR> [{event.worker_id}] the same error as {event.same_as}",
                    red=True,
                )
            else:
                show_internal_error(self.config, event.worker_id, event.text)

    def _test(self, event: events.TestFinished) -> None:
        location: Any = event.location
        self.hook.pytest_runtest_logstart(nodeid=event.nodeid, location=location)
        node = self._node_of(event.worker_id)
        for report in event.reports:
            if node is not None:
                report.node = node  # type: ignore[attr-defined]
            self.hook.pytest_runtest_logreport(report=report)
        self.hook.pytest_runtest_logfinish(nodeid=event.nodeid, location=location)
        for warning in event.warnings:
            self._warning(warning)

    def _warning(self, event: events.WarningRecorded) -> None:
        self.hook.pytest_warning_recorded.call_historic(
            kwargs=dict(
                warning_message=event.warning_message,
                when=event.when,
                nodeid=event.nodeid,
                location=event.location,
            )
        )

    def _write_line(self, text: str) -> None:
        terminal_line(self.config, text)


def terminal_line(config: pytest.Config, text: str, **markup: bool) -> None:
    """Write a whole line to pytest's terminal, after whatever progress is on the line."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    end_current_line(config)
    reporter.write_line(text, **markup)


class DeselectedItem:
    """Stands for an item a worker deselected; the controller never collects items.

    ``pytest_deselected`` consumers (the terminal's "N deselected" count among them)
    read only the node id.
    """

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid

    def __repr__(self) -> str:
        return f"<DeselectedItem {self.nodeid}>"


class _WorkerErrorRepr(TerminalRepr):
    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def toterminal(self, tw: Any) -> None:
        for line in self.text.splitlines():
            tw.line(line)


def show_internal_error(config: pytest.Config, worker_id: str, text: str) -> None:
    """Call ``pytest_internalerror`` as a serial run does for its own internal error (the
    terminal prints ``INTERNALERROR>`` lines, ``--junitxml`` records it), with the
    worker's traceback, each line tagged with the worker's id."""
    tagged = "\n".join(f"[{worker_id}] {line}" for line in text.splitlines())
    try:
        raise WorkerInternalError(tagged)
    except WorkerInternalError:
        excinfo = pytest.ExceptionInfo[WorkerInternalError].from_current()
    config.hook.pytest_internalerror(excrepr=_WorkerErrorRepr(tagged), excinfo=excinfo)
