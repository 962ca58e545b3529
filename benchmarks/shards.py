"""``--shard I/N`` against pytest-split on the same durations, in one invocation.

The ``skewed`` suite (200 sleep tests, 40 s of work, longest 3 s; ``generate.py``) runs
once unsharded with ``-n 2`` so that the timing history knows every test; the history is
exported as pytest-split's ``.test_durations`` (each test's mean), so both tools plan
from the same numbers.  Then, for each tool, the N shards run one after another with
``-n 2`` each (a simulated matrix: its wall is the slowest shard's), every parallel_exec
shard from a copy of the same history:

* parallel_exec: ``pytest -p parallel_exec -n 2 --shard I/N``;
* pytest-split: ``pytest -p xdist -n 2 --splits N --group I --splitting-algorithm A``
  for ``least_duration`` and ``duration_based_chunks`` (pytest-split is installed into a
  directory of its own and put on ``PYTHONPATH`` for its runs only).

Printed per tool: the largest shard's predicted work against the matrix lower bound
``LB = max(total / N, longest)``, the shards' walls, the matrix wall, and the matrix wall
against ``LB / 2 + start-up`` (two workers per shard; start-up: a one-test run).

Usage::

    python benchmarks/shards.py [--shards 3] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import generate

SPLIT_VERSION = "0.11.0"


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 5):
        raise SystemExit(f"failed ({done.returncode}): {' '.join(argv)}\n{done.stdout[-3000:]}")
    return elapsed, done.stdout


def install_split(where: Path) -> Path:
    target = where / "pytest-split"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         f"pytest-split=={SPLIT_VERSION}"],
        check=True,
    )  # fmt: skip
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    n = args.shards
    root = Path(tempfile.mkdtemp(prefix="parallel_exec-shards-"))
    try:
        suite = root / "skewed"
        info = generate.write_skewed(suite)
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("PYTEST_ADDOPTS", None)
        pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly"]
        ours = [*pytest, "-p", "parallel_exec", "-n", "2"]
        print(f"# --shard {n} vs pytest-split, {info.describe()}", file=sys.stderr)
        run(ours, suite, env)  # learns every test's duration
        run(ours, suite, env)
        history = suite / ".pytest_cache" / "parallel_exec"
        saved = root / "history"
        shutil.copytree(history, saved)
        exported = subprocess.run(
            [sys.executable, "-m", "parallel_exec.history.cli", "history", "export"],
            cwd=suite, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        durations = {t["nodeid"]: t["mean"] for t in json.loads(exported)["tests"]}
        (suite / ".test_durations").write_text(json.dumps(durations, indent=1))
        total, longest = sum(durations.values()), max(durations.values())
        bound = max(total / n, longest)
        startup = statistics.median(
            run([*ours, "-k", "test_0000"], suite, env)[0] for _ in range(3)
        )
        split_path = install_split(root)
        split_env = dict(env, PYTHONPATH=str(split_path))
        rows = []
        for rep in range(args.repeat):
            walls, predicted = [], []
            for i in range(1, n + 1):
                shutil.rmtree(history, ignore_errors=True)
                shutil.copytree(saved, history)
                outcome = root / f"outcome-{i}.json"
                seconds, _ = run(
                    [*ours, "--shard", f"{i}/{n}", f"--report-outcome={outcome}"], suite, env
                )
                record = json.loads(outcome.read_text())
                walls.append(seconds)
                predicted.append(record["shard_predicted_work"])
            rows.append(("parallel_exec --shard", walls, predicted))
            for algorithm in ("least_duration", "duration_based_chunks"):
                walls, predicted = [], []
                for i in range(1, n + 1):
                    argv = [
                        *pytest, "-p", "no:parallel_exec", "-p", "xdist", "-n", "2",
                        "--splits", str(n), "--group", str(i),
                        "--splitting-algorithm", algorithm,
                    ]  # fmt: skip
                    seconds, _ = run(argv, suite, split_env)
                    # Its estimate is printed where it collects: in this process, not
                    # in xdist's workers, so a collection-only run reads it.
                    plan = [
                        *pytest, "-p", "no:parallel_exec", "-p", "no:xdist", "--collect-only",
                        "--splits", str(n), "--group", str(i),
                        "--splitting-algorithm", algorithm,
                    ]  # fmt: skip
                    _, out = run(plan, suite, split_env)
                    found = re.search(r"estimated duration: ([\d.]+)s", out)
                    walls.append(seconds)
                    predicted.append(float(found.group(1)) if found else float("nan"))
                rows.append((f"pytest-split {algorithm}", walls, predicted))
            print(f"rep {rep + 1}/{args.repeat} done", file=sys.stderr)
        print(f"Suite: {info.describe()}; N = {n}; -n 2 per shard; "
              f"work {total:.2f} s, longest {longest:.2f} s, LB = max(work/N, longest) = "
              f"{bound:.2f} s; start-up (one-test run) {startup:.2f} s\n")  # fmt: skip
        print("| tool | largest predicted work (s) | largest / LB | shard walls (s) "
              "| matrix wall (s) | matrix wall / (LB/2 + start-up) |")  # fmt: skip
        print("|---|--:|--:|---|--:|--:|")
        for tool, walls, predicted in rows:
            largest = max(predicted)
            matrix = max(walls)
            print(
                f"| {tool} | {largest:.2f} | {largest / bound:.3f} | "
                f"{', '.join(f'{w:.2f}' for w in walls)} | {matrix:.2f} | "
                f"{matrix / (bound / 2 + startup):.3f} |"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
