"""``--shard I/N``: the shards of a matrix run disjoint parts of the suite whose union is
the suite, each with the outcomes of an unsharded run; on workers and in-process alike
(the same plan); a shard with nothing to run exits 0 and says why; bad values are
usage errors."""

from __future__ import annotations

import shutil
import textwrap
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

pytestmark = pytest.mark.slow

SUITE = {
    f"test_m{f}": textwrap.dedent(
        f"""
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_p(n):
            assert (n, {f}) != (4, 2)

        @pytest.mark.skip(reason="never")
        def test_skipped():
            pass

        @pytest.mark.xdist_group("shared")
        def test_grouped():
            pass
        """
    )
    for f in range(4)
}


def test_shards_partition_the_suite_with_the_unsharded_outcomes(runner: PluginRunner) -> None:
    """On workers; in-process shards are the same (next test)."""
    workers = 2
    runner.pytester.makepyfile(**SUITE)
    # Every shard plans from the same history: a shard's own results must not change
    # the next one's plan (in CI each job restores the same cache).
    cache = runner.pytester.path / ".pytest_cache"
    whole = runner.observe("-p", "no:randomly", workers=workers)
    shutil.rmtree(cache, ignore_errors=True)
    shards = []
    for run in range(3):
        shutil.rmtree(cache, ignore_errors=True)
        shards.append(
            runner.observe("--shard", f"{run + 1}/3", "-p", "no:randomly", workers=workers)
        )
    seen: dict[str, str] = {}
    for shard in shards:
        assert shard.outcomes, f"{shard.label}: an empty shard"
        for nodeid, outcome in shard.outcomes.items():
            assert nodeid not in seen, f"{nodeid} ran in two shards"
            seen[nodeid] = outcome
        deselected = shard.counts.get("deselected", 0)
        assert deselected == len(whole.outcomes) - len(shard.outcomes), shard.output
    assert seen == whole.outcomes
    grouped = [i for i, s in enumerate(shards) for n in s.outcomes if n.endswith("test_grouped")]
    assert len(set(grouped)) == 1, "a group runs on one shard"
    failing = [s for s in shards if "failed" in s.outcomes.values()]
    assert [s.exit_code for s in failing] == [1]
    assert [n for n, o in seen.items() if o == "failed"] == [
        n for n, o in whole.outcomes.items() if o == "failed"
    ]
    assert all(s.exit_code == 0 for s in shards if s not in failing)


def test_workers_and_in_process_plan_the_same_shards(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(**SUITE)
    cache = runner.pytester.path / ".pytest_cache"
    plans = []
    properties = set()
    for workers in (3, None):
        parts = []
        for shard in range(1, 4):
            shutil.rmtree(cache, ignore_errors=True)
            run = runner.observe("--shard", f"{shard}/3", "-p", "no:randomly", workers=workers)
            parts.append(sorted(run.outcomes))
            assert run.junit is not None
            found = dict(run.junit.suite_properties)
            assert found["parallel_exec.shard"] == f"{shard}/3"
            properties.add((found["parallel_exec.shard_run_id"], found["parallel_exec.shard_plan"]))
        plans.append(parts)
    assert plans[0] == plans[1]
    # One matrix, one plan: every shard's report says so, on workers and in-process.
    assert len(properties) == 1


def test_a_shard_with_nothing_to_run_says_why_and_exits_0(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(
        test_one=textwrap.dedent(
            """
            import pytest

            @pytest.mark.xdist_group("all")
            @pytest.mark.parametrize("n", range(3))
            def test_g(n):
                pass
            """
        )
    )
    for workers in (2, None):
        results = [runner.run("--shard", f"{i}/2", workers=workers) for i in (1, 2)]
        assert sorted(int(r.ret) for r in results) == [0, 0]
        empty = [r for r in results if "has no test to run" in runner.output(r)]
        assert len(empty) == 1, [runner.output(r) for r in results]
        assert "3 deselected" in runner.output(empty[0])


@pytest.mark.parametrize("value", ["0/3", "4/3", "1/0", "x/2", "1/1001", "2", "1/2/3"])
def test_bad_shard_values_are_usage_errors(runner: PluginRunner, value: str) -> None:
    runner.pytester.makepyfile(test_one="def test_x():\n    pass\n")
    result = runner.run("--shard", value, workers=2)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--shard" in runner.output(result)
    runner.assert_no_traceback(result)


def test_the_shard_comes_from_the_environment_too(
    runner: PluginRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner.pytester.makepyfile(**SUITE)
    monkeypatch.setenv("PARALLEL_EXEC_SHARD", "2/2")
    result = runner.run("-p", "no:randomly", workers=2)
    assert "deselected" in runner.output(result)
    monkeypatch.setenv("PARALLEL_EXEC_SHARD", "3/2")
    result = runner.run(workers=2)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "PARALLEL_EXEC_SHARD (environment)" in runner.output(result)
