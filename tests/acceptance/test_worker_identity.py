"""What a test can learn about where it runs: worker id, count, run id, temp dirs.

Suites rely on these (pytest-xdist's names included) to give each worker its own
database, port or directory; tmp_path must be per worker so two tests with the same
name on different workers never share a directory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

TESTS = 10

IDENTITY_SUITE = """
    import json
    import os
    import pathlib
    import time

    import pytest

    RECORDS = pathlib.Path(__file__).parent / "identity"


    @pytest.mark.parametrize("n", range({tests}))
    def test_identity(n, worker_id, testrun_uid, tmp_path):
        time.sleep({sleep})
        RECORDS.mkdir(exist_ok=True)
        record = {{
            "worker_id": worker_id,
            "testrun_uid": testrun_uid,
            "tmp_path": str(tmp_path),
            "env": {{
                name: os.environ.get(name)
                for name in (
                    "PARALLEL_EXEC_WORKER",
                    "PARALLEL_EXEC_WORKER_COUNT",
                    "PARALLEL_EXEC_RUN_ID",
                    "PYTEST_XDIST_WORKER",
                )
            }},
        }}
        (RECORDS / f"{{n}}.json").write_text(json.dumps(record))
"""


def identity_suite(sleep: float) -> str:
    """The suite; ``sleep`` keeps every worker busy long enough for both to get tests."""
    return IDENTITY_SUITE.format(tests=TESTS, sleep=sleep)


def read_records(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))]


@pytest.mark.slow
def test_worker_identity_in_parallel(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(test_identity=identity_suite(sleep=0.25))
    result = runner.run(workers=2)
    assert result.ret == 0, result.stdout.str()

    records = read_records(runner.pytester.path / "identity")
    assert len(records) == TESTS
    workers = {r["worker_id"] for r in records}
    assert workers == {"gw0", "gw1"}, "both workers should have run tests"
    run_ids = {r["env"]["PARALLEL_EXEC_RUN_ID"] for r in records}
    assert len(run_ids) == 1, run_ids
    assert all(run_ids), "PARALLEL_EXEC_RUN_ID is empty"
    for record in records:
        worker_id, env = record["worker_id"], record["env"]
        assert re.fullmatch(r"gw\d+", worker_id)
        assert env["PARALLEL_EXEC_WORKER"] == worker_id
        assert env["PYTEST_XDIST_WORKER"] == worker_id
        assert env["PARALLEL_EXEC_WORKER_COUNT"] == "2"
        assert record["testrun_uid"] == env["PARALLEL_EXEC_RUN_ID"]

    basetemps = {r["worker_id"]: Path(r["tmp_path"]).parent for r in records}
    assert {path.name for path in basetemps.values()} == workers, basetemps
    run_basetemps = {path.parent for path in basetemps.values()}
    assert len(run_basetemps) == 1, "worker basetemps should share the run's basetemp"
    assert run_basetemps.pop().name.startswith("runpytest-"), "--basetemp was not honoured"


def test_worker_identity_serially(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(test_identity=identity_suite(sleep=0))
    result = runner.run()
    assert result.ret == 0, result.stdout.str()

    records = read_records(runner.pytester.path / "identity")
    assert len(records) == TESTS
    for record in records:
        assert record["worker_id"] == "master"
        assert set(record["env"].values()) == {None}
