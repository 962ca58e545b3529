"""``wire.progress.ProgressFile``: crash evidence a worker leaves behind, read by the controller."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parallel_exec.wire.progress import IDLE, PROGRESS_FORMAT, ProgressFile


def test_new_file_reads_idle(tmp_path: Path) -> None:
    path = tmp_path / "gw0.progress"
    ProgressFile(str(path))
    assert path.stat().st_size == PROGRESS_FORMAT.size
    assert ProgressFile.read(str(path)) == IDLE == -1


@pytest.mark.parametrize("index", [0, 1, 7, 4095, 2**40, 2**63 - 1])
def test_write_then_read(tmp_path: Path, index: int) -> None:
    path = str(tmp_path / "gw0.progress")
    progress = ProgressFile(path)
    progress.write(index)
    assert ProgressFile.read(path) == index


def test_each_write_replaces_the_last(tmp_path: Path) -> None:
    path = tmp_path / "gw0.progress"
    progress = ProgressFile(str(path))
    for index in (3, 12, IDLE, 0):
        progress.write(index)
        assert ProgressFile.read(str(path)) == index
    assert path.stat().st_size == PROGRESS_FORMAT.size


def test_reopening_an_existing_file_resets_it_to_idle(tmp_path: Path) -> None:
    path = str(tmp_path / "gw0.progress")
    ProgressFile(path).write(42)
    ProgressFile(path)
    assert ProgressFile.read(path) == IDLE


def test_missing_file_reads_idle(tmp_path: Path) -> None:
    assert ProgressFile.read(str(tmp_path / "never-written.progress")) == IDLE


@pytest.mark.parametrize("missing", [PROGRESS_FORMAT.size, PROGRESS_FORMAT.size - 1, 1])
def test_short_file_reads_idle(tmp_path: Path, missing: int) -> None:
    path = tmp_path / "short.progress"
    ProgressFile(str(path)).write(5)
    path.write_bytes(path.read_bytes()[: PROGRESS_FORMAT.size - missing])
    assert ProgressFile.read(str(path)) == IDLE


def test_directory_reads_idle(tmp_path: Path) -> None:
    assert ProgressFile.read(str(tmp_path)) == IDLE


def test_trailing_bytes_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "long.progress"
    ProgressFile(str(path)).write(5)
    with path.open("ab") as fh:
        fh.write(b"trailing junk")
    assert ProgressFile.read(str(path)) == 5


def test_read_entry_missing_or_idle(tmp_path: Path) -> None:
    path = str(tmp_path / "gw0.progress")
    assert ProgressFile.read_entry(path) == (IDLE, 0)
    ProgressFile(path)
    assert ProgressFile.read_entry(path) == (IDLE, 0)


def test_read_entry_records_where_stderr_was(tmp_path: Path) -> None:
    path = str(tmp_path / "gw0.progress")
    progress = ProgressFile(path)
    progress.write(9)
    index, stderr_at = ProgressFile.read_entry(path)
    assert index == 9
    assert 0 <= stderr_at <= os.fstat(2).st_size


def test_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "gw0.progress"
    ProgressFile(str(path))
    assert os.stat(path).st_mode & 0o077 == 0


@settings(max_examples=50, deadline=None)
@given(index=st.integers(-1, 2**63 - 1))
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, index: int) -> None:
    path = str(tmp_path_factory.mktemp("progress") / "w.progress")
    ProgressFile(path).write(index)
    assert ProgressFile.read(path) == index
