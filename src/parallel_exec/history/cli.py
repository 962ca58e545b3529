"""The ``parallel-exec`` console script: inspect and move the timing history.

``parallel-exec history show``   the slowest tests and the recent runs' outcome records
``parallel-exec history export`` the whole history as JSON
``parallel-exec history import`` from such an export or pytest-split's ``.test_durations``
``parallel-exec history merge``  several stores or exports into one (CI shards)
``parallel-exec merge``          the reports of a matrix's shards (``--shard I/N``) as one
``parallel-exec timeline``       the timeline picture (HTML) of a ``--report-json`` file
``parallel-exec schema outcome`` the JSON schema of the learning-outcome record
``parallel-exec schema report``  the JSON schema of the ``--report-json`` file

Every failure is a one-line message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import HistoryError
from .store import HistoryStore, TestTiming

DEFAULT_HISTORY = Path(".pytest_cache") / "parallel_exec" / "history.sqlite"
EXPORT_FORMAT = "parallel_exec-history"
SQLITE_MAGIC = b"SQLite format 3\x00"


class CliError(Exception):
    """A problem to report in one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parallel-exec",
        description="Companion tool of the parallel_exec pytest plugin "
        "(run tests with: pytest -p parallel_exec -n auto).",
    )
    parser.add_argument("--version", action="version", version=f"parallel-exec {__version__}")
    commands = parser.add_subparsers(dest="command")

    history = commands.add_parser("history", help="inspect, export, import or merge history")
    path_help = (
        f"the history store (default: {DEFAULT_HISTORY}, the default of a run started in "
        "this directory); before or after the action"
    )
    history.add_argument("--path", type=Path, default=DEFAULT_HISTORY, help=path_help)
    # ``history show --path X`` as well as ``history --path X show``: the action's own
    # --path leaves the namespace alone when absent (SUPPRESS).
    path_after = argparse.ArgumentParser(add_help=False)
    path_after.add_argument("--path", type=Path, default=argparse.SUPPRESS, help=path_help)
    actions = history.add_subparsers(dest="action", required=True)
    show = actions.add_parser(
        "show", help="the slowest tests and the recent runs", parents=[path_after]
    )
    show.add_argument("--limit", type=int, default=15)
    export = actions.add_parser("export", help="write the history as JSON", parents=[path_after])
    export.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    imp = actions.add_parser(
        "import", help="read an export or pytest-split durations", parents=[path_after]
    )
    imp.add_argument("source", type=Path)
    imp.add_argument("--format", choices=("auto", "json", "pytest-split"), default="auto")
    merge = actions.add_parser(
        "merge", help="merge stores or exports into --path", parents=[path_after]
    )
    merge.add_argument("sources", type=Path, nargs="+")

    merge_reports = commands.add_parser(
        "merge",
        help="merge the reports of a matrix's shards (--shard I/N) into one report",
        description="Merge the JUnit XML reports of every shard of one matrix into one "
        "report, in the whole suite's order. Refuses reports of different plans, a "
        "missing or repeated shard, and a test reported twice.",
    )
    merge_reports.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    merge_reports.add_argument("inputs", type=Path, nargs="+", help="one report per shard")

    timeline = commands.add_parser(
        "timeline",
        help="draw the timeline of a run (one HTML file) from its --report-json file",
        description="Draw the timeline of a run from its JSON report (--report-json, or "
        "a merged one: a lane group per shard) into one self-contained HTML file.",
    )
    timeline.add_argument("report", type=Path, help="a --report-json file")
    timeline.add_argument("-o", "--output", type=Path, required=True, help="the HTML file")

    schema = commands.add_parser("schema", help="print a JSON schema")
    schema.add_argument("which", choices=("outcome", "report"))
    return parser


def _open(path: Path, create: bool) -> HistoryStore:
    if not create and not path.exists():
        raise CliError(f"no history at {path} (run the tests once, or pass --path)")
    try:
        return HistoryStore.open_strict(path, write=create)  # show, export: read-only will do
    except HistoryError as exc:
        raise CliError(f"{path} is not a usable history store: {exc}") from None


def export_data(store: HistoryStore) -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT,
        "schema_version": 1,
        "tests": [vars(t) for t in sorted(store.timings().values(), key=lambda t: t.nodeid)],
        "runs": [
            {"run_id": rid, "finished_at": at, "record": record}
            for rid, at, record in store.all_runs()
        ],
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not JSON: {exc}") from None


def _timings_from_export(data: Any, source: Path) -> tuple[list[TestTiming], list[Any]]:
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise CliError(f"{source} is not a parallel_exec history export")
    try:
        tests = [TestTiming(**row) for row in data.get("tests", [])]
        runs = [(r["run_id"], float(r["finished_at"]), r["record"]) for r in data.get("runs", [])]
    except (TypeError, KeyError, ValueError) as exc:
        raise CliError(f"{source}: malformed export ({exc})") from None
    return tests, runs


def _timings_from_pytest_split(data: Any, source: Path) -> list[TestTiming]:
    if isinstance(data, list) and all(
        isinstance(pair, list) and len(pair) == 2 for pair in data
    ):  # older pytest-split versions wrote a list of [nodeid, seconds] pairs
        data = dict(data)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) for k, v in data.items()
    ):
        raise CliError(f"{source} is not a pytest-split durations file (nodeid -> seconds)")
    now = time.time()
    return [
        TestTiming(
            nodeid=k,
            runs=1,
            mean=float(v),
            var=0.0,
            last_duration=float(v),
            last_outcome="unknown",
            last_seen=now,
        )
        for k, v in data.items()
    ]


def _load_source(source: Path, fmt: str = "auto") -> tuple[list[TestTiming], list[Any]]:
    try:
        head = source.read_bytes()[:16]
    except OSError as exc:
        raise CliError(f"cannot read {source}: {exc}") from None
    if fmt == "auto" and head == SQLITE_MAGIC:
        other = _open(source, create=False)
        try:
            return list(other.timings().values()), other.all_runs()
        finally:
            other.close()
    data = _read_json(source)
    if fmt == "pytest-split" or (
        fmt == "auto"
        and (
            isinstance(data, list)
            or (isinstance(data, dict) and data.get("format") != EXPORT_FORMAT)
        )
    ):
        return _timings_from_pytest_split(data, source), []
    return _timings_from_export(data, source)


def _show(store: HistoryStore, limit: int) -> None:
    slowest = store.slowest(limit)
    print(f"history: {store.path}")
    print(f"{len(store.timings())} tests known\n")
    print(f"{'mean s':>9} {'stdev':>7} {'runs':>5}  {'last':<8} test")
    for t in slowest:
        print(f"{t.mean:9.3f} {t.stdev:7.3f} {t.runs:5d}  {t.last_outcome:<8} {t.nodeid}")
    runs = store.runs(limit=5)
    if runs:
        print("\nrecent runs (newest first):")
        for r in runs:
            print(
                f"  {r.get('run_id', '?')[:12]} {r.get('strategy', '?'):<11} "
                f"workers={r.get('workers')} tests={r.get('tests_executed')} "
                f"wall={r.get('wall_time', 0):.2f}s speedup={r.get('speedup', 0):.2f}x "
                f"efficiency={r.get('efficiency', 0):.0%} reward={r.get('reward')}"
            )


def _history(args: argparse.Namespace) -> int:
    path: Path = args.path
    if args.action == "show":
        store = _open(path, create=False)
        _show(store, args.limit)
    elif args.action == "export":
        store = _open(path, create=False)
        text = json.dumps(export_data(store), indent=2, sort_keys=True) + "\n"
        if args.output:
            from ..files import write_atomically

            write_atomically(args.output, text)
        else:
            sys.stdout.write(text)
    elif args.action == "import":
        tests, runs = _load_source(args.source, args.format)
        store = _open(path, create=True)
        store.merge_timings(tests)
        store.merge_runs(runs)
        print(f"imported {len(tests)} tests and {len(runs)} runs into {path}")
    else:
        total = 0
        loaded = [_load_source(source) for source in args.sources]
        store = _open(path, create=True)
        for tests, runs in loaded:
            store.merge_timings(tests)
            store.merge_runs(runs)
            total += len(tests)
        print(f"merged {len(args.sources)} sources ({total} test rows) into {path}")
    store.close()
    return 0


def _timeline(report: Path, output: Path) -> int:
    from pydantic import ValidationError

    from ..reporting.timeline import write_timeline
    from ..reporting.writers.json_report import JsonReport

    try:
        data = json.loads(report.read_text(encoding="utf-8"))
        JsonReport.model_validate(data)
    except OSError as exc:
        raise CliError(f"cannot read {report}: {exc.strerror or exc}") from None
    except (ValueError, ValidationError) as exc:
        first = str(exc).strip().splitlines()
        raise CliError(
            f"{report} is not a parallel_exec JSON report (--report-json): "
            f"{first[0] if first else type(exc).__name__}"
        ) from None
    try:
        write_timeline(output, data)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
    print(f"wrote the timeline of {len(data.get('tests', []))} tests to {output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "history":
            try:
                return _history(args)
            except HistoryError as exc:
                raise CliError(str(exc)) from None
        if args.command == "merge":
            from ..reporting.merge import MergeError, merge_files

            try:
                print(merge_files(args.output, args.inputs))
            except (MergeError, OSError) as exc:
                raise CliError(str(exc)) from None
            return 0
        if args.command == "timeline":
            return _timeline(args.report, args.output)
        if args.command == "schema" and args.which == "report":
            from ..reporting.writers.json_report import schema_text

            sys.stdout.write(schema_text())
            return 0
        if args.command == "schema":
            from .learning import LearningOutcome

            print(json.dumps(LearningOutcome.model_json_schema(), indent=2, sort_keys=True))
            return 0
    except CliError as exc:
        print(f"parallel-exec: error: {exc}", file=sys.stderr)
        return 2
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
