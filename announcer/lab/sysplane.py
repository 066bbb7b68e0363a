"""A systemd control-plane node of the lab (`sysnode`): the Debian package installed with
apt-get, the node's config.yaml and PKI where a host has them, the fake apiserver as an
enabled unit, then `systemctl start announcer`, which returns once the unit is READY.

The package is `$ANNOUNCER_LAB_DEB`, else one scripts/build-deb builds into the lab directory
(once per lab). It must not boot or power off nodes (`sysnode` does) nor touch the host's
own /etc or /opt: every file goes into the node's overlay.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from announcer.lab import netns, sysnode
from announcer.lab.netns import LabError
from announcer.lab.node import apiserver_child
from announcer.lab.sysnode import inside
from announcer.lab.topology import Topology

LAB_DEB_ENV: Final = "ANNOUNCER_LAB_DEB"
APISERVER_UNIT: Final = "lab-apiserver.service"


def start_control_plane(
    topology: Topology,
    node: str,
    *,
    apiserver_state: str | None,
    on_spawn: Callable[[int], None],
) -> None:
    """Boot `node`, install and configure the package, start the fake apiserver and the
    unit. `on_spawn` gets the systemd-nspawn pid as soon as there is one (to be recorded)."""
    node_dir = topology.node_dir(node)
    run_dir = _bind_dir(topology, node, "/run/announcer")
    root = sysnode.prepare_root(node_dir / "systemd")
    nspawn = sysnode.boot(
        netns=topology.netns(node), root=root, run_dir=run_dir, log=node_dir / "log" / "main.log"
    )
    on_spawn(nspawn)
    pid = sysnode.container_pid(nspawn)
    sysnode.wait_booted(pid)
    install_package(pid, root, lab_package(topology))
    configure(
        root,
        config=_bind_dir(topology, node, "/etc/announcer") / "config.yaml",
        pki=_bind_dir(topology, node, "/etc/kubernetes/pki"),
    )
    apiserver = apiserver_child(node, run_dir=sysnode.LAB_RUN, state=apiserver_state)
    start_apiserver(pid, root, apiserver.argv)
    start_service(pid)


def _bind_dir(topology: Topology, node: str, destination: str) -> Path:
    source = topology.bind_source(node, destination)
    if source is None or not source.is_dir():
        raise LabError(f"{node}: a systemd node needs {destination} bound to a directory")
    return source


def lab_package(topology: Topology) -> Path:
    """The Debian package systemd nodes install: $ANNOUNCER_LAB_DEB, else one built once per
    lab with scripts/build-deb into the lab directory."""
    if given := os.environ.get(LAB_DEB_ENV):
        return Path(given)
    if built := sorted(topology.lab_dir.glob("announcer_*_amd64.deb")):
        return built[-1]
    script = Path(__file__).resolve().parents[2] / "scripts" / "build-deb"
    if not script.exists():
        raise LabError(f"no package for the systemd nodes: set {LAB_DEB_ENV} to a .deb")
    argv = ["bash", str(script), "--output", str(topology.lab_dir)]
    if error := netns.run(argv, env=dict(os.environ), timeout=600):
        raise LabError(f"scripts/build-deb failed: {error}")
    return sorted(topology.lab_dir.glob("announcer_*_amd64.deb"))[-1]


def install_package(pid: int, root: Path, deb: Path) -> None:
    """`apt-get install ./announcer_*.deb` inside (the host's apt lists; nothing to fetch)."""
    shutil.copy(deb, root / "var/tmp" / deb.name)  # nspawn mounts a fresh /tmp
    inside(pid, ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                 "--no-install-recommends", f"/var/tmp/{deb.name}"])  # fmt: skip


def configure(root: Path, *, config: Path, pki: Path) -> None:
    """The node's config.yaml as /etc/announcer/config.yaml, its PKI as kubeadm's."""
    shutil.copy(config, root / "etc/announcer/config.yaml")
    target = root / "etc/kubernetes/pki"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(pki, target)


def start_apiserver(pid: int, root: Path, argv: Sequence[str]) -> None:
    """The fake apiserver as the enabled unit `APISERVER_UNIT`, the stand-in for a
    kube-apiserver static pod: it comes back when the node boots again."""
    command = " ".join(shlex.quote(word) for word in argv)
    unit = root / "etc/systemd/system" / APISERVER_UNIT
    unit.write_text(
        "[Unit]\nDescription=the lab's fake kube-apiserver\n"
        f"[Service]\nExecStart={command}\nRestart=always\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    inside(pid, ["systemctl", "daemon-reload"])
    inside(pid, ["systemctl", "enable", "--now", "--quiet", APISERVER_UNIT])


def start_service(pid: int) -> float:
    """`systemctl start announcer` (Type=notify: returns once READY=1); seconds it took."""
    start = time.monotonic()
    inside(pid, ["systemctl", "start", "announcer.service"])
    return time.monotonic() - start


def daemon_status(pid: int, *, timeout: float = 30.0) -> dict[str, object]:
    """`announcer status --json` run inside the node (its socket is in the node's own /run):
    the daemon's snapshot, or `{"error": why}` when there is none."""
    argv = sysnode.inside_argv(pid, ["announcer", "status", "--json"])
    try:
        result = subprocess.run(
            argv, env=sysnode.NODE_ENV, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"`announcer status --json` gave no answer within {timeout:g} s"}
    try:
        answer = json.loads(result.stdout)
    except ValueError:
        return {"error": result.stderr.strip()[-200:] or f"exit {result.returncode}, no JSON"}
    return dict(answer) if isinstance(answer, dict) else {"error": f"not an object: {answer!r}"}
