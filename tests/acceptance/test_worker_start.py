"""Workers started after collection start in turn, at most one per usable CPU at a time.

A worker's start-up is CPU-bound; started all at once on too few CPUs they would all be
ready only when the last one is.  The run is confined to one CPU here (affinity), so the
later workers must start strictly one after another: each is configured only after the
previous one has reported its collection.

Later workers start only while tests are left to hand out, so the tests here hold their
worker until all five are ready (or a minute has passed): however slowly the workers
start on a loaded machine, every one of them is needed.
"""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

READY_CONFTEST = """
    import time


    def pytest_configure(config):
        if hasattr(config, "workerinput"):
            config.stash_started = time.time()


    def pytest_collection_finish(session):
        config = session.config
        if hasattr(config, "workerinput"):
            with open(f"ready-{config.workerinput['workerid']}.txt", "w") as fh:
                fh.write(f"{config.stash_started!r} {time.time()!r}")
"""

WORKERS = 5

WAITING_SUITE = f"""
    import pathlib
    import time

    import pytest

    #: Past this, a test no longer waits: a worker that never starts fails the run's
    #: check below instead of hanging it.
    DEADLINE = time.monotonic() + 60


    @pytest.mark.parametrize("n", range(80))
    def test_waits_for_every_worker(n):
        while len(list(pathlib.Path.cwd().glob("ready-*.txt"))) < {WORKERS}:
            if time.monotonic() > DEADLINE:
                return
            time.sleep(0.05)
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_later_workers_start_one_at_a_time_on_one_cpu(runner: PluginRunner, start: str) -> None:
    runner.pytester.makeconftest(READY_CONFTEST)
    runner.pytester.makepyfile(test_waiting=WAITING_SUITE)
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(saved)})  # inherited by the run: one usable CPU
    try:
        result = runner.run("--start-method", start, workers=WORKERS)
    finally:
        os.sched_setaffinity(0, saved)
    assert result.ret == 0, runner.output(result)
    result.assert_outcomes(passed=80)

    spans = {}
    for record in runner.pytester.path.glob("ready-*.txt"):
        started, ready = map(float, record.read_text().split())
        spans[record.stem.removeprefix("ready-")] = (started, ready)
    assert set(spans) == {f"gw{i}" for i in range(WORKERS)}, spans
    later = sorted(span for worker, span in spans.items() if worker != "gw0")
    for (_, ready), (next_started, _) in itertools.pairwise(later):
        assert next_started >= ready, later
