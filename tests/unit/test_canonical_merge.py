"""``canonical.merge`` and ``check_agrees`` on plain ``protocol.Collected`` data.

With split collection each first-wave worker sends the tests of its share of the files;
``merge`` puts them back in serial order (file walk order, then each file's own order),
records which worker collected which file, and refuses collections that cannot describe
the same suite.  ``check_agrees`` holds every later worker to the canonical collection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parallel_exec.controller.canonical import CanonicalCollection, check_agrees, merge
from parallel_exec.errors import CollectionMismatchError, ParallelExecError
from parallel_exec.wire import protocol

FILES = ("pkg/test_a.py", "pkg/test_b.py", "test_c.py", "test_d.py")


def warning(message: str, nodeid: str = "") -> protocol.SerializedWarning:
    return protocol.SerializedWarning(
        message=message,
        category_module="builtins",
        category_name="UserWarning",
        filename="/src/conftest.py",
        lineno=3,
        line=None,
        when="collect",
        nodeid=nodeid,
        location=None,
    )


def report(nodeid: str) -> dict[str, Any]:
    return {"$report_type": "CollectReport", "nodeid": nodeid, "outcome": "failed"}


def collected(
    worker_id: str,
    share: tuple[int, int] | None,
    items: Iterable[tuple[str, int] | tuple[str, int, str | None]] = (),
    *,
    files: Sequence[str] = FILES,
    collect_reports: Sequence[dict[str, Any]] = (),
    deselected: Sequence[str] = (),
    warnings: Sequence[protocol.SerializedWarning] = (),
    collection_failed: bool = False,
) -> protocol.Collected:
    """A worker's collection: ``items`` are ``(nodeid, file ordinal[, group])`` in its
    order."""
    rows = [(item[0], item[1], item[2] if len(item) > 2 else None) for item in items]
    return protocol.Collected(
        worker_id=worker_id,
        share=share,
        files=tuple(files),
        nodeids=tuple(nodeid for nodeid, _, _ in rows),
        item_files=tuple(file for _, file, _ in rows),
        item_groups=tuple(group for _, _, group in rows),
        collect_reports=tuple(collect_reports),
        deselected=tuple(deselected),
        warnings=tuple(warnings),
        collection_failed=collection_failed,
    )


# gw0 holds share (0, 2): files 0 and 2; gw1 holds (1, 2): files 1 and 3.  Within a file
# the worker's own order is kept (test_c.py's tests are deliberately not alphabetical).
GW0 = collected(
    "gw0",
    (0, 2),
    [
        ("pkg/test_a.py::test_one", 0),
        ("pkg/test_a.py::test_two", 0),
        ("test_c.py::test_z", 2),
        ("test_c.py::test_b[2]", 2),
        ("test_c.py::test_b[1]", 2),
    ],
)
GW1 = collected(
    "gw1",
    (1, 2),
    [
        ("pkg/test_b.py::TestX::test_x", 1),
        ("test_d.py::test_last", 3),
    ],
)
SERIAL_ORDER = (
    "pkg/test_a.py::test_one",
    "pkg/test_a.py::test_two",
    "pkg/test_b.py::TestX::test_x",
    "test_c.py::test_z",
    "test_c.py::test_b[2]",
    "test_c.py::test_b[1]",
    "test_d.py::test_last",
)


def full(
    worker_id: str, nodeids: Sequence[str] = SERIAL_ORDER, **kwargs: Any
) -> protocol.Collected:
    """A ``--collection=full`` collection: every file, share ``(0, 1)``."""
    file_of = {f: i for i, f in enumerate(FILES)}
    items = [(n, file_of.get(n.split("::", 1)[0], -1)) for n in nodeids]
    return collected(worker_id, (0, 1), items, **kwargs)


# ---------------------------------------------------------------------------- merge


def test_shares_merge_back_into_file_walk_order() -> None:
    canonical = merge([GW0, GW1], split=True)
    assert canonical.nodeids == SERIAL_ORDER
    assert canonical.test_files == (0, 0, 1, 2, 2, 2, 3)
    assert canonical.files == FILES
    assert canonical.index == {nodeid: i for i, nodeid in enumerate(SERIAL_ORDER)}


def test_merge_does_not_depend_on_the_order_collections_arrive() -> None:
    assert merge([GW1, GW0], split=True).nodeids == SERIAL_ORDER


def test_groups_travel_with_their_tests() -> None:
    gw0 = collected("gw0", (0, 2), [("test_c.py::t1", 2, "db"), ("pkg/test_a.py::t", 0)])
    gw1 = collected("gw1", (1, 2), [("pkg/test_b.py::t", 1, "net"), ("test_d.py::t", 3, "db")])
    canonical = merge([gw0, gw1], split=True)
    assert canonical.nodeids == (
        "pkg/test_a.py::t",
        "pkg/test_b.py::t",
        "test_c.py::t1",
        "test_d.py::t",
    )
    assert canonical.groups == (None, "net", "db", "db")


def test_split_merge_records_who_collected_each_file() -> None:
    canonical = merge([GW0, GW1], split=True)
    assert canonical.owners == {0: "gw0", 1: "gw1", 2: "gw0", 3: "gw1"}


def test_files_without_tests_have_no_owner() -> None:
    only_a = collected("gw0", (0, 2), [("pkg/test_a.py::test_one", 0)])
    empty = collected("gw1", (1, 2))
    canonical = merge([only_a, empty], split=True)
    assert canonical.nodeids == ("pkg/test_a.py::test_one",)
    assert canonical.owners == {0: "gw0"}


def test_full_merge_keeps_one_collection_and_records_no_owners() -> None:
    canonical = merge([full("gw0")], split=False)
    assert canonical.nodeids == SERIAL_ORDER
    assert canonical.owners == {}


def test_three_shares() -> None:
    shares = [
        collected("gw0", (0, 3), [("pkg/test_a.py::t", 0), ("test_d.py::t", 3)]),
        collected("gw1", (1, 3), [("pkg/test_b.py::t", 1)]),
        collected("gw2", (2, 3), [("test_c.py::t", 2)]),
    ]
    canonical = merge(shares, split=True)
    assert canonical.nodeids == (
        "pkg/test_a.py::t",
        "pkg/test_b.py::t",
        "test_c.py::t",
        "test_d.py::t",
    )
    assert canonical.owners == {0: "gw0", 1: "gw1", 2: "gw2", 3: "gw0"}


def test_file_less_items_collected_by_every_worker_are_kept_once() -> None:
    # An item outside any file (a directory-level collector's) is collected by every
    # worker; it is one test, and nobody owns it.
    gw0 = collected("gw0", (0, 2), [("custom-item", -1), ("pkg/test_a.py::test_one", 0)])
    gw1 = collected("gw1", (1, 2), [("custom-item", -1), ("pkg/test_b.py::test_x", 1)])
    canonical = merge([gw0, gw1], split=True)
    assert canonical.nodeids.count("custom-item") == 1
    # Outside any file: placed after the files (serial order cannot be known here).
    assert canonical.nodeids == ("pkg/test_a.py::test_one", "pkg/test_b.py::test_x", "custom-item")
    assert canonical.test_files == (0, 1, -1)
    assert -1 not in canonical.owners
    assert canonical.owners == {0: "gw0", 1: "gw1"}


def test_a_test_id_inside_a_file_collected_twice_is_a_mismatch() -> None:
    gw0 = collected("gw0", (0, 2), [("test_c.py::test_z", 2)])
    gw1 = collected("gw1", (1, 2), [("test_c.py::test_z", 2)])
    with pytest.raises(CollectionMismatchError, match=r"test_c\.py::test_z") as info:
        merge([gw0, gw1], split=True)
    assert "gw0" in str(info.value)
    assert "gw1" in str(info.value)
    assert isinstance(info.value, ParallelExecError)


def test_differing_file_lists_name_the_first_differing_ids() -> None:
    gw1 = collected(
        "gw1", (1, 2), files=("pkg/test_a.py", "pkg/test_b.py", "test_other.py", "test_d.py")
    )
    with pytest.raises(CollectionMismatchError) as info:
        merge([GW0, gw1], split=True)
    message = str(info.value)
    assert message.startswith("parallel_exec: workers collected different test files")
    assert "(gw0: 4, gw1: 4)" in message
    assert "  only gw0: test_c.py" in message.splitlines()
    assert "  only gw1: test_other.py" in message.splitlines()
    assert "pkg/test_a.py" not in message  # only what differs is named


def test_differing_file_lists_name_at_most_three_ids_each() -> None:
    gw1 = collected("gw1", (1, 2), files=(*FILES, "t1.py", "t2.py", "t3.py", "t4.py"))
    with pytest.raises(CollectionMismatchError) as info:
        merge([GW0, gw1], split=True)
    lines = str(info.value).splitlines()
    assert "  only gw1: t1.py, t2.py, t3.py" in lines
    assert not any(line.startswith("  only gw0") for line in lines)


def test_file_lists_in_a_different_order_are_a_mismatch() -> None:
    gw1 = collected("gw1", (1, 2), files=tuple(reversed(FILES)))
    with pytest.raises(
        CollectionMismatchError, match="the same ids, but in a different number or order"
    ):
        merge([GW0, gw1], split=True)


def test_collection_failed_is_or_ed() -> None:
    failing = collected("gw1", (1, 2), collection_failed=True)
    assert merge([GW0, failing], split=True).collection_failed
    assert merge([failing, GW0], split=True).collection_failed
    assert not merge([GW0, GW1], split=True).collection_failed


def test_reports_deselected_and_warnings_are_taken_from_every_share() -> None:
    gw0 = collected(
        "gw0",
        (0, 2),
        [("pkg/test_a.py::test_one", 0)],
        collect_reports=[report("test_c.py")],
        deselected=["pkg/test_a.py::test_deselected"],
        warnings=[warning("from conftest"), warning("in a", "pkg/test_a.py")],
    )
    gw1 = collected(
        "gw1",
        (1, 2),
        [("pkg/test_b.py::test_x", 1)],
        collect_reports=[report("test_d.py")],
        deselected=["pkg/test_b.py::test_y", "test_d.py::test_z"],
        warnings=[warning("in b", "pkg/test_b.py")],
    )
    canonical = merge([gw0, gw1], split=True)
    assert sorted(r["nodeid"] for r in canonical.collect_reports) == ["test_c.py", "test_d.py"]
    assert sorted(canonical.deselected) == [
        "pkg/test_a.py::test_deselected",
        "pkg/test_b.py::test_y",
        "test_d.py::test_z",
    ]
    assert sorted(w.message for w in canonical.warnings) == ["from conftest", "in a", "in b"]


def test_empty_collections_merge_to_nothing() -> None:
    canonical = merge([collected("gw0", (0, 2)), collected("gw1", (1, 2))], split=True)
    assert canonical.nodeids == ()
    assert canonical.test_files == ()
    assert canonical.owners == {}
    assert canonical.index == {}


# ---------------------------------------------------------------------------- check_agrees


@pytest.fixture
def canonical() -> CanonicalCollection:
    return merge([GW0, GW1], split=True)


def test_full_collection_of_the_same_tests_agrees(canonical: CanonicalCollection) -> None:
    check_agrees(canonical, "gw0", full("gw2"))
    # The set is compared, not the order.
    check_agrees(canonical, "gw0", full("gw3", tuple(reversed(SERIAL_ORDER))))


def test_full_collection_with_other_ids_is_a_mismatch(canonical: CanonicalCollection) -> None:
    other = [*SERIAL_ORDER[:-1], "test_d.py::test_renamed"]
    with pytest.raises(CollectionMismatchError) as info:
        check_agrees(canonical, "gw0", full("gw2", other))
    message = str(info.value)
    assert message.startswith("parallel_exec: workers collected different tests (gw0: 7, gw2: 7)")
    assert "  only gw0: test_d.py::test_last" in message.splitlines()
    assert "  only gw2: test_d.py::test_renamed" in message.splitlines()


def test_full_collection_with_fewer_ids_is_a_mismatch(canonical: CanonicalCollection) -> None:
    with pytest.raises(CollectionMismatchError, match=r"\(gw0: 7, gw2: 6\)"):
        check_agrees(canonical, "gw0", full("gw2", SERIAL_ORDER[1:]))


def test_full_collection_with_a_duplicate_is_a_mismatch(canonical: CanonicalCollection) -> None:
    doubled = [*SERIAL_ORDER, SERIAL_ORDER[0]]
    with pytest.raises(CollectionMismatchError, match="different number or order"):
        check_agrees(canonical, "gw0", full("gw2", doubled))


def test_full_mode_first_wave_is_checked_against_the_first(
    canonical: CanonicalCollection,
) -> None:
    first = merge([full("gw0")], split=False)
    check_agrees(first, "gw0", full("gw1"))
    with pytest.raises(CollectionMismatchError, match=re.escape("only gw1: test_c.py::test_new")):
        check_agrees(first, "gw0", full("gw1", [*SERIAL_ORDER, "test_c.py::test_new"]))


@pytest.mark.parametrize("share", [None, (1, 2), (0, 2)])
def test_a_partial_collection_is_only_checked_for_its_files(
    canonical: CanonicalCollection, share: tuple[int, int] | None
) -> None:
    # A late joiner (share None) collected nothing; a share holder collected part: the
    # test ids cannot be compared, the walked files can.
    check_agrees(canonical, "gw0", collected("gw5", share, [("test_c.py::test_other", 2)]))


def test_later_worker_with_other_files_is_a_mismatch(canonical: CanonicalCollection) -> None:
    late = collected("gw5", None, files=FILES[:-1])
    with pytest.raises(CollectionMismatchError) as info:
        check_agrees(canonical, "gw0", late)
    message = str(info.value)
    assert "different test files (gw0: 4, gw5: 3)" in message
    assert "  only gw0: test_d.py" in message.splitlines()


def test_full_collection_with_other_files_is_a_mismatch(canonical: CanonicalCollection) -> None:
    with pytest.raises(CollectionMismatchError, match="different test files"):
        check_agrees(canonical, "gw0", full("gw2", files=(*FILES, "test_e.py")))


# ---------------------------------------------------------------------------- property


@st.composite
def split_suites(draw: st.DrawFn) -> tuple[list[str], list[int], int]:
    """A serial collection (ids in order, each one's file) and a number of shares."""
    file_count = draw(st.integers(0, 12))
    nodeids: list[str] = []
    files: list[int] = []
    for file in range(file_count):
        for test in range(draw(st.integers(0, 5))):
            nodeids.append(f"test_{file}.py::test_{draw(st.integers(0, 99))}_{test}")
            files.append(file)
    return nodeids, files, draw(st.integers(1, 6))


@settings(max_examples=200, deadline=None)
@given(split_suites())
def test_merging_any_split_restores_the_serial_collection(
    suite: tuple[list[str], list[int], int],
) -> None:
    nodeids, files, shares = suite
    file_names = tuple(f"test_{f}.py" for f in range(max(files, default=-1) + 1))
    collections = [
        collected(
            f"gw{k}",
            (k, shares),
            [(n, f) for n, f in zip(nodeids, files, strict=True) if f % shares == k],
            files=file_names,
        )
        for k in range(shares)
    ]
    canonical = merge(collections, split=True)
    assert list(canonical.nodeids) == nodeids
    assert list(canonical.test_files) == files
    assert canonical.owners == {f: f"gw{f % shares}" for f in set(files)}
    for collection in collections:
        check_agrees(canonical, "gw0", collection)
    check_agrees(
        canonical,
        "gw0",
        collected("gwfull", (0, 1), zip(nodeids, files, strict=True), files=file_names),
    )
