"""Real reports for writer unit tests: an in-process pytest run, grouped per test.

Writers are tested on plain data, but the reports in that data should be the ones
pytest really makes (longrepr structure, sections, locations).  ``run_inline`` runs a
small suite in-process with ``pytester`` and returns what it reported, ready to be
turned into ``events.TestFinished``.  ``report`` builds one report as plain data, for
what a real run cannot easily give (a chosen text, duration or outcome sequence).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from parallel_exec.reporting import events


@dataclass(eq=False)  # hashable: pytest 8.0 registers it as a plugin and hashes it
class Collected:
    """What one in-process pytest run reported, grouped per test."""

    nodeids: list[str] = field(default_factory=list)
    locations: dict[str, tuple[str, int | None, str]] = field(default_factory=dict)
    reports: dict[str, list[pytest.TestReport]] = field(default_factory=dict)
    collect_reports: list[pytest.CollectReport] = field(default_factory=list)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if not report.passed:  # errors, and modules skipped at collection
            self.collect_reports.append(report)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.nodeids = [item.nodeid for item in session.items]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.setdefault(report.nodeid, []).append(report)

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.locations[nodeid] = location

    def finished(self, nodeid: str, worker: str = "gw0", **extra: Any) -> events.TestFinished:
        return events.TestFinished(
            worker_id=worker,
            nodeid=nodeid,
            location=self.locations[nodeid],
            reports=tuple(self.reports[nodeid]),
            **extra,
        )

    def nodeid(self, suffix: str) -> str:
        found = [n for n in self.nodeids if n.endswith(suffix)]
        assert len(found) == 1, (suffix, self.nodeids)
        return found[0]

    def all_finished(self) -> list[events.TestFinished]:
        return [self.finished(n, worker=f"gw{i % 2}") for i, n in enumerate(self.nodeids)]


def run_inline(pytester: pytest.Pytester, *args: str, **files: str) -> Collected:
    pytester.makepyfile(**files)
    collected = Collected()
    pytester.inline_run("-p", "no:cacheprovider", *args, plugins=[collected])
    return collected


def report(
    nodeid: str,
    when: str,
    outcome: str,
    duration: float = 0.1,
    longrepr: Any = None,
    sections: Iterable[tuple[str, str]] = (),
    **extra: Any,
) -> pytest.TestReport:
    if longrepr is None and outcome == "failed":
        longrepr = f"AssertionError: {nodeid} {when}"
    if longrepr is None and outcome == "skipped":
        longrepr = (nodeid.partition("::")[0], 1, "Skipped: because")
    return pytest.TestReport(
        nodeid=nodeid,
        location=(nodeid.partition("::")[0], 4, nodeid.partition("::")[2]),
        keywords={},
        outcome=outcome,  # type: ignore[arg-type]
        longrepr=longrepr,
        when=when,  # type: ignore[arg-type]
        sections=list(sections),
        duration=duration,
        **extra,
    )
