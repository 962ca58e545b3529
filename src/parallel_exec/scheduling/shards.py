"""``--shard I/N``: which tests a shard of a CI matrix runs.  Pure: no I/O.

Every shard of the matrix collects the same suite and calls ``plan_shards`` with the same
inputs (the collected ids, their groups, their predicted durations): the plan is the same
on every machine.  It depends on nothing else: not on the order in which files were
walked (units are sorted by their own keys), the worker count inside a shard, the machine,
or hash randomisation (no ``set`` or ``dict`` order is used for decisions).

Units: a test alone, or the tests that must stay together (an ``xdist_group`` /
``parallel_exec_group``, a file for ``--dist file``, a class or module for ``--dist
suite``).  They go longest-predicted-first onto the least-loaded shard (LPT), ties to
the shard with fewer tests, then the lower number: while there are at least N units no
shard is left empty, and the largest shard is within LPT's bound of the optimum
(4/3 - 1/(3N) of it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from . import split_nodeid


@dataclass(frozen=True)
class ShardPlan:
    count: int
    #: The shard (0-based) of each test, in the order of the input.
    shard_of: tuple[int, ...]
    #: Predicted seconds of work per shard.
    loads: tuple[float, ...]
    #: Tests per shard.
    sizes: tuple[int, ...]
    #: Identifies the plan: the same on every shard of one matrix, different when the
    #: tests, their grouping or their assignment differ.
    fingerprint: str
    #: Identifies the plan's inputs (the tests, their predicted durations, N): the
    #: matrix's run id when none is given.
    inputs_digest: str
    #: No split of these units can end sooner: max(work / N, the longest unit).
    lower_bound: float

    def tests_of(self, shard: int) -> tuple[int, ...]:
        """Input positions of the tests of ``shard`` (0-based), in input order."""
        return tuple(i for i, s in enumerate(self.shard_of) if s == shard)


def shard_unit_key(strategy: str, nodeid: str, group: str | None) -> str:
    """The key of a test's unit: tests with one key go to one shard.  Keys name the
    tests themselves (never a collection ordinal), so they are the same on every shard."""
    if group is not None:
        return "group:" + group
    parts = split_nodeid(nodeid)
    if strategy == "file":
        return "file:" + parts[0]
    if strategy == "suite":
        return "suite:" + "::".join(parts[:2] if len(parts) > 2 else parts[:1])
    return "test:" + nodeid


def plan_shards(
    nodeids: Sequence[str],
    groups: Sequence[str | None],
    estimates: Sequence[float],
    count: int,
    strategy: str = "time",
) -> ShardPlan:
    if count < 1:
        raise ValueError("a matrix has at least one shard")
    units: dict[str, list[int]] = {}
    for i, (nodeid, group) in enumerate(zip(nodeids, groups, strict=True)):
        units.setdefault(shard_unit_key(strategy, nodeid, group), []).append(i)
    # Rounded so that a sum taken in another order cannot change a decision.
    weight = {
        key: round(sum(max(0.0, estimates[i]) for i in tests), 6) for key, tests in units.items()
    }
    order = sorted(units, key=lambda key: (-weight[key], key))
    loads = [0.0] * count
    sizes = [0] * count
    shard_of = [0] * len(nodeids)
    for key in order:
        target = min(range(count), key=lambda s: (round(loads[s], 6), sizes[s], s))
        loads[target] += weight[key]
        sizes[target] += len(units[key])
        for i in units[key]:
            shard_of[i] = target
    digest = hashlib.sha256()
    for key in sorted(units):
        digest.update(f"{key}\0{weight[key]!r}\0".encode())
        for i in sorted(units[key], key=lambda i: nodeids[i]):
            digest.update(nodeids[i].encode() + b"\0")
    digest.update(f"shards={count}\0".encode())
    inputs = digest.hexdigest()[:16]
    for i in sorted(range(len(nodeids)), key=lambda i: nodeids[i]):
        digest.update(f"{nodeids[i]}\0{shard_of[i]}\0".encode())
    total = sum(weight.values())
    return ShardPlan(
        count=count,
        shard_of=tuple(shard_of),
        loads=tuple(round(load, 6) for load in loads),
        sizes=tuple(sizes),
        fingerprint=digest.hexdigest()[:16],
        inputs_digest=inputs,
        lower_bound=max(total / count, max(weight.values(), default=0.0)),
    )
