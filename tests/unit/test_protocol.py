"""Every wire message survives ``encode``/``decode`` unchanged; nothing else decodes."""

from __future__ import annotations

import pickle
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parallel_exec.scheduling import base as scheduling
from parallel_exec.wire import protocol

WARNING = protocol.SerializedWarning(
    message="deprecated thing",
    category_module="builtins",
    category_name="DeprecationWarning",
    filename="/src/tests/test_x.py",
    lineno=12,
    line=None,
    when="runtest",
    nodeid="tests/test_x.py::test_a",
    location=("tests/test_x.py", 11, "test_a"),
)

REPORT = {
    "$report_type": "TestReport",
    "nodeid": "tests/test_x.py::test_a",
    "location": ("tests/test_x.py", 11, "test_a"),
    "keywords": {"test_a": 1},
    "outcome": "passed",
    "longrepr": None,
    "when": "call",
    "sections": [("Captured stdout call", "hello\n")],
    "duration": 0.25,
    "user_properties": [("k", "v")],
}

EXAMPLES: list[protocol.Message] = [
    protocol.WorkerSetup(
        worker_id="gw0",
        worker_count=4,
        run_id="abc123",
        protocol_version=protocol.PROTOCOL_VERSION,
        package_version="0.1.0",
        args=["-p", "parallel_exec", "-n", "4", "tests"],
        option_dict={"verbose": 2, "markexpr": "not slow"},
        invocation_dir="/src",
        sys_path=["/src", "/venv/lib"],
        basetemp="/tmp/base/gw0",
        progress_path="/tmp/run/gw0.progress",
        capture_off=False,
        share=(1, 4),
    ),
    protocol.WorkerSetup(
        worker_id="gw5",
        worker_count=4,
        run_id="abc123",
        protocol_version=protocol.PROTOCOL_VERSION,
        package_version="0.1.0",
        args=[],
        option_dict={},
        invocation_dir="/src",
        sys_path=[],
        basetemp="/tmp/base/gw5",
        progress_path="/tmp/run/gw5.progress",
        capture_off=True,
        share=None,  # a replacement: collects nothing up front
    ),
    protocol.Assign(
        nodeids=("tests/test_x.py::test_a", "tests/test_y.py::test_b[ü-[x]]"),
        indices=(0, 5),
    ),
    protocol.Assign(nodeids=(), indices=()),
    protocol.Drain(),
    protocol.Stop(reason="-x: 1 failed"),
    protocol.Release(indices=(7, 9)),
    protocol.Hello(worker_id="gw1", pid=4242, python="3.12.1", package_version="0.1.0"),
    protocol.Collected(
        worker_id="gw0",
        share=(0, 2),
        files=("tests/bad.py", "tests/test_x.py", "tests/test_y.py"),
        nodeids=("tests/test_x.py::test_a", "tests/test_x.py::test_b[1-2]", "doctest-thing"),
        item_files=(1, 1, -1),
        item_groups=("db", None, None),
        collect_reports=({"$report_type": "CollectReport", "nodeid": "tests/bad.py"},),
        deselected=("tests/test_x.py::test_c",),
        warnings=(WARNING,),
        collection_failed=True,
    ),
    protocol.Collected(
        worker_id="gw3",
        share=None,
        files=(),
        nodeids=(),
        item_files=(),
        item_groups=(),
        collect_reports=(),
        deselected=(),
        warnings=(),
        collection_failed=False,
    ),
    protocol.NotFound(worker_id="gw1", nodeids=("tests/test_x.py::test_gone[3]",)),
    protocol.Progress(worker_id="gw2"),
    protocol.Progress(
        worker_id="gw2",
        tests=(
            protocol.TestRecord(
                nodeid="tests/test_x.py::test_a",
                location=("tests/test_x.py", 11, "test_a"),
                reports=(REPORT,),
                warnings=(WARNING,),
            ),
            protocol.TestRecord(
                nodeid="tests/test_y.py::test_b",
                location=("tests/test_y.py", None, "test_b"),
                reports=(),
            ),
        ),
        warnings=(WARNING,),
        want_more=True,
        queued=7,
    ),
    protocol.SessionFinished(
        worker_id="gw0",
        exitstatus=1,
        workeroutput={"cov": [1, 2]},
        junit_properties=(("build", "42"), ("host", "ci")),
    ),
    protocol.SessionFinished(worker_id="gw0", exitstatus=0),
    protocol.WorkerError(worker_id="gw3", traceback="Traceback...\nRuntimeError: boom\n"),
    protocol.WorkerError(worker_id="gw3", traceback="bad option --foo", kind="usage"),
    protocol.Exited(worker_id="gw1", reason="enough", returncode=7),
    protocol.Released(worker_id="gw1", indices=(9,)),
    protocol.ForkWorker(worker_id="gw4", nice=10, environ={"PATH": "/bin", "LANG": "C.UTF-8"}),
    protocol.KillWorker(worker_id="gw4"),
    protocol.WorkerForked(worker_id="gw4", pid=4243),
    protocol.ForkFailed(worker_id="gw5", error="[Errno 11] Resource temporarily unavailable"),
    protocol.WorkerExited(worker_id="gw4", returncode=-11),
]


def message_classes() -> set[type[Any]]:
    return set(typing.get_args(protocol.Message))


def test_examples_cover_every_message_class() -> None:
    assert {type(m) for m in EXAMPLES} == message_classes()


def test_message_types_are_every_message_class() -> None:
    assert set(protocol.MESSAGE_TYPES) == message_classes()
    assert protocol.NotFound in protocol.MESSAGE_TYPES
    worker_side = set(typing.get_args(protocol.WorkerMessage))
    controller_side = set(typing.get_args(protocol.ControllerMessage))
    to_fork_server = set(typing.get_args(protocol.ForkServerRequest))
    from_fork_server = set(typing.get_args(protocol.ForkServerMessage))
    sides = (worker_side, controller_side, to_fork_server, from_fork_server)
    assert set().union(*sides) == message_classes()
    assert sum(len(side) for side in sides) == len(message_classes())  # disjoint


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message: protocol.Message) -> None:
    payload = protocol.encode(message)
    assert isinstance(payload, bytes)
    decoded = protocol.decode(payload)
    assert type(decoded) is type(message)
    assert decoded == message


@pytest.mark.parametrize(
    "thing",
    [
        None,
        {"kind": "assign", "indices": [1, 2]},
        ("Assign", (1, 2)),
        b"bytes",
        WARNING,  # part of a message, not a message
        protocol.TestRecord(nodeid="t.py::t", location=("t.py", 1, "t"), reports=()),
        scheduling.Assign("gw0", (1,)),  # same name, other module
        scheduling.Drain("gw0"),
    ],
    ids=repr,
)
def test_decode_rejects_non_messages(thing: object) -> None:
    with pytest.raises(TypeError, match="not a parallel_exec protocol message"):
        protocol.decode(pickle.dumps(thing))


def test_messages_are_frozen() -> None:
    message = protocol.Assign(nodeids=("t.py::t",), indices=(1,))
    with pytest.raises(AttributeError):
        message.indices = (2,)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        message.nodeids = ()  # type: ignore[misc]


# ---------------------------------------------------------------------------- property

# Values that compare equal to themselves after a pickle round trip (no NaN).
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10) | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
reports = st.dictionaries(st.text(max_size=8), json_like, max_size=4)
warnings_ = st.builds(
    protocol.SerializedWarning,
    message=st.text(),
    category_module=st.text(max_size=20),
    category_name=st.text(max_size=20),
    filename=st.text(max_size=20),
    lineno=st.integers(0, 10**6),
    line=st.none() | st.text(max_size=20),
    when=st.sampled_from(["collect", "runtest", "config"]),
    nodeid=st.text(max_size=20),
    location=st.none() | st.tuples(st.text(max_size=10), st.integers(0, 999), st.text()),
)
nodeids = st.text(max_size=30)
records = st.builds(
    protocol.TestRecord,
    nodeid=nodeids,
    location=st.tuples(st.text(max_size=10), st.none() | st.integers(0, 999), st.text()),
    reports=st.lists(reports, max_size=3).map(tuple),
    warnings=st.lists(warnings_, max_size=2).map(tuple),
)
shares = st.none() | st.integers(1, 64).flatmap(
    lambda n: st.tuples(st.integers(0, n - 1), st.just(n))
)


@st.composite
def collected(draw: st.DrawFn) -> protocol.Collected:
    files = draw(st.lists(nodeids, max_size=5).map(tuple))
    ids = draw(st.lists(nodeids, max_size=8).map(tuple))
    item_files = tuple(draw(st.integers(-1, len(files) - 1)) for _ in ids)
    item_groups = tuple(draw(st.none() | st.text(max_size=5)) for _ in ids)
    return protocol.Collected(
        worker_id=draw(st.text(max_size=5)),
        share=draw(shares),
        files=files,
        nodeids=ids,
        item_files=item_files,
        item_groups=item_groups,
        collect_reports=draw(st.lists(reports, max_size=2).map(tuple)),
        deselected=draw(st.lists(nodeids, max_size=3).map(tuple)),
        warnings=draw(st.lists(warnings_, max_size=2).map(tuple)),
        collection_failed=draw(st.booleans()),
    )


@st.composite
def assigns(draw: st.DrawFn) -> protocol.Assign:
    pairs = draw(st.lists(st.tuples(nodeids, st.integers(0, 10**6)), max_size=50))
    return protocol.Assign(nodeids=tuple(n for n, _ in pairs), indices=tuple(i for _, i in pairs))


messages: st.SearchStrategy[protocol.Message] = st.one_of(
    assigns(),
    collected(),
    st.builds(
        protocol.NotFound, worker_id=st.text(max_size=5), nodeids=st.lists(nodeids).map(tuple)
    ),
    st.builds(protocol.Drain),
    st.builds(protocol.Stop, reason=st.text()),
    st.builds(
        protocol.Hello,
        worker_id=st.text(),
        pid=st.integers(1, 2**22),
        python=st.text(),
        package_version=st.text(),
    ),
    st.builds(
        protocol.Progress,
        worker_id=st.text(max_size=5),
        tests=st.lists(records, max_size=4).map(tuple),
        warnings=st.lists(warnings_, max_size=2).map(tuple),
        want_more=st.booleans(),
        queued=st.integers(0, 1000),
    ),
    st.builds(
        protocol.SessionFinished,
        worker_id=st.text(),
        exitstatus=st.integers(0, 5),
        workeroutput=st.dictionaries(st.text(max_size=5), json_like, max_size=3),
        junit_properties=st.lists(st.tuples(st.text(), st.text()), max_size=3).map(tuple),
    ),
    st.builds(protocol.WorkerError, worker_id=st.text(), traceback=st.text()),
)


@settings(max_examples=100, deadline=None)
@given(messages)
def test_round_trip_property(message: protocol.Message) -> None:
    assert protocol.decode(protocol.encode(message)) == message


# ---------------------------------------------------------------------------- what cannot travel


def test_unpicklable_values_are_replaced_by_their_repr() -> None:
    import threading

    lock = threading.Lock()
    replaced: list[str] = []
    report = {"user_properties": [("lock", lock), ("n", 3)], "outcome": "passed"}
    safe = protocol.make_picklable(report, replaced)
    assert safe["outcome"] == "passed"
    assert safe["user_properties"][1] == ("n", 3)
    assert safe["user_properties"][0] == ("lock", repr(lock))
    assert replaced == [repr(lock)]
    pickle.dumps(safe)


def test_picklable_values_are_kept_as_they_are() -> None:
    replaced: list[str] = []
    value = {"a": [1, (2, "x")], "b": None}
    assert protocol.make_picklable(value, replaced) is value
    assert replaced == []


def test_a_class_the_receiver_cannot_import_becomes_a_named_stand_in() -> None:
    """A value of a class defined in a test module: the controller never imports it."""
    import sys
    import types

    module = types.ModuleType("test_module_only_in_a_worker")
    exec("class Local:\n    def __init__(self, v):\n        self.v = v\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        record = protocol.TestRecord(
            nodeid="t.py::t",
            location=("t.py", 1, "t"),
            reports=({"user_properties": [("v", module.Local(3))]},),
        )
        payload = protocol.encode(protocol.Progress("gw0", tests=(record,)))
    finally:
        del sys.modules[module.__name__]
    with pytest.raises(ModuleNotFoundError):
        protocol.decode(payload)
    message, unresolved = protocol.decode_tolerant(payload)
    assert unresolved == ("test_module_only_in_a_worker.Local",)
    assert isinstance(message, protocol.Progress)
    ((name, value),) = message.tests[0].reports[0]["user_properties"]
    assert name == "v"
    assert isinstance(value, protocol.Unresolved)
    assert "test_module_only_in_a_worker.Local" in repr(value)


def test_tolerant_decoding_still_rejects_non_messages() -> None:
    with pytest.raises(TypeError, match="not a parallel_exec protocol message"):
        protocol.decode_tolerant(pickle.dumps({"not": "a message"}))
