"""A directory on a read-only file system, for the tests of a restored CI cache mounted
read-only (shared by the unit and the fault tests of the timing history)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def read_only(directory: Path) -> Iterator[Path]:
    """``directory`` as a read-only file system shows it (a restored CI cache mounted
    read-only): a read-only bind mount of it.  Root ignores permissions, so only a mount
    makes it read-only for root; any other user gets the permissions taken away."""
    if os.geteuid() != 0:
        files = list(directory.iterdir())
        for file in files:
            file.chmod(0o444)
        directory.chmod(0o555)
        try:
            yield directory
        finally:
            directory.chmod(0o755)
            for file in files:
                file.chmod(0o644)
        return
    view = directory.with_name(directory.name + "-read-only")
    view.mkdir()
    if subprocess.run(["mount", "--bind", str(directory), str(view)]).returncode:
        view.rmdir()
        pytest.skip("root, but no bind mounts here: a read-only file system cannot be made")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(view)]).returncode:
            pytest.skip("a bind mount cannot be made read-only here")
        yield view
    finally:
        if subprocess.run(["umount", str(view)]).returncode:
            subprocess.run(["umount", "-l", str(view)], check=True)
        view.rmdir()


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}
