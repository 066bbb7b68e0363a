"""`announcer.speaker.peer`: only a non-dumpable child of our ExaBGP may be the relay."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from announcer.speaker import peer
from announcer.speaker.render import relay_python

NOBODY = 65534
CONNECT = """
import ctypes, socket, sys, time
if sys.argv[2] == "nodump":
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.recv(1)
"""
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as nobody")


@contextlib.contextmanager
def child_connection(directory: Path, mode: str) -> Iterator[socket.socket]:
    """The server end of a connection from a child of ours running as nobody."""
    path = directory / "relay.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        path.chmod(0o666)  # the test's own socket: nobody must reach it
        server.listen(1)
        server.settimeout(10)
        argv = [str(relay_python()), "-I", "-c", CONNECT, str(path), mode]
        child = subprocess.Popen(argv, user=NOBODY)
        try:
            connection, _ = server.accept()
            with connection:
                yield connection
        finally:
            child.kill()
            child.wait()


def test_a_non_dumpable_child_is_the_relay(shared_dir: Path) -> None:
    with child_connection(shared_dir, "nodump") as connection:
        assert peer.relay_refusal(connection, os.getpid()) is None


def test_a_dumpable_child_is_refused(shared_dir: Path) -> None:
    with child_connection(shared_dir, "dumpable") as connection:
        refusal = peer.relay_refusal(connection, os.getpid())
    assert refusal is not None
    assert refusal.startswith("the relay (pid ") and refusal.endswith(
        f"uid {NOBODY}) is dumpable: any process of uid {NOBODY} could open its pipes"
    )


def test_a_process_not_our_child_is_refused(shared_dir: Path) -> None:
    with child_connection(shared_dir, "nodump") as connection:
        refusal = peer.relay_refusal(connection, os.getppid())
    assert refusal is not None and "is not a child of exabgp" in refusal
