"""Network namespaces, veth pairs and processes inside a lab node.

Owns every `ip netns` / `ip link` call and the argv that runs a program inside a node (its
network namespace plus a private mount namespace carrying the node's binds, see `launch`).
It knows nothing of topologies' meaning, FRR or the lab's state record: callers pass names.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from announcer.lab.topology import Bind

_TERM_GRACE = 3.0
_CLONE_NEWNET = 0x40000000


class LabError(Exception):
    """The lab could not be realised, queried or torn down; the message says what and why."""


@dataclass(frozen=True)
class ProcessId:
    """A pid plus its start time, so a recycled pid is never mistaken for ours."""

    pid: int
    start_time: int


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


def list_netns(prefix: str = "") -> list[str]:
    """Names of the network namespaces starting with `prefix` (`ip netns list`)."""
    out = _ip("netns", "list").stdout
    names = (line.split()[0] for line in out.splitlines() if line.strip())
    return sorted(name for name in names if name.startswith(prefix))


def add_netns(name: str) -> None:
    _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")


def delete_netns(name: str) -> None:
    result = _ip("netns", "delete", name, check=False)
    if result.returncode != 0 and name in list_netns(name):
        raise LabError(f"cannot delete namespace {name}: {result.stderr.strip()}")


def add_veth(netns_a: str, if_a: str, netns_b: str, if_b: str) -> None:
    """A veth pair created directly in both namespaces under its final names, both ends up."""
    _ip("link", "add", if_a, "netns", netns_a, "type", "veth", "peer", "name", if_b,
        "netns", netns_b)  # fmt: skip
    _ip("-n", netns_a, "link", "set", if_a, "up")
    _ip("-n", netns_b, "link", "set", if_b, "up")


def netns_pids(name: str) -> list[int]:
    result = _ip("netns", "pids", name, check=False)
    return [int(word) for word in result.stdout.split() if word.isdigit()]


def process_id(pid: int) -> ProcessId | None:
    """The pid with its start time (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields restart after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        _reap(pid)
        return None
    return ProcessId(pid, int(fields[19]))


def _reap(pid: int) -> None:
    # A lab process this process started and that already exited: collect it.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def alive(proc: ProcessId) -> bool:
    return process_id(proc.pid) == proc


def terminate(procs: Iterable[ProcessId], *, grace: float = _TERM_GRACE) -> None:
    """SIGTERM every process, wait up to `grace` seconds, then SIGKILL what is left."""
    pending = [proc for proc in procs if alive(proc)]
    _signal_all(pending, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        time.sleep(0.02)
        pending = [proc for proc in pending if alive(proc)]
    _signal_all(pending, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        time.sleep(0.01)
        pending = [proc for proc in pending if alive(proc)]
    if pending:
        raise LabError(f"processes survive SIGKILL: {[proc.pid for proc in pending]}")


def _signal_all(procs: Iterable[ProcessId], sig: signal.Signals) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            if alive(proc):
                os.kill(proc.pid, sig)


def kill_netns_processes(name: str, *, grace: float = _TERM_GRACE) -> None:
    """Stop every process whose network namespace is `name`."""
    procs = [proc for pid in netns_pids(name) if (proc := process_id(pid)) is not None]
    terminate(procs, grace=grace)


def node_argv(
    netns: str, argv: Sequence[str], *, binds: Sequence[Bind], created_log: Path | None
) -> list[str]:
    """argv that runs `argv` inside `netns` with `binds` in a private mount namespace."""
    outside = str(Path("/proc/self/ns/mnt").readlink())
    launcher = [sys.executable, "-m", "announcer.lab.launch", "--outside-mntns", outside]
    for bind in binds:
        launcher += ["--bind", f"{bind.source}:{bind.destination}{':ro' * bind.read_only}"]
    if created_log is not None:
        launcher += ["--created-log", str(created_log)]
    unshare = ["unshare", "--mount", "--propagation", "private", "--"]
    return ["ip", "netns", "exec", netns, *unshare, *launcher, "--", *argv]


def node_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment, the running venv's bin dir first on PATH, plus `extra`."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    path = [p for p in env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":") if p]
    env["PATH"] = ":".join([bin_dir, *(p for p in path if p != bin_dir)])
    env.update(extra)
    return env


def spawn_detached(argv: Sequence[str], *, env: Mapping[str, str], log: Path) -> int:
    """Start a long-lived process in its own session, output appended to `log`; its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=dict(env),
            cwd="/", start_new_session=True,
        )  # fmt: skip
    # Not waited for here: it outlives this process, and `process_id` reaps it if it exits
    # first. Marking it finished keeps Popen from warning about a running child when collected.
    proc.returncode = 0
    return proc.pid


def run(argv: Sequence[str], *, env: Mapping[str, str], timeout: float = 30.0) -> str | None:
    """Run to completion; None when it succeeded, otherwise what went wrong (never raises)."""
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, env=dict(env), timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if result.returncode == 0:
        return None
    return f"exit {result.returncode}: {(result.stderr or result.stdout).strip()}"


@contextlib.contextmanager
def inside(namespace: str) -> Iterator[None]:
    """Run the calling thread (and what it forks) in `namespace`'s network stack; sockets
    opened meanwhile stay there."""
    libc = ctypes.CDLL(None, use_errno=True)
    with (
        Path("/proc/thread-self/ns/net").open() as home,
        Path(f"/run/netns/{namespace}").open() as ns,
    ):
        if libc.setns(ns.fileno(), _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {namespace}")
        try:
            yield
        finally:
            if libc.setns(home.fileno(), _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
