"""Generate synthetic pytest suites for the parallel_exec benchmarks.

Why synthetic suites: real suites mix the cost we want to measure (what a parallel
runner adds: starting workers, shipping tests and reports, scheduling) with the cost of
the tests themselves.  Each kind below isolates one question:

``trivial``
    Many tests that do nothing (default 5000 in 100 files).  The wall time is almost
    pure runner overhead per test: collection, protocol traffic, report handling.
``one``
    A single trivial test.  The wall time is the fixed cost of a run: interpreter and
    plugin start-up plus starting (and stopping) the workers.
``skewed``
    200 ``time.sleep`` tests, 40 s of work in total, with heavy-tailed (Pareto-like)
    durations scaled so that the sum is exactly 40 s and the longest is about 3 s.  The
    longest tests are collected LAST, which is the worst case for a scheduler that hands
    out tests in collection order: the long tail starts at the very end.
``scaling``
    960 ``time.sleep(0.125)`` tests (120 s of work) in 48 files.  Sleep-bound, so the
    ideal speedup with N workers is N even on a machine with fewer cores; the gap is
    the runner's overhead and its scheduling.

Every suite directory gets its own ``pytest.ini`` so that pytest's rootdir is the suite
directory and no configuration from an enclosing project leaks in.

Everything is deterministic: the same arguments write byte-identical files.

Usage::

    python benchmarks/generate.py --kind trivial /tmp/suite-trivial
    python benchmarks/generate.py --kind skewed --seed 7 /tmp/suite-skewed
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

KINDS = ("trivial", "one", "skewed", "scaling")

#: Seed of the shuffle that places the short tests of the ``skewed`` suite.
DEFAULT_SEED = 20240601

PYTEST_INI = "[pytest]\n"


@dataclass(frozen=True)
class SuiteInfo:
    """What was generated: enough to describe the suite in a report."""

    kind: str
    path: Path
    tests: int
    files: int
    #: Sum of all ``time.sleep`` durations in seconds (0 for suites that do not sleep).
    total_sleep: float
    #: The longest single ``time.sleep`` in seconds (0 for suites that do not sleep).
    longest_sleep: float

    def describe(self, with_kind: bool = True) -> str:
        text = f"{self.kind}: " if with_kind else ""
        text += f"{self.tests} test{'s' if self.tests != 1 else ''}"
        text += f" in {self.files} file{'s' if self.files != 1 else ''}"
        if self.total_sleep:
            text += f", {self.total_sleep:g} s of sleep in total, longest {self.longest_sleep:g} s"
        return text


def split_evenly(count: int, parts: int) -> list[int]:
    """``count`` items over ``parts`` buckets, sizes differing by at most one."""
    if parts < 1:
        raise ValueError("need at least one file")
    base, extra = divmod(count, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _prepare(dest: Path) -> None:
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} exists and is not empty; choose a new directory")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "pytest.ini").write_text(PYTEST_INI)


def _file_name(index: int, files: int) -> str:
    return f"test_{index:0{max(3, len(str(files - 1)))}d}.py"


def _write_files(dest: Path, bodies: Sequence[Sequence[str]], header: str) -> None:
    """Write one test module per entry of ``bodies`` (a list of test function sources)."""
    for index, functions in enumerate(bodies):
        text = header + "\n\n".join(functions) + "\n"
        (dest / _file_name(index, len(bodies))).write_text(text)


def _chunk(items: Sequence[str], files: int) -> list[list[str]]:
    chunks: list[list[str]] = []
    start = 0
    for size in split_evenly(len(items), files):
        chunks.append(list(items[start : start + size]))
        start += size
    return chunks


def write_trivial(dest: Path, tests: int = 5000, files: int = 100) -> SuiteInfo:
    """``tests`` functions ``def test_i(): assert True`` spread evenly over ``files``."""
    if tests < 1 or files < 1 or files > tests:
        raise ValueError("need tests >= files >= 1")
    _prepare(dest)
    width = len(str(tests - 1))
    functions = [f"def test_{i:0{width}d}():\n    assert True\n" for i in range(tests)]
    _write_files(dest, _chunk(functions, files), header="")
    return SuiteInfo("trivial", dest, tests, files, 0.0, 0.0)


def write_one(dest: Path) -> SuiteInfo:
    """A single trivial test."""
    info = write_trivial(dest, tests=1, files=1)
    return SuiteInfo("one", dest, info.tests, info.files, 0.0, 0.0)


def _pareto_quantiles(count: int, alpha: float) -> list[float]:
    """``count`` evenly spaced quantiles of a Pareto(alpha, x_min=1) law, ascending."""
    return [(1.0 - (i + 0.5) / count) ** (-1.0 / alpha) for i in range(count)]


def _max_share(count: int, alpha: float) -> float:
    values = _pareto_quantiles(count, alpha)
    return values[-1] / sum(values)


def skewed_durations_ms(tests: int, total_ms: int, longest_ms: int) -> list[int]:
    """Heavy-tailed durations in whole milliseconds, ascending, summing to ``total_ms``.

    The shape is the evenly spaced quantiles of a Pareto law (no sampling noise, so the
    tail is the same on every run); its exponent is found by bisection so that the
    longest test is ``longest_ms``.  Rounding to milliseconds uses largest remainders,
    so the sum is exact.
    """
    if tests < 2:
        raise ValueError("a skewed suite needs at least 2 tests")
    target = longest_ms / total_ms
    low, high = 0.2, 50.0  # a larger exponent means a flatter distribution
    if not _max_share(tests, high) <= target <= _max_share(tests, low):
        raise ValueError(
            f"cannot make the longest of {tests} tests {longest_ms} ms out of {total_ms} ms"
        )
    for _ in range(200):
        mid = (low + high) / 2
        if _max_share(tests, mid) > target:
            low = mid
        else:
            high = mid
    values = _pareto_quantiles(tests, (low + high) / 2)
    scale = total_ms / sum(values)
    exact = [v * scale for v in values]
    floors = [int(x) for x in exact]
    missing = total_ms - sum(floors)
    by_remainder = sorted(range(tests), key=lambda i: (exact[i] - floors[i], i), reverse=True)
    for i in by_remainder[:missing]:
        floors[i] += 1
    durations = sorted(floors)
    if durations[0] <= 0:
        raise ValueError("the shortest test would not sleep at all; use fewer tests")
    return durations


def _sleep_function(index: int, width: int, milliseconds: int) -> str:
    seconds = f"{milliseconds / 1000:.3f}"
    return f"def test_{index:0{width}d}():\n    time.sleep({seconds})\n"


def write_skewed(
    dest: Path,
    tests: int = 200,
    total_seconds: float = 40.0,
    longest_seconds: float = 3.0,
    files: int = 10,
    tail: int | None = None,
    seed: int = DEFAULT_SEED,
) -> SuiteInfo:
    """Heavy-tailed sleep tests; the ``tail`` longest are the last ones collected.

    The other tests are shuffled with ``random.Random(seed)``; the tail follows them in
    ascending order, at the end of the last file.  ``tail`` defaults to 5 % of the tests
    (the 10 longest of 200).
    """
    if tail is None:
        tail = max(1, tests // 20)
    if not 0 <= tail <= tests or files < 1 or files > tests:
        raise ValueError("need 0 <= tail <= tests and 1 <= files <= tests")
    durations = skewed_durations_ms(
        tests, round(total_seconds * 1000), round(longest_seconds * 1000)
    )
    bulk, heavy = durations[: tests - tail], durations[tests - tail :]
    random.Random(seed).shuffle(bulk)
    ordered = bulk + heavy
    _prepare(dest)
    width = len(str(tests - 1))
    functions = [_sleep_function(i, width, ms) for i, ms in enumerate(ordered)]
    _write_files(dest, _chunk(functions, files), header="import time\n\n\n")
    return SuiteInfo("skewed", dest, tests, files, sum(durations) / 1000, durations[-1] / 1000)


def write_scaling(
    dest: Path, tests: int = 960, duration_seconds: float = 0.125, files: int = 48
) -> SuiteInfo:
    """``tests`` identical ``time.sleep(duration_seconds)`` tests over ``files``."""
    if tests < 1 or files < 1 or files > tests:
        raise ValueError("need tests >= files >= 1")
    milliseconds = round(duration_seconds * 1000)
    if milliseconds < 1:
        raise ValueError("the duration must be at least 1 ms")
    _prepare(dest)
    width = len(str(tests - 1))
    functions = [_sleep_function(i, width, milliseconds) for i in range(tests)]
    _write_files(dest, _chunk(functions, files), header="import time\n\n\n")
    total = tests * milliseconds / 1000
    return SuiteInfo("scaling", dest, tests, files, total, milliseconds / 1000)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Write a synthetic pytest suite for the parallel_exec benchmarks.",
    )
    parser.add_argument("directory", type=Path, help="where to write (must be new or empty)")
    parser.add_argument("--kind", choices=KINDS, required=True, help="which suite to write")
    parser.add_argument("--tests", type=int, help="number of tests (not for 'one')")
    parser.add_argument("--files", type=int, help="number of test files (not for 'one')")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="skewed: seed of the shuffle"
    )
    parser.add_argument(
        "--total-seconds", type=float, default=40.0, help="skewed: sum of all sleeps"
    )
    parser.add_argument(
        "--longest-seconds", type=float, default=3.0, help="skewed: the longest sleep"
    )
    parser.add_argument(
        "--duration", type=float, default=0.125, help="scaling: the sleep of every test"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sized: dict[str, int] = {}
    if args.tests is not None:
        sized["tests"] = args.tests
    if args.files is not None:
        sized["files"] = args.files
    try:
        if args.kind == "trivial":
            info = write_trivial(args.directory, **sized)
        elif args.kind == "one":
            if sized:
                raise ValueError("--tests/--files do not apply to --kind one")
            info = write_one(args.directory)
        elif args.kind == "skewed":
            info = write_skewed(
                args.directory,
                total_seconds=args.total_seconds,
                longest_seconds=args.longest_seconds,
                seed=args.seed,
                **sized,
            )
        else:
            info = write_scaling(args.directory, duration_seconds=args.duration, **sized)
    except (ValueError, FileExistsError) as exc:
        print(f"generate.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {info.describe()} to {info.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
