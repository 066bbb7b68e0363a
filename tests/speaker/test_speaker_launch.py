"""Launching ExaBGP: unprivileged before exec, and killed by the kernel when the daemon dies,
even by SIGKILL (the parent-death signal must be set after the user switch, which clears it)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from announcer.speaker import launch, nodump, runtime

DEADLINE = 5.0
DAEMON = """
import asyncio, sys
from pathlib import Path
from announcer.speaker import launch, nodump, runtime

async def main() -> None:
    account = runtime.exabgp_account("nobody")
    child = await launch.launch(
        ["sleep", "60"], env={"PATH": "/usr/bin:/bin"}, cwd=Path("/"), account=account
    )
    print(child.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def state(pid: int) -> str | None:
    """The process's state letter, None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def ids(pid: int) -> tuple[str, str, str]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return fields["Uid"].split()[0], fields["Gid"].split()[0], fields["Groups"].strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_child_runs_unprivileged_and_dies_with_a_sigkilled_daemon() -> None:
    daemon = subprocess.Popen([sys.executable, "-c", DAEMON], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        assert daemon.stdout is not None
        child = int(daemon.stdout.readline())
        assert ids(child) == ("65534", "65534", "")  # nobody, nogroup, no supplementary groups
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=DEADLINE)
        deadline = time.monotonic() + DEADLINE
        while state(child) not in (None, "Z", "X"):
            assert time.monotonic() < deadline, "the child outlived the daemon"
            time.sleep(0.01)
    finally:
        daemon.kill()
        daemon.wait()
        if daemon.stdout is not None:
            daemon.stdout.close()
        if child is not None and state(child) not in (None, "Z", "X"):
            os.kill(child, signal.SIGKILL)


def test_output_is_logged_one_record_per_line(caplog: pytest.LogCaptureFixture) -> None:
    script = 'printf "first\\n\\nsecond\\n"; printf "%070000d\\n" 0; printf "third\\n" >&2'

    async def main() -> int:
        account = runtime.exabgp_account("nobody")
        child = await launch.launch(
            ["sh", "-c", script], env={"PATH": "/usr/bin:/bin"}, cwd=Path("/"), account=account
        )
        assert child.stdout is not None and child.stderr is not None
        await asyncio.wait_for(
            asyncio.gather(
                launch.drain(child.stdout, pid=child.pid),
                launch.drain(child.stderr, pid=child.pid),
            ),
            DEADLINE,
        )
        return await child.wait()

    with caplog.at_level(logging.INFO, logger="announcer.exabgp"):
        assert asyncio.run(main()) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "announcer.exabgp"]
    assert sorted(lines) == ["(overlong line dropped)", "first", "second", "third"]


@pytest.mark.parametrize(
    ("first_line", "interpreter"),
    [
        ("#!/opt/venv/bin/python\n", "/opt/venv/bin/python"),
        ("#!/usr/bin/python3 -I\n", "/usr/bin/python3"),
        ("#!/usr/bin/env python3\n", "which:python3"),
        ("#!/bin/sh\n", None),
        ("not a script\n", None),
    ],
)
def test_the_interpreter_comes_from_the_scripts_first_line(
    tmp_path: Path, first_line: str, interpreter: str | None
) -> None:
    script = tmp_path / "exabgp"
    script.write_text(first_line + "print('hello')\n")
    found = launch.script_interpreter(script)
    if interpreter is not None and interpreter.startswith("which:"):
        assert found is not None and found.name == "python3" and found.is_file()
    else:
        assert found == (Path(interpreter) if interpreter else None)
    assert launch.script_interpreter(tmp_path / "absent") is None


NODUMP_PROBE = """#!{python}
import ctypes, os, sys
print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0), " ".join(sys.argv), flush=True)
"""


def test_a_python_exabgp_runs_non_dumpable_with_its_own_argv(tmp_path: Path) -> None:
    """Through the launcher: PR_GET_DUMPABLE (3) says 0 inside, and argv is the script's."""
    runtime_dir = tmp_path / "runtime"
    runtime_dir.mkdir()
    (runtime_dir / "nodump.py").write_bytes(Path(nodump.__file__).read_bytes())
    script = tmp_path / "exabgp"
    script.write_text(NODUMP_PROBE.format(python=sys.executable))
    script.chmod(0o755)
    account = runtime.Account(name="self", uid=os.getuid(), gid=os.getgid(), switch=False)

    async def run() -> bytes:
        child = await launch.launch(
            [str(script), "server", "conf"], env={}, cwd=runtime_dir, account=account
        )
        out, _ = await asyncio.wait_for(child.communicate(), DEADLINE)
        return out

    assert asyncio.run(run()).decode().split() == ["0", str(script), "server", "conf"]


def test_the_launcher_answers_exabgps_fqdn_question_without_the_resolver(
    tmp_path: Path,
) -> None:
    """ExaBGP asks `socket.getfqdn()` at start; through the launcher the answer is the host
    name, with no lookup that could block for the resolver's timeout."""
    runtime_dir = tmp_path / "runtime"
    runtime_dir.mkdir()
    (runtime_dir / "nodump.py").write_bytes(Path(nodump.__file__).read_bytes())
    script = tmp_path / "exabgp"
    script.write_text(
        f"#!{sys.executable}\nimport socket\n"
        "socket.gethostbyaddr = None  # any lookup would fail the script\n"
        "print(socket.getfqdn(), socket.getfqdn('peer'), flush=True)\n"
    )
    script.chmod(0o755)
    account = runtime.Account(name="self", uid=os.getuid(), gid=os.getgid(), switch=False)

    async def run() -> bytes:
        child = await launch.launch([str(script)], env={}, cwd=runtime_dir, account=account)
        out, _ = await asyncio.wait_for(child.communicate(), DEADLINE)
        return out

    assert asyncio.run(run()).decode().split() == [socket.gethostname(), "peer"]
