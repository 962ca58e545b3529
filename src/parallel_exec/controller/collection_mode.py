"""Which collection a run uses: the one asked for, unless it cannot give the serial
order or selection.

A partial collection (``imports``, ``split``) becomes ``full`` when an option or a
plugin needs every test in one list to select or order them across files.
"""

from __future__ import annotations

import pytest

from ..settings import Settings
from ..worker.collection import cross_file_reordering

#: Options whose logic needs every test in one collection (which failed last time, which
#: are new, where a stepwise run stopped): with them every worker collects everything.
GLOBAL_COLLECTION_OPTIONS = ("lf", "failedfirst", "newfirst", "stepwise", "stepwise_skip")


#: The flags of ``GLOBAL_COLLECTION_OPTIONS``, for the session header.
GLOBAL_COLLECTION_FLAGS = {
    "lf": "--lf",
    "failedfirst": "--ff",
    "newfirst": "--nf",
    "stepwise": "--sw",
    "stepwise_skip": "--sw-skip",
}


def collection_mode(config: pytest.Config, settings: Settings) -> tuple[str, str | None]:
    """The collection mode this run uses, and why it is not the one asked for (None: it
    is).  A partial collection (``imports``, ``split``) becomes ``full`` when an option or
    a plugin needs every test in one list to select or order them across files."""
    mode = settings.collection
    if mode == "full":
        return mode, None
    for name in GLOBAL_COLLECTION_OPTIONS:
        if config.getoption(name, False):
            return "full", f"{GLOBAL_COLLECTION_FLAGS.get(name, name)} works on the whole test list"
    reason = cross_file_reordering(config)
    if reason is not None:
        return "full", reason
    return mode, None
