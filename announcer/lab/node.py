"""`announcer lab node`: the main process of a lab control-plane node (the topology's `cmd`).

It runs inside the node (network namespace plus the node's binds, or a real container) and
owns two children: the fake apiserver, and a BGP speaker chosen by `choose_speaker`: the
announcer daemon (`announcer run`, which manages the VIPs on `lo` itself) when the node has
/etc/announcer/config.yaml, else a plain ExaBGP announcing the VIPs of
/etc/announcer/exabgp.conf, whose VIPs go on `lo` here. The fake apiserver starts in the
state `$ANNOUNCER_LAB_APISERVER_STATE` names (`announcer lab up --apiserver-state`), by
default ready. Children write to this process's stdout/stderr (the node's log).
SIGTERM/SIGINT stop the children (terminate, grace, kill) and exit 0. The daemon is started
again `RESTART_DELAY` after it exits, whatever the reason, as systemd's `Restart=always` does
on a real host; any other child that exits is logged and the node exits 1, so the failure
shows.
It must not touch anything outside its node: no topology, no other namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_interface
from pathlib import Path

log = logging.getLogger("announcer.lab.node")

KUBE_PKI = Path("/etc/kubernetes/pki")
RUN_DIR = Path("/run/announcer")
CONFIG_DIR = Path("/etc/announcer")
NODE_NAME_ENV = "CLAB_LABEL_CLAB_NODE_NAME"
VIPS_ENV = "CLAB_LABEL_ANNOUNCER_LAB_VIPS"
APISERVER_STATE_ENV = "ANNOUNCER_LAB_APISERVER_STATE"
STOP_GRACE = 5.0
RESTART_DELAY = 1.0  # RestartSec of config/systemd/announcer.service

# Plain ExaBGP: no named-pipe CLI (its helper can stop all peers when it fails), no log line
# per keepalive, and a calmer reactor (less idle CPU, same command latency).
EXABGP_ENV = {
    "exabgp_api_cli": "false",
    "exabgp_log_statistics": "false",
    "exabgp_reactor_speed": "10",
}


class NodeError(Exception):
    pass


@dataclass(frozen=True)
class Child:
    """A program the node runs for its whole life."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    restart: bool = False  # started again after it exits, like systemd's Restart=always


@dataclass(frozen=True)
class Speaker:
    """The node's BGP speaker and whether the VIPs must be put on `lo` for it."""

    child: Child
    vips_on_lo: bool


def choose_speaker(config_dir: Path = CONFIG_DIR) -> Speaker:
    """`announcer run` when the node has an announcer config, else plain ExaBGP."""
    config = config_dir / "config.yaml"
    if config.exists():
        daemon = (sys.executable, "-m", "announcer", "run", "--config", str(config))
        return Speaker(Child("announcer", daemon, restart=True), vips_on_lo=False)
    exabgp = (sys.executable, "-m", "exabgp", "server", str(config_dir / "exabgp.conf"))
    return Speaker(Child("exabgp", exabgp, EXABGP_ENV), vips_on_lo=True)


def apiserver_child(
    name: str, *, pki: Path = KUBE_PKI, run_dir: Path = RUN_DIR, state: str | None = None
) -> Child:
    argv = (
        sys.executable, "-m", "announcer.lab.apiserver", "--node", name,
        "--cert", str(pki / "apiserver.crt"), "--key", str(pki / "apiserver.key"),
        "--client-ca", str(pki / "ca.crt"), "--control", str(run_dir / "lab-apiserver.sock"),
    )  # fmt: skip
    return Child("apiserver", argv + (("--state", state) if state else ()))


def parse_vips(text: str) -> tuple[str, ...]:
    """Comma-separated prefixes (the `announcer.lab/vips` label) -> `ip addr` arguments."""
    try:
        return tuple(str(ip_interface(item.strip())) for item in text.split(",") if item.strip())
    except ValueError as exc:
        raise NodeError(f"VIPs {text!r}: {exc}") from exc


def set_vips_on_lo(vips: Sequence[str], *, present: bool) -> None:
    """Put the VIPs on (or take them off) `lo`; idempotent."""
    for vip in vips:
        argv = ["ip", "addr", "replace" if present else "del", vip, "dev", "lo"]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0 and present:
            raise NodeError(f"{' '.join(argv)}: {result.stderr.strip()}")


async def _start(child: Child) -> asyncio.subprocess.Process:
    log.info("starting %s: %s", child.name, " ".join(child.argv))
    env = {**os.environ, **child.env}
    return await asyncio.create_subprocess_exec(*child.argv, env=env, stdin=subprocess.DEVNULL)


async def _stop(name: str, proc: asyncio.subprocess.Process, grace: float) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        log.warning("%s ignored SIGTERM for %.0f s: killing it", name, grace)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    log.info("%s stopped (exit %s)", name, proc.returncode)


async def supervise(children: Sequence[Child], *, restart_delay: float = RESTART_DELAY) -> int:
    """Start `children` in order, restart those marked `restart` when they exit, until a stop
    signal (exit 0) or the exit of another child (exit 1); then stop them in reverse order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    procs: dict[str, asyncio.subprocess.Process] = {}
    try:
        for child in children:
            procs[child.name] = await _start(child)
        while (exited := await _wait_first(procs, stop)) is not None:
            child = next(c for c in children if c.name == exited)
            code = procs[exited].returncode
            if not child.restart:
                log.error("%s exited unexpectedly (exit %s): stopping the node", exited, code)
                return 1
            log.warning("%s exited (exit %s): restarting it in %g s", exited, code, restart_delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), restart_delay)
            if stop.is_set():
                break
            procs[exited] = await _start(child)
        log.info("stop requested")
        return 0
    finally:
        for name, proc in reversed(procs.items()):
            await _stop(name, proc, STOP_GRACE)


async def _wait_first(
    procs: Mapping[str, asyncio.subprocess.Process], stop: asyncio.Event
) -> str | None:
    """The name of the first child to exit, or None once a stop is requested."""
    waits = {asyncio.ensure_future(proc.wait()): name for name, proc in procs.items()}
    stopping = asyncio.ensure_future(stop.wait())
    done, pending = await asyncio.wait([*waits, stopping], return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if stopping in done:
        return None
    return next(waits[task] for task in done if task in waits)


def run_node(name: str | None, vips: str | None) -> int:
    """Entry point of `announcer lab node`."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s lab-node %(levelname)s %(message)s",
    )  # fmt: skip
    name = name or os.environ.get(NODE_NAME_ENV)
    if not name:
        raise NodeError(f"no node name: pass --name or set {NODE_NAME_ENV}")
    speaker = choose_speaker()
    vip_args: tuple[str, ...] = ()
    if speaker.vips_on_lo:
        vip_text = vips or os.environ.get(VIPS_ENV, "")
        vip_args = parse_vips(vip_text)
        if not vip_args:
            raise NodeError(f"no VIPs for the plain ExaBGP stage: pass --vips or set {VIPS_ENV}")
    log.info("node %s: speaker %s, VIPs %s", name, speaker.child.name, ", ".join(vip_args))
    set_vips_on_lo(vip_args, present=True)
    try:
        apiserver = apiserver_child(name, state=os.environ.get(APISERVER_STATE_ENV))
        return asyncio.run(supervise([apiserver, speaker.child]))
    finally:
        set_vips_on_lo(vip_args, present=False)
