"""How big the timeline of a large run is, and how fast it opens in Chromium.

Builds a JSON report of a synthetic run (``--tests`` tests, default 50,000, on 16
workers, with a plan, retries and crashes), draws it with ``parallel-exec timeline``'s
renderer, and opens the file in headless Chromium a few times: prints the file's size,
the time the page's script took to draw (``data-drawn-ms``, measured in the page) and
the wall time of the whole headless Chromium run (start-up included).

    python benchmarks/timeline.py [--tests 50000] [--repeat 3] [--chromium chromium]
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from parallel_exec.reporting.timeline import render_html


def synthetic_report(tests: int, workers: int = 16, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    clocks = [0.4 + 0.05 * w for w in range(workers)]
    records = []
    plan: list[list[str]] = [[] for _ in range(workers)]
    for n in range(tests):
        nodeid = f"tests/pkg{n % 40}/test_module_{n % 400}.py::TestThing::test_case[{n}]"
        worker = min(range(workers), key=lambda w: clocks[w])
        duration = rng.expovariate(1 / 0.02) * (30 if n % 997 == 0 else 1)
        outcome = "failed" if n % 503 == 0 else "skipped" if n % 211 == 0 else "passed"
        earlier = []
        if n % 1499 == 0:
            earlier.append(
                {
                    "outcome": "failed",
                    "worker": f"gw{(worker + 1) % workers}",
                    "duration": duration,
                    "longrepr": "",
                    "longrepr_truncated": False,
                    "started": clocks[(worker + 1) % workers],
                }
            )
        records.append(
            {
                "nodeid": nodeid,
                "outcome": outcome,
                "origin": "crash" if n % 9973 == 0 else "worker",
                "worker": f"gw{worker}",
                "duration": duration,
                "started": clocks[worker],
                "predicted": duration * rng.uniform(0.7, 1.3),
                "attempts": {"count": 1 + len(earlier), "earlier": earlier},
            }
        )
        plan[n % workers].append(nodeid)
        clocks[worker] += duration
    span = max(clocks)
    return {
        "run_id": "benchmark",
        "duration": span,
        "summary": {"total": tests, "passed": tests},
        "workers": [
            {"id": f"gw{w}", "started_at": 0.05 * w, "ready_at": 0.4 + 0.05 * w, "ended_at": span}
            for w in range(workers)
        ],
        "tests": records,
        "plan": plan,
        "learning_outcome": None,
        "shard": None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "timeline.html"
        started = time.perf_counter()
        page.write_text(render_html(synthetic_report(args.tests)), encoding="utf-8")
        rendered = time.perf_counter() - started
        size = page.stat().st_size
        print(f"tests: {args.tests}, file: {size / 1e6:.2f} MB, written in {rendered:.2f} s")
        drawn, walls = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            dom = subprocess.run(
                [
                    args.chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--window-size=1400,900",
                    "--dump-dom",
                    page.as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
            walls.append(time.perf_counter() - started)
            found = re.search(r'data-drawn-ms="(\d+)"', dom)
            if found is None:
                print("the page did not draw", file=sys.stderr)
                return 1
            drawn.append(int(found.group(1)))
        print(
            f"drawn in the page: median {statistics.median(drawn)} ms (runs: {drawn}); "
            f"headless Chromium wall, start-up included: median "
            f"{statistics.median(walls):.2f} s (runs: {', '.join(f'{w:.2f}' for w in walls)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
