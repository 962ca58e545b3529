"""Options: declared once, registered on the command line and in ini, validated once.

Naming rule for ini keys (``pytest.ini`` / ``[tool.pytest.ini_options]``): the long option
name without the leading dashes, dashes turned into underscores, prefixed with
``parallel_exec_``.  ``--numprocesses`` is ``parallel_exec_numprocesses``,
``--max-worker-restart`` is ``parallel_exec_max_worker_restart``.  The command line wins
over an option's environment variable (``PARALLEL_EXEC_WORKERS`` for ``-n``), which wins
over ini, which wins over the default.  Every value, from either place, goes through the
same parser, and an invalid one is a usage error (exit code 4) naming the option.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from ._pytest_compat import ini_keys
from .cpus import logical_cpus, usable_cpus
from .errors import OptionError

MAX_WORKERS = 16
INI_PREFIX = "parallel_exec_"

#: ``--dist`` names, ours and pytest-xdist's, mapped to the strategy that runs them.
#: ``auto`` (the default) is ``time`` when the timing history knows tests, else ``load``.
DIST_ALIASES: dict[str, str] = {
    "auto": "auto",
    "load": "load",
    "time": "time",
    "file": "file",
    "suite": "suite",
    "round-robin": "round-robin",
    # pytest-xdist's names
    "worksteal": "time",
    "loadfile": "file",
    "loadscope": "suite",
    "loadgroup": "time",
    "no": "no",
}


@dataclass(frozen=True)
class WorkerCount:
    """A parsed ``-n`` value: a fixed count, or a rule resolved against the machine."""

    spec: str
    fixed: int | None = None
    #: The count asked for when it was above ``MAX_WORKERS`` (``fixed`` is then the cap).
    asked: int | None = None

    def resolve(self) -> int:
        if self.fixed is not None:
            return self.fixed
        cpus = logical_cpus() if self.spec == "logical" else usable_cpus()
        return min(MAX_WORKERS, cpus)

    @property
    def is_auto(self) -> bool:
        return self.spec in ("auto", "logical")

    def resolved_to(self, count: int) -> WorkerCount:
        """This ``auto``/``logical`` count, resolved to ``count`` workers (capped)."""
        if count > MAX_WORKERS:
            return WorkerCount(self.spec, MAX_WORKERS, asked=count)
        return WorkerCount(self.spec, max(0, count))


def parse_numprocesses(value: str) -> WorkerCount:
    """``N``, ``auto`` or ``logical``.  A count above ``MAX_WORKERS`` (an xdist
    configuration's ``-n 32``) is accepted and capped: the pool has 1-16 workers."""
    text = str(value).strip().lower()
    if text in ("auto", "logical"):
        return WorkerCount(spec=text)
    if not (text.isascii() and text.isdigit()):
        raise OptionError(
            f"expected a number of workers (0-{MAX_WORKERS}; more are capped at {MAX_WORKERS}), "
            f"'auto' or 'logical', got {value!r}"
        )
    count = int(text)
    if count > MAX_WORKERS:
        return WorkerCount(spec=text, fixed=MAX_WORKERS, asked=count)
    return WorkerCount(spec=text, fixed=count)


def parse_dist(value: str) -> str:
    text = str(value).strip().lower()
    if text not in DIST_ALIASES:
        choices = ", ".join(sorted(DIST_ALIASES))
        raise OptionError(f"unknown distribution strategy {value!r} (choose from: {choices})")
    return text


#: Options that keep a run in-process although workers were asked for, and their flags:
#: a debugger needs the test in this process; duplicate node ids cannot be told apart
#: between workers.
SERIAL_OPTIONS = {"usepdb": "--pdb", "trace": "--trace", "keepduplicates": "--keep-duplicates"}


#: ``imports`` (the default): every worker imports every test module, in walk order, as a
#: serial run does, but builds test items only for its share of the files; ``split``:
#: a worker imports only its share (cheaper, but a module that depends on another test
#: module's import side effects can fail); ``full``: every worker collects everything.
COLLECTION_MODES = ("imports", "split", "full")


def parse_collection(value: str) -> str:
    text = str(value).strip().lower()
    if text not in COLLECTION_MODES:
        raise OptionError(f"expected one of {', '.join(COLLECTION_MODES)}, got {value!r}")
    return text


START_METHODS = ("auto", "forkserver", "spawn")


def parse_start_method(value: str) -> str:
    text = str(value).strip().lower()
    if text not in START_METHODS:
        raise OptionError(f"expected one of {', '.join(START_METHODS)}, got {value!r}")
    if text == "forkserver" and not hasattr(os, "fork"):
        raise OptionError("'forkserver' needs os.fork, which this platform does not have")
    return text


def parse_bool(value: str) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise OptionError(f"expected true or false, got {value!r}")


def parse_non_negative_int(value: str) -> int:
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()):
        shown = text if text.lstrip("-").isdigit() else repr(value)
        raise OptionError(f"expected a whole number >= 0, got {shown}")
    return int(text)


def parse_seconds(value: str) -> float:
    text = str(value).strip().lower().removesuffix("s").strip()
    try:
        seconds = float(text)
    except ValueError:
        raise OptionError(f"expected a number of seconds, got {value!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise OptionError(f"expected a number of seconds >= 0, got {value!r}")
    return seconds


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}


def parse_size(value: str) -> int:
    """``500MB``, ``2GiB``, ``300mb``, a number of bytes; 0: no limit."""
    text = str(value).strip().lower().replace(" ", "")
    number = text.rstrip("kmgib")
    unit = text[len(number) :]
    try:
        size = float(number)
    except ValueError:
        size = -1.0
    if unit not in _SIZE_UNITS or not size >= 0 or size == float("inf"):
        raise OptionError(f"expected a size such as 500MB or 2GiB, got {value!r}")
    return int(size * _SIZE_UNITS[unit])


def parse_slow_after(value: str) -> float:
    """A number of seconds, or ``auto`` (-1: three times the test's predicted
    duration, at least 5 s)."""
    if str(value).strip().lower() == "auto":
        return -1.0
    try:
        return parse_seconds(value)
    except OptionError:
        raise OptionError(f"expected a number of seconds or 'auto', got {value!r}") from None


MAX_SHARDS = 1000


@dataclass(frozen=True)
class Shard:
    """``--shard I/N``: ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(value: str) -> Shard:
    """``I/N``: shard I (1-based) of N, 1 <= I <= N <= 1000."""
    text = str(value).strip()
    index, slash, count = text.partition("/")
    if not (slash and index.isascii() and index.isdigit() and count.isascii() and count.isdigit()):
        raise OptionError(f"expected I/N (shard I of N, such as 2/5), got {value!r}")
    i, n = int(index), int(count)
    if not 1 <= i <= n <= MAX_SHARDS:
        raise OptionError(f"expected 1 <= I <= N <= {MAX_SHARDS}, got {value!r}")
    return Shard(i, n)


def parse_run_id(value: str) -> str:
    text = str(value).strip()
    if not text or len(text) > 200 or any(c.isspace() for c in text):
        raise OptionError(f"expected an id without spaces (at most 200 characters), got {value!r}")
    return text


#: What ``--tx`` takes after the kind (xdist's names); other execnet keys are refused.
TX_KEYS = ("python", "chdir", "id", "ssh_config")
TX_KINDS = ("popen", "socket", "ssh")


@dataclass(frozen=True)
class TxSpec:
    """One ``--tx``: ``[N*]popen``, ``[N*]socket=HOST:PORT`` or ``[N*]ssh=[USER@]HOST``,
    with ``//python=``, ``//chdir=`` and ``//id=`` (pytest-xdist's syntax)."""

    count: int
    kind: str
    address: str = ""
    python: str | None = None
    chdir: str | None = None
    id: str | None = None
    #: ``ssh=`` only: the ssh configuration file (``ssh -F``).
    ssh_config: str | None = None

    @property
    def remote(self) -> bool:
        return self.kind != "popen"

    @property
    def name(self) -> str:
        """How messages and the header name the machine: its ``//id=``, or its address."""
        return self.id or f"{self.kind}={self.address}"

    @property
    def gateway_spec(self) -> str:
        """execnet's spec of the agent's gateway."""
        spec = f"{self.kind}={self.address}"
        for key in ("python", "chdir", "ssh_config"):
            value = getattr(self, key)
            if value:
                spec += f"//{key}={value}"
        return spec

    @property
    def machine(self) -> tuple[str, str, str | None, str | None, str | None]:
        """Specs naming the same machine, interpreter and directory share one agent."""
        return (self.kind, self.address, self.python, self.chdir, self.ssh_config)


def parse_tx_one(value: str) -> TxSpec:
    text = str(value).strip()
    count = 1
    head, star, rest = text.partition("*")
    if star:
        if not (head.isascii() and head.isdigit() and 1 <= int(head) <= MAX_WORKERS):
            raise OptionError(f"expected N*SPEC with 1 <= N <= {MAX_WORKERS}, got {value!r}")
        count, text = int(head), rest
    kind_part, *options = text.split("//")
    kind, _, address = kind_part.partition("=")
    if kind not in TX_KINDS:
        raise OptionError(
            f"expected popen, socket=HOST:PORT or ssh=[USER@]HOST (with //python=, //chdir=, "
            f"//id=), got {value!r}"
        )
    if kind == "socket":
        host, _, port = address.rpartition(":")
        if not (host and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise OptionError(f"expected socket=HOST:PORT, got {value!r}")
    elif kind == "ssh" and not address:
        raise OptionError(f"expected ssh=[USER@]HOST, got {value!r}")
    elif kind == "popen" and address:
        raise OptionError(f"expected popen without a value, got {value!r}")
    found: dict[str, str] = {}
    for option in options:
        key, eq, setting = option.partition("=")
        if key not in TX_KEYS or not eq or not setting:
            raise OptionError(
                f"{option!r} in {value!r}: the keys are //python=, //chdir=, //id= and, for "
                "ssh=, //ssh_config= (execnet's other keys are not supported)"
            )
        found[key] = setting
    if "ssh_config" in found and kind != "ssh":
        raise OptionError(f"{value!r}: //ssh_config= is for ssh=")
    if kind == "popen" and ("python" in found or "chdir" in found):
        raise OptionError(
            f"{value!r}: local workers run the controller's interpreter in its directory "
            "(//python= and //chdir= are for socket= and ssh=)"
        )
    return TxSpec(
        count,
        kind,
        address,
        found.get("python"),
        found.get("chdir"),
        found.get("id"),
        found.get("ssh_config"),
    )


def parse_tx(value: str | list[str]) -> tuple[TxSpec, ...]:
    """``--tx`` given any number of times (ini: one spec per line or word)."""
    items = value.split() if isinstance(value, str) else [str(v) for v in value]
    return tuple(parse_tx_one(item) for item in items if item.strip())


def combined_workers(workers: WorkerCount | None, tx: tuple[TxSpec, ...]) -> WorkerCount | None:
    """``-n``'s local workers plus every ``--tx``'s: the run's worker count."""
    if not tx:
        return workers
    base = workers.resolve() if workers is not None else 0
    total = base + sum(spec.count for spec in tx)
    if total > MAX_WORKERS:
        raise OptionError(
            f"at most {MAX_WORKERS} workers run; -n and --tx ask for {total} "
            f"({base} from -n, {total - base} from --tx)"
        )
    return WorkerCount(spec=workers.spec if workers is not None else str(total), fixed=total)


def remote_machines(tx: tuple[TxSpec, ...]) -> list[TxSpec]:
    """The remote machines of ``--tx``, one per machine (specs naming the same machine,
    interpreter and directory are one agent with their workers added up)."""
    merged: dict[tuple[str, str, str | None, str | None, str | None], TxSpec] = {}
    for spec in tx:
        if not spec.remote:
            continue
        known = merged.get(spec.machine)
        merged[spec.machine] = (
            spec if known is None else replace(known, count=known.count + spec.count)
        )
    return list(merged.values())


@dataclass(frozen=True)
class OptionSpec:
    flags: tuple[str, ...]
    dest: str
    parse: Callable[[str], Any]
    default: str | None
    metavar: str
    help: str
    flag: bool = False
    #: An environment variable that sets the option (below the command line, above ini).
    env: str | None = None
    #: Given any number of times (the values are collected in a list).
    repeat: bool = False

    @property
    def long_flag(self) -> str:
        return next(f for f in self.flags if f.startswith("--"))

    @property
    def ini_name(self) -> str:
        return INI_PREFIX + self.long_flag.lstrip("-").replace("-", "_")

    @property
    def display(self) -> str:
        return "/".join(self.flags)


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        flags=("-n", "--numprocesses"),
        dest="numprocesses",
        parse=parse_numprocesses,
        default=None,
        metavar="N|auto|logical",
        help=(
            f"run tests on N worker processes (1-{MAX_WORKERS}; more are capped at "
            f"{MAX_WORKERS}); 0 runs in this process. 'auto': CPUs usable by this process "
            "(affinity and cgroup quota; PYTEST_XDIST_AUTO_NUM_WORKERS and the "
            "pytest_xdist_auto_num_workers hook override it), 'logical': all logical "
            f"CPUs; both capped at {MAX_WORKERS} and at the number of collected tests. "
            "Environment: PARALLEL_EXEC_WORKERS."
        ),
        env="PARALLEL_EXEC_WORKERS",
    ),
    OptionSpec(
        flags=("--dist",),
        dest="dist",
        parse=parse_dist,
        default="auto",
        metavar="STRATEGY",
        help="how tests are shared between workers: auto (time when the timing history "
        "knows the tests, else load), load, time, file, suite, round-robin; "
        "pytest-xdist's worksteal, loadfile, loadscope, loadgroup and no are accepted "
        "(see docs/options.md).",
    ),
    OptionSpec(
        flags=("--collection",),
        dest="pe_collection",
        parse=parse_collection,
        default="imports",
        metavar="imports|split|full",
        help="'imports' (default): every worker imports every test module in collection "
        "order, as a serial run does, but builds the tests of its share of the files "
        "only; 'split': each worker imports only its share of the test modules (faster "
        "to collect, but a test module that relies on another test module having been "
        "imported, e.g. for a package submodule, can fail where it passes serially); "
        "'full': every worker collects every test, as pytest-xdist does (a collection "
        "that differs between workers is then detected at once).  'imports' and 'split' "
        "fall back to 'full' when a plugin reorders tests across files (pytest-randomly, "
        "pytest-order, pytest-repeat --repeat-scope=session, pytest-random-order) or with "
        "--lf, --ff, --nf, --sw.",
    ),
    OptionSpec(
        flags=("--start-method",),
        dest="pe_start_method",
        parse=parse_start_method,
        default="auto",
        metavar="auto|forkserver|spawn",
        help="how worker processes start: 'spawn' starts a new interpreter for each; "
        "'forkserver' starts one that imports pytest and forks the workers from it "
        "(POSIX); 'auto' (default): forkserver when there are more workers than CPUs.",
    ),
    OptionSpec(
        flags=("--history",),
        dest="pe_history",
        parse=str,
        default=None,
        metavar="PATH",
        help="the timing history file (default: parallel_exec/history.sqlite in pytest's "
        "cache directory).",
    ),
    OptionSpec(
        flags=("--no-history",),
        dest="pe_no_history",
        parse=parse_bool,
        default="false",
        metavar="",
        help="neither read nor write the timing history.",
        flag=True,
    ),
    OptionSpec(
        flags=("--report-outcome",),
        dest="pe_report_outcome",
        parse=str,
        default=None,
        metavar="PATH",
        help="write the run's learning-outcome record (JSON) to PATH.",
    ),
    OptionSpec(
        flags=("--report-junit",),
        dest="pe_report_junit",
        parse=str,
        default=None,
        metavar="PATH",
        help="write an enriched JUnit XML report (worker, attempts, run properties) to "
        "PATH; pytest's own --junitxml keeps working beside it (see docs/reports-junit.md).",
    ),
    OptionSpec(
        flags=("--report-junit-extended",),
        dest="pe_report_junit_extended",
        parse=parse_bool,
        default="false",
        metavar="",
        help="add to --report-junit what many consumers read but the common JUnit schema "
        "forbids: file and 1-based line per test case, earlier failed attempts as "
        "flakyFailure/rerunFailure elements.",
        flag=True,
    ),
    OptionSpec(
        flags=("--report-json",),
        dest="pe_report_json",
        parse=str,
        default=None,
        metavar="PATH",
        help="write a JSON report (schema: 'parallel-exec schema report') to PATH.",
    ),
    OptionSpec(
        flags=("--report-tap",),
        dest="pe_report_tap",
        parse=str,
        default=None,
        metavar="PATH",
        help="write a TAP version 13 report to PATH; '-' streams it to standard output "
        "as tests finish.",
    ),
    OptionSpec(
        flags=("--report-timeline",),
        dest="pe_report_timeline",
        parse=str,
        default=None,
        metavar="PATH",
        help="write the run's timeline to PATH, one self-contained HTML file: a lane per "
        "worker, a bar per test, the plan beside it, the run's figures (docs/timeline.md).",
    ),
    OptionSpec(
        flags=("--retries",),
        dest="pe_retries",
        parse=parse_non_negative_int,
        default="0",
        metavar="N",
        help="re-run a failed test up to N times, on another worker when one is free; a "
        "test that fails and then passes is reported as flaky (and passes).",
    ),
    OptionSpec(
        flags=("--fail-on-flaky",),
        # pytest-rerunfailures has a flag of this name and destination (see plugin.py).
        dest="fail_on_flaky",
        parse=parse_bool,
        default="false",
        metavar="",
        help="make the run fail (exit code 1) when a test was flaky.",
        flag=True,
    ),
    OptionSpec(
        flags=("--test-timeout",),
        dest="pe_test_timeout",
        parse=parse_seconds,
        default=None,
        metavar="SECONDS",
        help="end a test still running after SECONDS (setup, call and teardown) on a "
        "worker: its stacks are dumped, its worker is terminated and replaced, the test "
        "fails with 'Timeout: exceeded SECONDS s' and the run goes on (in-process runs: "
        "best effort, a SIGALRM timer; 0: off).",
    ),
    OptionSpec(
        flags=("--timeout-grace",),
        dest="pe_timeout_grace",
        parse=parse_seconds,
        default="5",
        metavar="SECONDS",
        help="after SIGTERM, how long a timed-out worker has before SIGKILL (default 5).",
    ),
    OptionSpec(
        flags=("--run-timeout",),
        dest="pe_run_timeout",
        parse=parse_seconds,
        default=None,
        metavar="SECONDS",
        help="end the whole run after SECONDS: running tests are ended as by "
        "--test-timeout, tests not started are reported as not run, every report is "
        "written, exit code 2 (0: off).",
    ),
    OptionSpec(
        flags=("--slow-after",),
        dest="pe_slow_after",
        parse=parse_slow_after,
        default=None,
        metavar="SECONDS|auto",
        help="print 'SLOW [gw1] test running for N s' for a test still running after "
        "SECONDS, and again each SECONDS; 'auto': 3 x its predicted duration from the "
        "timing history, at least 5 s (0: off, the default).",
    ),
    OptionSpec(
        flags=("--max-worker-memory",),
        dest="pe_max_worker_memory",
        parse=parse_size,
        default=None,
        metavar="SIZE",
        help="resident memory a worker and its processes may use (500MB, 2GiB): a test "
        "that takes it past the limit fails with MemoryError and its worker is replaced; "
        "a worker whose memory grows across tests is replaced between two tests before "
        "it gets there (0: off).",
    ),
    OptionSpec(
        flags=("--max-worker-tests",),
        dest="pe_max_worker_tests",
        parse=parse_non_negative_int,
        default=None,
        metavar="N",
        help="replace a worker after it ran N tests (0: never).",
    ),
    OptionSpec(
        flags=("--fail-on-leak",),
        dest="pe_fail_on_leak",
        parse=parse_bool,
        default="false",
        metavar="",
        help="fail the teardown of a test that leaves a process running (such processes "
        "are always reported, and ended with their worker).",
        flag=True,
    ),
    OptionSpec(
        flags=("--no-leak-check",),
        dest="pe_no_leak_check",
        parse=parse_bool,
        default="false",
        metavar="",
        help="do not look for processes tests leave running (they are still ended with "
        "their worker).",
        flag=True,
    ),
    OptionSpec(
        flags=("--tx",),
        dest="tx",
        parse=parse_tx,
        default=None,
        metavar="SPEC",
        help="more workers, as pytest-xdist's --tx (repeatable, added to -n's local "
        "workers): N*popen (local), N*socket=HOST:PORT (execnet's socket server), "
        "N*ssh=[USER@]HOST, with //python=PYTHON, //chdir=DIR (the project must be there, "
        "with the same parallel_exec installed) and //id=NAME. SECURITY: a socket server "
        "runs any code sent to it and workers' results are unpickled: only on loopback or "
        "a private network you control; prefer ssh=. See docs/remote.md.",
        repeat=True,
    ),
    OptionSpec(
        flags=("--live",),
        dest="pe_live",
        parse=parse_bool,
        default=None,
        metavar="BOOL",
        help="draw the live status (tests done, ETA, what each worker runs) at the bottom "
        "of a terminal; only on a TTY, never with -s or TERM=dumb (default: true).",
    ),
    OptionSpec(
        flags=("--no-live",),
        dest="pe_no_live",
        parse=parse_bool,
        default=None,
        metavar="",
        help="do not draw the live status (the same as --live=false).",
        flag=True,
    ),
    OptionSpec(
        flags=("--progress-every",),
        dest="pe_progress_every",
        parse=parse_seconds,
        default=None,
        metavar="SECONDS",
        help="where the live status is not drawn (a log, a pipe), print a progress line "
        "('parallel_exec: 812/2000 done, 3 failed, ETA 1m40s') every SECONDS; with -v "
        "every 30 s unless set; 0: never.",
    ),
    OptionSpec(
        flags=("--shard",),
        dest="pe_shard",
        parse=parse_shard,
        default=None,
        metavar="I/N",
        help="run shard I of N of the suite (a CI matrix of N jobs): every shard plans the "
        "same split from the collected tests and the timing history (longest first onto "
        "the least-loaded shard, groups kept whole); the other shards' tests are "
        "deselected. Environment: PARALLEL_EXEC_SHARD.",
        env="PARALLEL_EXEC_SHARD",
    ),
    OptionSpec(
        flags=("--shard-run-id",),
        dest="pe_shard_run_id",
        parse=parse_run_id,
        default=None,
        metavar="ID",
        help="the id of the whole matrix, written into each shard's reports (default: a "
        "digest of the plan's inputs). Environment: PARALLEL_EXEC_SHARD_RUN_ID.",
        env="PARALLEL_EXEC_SHARD_RUN_ID",
    ),
    OptionSpec(
        flags=("--max-worker-restart",),
        dest="maxworkerrestart",
        parse=parse_non_negative_int,
        default=None,
        metavar="N",
        help="how many crashed workers may be replaced (default: 4 x the number of workers).",
    ),
)


#: Each option by its destination.
OPTION_BY_DEST = {spec.dest: spec for spec in OPTIONS}


def _argparse_type(spec: OptionSpec) -> Callable[[str], Any]:
    def convert(value: str) -> Any:
        try:
            spec.parse(value)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    convert.__name__ = spec.dest
    return convert


def register(parser: pytest.Parser, shared: frozenset[str] = frozenset()) -> None:
    """Add every option and ini key; ``shared`` flags are defined by another plugin of
    this run with the same name and destination, so only their ini keys are added."""
    group = parser.getgroup("parallel_exec", "parallel execution (parallel_exec)")
    for spec in OPTIONS:
        if spec.long_flag in shared:
            parser.addini(spec.ini_name, help=spec.help, default=None)
            continue
        # pytest reserves lowercase short options for itself; "-n" is the one every
        # parallel plugin shares, so it is registered the way pytest-xdist does it.
        add = group._addoption if any(len(f) == 2 for f in spec.flags) else group.addoption
        kind: dict[str, Any] = (
            {"action": "store_const", "const": "true"}
            if spec.flag
            else {"type": _argparse_type(spec), "metavar": spec.metavar}
        )
        if spec.repeat:
            kind["action"] = "append"
        add(
            *spec.flags,
            dest=spec.dest,
            default=None,
            help=spec.help + f" [ini: {spec.ini_name}]",
            **kind,
        )
        parser.addini(spec.ini_name, help=spec.help, default=None)


@dataclass(frozen=True)
class Limits:
    """The guards' options: what the controller (``controller/guards.py``) and each
    worker (``worker/limits.py``) enforce on the tests."""

    #: ``--test-timeout`` (None: off) and ``--timeout-grace``.
    test_timeout: float | None = None
    timeout_grace: float = 5.0
    #: ``--run-timeout`` (None: off).
    run_timeout: float | None = None
    #: ``--slow-after``: seconds, -1 for ``auto`` (None: off).
    slow_after: float | None = None
    #: ``--max-worker-memory`` in bytes and ``--max-worker-tests`` (None: off).
    max_worker_memory: int | None = None
    max_worker_tests: int | None = None
    #: Processes tests leave running: ``report``, ``fail`` (``--fail-on-leak``) or ``off``.
    leak_check: str = "report"

    def worker_only(self) -> list[str]:
        """The flags given that only runs on workers apply."""
        given = (
            ("--run-timeout", self.run_timeout),
            ("--slow-after", self.slow_after),
            ("--max-worker-memory", self.max_worker_memory),
            ("--max-worker-tests", self.max_worker_tests),
            ("--fail-on-leak", self.leak_check == "fail"),
        )
        return [flag for flag, value in given if value]


@dataclass(frozen=True)
class Settings:
    """The validated options of one run."""

    workers: WorkerCount | None
    dist: str
    max_worker_restart: int | None
    collection: str = "imports"
    start_method: str = "auto"
    history: str | None = None
    no_history: bool = False
    report_outcome: str | None = None
    report_junit: str | None = None
    report_junit_extended: bool = False
    report_json: str | None = None
    report_tap: str | None = None
    report_timeline: str | None = None
    retries: int = 0
    fail_on_flaky: bool = False
    #: The guards' options.
    limits: Limits = field(default_factory=Limits)
    #: ``--shard I/N`` (None: the whole suite) and ``--shard-run-id``.
    shard: Shard | None = None
    shard_run_id: str | None = None
    #: ``--tx``: more workers, local or on other machines (``workers`` counts them).
    tx: tuple[TxSpec, ...] = ()
    #: The live status (``--live``/``--no-live``) and ``--progress-every`` (None: not
    #: set; 30 s with ``-v``).
    live: bool = True
    progress_every: float | None = None

    def strategy(self, known: bool) -> str:
        """The distribution strategy: ``--dist auto`` is ``time`` when the history
        ``known`` tests, else ``load``."""
        if self.dist != "auto":
            return self.dist
        return "time" if known else "load"

    @property
    def remote_workers(self) -> int:
        return sum(spec.count for spec in self.tx if spec.remote)

    @property
    def local_workers(self) -> int:
        return self.workers.resolve() - self.remote_workers if self.workers is not None else 0

    @property
    def forks_workers(self) -> bool:
        """Whether workers are forked from a fork server.  Forked workers skip starting
        an interpreter and importing pytest, which is what decides how soon the last of
        more workers than CPUs is ready; with a worker per CPU or fewer, spawning them
        side by side is as fast and needs no server."""
        if self.workers is None or self.start_method == "spawn":
            return False
        if not self.local_workers:
            return False
        return self.start_method == "forkserver" or self.local_workers > usable_cpus()

    @property
    def wants_parallel(self) -> bool:
        return wants_workers(self.workers, self.dist)


def wants_workers(workers: WorkerCount | None, dist: str) -> bool:
    """Workers asked for: a count that is not 0 (an unresolved ``auto`` never is) and a
    distribution that is not ``no``."""
    return workers is not None and DIST_ALIASES.get(dist, dist) != "no" and workers.fixed != 0


def serial_reason(getoption: Callable[[str], Any]) -> str | None:
    """The flag of an option that keeps a run in-process although workers were asked
    for (None: none is given)."""
    return next((flag for dest, flag in SERIAL_OPTIONS.items() if getoption(dest)), None)


def runs_parallel(workers: WorkerCount | None, dist: str, getoption: Callable[[str], Any]) -> bool:
    """The one rule for whether a run's tests run on workers, for the first parse of
    the command line as for the settings read from it."""
    return (
        wants_workers(workers, dist)
        and serial_reason(getoption) is None
        and not getoption("collectonly")
    )


#: Options naming a file written when the run ends; checked when the run starts.
REPORT_PATH_OPTIONS = frozenset(
    {
        "pe_report_outcome",
        "pe_report_junit",
        "pe_report_json",
        "pe_report_tap",
        "pe_report_timeline",
    }
)


def check_report_path(value: str, invocation_dir: Path, dest: str) -> None:
    """Refuse a report path that can never be written, as pytest refuses such a
    ``--junitxml``: an existing directory, or one below a parent that is a file.  Only
    looks (nothing is created before the run).  ``--report-tap -`` is standard output."""
    if not value or (value == "-" and dest == "pe_report_tap"):
        return
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = invocation_dir / path
    try:
        if path.is_dir():
            raise OptionError(f"{value!r} is a directory, expected a file name")
        parent = next((p for p in path.parents if p.exists()), None)
    except OSError:  # cannot look (permissions): writing the report will tell
        return
    if parent is not None and not parent.is_dir():
        raise OptionError(f"{value!r}: {str(parent)!r} is not a directory")


def raw_value(
    config: pytest.Config, spec: OptionSpec, getoption: Callable[[str], Any] | None = None
) -> tuple[Any, str]:
    """The option's unparsed value and where it came from: the command line, then its
    environment variable, then ini, then the default."""
    raw = (getoption or (lambda dest: config.getoption(dest, None)))(spec.dest)
    source = spec.display
    if raw is None and spec.env and os.environ.get(spec.env, "").strip():
        raw, source = os.environ[spec.env], f"{spec.env} (environment)"
    if raw is None:
        ini = config.getini(spec.ini_name)
        if ini not in (None, "", []):
            raw, source = ini, f"{spec.ini_name} (ini)"
    if raw is None:
        raw = spec.default
    return raw, source


def _value(config: pytest.Config, spec: OptionSpec) -> Any:
    raw, source = raw_value(config, spec)
    if raw is None:
        return None
    try:
        value = spec.parse(raw)
        if spec.dest in REPORT_PATH_OPTIONS:
            check_report_path(value, config.invocation_params.dir, spec.dest)
        return value
    except OptionError as exc:
        raise pytest.UsageError(f"parallel_exec: invalid value for {source}: {exc}") from None


AUTO_ENV = "PYTEST_XDIST_AUTO_NUM_WORKERS"


def resolve_auto(config: pytest.Config, workers: WorkerCount | None) -> WorkerCount | None:
    """``-n auto``/``logical`` as pytest-xdist resolves it: a plugin's
    ``pytest_xdist_auto_num_workers`` first, then ``PYTEST_XDIST_AUTO_NUM_WORKERS``, then
    the CPUs (resolved when asked).  A count above ``MAX_WORKERS`` is capped."""
    if workers is None or not workers.is_auto:
        return workers
    hook = getattr(config.hook, "pytest_xdist_auto_num_workers", None)
    count = hook(config=config) if hook is not None else None
    if count is None and os.environ.get(AUTO_ENV, "").strip():
        text = os.environ[AUTO_ENV].strip()
        if not (text.isascii() and text.isdigit()):
            raise pytest.UsageError(
                f"parallel_exec: invalid value for {AUTO_ENV} (environment): expected a "
                f"whole number of workers, got {text!r}"
            )
        count = int(text)
    return workers if count is None else workers.resolved_to(int(count))


def check_ini_keys(config: pytest.Config) -> None:
    """A misspelt ``parallel_exec_*`` key would leave the run silently serial (pytest
    only warns about an unknown key): it is a usage error naming the closest valid key."""
    valid = {spec.ini_name for spec in OPTIONS}
    for key in ini_keys(config):
        if key.startswith(INI_PREFIX) and key not in valid:
            close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.5)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else f"the keys are: {', '.join(sorted(valid))}"
            )
            raise pytest.UsageError(f"parallel_exec: unknown ini key {key!r}; {hint}")


def load(config: pytest.Config) -> Settings:
    """Read and validate every option; an invalid value raises ``pytest.UsageError``."""
    check_ini_keys(config)
    values = {spec.dest: _value(config, spec) for spec in OPTIONS}
    tx = values["tx"] or ()
    try:
        workers = combined_workers(resolve_auto(config, values["numprocesses"]), tx)
    except OptionError as exc:
        raise pytest.UsageError(f"parallel_exec: invalid value for --tx: {exc}") from None
    return Settings(
        workers=workers,
        dist=DIST_ALIASES[values["dist"]],
        max_worker_restart=values["maxworkerrestart"],
        collection=values["pe_collection"],
        start_method=values["pe_start_method"],
        history=values["pe_history"],
        no_history=bool(values["pe_no_history"]),
        report_outcome=values["pe_report_outcome"],
        report_junit=values["pe_report_junit"],
        report_junit_extended=bool(values["pe_report_junit_extended"]),
        report_json=values["pe_report_json"],
        report_tap=values["pe_report_tap"],
        report_timeline=values["pe_report_timeline"],
        retries=values["pe_retries"] or 0,
        fail_on_flaky=bool(values["fail_on_flaky"]),
        limits=Limits(
            test_timeout=values["pe_test_timeout"] or None,
            timeout_grace=values["pe_timeout_grace"],
            run_timeout=values["pe_run_timeout"] or None,
            slow_after=values["pe_slow_after"] or None,
            max_worker_memory=values["pe_max_worker_memory"] or None,
            max_worker_tests=values["pe_max_worker_tests"] or None,
            leak_check=_leak_check(values["pe_fail_on_leak"], values["pe_no_leak_check"]),
        ),
        shard=values["pe_shard"],
        shard_run_id=values["pe_shard_run_id"],
        tx=tx,
        live=values["pe_live"] is not False and not values["pe_no_live"],
        progress_every=values["pe_progress_every"],
    )


def _leak_check(fail: bool | None, off: bool | None) -> str:
    if fail and off:
        raise pytest.UsageError(
            "parallel_exec: --fail-on-leak and --no-leak-check contradict each other; "
            "give one of them"
        )
    return "fail" if fail else "off" if off else "report"
