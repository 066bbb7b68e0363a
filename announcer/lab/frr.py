"""Host-installed FRR standing in for the FRR image: daemons per node, vtysh JSON queries.

Each FRR node gets its own path space (`-N <netns>`): pid files and vty sockets live under
`/var/run/frr/<netns>/`, so several routers coexist on one host and `vtysh -N <netns>` reaches
the right one. The daemons to start come from the node's bound `/etc/frr/daemons`, as the
image's watchfrr would read it; bfdd needs nothing more than `bfdd=yes` there (its control
socket follows the path space). This module starts daemons and queries them; stopping them is
`netns.kill_netns_processes`' job (they live in the node's namespace).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from announcer.lab.netns import LabError

FRR_BIN_DIR = Path("/usr/lib/frr")
FRR_RUN_DIR = Path("/var/run/frr")
FRR_USER = "frr"
_ZEBRA = "zebra"
_VTY_TIMEOUT = 10.0


@dataclass(frozen=True)
class Daemons:
    """What a `/etc/frr/daemons` file asks for: enabled daemons (zebra first) and options."""

    enabled: tuple[str, ...]
    options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def is_frr_image(image: str) -> bool:
    return "frrouting/frr" in image


def missing_binaries(daemons: tuple[str, ...] = (_ZEBRA, "bgpd")) -> list[str]:
    """FRR programs this host lacks (vtysh and the given daemons)."""
    missing = [str(FRR_BIN_DIR / d) for d in daemons if not (FRR_BIN_DIR / d).is_file()]
    if shutil.which("vtysh") is None:
        missing.append("vtysh")
    return missing


def parse_daemons(text: str) -> Daemons:
    """Parse a daemons file (shell assignments, `name=yes` and `name_options="..."`)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        words = shlex.split(raw, comments=True)
        values[key.strip()] = words[0] if words else ""
    enabled = [key for key, value in values.items() if value == "yes" and key != "vtysh_enable"]
    enabled.sort(key=lambda name: name != _ZEBRA)
    options = {
        key.removesuffix("_options"): tuple(shlex.split(value))
        for key, value in values.items()
        if key.endswith("_options")
    }
    return Daemons(tuple(enabled), options)


def run_dir(pathspace: str) -> Path:
    return FRR_RUN_DIR / pathspace


def prepare_run_dir(pathspace: str) -> Path:
    """`/var/run/frr/<pathspace>/`, owned by the frr user as the daemons expect."""
    path = run_dir(pathspace)
    path.mkdir(parents=True, exist_ok=True)
    for directory in (FRR_RUN_DIR, path):
        shutil.chown(directory, FRR_USER, FRR_USER)
    return path


def start_daemons(netns: str, *, daemons: Daemons, config: Path, log_dir: Path) -> dict[str, int]:
    """Start the enabled daemons in `netns` (zebra first, once its vty answers); name -> pid."""
    if _ZEBRA not in daemons.enabled:
        raise LabError(f"{netns}: the daemons file does not enable zebra")
    prepare_run_dir(netns)
    log_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(log_dir, FRR_USER, FRR_USER)
    pids: dict[str, int] = {}
    for name in daemons.enabled:
        pids[name] = _start_daemon(netns, name, daemons, config=config, log_dir=log_dir)
    return pids


def _start_daemon(netns: str, name: str, daemons: Daemons, *, config: Path, log_dir: Path) -> int:
    binary = FRR_BIN_DIR / name
    pid_file = run_dir(netns) / f"{name}.pid"
    log = log_dir / f"{name}.log"
    argv = [
        "ip", "netns", "exec", netns, str(binary), "-N", netns, "-f", str(config),
        "-i", str(pid_file), "--log", f"file:{log}", "-d", *daemons.options.get(name, ()),
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LabError(f"{netns}: {name} failed to start: {result.stderr.strip()}")
    _wait_for_socket(run_dir(netns) / f"{name}.vty", f"{netns}: {name}")
    return int(pid_file.read_text().strip())


def _wait_for_socket(path: Path, what: str) -> None:
    deadline = time.monotonic() + _VTY_TIMEOUT
    while not path.is_socket():
        if time.monotonic() > deadline:
            raise LabError(f"{what}: no vty socket at {path} after {_VTY_TIMEOUT:.0f} s")
        time.sleep(0.01)


def vtysh(pathspace: str, command: str, *, timeout: float = 10.0) -> str:
    """Run one vtysh command against the FRR instance `pathspace`; its output."""
    argv = ["vtysh", "-N", pathspace, "-c", command]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"vtysh -N {pathspace} -c {command!r}: no answer in {timeout} s") from exc
    if result.returncode != 0:
        # vtysh also complains on stderr about a missing per-pathspace vtysh.conf: harmless.
        raise LabError(f"vtysh -N {pathspace} -c {command!r}: {result.stderr.strip()}")
    return result.stdout


def vtysh_json(pathspace: str, command: str) -> dict[str, object]:
    """`command` must end in `json`; its decoded top-level object."""
    out = vtysh(pathspace, command)
    try:
        value = json.loads(out)
    except json.JSONDecodeError as exc:
        raise LabError(f"vtysh -N {pathspace} -c {command!r}: not JSON: {out[:200]!r}") from exc
    if not isinstance(value, dict):
        raise LabError(f"vtysh -N {pathspace} -c {command!r}: expected an object")
    return value


@dataclass(frozen=True)
class Peer:
    address: str
    family: str
    state: str
    prefixes_received: int
    established: int  # times the session reached Established (`connectionsEstablished`)


def bgp_peers(pathspace: str) -> list[Peer]:
    """Every BGP neighbor in `show bgp summary json`, per address family."""
    summary = vtysh_json(pathspace, "show bgp summary json")
    peers: list[Peer] = []
    for family, section in summary.items():
        if not isinstance(section, dict):
            continue
        for address, info in dict(section.get("peers") or {}).items():
            info = info if isinstance(info, dict) else {}
            received = info.get("pfxRcd", 0)
            established = info.get("connectionsEstablished", 0)
            peers.append(
                Peer(
                    address=str(address),
                    family=family,
                    state=str(info.get("state", "?")),
                    prefixes_received=received if isinstance(received, int) else 0,
                    established=established if isinstance(established, int) else 0,
                )
            )
    return peers


@dataclass(frozen=True)
class BfdPeer:
    address: str
    multihop: bool
    status: str  # up, down, init, shutdown
    diagnostic: str


def bfd_peers(pathspace: str) -> list[BfdPeer]:
    """Every session of the instance's bfdd (`show bfd peers json`; bfdd=yes in daemons)."""
    command = "show bfd peers json"
    out = vtysh(pathspace, command)
    try:
        value = json.loads(out)
    except json.JSONDecodeError as exc:
        raise LabError(f"vtysh -N {pathspace} -c {command!r}: not JSON: {out[:200]!r}") from exc
    if not isinstance(value, list):
        raise LabError(f"vtysh -N {pathspace} -c {command!r}: expected a list")
    return [
        BfdPeer(
            address=str(info.get("peer", "?")),
            multihop=bool(info.get("multihop", False)),
            status=str(info.get("status", "?")),
            diagnostic=str(info.get("diagnostic", "")),
        )
        for info in value
        if isinstance(info, dict)
    ]
