"""``--tx``: workers on other machines, through execnet's own socket server started by
the test on 127.0.0.1 (never another address).  Two remote workers and one local give
the outcomes of a serial run; a remote machine killed mid-run fails the tests its
workers were running, with the reason, and the run goes on; an unreachable address (a
closed local port) and a remote with another parallel_exec version are refused with a
clear message; malformed specs are usage errors."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import execnet
import pytest

import parallel_exec

if TYPE_CHECKING:
    from conftest import PluginRunner

pytestmark = pytest.mark.slow

SOCKET_SERVER = os.path.join(os.path.dirname(execnet.__file__), "script", "socketserver.py")
ACCEPTING = re.compile(r"Entering Accept loop \('127\.0\.0\.1', (\d+)\)")


class SocketServer:
    """execnet's socket server on 127.0.0.1 (a free port), in a process of its own."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.log = workdir / f"socketserver-{time.monotonic_ns()}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-u", SOCKET_SERVER, "127.0.0.1:0"],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = ACCEPTING.search(self.log.read_text(errors="replace"))
            if found:
                self.port = int(found.group(1))
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the socket server did not start:\n{self.log.read_text()}")

    def spec(self, count: int, chdir: Path) -> str:
        return f"{count}*socket=127.0.0.1:{self.port}//chdir={chdir}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def servers(pytester: pytest.Pytester) -> Iterator[list[SocketServer]]:
    started: list[SocketServer] = []
    yield started
    for server in started:
        server.stop()


def start_server(
    servers: list[SocketServer], pytester: pytest.Pytester, env: dict[str, str] | None = None
) -> SocketServer:
    server = SocketServer(pytester.path, env)
    servers.append(server)
    return server


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed when the block ends: nothing listens


EVERY_OUTCOME = textwrap.dedent(
    """
    import os, time, pytest

    def record(name):
        with open(os.path.join({out!r}, name), "w") as fh:
            fh.write(f"{{os.environ.get('PYTEST_XDIST_WORKER', 'master')}} {{os.getppid()}}")

    @pytest.fixture
    def broken():
        raise RuntimeError("fixture fails")

    @pytest.mark.parametrize("n", range(8))
    def test_passes(n):
        time.sleep(0.15)
        record(f"passes-{{n}}")

    def test_fails():
        assert 1 == 2

    def test_errors(broken):
        pass

    def test_skips():
        pytest.skip("not here")

    @pytest.mark.xfail(reason="known")
    def test_xfails():
        assert 0

    @pytest.mark.xfail(reason="fixed now")
    def test_xpasses():
        pass

    def test_prints():
        print("to stdout")
    """
)


def test_two_remote_workers_and_one_local_give_the_serial_outcomes(
    runner: PluginRunner, servers: list[SocketServer]
) -> None:
    out = runner.pytester.path / "ran"
    out.mkdir()
    runner.pytester.makepyfile(test_every=EVERY_OUTCOME.format(out=str(out)))
    specs = runner.pytester.path / "specs"
    specs.mkdir()
    # What xdist's plugins read of where a worker runs (pytest-cov: not collocated).
    runner.pytester.makeconftest(
        f"""
        import pytest

        @pytest.hookimpl(optionalhook=True)
        def pytest_configure_node(node):
            spec = node.gateway.spec
            count = len(node.nodemanager.specs)
            with open({str(specs)!r} + "/" + spec.id, "w") as fh:
                fh.write(f"{{spec.popen}} {{spec.socket}} {{spec.chdir}} {{count}}")
        """
    )
    server = start_server(servers, runner.pytester)
    serial = runner.observe("-p", "no:randomly")
    for name in list(os.listdir(out)):
        os.unlink(out / name)
    tx = server.spec(2, runner.pytester.path)
    parallel = runner.observe("--tx", tx, "-p", "no:randomly", workers=1)
    assert parallel.differences_from(serial) == []
    header = runner.header_lines(parallel.result)
    assert "parallel_exec: 3 workers (1 here, 2 on other machines)" in "\n".join(header)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    python = sys.version.split()[0]
    remote_line = [
        line for line in header if line.startswith(f"parallel_exec: socket=127.0.0.1:{server.port}")
    ]
    assert remote_line, header
    assert f"2 workers on {socket.gethostname()} ({cpus} CPU" in remote_line[0]
    assert f"Python {python} {sys.platform}), in {runner.pytester.path}" in remote_line[0]
    # Workers of the remote machine ran tests: their parent is the socket server.
    ran = [p.read_text().split() for p in out.iterdir()]
    assert len(ran) == 8
    remote_workers = {w for w, ppid in ran if int(ppid) == server.process.pid}
    assert remote_workers, ran
    assert remote_workers <= {"gw1", "gw2"}, ran
    seen = {p.name: p.read_text() for p in specs.iterdir()}
    assert seen == {
        "gw0": "True None None 3",
        "gw1": f"None 127.0.0.1:{server.port} {runner.pytester.path} 3",
        "gw2": f"None 127.0.0.1:{server.port} {runner.pytester.path} 3",
    }
    runner.assert_no_traceback(parallel.result)


SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


@pytest.fixture
def ssh_config(tmp_path: Path) -> Iterator[Path]:
    """An sshd of the test's own on 127.0.0.1 (keys in tmp_path) and an ssh
    configuration naming it ``pe-test``; skipped where sshd cannot run."""
    if SSHD is None:
        pytest.skip("no sshd here (CI installs openssh-server)")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)
    elif not os.path.isdir("/run/sshd"):
        pytest.skip("sshd needs /run/sshd, which only root can create")
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True
        )
    keys = tmp_path / "authorized_keys"
    shutil.copy(tmp_path / "client_key.pub", keys)
    keys.chmod(0o600)
    port = closed_port()
    (tmp_path / "sshd_config").write_text(
        textwrap.dedent(
            f"""
            Port {port}
            ListenAddress 127.0.0.1
            HostKey {tmp_path / "host_key"}
            AuthorizedKeysFile {keys}
            PasswordAuthentication no
            PermitRootLogin prohibit-password
            StrictModes no
            UsePAM no
            PidFile {tmp_path / "sshd.pid"}
            """
        )
    )
    config = tmp_path / "ssh_config"
    config.write_text(
        textwrap.dedent(
            f"""
            Host pe-test
              HostName 127.0.0.1
              Port {port}
              User {getpass.getuser()}
              IdentityFile {tmp_path / "client_key"}
              StrictHostKeyChecking no
              UserKnownHostsFile /dev/null
              LogLevel ERROR
            """
        )
    )
    sshd = subprocess.Popen(
        [SSHD, "-D", "-f", str(tmp_path / "sshd_config"), "-E", str(tmp_path / "sshd.log")]
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["ssh", "-F", str(config), "pe-test", "true"], capture_output=True, timeout=20
            )
            if probe.returncode == 0:
                break
            if sshd.poll() is not None:
                pytest.skip(f"sshd did not start: {(tmp_path / 'sshd.log').read_text()}")
            time.sleep(0.2)
        else:
            pytest.fail(f"ssh to the test's sshd failed: {probe.stderr!r}")
        yield config
    finally:
        sshd.kill()
        sshd.wait(timeout=10)


def test_workers_over_ssh_give_the_serial_outcomes(runner: PluginRunner, ssh_config: Path) -> None:
    out = runner.pytester.path / "ran"
    out.mkdir()
    runner.pytester.makepyfile(test_every=EVERY_OUTCOME.format(out=str(out)))
    serial = runner.observe("-p", "no:randomly")
    here = runner.pytester.path
    tx = f"2*ssh=pe-test//ssh_config={ssh_config}//python={sys.executable}//chdir={here}//id=box"
    parallel = runner.observe("--tx", tx, "-p", "no:randomly", workers=1)
    assert parallel.differences_from(serial) == []
    header = "\n".join(runner.header_lines(parallel.result))
    assert f"parallel_exec: box: 2 workers on {socket.gethostname()} (" in header, header
    assert f"), in {here}" in header
    runner.assert_no_traceback(parallel.result)


def test_a_remote_killed_mid_run_fails_its_running_tests_and_the_run_goes_on(
    runner: PluginRunner, servers: list[SocketServer]
) -> None:
    out = runner.pytester.path / "ran"
    out.mkdir()
    runner.pytester.makepyfile(
        test_long=textwrap.dedent(
            f"""
            import os, time, pytest

            @pytest.mark.parametrize("n", range(24))
            def test_slow(n):
                with open(os.path.join({str(out)!r}, f"{{os.getpid()}}-{{n}}"), "w") as fh:
                    fh.write(str(os.getppid()))
                time.sleep(0.5)
            """
        )
    )
    doomed = start_server(servers, runner.pytester)
    other = start_server(servers, runner.pytester)
    here = runner.pytester.path
    junit = here / "killed.xml"
    command = runner.command(
        "--tx",
        doomed.spec(1, here),
        "--tx",
        other.spec(1, here),
        f"--junitxml={junit}",
        "-p",
        "no:randomly",
        workers=1,
    )
    with subprocess.Popen(
        command, cwd=here, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as run:
        deadline = time.monotonic() + 60
        worker_pids: set[int] = set()
        while time.monotonic() < deadline and not worker_pids:
            worker_pids = {
                int(p.name.split("-")[0])
                for p in out.iterdir()
                if p.read_text() == str(doomed.process.pid)
            }
            time.sleep(0.05)
        assert worker_pids, "no test ran on the machine to be killed"
        doomed.process.send_signal(signal.SIGKILL)
        output, _ = run.communicate(timeout=120)
    text = output.decode(errors="replace")
    assert run.returncode == 1, text
    cases = junit_outcomes(junit)
    outcomes = dict(cases)
    assert len(cases) == len(outcomes) == 24, text  # every test, exactly once
    failed = [name for name, outcome in outcomes.items() if outcome == "failed"]
    assert 1 <= len(failed) <= 2, text
    assert set(outcomes.values()) == {"passed", "failed"}, text
    lost = f"it ran on socket=127.0.0.1:{doomed.port}, whose connection was lost"
    assert text.count(lost) >= 2 * len(failed), text  # the crash line and the failure
    assert "Traceback (most recent call last)" not in text
    assert "INTERNALERROR" not in text
    # Its workers noticed their machine's agent was gone and ended.
    for pid in worker_pids:
        assert _ended(pid), f"worker {pid} of the killed machine is still running"


def junit_outcomes(path: Path) -> list[tuple[str, str]]:
    """``(test, passed or failed)`` of every test case, in the file's order."""
    return [
        (
            f"{case.get('classname')}::{case.get('name')}",
            "failed"
            if case.find("failure") is not None or case.find("error") is not None
            else "passed",
        )
        for case in ET.parse(path).getroot().iter("testcase")
    ]


def _ended(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_an_unreachable_machine_is_said_and_the_others_run(
    runner: PluginRunner, servers: list[SocketServer]
) -> None:
    runner.pytester.makepyfile(test_small="def test_a(): pass\ndef test_b(): assert 0\n")
    port = closed_port()
    result = runner.run("--tx", f"2*socket=127.0.0.1:{port}", "-p", "no:randomly", workers=1)
    text = runner.output(result)
    assert result.ret == 1, text
    assert f"parallel_exec: socket=127.0.0.1:{port}: unreachable (ConnectionRefusedError" in text, (
        text
    )
    assert "its workers do not start" in text
    assert "parallel_exec: 1 worker" in text
    result.assert_outcomes(passed=1, failed=1)
    # Nothing but that machine: nothing can run.
    alone = runner.run("--tx", f"socket=127.0.0.1:{port}", "-p", "no:randomly")
    assert alone.ret == pytest.ExitCode.USAGE_ERROR, runner.output(alone)
    assert "parallel_exec: no worker can start: socket=127.0.0.1:" in runner.output(alone)
    runner.assert_no_traceback(alone)


def test_a_remote_with_another_version_is_refused(
    runner: PluginRunner, servers: list[SocketServer], tmp_path: Path
) -> None:
    """The remote's Python imports a parallel_exec whose version differs."""
    copy = tmp_path / "other" / "parallel_exec"
    shutil.copytree(Path(parallel_exec.__file__).parent, copy)
    (copy / "_version.py").write_text('__version__ = "0.0.1.other"\n')
    env = dict(os.environ, PYTHONPATH=str(copy.parent))
    server = start_server(servers, runner.pytester, env)
    runner.pytester.makepyfile(test_small="def test_a(): pass\n")
    result = runner.run("--tx", server.spec(1, runner.pytester.path), "-p", "no:randomly")
    text = runner.output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    assert (
        f"it does not run what the controller runs (parallel_exec version: controller "
        f"{parallel_exec.__version__}, remote 0.0.1.other)" in text
    ), text
    runner.assert_no_traceback(result)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("bogus", "expected popen, socket=HOST:PORT or ssh=[USER@]HOST"),
        ("socket=localhost", "expected socket=HOST:PORT"),
        ("2*ssh=", "expected ssh=[USER@]HOST"),
        ("0*popen", "expected N*SPEC with 1 <= N <= 16"),
        ("popen//chdir=/x", "local workers run the controller's interpreter"),
        ("socket=127.0.0.1:1//via=gw0", "the keys are //python=, //chdir=, //id= and"),
        ("9*popen --tx 9*popen", "at most 16 workers run; -n and --tx ask for 18"),
    ],
)
def test_malformed_specs_are_usage_errors(runner: PluginRunner, spec: str, says: str) -> None:
    runner.pytester.makepyfile(test_small="def test_a(): pass\n")
    result = runner.run(*[part for chunk in spec.split(" --tx ") for part in ("--tx", chunk)])
    text = runner.output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    assert "--tx" in text, text
    assert says in text, text
    runner.assert_no_traceback(result)


def test_a_remote_workers_crash_and_timeout_carry_their_evidence(
    runner: PluginRunner, servers: list[SocketServer]
) -> None:
    """Every worker remote: a crash reports its exit code and what it wrote to stderr,
    a timeout the stacks the worker dumped there: all of it sent by the machine's agent."""
    runner.pytester.makepyfile(
        test_faults="""
        import os, sys, time

        def test_passes():
            pass

        def test_crashes():
            sys.stderr.write("last words from far away\\n")
            sys.stderr.flush()
            os._exit(3)

        def test_hangs():
            time.sleep(60)
        """
    )
    server = start_server(servers, runner.pytester)
    result = runner.run(
        "--tx",
        server.spec(2, runner.pytester.path),
        "--test-timeout",
        "2",
        "--timeout-grace",
        "1",
        "-p",
        "no:randomly",
        workers=0,
    )
    text = runner.output(result)
    assert result.ret == 1, text
    result.assert_outcomes(passed=1, failed=2)
    place = f"it ran on socket=127.0.0.1:{server.port}"
    assert re.search(
        r"worker gw\d crashed while running test_faults.py::test_crashes \(exit code 3\)", text
    ), text
    assert place in text, text
    assert "last words from far away" in text, text
    assert "Timeout: exceeded 2.0 s" in text, text
    assert re.search(r'File ".*test_faults.py", line \d+ in test_hangs', text), text
    runner.assert_no_traceback(result)
