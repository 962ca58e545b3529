"""``parallel-exec merge``: the reports of a matrix's shards (``--shard I/N``) as one.

Every shard's report says which shard it is, of which matrix and of which plan (suite
properties ``parallel_exec.shard``, ``shard_run_id``, ``shard_plan``), and where each
of its tests stands in the whole suite's collection order (``shard_positions``).  The
merge refuses what cannot be one matrix's reports: mixed formats, different plans, a
shard given twice or missing, a test reported twice.  It then writes one report in the
inputs' format with the tests back in the suite's order, as an unsharded run writes it.

Merged: JUnit XML (pytest's ``--junitxml`` and ``--report-junit``, default or
extended), the JSON report (``--report-json``; ``workerStats`` kept per shard and
worker, as ``2/3:gw0``), the outcome records (``--report-outcome``: the matrix's
makespan against the largest shard's lower bound) and TAP (``--report-tap``: one plan;
its points stay in each shard's order of completion, shard after shard, renumbered).
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ParallelExecError
from ..files import write_atomically
from .events import decode_positions

PREFIX = "parallel_exec."
SHARD_PROPERTIES = {
    f"{PREFIX}shard",
    f"{PREFIX}shard_run_id",
    f"{PREFIX}shard_plan",
    f"{PREFIX}shard_positions",
}
#: A shard run's own figures (``--report-junit``): replaced by the matrix's.
RUN_PROPERTIES = {
    f"{PREFIX}run_id",
    f"{PREFIX}workers",
    f"{PREFIX}strategy",
    f"{PREFIX}exit_code",
    f"{PREFIX}aborted",
}
RESULT_TAGS = ("failure", "error", "skipped")


class MergeError(ParallelExecError):
    """Inputs that are not the reports of one matrix (one line, for the CLI)."""


@dataclass
class ShardId:
    """What every shard's report says of itself."""

    path: Path
    index: int
    count: int
    run_id: str
    plan: str


@dataclass
class ShardReport:
    path: Path
    index: int
    count: int
    run_id: str
    plan: str
    positions: list[int]
    root: ET.Element
    suite: ET.Element
    properties: list[tuple[str, str]]


def detect_format(path: Path) -> str:
    try:
        head = path.read_bytes()[:512].lstrip()
    except OSError as exc:
        raise MergeError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head.startswith(b"<"):
        return "junit"
    if head.startswith(b"{"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            return "unknown"
        if isinstance(data, dict) and "tests" in data and "summary" in data:
            return "json"
        if isinstance(data, dict) and "reward" in data:
            return "outcome"
        return "unknown"
    if head.startswith(b"TAP version"):
        return "tap"
    return "unknown"


def merge_files(output: Path, inputs: Sequence[Path]) -> str:
    """Merge ``inputs`` into ``output``; a line saying what was merged."""
    if not inputs:
        raise MergeError("no input report given")
    formats = {path: detect_format(path) for path in inputs}
    kinds = sorted(set(formats.values()))
    if len(kinds) > 1:
        listed = ", ".join(f"{p} ({k})" for p, k in formats.items())
        raise MergeError(f"the inputs are of different formats: {listed}")
    kind = kinds[0]
    if kind == "junit":
        shards = [read_junit(path) for path in inputs]
        text = merge_junit(shards)
        what = f"{text.count('<testcase ')} test cases"
    elif kind == "json":
        text, count = merge_json(inputs)
        what = f"{count} tests"
    elif kind == "outcome":
        text, count = merge_outcome_files(inputs)
        what = f"{count} tests"
    elif kind == "tap":
        text, count = merge_tap(inputs)
        what = f"{count} test points"
    else:
        raise MergeError(
            f"merging {kind} reports is not supported: merge the shards' JUnit XML, JSON "
            "reports or outcome records"
        )
    write_atomically(output, text)
    return f"merged {len(inputs)} shards ({what}) into {output}"


def read_junit(path: Path) -> ShardReport:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise MergeError(f"{path} is not a JUnit XML file: {exc}") from None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    if len(suites) != 1:
        raise MergeError(f"{path}: expected one <testsuite>, found {len(suites)}")
    suite = suites[0]
    properties = [
        (str(p.get("name", "")), str(p.get("value", "")))
        for p in suite.iterfind("properties/property")
    ]
    found = dict(properties)
    shard = found.get(f"{PREFIX}shard")
    if shard is None:
        raise MergeError(
            f"{path} is not the report of a shard (no {PREFIX}shard property: "
            "was it written by a run with --shard I/N?)"
        )
    try:
        index, count = (int(x) for x in shard.split("/"))
        positions = decode_positions(found.get(f"{PREFIX}shard_positions", ""))
    except ValueError:
        raise MergeError(f"{path}: damaged shard properties ({shard!r})") from None
    return ShardReport(
        path=path,
        index=index,
        count=count,
        run_id=found.get(f"{PREFIX}shard_run_id", ""),
        plan=found.get(f"{PREFIX}shard_plan", ""),
        positions=positions,
        root=root,
        suite=suite,
        properties=properties,
    )


def check_matrix(shards: Sequence[ShardReport | ShardId]) -> None:
    """One matrix, one plan, every shard exactly once."""
    first = shards[0]
    for shard in shards[1:]:
        if (shard.count, shard.plan) != (first.count, first.plan):
            raise MergeError(
                f"{shard.path} (shard {shard.index}/{shard.count}, plan {shard.plan}) and "
                f"{first.path} (shard {first.index}/{first.count}, plan {first.plan}) come "
                "from different plans: their shards did not plan from the same tests and "
                "history"
            )
    seen: dict[int, Path] = {}
    for shard in shards:
        if shard.index in seen:
            raise MergeError(
                f"shard {shard.index}/{shard.count} is given twice: {seen[shard.index]} "
                f"and {shard.path}"
            )
        seen[shard.index] = shard.path
    missing = [i for i in range(1, first.count + 1) if i not in seen]
    if missing:
        names = ", ".join(f"{i}/{first.count}" for i in missing)
        raise MergeError(f"missing shard{'s' if len(missing) > 1 else ''}: {names}")


def _key(case: ET.Element) -> tuple[str, str]:
    return (str(case.get("classname", "")), str(case.get("name", "")))


def _is_collection_case(case: ET.Element) -> bool:
    return any(
        child.tag in ("error", "skipped")
        and child.get("message") in ("collection failure", "collection skipped")
        for child in case
    )


def merge_junit(shards: Sequence[ShardReport]) -> str:
    check_matrix(shards)
    shards = sorted(shards, key=lambda s: s.index)
    collection_cases: dict[bytes, ET.Element] = {}
    placed: list[tuple[float, int, int, ET.Element]] = []
    owner: dict[tuple[str, str], ShardReport] = {}
    for shard in shards:
        tests: list[list[ET.Element]] = []
        for case in shard.suite.iterfind("testcase"):
            if _is_collection_case(case):
                collection_cases.setdefault(ET.tostring(case), case)
                continue
            if tests and _key(tests[-1][-1]) == _key(case):
                tests[-1].append(case)  # one test's several cases (a double failure)
            else:
                tests.append([case])
        aligned = len(tests) == len(shard.positions)
        for number, cases in enumerate(tests):
            key = _key(cases[0])
            if key in owner:
                raise MergeError(
                    f"{key[0]}::{key[1]} is reported twice: in {owner[key].path} and {shard.path}"
                )
            owner[key] = shard
            # A shard cut short (-x, an interrupt) has fewer cases than tests: its cases
            # keep their own order, after the others.
            position = shard.positions[number] if aligned else math.inf
            for case in cases:
                placed.append((position, shard.index, number, case))
    placed.sort(key=lambda p: p[:3])
    cases = [*collection_cases.values(), *(p[3] for p in placed)]
    return _render(shards, cases)


def _render(shards: Sequence[ShardReport], cases: Sequence[ET.Element]) -> str:
    first = shards[0]
    counts = {tag: sum(1 for c in cases if c.find(tag) is not None) for tag in RESULT_TAGS}
    times = [float(s.suite.get("time", "0") or 0) for s in shards]
    stamps = sorted(str(s.suite.get("timestamp")) for s in shards if s.suite.get("timestamp"))
    suite = ET.Element("testsuite", dict(first.suite.attrib))
    suite.set("errors", str(counts["error"]))
    suite.set("failures", str(counts["failure"]))
    suite.set("skipped", str(counts["skipped"]))
    suite.set("tests", str(len(cases)))
    suite.set("time", f"{max(times):.3f}")
    if stamps:
        suite.set("timestamp", stamps[0])
    properties = _merged_properties(shards)
    if properties:
        block = ET.SubElement(suite, "properties")
        for name, value in properties:
            ET.SubElement(block, "property", {"name": name, "value": value})
    suite.extend(cases)
    if first.root.tag == "testsuites":
        root = ET.Element("testsuites", dict(first.root.attrib))
        for name, value in (
            ("tests", str(len(cases))),
            ("failures", str(counts["failure"])),
            ("errors", str(counts["error"])),
            ("time", f"{max(times):.3f}"),
        ):
            if name in root.attrib:
                root.set(name, value)
        root.append(suite)
    else:
        root = suite
    for element in root.iter():  # laid out anew, indented as the inputs were
        if len(element):
            element.text = None
        element.tail = None
    if (first.suite.text or "").strip(" ") or (first.suite.tail or "").strip(" "):
        ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _merged_properties(shards: Sequence[ShardReport]) -> list[tuple[str, str]]:
    """The shards' own properties once each (a ``record_testsuite_property`` every shard
    recorded), then the matrix's: its id, plan, shard count and worst exit code."""
    merged: list[tuple[str, str]] = []
    run: dict[str, list[str]] = {}
    for shard in shards:
        for name, value in shard.properties:
            if name in SHARD_PROPERTIES:
                continue
            if name in RUN_PROPERTIES:
                run.setdefault(name, []).append(value)
            elif (name, value) not in merged:
                merged.append((name, value))
    first = shards[0]
    merged.append((f"{PREFIX}shard_run_id", first.run_id))
    merged.append((f"{PREFIX}shard_plan", first.plan))
    merged.append((f"{PREFIX}shards", str(first.count)))
    if f"{PREFIX}exit_code" in run:
        merged.append((f"{PREFIX}exit_code", str(max(int(v) for v in run[f"{PREFIX}exit_code"]))))
    return merged


# ---------------------------------------------------------------------- JSON report


def _shard_id(path: Path, label: str | None, run_id: str | None, plan: str | None) -> ShardId:
    if not label:
        raise MergeError(
            f"{path} is not the report of a shard (no shard: was it written by a run with "
            "--shard I/N?)"
        )
    try:
        index, count = (int(x) for x in label.split("/"))
    except ValueError:
        raise MergeError(f"{path}: damaged shard ({label!r})") from None
    return ShardId(path, index, count, run_id or "", plan or "")


def _on_shard(test: Any, ident: ShardId) -> Any:
    """A shard's test record with its workers named as the merged report names them
    (``2/3:gw0``: every shard has its own ``gw0``)."""
    prefix = f"{ident.index}/{ident.count}:"
    earlier = [a.model_copy(update={"worker": prefix + a.worker}) for a in test.attempts.earlier]
    return test.model_copy(
        update={
            "worker": prefix + test.worker if test.worker else test.worker,
            "attempts": test.attempts.model_copy(update={"earlier": earlier}),
        }
    )


def merge_json(paths: Sequence[Path]) -> tuple[str, int]:
    from pydantic import ValidationError

    from .writers.json_report import JsonReport, ShardInfo, Summary

    reports: list[tuple[ShardId, JsonReport]] = []
    for path in paths:
        try:
            report = JsonReport.model_validate_json(path.read_bytes())
        except (ValidationError, OSError) as exc:
            raise MergeError(f"{path} is not a parallel_exec JSON report: {exc}") from None
        info = report.shard
        ident = _shard_id(
            path,
            info.shard if info else None,
            info.run_id if info else None,
            info.plan if info else None,
        )
        reports.append((ident, report))
    check_matrix([ident for ident, _ in reports])
    reports.sort(key=lambda r: r[0].index)
    tests = []
    owner: dict[str, Path] = {}
    for ident, report in reports:
        assert report.shard is not None
        for number, test in enumerate(report.tests):
            if test.nodeid in owner:
                raise MergeError(
                    f"{test.nodeid} is reported twice: in {owner[test.nodeid]} and {ident.path}"
                )
            owner[test.nodeid] = ident.path
            position = report.shard.positions.get(test.nodeid, math.inf)
            tests.append((position, ident.index, number, _on_shard(test, ident)))
    tests.sort(key=lambda t: t[:3])
    first_id, first = reports[0]
    shards = [r for _, r in reports]
    suite_tests = len(tests) + sum(r.summary.not_reached for r in shards)
    summary = Summary(
        total=len(tests),
        passed=sum(r.summary.passed for r in shards),
        failed=sum(r.summary.failed for r in shards),
        error=sum(r.summary.error for r in shards),
        skipped=sum(r.summary.skipped for r in shards),
        xfailed=sum(r.summary.xfailed for r in shards),
        xpassed=sum(r.summary.xpassed for r in shards),
        flaky=sum(r.summary.flaky for r in shards),
        not_run=sum(r.summary.not_run for r in shards),
        crashed=sum(r.summary.crashed for r in shards),
        collection_errors=max(r.summary.collection_errors for r in shards),
        # Each shard deselected the others' tests too: what the suite itself deselected.
        deselected=min(
            r.summary.deselected - (suite_tests - r.summary.total - r.summary.not_reached)
            for r in shards
        ),
        not_reached=sum(r.summary.not_reached for r in shards),
    )
    errors = {e.nodeid: e for r in shards for e in r.collection_errors}
    strategies = {r.strategy for r in shards}
    started = min(r.started for r in shards)
    finished = max(r.finished for r in shards)
    outcomes = [r.learning_outcome for r in shards if r.learning_outcome is not None]
    merged = first.model_copy(
        update={
            "run_id": first_id.run_id,
            "strategy": strategies.pop() if len(strategies) == 1 else "mixed",
            "planned_workers": sum(r.planned_workers or 0 for r in shards),
            "created": max(r.created for r in shards),
            "started": started,
            "finished": finished,
            "duration": round((finished - started).total_seconds(), 6),
            "exit_code": max(r.exit_code for r in shards),
            "aborted": any(r.aborted for r in shards),
            "passed": summary.passed,
            "failed": summary.failed,
            "skipped": summary.skipped,
            "summary": summary,
            "worker_stats": {
                f"{ident.index}/{ident.count}:{worker}": stats
                for ident, r in reports
                for worker, stats in r.worker_stats.items()
            },
            "workers": [
                w.model_copy(update={"id": f"{ident.index}/{ident.count}:{w.id}"})
                for ident, r in reports
                for w in r.workers
            ],
            "collection_errors": list(errors.values()),
            "tests": [t[3] for t in tests],
            "learning_outcome": merge_outcomes(outcomes) if len(outcomes) == len(shards) else None,
            "plan": None,
            "shard": ShardInfo(
                shard=f"1-{first_id.count}/{first_id.count}",
                run_id=first_id.run_id,
                plan=first_id.plan,
                positions={},
            ),
        }
    )
    text = json.dumps(merged.model_dump(mode="json", by_alias=True), indent=2, ensure_ascii=False)
    return text + "\n", len(tests)


# ---------------------------------------------------------------------- outcome records


def merge_outcome_files(paths: Sequence[Path]) -> tuple[str, int]:
    from pydantic import ValidationError

    from ..history.learning import LearningOutcome

    records = []
    for path in paths:
        try:
            record = LearningOutcome.model_validate_json(path.read_bytes())
        except (ValidationError, OSError) as exc:
            raise MergeError(f"{path} is not a parallel_exec outcome record: {exc}") from None
        records.append(
            (_shard_id(path, record.shard, record.shard_run_id, record.shard_plan), record)
        )
    check_matrix([ident for ident, _ in records])
    merged = merge_outcomes([r for _, r in sorted(records, key=lambda r: r[0].index)])
    return merged.model_dump_json(indent=2) + "\n", merged.tests_executed


def merge_outcomes(records: Sequence[Any]) -> Any:
    """One record for the matrix: counts summed, the makespan the largest shard's wall,
    against the largest shard's lower bound."""
    from ..history.learning import LearningOutcome

    first: LearningOutcome = records[0]

    def total(name: str) -> Any:
        return sum(getattr(r, name) for r in records)

    wall = max(r.wall_time for r in records)
    work = total("sequential_estimate")
    workers = max(1, total("workers"))
    lower = max(r.lower_bound for r in records)
    predicted = [r.predicted_makespan for r in records]
    strategies = {r.strategy for r in records}
    return first.model_copy(
        update={
            "run_id": first.shard_run_id or first.run_id,
            "strategy": strategies.pop() if len(strategies) == 1 else "mixed",
            "workers": workers,
            **{
                name: total(name)
                for name in (
                    "tests_executed",
                    "passed",
                    "failed",
                    "skipped",
                    "errors",
                    "not_run",
                    "stragglers",
                    "retries",
                    "worker_failures",
                    "timed_out",
                    "over_memory",
                    "slow_tests",
                    "recycled_workers",
                    "leaked_processes",
                )
            },
            "wall_time": wall,
            "sequential_estimate": round(work, 6),
            "speedup": round(work / wall, 4) if wall > 0 else 0.0,
            "efficiency": round(min(1.0, work / (workers * wall)), 4) if wall > 0 else 0.0,
            "balance": min(r.balance for r in records),
            "straggler_tests": [s for r in records for s in r.straggler_tests],
            "predicted_makespan": None if None in predicted else max(predicted),
            "actual_makespan": wall,
            "lower_bound": lower,
            "actual_over_lower_bound": round(wall / lower, 4) if lower > 0 else None,
            "flaky_tests": [t for r in records for t in r.flaky_tests],
            "reward": min(r.reward for r in records),
            "shard": None,
            "shard_predicted_work": None,
        }
    )


# ---------------------------------------------------------------------- TAP


_SHARD_LINE = re.compile(r"^# parallel_exec shard (\d+/\d+) of matrix (\S+), plan (\S+)$")
_ONE_SHARD_ONLY = re.compile(r"^(1\.\.\d+|# parallel_exec (shard|run) )")
_POINT = re.compile(r"^(not ok|ok) (\d+)(?: - (.*?))?(\s+#\s+(?:SKIP|TODO).*)?$")


def merge_tap(paths: Sequence[Path]) -> tuple[str, int]:
    parsed = []
    for path in paths:
        lines = path.read_text(encoding="utf-8").splitlines()
        found = next((m for m in map(_SHARD_LINE.match, lines) if m), None)
        ident = _shard_id(path, *(found.groups() if found else (None, None, None)))
        parsed.append((ident, lines))
    check_matrix([ident for ident, _ in parsed])
    parsed.sort(key=lambda p: p[0].index)
    out = [
        "TAP version 13",
        f"# parallel_exec merged matrix {parsed[0][0].run_id}: {parsed[0][0].count} shards, "
        f"plan {parsed[0][0].plan}",
    ]
    count = 0
    bailed = []
    owner: dict[str, Path] = {}
    seen_collection: set[str] = set()
    for ident, lines in parsed:
        skipping = False
        for line in lines[1:]:
            point = _POINT.match(line)
            if point:
                name = point.group(3) or ""
                skipping = False
                if name.startswith("ERROR collecting "):
                    if name in seen_collection:
                        skipping = True  # every shard collected it: once
                        continue
                    seen_collection.add(name)
                elif name in owner:
                    raise MergeError(f"{name} is reported twice: in {owner[name]} and {ident.path}")
                owner[name] = ident.path
                count += 1
                directive = point.group(4) or ""
                out.append(f"{point.group(1)} {count} - {name}{directive}")
            elif line.startswith("Bail out!"):
                bailed.append(f"{ident.index}/{ident.count}: {line[len('Bail out!') :].strip()}")
            elif _ONE_SHARD_ONLY.match(line):
                continue  # its plan, which shard it was, its run: the merge says its own
            elif not skipping:
                out.append(line)
    out.append(f"1..{count}" if count else "1..0 # SKIP no tests ran")
    if bailed:
        out.append("Bail out! " + "; ".join(bailed))
    return "".join(f"{line}\n" for line in out), count
