"""Launching ExaBGP: unprivileged before exec, and killed by the kernel when the daemon dies,
even by SIGKILL (the parent-death signal must be set after the user switch, which clears it)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from announcer.speaker import launch, runtime

DEADLINE = 5.0
DAEMON = """
import asyncio, sys
from pathlib import Path
from announcer.speaker import launch, runtime

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
