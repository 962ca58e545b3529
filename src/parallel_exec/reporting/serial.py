"""In-process runs publish the same run events, so report writers work without workers.

A run stays in this process when no workers were asked for (``-n 0`` or no ``-n``), or
when an option needs it (``--pdb``, ``--trace``, ``--keep-duplicates``).  Report options
still apply there: this plugin turns pytest's own hooks into the run-event stream, one
``TestFinished`` per test with its reports grouped, exactly as the controller does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence

import pytest

from . import events

#: The worker id of tests run in the main process (pytest-xdist's name, as the
#: ``worker_id`` fixture gives it).
IN_PROCESS = "master"


class SerialEvents:
    """Registered in the main process of an in-process run that writes reports."""

    def __init__(
        self,
        consumers: Sequence[Callable[[events.RunEvent], None]],
        on_failure: Callable[[Callable[[events.RunEvent], None], Exception], None] | None = None,
    ) -> None:
        self.stream = events.EventStream(consumers, on_failure)
        self.run_id = uuid.uuid4().hex
        self._reports: dict[str, list[pytest.TestReport]] = {}
        self._collect_reports: list[pytest.CollectReport] = []
        self._tests = 0

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.stream.publish(events.RunStarted(self.run_id, 1, "serial"))

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if not report.passed:  # errors, and modules skipped at collection
            self._collect_reports.append(report)

    @pytest.hookimpl
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.stream.publish(
            events.CollectionFinished(
                worker_id=IN_PROCESS,
                nodeids=tuple(item.nodeid for item in session.items),
                collect_reports=tuple(self._collect_reports),
                deselected=(),
                warnings=(),
            )
        )

    @pytest.hookimpl
    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self._reports[nodeid] = []
        self.stream.publish(events.TestStarted(IN_PROCESS, nodeid, time.time()))

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._reports.setdefault(report.nodeid, []).append(report)

    @pytest.hookimpl
    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self._tests += 1
        self.stream.publish(
            events.TestFinished(
                worker_id=IN_PROCESS,
                nodeid=nodeid,
                location=location,
                reports=tuple(self._reports.pop(nodeid, ())),
            )
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        collected = len(session.items)
        not_run = max(0, collected - self._tests)
        self.stream.publish(events.RunFinished(tests_not_run=not_run))
        aborted = events.cut_short(session, exitstatus)
        self.stream.publish(events.SessionEnded(int(exitstatus), aborted))
