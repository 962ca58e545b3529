"""Processes started by the tests: what they must not inherit from this session, and
virtual environments that see this one's packages.

Some runs need packages this environment must not have: the compatibility matrix's
plugins (they would auto-load into every other run), a wheel built from the checkout
(the editable install must not shadow it).  ``create`` makes a virtual environment whose
``.pth`` adds this environment's site-packages after its own, so only what ``pip_install``
puts there is new.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

#: Set when this suite itself runs on workers (parallel_exec or xdist), or by a user's
#: shell; inherited by the runs under test, they would change what those runs see.
INHERITED_VARIABLES = (
    "PARALLEL_EXEC_WORKER",
    "PARALLEL_EXEC_WORKER_COUNT",
    "PARALLEL_EXEC_RUN_ID",
    "PYTEST_XDIST_WORKER",
    "PYTEST_XDIST_WORKER_COUNT",
    "PYTEST_XDIST_TESTRUNUID",
    "PARALLEL_EXEC_WORKERS",
    "PYTEST_XDIST_AUTO_NUM_WORKERS",
    "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
    "PYTEST_PLUGINS",
)


def create(path: Path, *, parent_pth_files: bool, clear: bool = False) -> tuple[Path, Path]:
    """A virtual environment at ``path`` that sees this environment's packages: its
    interpreter and its site-packages.  ``parent_pth_files``: this environment's own
    ``.pth`` files are read too (its editable install of parallel_exec is then visible);
    without, only the packages installed here are."""
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=clear).create(path)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(path), "platbase": str(path)}))
    parent = sysconfig.get_path("purelib")
    # An ``import`` line of a .pth runs at start-up: ``addsitedir`` reads the parent's
    # own .pth files; a plain line only adds the directory.
    line = f"import site; site.addsitedir({parent!r})" if parent_pth_files else parent
    (site / "_parent_environment.pth").write_text(line + "\n", encoding="utf-8")
    return path / "bin" / "python", site


def pip_install(python: Path, *args: str, timeout: float) -> None:
    """``pip install`` into the environment of ``python``, with this environment's pip."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--disable-pip-version-check",
            "-q",
            *args,
        ],
        check=True,
        timeout=timeout,
    )
