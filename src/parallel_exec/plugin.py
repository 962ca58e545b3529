"""pytest wiring: options, the choice between a parallel and a serial run, fixtures.

Loaded with ``-p parallel_exec`` (there is deliberately no auto-loading entry point, so
that an environment with pytest-xdist installed keeps xdist's ``-n`` for plain
``pytest``).  When loaded, it blocks pytest-xdist's plugins for that run, so the two
never both define ``-n``.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import pytest

from . import settings as settings_module
from .settings import (
    MAX_WORKERS,
    OPTION_BY_DEST,
    Settings,
    raw_value,
    runs_parallel,
    serial_reason,
)
from .xdist_contract import (
    add_hookspecs,
    ensure_stand_in,
    is_stand_in,
    normalize_early_options,
    xdist_options,
)

if TYPE_CHECKING:
    from .controller.forkserver import ForkServer

XDIST_PLUGINS = ("xdist", "xdist.plugin", "xdist.looponfail")
#: pytest-rerunfailures, by its entry-point name and by its module name (``-p``).
RERUNFAILURES_PLUGINS = ("rerunfailures", "pytest_rerunfailures")
SETTINGS_KEY = pytest.StashKey[Settings]()
SERIAL_REASON_KEY = pytest.StashKey[str]()
#: Whether this run's tests run on workers.
PARALLEL_KEY = pytest.StashKey[bool]()
#: ``os.environ`` as pytest started, before any plugin changed it: workers start from it.
ENVIRONMENT_KEY = pytest.StashKey[dict[str, str]]()


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    for name in XDIST_PLUGINS:
        plugin = pluginmanager.get_plugin(name)
        if plugin is not None and not is_stand_in(plugin):
            raise pytest.UsageError(
                "parallel_exec: pytest-xdist is already active in this run; use either "
                "'-p parallel_exec' or pytest-xdist, not both (add '-p no:xdist')"
            )
    # The name "xdist" is taken by the stand-in, so pytest-xdist's entry point does not
    # load; its other modules are blocked.
    ensure_stand_in(pluginmanager)
    for name in XDIST_PLUGINS[1:]:
        pluginmanager.set_blocked(name)
    _refuse_explicit_xdist(pluginmanager)
    shared = frozenset({"--fail-on-flaky"}) if rerunfailures_loads(pluginmanager) else frozenset()
    settings_module.register(parser, shared)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    add_hookspecs(pluginmanager)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> Generator[None, None, None]:
    """Before any plugin's own (pytest-env edits ``os.environ`` here, pytest-cov reads
    the options here): keep the environment pytest started with, for the workers; make
    sure the ``xdist`` stand-in is there (a ``-p no:xdist`` after ``-p parallel_exec``
    removes it); give the first parse xdist's option values."""
    early_config.stash[ENVIRONMENT_KEY] = dict(os.environ)
    ensure_stand_in(early_config.pluginmanager)
    normalize_early_options(early_config)
    return (yield)


def rerunfailures_loads(pluginmanager: pytest.PytestPluginManager) -> bool:
    """Whether pytest-rerunfailures is (or is about to be) active in this run.

    It defines ``--fail-on-flaky`` too, with the same destination; registering it twice
    is an argparse error, so when it loads the flag is left to it and read from there
    (with ``--retries`` it must be disabled anyway, and then the flag is ours).
    """
    if rerunfailures_active(pluginmanager):
        return True
    if any(pluginmanager.is_blocked(name) for name in RERUNFAILURES_PLUGINS):
        return False
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(
        ep.name in RERUNFAILURES_PLUGINS for ep in importlib.metadata.entry_points(group="pytest11")
    )


def rerunfailures_active(pluginmanager: pytest.PytestPluginManager) -> bool:
    return any(pluginmanager.hasplugin(name) for name in RERUNFAILURES_PLUGINS)


def _refuse_explicit_xdist(pluginmanager: pytest.PytestPluginManager) -> None:
    """``-p parallel_exec -p xdist``: an explicit ``-p`` would unblock xdist, and its
    ``-n`` would then collide with ours in argparse (a traceback).  Refuse it clearly."""
    original = pluginmanager.consider_pluginarg

    def consider_pluginarg(arg: str) -> None:
        if arg in XDIST_PLUGINS:
            raise pytest.UsageError(
                f"parallel_exec: '-p {arg}' loads pytest-xdist too; use either "
                "'-p parallel_exec' or pytest-xdist, not both"
            )
        original(arg)

    pluginmanager.consider_pluginarg = consider_pluginarg  # type: ignore[method-assign]


def prepare(config: pytest.Config) -> Settings:
    """Read the options once, decide whether the run is parallel, and give the options
    xdist's ``numprocesses``/``dist`` for that decision (plugins read them)."""
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is not None:
        return settings
    settings = settings_module.load(config)
    config.stash[SETTINGS_KEY] = settings

    def getoption(dest: str) -> Any:
        return config.getoption(dest, False)

    reason = serial_reason(getoption) if settings.wants_parallel else None
    if reason is not None:
        config.stash[SERIAL_REASON_KEY] = reason
    parallel = runs_parallel(settings.workers, settings.dist, getoption)
    config.stash[PARALLEL_KEY] = parallel
    dist_given = str(raw_value(config, OPTION_BY_DEST["dist"])[0]).strip().lower()
    workers = settings.workers.resolve() if settings.workers is not None else None
    for dest, value in xdist_options(
        parallel, workers, dist_given, settings.workers is not None
    ).items():
        setattr(config.option, dest, value)
    return settings


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Options are read before any ``pytest_configure`` (an invalid one is a usage
    error; plugins configuring themselves see xdist's option values)."""
    if is_worker(config) or config.getoption("version", False) or config.getoption("help", False):
        return  # --help configures (and reads the options) on its own
    prepare(config)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "parallel_exec_group(name): run every test of the group on the same worker",
    )
    config.addinivalue_line(
        "markers", "xdist_group(name): pytest-xdist's name for parallel_exec_group"
    )
    config.addinivalue_line(
        "markers",
        "parallel_exec(timeout=SECONDS): this test's own --test-timeout (0: no limit)",
    )
    if not config.pluginmanager.hasplugin("timeout"):
        # Suites written for pytest-timeout keep their per-test limits without it.
        config.addinivalue_line(
            "markers", "timeout(seconds): the test's time limit (parallel_exec's --test-timeout)"
        )
    if is_worker(config):
        return
    settings = prepare(config)
    if settings.report_tap == "-":
        _terminal_to_stderr(config)
    if settings.retries and rerunfailures_active(config.pluginmanager):
        raise pytest.UsageError(
            "parallel_exec: --retries and pytest-rerunfailures would both re-run failed "
            "tests; use one of them (add '-p no:rerunfailures' to use --retries)"
        )
    if config.getoption("collectonly", False):
        return
    parallel = config.stash[PARALLEL_KEY]
    # Started first, so that its own start-up overlaps the rest of this process's.
    fork_server = start_fork_server() if parallel and settings.forks_workers else None
    # The main process's machinery (controller, history, pydantic models, writers) is
    # imported here, never in workers: every worker pays its imports at start-up.
    from .controller.plugin import ControllerPlugin
    from .errors import ParallelExecWarning
    from .history.recording import warn_consumer_failure
    from .reporting.serial import SerialEvents
    from .reporting.writers import make_writers

    if parallel:
        try:
            controller = ControllerPlugin(
                config, settings, fork_server, config.stash.get(ENVIRONMENT_KEY, None)
            )
        except BaseException:
            if fork_server is not None:
                fork_server.shutdown()
            raise
        config.pluginmanager.register(controller, "parallel_exec_controller")
        return
    worker_only = (["--retries"] if settings.retries else []) + settings.limits.worker_only()
    if worker_only:
        config.issue_config_time_warning(
            ParallelExecWarning(
                f"parallel_exec: {', '.join(worker_only)} "
                f"{'applies' if len(worker_only) == 1 else 'apply'} to runs on workers "
                "(-n 1 or more); this run is in-process, "
                f"{'it is' if len(worker_only) == 1 else 'they are'} ignored"
            ),
            stacklevel=2,
        )
    _in_process_timeout(config, settings)
    writers = make_writers(config, settings)
    serial = SerialEvents(writers, warn_consumer_failure(config)) if writers else None
    if serial is not None:
        config.pluginmanager.register(serial, "parallel_exec_serial_events")
    if settings.shard is not None:
        _in_process_shard(config, settings, serial.stream.publish if serial else None)


def _in_process_shard(
    config: pytest.Config, settings: Settings, publish: Callable[[Any], None] | None
) -> None:
    """``--shard`` without workers: the same plan, from the same history."""
    from .history.recording import open_timings
    from .sharding import InProcessShard

    assert settings.shard is not None
    store, timings = open_timings(config, settings)  # a damaged history: planned without
    if store is not None:
        store.close()
    config.pluginmanager.register(
        InProcessShard(
            settings.shard,
            settings.shard_run_id,
            settings.strategy(known=bool(timings)),
            timings,
            publish,
        ),
        "parallel_exec_shard",
    )


def _in_process_timeout(config: pytest.Config, settings: Settings) -> None:
    """``--test-timeout`` and tests' own limits in an in-process run (best effort)."""
    from .errors import ParallelExecWarning
    from .timeout import InProcessTimeout

    timeout_plugin = config.pluginmanager.hasplugin("timeout")
    if not InProcessTimeout.available() or pytest_timeout_signals(config):
        if settings.limits.test_timeout:
            why = (
                "pytest-timeout's --timeout uses SIGALRM in this process"
                if InProcessTimeout.available()
                else "this platform has no SIGALRM"
            )
            config.issue_config_time_warning(
                ParallelExecWarning(
                    f"parallel_exec: --test-timeout needs SIGALRM in an in-process run and "
                    f"{why}: tests are not timed by it (run with -n 1 or more)"
                ),
                stacklevel=2,
            )
        return
    config.pluginmanager.register(
        InProcessTimeout(settings.limits.test_timeout, not timeout_plugin),
        "parallel_exec_in_process_timeout",
    )


def pytest_timeout_signals(config: pytest.Config) -> bool:
    """pytest-timeout times tests here with SIGALRM (its ``signal`` method, its
    default where the signal exists)."""
    active = pytest_timeout_setting(config)
    return active is not None and active[1] == "signal"


def pytest_timeout_setting(config: pytest.Config) -> tuple[Any, str] | None:
    """pytest-timeout's ``--timeout`` and method (command line, then ini), when it is
    installed and a timeout is set (None otherwise)."""
    if not config.pluginmanager.hasplugin("timeout"):
        return None
    timeout = config.getoption("timeout", None) or _ini(config, "timeout")
    if not timeout:
        return None
    method = config.getoption("timeout_method", None) or _ini(config, "timeout_method")
    return timeout, method or "signal"


def _ini(config: pytest.Config, name: str) -> Any:
    try:
        return config.getini(name)
    except ValueError:
        return None


def start_fork_server() -> ForkServer | None:
    """The fork server, or None where it cannot run (workers are then spawned)."""
    from .controller.forkserver import ForkServer

    try:
        return ForkServer()
    except Exception:
        return None


def _terminal_to_stderr(config: pytest.Config) -> None:
    """``--report-tap -`` owns standard output: pytest's terminal report moves to stderr,
    whole (pytest-tap removes it instead; here the summary stays readable)."""
    from ._pytest_compat import terminal_to

    terminal_to(config, sys.stderr)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if is_worker(config):
        return None
    reason = config.stash.get(SERIAL_REASON_KEY, None)
    if reason is not None:
        return [f"parallel_exec: {reason} given, running tests serially in this process"]
    settings = config.stash.get(SETTINGS_KEY, None)
    controller = config.pluginmanager.get_plugin("parallel_exec_controller")
    if settings is None or controller is None or settings.workers is None:
        return None
    count = controller.workers
    how = f" ({settings.workers.spec})" if settings.workers.is_auto else ""
    if settings.workers.asked is not None:
        how += f" ({settings.workers.asked} asked for; at most {MAX_WORKERS} workers run)"
    if controller.hosts:
        remote = count - settings.local_workers
        how += f" ({settings.local_workers} here, {remote} on other machines)"
    known = len(controller.timings)
    history = f", history: {known} tests known" if controller.store is not None else ""
    from .controller.collection_mode import collection_mode

    mode, fallback = collection_mode(config, settings)
    collection = f", collection={mode} ({fallback})" if fallback is not None else ""
    return [
        f"parallel_exec: {count} worker{'s' if count != 1 else ''}{how}, "
        f"dist={controller.strategy}{history}{collection}",
        *(host.describe() for host in controller.hosts),
        *timeouts_header(config, settings),
    ]


def timeouts_header(config: pytest.Config, settings: Settings) -> list[str]:
    """With pytest-timeout installed and its ``--timeout`` set: who enforces what."""
    active = pytest_timeout_setting(config)
    if active is None:
        return []
    timeout, method = active
    ours = (
        f"; parallel_exec ends a worker whose test runs past --test-timeout "
        f"{settings.limits.test_timeout:g} s"
        if settings.limits.test_timeout
        else ""
    )
    return [
        f"parallel_exec: pytest-timeout enforces --timeout {timeout} and "
        f"@pytest.mark.timeout inside each worker (method {method}){ours}"
    ]


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    """``gw0``, ``gw1``... in a worker; ``master`` when tests run in the main process."""
    workerinput: Any = getattr(request.config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else "master"


@pytest.fixture(scope="session")
def testrun_uid(request: pytest.FixtureRequest) -> str:
    """An id shared by every worker of one run (pytest-xdist's fixture of the same name)."""
    workerinput: Any = getattr(request.config, "workerinput", None)
    if workerinput:
        return str(workerinput["testrunuid"])
    controller = request.config.pluginmanager.get_plugin("parallel_exec_controller")
    return str(getattr(controller, "run_id", "")) or "serial"
