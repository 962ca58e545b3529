"""parallel_exec: run a pytest suite on a pool of worker processes, results as serial.

``pytest -p parallel_exec -n auto``.  The hooks live in ``parallel_exec.plugin``; they
are re-exported here because ``-p parallel_exec`` registers this package module.
"""

from ._version import __version__
from .errors import ParallelExecWarning
from .plugin import (
    pytest_addhooks,
    pytest_addoption,
    pytest_cmdline_main,
    pytest_configure,
    pytest_load_initial_conftests,
    pytest_report_header,
    testrun_uid,
    worker_id,
)

__all__ = [
    "ParallelExecWarning",
    "__version__",
    "pytest_addhooks",
    "pytest_addoption",
    "pytest_cmdline_main",
    "pytest_configure",
    "pytest_load_initial_conftests",
    "pytest_report_header",
    "testrun_uid",
    "worker_id",
]
