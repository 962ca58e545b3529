"""Warnings cross the wire as ``SerializedWarning`` and come back as ``WarningMessage``."""

from __future__ import annotations

import dataclasses
import sys
import warnings

import pytest

from parallel_exec.reporting import events
from parallel_exec.reporting.replay import rebuild_warning
from parallel_exec.wire import protocol
from parallel_exec.worker.session import serialize_warning

LOCATION = ("tests/test_w.py", 7, "test_w")


class ModuleLevelWarning(UserWarning):
    """A warning category defined in a test module, importable by its module name."""


class Namespace:
    class NestedWarning(DeprecationWarning):
        """Reachable as ``Namespace.NestedWarning``; its ``__qualname__`` has a dot."""


class NotAWarning(Exception):
    pass


def caught(message: str, category: type[Warning]) -> warnings.WarningMessage:
    """A real ``WarningMessage``, as pytest's warning capture hands it to hooks."""
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        warnings.warn(message, category, stacklevel=1)
    (record,) = records
    return record


def round_trip(record: warnings.WarningMessage) -> events.WarningRecorded:
    """Worker side, the wire, controller side."""
    serialized = serialize_warning(record, "runtest", "tests/test_w.py::test_w", LOCATION)
    decoded = protocol.decode(protocol.encode(protocol.Progress("gw0", warnings=(serialized,))))
    assert isinstance(decoded, protocol.Progress)
    return rebuild_warning(decoded.warnings[0])


@pytest.mark.parametrize(
    "category",
    [
        UserWarning,
        DeprecationWarning,
        PendingDeprecationWarning,
        RuntimeWarning,
        ResourceWarning,
        pytest.PytestWarning,
        pytest.PytestDeprecationWarning,
        pytest.PytestUnknownMarkWarning,
        pytest.PytestCollectionWarning,
        ModuleLevelWarning,
    ],
    ids=lambda c: c.__name__,
)
def test_category_is_restored(category: type[Warning]) -> None:
    record = caught(f"a {category.__name__} happened", category)
    rebuilt = round_trip(record)
    assert rebuilt.warning_message.category is category
    assert str(rebuilt.warning_message.message) == f"a {category.__name__} happened"


def test_nested_category_is_restored() -> None:
    record = caught("nested", Namespace.NestedWarning)
    assert round_trip(record).warning_message.category is Namespace.NestedWarning


def test_everything_else_is_preserved() -> None:
    record = caught("with 'quotes' and ünïcode\nand a second line", DeprecationWarning)
    rebuilt = round_trip(record)
    message = rebuilt.warning_message
    assert str(message.message) == "with 'quotes' and ünïcode\nand a second line"
    assert message.filename == record.filename
    assert message.lineno == record.lineno
    assert message.line == record.line
    assert rebuilt.when == "runtest"
    assert rebuilt.nodeid == "tests/test_w.py::test_w"
    assert rebuilt.location == LOCATION


def test_warning_instance_message_is_sent_as_text() -> None:
    record = caught("text", UserWarning)
    assert isinstance(record.message, UserWarning)
    serialized = serialize_warning(record, "collect", "", None)
    assert serialized.message == "text"
    assert (serialized.category_module, serialized.category_name) == ("builtins", "UserWarning")
    rebuilt = rebuild_warning(serialized)
    assert rebuilt.when == "collect"
    assert rebuilt.location is None


def serialized_with(module: str, name: str) -> protocol.SerializedWarning:
    base = serialize_warning(caught("fallback", DeprecationWarning), "runtest", "n", None)
    return dataclasses.replace(base, category_module=module, category_name=name)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("no_such_module_for_parallel_exec_tests", "GoneWarning"),  # module not importable
        ("builtins", "NoSuchWarning"),  # module without that name
        (__name__, "NotAWarning"),  # an exception class, but not a Warning
        ("builtins", "len"),  # not a class at all
        (__name__, "test_category_is_restored.<locals>.LocalWarning"),  # unreachable
        ("", ""),
    ],
)
def test_unknown_category_falls_back_to_user_warning(module: str, name: str) -> None:
    """Nothing is imported for it: a ``UserWarning`` stand-in keeps the shown name."""
    rebuilt = rebuild_warning(serialized_with(module, name))
    category = rebuilt.warning_message.category
    assert issubclass(category, UserWarning)
    assert category.__name__ == (name.rsplit(".", 1)[-1] or "UserWarning")
    assert str(rebuilt.warning_message.message) == "fallback"


def test_category_of_unimported_test_module_is_not_imported() -> None:
    """The controller must not run a test module's code to name a warning class."""
    module = "test_module_never_imported_by_parallel_exec"
    rebuilt = rebuild_warning(serialized_with(module, "MyWarning"))
    assert module not in sys.modules
    assert rebuilt.warning_message.category.__name__ == "MyWarning"
    assert rebuilt.warning_message.category.__module__ == module
