"""The relay as a real process: stdin/stdout pipes on one side, a real unix socket on the other.

Its parent is a sleeper standing in for ExaBGP, so that the process the dead-man switch kills
is the sleeper (never pytest). The sleeper hands its stdin/stdout to the relay and closes its
own copies: EOF on the relay's stdout then means the relay has exited.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import announcer.speaker.relay
from announcer.speaker.render import relay_python

RELAY = Path(announcer.speaker.relay.__file__)
DEADLINE = 5.0
SLEEPER = """
import os, subprocess, sys, time
relay = subprocess.Popen(sys.argv[1:])
sys.stderr.write(f"{relay.pid}\\n")
sys.stderr.flush()
os.close(0)
os.close(1)
time.sleep(3600)
"""


@dataclass
class Running:
    parent: subprocess.Popen[bytes]
    relay_pid: int
    daemon: socket.socket  # the daemon's end of the relay's connection

    def from_relay_stdout(self, size: int) -> bytes:
        """Up to `size` bytes the relay wrote for ExaBGP, b"" once it has exited."""
        assert self.parent.stdout is not None
        data = b""
        deadline = time.monotonic() + DEADLINE
        fd = self.parent.stdout.fileno()
        while len(data) < size:
            ready, _, _ = select.select([fd], [], [], deadline - time.monotonic())
            assert ready, f"nothing from the relay after {data!r}"
            chunk = os.read(fd, size - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def to_relay_stdin(self, data: bytes) -> None:
        assert self.parent.stdin is not None
        self.parent.stdin.write(data)
        self.parent.stdin.flush()


@contextlib.contextmanager
def relay(directory: Path, *, timeout: float = 30.0, user: int | None = None) -> Iterator[Running]:
    """The relay under a sleeper; both run as `user` when given (the socket lets it in)."""
    path = directory / "relay.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    if user is not None:
        path.chmod(0o666)
    server.listen(1)
    server.settimeout(DEADLINE)
    argv = [str(relay_python()), "-I", str(RELAY), str(path), str(timeout)]
    parent = subprocess.Popen(
        [sys.executable, "-c", SLEEPER, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        user=user,
    )
    try:
        assert parent.stderr is not None
        relay_pid = int(parent.stderr.readline())
        daemon, _ = server.accept()
        daemon.settimeout(DEADLINE)
        with daemon:
            yield Running(parent, relay_pid, daemon)
    finally:
        with contextlib.suppress(ProcessLookupError):
            parent.kill()
        parent.wait()
        for pipe in (parent.stdin, parent.stdout, parent.stderr):
            if pipe is not None:
                pipe.close()
        server.close()


def test_copies_both_ways_and_swallows_heartbeats(tmp_path: Path) -> None:
    with relay(tmp_path) as running:
        running.daemon.sendall(b"#\nneighbor 192.0.2.1 announce x\n# beat\nwithdraw y\n#\n")
        expected = b"neighbor 192.0.2.1 announce x\nwithdraw y\n"
        assert running.from_relay_stdout(len(expected)) == expected
        running.to_relay_stdin(b'done\n{"type": "state"}\n')
        received = b""
        while len(received) < len(b'done\n{"type": "state"}\n'):
            received += running.daemon.recv(4096)
        assert received == b'done\n{"type": "state"}\n'


def test_kills_its_parent_when_heartbeats_stop(tmp_path: Path) -> None:
    timeout = 0.5
    with relay(tmp_path, timeout=timeout) as running:
        started = time.monotonic()
        while time.monotonic() - started < 3 * timeout:  # heartbeats keep the parent alive
            running.daemon.sendall(b"#\n")
            last = time.monotonic()
            time.sleep(timeout / 5)
        assert running.parent.poll() is None
        running.parent.wait(timeout=DEADLINE)
        stopped_after = time.monotonic() - last
        assert running.parent.returncode == -signal.SIGKILL
        assert timeout <= stopped_after < timeout + 0.3


def test_kills_its_parent_when_the_daemon_closes(tmp_path: Path) -> None:
    """After a lost acknowledgement the daemon closes the channel: an ExaBGP nobody can
    talk to must not keep announcing."""
    with relay(tmp_path, timeout=30.0) as running:
        running.daemon.close()
        assert running.from_relay_stdout(1) == b""  # the relay exited
        running.parent.wait(timeout=DEADLINE)
        assert running.parent.returncode == -signal.SIGKILL


def test_dies_with_its_parent(tmp_path: Path) -> None:
    with relay(tmp_path) as running:
        running.parent.kill()
        assert running.from_relay_stdout(1) == b""
        assert running.daemon.recv(1) == b""


def test_exits_when_it_cannot_connect(tmp_path: Path) -> None:
    argv = [str(relay_python()), "-I", str(RELAY), str(tmp_path / "absent.sock"), "1"]
    result = subprocess.run(argv, capture_output=True, timeout=DEADLINE, check=False)
    assert result.returncode == 1
    assert b"relay: cannot connect to" in result.stderr


NOBODY = 65534
OPEN_FD = """
import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_WRONLY if sys.argv[1].endswith("/1") else os.O_RDONLY))
except OSError as error:
    print(errno.errorcode[error.errno])
else:
    print("opened")
"""


def open_as(uid: int, path: str) -> str:
    """What happens when a process of `uid` opens `path`: "opened" or the errno's name."""
    done = subprocess.run(
        [str(relay_python()), "-I", "-c", OPEN_FD, path],
        user=uid,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the relay as nobody")
def test_no_other_process_of_its_user_can_open_its_pipes(shared_dir: Path) -> None:
    """Dumpable, its stdin and stdout (ExaBGP's API pipes) could be opened through /proc by
    any process of its user, to inject commands or forge ExaBGP's messages."""
    uid = NOBODY
    with relay(shared_dir, user=uid) as running:
        for fd in (0, 1):
            assert open_as(uid, f"/proc/{running.relay_pid}/fd/{fd}") == "EACCES", fd
        assert Path(f"/proc/{running.relay_pid}/fd").stat().st_uid == 0  # what peer.py checks
        running.daemon.sendall(b"announce x\n")  # and it still relays
        assert running.from_relay_stdout(len(b"announce x\n")) == b"announce x\n"
