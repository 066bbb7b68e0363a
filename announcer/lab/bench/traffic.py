"""The load client run from the benchmark, and what its records say.

`LoadClient(topology, vip, out=FILE)` starts `announcer.lab.bench.client` inside the lab's
client node (as `announcer lab exec client -- ...` would), waits until it runs, and `stop()`
closes its standard input and returns its records. `split_failures` counts the failed requests
in two kinds, by time alone: those in flight at the very moment r1's FIB changed (an ECMP
router moves a flow to another node when its nexthop set changes, and that node resets it: no
BGP speaker can prevent it) and all the others.

It must not inject faults nor read r1's FIB itself (the phase's watcher does).
"""

from __future__ import annotations

import collections
import select
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType

from announcer.lab import realiser
from announcer.lab.bench.client import OUTCOMES, Request, read_requests
from announcer.lab.bench.systems import BenchError
from announcer.lab.topology import Topology

CLIENT = "client"
LAB_CA = PurePosixPath("/etc/announcer-lab/ca.crt")  # the lab CA inside the client node
START_TIMEOUT = 15.0
# The watcher stamps a FIB change when it reads the netlink message, a little after the
# kernel made it: a request counts as in flight if it spans the change give or take this.
SLACK = 0.005


class LoadClient:
    """The client node opening new HTTPS connections to `vip`; use as a context manager."""

    def __init__(
        self, topology: Topology, vip: str, *, out: Path, rate: float, timeout: float = 2.0
    ) -> None:
        self.out, self.timeout = out, timeout
        argv = [
            sys.executable, "-m", "announcer.lab.bench.client", "--vip", vip,
            "--ca", str(LAB_CA), "--rate", f"{rate:g}", "--timeout", f"{timeout:g}",
            "--out", str(out),
        ]  # fmt: skip
        self._argv = realiser.node_command(topology, CLIENT, argv)
        self._env = realiser.node_environment(topology, CLIENT)
        self._proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def __enter__(self) -> LoadClient:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self._env
        )
        self.started = self._started(self._proc)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._close_pipes()

    def _started(self, proc: subprocess.Popen[bytes]) -> float:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        line = proc.stdout.readline().decode() if ready else ""
        if not line.startswith("started "):
            proc.kill()
            proc.wait()
            raise BenchError(f"the load client did not start: {line.strip() or 'no answer'}")
        return float(line.split()[1])

    def stop(self) -> list[Request]:
        """Stop starting requests, let those in flight end, and read every record."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise BenchError("the load client is not running")
        proc.stdin.close()
        try:
            code = proc.wait(timeout=self.timeout + 10.0)
        except subprocess.TimeoutExpired as exc:
            raise BenchError("the load client did not stop") from exc
        self._close_pipes()
        if code != 0:
            raise BenchError(f"the load client exited {code}")
        return read_requests(self.out)

    def _close_pipes(self) -> None:
        proc = self._proc
        for pipe in (proc.stdin, proc.stdout) if proc is not None else ():
            if pipe is not None and not pipe.closed:
                pipe.close()


@dataclass(frozen=True)
class Failures:
    """The failed requests of a run, split by time against r1's FIB changes."""

    total: int
    failed: int
    in_flight: int  # in flight at the moment r1's FIB changed
    other: int
    by_outcome: dict[str, int]
    other_by_outcome: dict[str, int]


def in_flight(request: Request, changes: Sequence[float], slack: float = SLACK) -> bool:
    return any(request.start - slack <= at <= request.end + slack for at in changes)


def split_failures(requests: Sequence[Request], changes: Sequence[float]) -> Failures:
    failed = [r for r in requests if not r.ok]
    moved = [r for r in failed if in_flight(r, changes)]
    others = [r for r in failed if not in_flight(r, changes)]
    count = collections.Counter(r.outcome for r in failed)
    other_count = collections.Counter(r.outcome for r in others)
    return Failures(
        total=len(requests), failed=len(failed), in_flight=len(moved), other=len(others),
        by_outcome={o: count[o] for o in OUTCOMES if count[o]},
        other_by_outcome={o: other_count[o] for o in OUTCOMES if other_count[o]},
    )  # fmt: skip
