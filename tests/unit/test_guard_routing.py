"""The guards' plumbing on plain data and a fake pool: a retiring worker's tests move
and a new worker takes its place; leaks become events; the memory ceiling ends a test;
the pieces of a timed-out worker's stderr; pytest-timeout's end of a worker."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time

import pytest
from fake_pool import Sim

from parallel_exec import processes
from parallel_exec.controller.crashes import ended_by_pytest_timeout, split_captured
from parallel_exec.reporting import events
from parallel_exec.settings import Limits
from parallel_exec.wire import protocol
from parallel_exec.worker.limits import Retirement

TESTS = tuple(f"test_{f}.py::test_{i}" for f in "ab" for i in range(4))


def test_a_retiring_worker_hands_its_tests_on_and_is_replaced(pytester: pytest.Pytester) -> None:
    sim = Sim(pytester, TESTS)
    sim.dispatcher.start()
    sim.start("gw0", "gw1")
    held = sim.pool.assigned("gw0")
    assert len(held) >= 2
    record = sim.record(held[0])
    sim.message("gw0", protocol.Progress(worker_id="gw0", tests=(record,), retiring="ran 1 tests"))
    (recycled,) = sim.recorder.of(events.WorkerRecycled)
    assert recycled == events.WorkerRecycled("gw0", "ran 1 tests")
    assert held[0] in sim.recorder.finished()
    assert sim.dispatcher.scheduler is not None
    assert sim.dispatcher.scheduler.pending("gw0") == ()
    assert "gw2" in sim.pool.workers, "a new worker takes its place"
    assert sim.pool.setups["gw2"] is not None
    sim.session_finished("gw0")  # it ends its session normally: nothing is lost
    sim.start("gw2")
    for _ in range(3 * len(TESTS)):
        for worker in ("gw1", "gw2"):
            pending = [n for n in sim.pool.assigned(worker) if n not in sim.recorder.finished()]
            if pending:
                sim.passed(worker, *pending)
    assert set(sim.recorder.finished()) == set(TESTS)
    assert not sim.recorder.of(events.WorkerCrashed)


def test_leaked_processes_are_events_after_their_test(pytester: pytest.Pytester) -> None:
    sim = Sim(pytester, TESTS)
    sim.dispatcher.start()
    sim.start("gw0", "gw1")
    nodeid = sim.pool.assigned("gw0")[0]
    record = dataclasses.replace(sim.record(nodeid), leaked=((4711, "sleep 300"),))
    sim.progress("gw0", record)
    (leak,) = sim.recorder.of(events.ProcessLeaked)
    assert leak == events.ProcessLeaked("gw0", nodeid, 4711, "sleep 300")
    order = [type(e) for e in sim.recorder.events]
    assert order.index(events.TestFinished) < order.index(events.ProcessLeaked)


def test_memory_over_the_ceiling_kills_the_worker_and_fails_its_test(
    pytester: pytest.Pytester,
) -> None:
    sim = Sim(pytester, TESTS)
    sim.dispatcher.run = dataclasses.replace(
        sim.dispatcher.run, limits=Limits(max_worker_memory=300 * 2**20)
    )
    sim.dispatcher.guard.memory = 300 * 2**20
    sim.dispatcher.start()
    sim.start("gw0", "gw1")
    running = sim.pool.assigned("gw0")[0]
    index = sim.nodeids.index(running)
    sim.pool.running["gw0"] = (index, 1.0)
    sim.pool.rss["gw0"] = 400 * 2**20
    sim.dispatcher._guard(now=100.0)
    assert sim.pool.killed == ["gw0"]
    (limit,) = sim.recorder.of(events.TestLimitReached)
    assert limit.kind == "memory"
    assert limit.nodeid == running
    sim.crash("gw0", running=running)
    result = sim.recorder.finished()[running]
    assert result.outcome == "failed"
    assert str(result.reports[0].longrepr).startswith(
        "MemoryError: worker exceeded 300.0 MiB (peak 400.0 MiB)"
    )
    (crashed,) = sim.recorder.of(events.WorkerCrashed)
    assert crashed.ended_by == "memory"
    assert "reached --max-worker-memory" in crashed.description


def test_a_timed_out_worker_s_stderr_splits_into_stacks_and_captured_output() -> None:
    out = protocol.CAPTURED_SO_FAR.format(stream="stdout")
    err = protocol.CAPTURED_SO_FAR.format(stream="stderr")
    text = f"Thread 0x1 (most recent call first):\n  File x\n\n{out}\nhello\n\n{err}\noops\n"
    stacks, sections = split_captured(text)
    assert stacks == "Thread 0x1 (most recent call first):\n  File x"
    assert sections == [("Captured stdout call", "hello\n"), ("Captured stderr call", "oops\n")]
    assert split_captured("only stacks\n") == ("only stacks", [])


def test_pytest_timeout_s_end_of_a_worker_is_read_from_its_stderr() -> None:
    line = protocol.ENDED_BY_PYTEST_TIMEOUT.format(seconds=2.0)
    found = ended_by_pytest_timeout(f"before\n{line}\n+++ Timeout +++\nstacks\n")
    assert found == (
        "Failed: Timeout (>2.0s) from pytest-timeout.",
        "+++ Timeout +++\nstacks",
        "before\n",
    )
    assert ended_by_pytest_timeout("Fatal Python error: Segmentation fault\n") is None


def test_retirement_after_n_tests() -> None:
    retirement = Retirement(max_tests=3, memory_limit=0)
    assert [retirement.after_test() for _ in range(2)] == [None, None]
    assert retirement.after_test() == "ran 3 tests (--max-worker-tests)"


def test_retirement_before_memory_would_reach_the_limit() -> None:
    here = processes.rss([os.getpid()])
    assert here > 0
    # Far above what this process uses: it goes on.
    assert Retirement(0, here * 100).after_test() is None
    # Within 10 % of the limit: it retires between tests, nobody failed.
    reason = Retirement(0, int(here * 1.05)).after_test()
    assert reason is not None
    assert "near --max-worker-memory" in reason


@pytest.mark.skipif(not processes.LINUX, reason="reads /proc")
def test_processes_owned_by_a_process_and_the_pid_watermark() -> None:
    watermark = processes.PidWatermark()
    assert not watermark.moved()
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert watermark.moved()
        owned = processes.owned_by(os.getpid(), processes.snapshot())
        assert child.pid in {info.pid for info in owned}
        # Popen returns once exec has begun; the kernel sets the new command
        # line a moment later, and until then the process shows its name.
        deadline = time.monotonic() + 10
        while (shown := processes.command(child.pid)) != "sleep 30":
            assert shown.startswith("["), shown
            assert time.monotonic() < deadline, shown
            time.sleep(0.01)
        assert processes.rss([child.pid]) > 0
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    owned = processes.owned_by(os.getpid(), processes.snapshot())
    assert child.pid not in {info.pid for info in owned}
    watermark.close()


@pytest.mark.skipif(not processes.LINUX, reason="reads /proc")
def test_a_process_without_arguments_shows_its_name() -> None:
    child = subprocess.Popen(["sleep", "30"])
    deadline = time.monotonic() + 10
    while processes.command(child.pid) != "sleep 30":
        assert time.monotonic() < deadline, processes.command(child.pid)
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    # A zombie keeps its name but has no command line any more.
    while processes.command(child.pid) != "[sleep]":
        assert time.monotonic() < deadline, processes.command(child.pid)
        time.sleep(0.01)
    child.wait()
    assert processes.command(child.pid) == "?"


def test_sizes_are_written_for_people() -> None:
    assert processes.format_size(2 * 2**30) == "2.0 GiB"
    assert processes.format_size(300 * 10**6) == "286.1 MiB"
    assert processes.format_size(512) == "512 B"
