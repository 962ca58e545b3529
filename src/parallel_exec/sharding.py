"""``--shard I/N`` in an in-process run (no ``-n``, ``-n 0``): the same plan as on
workers (``scheduling/shards.py``, from the same history), applied to pytest's own
collection.  The other shards' tests are deselected; a shard left with nothing to run
says why and exits 0 (not 5: the matrix ran every test)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from ._pytest_compat import add_suite_properties
from .history.store import TestTiming, estimate_durations
from .reporting import events
from .scheduling.shards import plan_shards
from .settings import Shard
from .worker.session import group_of


class InProcessShard:
    def __init__(
        self,
        shard: Shard,
        run_id: str | None,
        strategy: str,
        timings: Mapping[str, TestTiming],
        publish: Callable[[events.RunEvent], None] | None = None,
    ) -> None:
        self.shard = shard
        self.run_id = run_id
        self.strategy = strategy
        self.timings = timings
        self.publish = publish
        self.empty = False

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        nodeids = [item.nodeid for item in items]
        estimates = estimate_durations(nodeids, self.timings)
        plan = plan_shards(
            nodeids,
            [group_of(item) for item in items],
            [estimates[n] for n in nodeids],
            self.shard.count,
            self.strategy,
        )
        mine = set(plan.tests_of(self.shard.index - 1))
        selected = events.ShardSelected(
            index=self.shard.index,
            count=self.shard.count,
            run_id=self.run_id or plan.inputs_digest,
            fingerprint=plan.fingerprint,
            tests=len(mine),
            suite_tests=len(items),
            predicted=plan.loads[self.shard.index - 1],
            largest=max(plan.loads),
            lower_bound=plan.lower_bound,
            positions=plan.tests_of(self.shard.index - 1),
        )
        add_suite_properties(config, selected.properties())
        if self.publish is not None:
            self.publish(selected)
        others = [item for i, item in enumerate(items) if i not in mine]
        if others:
            config.hook.pytest_deselected(items=others)
        self.empty = bool(items) and not mine
        items[:] = [item for i, item in enumerate(items) if i in mine]

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.empty and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.empty:
            terminalreporter.write_line(
                f"parallel_exec: shard {self.shard} has no test to run: the suite's tests "
                f"make fewer than {self.shard.count} units (groups, files or classes kept "
                "whole)",
                yellow=True,
            )
