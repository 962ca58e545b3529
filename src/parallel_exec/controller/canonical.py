"""The canonical test list of a run, merged from the workers' collections.

With split collection each of the first workers collected a share of the files; the
canonical list puts their tests back in serial order (file walk order, then each file's
own order), so that the run has one numbering, one "collected N items" and one
``--junitxml`` order.  A full collection keeps the worker's own order, which carries
reorderings across files (``--ff``, ``--nf``, shuffling plugins).

Every worker walks the same tree, so the file lists must agree; when they do not, or
when full collections differ, the run stops with an error that names the first
differing ids instead of running a different suite on each worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import CollectionMismatchError
from ..wire import protocol


@dataclass(frozen=True)
class CanonicalCollection:
    nodeids: tuple[str, ...]
    #: The file (walk ordinal) of each test.
    test_files: tuple[int, ...]
    groups: tuple[str | None, ...]
    #: File ordinal -> the worker that has collected it (split collection only).
    owners: dict[int, str]
    collect_reports: tuple[dict[str, Any], ...]
    deselected: tuple[str, ...]
    warnings: tuple[protocol.SerializedWarning, ...]
    collection_failed: bool
    files: tuple[str, ...]
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index.update((nodeid, i) for i, nodeid in enumerate(self.nodeids))

    def keep(self, positions: Sequence[int]) -> CanonicalCollection:
        """Only the tests at ``positions`` (``--shard``): the others are deselected,
        after those the collection deselected itself."""
        kept = set(positions)
        return dataclasses.replace(
            self,
            nodeids=tuple(self.nodeids[i] for i in positions),
            test_files=tuple(self.test_files[i] for i in positions),
            groups=tuple(self.groups[i] for i in positions),
            deselected=self.deselected
            + tuple(n for i, n in enumerate(self.nodeids) if i not in kept),
            index={},
        )


def _first_difference(a: Sequence[str], b: Sequence[str]) -> tuple[list[str], list[str]]:
    set_a, set_b = set(a), set(b)
    only_a = [x for x in a if x not in set_b][:3]
    only_b = [x for x in b if x not in set_a][:3]
    return only_a, only_b


def _describe(what: str, first: str, a: Sequence[str], other: str, b: Sequence[str]) -> str:
    lines = [
        f"parallel_exec: workers collected different {what} "
        f"({first}: {len(a)}, {other}: {len(b)}); every worker must collect the same "
        "tests (random or time-dependent parametrization?)"
    ]
    only_a, only_b = _first_difference(a, b)
    if only_a:
        lines.append(f"  only {first}: " + ", ".join(only_a))
    if only_b:
        lines.append(f"  only {other}: " + ", ".join(only_b))
    if not (only_a or only_b):
        lines.append("  the same ids, but in a different number or order")
    return "\n".join(lines)


def merge_warnings(
    per_worker: Sequence[Sequence[protocol.SerializedWarning]],
) -> tuple[protocol.SerializedWarning, ...]:
    """Collection warnings of all workers, each as often as one worker saw it.

    pytest records collection warnings without a node id, so who "owns" one is not
    known: a module imported by one worker warns once, a conftest every worker imports
    warns in each.  Taking each warning as many times as the worker that saw it most
    often counts both as a serial run does.
    """
    most: dict[protocol.SerializedWarning, int] = {}
    for warnings in per_worker:
        seen: dict[protocol.SerializedWarning, int] = {}
        for warning in warnings:
            seen[warning] = seen.get(warning, 0) + 1
        for warning, count in seen.items():
            most[warning] = max(most.get(warning, 0), count)
    return tuple(w for w, count in most.items() for _ in range(count))


def merge(collections: Sequence[protocol.Collected], split: bool) -> CanonicalCollection:
    """One canonical collection from the share collections of the first workers."""
    first = collections[0]
    for other in collections[1:]:
        if other.files != first.files:
            raise CollectionMismatchError(
                _describe("test files", first.worker_id, first.files, other.worker_id, other.files)
            )
    entries: list[tuple[int, int, int, str, str, str | None]] = []
    for collected in collections:
        share_index = collected.share[0] if collected.share else 0
        for position, (nodeid, file, group) in enumerate(
            zip(collected.nodeids, collected.item_files, collected.item_groups, strict=True)
        ):
            entries.append((file, share_index, position, nodeid, collected.worker_id, group))
    if split:
        # Back to serial order: file walk order, then each worker's order in the file;
        # the rare test outside any file (a custom directory collector) goes last.
        entries.sort(key=lambda e: (e[0] < 0, *e[:3]))
    nodeids: list[str] = []
    test_files: list[int] = []
    groups: list[str | None] = []
    owners: dict[int, str] = {}
    seen: dict[str, str] = {}
    for file, _, _, nodeid, worker_id, group in entries:
        if nodeid in seen:
            if file < 0:
                continue  # not inside a file: every worker has it
            raise CollectionMismatchError(
                f"parallel_exec: {nodeid} was collected by both {seen[nodeid]} and {worker_id}"
            )
        seen[nodeid] = worker_id
        nodeids.append(nodeid)
        test_files.append(file)
        groups.append(group)
        if split and file >= 0:
            owners[file] = worker_id
    return CanonicalCollection(
        nodeids=tuple(nodeids),
        test_files=tuple(test_files),
        groups=tuple(groups),
        owners=owners,
        collect_reports=_in_walk_order(
            [r for c in collections for r in c.collect_reports], first.files
        ),
        deselected=tuple(dict.fromkeys(d for c in collections for d in c.deselected)),
        warnings=merge_warnings([c.warnings for c in collections]),
        collection_failed=any(c.collection_failed for c in collections),
        files=first.files,
    )


def _in_walk_order(
    reports: list[dict[str, Any]], files: Sequence[str]
) -> tuple[dict[str, Any], ...]:
    """Collection reports in the order a serial walk meets them: directory-level ones
    (no file) first, then by file."""
    ordinal = {path: i for i, path in enumerate(files)}

    def key(report: dict[str, Any]) -> int:
        return ordinal.get(str(report.get("nodeid", "")).split("::", 1)[0], -1)

    return tuple(sorted(reports, key=key))


def check_agrees(
    canonical: CanonicalCollection, first_worker: str, collected: protocol.Collected
) -> None:
    """A later worker's collection must match: the same files, and, if it collected
    every file, the same test ids."""
    if collected.files != canonical.files:
        raise CollectionMismatchError(
            _describe(
                "test files", first_worker, canonical.files, collected.worker_id, collected.files
            )
        )
    if collected.share == (0, 1):
        theirs = collected.nodeids
        if len(theirs) != len(canonical.nodeids) or set(theirs) != set(canonical.index):
            raise CollectionMismatchError(
                _describe("tests", first_worker, canonical.nodeids, collected.worker_id, theirs)
            )
