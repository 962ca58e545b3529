"""The dispatcher with a fake pool: crash attribution, the restart budget, retries,
stopping, the accounting invariant and the handshake, one event at a time.

The acceptance and fault suites check the same behaviours with real processes; here
each step is visible: which messages went to which worker and which events came out.
"""

from __future__ import annotations

import pytest
from fake_pool import Sim

from parallel_exec.errors import VersionMismatchError, WorkerStartError
from parallel_exec.reporting import events
from parallel_exec.wire import protocol

TESTS = tuple(f"test_{f}.py::test_{i}" for f in "ab" for i in range(4))


def test_a_run_publishes_every_test_once_with_its_start_first(pytester: pytest.Pytester) -> None:
    sim = Sim(pytester, TESTS)
    sim.dispatcher.start()
    assert sorted(sim.pool.workers) == ["gw0", "gw1"]
    sim.start("gw0", "gw1")
    kinds = [type(e) for e in sim.recorder.events]
    assert kinds.count(events.WorkerReady) == 2
    planned = sim.recorder.of(events.RunPlanned)
    assert len(planned) == 1
    assert planned[0].tests == len(TESTS)
    assert planned[0].workers == 2
    assert kinds.index(events.CollectionFinished) < kinds.index(events.RunPlanned)
    while sim.pool.alive():
        for worker in list(sim.pool.workers):
            pending = [n for n in sim.pool.assigned(worker) if n not in sim.recorder.finished()]
            if pending:
                sim.passed(worker, *pending)
            elif sim.pool.messages(worker, protocol.Drain):
                sim.session_finished(worker)
    sim.finish_run()
    assert set(sim.recorder.finished()) == set(TESTS)
    order = [(type(e), getattr(e, "nodeid", None)) for e in sim.recorder.events]
    for nodeid in TESTS:
        assert order.index((events.TestStarted, nodeid)) < order.index(
            (events.TestFinished, nodeid)
        )
    finished = sim.recorder.of(events.WorkerFinished)
    assert {f.worker_id for f in finished} == {"gw0", "gw1"}
    assert all(f.workeroutput == {"cov": 1} for f in finished)
    assert sim.recorder.of(events.RunFinished)[0].tests_not_run == 0
    sim.dispatcher.status.end(sim.config, sim.session)  # ran to its end: nothing raised


def test_a_crash_is_the_running_test_s_failure_and_its_other_tests_move(
    pytester: pytest.Pytester,
) -> None:
    sim = Sim(pytester, TESTS)
    sim.dispatcher.start()
    sim.start("gw0", "gw1")
    held = sim.pool.assigned("gw0")
    assert len(held) >= 2
    sim.crash("gw0", running=held[0], stderr="Fatal Python error: Segmentation fault\n")
    crashed = sim.recorder.finished()[held[0]]
    assert crashed.origin == "crash"
    assert crashed.outcome == "failed"
    text = str(crashed.reports[0].longrepr)
    assert text == f"worker gw0 crashed while running {held[0]} (killed by signal SIGSEGV)"
    assert ("Captured stderr (worker)", "Fatal Python error: Segmentation fault\n") in (
        crashed.reports[0].sections
    )
    (event,) = sim.recorder.of(events.WorkerCrashed)
    assert event.nodeid == held[0]
    assert not event.in_teardown
    # The others it held were never reported: they are handed on, not lost.
    for nodeid in held[1:]:
        assert nodeid not in sim.recorder.finished()
    for _ in range(len(TESTS)):  # gw1 runs what it is given and asks for more
        pending = [n for n in sim.pool.assigned("gw1") if n not in sim.recorder.finished()]
        if pending:
            sim.passed("gw1", *pending)
    assert set(held[1:]) <= set(sim.pool.assigned("gw1"))
    assert set(sim.recorder.finished()) == set(TESTS)


def test_an_end_in_the_last_teardown_is_a_teardown_error_of_the_last_test(
    pytester: pytest.Pytester,
) -> None:
    sim = Sim(pytester, TESTS[:1], workers=1)
    sim.dispatcher.start()
    sim.start("gw0")
    (nodeid,) = sim.pool.assigned("gw0")
    sim.progress("gw0", sim.record(nodeid, partial=True))
    sim.crash("gw0", running=nodeid)
    result = sim.recorder.finished()[nodeid]
    assert [(r.when, r.outcome) for r in result.reports] == [
        ("setup", "passed"),
        ("call", "passed"),
        ("teardown", "failed"),
    ]
    assert "ended during the teardown after" in str(result.reports[-1].longrepr)
    assert sim.recorder.of(events.WorkerCrashed)[0].in_teardown


def test_the_restart_budget_bounds_replacements_then_the_rest_is_not_run(
    pytester: pytest.Pytester,
) -> None:
    sim = Sim(pytester, TESTS, workers=1, max_worker_restart=1)
    sim.dispatcher.start()
    sim.start("gw0")
    first = sim.pool.assigned("gw0")[0]
    sim.crash("gw0", running=first)
    assert sorted(sim.pool.workers) == ["gw0", "gw1"], "one replacement, within the budget"
    assert sim.recorder.of(events.WorkerStarted) == [events.WorkerStarted("gw0", 100, None)]
    sim.hello("gw1")
    assert sim.recorder.of(events.WorkerStarted)[-1].replaces == "gw0"
    sim.collected("gw1")
    second = sim.pool.assigned("gw1")[0]
    sim.crash("gw1", running=second)
    assert sorted(sim.pool.workers) == ["gw0", "gw1"], "the budget is spent"
    results = sim.recorder.finished()
    assert set(results) == set(TESTS)
    not_run = [r for r in results.values() if r.origin == "not-run"]
    assert len(not_run) == len(TESTS) - 2
    assert str(not_run[0].reports[0].longrepr) == (
        "not run: workers crashed and --max-worker-restart (1) is exhausted"
    )


def test_a_collector_that_dies_is_replaced_once_for_its_share(pytester: pytest.Pytester) -> None:
    sim = Sim(pytester, TESTS, workers=2, collection="split")
    sim.dispatcher.start()
    assert sim.pool.setups["gw1"].share == (1, 2)
    sim.crash("gw1", running=None)
    assert sim.pool.setups["gw2"].share == (1, 2), "the same share, once more"
    sim.crash("gw2", running=None)
    assert "gw3" not in sim.pool.workers
    assert isinstance(sim.dispatcher.status.fatal, WorkerStartError)
    assert "so did the 1 worker(s) started before it" in str(sim.dispatcher.status.fatal)
    assert sim.pool.stopped("gw0")
    sim.finish_run()
    with pytest.raises(sim.session.Interrupted, match="gw2 ended before it finished collecting"):
        sim.dispatcher.status.end(sim.config, sim.session)


def test_a_failed_attempt_is_retried_and_published_once_with_its_history(
    pytester: pytest.Pytester,
) -> None:
    sim = Sim(pytester, TESTS[:2], workers=2, retries=1)
    sim.dispatcher.start()
    sim.start("gw0", "gw1")
    (flaky,) = sim.pool.assigned("gw0")
    sim.progress("gw0", sim.record(flaky, call="failed"), want_more=True)
    assert flaky not in sim.recorder.finished(), "a failure with retries left is not final"
    assert sim.pool.assigned("gw1") == [TESTS[1], flaky], "it runs again on another worker"
    worker = "gw1"
    sim.progress(worker, sim.record(flaky))
    result = sim.recorder.finished()[flaky]
    assert result.outcome == "passed"
    assert result.flaky
    assert [a.outcome for a in result.attempts] == ["failed"]
    starts = [e for e in sim.recorder.of(events.TestStarted) if e.nodeid == flaky]
    assert len(starts) == 2, "one TestStarted per attempt"


def test_a_stopped_run_stops_every_worker_and_counts_the_rest_as_not_run(
    pytester: pytest.Pytester,
) -> None:
    sim = Sim(pytester, TESTS)
    sim.dispatcher.start()
    sim.start("gw0", "gw1")
    first = sim.pool.assigned("gw0")[0]
    sim.session.shouldfail = "stopping after 1 failures"  # as the replayed report sets it
    sim.progress("gw0", sim.record(first, call="failed"))
    assert sim.pool.stopped("gw0")
    assert sim.pool.stopped("gw1")
    assert sim.dispatcher.status.stop_reason == "stopping after 1 failures"
    for worker in ("gw0", "gw1"):
        sim.session_finished(worker)
    sim.finish_run()
    assert list(sim.recorder.finished()) == [first], "nothing made up for the tests not run"
    assert sim.dispatcher.not_run == len(TESTS) - 1
    with pytest.raises(sim.session.Failed):
        sim.dispatcher.status.end(sim.config, sim.session)


def test_a_worker_s_exit_ends_the_run_with_its_reason(pytester: pytest.Pytester) -> None:
    sim = Sim(pytester, TESTS)
    sim.dispatcher.start()
    sim.start("gw0", "gw1")
    sim.message("gw1", protocol.Exited("gw1", "enough", 3))
    assert sim.pool.stopped("gw0")
    assert sim.pool.stopped("gw1")
    sim.finish_run()
    with pytest.raises(pytest.exit.Exception, match="enough"):
        sim.dispatcher.status.end(sim.config, sim.session)


def test_an_internal_error_is_an_event_and_stops_the_run(pytester: pytest.Pytester) -> None:
    sim = Sim(pytester, TESTS)
    sim.dispatcher.start()
    sim.start("gw0", "gw1")
    for worker in ("gw0", "gw1"):
        sim.message(worker, protocol.WorkerError(worker, "Traceback: boom", "internal"))
    first, second = sim.recorder.of(events.InternalError)
    assert (first.worker_id, first.same_as) == ("gw0", None)
    assert (second.worker_id, second.same_as) == ("gw1", "gw0")
    assert sim.dispatcher.status.stop_reason == "internal error in gw0"
    assert sim.pool.stopped("gw1")


def test_a_test_a_finished_session_never_reported_is_lost(pytester: pytest.Pytester) -> None:
    sim = Sim(pytester, TESTS[:4], workers=1)
    sim.pool.stderr["gw0"] = "worker stderr\n"
    sim.dispatcher.start()
    sim.start("gw0")
    held = sim.pool.assigned("gw0")
    sim.passed("gw0", held[0], want_more=False)
    sim.session_finished("gw0")
    lost = sim.recorder.finished()[held[1]]
    assert lost.origin == "lost"
    assert lost.outcome == "error"
    assert str(lost.reports[0].longrepr) == (
        "lost: worker gw0 ended its session (exit status 0) without reporting this test"
    )
    sim.finish_run()
    assert set(sim.recorder.finished()) == set(TESTS[:4])
    lost_count = [r.origin for r in sim.recorder.finished().values()].count("lost")
    assert lost_count == len(TESTS[:4]) - 1


def test_a_worker_of_another_version_is_refused_naming_both_sides(
    pytester: pytest.Pytester,
) -> None:
    sim = Sim(pytester, TESTS)
    sim.dispatcher.start()
    sim.hello("gw0", package_version="0.0.1", protocol_version=99)
    assert sim.pool.killed == ["gw0"]
    fatal = sim.dispatcher.status.fatal
    assert isinstance(fatal, VersionMismatchError)
    assert f"protocol version: controller {protocol.PROTOCOL_VERSION}, worker 99" in str(fatal)
    assert "parallel_exec version: controller " in str(fatal)
    assert "worker 0.0.1" in str(fatal)
    assert sim.recorder.of(events.WorkerStarted) == []
