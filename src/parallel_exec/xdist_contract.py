"""pytest-xdist's plugin contract, wiring side.

Plugins written for xdist find it in three ways, and each must see a parallel run as
xdist's and an in-process run as a plain one:

- ``config.pluginmanager.hasplugin("xdist")``: pytest-randomly, pytest-rerunfailures,
  syrupy and pytest-sugar register their xdist hooks only then.  A stand-in object is
  registered under that name (never pytest-xdist itself, whose ``-n`` would collide with
  ours), in the controller and in every worker.
- xdist's hooks (``pytest_configure_node``, ``pytest_testnodedown``...): their specs are
  registered (xdist's own when it is installed), and ``controller/nodes.py`` calls them
  when xdist would.
- ``numprocesses`` and ``dist`` among the options: pytest-cov reads them in
  ``early_config.known_args_namespace`` before any ``pytest_configure``, pytest-benchmark
  and syrupy in ``config.option``.  They are given xdist's values: a worker count and a
  distribution name for a parallel run, ``dist == "no"`` for an in-process one (``-n 0``,
  no ``-n``, ``--pdb``...).
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType
from typing import Any

import pytest

from . import _pytest_compat, xdist_hookspecs
from .errors import OptionError
from .settings import (
    OPTION_BY_DEST,
    combined_workers,
    parse_dist,
    parse_numprocesses,
    parse_tx,
    raw_value,
    runs_parallel,
)

XDIST_NAME = "xdist"


class XdistStandIn:
    """Registered as the ``xdist`` plugin, so that plugins looking for pytest-xdist with
    ``hasplugin("xdist")`` wire their xdist hooks.  It implements nothing itself."""

    def __repr__(self) -> str:
        return "<parallel_exec's stand-in for pytest-xdist>"


def is_stand_in(plugin: object) -> bool:
    return isinstance(plugin, XdistStandIn)


def add_hookspecs(pluginmanager: pytest.PytestPluginManager) -> None:
    """xdist's hook specs: pytest-xdist's own ``newhooks.py`` when it is installed, else
    a copy (``xdist_hookspecs``)."""
    caller = getattr(pluginmanager.hook, "pytest_configure_node", None)
    if caller is not None and getattr(caller, "spec", None) is not None:
        return
    pluginmanager.add_hookspecs(_xdist_newhooks() or xdist_hookspecs)


def _xdist_newhooks() -> ModuleType | None:
    """pytest-xdist's ``newhooks.py``, loaded from its file without importing the
    ``xdist`` package: pytest marks installed plugins' modules for assertion rewriting
    and warns about one already imported (an error under ``-W error``)."""
    try:
        spec = importlib.util.find_spec("xdist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for directory in spec.submodule_search_locations:
        path = os.path.join(directory, "newhooks.py")
        if not os.path.isfile(path):
            continue
        module_spec = importlib.util.spec_from_file_location("parallel_exec._xdist_newhooks", path)
        if module_spec is None or module_spec.loader is None:
            return None
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception:
            return None
        return module
    return None


def ensure_stand_in(pluginmanager: pytest.PytestPluginManager) -> None:
    """Register the stand-in under ``xdist`` unless that name is taken.  A user's
    ``-p no:xdist`` (meant to keep pytest-xdist out, which parallel_exec does anyway)
    would hide it from every plugin: the name is taken back."""
    if pluginmanager.get_plugin(XDIST_NAME) is not None:
        return
    if pluginmanager.is_blocked(XDIST_NAME):
        _pytest_compat.unblock_plugin(pluginmanager, XDIST_NAME)
    pluginmanager.register(XdistStandIn(), XDIST_NAME)


def xdist_options(
    parallel: bool, workers: int | str | None, dist_given: str | None, asked_workers: bool
) -> dict[str, Any]:
    """``numprocesses`` and ``dist`` as pytest-xdist would hold them."""
    if parallel:
        return {"numprocesses": workers, "dist": dist_given or "load"}
    return {"numprocesses": 0 if asked_workers else None, "dist": "no"}


def normalize_early_options(config: pytest.Config) -> None:
    """Give the first parse of the command line xdist's ``numprocesses``/``dist`` for
    this run (pytest-cov reads them there), from the command line, the environment and
    ini as ``settings.load`` will read them.  An invalid value is left alone: the full
    parse reports it."""
    namespace = config.known_args_namespace

    def getoption(dest: str) -> Any:
        return getattr(namespace, dest, None)

    workers_raw, _ = raw_value(config, OPTION_BY_DEST["numprocesses"], getoption)
    dist_raw, _ = raw_value(config, OPTION_BY_DEST["dist"], getoption)
    tx_raw, _ = raw_value(config, OPTION_BY_DEST["tx"], getoption)
    try:
        count = parse_numprocesses(workers_raw) if workers_raw is not None else None
        dist = parse_dist(dist_raw)
        if tx_raw is not None and (count is None or not count.is_auto):
            count = combined_workers(count, parse_tx(tx_raw))
    except OptionError:
        return
    parallel = runs_parallel(count, dist, getoption)
    workers: int | str | None = None
    if count is not None:
        workers = count.fixed if count.fixed is not None else count.spec
    given = dist if getoption("dist") is not None or dist != "auto" else None
    for dest, value in xdist_options(parallel, workers, given, count is not None).items():
        setattr(namespace, dest, value)
