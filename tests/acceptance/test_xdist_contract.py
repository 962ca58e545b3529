"""pytest-xdist's plugin contract, seen by a plugin written for xdist (a conftest here):
its hooks are called when xdist calls them, with nodes that look like xdist's; plugins
find ``xdist``; the options say whether the run is distributed; reports carry their node.
"""

from __future__ import annotations

import json
import textwrap
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

CONFTEST = """
    import json
    import os
    import pathlib

    import pytest

    LOG = pathlib.Path(__file__).parent / "hooks.jsonl"


    def log(**entry):
        with LOG.open("a") as fh:
            fh.write(json.dumps(entry) + "\\n")


    def pytest_configure(config):
        side = "worker" if hasattr(config, "workerinput") else "controller"
        log(
            hook="configure",
            side=side,
            xdist=config.pluginmanager.hasplugin("xdist"),
            dist=config.option.dist,
            numprocesses=config.option.numprocesses,
            token=getattr(config, "workerinput", {}).get("token"),
        )


    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(node):
        node.workerinput["token"] = "from-" + node.gateway.id
        log(hook="configure_node", id=node.gateway.id, spec_popen=bool(node.gateway.spec.popen),
            count=node.workerinput["workercount"], roots=node.nodemanager.roots,
            down=node.shutting_down)


    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodeready(node):
        info = node.gateway._rinfo()
        log(hook="ready", id=node.gateway.id, platform=info.platform,
            version=list(info.version_info)[:2], executable=info.executable)


    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(node, ids):
        log(hook="collection_finished", id=node.gateway.id, ids=len(ids))


    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(node, error):
        output = getattr(node, "workeroutput", None)
        log(hook="down", id=node.gateway.id, error=error,
            output=None if output is None else output.get("sent"), down=node.shutting_down)


    def pytest_sessionfinish(session):
        if hasattr(session.config, "workeroutput"):
            session.config.workeroutput["sent"] = session.config.workerinput["token"]


    def pytest_runtest_logreport(report):
        if report.when == "call" and not hasattr(report, "workeroutput_probe"):
            node = getattr(report, "node", None)
            if node is not None or not hasattr(pytest, "_never"):
                log(hook="logreport", nodeid=report.nodeid,
                    node=None if node is None else node.gateway.id)
"""

TESTS = """
    import pytest

    @pytest.mark.parametrize("n", range(4))
    def test_n(n):
        pass
"""


def calls(runner: PluginRunner) -> list[dict[str, Any]]:
    path = runner.pytester.path / "hooks.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    path.unlink()
    return entries


@pytest.fixture
def contract_suite(runner: PluginRunner) -> PluginRunner:
    runner.pytester.makeconftest(textwrap.dedent(CONFTEST))
    runner.pytester.makepyfile(test_a=textwrap.dedent(TESTS), test_b=textwrap.dedent(TESTS))
    return runner


def test_hooks_nodes_and_reports_in_a_parallel_run(contract_suite: PluginRunner) -> None:
    result = contract_suite.run(workers=2)
    assert result.ret == 0, result.stdout.str()
    log = calls(contract_suite)
    by_hook: dict[str, list[dict[str, Any]]] = {}
    for entry in log:
        by_hook.setdefault(entry["hook"], []).append(entry)

    controller = [e for e in by_hook["configure"] if e["side"] == "controller"]
    workers = [e for e in by_hook["configure"] if e["side"] == "worker"]
    assert controller == [
        {
            "hook": "configure",
            "side": "controller",
            "xdist": True,
            "dist": "auto",
            "numprocesses": 2,
            "token": None,
        }
    ]
    # Each worker got what pytest_configure_node put in its workerinput; a worker sees
    # xdist's worker values ("no" distribution of its own).
    assert sorted(e["token"] for e in workers) == ["from-gw0", "from-gw1"]
    assert {(e["xdist"], e["dist"], e["numprocesses"]) for e in workers} == {(True, "no", None)}

    ids = ["gw0", "gw1"]
    assert sorted(e["id"] for e in by_hook["configure_node"]) == ids
    assert {(e["spec_popen"], e["count"], e["down"]) for e in by_hook["configure_node"]} == {
        (True, 2, False)
    }
    assert sorted(e["id"] for e in by_hook["ready"]) == ids
    assert all(e["platform"] and e["executable"] for e in by_hook["ready"])
    assert sorted((e["id"], e["ids"]) for e in by_hook["collection_finished"]) == [
        ("gw0", 8),
        ("gw1", 8),
    ]
    assert sorted((e["id"], e["error"], e["output"], e["down"]) for e in by_hook["down"]) == [
        ("gw0", None, "from-gw0", True),
        ("gw1", None, "from-gw1", True),
    ]
    order = [e["hook"] for e in log if e.get("id") == "gw0" and e["hook"] != "configure"]
    assert order == ["configure_node", "ready", "collection_finished", "down"]
    # Replayed reports carry the worker's node (pytest's -v shows it as xdist does).
    reports = [e for e in by_hook["logreport"] if e.get("node") is not None]
    assert len(reports) == 8
    assert {e["node"] for e in reports} <= set(ids)


@pytest.mark.parametrize(
    ("args", "expected"),
    [((), None), (("-n", "0"), 0)],
    ids=["no -n", "-n 0"],
)
def test_in_process_runs_look_undistributed(
    contract_suite: PluginRunner, args: tuple[str, ...], expected: int | None
) -> None:
    result = contract_suite.pytester.runpytest_subprocess("-p", "parallel_exec", *args)
    assert result.ret == 0
    log = calls(contract_suite)
    assert [e for e in log if e["hook"] == "configure"] == [
        {
            "hook": "configure",
            "side": "controller",
            "xdist": True,
            "dist": "no",
            "numprocesses": expected,
            "token": None,
        }
    ]
    assert not [e for e in log if e["hook"] in ("configure_node", "down")]


def test_stand_in_survives_no_xdist(contract_suite: PluginRunner) -> None:
    """``-p no:xdist`` (kept from an xdist configuration) does not hide xdist's hooks."""
    result = contract_suite.run("-p", "no:xdist", workers=2)
    assert result.ret == 0, result.stdout.str()
    log = calls(contract_suite)
    assert {e["xdist"] for e in log if e["hook"] == "configure"} == {True}
    assert len([e for e in log if e["hook"] == "down"]) == 2


def test_auto_workers_hook_and_variable(
    runner: PluginRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner.pytester.makepyfile(test_a=textwrap.dedent(TESTS))
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "3")
    result = runner.pytester.runpytest_subprocess("-p", "parallel_exec", "-n", "auto")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["parallel_exec: 3 workers (auto)*"])
    runner.pytester.makeconftest("def pytest_xdist_auto_num_workers(config):\n    return 2\n")
    result = runner.pytester.runpytest_subprocess("-p", "parallel_exec", "-n", "auto")
    result.stdout.fnmatch_lines(["parallel_exec: 2 workers (auto)*"])
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "many")
    (runner.pytester.path / "conftest.py").unlink()
    result = runner.pytester.runpytest_subprocess("-p", "parallel_exec", "-n", "auto")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid value for PYTEST_XDIST_AUTO_NUM_WORKERS*many*"])


def test_a_crashed_test_run_again_by_a_plugin(runner: PluginRunner) -> None:
    """``pytest_handlecrashitem``: the plugin marks the test pending and its report a
    rerun; the test runs again and passes; the rerun report comes first."""
    runner.pytester.makeconftest(
        textwrap.dedent(
            """
            import pytest

            @pytest.hookimpl(optionalhook=True)
            def pytest_handlecrashitem(crashitem, report, sched):
                sched.mark_test_pending(crashitem)
                report.outcome = "rerun"
            """
        )
    )
    runner.pytester.makepyfile(
        test_crash=textwrap.dedent(
            """
            import os
            import pathlib

            def test_crashes_once():
                marker = pathlib.Path(__file__).with_name("crashed")
                if not marker.exists():
                    marker.write_text("1")
                    os._exit(1)

            def test_fine():
                pass
            """
        )
    )
    result = runner.run(workers=2)
    assert result.ret == 0, result.stdout.str()
    outcomes = result.parseoutcomes()
    assert (outcomes.get("passed"), outcomes.get("rerun")) == (2, 1), result.stdout.str()


def test_worker_terminal_writes_during_a_test_are_kept(runner: PluginRunner) -> None:
    """What a plugin writes to the terminal while a test runs (pytest-timeout's banner)
    is where a serial run has it: in the test's captured output."""
    runner.pytester.makeconftest(
        textwrap.dedent(
            """
            import pytest

            @pytest.fixture
            def banner(request):
                request.config.get_terminal_writer().line("+++ banner from a plugin +++")
            """
        )
    )
    runner.pytester.makepyfile(test_w="def test_fails(banner):\n    assert False\n")
    for workers in (None, 2):
        result = runner.run(workers=workers)
        assert result.ret == 1
        result.stdout.fnmatch_lines(["*Captured stdout setup*", "+++ banner from a plugin +++"])
