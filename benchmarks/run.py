"""Time parallel_exec against pytest-xdist and a serial run, side by side.

Why this script exists: figures about a parallel test runner are only comparable when
they come from the same machine, in the same minutes, with the same caches.  So one
invocation generates the synthetic suites (see ``generate.py``) into a temporary
directory and times, for each scenario, complete subprocess runs of

* serial pytest: ``python -m pytest -q -p no:randomly SUITE``,
* pytest-xdist: ``python -m pytest -q -n N SUITE`` (``--dist worksteal`` for ``skewed``),
* parallel_exec: ``python -m pytest -q -p parallel_exec -n N SUITE``,

all with ``sys.executable``.  What is measured is the wall-clock time of the whole
command, from process start to exit: that is what a user waits for, and it includes
interpreter start-up, plugin loading, collection and starting the workers.

How noise is kept down:

* every distinct command runs once, untimed, before any timing, so that the bytecode
  caches (``__pycache__``) of pytest, the plugins and the generated test files are warm;
  the children run without ``PYTHONDONTWRITEBYTECODE`` so those caches are written and
  used, as on a normal machine.  pytest's own cache (``.pytest_cache``) is kept too,
  as real users have it;
* each figure is the median of ``--repeat`` runs, and within one repetition the tools
  run interleaved (serial, xdist, ours, serial, xdist, ours...) so that a burst of load
  on the machine hits every tool rather than one.

Scenarios (``--scenario``, repeatable; default ``trivial`` and ``one``):

``trivial``  5000 trivial tests in 100 files, ``-n 2``: per-test overhead.
``one``      one trivial test, ``-n 8``: the fixed cost of a run.
``skewed``   200 heavy-tailed sleep tests (40 s of work, longest 3 s, collected last),
             ``-n 8``, against ``xdist --dist worksteal``.  parallel_exec runs twice in
             each repetition on the same suite directory, so its pytest cache persists
             between the two: the first run (untimed) may learn durations, the second
             is the one reported.
``scaling``  960 tests of ``time.sleep(0.125)`` (120 s of work) in 48 files at
             ``-n 2, 4, 8, 16``.  Serial is not run (it would take two minutes per
             repetition); the speedup is 120 s / wall.
``guards``   the ``trivial`` suite at ``-n 2``, parallel_exec without any guard
             (``--no-leak-check``) and with them (``--test-timeout 60
             --max-worker-memory 4GiB``, leak detection on): what the guards cost, as
             the ratio of the two (column "ratio vs parallel_exec").

For the two sleep-bound scenarios the warm-up is the same command with every test
deselected (``-k "not test_"``): it imports the same modules in the same processes, so
it warms the same bytecode caches, without sleeping for minutes.  ``--full-warmup`` makes
it a complete run instead.

``--small`` shrinks every suite for a quick smoke test of this script; its figures are
not to be reported.

Usage::

    python benchmarks/run.py                       # trivial and one, 3 repetitions
    python benchmarks/run.py --scenario skewed --scenario scaling --json out.json
    python benchmarks/run.py --scenario trivial --collection split --collection imports \
        --collection full --repeat 5             # the collection modes side by side
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# A sibling script: ``python benchmarks/run.py`` puts this directory first on sys.path.
import generate
from generate import SuiteInfo

SCENARIOS = ("trivial", "one", "skewed", "first-run", "scaling", "guards")
DEFAULT_SCENARIOS = ("trivial", "one")

#: Selects no test (every generated test is named ``test_...``): the cheap warm-up.
DESELECT_ALL = ("-k", "not test_")

#: Environment variables of the parent that are reported because they change pytest.
REPORTED_ENV = (
    "PYTEST_ADDOPTS",
    "PYTEST_PLUGINS",
    "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
    "PYTEST_XDIST_AUTO_NUM_WORKERS",
)


class BenchmarkError(Exception):
    """A run failed or could not be started: the figures would be meaningless."""


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    """How to build one suite and which commands to time on it."""

    name: str
    build: Callable[[Path, bool], SuiteInfo]
    workers: tuple[int, ...]
    #: Run serial pytest (otherwise the serial figure is the suite's total sleep).
    run_serial: bool = True
    xdist_args: tuple[str, ...] = ()
    #: Run parallel_exec once untimed right before its timed run in every repetition.
    learn_run: bool = False
    #: Sleep-bound: warm up with every test deselected unless ``--full-warmup``.
    sleep_bound: bool = False
    #: parallel_exec's commands: (label suffix, extra arguments) each; the first is the
    #: reference of the "ratio vs parallel_exec" column when there are several.
    variants: tuple[tuple[str, tuple[str, ...]], ...] = (("", ()),)


def _build_trivial(path: Path, small: bool) -> SuiteInfo:
    if small:
        return generate.write_trivial(path, tests=500, files=10)
    return generate.write_trivial(path)


def _build_one(path: Path, small: bool) -> SuiteInfo:
    return generate.write_one(path)


def _build_skewed(path: Path, small: bool) -> SuiteInfo:
    if small:
        return generate.write_skewed(
            path, tests=40, total_seconds=8.0, longest_seconds=0.6, files=4
        )
    return generate.write_skewed(path)


def _build_scaling(path: Path, small: bool) -> SuiteInfo:
    if small:
        return generate.write_scaling(path, tests=96, files=8)
    return generate.write_scaling(path)


SCENARIO_SPECS: dict[str, Scenario] = {
    "trivial": Scenario("trivial", _build_trivial, workers=(2,)),
    "one": Scenario("one", _build_one, workers=(8,)),
    "skewed": Scenario(
        "skewed",
        _build_skewed,
        workers=(8,),
        xdist_args=("--dist", "worksteal"),
        learn_run=True,
        sleep_bound=True,
    ),
    # Every run a first run (no history: --dist auto plans by load), as in CI without a
    # cache; against xdist's default (load).
    "first-run": Scenario(
        "first-run",
        _build_skewed,
        workers=(4,),
        run_serial=False,
        sleep_bound=True,
        variants=((" (no history)", ("--no-history",)),),
    ),
    "scaling": Scenario(
        "scaling", _build_scaling, workers=(2, 4, 8, 16), run_serial=False, sleep_bound=True
    ),
    "guards": Scenario(
        "guards",
        _build_trivial,
        workers=(2,),
        variants=(
            (" (no guards)", ("--no-leak-check",)),
            (
                " (guards)",
                ("--test-timeout", "60", "--max-worker-memory", "4GiB"),
            ),
        ),
    ),
}


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Command:
    """One tool at one worker count on one suite."""

    tool: str  # "serial", "xdist" or "parallel_exec"
    label: str  # as shown in the table
    workers: int
    argv: tuple[str, ...]

    @property
    def display(self) -> str:
        return shlex.join(self.argv)

    @property
    def title(self) -> str:
        return self.label if self.tool == "serial" else f"{self.label} -n {self.workers}"


def commands_for(
    scenario: Scenario, suite: Path, collections: Sequence[str | None] = (None,)
) -> list[Command]:
    """The commands of one repetition, in running order (serial, then xdist and ours
    alternating per worker count; ours once per ``--collection`` mode, None: the
    default without the flag)."""
    pytest_argv = (sys.executable, "-m", "pytest", "-q")
    target = str(suite)
    commands: list[Command] = []
    if scenario.run_serial:
        commands.append(Command("serial", "serial", 1, (*pytest_argv, "-p", "no:randomly", target)))
    xdist_label = " ".join(("xdist", *scenario.xdist_args))
    ours_label = "parallel_exec (2nd run)" if scenario.learn_run else "parallel_exec"
    for n in scenario.workers:
        xdist_argv = (*pytest_argv, "-n", str(n), *scenario.xdist_args, target)
        commands.append(Command("xdist", xdist_label, n, xdist_argv))
        for mode in collections:
            for suffix, variant in scenario.variants:
                flag = () if mode is None else (f"--collection={mode}",)
                label = ours_label if mode is None else f"{ours_label} --collection={mode}"
                ours_argv = (
                    *pytest_argv,
                    "-p",
                    "parallel_exec",
                    "-n",
                    str(n),
                    *flag,
                    *variant,
                    target,
                )
                commands.append(Command("parallel_exec", label + suffix, n, ours_argv))
    return commands


# --------------------------------------------------------------------------- running


def child_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _tail(text: str, lines: int = 40) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join("    " + line for line in kept) or "    (empty)"


def run_once(
    command: Command,
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    extra: Sequence[str] = (),
    ok_codes: Sequence[int] = (0,),
) -> float:
    """Run ``command`` to completion and return its wall-clock time in seconds.

    The child gets its own process group so that, on a timeout or an interrupt, the
    whole group (pytest and any worker it started) is ended.
    """
    argv = [*command.argv[:-1], *extra, command.argv[-1]]
    start = time.perf_counter()
    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        raise BenchmarkError(f"could not start {shlex.join(argv)}: {exc}") from exc
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException as exc:
        _kill_group(process)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise BenchmarkError(
                f"{command.title} did not finish within {timeout:g} s:\n  {shlex.join(argv)}"
            ) from None
        raise
    elapsed = time.perf_counter() - start
    if process.returncode not in ok_codes:
        expected = " or ".join(str(c) for c in ok_codes)
        raise BenchmarkError(
            f"{command.title} exited with code {process.returncode} "
            f"(expected {expected}):\n  cd {shlex.quote(str(cwd))} && {shlex.join(argv)}\n"
            f"  stdout (last lines):\n{_tail(stdout)}\n  stderr (last lines):\n{_tail(stderr)}"
        )
    return elapsed


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    tool: str
    label: str
    workers: int
    command: str
    samples: list[float] = field(default_factory=list)
    estimated: bool = False  # the serial row of ``scaling``: the suite's total sleep
    #: parallel_exec only: the learning-outcome record of each timed run, in order.
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    def median_outcome(self) -> dict[str, Any] | None:
        """The record of the run whose wall time is the median (the lower middle one)."""
        if not self.outcomes or len(self.outcomes) != len(self.samples):
            return None
        order = sorted(range(len(self.samples)), key=lambda i: self.samples[i])
        return self.outcomes[order[(len(order) - 1) // 2]]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class ScenarioResult:
    name: str
    suite: str
    cwd: str
    warmup: str
    rows: list[Row]
    #: ``skewed``: one-test runs of parallel_exec at the same ``-n`` (the start-up).
    startup: Row | None = None

    def reference(self, tool: str, workers: int) -> Row | None:
        """The ``tool`` row at ``workers`` workers, or the only ``tool`` row."""
        rows = [r for r in self.rows if r.tool == tool]
        same = [r for r in rows if r.workers == workers]
        if same:
            return same[0]
        return rows[0] if len(rows) == 1 else None


def run_scenario(
    scenario: Scenario,
    root: Path,
    repeat: int,
    small: bool,
    full_warmup: bool,
    timeout: float,
    env: dict[str, str],
    collections: Sequence[str | None] = (None,),
) -> ScenarioResult:
    suite_dir = root / scenario.name
    info = scenario.build(suite_dir, small)
    progress(f"[{scenario.name}] generated {info.describe()} in {suite_dir}")
    commands = commands_for(scenario, suite_dir, collections)
    rows = {c: Row(c.tool, c.label, c.workers, c.display) for c in commands}
    estimate: list[Row] = []
    if not scenario.run_serial:
        label = "serial (estimate: sum of sleeps)"
        estimate.append(Row("serial", label, 1, "-", [info.total_sleep], estimated=True))

    cheap = scenario.sleep_bound and not full_warmup
    warmup = (
        f"same command with every test deselected ({shlex.join(DESELECT_ALL)}), untimed"
        if cheap
        else "same command, complete, untimed"
    )
    for command in commands:
        progress(f"[{scenario.name}] warm-up: {command.title}")
        if cheap:
            # Exit code 5: pytest's "no tests ran", expected when everything is deselected.
            run_once(command, suite_dir, env, timeout, DESELECT_ALL, ok_codes=(0, 5))
        else:
            run_once(command, suite_dir, env, timeout)

    outcome_file = root / f"{scenario.name}-outcome.json"
    for rep in range(1, repeat + 1):
        for command in commands:
            where = f"[{scenario.name}] rep {rep}/{repeat} {command.title}"
            if scenario.learn_run and command.tool == "parallel_exec":
                seconds = run_once(command, suite_dir, env, timeout)
                progress(f"{where}: 1st run (untimed, learning) {seconds:.2f} s")
            extra: tuple[str, ...] = ()
            if command.tool == "parallel_exec":
                outcome_file.unlink(missing_ok=True)
                extra = (f"--report-outcome={outcome_file}",)
            seconds = run_once(command, suite_dir, env, timeout, extra)
            rows[command].samples.append(seconds)
            if extra:
                rows[command].outcomes.append(json.loads(outcome_file.read_text()))
            progress(f"{where}: {seconds:.2f} s")
    startup = None
    if scenario.learn_run:
        startup = _time_startup(root, scenario, repeat, timeout, env)
    return ScenarioResult(
        name=scenario.name,
        suite=info.describe(with_kind=False),
        cwd=str(suite_dir),
        warmup=warmup,
        rows=[*estimate, *rows.values()],
        startup=startup,
    )


def _time_startup(
    root: Path, scenario: Scenario, repeat: int, timeout: float, env: dict[str, str]
) -> Row:
    """The wall time of a one-test parallel_exec run at the scenario's ``-n``: the fixed
    cost that a bound on the makespan of the tests themselves leaves out."""
    suite_dir = root / f"{scenario.name}-startup"
    generate.write_one(suite_dir)
    workers = scenario.workers[0]
    argv = (sys.executable, "-m", "pytest", "-q", "-p", "parallel_exec", "-n", str(workers))
    command = Command("parallel_exec", "one-test run", workers, (*argv, str(suite_dir)))
    row = Row(command.tool, command.label, workers, command.display)
    run_once(command, suite_dir, env, timeout)  # warm-up
    for rep in range(1, repeat + 1):
        seconds = run_once(command, suite_dir, env, timeout)
        row.samples.append(seconds)
        progress(f"[{scenario.name}] start-up rep {rep}/{repeat}: {seconds:.2f} s")
    return row


# --------------------------------------------------------------------------- report


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _ratio(value: float, reference: Row | None) -> float | None:
    if reference is None or not reference.samples or reference.median == 0:
        return None
    return value / reference.median


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def row_figures(result: ScenarioResult, row: Row) -> dict[str, float | None]:
    xdist = result.reference("xdist", row.workers)
    serial = result.reference("serial", row.workers)
    speedup = None
    if serial is not None and serial.estimated and not row.estimated:
        speedup = serial.median / row.median
    ours = [r for r in result.rows if r.tool == "parallel_exec" and r.workers == row.workers]
    plain = ours[0] if len(ours) > 1 and row.tool == "parallel_exec" else None
    return {
        "median": row.median,
        "ratio_vs_parallel_exec": _ratio(row.median, plain),
        "ratio_vs_xdist": _ratio(row.median, xdist),
        "ratio_vs_serial": _ratio(row.median, serial),
        "speedup_vs_serial_estimate": speedup,
    }


def scenario_table(result: ScenarioResult) -> str:
    with_speedup = any(r.estimated for r in result.rows)
    with_variants = len({r.label for r in result.rows if r.tool == "parallel_exec"}) > 1 and all(
        "--collection" not in r.label for r in result.rows
    )
    header = [
        "scenario",
        "tool",
        "workers",
        "median wall (s)",
        "all samples (s)",
        "ratio vs xdist",
        "ratio vs serial",
    ]
    align = ["---", "---", "--:", "--:", "---", "--:", "--:"]
    if with_speedup:
        header.append("speedup (serial estimate / wall)")
        align.append("--:")
    if with_variants:
        header.append("ratio vs parallel_exec")
        align.append("--:")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for row in result.rows:
        figures = row_figures(result, row)
        samples = "(not run)" if row.estimated else ", ".join(f"{s:.2f}" for s in row.samples)
        cells = [
            result.name,
            row.label,
            str(row.workers),
            f"{row.median:.2f}",
            samples,
            _fmt(figures["ratio_vs_xdist"]),
            _fmt(figures["ratio_vs_serial"]),
        ]
        if with_speedup:
            cells.append(_fmt(figures["speedup_vs_serial_estimate"]))
        if with_variants:
            cells.append(_fmt(figures["ratio_vs_parallel_exec"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def outcome_table(result: ScenarioResult) -> str | None:
    """parallel_exec's own learning-outcome figures for its median run of each row."""
    rows = [(r, r.median_outcome()) for r in result.rows if r.tool == "parallel_exec"]
    rows = [(r, o) for r, o in rows if o is not None]
    if not rows:
        return None
    header = (
        "| workers | strategy | wall (s) | work (s) | speedup | efficiency | balance "
        "| predicted makespan (s) | LB (s) | actual/LB | stragglers | reward |"
    )
    lines = [header, "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for row, o in rows:
        predicted = o.get("predicted_makespan")
        ratio = o.get("actual_over_lower_bound")
        lines.append(
            f"| {row.workers} | {o['strategy']} | {o['wall_time']:.2f} "
            f"| {o['sequential_estimate']:.2f} | {o['speedup']:.2f}x | {o['efficiency']:.0%} "
            f"| {o['balance']:.0%} | {'-' if predicted is None else f'{predicted:.2f}'} "
            f"| {o['lower_bound']:.2f} | {'-' if ratio is None else f'{ratio:.2f}'} "
            f"| {o['stragglers']} | {o['reward']} |"
        )
    return "\n".join(lines)


def startup_lines(result: ScenarioResult) -> list[str]:
    """The start-up-inclusive bound: LB + a one-test run's wall, against the median."""
    startup = result.startup
    ours = next((r for r in result.rows if r.tool == "parallel_exec"), None)
    outcome = ours.median_outcome() if ours is not None else None
    if startup is None or ours is None or outcome is None:
        return []
    bound = outcome["lower_bound"] + startup.median
    return [
        f"Start-up (a one-test run, `{startup.command}`): median {startup.median:.2f} s "
        f"(samples {', '.join(f'{s:.2f}' for s in startup.samples)}).",
        f"LB + start-up = {outcome['lower_bound']:.2f} + {startup.median:.2f} = "
        f"{bound:.2f} s; parallel_exec's median wall {ours.median:.2f} s is "
        f"**{ours.median / bound:.2f} x** that bound (the whole-run wall of the command, "
        "so it also holds interpreter exit).",
        "",
    ]


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _pytest_plugins() -> list[str]:
    found = importlib.metadata.entry_points(group="pytest11")
    return sorted({f"{ep.name} ({ep.value})" for ep in found})


def usable_cpus() -> int:
    """What ``nproc`` prints: the CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _loadavg() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unavailable"


def _package_dir() -> Path | None:
    spec = importlib.util.find_spec("parallel_exec")  # finds it without importing it
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def source_fingerprint() -> str:
    """A digest of parallel_exec's ``.py`` files: which code was measured.

    Compared at the end of the run, it also catches an editable install whose source
    was edited while the benchmark ran (the figures would then mix two versions).
    """
    package = _package_dir()
    if package is None:
        return "not found"
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _git(args: Sequence[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_revision() -> str:
    """The git commit of parallel_exec's source, ``+dirty`` if it has local changes."""
    package = _package_dir()
    if package is None:
        return "unknown"
    commit = _git(["rev-parse", "--short=12", "HEAD"], package)
    if commit is None:
        return "not a git checkout"
    dirty = _git(["status", "--porcelain", "--", "."], package)
    return commit + ("+dirty" if dirty else "")


def collect_metadata(args: argparse.Namespace) -> dict[str, Any]:
    now = dt.datetime.now().astimezone()
    return {
        "date": now.isoformat(timespec="seconds"),
        "date_utc": now.astimezone(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "pytest": _version("pytest"),
        "pytest_xdist": _version("pytest-xdist"),
        "execnet": _version("execnet"),
        "parallel_exec": _version("pytest-parallel-exec"),
        "parallel_exec_source": str(_package_dir()),
        "parallel_exec_revision": source_revision(),
        "parallel_exec_fingerprint": source_fingerprint(),
        "pytest_plugins_installed": _pytest_plugins(),
        "platform": platform.platform(),
        "nproc": usable_cpus(),
        "logical_cpus": os.cpu_count(),
        "loadavg_start": _loadavg(),
        "repeat": args.repeat,
        "small": args.small,
        "full_warmup": args.full_warmup,
        "parent_had_PYTHONDONTWRITEBYTECODE": "PYTHONDONTWRITEBYTECODE" in os.environ,
        "inherited_pytest_env": {k: os.environ[k] for k in REPORTED_ENV if k in os.environ},
    }


def render_report(meta: dict[str, Any], results: Sequence[ScenarioResult]) -> str:
    out: list[str] = ["# parallel_exec benchmarks", ""]
    if meta.get("source_changed_during_run"):
        out += [
            f"**{SOURCE_CHANGED}** (at the end: git {meta['parallel_exec_revision_end']}, "
            f"fingerprint {meta['parallel_exec_fingerprint_end']})",
            "",
        ]
    if meta["small"]:
        out += [
            "**--small: shrunken smoke-test suites. These figures are NOT to be reported.**",
            "",
        ]
    had = (
        "it was set in the invoking shell"
        if meta["parent_had_PYTHONDONTWRITEBYTECODE"]
        else "it was not set in the invoking shell either"
    )
    out += [
        f"- date: {meta['date']} (UTC {meta['date_utc']})",
        f"- python {meta['python']} ({meta['python_executable']})",
        f"- pytest {meta['pytest']}, pytest-xdist {meta['pytest_xdist']}, "
        f"execnet {meta['execnet']}, pytest-parallel-exec {meta['parallel_exec']}",
        f"- parallel_exec source: {meta['parallel_exec_source']}, at start: git "
        f"{meta['parallel_exec_revision']}, fingerprint {meta['parallel_exec_fingerprint']}",
        "- pytest plugins installed: " + (", ".join(meta["pytest_plugins_installed"]) or "none"),
        f"- nproc: {meta['nproc']} (logical CPUs: {meta['logical_cpus']}), "
        f"platform: {meta['platform']}",
        f"- load average (1, 5, 15 min): {meta['loadavg_start']} at start, "
        f"{meta.get('loadavg_end', '?')} at end",
        "- environment: PYTHONDONTWRITEBYTECODE removed for every benchmarked subprocess "
        f"({had}), so bytecode caches are written and used as on a normal machine; "
        "pytest's cache (.pytest_cache) is kept between runs",
    ]
    for key, value in meta["inherited_pytest_env"].items():
        out.append(f"- inherited from the environment: {key}={value}")
    out += [
        f"- method: one untimed warm-up run of each command, then {meta['repeat']} "
        "repetition(s) with the tools interleaved in each; wall-clock of complete "
        "subprocess runs; the figure is the median",
        "- ratios: this row's median / the reference's median (below 1.00 = faster than "
        "the reference); 'ratio vs xdist' compares at the same number of workers",
        "",
    ]
    for result in results:
        out += [
            f"## Scenario `{result.name}`: {result.suite}",
            "",
            scenario_table(result),
            "",
            f"Warm-up: {result.warmup}. Working directory: `{result.cwd}` "
            f"({meta['workdir_note']}). Commands:",
            "",
        ]
        out += [f"    {row.command}" for row in result.rows if not row.estimated]
        out.append("")
        outcomes = outcome_table(result)
        if outcomes is not None:
            out += [
                "parallel_exec's learning-outcome record of its median run (timed runs add "
                "`--report-outcome FILE`; wall here is from pool start to the last result, "
                "LB = max(work / workers, longest test); definitions in docs/learning.md):",
                "",
                outcomes,
                "",
            ]
        out += startup_lines(result)
    return "\n".join(out)


def write_json(
    path: Path,
    meta: dict[str, Any],
    results: Sequence[ScenarioResult],
    error: str | None = None,
) -> None:
    payload: dict[str, Any] = {
        "meta": meta,
        "scenarios": [
            {
                "name": r.name,
                "suite": r.suite,
                "cwd": r.cwd,
                "warmup": r.warmup,
                "rows": [{**asdict(row), **row_figures(r, row)} for row in r.rows],
                "startup": asdict(r.startup) if r.startup is not None else None,
            }
            for r in results
        ],
    }
    if error is not None:
        payload["error"] = error
    path.write_text(json.dumps(payload, indent=2) + "\n")


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time serial pytest, pytest-xdist and parallel_exec on synthetic suites.",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS,
        help=f"scenario to run; repeatable (default: {' and '.join(DEFAULT_SCENARIOS)})",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs per command; the median is reported"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write raw numbers here")
    parser.add_argument(
        "--small",
        action="store_true",
        help="shrink every suite for a quick smoke test (figures NOT for reporting)",
    )
    parser.add_argument(
        "--full-warmup",
        action="store_true",
        help="warm up sleep-bound scenarios with complete runs (default: all deselected)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="generate the suites here and keep them (default: a temporary directory)",
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds after which one run is aborted"
    )
    parser.add_argument(
        "--collection",
        action="append",
        choices=("imports", "split", "full"),
        help="time parallel_exec with this --collection mode; repeatable, one row each "
        "(default: one row, without the flag)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.scenario = list(dict.fromkeys(args.scenario or DEFAULT_SCENARIOS))
    return args


SOURCE_CHANGED = (
    "WARNING: parallel_exec's source changed while the benchmark ran; "
    "the figures mix code versions. Rerun."
)


def finish_metadata(meta: dict[str, Any]) -> None:
    meta["loadavg_end"] = _loadavg()
    fingerprint = source_fingerprint()
    meta["source_changed_during_run"] = fingerprint != meta["parallel_exec_fingerprint"]
    if meta["source_changed_during_run"]:
        meta["parallel_exec_revision_end"] = source_revision()
        meta["parallel_exec_fingerprint_end"] = fingerprint


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    meta = collect_metadata(args)
    env = child_environment()
    results: list[ScenarioResult] = []
    with tempfile.TemporaryDirectory(prefix="parallel_exec-bench-") as tmp:
        root = Path(tmp) if args.workdir is None else args.workdir.resolve()
        meta["workdir_note"] = (
            "a temporary directory, removed at exit; --workdir keeps the suites"
            if args.workdir is None
            else "kept"
        )
        progress(f"suites in {root}; PYTHONDONTWRITEBYTECODE removed for the runs")
        try:
            for name in args.scenario:
                results.append(
                    run_scenario(
                        SCENARIO_SPECS[name],
                        root,
                        args.repeat,
                        args.small,
                        args.full_warmup,
                        args.timeout,
                        env,
                        args.collection or (None,),
                    )
                )
        except (BenchmarkError, FileExistsError) as exc:
            finish_metadata(meta)
            print(f"\nbenchmark aborted: {exc}", file=sys.stderr)
            if meta["source_changed_during_run"]:
                print(SOURCE_CHANGED, file=sys.stderr)
            if args.json is not None:
                write_json(args.json, meta, results, error=str(exc))
            return 1
    finish_metadata(meta)
    print(render_report(meta, results))
    if args.json is not None:
        write_json(args.json, meta, results)
        progress(f"raw numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
