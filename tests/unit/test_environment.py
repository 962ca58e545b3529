"""A worker's environment: the one pytest started with, plus the controller's changes
that the worker's own set-up left alone."""

from __future__ import annotations

from parallel_exec.wire.environment import changes, inherit


def test_changes_name_new_changed_and_removed_variables() -> None:
    start = {"KEEP": "1", "CHANGED": "a", "GONE": "x"}
    now = {"KEEP": "1", "CHANGED": "b", "NEW": "n"}
    assert changes(start, now) == {"CHANGED": "b", "NEW": "n", "GONE": None}


def test_a_change_the_worker_made_itself_is_kept() -> None:
    """pytest-env in both processes: ``{APPENDED}:suffix`` once, not twice."""
    start = {"APPENDED": "base"}
    controller = changes(start, {"APPENDED": "base:suffix"})
    worker = {"APPENDED": "base:suffix"}  # the worker's own pytest-env ran
    inherit(start, controller, worker)
    assert worker == {"APPENDED": "base:suffix"}


def test_a_change_only_the_controller_made_is_inherited() -> None:
    """A conftest that sets a variable when it is not in a worker, or removes one."""
    start = {"GONE": "x", "OTHER": "o"}
    controller = changes(start, {"LATE": "set", "OTHER": "o"})
    worker = dict(start)
    inherit(start, controller, worker)
    assert worker == {"LATE": "set", "OTHER": "o"}


def test_a_variable_the_worker_changed_differently_keeps_the_workers_value() -> None:
    start = {"PORT": "0"}
    worker = {"PORT": "5002"}
    inherit(start, changes(start, {"PORT": "5001"}), worker)
    assert worker == {"PORT": "5002"}
