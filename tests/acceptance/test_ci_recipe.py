"""docs/ci.md's local rehearsal, run as written (N=3): three shard runs from one history,
their reports merged, their histories merged; the merged JUnit report equals the
unsharded run's, and the merged history knows every test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from test_merge import normalized

if TYPE_CHECKING:
    from conftest import PluginRunner

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[2] / "docs" / "ci.md"


def rehearsal() -> str:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(r"<!-- rehearsal -->\s*```bash\n(.*?)```\s*<!-- /rehearsal -->", text, re.S)
    assert found, "docs/ci.md has no rehearsal block"
    return found.group(1)


def test_the_documented_rehearsal_equals_the_unsharded_run(runner: PluginRunner) -> None:
    for f in range(5):
        runner.pytester.makepyfile(
            **{
                f"test_r{f}": textwrap.dedent(
                    f"""
                    import time

                    import pytest

                    @pytest.mark.parametrize("n", range(4))
                    def test_t(n):
                        time.sleep(0.01 * n)
                        assert (n, {f}) != (2, 3)

                    @pytest.mark.xdist_group("g")
                    def test_grouped():
                        pass
                    """
                )
            }
        )
    base = runner.pytester.path
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("PYTEST_ADDOPTS", None)
    env["PYTEST_ADDOPTS"] = "-p no:randomly"
    for name in ("PARALLEL_EXEC_SHARD", "PARALLEL_EXEC_SHARD_RUN_ID", "PARALLEL_EXEC_WORKERS"):
        env.pop(name, None)
    # Twice: the second rehearsal plans from the history the first one merged.
    for _ in range(2):
        done = subprocess.run(
            ["bash", "-e", "-c", rehearsal()],
            cwd=base,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "merged 3 shards" in done.stdout
    whole = base / "whole.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "parallel_exec", "-n", "2", f"--junitxml={whole}"],
        cwd=base,
        env=env,
        capture_output=True,
        check=False,
        timeout=300,
    )
    assert normalized(base / "junit.xml") == normalized(whole)
    report = json.loads((base / "report.json").read_text())
    assert report["summary"]["total"] == 25
    assert report["summary"]["failed"] == 1
    exported = subprocess.run(
        [sys.executable, "-m", "parallel_exec.history.cli", "history", "export"],
        cwd=base,
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(json.loads(exported.stdout)["tests"]) == 25
