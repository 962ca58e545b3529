"""``--shard I/N``: this shard's part of the plan (``select_shard``, for runs on
workers and in-process alike), and the in-process run's plugin, which applies it to
pytest's own collection.  The other shards' tests are deselected; a shard left with
nothing to run says why and exits 0 (not 5: the matrix ran every test)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pytest

from ._pytest_compat import add_suite_properties
from .history.store import TestTiming, estimate_durations
from .reporting import events
from .scheduling.shards import plan_shards
from .settings import Shard


def select_shard(
    nodeids: Sequence[str],
    groups: Sequence[str | None],
    timings: Mapping[str, TestTiming],
    shard: Shard,
    strategy: str,
    run_id: str | None,
) -> events.ShardSelected:
    """The plan every shard computes (``scheduling/shards.py``, durations predicted from
    the history as for scheduling), as this shard's part of it."""
    estimates = estimate_durations(nodeids, timings)
    plan = plan_shards(nodeids, groups, [estimates[n] for n in nodeids], shard.count, strategy)
    mine = plan.tests_of(shard.index - 1)
    return events.ShardSelected(
        index=shard.index,
        count=shard.count,
        run_id=run_id or plan.inputs_digest,
        fingerprint=plan.fingerprint,
        tests=len(mine),
        suite_tests=len(nodeids),
        predicted=plan.loads[shard.index - 1],
        largest=max(plan.loads),
        lower_bound=plan.lower_bound,
        positions=mine,
    )


def nothing_to_run(selected: events.ShardSelected) -> str:
    return (
        f"parallel_exec: shard {selected.label} has no test to run: the suite's "
        f"{selected.suite_tests} tests make fewer than {selected.count} units (groups, "
        "files or classes kept whole)"
    )


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
        self.selected: events.ShardSelected | None = None
        self.empty = False

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        from .worker.session import group_of

        selected = select_shard(
            [item.nodeid for item in items],
            [group_of(item) for item in items],
            self.timings,
            self.shard,
            self.strategy,
            self.run_id,
        )
        self.selected = selected
        mine = set(selected.positions)
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
        if self.empty and self.selected is not None:
            terminalreporter.write_line(nothing_to_run(self.selected), yellow=True)
