"""The controller's units on plain data: launcher and restart budget, collection gate,
retry book, crash attribution and the run's phase."""

from __future__ import annotations

import types
from typing import Any

import pytest
from test_canonical_merge import collected

from parallel_exec.controller.crashes import CrashAttribution, describe_exit, not_run_reports
from parallel_exec.controller.gate import Adopted, Agreed, CollectionGate, Waiting
from parallel_exec.controller.launcher import (
    EAGER_NICE,
    MAX_EXTRA_WORKERS,
    Launcher,
    RestartBudget,
)
from parallel_exec.controller.phase import Phase, RunStatus
from parallel_exec.controller.retries import RetryBook
from parallel_exec.controller.transports import CrashEvidence, SpawnTransport
from parallel_exec.errors import CollectionMismatchError
from parallel_exec.wire import protocol


class Starter:
    """The part of a pool the launcher drives."""

    def __init__(self) -> None:
        self.serial = 0
        self.started: list[tuple[str, int]] = []

    def next_worker_id(self) -> str:
        self.serial += 1
        return f"gw{self.serial - 1}"

    def start(self, worker_ids: list[str], nice: int = 0) -> None:
        self.started.extend((w, nice) for w in worker_ids)


def launcher(**overrides: Any) -> tuple[Launcher, Starter]:
    starter = Starter()
    options: dict[str, Any] = dict(
        planned=8, cpus=2, known_tests=0, split=True, forked=False, budget=RestartBudget(2)
    )
    options.update(overrides)
    return Launcher(starter, **options), starter


# ---------------------------------------------------------------- launcher


def test_without_history_only_the_collectors_start() -> None:
    unit, starter = launcher()
    unit.start_first()
    assert starter.started == [("gw0", 0), ("gw1", 0)]
    assert [unit.share_of[w] for w, _ in starter.started] == [(0, 2), (1, 2)]


def test_with_history_the_later_workers_start_at_once_niced_unless_forked() -> None:
    unit, starter = launcher(known_tests=100)
    unit.start_first()
    assert [nice for _, nice in starter.started] == [0, 0] + [EAGER_NICE] * 6
    assert unit.share_of["gw2"] is None
    forked, starter = launcher(known_tests=100, forked=True)
    forked.start_first()
    assert len(starter.started) == 2


def test_later_workers_start_in_turn_one_per_cpu_and_only_while_work_is_left() -> None:
    unit, starter = launcher(cpus=1, planned=4)
    unit.start_first()
    work = [True]
    unit.start_in_turn(3, lambda: work[0])
    assert [w for w, _ in starter.started] == ["gw0", "gw1"], "one starting at a time"
    unit.settled("gw1", lambda: work[0])
    assert [w for w, _ in starter.started][-1] == "gw2"
    work[0] = False
    unit.settled("gw2", lambda: work[0])
    assert len(starter.started) == 3, "nothing left to do: the last one never starts"


def test_a_share_is_collected_by_at_most_two_workers() -> None:
    unit, starter = launcher(budget=RestartBudget(10))
    unit.start_first()
    assert unit.replace_collector("gw1") is None
    assert starter.started[-1][0] == "gw2"
    assert unit.share_of["gw2"] == (1, 2)
    assert unit.replaces["gw2"] == "gw1"
    assert (
        unit.replace_collector("gw2") == "so did the 1 worker(s) started before it for that share"
    )


def test_the_restart_budget_bounds_replacements() -> None:
    budget = RestartBudget(1)
    unit, starter = launcher(budget=budget)
    unit.start_first()
    assert unit.replace("gw0")
    assert budget.exhausted
    assert not unit.replace("gw1")
    assert unit.replace_collector("gw1") == "--max-worker-restart (1) is exhausted"
    assert len(starter.started) == 3


def test_workers_for_retries_do_not_spend_the_restart_budget() -> None:
    budget = RestartBudget(0)
    unit, starter = launcher(budget=budget)
    for _ in range(MAX_EXTRA_WORKERS):
        assert unit.replace(None)
    assert not unit.replace(None), "bounded: no start/finish loop"
    assert budget.used == 0
    assert len(starter.started) == MAX_EXTRA_WORKERS


# ---------------------------------------------------------------- collection gate

A1, A2, B1 = "test_a.py::t1", "test_a.py::t2", "test_b.py::t1"
FILES = ("test_a.py", "test_b.py")


def test_the_gate_waits_for_every_share_then_adopts_the_merge() -> None:
    gate = CollectionGate(first_wave=2, split=True)
    first = collected("gw1", (1, 2), [(B1, 1)], files=FILES)
    assert gate.collected(first) == Waiting()
    verdict = gate.collected(collected("gw0", (0, 2), [(A1, 0), (A2, 0)], files=FILES))
    assert isinstance(verdict, Adopted)
    assert verdict.canonical.nodeids == (A1, A2, B1)
    assert verdict.joining == ("gw1", "gw0")
    assert gate.first_worker() == "gw0"
    assert gate.has_collected("gw1")


def test_a_later_collection_must_agree() -> None:
    gate = CollectionGate(first_wave=1, split=False)
    everything = [(A1, 0), (A2, 0), (B1, 1)]
    gate.collected(collected("gw0", (0, 1), everything, files=FILES))
    assert gate.collected(collected("gw1", (0, 1), everything, files=FILES)) == Agreed("gw1")
    with pytest.raises(CollectionMismatchError):
        gate.collected(collected("gw2", (0, 1), everything[:2], files=FILES))


def test_a_worker_that_ends_no_longer_waits() -> None:
    gate = CollectionGate(first_wave=2, split=True)
    gate.collected(collected("gw2", None, [], files=FILES))  # started early, no share
    gate.forget("gw2")
    gate.collected(collected("gw0", (0, 2), [(A1, 0)], files=FILES))
    verdict = gate.collected(collected("gw1", (1, 2), [(B1, 1)], files=FILES))
    assert isinstance(verdict, Adopted)
    assert verdict.joining == ("gw0", "gw1")


# ---------------------------------------------------------------- retry book


def report(outcome: str, when: str = "call") -> pytest.TestReport:
    return pytest.TestReport("t.py::t", ("t.py", 0, "t"), {}, outcome, None, when)  # type: ignore[arg-type]


def test_failed_attempts_are_kept_until_the_retries_are_spent() -> None:
    book = RetryBook(retries=2)
    assert not book.retry(0, "gw0", [report("passed")]), "a pass is final"
    assert book.retry(0, "gw0", [report("failed")])
    assert book.retry(0, "gw1", [report("passed"), report("failed", "teardown")])
    assert not book.retry(0, "gw0", [report("failed")]), "no retries left"
    assert [a.worker_id for a in book.earlier(0)] == ["gw0", "gw1"]
    assert book.earlier(0) == (), "handed over once"


# ---------------------------------------------------------------- crash attribution


def evidence(**overrides: Any) -> CrashEvidence:
    fields: dict[str, Any] = dict(
        exit_code=-9, note="", running=3, stderr_since_test="last words\n", stderr=""
    )
    fields.update(overrides)
    return CrashEvidence(**fields)


def test_a_crash_fails_the_call_and_closes_the_test() -> None:
    unit = CrashAttribution()
    result = unit.attribute("gw1", 3, "t.py::t", evidence(), "", dict)
    assert [(r.when, r.outcome) for r in result.reports] == [
        ("call", "failed"),
        ("teardown", "passed"),
    ]
    assert result.reports[0].longrepr == (
        "worker gw1 crashed while running t.py::t (killed by signal SIGKILL)"
    )
    assert result.reports[0].sections == [("Captured stderr (worker)", "last words\n")]
    assert not result.in_teardown


def test_an_end_after_the_partial_record_is_a_teardown_error() -> None:
    unit = CrashAttribution()
    partial = protocol.TestRecord(
        "t.py::t", ("t.py", 4, "t"), ({"when": "setup"}, {"when": "call"}), partial=True
    )
    unit.partial(3, partial)
    assert unit.in_teardown(3)
    result = unit.attribute("gw1", 3, "t.py::t", evidence(exit_code=1), "", dict)
    assert [r["when"] if isinstance(r, dict) else r.when for r in result.reports] == [
        "setup",
        "call",
        "teardown",
    ]
    assert result.location == ("t.py", 4, "t")
    assert "ended during the teardown after t.py::t, its last test (exit code 1)" in str(
        result.reports[-1].longrepr
    )
    assert result.in_teardown


class _Orphan:
    """A forked worker whose fork server ended: nobody can tell its exit status."""

    ended_unseen = True

    def poll(self) -> None:
        return None

    def wait(self, timeout: float | None = None) -> None:
        raise TimeoutError

    def kill(self) -> None:
        pass


def test_the_detail_says_when_the_exit_status_is_lost(tmp_path: Any) -> None:
    worker = types.SimpleNamespace(
        worker_id="gw0", files_base=str(tmp_path / "gw0"), gateway=None, process=_Orphan(), pid=None
    )
    found = SpawnTransport().evidence(worker, wait=0.0)
    assert (found.exit_code, found.running) == (None, -1)
    detail = CrashAttribution().detail("gw0", found, "StartFailed: x")
    assert detail.splitlines() == [
        "StartFailed: x",
        "its exit status is unknown: the fork server that started it had ended",
    ]
    assert describe_exit(None) == "exit code unknown"
    assert describe_exit(-200) == "killed by signal 200"


def test_a_test_not_run_is_an_error_of_its_setup() -> None:
    setup, teardown = not_run_reports("t.py::C::t", "not run: why", "stderr")
    assert (setup.when, setup.outcome, setup.longrepr) == ("setup", "failed", "not run: why")
    assert setup.location == ("t.py", None, "C.t")
    assert (teardown.when, teardown.outcome) == ("teardown", "passed")


# ---------------------------------------------------------------- run phase


def test_the_phase_moves_forward_and_the_first_stop_wins() -> None:
    status = RunStatus()
    assert not status.takes_work
    status.adopted()
    assert status.phase is Phase.RUNNING
    assert status.takes_work
    assert status.stop("stopping after 1 failures")
    assert not status.stop("interrupted")
    assert status.phase is Phase.STOPPING
    assert status.stop_reason == "stopping after 1 failures"
    assert not status.takes_work
    status.finished()
    assert status.phase is Phase.FINISHED
    assert status.stopped


def test_a_fatal_error_stops_the_run_once() -> None:
    status = RunStatus()
    first, second = CollectionMismatchError("first"), CollectionMismatchError("second")
    assert status.fail(first)
    assert not status.fail(second)
    assert status.fatal is first
    assert status.execution_failed
    assert status.phase is Phase.STOPPING
