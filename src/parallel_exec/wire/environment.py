"""The environment a worker starts from, and what it inherits from the controller.

A worker must see the environment a serial run would: the one pytest started with, as
changed by the plugins and conftests that run in every process (pytest-env's ``{VAR}``
expansion applies once, not on top of the controller's result), plus what only the
controller changed for its workers (a conftest that sets a variable when it is not in a
worker).  So the worker starts from the environment pytest started with and, once its
own configuration and session start are done, takes each of the controller's changes
that its own set-up left alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def changes(start: Mapping[str, str], now: Mapping[str, str]) -> dict[str, str | None]:
    """What changed from ``start`` to ``now``: new values, and None for a removal."""
    changed: dict[str, str | None] = {k: v for k, v in now.items() if start.get(k) != v}
    changed.update({k: None for k in start if k not in now})
    return changed


def inherit(
    start: Mapping[str, str],
    controller_changes: Mapping[str, str | None],
    environ: os._Environ[str] | dict[str, str] = os.environ,
) -> None:
    """Apply each of the controller's changes to a variable this process left as it
    was at the start; a variable this process changed itself keeps its own value."""
    for name, value in controller_changes.items():
        if environ.get(name) != start.get(name):
            continue
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
