"""Worker identity: what a test can learn about the process that runs it.

Run with ``-n 0`` (or without ``-n``) and every test here still passes: the identity
is then ``master`` and there are no worker environment variables.
"""

from __future__ import annotations

import os
import re
import time


def test_worker_id_fixture(worker_id):
    time.sleep(0.25)
    assert worker_id == "master" or re.fullmatch(r"gw\d+", worker_id)


def test_environment_matches_fixture(worker_id):
    time.sleep(0.25)
    if worker_id == "master":
        assert "PARALLEL_EXEC_WORKER" not in os.environ
    else:
        assert os.environ["PARALLEL_EXEC_WORKER"] == worker_id
        assert os.environ["PYTEST_XDIST_WORKER"] == worker_id
        assert int(os.environ["PARALLEL_EXEC_WORKER_COUNT"]) >= 1


def test_workerinput(request, worker_id):
    time.sleep(0.25)
    workerinput = getattr(request.config, "workerinput", None)
    if worker_id == "master":
        assert workerinput is None
    else:
        assert workerinput["workerid"] == worker_id
        assert workerinput["testrunuid"] == os.environ["PARALLEL_EXEC_RUN_ID"]


def test_temporary_directory_per_worker(tmp_path, worker_id):
    time.sleep(0.25)
    if worker_id != "master":
        assert worker_id in tmp_path.parts
    (tmp_path / "scratch.txt").write_text(worker_id)
    assert (tmp_path / "scratch.txt").read_text() == worker_id
