"""Which collection a run uses: ``imports`` by default, ``full`` when an option or a plugin
orders or selects across files (see ``collection.CROSS_FILE_REORDERING``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from parallel_exec.controller.collection_mode import collection_mode
from parallel_exec.settings import Settings
from parallel_exec.worker.collection import cross_file_reordering


class FakePluginManager:
    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def hasplugin(self, name: str) -> bool:
        return name in self.names


def fake_config(*plugins: str, **options: Any) -> pytest.Config:
    """A config with these registered plugin names and these option destinations."""
    option = SimpleNamespace(**options)

    def getoption(name: str, default: Any = None) -> Any:
        return getattr(option, name, default)

    config = SimpleNamespace(
        option=option, getoption=getoption, pluginmanager=FakePluginManager(plugins)
    )
    return cast(pytest.Config, config)


def settings(collection: str) -> Settings:
    return Settings(workers=None, dist="load", max_worker_restart=None, collection=collection)


def test_imports_is_the_default_collection() -> None:
    assert Settings(workers=None, dist="load", max_worker_restart=None).collection == "imports"
    assert collection_mode(fake_config(), settings("imports")) == ("imports", None)
    assert collection_mode(fake_config(), settings("split")) == ("split", None)


@pytest.mark.parametrize(
    ("plugins", "options", "expected"),
    [
        ((), {}, None),
        # pytest-randomly, by entry-point name, module name or its options.
        (("randomly",), {}, "pytest-randomly"),
        (("pytest_randomly",), {}, "pytest-randomly"),
        ((), {"randomly_seed": 1, "randomly_reorganize": True}, "pytest-randomly"),
        ((), {"randomly_seed": 1, "randomly_reorganize": False}, None),  # dont-reorganize
        # pytest-order: session scope (the default) orders across files.
        ((), {"order_scope": None}, "pytest-order"),
        ((), {"order_scope": "session"}, "pytest-order"),
        ((), {"order_scope": "module"}, None),
        ((), {"order_scope": "class"}, None),
        # pytest-repeat: only the session scope repeats the whole list.
        ((), {"repeat_scope": "session"}, "pytest-repeat --repeat-scope=session"),
        ((), {"repeat_scope": "module"}, None),
        ((), {"repeat_scope": "function"}, None),
        # pytest-random-order >= 1.0: off unless asked for; every bucket but "none".
        (
            (),
            {
                "random_order_enabled": False,
                "random_order_bucket": "default:module",
                "random_order_seed": "default:123",
            },
            None,
        ),
        (
            (),
            {
                "random_order_enabled": True,
                "random_order_bucket": "default:module",
                "random_order_seed": "default:123",
            },
            "pytest-random-order",
        ),
        (
            (),
            {
                "random_order_enabled": False,
                "random_order_bucket": "global",
                "random_order_seed": "default:123",
            },
            "pytest-random-order",
        ),
        (
            (),
            {
                "random_order_enabled": False,
                "random_order_bucket": "none",
                "random_order_seed": "7",
            },
            None,
        ),
        # Before 1.0 it always shuffled.
        ((), {"random_order_bucket": "module"}, "pytest-random-order"),
        # syrupy compares each worker's collection with what it ran, unless told not to.
        (("syrupy",), {}, "syrupy (unused-snapshot detection)"),
        ((), {"disable_unused_snapshots": False}, "syrupy (unused-snapshot detection)"),
        (("syrupy",), {"disable_unused_snapshots": True}, None),
    ],
)
def test_cross_file_reordering_plugins_are_detected(
    plugins: tuple[str, ...], options: dict[str, Any], expected: str | None
) -> None:
    reason = cross_file_reordering(fake_config(*plugins, **options))
    if expected is None:
        assert reason is None
    else:
        assert reason is not None
        assert reason.startswith(f"{expected} ")


@pytest.mark.parametrize("mode", ["imports", "split"])
def test_partial_collection_falls_back_to_full_with_a_reordering_plugin(mode: str) -> None:
    config = fake_config("randomly")
    assert collection_mode(config, settings(mode)) == (
        "full",
        "pytest-randomly reorders tests across files",
    )


def test_partial_collection_falls_back_to_full_with_last_failed() -> None:
    assert collection_mode(fake_config(lf=True), settings("imports")) == (
        "full",
        "--lf works on the whole test list",
    )


def test_full_collection_gives_no_reason() -> None:
    assert collection_mode(fake_config("randomly"), settings("full")) == ("full", None)
