"""How the lab finds and enters a systemd node's container, without booting one: PID 1 is
the `systemd` whose parent is a `systemd-nspawn`; here both are stand-ins, a script named
`systemd-nspawn` whose child is a copy of `sleep` named `systemd` (the kernel takes a
process's name from its executable's)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from announcer.lab import sysnode


@pytest.fixture
def fake_container(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(the fake nspawn's pid, its `systemd` child's pid); both killed afterwards."""
    sleeper = tmp_path / "systemd"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", sleeper)
    nspawn = tmp_path / "systemd-nspawn"
    nspawn.write_text(f"#!/bin/sh\n{sleeper} 60 &\nwait\n")
    nspawn.chmod(0o755)
    parent = subprocess.Popen([nspawn])
    children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
    deadline = time.monotonic() + 10.0
    while not children.read_text().split():
        assert time.monotonic() < deadline, "the fake container's PID 1 did not start"
        time.sleep(0.01)
    child = int(children.read_text().split()[0])
    try:
        yield parent.pid, child
    finally:
        subprocess.run(["kill", str(child)], check=False)
        parent.wait(timeout=10.0)


def test_pid_1_is_the_systemd_child_of_systemd_nspawn(fake_container: tuple[int, int]) -> None:
    nspawn, pid1 = fake_container
    assert sysnode.container_in([nspawn, pid1]) == pid1
    assert sysnode.nspawn_pids([pid1]) == {nspawn}


def test_no_container_among_other_processes(fake_container: tuple[int, int]) -> None:
    nspawn, _ = fake_container
    assert sysnode.container_in([nspawn]) is None
    assert sysnode.container_in([]) is None
    assert sysnode.container_in([2**22 + 7]) is None  # a pid that does not exist


def test_inside_paths_and_commands_go_through_pid_1() -> None:
    socket = PurePosixPath("/run/announcer/status.sock")
    assert sysnode.path_inside(1234, socket) == Path("/proc/1234/root/run/announcer/status.sock")
    argv = sysnode.inside_argv(1234, ["announcer", "status", "--json"])
    assert argv == ["nsenter", "-t", "1234", "-a", "announcer", "status", "--json"]
