"""Forked workers (``--start-method forkserver``) are processes of their own.

The fork server imports pytest once and forks the workers; what a forked worker sees
must be what a spawned one sees: the controller's environment as it is when the worker
starts (not as it was when the server started), its own ``atexit`` handlers run when it
ends, the worker variables already set when conftest files are imported.  Where the
server cannot run, workers are spawned and the run does not notice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

PARENTS_CONFTEST = """
    import os

    #: Read when a worker imports this file, during its configuration.
    WORKER_AT_IMPORT = os.environ.get("PYTEST_XDIST_WORKER")


    def pytest_configure(config):
        if not hasattr(config, "workerinput"):
            with open("controller.pid", "w") as fh:
                fh.write(str(os.getpid()))
"""

PARENTS_SUITE = """
    import os

    import pytest

    from conftest import WORKER_AT_IMPORT


    @pytest.mark.parametrize("n", range(12))
    def test_where(n, worker_id):
        assert WORKER_AT_IMPORT == worker_id
        with open(f"where-{n}.txt", "w") as fh:
            fh.write(f"{worker_id} {os.getpid()} {os.getppid()}")
"""


def run_recording_parents(
    runner: PluginRunner, start: str
) -> tuple[int, dict[str, set[int]], set[int]]:
    """Run the suite on 3 workers with ``start``: the controller's pid, by worker id the
    pids of the processes that ran its tests, and the parent pids of those processes."""
    runner.pytester.makeconftest(PARENTS_CONFTEST)
    runner.pytester.makepyfile(test_parents=PARENTS_SUITE)
    result = runner.run("--start-method", start, workers=3)
    assert result.ret == 0, runner.output(result)
    result.assert_outcomes(passed=12)
    path = runner.pytester.path
    controller = int((path / "controller.pid").read_text())
    pids: dict[str, set[int]] = {}
    parents: set[int] = set()
    for record in path.glob("where-*.txt"):
        worker, pid, parent = record.read_text().split()
        pids.setdefault(worker, set()).add(int(pid))
        parents.add(int(parent))
    return controller, pids, parents


@pytest.mark.slow
def test_forked_workers_are_children_of_one_server(runner: PluginRunner) -> None:
    controller, pids, parents = run_recording_parents(runner, "forkserver")
    assert len(pids) >= 2, pids  # tests ran on more than one worker
    assert all(len(p) == 1 for p in pids.values()), pids  # one process per worker
    assert len({pid for p in pids.values() for pid in p}) == len(pids)
    assert len(parents) == 1, parents
    assert controller not in parents, (controller, parents)


@pytest.mark.slow
def test_spawned_workers_are_children_of_the_controller(runner: PluginRunner) -> None:
    controller, _, parents = run_recording_parents(runner, "spawn")
    assert parents == {controller}


@pytest.mark.slow
def test_without_room_for_the_socket_workers_are_spawned(
    runner: PluginRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temporary directory too deep for a Unix socket path: the run goes on, spawned."""
    deep = runner.pytester.path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(deep))
    controller, _, parents = run_recording_parents(runner, "forkserver")
    assert parents == {controller}


LATE_ENVIRONMENT_CONFTEST = """
    import os


    def pytest_sessionstart(session):
        # In the controller, after the fork server has started (at configuration).
        if not hasattr(session.config, "workerinput"):
            os.environ["PE_TEST_LATE"] = "set by the controller"
            os.environ.pop("PE_TEST_GONE", None)
"""

LATE_ENVIRONMENT_SUITE = """
    import os

    import pytest


    @pytest.mark.parametrize("n", range(6))
    def test_environment(n):
        assert os.environ.get("PE_TEST_LATE") == "set by the controller"
        assert "PE_TEST_GONE" not in os.environ
"""


@pytest.mark.slow
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_workers_see_the_controllers_environment_as_it_is_when_they_start(
    runner: PluginRunner, monkeypatch: pytest.MonkeyPatch, start: str
) -> None:
    monkeypatch.setenv("PE_TEST_GONE", "removed by the controller")
    runner.pytester.makeconftest(LATE_ENVIRONMENT_CONFTEST)
    runner.pytester.makepyfile(test_environment=LATE_ENVIRONMENT_SUITE)
    result = runner.run("--start-method", start, workers=3)
    assert result.ret == 0, runner.output(result)
    result.assert_outcomes(passed=6)


ATEXIT_SUITE = """
    import atexit
    import os

    import pytest


    def leave_a_mark(path):
        with open(path, "w") as fh:
            fh.write("ran")


    @pytest.mark.parametrize("n", range(6))
    def test_registers_an_exit_handler(n, worker_id):
        atexit.register(leave_a_mark, os.path.abspath(f"atexit-{worker_id}-{n}.txt"))
        with open(f"registered-{worker_id}-{n}.txt", "w") as fh:
            fh.write(str(os.getpid()))
"""


@pytest.mark.slow
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_exit_handlers_registered_in_a_worker_run_when_it_ends(
    runner: PluginRunner, start: str
) -> None:
    runner.pytester.makepyfile(test_atexit=ATEXIT_SUITE)
    result = runner.run("--start-method", start, workers=3)
    assert result.ret == 0, runner.output(result)
    path = runner.pytester.path
    registered = sorted(p.name.removeprefix("registered-") for p in path.glob("registered-*"))
    ran = sorted(p.name.removeprefix("atexit-") for p in path.glob("atexit-*"))
    assert len(registered) == 6
    assert ran == registered


def test_start_method_is_in_the_help(runner: PluginRunner) -> None:
    result = runner.run("--help")
    assert "--start-method" in result.stdout.str()
    assert "forkserver" in result.stdout.str()
