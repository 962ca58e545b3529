"""An environment with the compatibility matrix's plugins, and runs of pytest in it.

The plugins of the ``compat`` extra (pyproject.toml) auto-load wherever they are
installed, and several change every run (pytest-randomly reorders and reseeds, pytest-sugar
replaces the terminal): they are installed into a virtual environment of their own that
sees this one's packages (pytest, execnet, parallel_exec...) through a ``.pth`` file, so
only the runs started here have them.  Built once per key (the pins and the Python), in
pytest's cache directory, under a lock (workers of this suite build it at the same time).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import child_env
from child_env import INHERITED_VARIABLES

ROOT = Path(__file__).resolve().parents[2]

#: What the runs here must not inherit: the suite's own list, and what would change a
#: plugin's behaviour (pytest's options from the shell, coverage of this session).
INHERITED = (
    *INHERITED_VARIABLES,
    "PYTEST_ADDOPTS",
    "PYTEST_CURRENT_TEST",
    "COV_CORE_SOURCE",
    "COVERAGE_PROCESS_START",
)


def compat_pins() -> list[str]:
    """The ``compat`` extra of pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^compat = \[(.*?)^\]", text, re.S | re.M)
    assert block is not None, "pyproject.toml has no compat extra"
    return re.findall(r'"([^"]+)"', block.group(1))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(cache_dir: Path) -> Path:
    """The interpreter of the plugin environment (built if needed)."""
    pins = compat_pins()
    key = hashlib.sha256("\n".join([sys.version, *pins]).encode()).hexdigest()[:12]
    env = cache_dir / f"plugins-{key}"
    python = env / "bin" / "python"
    ready = env / ".ready"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / f"plugins-{key}.lock"):
        if ready.exists():
            return python
        # The editable install of parallel_exec must be visible (parent's .pth files).
        child_env.create(env, parent_pth_files=True, clear=True)
        child_env.pip_install(python, "--no-input", *pins, timeout=600)
        ready.touch()
    return python


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> str:
        """The last ``=== ... ===`` line without its duration."""
        lines = [line for line in self.stdout.splitlines() if line.startswith("=")]
        last = lines[-1] if lines else ""
        return re.sub(r" in [\d.]+s( \([^)]*\))?", "", last).strip("= ")

    def __str__(self) -> str:
        return (
            f"$ pytest {' '.join(self.args)}\nexit {self.returncode}\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


class Runner:
    """Runs pytest with the plugin environment's interpreter in one directory."""

    def __init__(self, python: Path, path: Path, hide_xdist: bool = False) -> None:
        self.python = python
        self.path = path
        self.hide_xdist = hide_xdist
        self.env: dict[str, str] = {}

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in INHERITED}
        env.update(self.env)
        if self.hide_xdist:
            # As if pytest-xdist were not installed: ``import xdist`` fails (and serial
            # runs do not load its entry points, see ``without_xdist``).
            shadow = self.path.parent / f"{self.path.name}-no-xdist"
            (shadow / "xdist").mkdir(parents=True, exist_ok=True)
            (shadow / "xdist" / "__init__.py").write_text(
                "raise ImportError('pytest-xdist is not installed (hidden by the test)')\n"
            )
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(shadow), env.get("PYTHONPATH", "")) if p
            )
        return env

    def run(self, *args: str, timeout: float = 180.0) -> Result:
        command = [str(self.python), "-m", "pytest", *args]
        done = subprocess.run(
            command,
            cwd=self.path,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(tuple(args), done.returncode, done.stdout, done.stderr)

    def serial(self, *args: str) -> Result:
        return self.run(*self.without_xdist(), *args)

    def without_xdist(self) -> tuple[str, ...]:
        """With pytest-xdist hidden, its entry points must not load either (as if it
        were not installed); a parallel_exec run keeps them out by itself."""
        return ("-p", "no:xdist", "-p", "no:xdist.looponfail") if self.hide_xdist else ()

    def parallel(self, workers: int, *args: str) -> Result:
        return self.run("-p", "parallel_exec", "-n", str(workers), *args)

    def xdist(self, workers: int, *args: str) -> Result:
        return self.run("-n", str(workers), *args)

    def write(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")

    def files(self, pattern: str) -> Sequence[Path]:
        return sorted(self.path.glob(pattern))
