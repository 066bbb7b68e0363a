"""`announcer lab stress`: no false BFD down under load. On the dual-homed lab, one node's
daemon (`--fast-node`, cp1) runs BFD at 100 ms x 3 (a configuration override, reloaded;
the leaves accept 100 ms), the others at their configured defaults (300 ms x 3); then
`stress-ng --cpu 0 --vm 2` keeps every core busy for `--duration` while every node's status
socket (what `announcer status --json` reads) and metrics endpoint are scraped every second.
At the end: BFD state changes per session side and per profile (the daemons' counters and
the routers' `show bfd peers counters`), BFD sessions seen not up in a scrape, scrape
failures, ExaBGP restarts per node, and exit status 1 if anything but the fast profile had a
BFD down or any ExaBGP was restarted (killed by the liveness check under load).

It must not count or render (`stresstally`) nor inject faults.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from announcer.config import load_config
from announcer.lab import faults, frr, realiser
from announcer.lab.cli import default_topology, lab
from announcer.lab.fib import wait_for
from announcer.lab.netns import LabError, inside
from announcer.lab.override import ConfigOverride
from announcer.lab.runner import lab_for, load
from announcer.lab.soak import parse_duration
from announcer.lab.stresstally import (
    ROUTERS,
    Side,
    Tally,
    daemon_counts,
    exabgp_restarts,
    frr_counts,
    render,
)
from announcer.lab.topology import Topology
from announcer.lab.watch import interface_addresses

Say = Callable[[str], None]
SETTLE = 60.0  # every BFD session up, the fast profile in force
DUAL = "dual-homed.clab.yml"


@dataclass(frozen=True)
class StressPlan:
    seconds: float
    fast_node: str | None = "cp1"
    fast_interval: float = 0.1
    load: bool = True


def profile(interval: float, multiplier: int) -> str:
    return f"{interval * 1000:g} ms x {multiplier}"


class StressLab:
    """The lab's nodes and routers, each BFD session side's profile, and the scrapes."""

    def __init__(self, topology: Topology, plan: StressPlan) -> None:
        self.topology, self.plan = topology, plan
        self.nodes = realiser.nodes_with_role(topology, realiser.CONTROL_PLANE)
        self.routers = realiser.nodes_with_role(topology, realiser.ROUTER)
        self.configs = {
            n: load_config(faults.host_path(topology, n, faults.CONFIG)) for n in self.nodes
        }
        self.owner_of = {
            str(address): node
            for node in self.nodes
            for address in interface_addresses(topology.netns(node))
        }
        self.tally = Tally()

    def node_profile(self, node: str) -> str:
        if node == self.plan.fast_node:
            return profile(self.plan.fast_interval, 3)
        bfd = self.configs[node].bgp.neighbors[0].bfd
        return profile(bfd.transmit_interval, bfd.detect_multiplier)

    def counters(self) -> dict[Side, int]:
        """Every side's state change count now (a daemon unreachable: its sides missing)."""
        found: dict[Side, int] = {}
        for node in self.nodes:
            snapshot = faults.status(self.topology, node, timeout=2.0) or {}
            for peer, (_, changes) in daemon_counts(snapshot).items():
                found[self.side(node, peer)] = changes
        for router in self.routers:
            with contextlib.suppress(LabError):
                for peer, changes in frr_counts(self.frr_list(router, "counters")).items():
                    found[self.side(router, peer)] = changes
        return found

    def restarts(self) -> dict[str, int]:
        """ExaBGP restarts per node now (-1: the status could not be read)."""
        return {
            node: exabgp_restarts(faults.status(self.topology, node, timeout=2.0) or {})
            for node in self.nodes
        }

    def side(self, owner: str, peer: str) -> Side:
        side = Side(owner, peer)
        if side not in self.tally.profiles:
            node = owner if owner in self.nodes else self.owner_of.get(peer)
            self.tally.profiles[side] = ROUTERS if node is None else self.node_profile(node)
        return side

    def frr_list(self, router: str, what: str = "") -> list[object]:
        command = f"show bfd peers {what} json".replace("  ", " ")
        value = json.loads(frr.vtysh(self.topology.netns(router), command))
        if not isinstance(value, list):
            raise LabError(f"{router}: {command}: expected a list")
        return value

    def all_up(self) -> bool:
        for node in self.nodes:
            rows = daemon_counts(faults.status(self.topology, node, timeout=2.0) or {})
            if not rows or any(state != "up" for state, _ in rows.values()):
                return False
        try:
            sessions = [s for r in self.routers for s in self.frr_list(r)]
        except LabError:
            return False
        return all(isinstance(s, dict) and s.get("status") == "up" for s in sessions)

    def fast_in_force(self) -> bool:
        """Whether every router's session with the fast node runs at the fast interval both
        ways: the router sends at max(its transmit-interval, the node's receive interval) and
        detects at the node's multiplier x max(its receive-interval, the node's transmit)."""
        wanted = round(self.plan.fast_interval * 1000)
        fast = [a for a, n in self.owner_of.items() if n == self.plan.fast_node]
        try:
            sessions = [s for r in self.routers for s in self.frr_list(r)]
        except LabError:
            return False
        seen = [s for s in sessions if isinstance(s, dict) and s.get("peer") in fast]
        return bool(seen) and all(_runs_at(s, wanted) for s in seen)

    def scrape(self, t: float) -> None:
        for node in self.nodes:
            snapshot = faults.status(self.topology, node, timeout=1.0)
            self.tally.scraped(f"{node} status", ok=snapshot is not None)
            for peer, (state, _) in daemon_counts(snapshot or {}).items():
                if state != "up":
                    self.tally.downs.append((self.side(node, peer), f"{state} at +{t:.1f} s"))
            self.scrape_metrics(node, t)

    def scrape_metrics(self, node: str, t: float) -> None:
        listen = self.configs[node].metrics.listen
        if listen is None:
            return
        try:
            with inside(self.topology.netns(node)):
                text = httpx.get(f"http://{listen}/metrics", timeout=1.0).text
        except (httpx.HTTPError, OSError):
            self.tally.scraped(f"{node} metrics", ok=False)
            return
        self.tally.scraped(f"{node} metrics", ok=True)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "announcer_bfd_session_up" and sample.value != 1.0:
                    side = self.side(node, sample.labels.get("neighbor", "?"))
                    self.tally.downs.append((side, f"metrics: not up at +{t:.1f} s"))


def fast_text(original: str, interval: float) -> str:
    data = yaml.safe_load(original)
    bfd = dict(data.get("bfd") or {})
    bfd.update(transmit_interval=interval, receive_interval=interval, detect_multiplier=3)
    return str(yaml.safe_dump({**data, "bfd": bfd}, sort_keys=False))


@contextlib.contextmanager
def fast_profile(run: StressLab, say: Say) -> Iterator[None]:
    node = run.plan.fast_node
    if node is None:
        yield
        return
    override = ConfigOverride(run.topology, node)
    override.install()
    try:
        override.write(fast_text(override.original, run.plan.fast_interval))
        wait_for(run.fast_in_force, SETTLE, interval=0.5, what=f"{node} at the fast profile")
        say(f"{node}: BFD {run.node_profile(node)}")
        yield
    finally:
        override.remove()


@contextlib.contextmanager
def cpu_load(seconds: float, *, on: bool, say: Say) -> Iterator[None]:
    """`stress-ng --cpu 0 --vm 2` for the block (stopped at its end, whatever happens)."""
    if not on:
        yield
        return
    argv = ["stress-ng", "--cpu", "0", "--vm", "2", "--timeout", f"{int(seconds) + 30}s", "-q"]
    process = subprocess.Popen(argv, start_new_session=True)
    say(f"load: {' '.join(argv)} (pid {process.pid})")
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run_stress(topology: Topology, plan: StressPlan, *, say: Say) -> Tally:
    """On a lab that is up: the fast profile, every session up, the load, the scrapes."""
    run = StressLab(topology, plan)
    with fast_profile(run, say):
        wait_for(run.all_up, SETTLE, interval=0.5, what="every BFD session up")
        run.tally.before = run.counters()
        run.tally.restarts_before = run.restarts()
        say(f"{len(run.tally.before)} BFD session sides up; scraping for {plan.seconds:g} s")
        with cpu_load(plan.seconds, on=plan.load, say=say):
            scrape_for(run, plan.seconds)
        run.tally.after = run.counters()
        run.tally.restarts_after = run.restarts()
    return run.tally


def scrape_for(run: StressLab, seconds: float) -> None:
    """Scrape once a second on a drift-free schedule (a slow scrape skips no second)."""
    start = time.monotonic()
    tick = 0
    while (t := time.monotonic() - start) < seconds:
        run.scrape(t)
        tick += 1
        time.sleep(max(0.0, start + tick - time.monotonic()))


@lab.command("stress")
@click.option("--topology", "-t", "topology_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help=f"[default: containerlab/{DUAL} of the repository]")  # fmt: skip
@click.option("--duration", default="10m", show_default=True, help="e.g. 600, 90s, 10m")
@click.option("--fast-node", default="cp1", show_default=True, help="'' for none")
@click.option("--fast-interval", default=0.1, show_default=True, type=float, help="seconds")
@click.option("--no-load", is_flag=True, help="Without stress-ng.")
@click.option("--keep", is_flag=True, help="Leave a lab brought up here running.")
def stress(
    topology_path: Path | None,
    duration: str,
    fast_node: str,
    fast_interval: float,
    no_load: bool,
    keep: bool,
) -> None:
    """No false BFD down: BFD sessions under every core busy, scraped every second."""
    topology = load(topology_path or default_topology().parent / DUAL)
    plan = StressPlan(parse_duration(duration), fast_node or None, fast_interval, not no_load)
    if fast_node and fast_node not in realiser.nodes_with_role(topology, realiser.CONTROL_PLANE):
        raise click.BadParameter(
            f"{fast_node!r} is not a control-plane node", param_hint="--fast-node"
        )
    with lab_for(topology, keep=keep, say=click.echo):
        try:
            tally = run_stress(topology, plan, say=click.echo)
        except (LabError, TimeoutError, faults.FaultError) as exc:
            raise click.ClickException(str(exc)) from exc
    load_text = "stress-ng --cpu 0 --vm 2" if plan.load else "none"
    header = [
        f"stress {plan.seconds:g} s on {topology.name}, load: {load_text}, "
        f"load average after: {os.getloadavg()[0]:.1f}"
    ]
    click.echo(render(tally, header=header))
    fast = profile(plan.fast_interval, 3) if plan.fast_node else None
    if tally.any_down(but=fast) or any(n != 0 for n in tally.restarts().values()):
        raise SystemExit(1)


def _runs_at(session: dict[str, object], wanted: int) -> bool:
    """Whether an FRR `show bfd peers` session sends and detects at `wanted` ms."""
    local = ("transmit-interval", "receive-interval")
    remote = ("remote-transmit-interval", "remote-receive-interval")
    sending = [session.get(key) for key in (*local, *remote)]
    return all(isinstance(v, int) and v <= wanted for v in sending[:2]) and all(
        v == wanted for v in sending[2:]
    )
