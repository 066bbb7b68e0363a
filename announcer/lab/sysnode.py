"""Lab nodes that boot a real systemd (label `announcer.lab/init: systemd`), with the Debian
package installed and the service started by `systemctl`, as on a control-plane host.

A node's root is an overlay of the host's root filesystem whose upper and work directories
live on a tmpfs mounted at `<node dir>/systemd`: `/usr`, `/etc` and `/opt` are writable inside
and every write is gone when the tmpfs is unmounted. `systemd-nspawn --boot` runs systemd as
PID 1 of its own PID namespace inside the node's network namespace (the recipe measured on this
kind of machine: `--register=no --keep-unit --capability=CAP_NET_ADMIN systemd.firstboot=off`).
Units the host has enabled (frr, databases, timers) are masked inside. Commands run inside
through `nsenter` into the container's PID 1 (`container_in` finds it from the node's
network namespace); a file or socket inside is reached as `/proc/<PID 1>/root/...`. The
node's `run` directory is bound at `/run/announcer-lab` for the fake apiserver's control
socket.

It owns booting, entering, powering off and unmounting these nodes; it must not decide what
runs in a node (`sysplane` does for control-plane nodes) nor touch another node or the
host's own units.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Final

from announcer.lab.netns import LabError, spawn_detached

INIT_LABEL: Final = "announcer.lab/init"
SYSTEMD: Final = "systemd"
LAB_RUN: Final = Path("/run/announcer-lab")
BOOT_TIMEOUT: Final = 60.0
POWER_OFF_TIMEOUT: Final = 60.0
_HOST_UNITS: Final = Path("/etc/systemd/system")
# A command run inside finds the node's programs (the package's /usr/bin/announcer), never a
# development install that the caller's PATH may put first.
NODE_ENV: Final = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
_TOOLS: Final = ("systemd-nspawn", "nsenter", "mount", "umount")


def wants_systemd(labels: Mapping[str, str]) -> bool:
    return labels.get(INIT_LABEL) == SYSTEMD


def missing_tools() -> list[str]:
    """What this host lacks for systemd nodes (Debian: systemd-container, util-linux)."""
    return [tool for tool in _TOOLS if shutil.which(tool) is None]


def _run(argv: Sequence[str | Path], *, timeout: float = 120.0) -> str:
    words = [str(arg) for arg in argv]
    result = subprocess.run(words, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise LabError(f"{' '.join(words)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def prepare_root(top: Path) -> Path:
    """Mount the tmpfs at `top` and the overlay of / in it; mask the host's enabled units.
    The merged root, to boot."""
    top.mkdir(parents=True, exist_ok=True)
    _run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", top])
    upper, work, merged = top / "u", top / "w", top / "m"
    for folder in (upper, work, merged):
        folder.mkdir()
    options = f"lowerdir=/,upperdir={upper},workdir={work}"
    _run(["mount", "-t", "overlay", "overlay", "-o", options, merged])
    _mask_host_units(merged)
    return merged


def _mask_host_units(root: Path) -> None:
    # The host's enabled units would start inside and fail (frr wants its own namespace).
    for wants in _HOST_UNITS.glob("*.wants"):
        for unit in wants.iterdir():
            masked = root / _HOST_UNITS.relative_to("/") / unit.name
            masked.unlink(missing_ok=True)
            masked.symlink_to("/dev/null")


def boot(*, netns: str, root: Path, run_dir: Path, log: Path) -> int:
    """Start systemd-nspawn booting `root` in `netns`, detached; its pid (not PID 1's)."""
    argv = [
        "systemd-nspawn", "-D", str(root), "--boot", "--register=no", "--keep-unit",
        "--capability=CAP_NET_ADMIN", f"--network-namespace-path=/run/netns/{netns}",
        f"--machine={netns}", f"--bind={run_dir}:{LAB_RUN}", "--console=pipe",
        "systemd.firstboot=off",
    ]  # fmt: skip
    return spawn_detached(argv, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, log=log)


def container_pid(nspawn: int, *, timeout: float = BOOT_TIMEOUT) -> int:
    """The container's PID 1 as the host sees it: the child of the nspawn process that runs
    systemd (nspawn's first child only sets the container up, forks PID 1 and exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for children in Path(f"/proc/{nspawn}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                for pid in children.read_text().split():
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return int(pid)
        if not Path(f"/proc/{nspawn}").exists():
            raise LabError(f"systemd-nspawn (pid {nspawn}) exited before its container started")
        time.sleep(0.05)
    raise LabError(f"systemd-nspawn (pid {nspawn}) started no container in {timeout:.0f} s")


def container_in(netns_pids: Sequence[int]) -> int | None:
    """The PID 1 (host pid) of the container running in a namespace whose processes are
    `netns_pids`: its `systemd`, child of a systemd-nspawn; None if no container runs."""
    for pid in netns_pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            if Path(f"/proc/{pid}/comm").read_text().strip() != "systemd":
                continue
            stat = Path(f"/proc/{pid}/stat").read_text()
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            if Path(f"/proc/{parent}/comm").read_text().strip() == "systemd-nspawn":
                return pid
    return None


def path_inside(pid: int, path: PurePosixPath) -> Path:
    """`path` of the container whose PID 1 is `pid`, as the host reaches it (through
    /proc/PID/root: a socket there can be connected to without entering the container)."""
    return Path(f"/proc/{pid}/root") / path.relative_to("/")


def inside_argv(pid: int, argv: Sequence[str | Path]) -> list[str]:
    """argv running `argv` in every namespace of the container whose PID 1 is `pid`."""
    return ["nsenter", "-t", str(pid), "-a", *(str(arg) for arg in argv)]


def inside(pid: int, argv: Sequence[str | Path], *, timeout: float = 120.0) -> str:
    """Run `argv` in every namespace of the container whose PID 1 is `pid`; its stdout."""
    return _run(inside_argv(pid, argv), timeout=timeout)


def wait_booted(pid: int, *, timeout: float = BOOT_TIMEOUT) -> str:
    """Wait until the container's systemd finished booting; `running` or `degraded`."""
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        result = subprocess.run(
            ["nsenter", "-t", str(pid), "-a", "systemctl", "is-system-running"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        state = result.stdout.strip() or result.stderr.strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(0.2)
    raise LabError(f"the container of pid {pid} did not finish booting in {timeout:.0f} s: {state}")


def nspawn_pids(netns_pids: Sequence[int]) -> set[int]:
    """The systemd-nspawn processes whose containers have processes in a namespace."""
    found = set()
    for pid in netns_pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            if Path(f"/proc/{parent}/comm").read_text().strip() == "systemd-nspawn":
                found.add(parent)
    return found


def power_off(nspawns: Sequence[int], *, timeout: float = POWER_OFF_TIMEOUT) -> None:
    """Power the containers off (nspawn turns SIGTERM into a clean shutdown, which stops the
    service gracefully); SIGKILL what is still there after `timeout`."""
    for pid in nspawns:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in nspawns) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in nspawns:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat[stat.rindex(")") + 2] == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def unmount_under(top: Path) -> None:
    """Unmount every mount at or below `top` (deepest first), lazily if it is busy."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = Path(line.split()[4].replace("\\040", " "))
        if point == top or top in point.parents:
            points.append(point)
    for point in sorted(points, key=lambda path: -len(path.parts)):
        if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
