"""A trial: a running lab under watch, for the fault matrix and the soak.

`Trial(topology)` opens r1's FIB watcher and the invariant checker, knows each control-plane
node's bounds (from its own config.yaml) and gateway addresses, and offers what every fault
needs: `restore()` (back to the clean state: every apiserver ready, no cut link, the lab CA,
nobody drained, every node in r1's FIB and saying so, then "everyone in" for the checker),
`until_out` / `until_in` (how long until r1's FIB showed a node leave or come back, as a
`Finding` against its bound) and `observe` (a window in which nobody may be withdrawn).
For the checker it samples every daemon's status (I4, a thread per node) and reads r1's BGP
table (`rib_foreign`, I3).

It also models the daemon's ExaBGP restart backoff (`exabgp_bound`), since a fault that
kills ExaBGP soon after another one meets a longer, legitimate, restart delay.
It must not define faults (the matrix does) or evaluate invariants (the checker does).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import TracebackType

from announcer.config import load_config
from announcer.lab import faults, frr, realiser, routers
from announcer.lab.bounds import EXABGP_BACK, Bounds
from announcer.lab.invariants import Checker, Sample, claims_in
from announcer.lab.netns import LabError
from announcer.lab.override import ConfigOverride
from announcer.lab.topology import Topology
from announcer.lab.watch import interface_addresses
from announcer.lab.watchset import watch_routers
from announcer.speaker import Backoff

RESTORE_TIMEOUT = 60.0  # the longest ExaBGP backoff (30 s) plus a daemon restart
STATUS_PERIOD = 0.1  # how often each daemon's status is sampled for I4
LATE = 2.0  # how long past a bound to keep watching, to measure a late change too
_KUBE_PKI = PurePosixPath("/etc/kubernetes/pki")

Say = Callable[[str], None]


class NotClean(LabError):
    """The lab did not come back to its clean state in time."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One measured fact of a fault and whether it meets the expectation."""

    text: str
    ok: bool


def timed(label: str, seconds: float | None, bound: float) -> Finding:
    if seconds is None:
        return Finding(f"{label} never (<= {bound:.2f})", False)
    return Finding(f"{label} {seconds:.2f} s", seconds <= bound)


class Trial:
    """The lab under watch; use as a context manager."""

    def __init__(self, topology: Topology, *, say: Say = print) -> None:
        self.topology, self.say = topology, say
        self.nodes = realiser.nodes_with_role(topology, realiser.CONTROL_PLANE)
        self.configs = {
            node: load_config(faults.host_path(topology, node, faults.CONFIG))
            for node in self.nodes
        }
        self.bounds = {node: Bounds.from_config(config) for node, config in self.configs.items()}
        self.vips = topology.vips()
        self.gateways = {n: interface_addresses(topology.netns(n)) for n in self.nodes}
        every = frozenset().union(*self.gateways.values())
        self.every_gateway = every
        self.watcher = watch_routers(topology, topology.vips(), foreign_gateways=every)
        self.checker: Checker | None = None
        self._exabgp_exits: dict[str, list[float]] = {n: [] for n in self.nodes}
        self.overrides: list[ConfigOverride] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Trial:
        self.watcher.start()
        self.checker = Checker(
            self.watcher, self.gateways, Bounds.worst(list(self.bounds.values()))
        )
        now = time.monotonic()
        for node in self.nodes:
            self.checker.stay(node, at=now, why="start")
            thread = threading.Thread(target=self._sample, args=(node,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2.0)
        self.watcher.stop()

    def _sample(self, node: str) -> None:
        """What `node`'s daemon says, every `STATUS_PERIOD`, for I4 (a thread per node, so a
        frozen daemon delays no other)."""
        while not self._stop.wait(STATUS_PERIOD):
            try:
                snapshot = faults.status(self.topology, node, timeout=STATUS_PERIOD * 3)
            except LabError:  # no status socket bound: nothing said
                snapshot = None
            claim = None if snapshot is None else claims_in(snapshot)
            self.check.note(node, Sample(time.monotonic(), claim))

    def rib_foreign(self) -> list[str]:
        """I3 on the edge routers' BGP tables: prefixes received from a node that are not
        VIPs (a leaf's routes from the spine are the network's, not a node's)."""
        wanted = {str(vip) for vip in self.vips}
        nodes = {str(address) for address in self.every_gateway}
        found = []
        for router in routers.edge_routers(self.topology):
            pathspace = self.topology.netns(router)
            for family in ("ipv4", "ipv6"):
                table = frr.vtysh_json(pathspace, f"show bgp {family} unicast json")
                routes = table.get("routes")
                for prefix, paths in (routes if isinstance(routes, dict) else {}).items():
                    if prefix not in wanted and _from_nodes(paths, nodes):
                        found.append(prefix)
        return found

    @property
    def check(self) -> Checker:
        if self.checker is None:
            raise LabError("the trial is not running")
        return self.checker

    # ---- measurements -----------------------------------------------------------------

    def until_out(self, node: str, since: float, bound: float, label: str = "out") -> Finding:
        check = self.check
        self.watcher.wait(lambda: check.left_at(node, since) is not None, bound + LATE)
        left = check.left_at(node, since)
        return timed(f"{node} {label}", None if left is None else left - since, bound)

    def until_in(self, node: str, since: float, bound: float, label: str = "back") -> Finding:
        check = self.check
        self.watcher.wait(lambda: check.back_at(node, since) is not None, bound + LATE)
        back = check.back_at(node, since)
        return timed(f"{node} {label}", None if back is None else back - since, bound)

    def observe(
        self, seconds: float, label: str = "stayed", *, only: Sequence[str] = ()
    ) -> Finding:
        """Watch r1 for `seconds`: every node (or those of `only`) must stay in."""
        start = time.monotonic()
        check = self.check
        self.watcher.wait(lambda: False, seconds)
        end = time.monotonic()
        gone = [n for n in only or self.nodes if check.withdrawals(n, start, end)]
        if gone:
            return Finding(f"withdrawn: {', '.join(gone)}", False)
        return Finding(f"{label} {time.monotonic() - start:.1f} s", True)

    def override(self, node: str) -> ConfigOverride:
        """A writable configuration for `node`'s daemon, removed by `restore()` at the latest."""
        override = ConfigOverride(self.topology, node)
        override.install()
        self.overrides.append(override)
        return override

    def status(self, node: str) -> dict[str, object]:
        snapshot = faults.status(self.topology, node, timeout=2.0)
        if snapshot is None:
            raise LabError(f"{node}: the daemon does not answer on its status socket")
        return snapshot

    # ---- ExaBGP restart backoff -------------------------------------------------------

    def exabgp_exited(self, node: str, at: float) -> None:
        self._exabgp_exits[node].append(at)

    def daemon_restarted(self, node: str) -> None:
        self._exabgp_exits[node].clear()  # a new daemon starts a fresh backoff

    def exabgp_bound(self, node: str) -> float:
        """Bound for ExaBGP's return after its latest exit: issue 3's 5 s plus the backoff
        delay the daemon may legitimately wait (exits closer together than a stable run)."""
        exits = self._exabgp_exits[node]
        window = Backoff.stable + Backoff.maximum
        streak = sum(1 for t in exits[:-1] if exits[-1] - t < window) if exits else 0
        delay = 0.0 if streak == 0 else min(Backoff.initial * 2 ** (streak - 1), Backoff.maximum)
        return EXABGP_BACK + delay

    # ---- clean state ------------------------------------------------------------------

    def clean(self) -> bool:
        """Every node in r1's FIB for every VIP, its daemon saying it announces, healthy, and
        its last probe a success."""
        for node in self.nodes:
            if not self.check.is_in(node):
                return False
            snapshot = faults.status(self.topology, node, timeout=1.0)
            if snapshot is None or claims_in(snapshot) is not True:
                return False
            # a failed probe still counted towards `fall` would shorten the next fault
            probe = snapshot.get("last_probe")
            if snapshot.get("health") != "up" or not isinstance(probe, dict) or not probe.get("ok"):
                return False
        return True

    def restore(self) -> None:
        """Undo whatever a fault left, wait for the clean state, expect everyone in."""
        for router in realiser.nodes_with_role(self.topology, realiser.ROUTER):
            if faults.router_is_down(self.topology, router):
                faults.router_up(self.topology, router)
        for node in self.nodes:
            self._undo(node)
        deadline = time.monotonic() + RESTORE_TIMEOUT
        while not self.clean():
            if time.monotonic() > deadline:
                raise NotClean(f"the lab is not clean {RESTORE_TIMEOUT:.0f} s after a fault")
            self.watcher.wait(lambda: False, 0.2)
        now = time.monotonic()
        for node in self.nodes:
            self.check.stay(node, at=now, why="clean state")

    def _undo(self, node: str) -> None:
        while self.overrides:
            self.overrides.pop().remove()
        for role in ("daemon", "exabgp"):
            if faults.find(self.topology, node, role) is not None:
                faults.send(self.topology, node, role, signal.SIGCONT)
        if faults.link_dropped(self.topology, node):
            faults.drop_uplinks(self.topology, node, undo=True)
        ca = faults.host_path(self.topology, node, _KUBE_PKI) / "ca.crt"
        if ca.read_bytes() != (self.topology.lab_dir / "pki" / "ca.crt").read_bytes():
            faults.swap_ca(self.topology, node, wrong=False)
        if faults.find(self.topology, node, "apiserver") is None:
            faults.restart_node(self.topology, node)
            self.daemon_restarted(node)
            return
        faults.set_apiserver(self.topology, node, "ready")
        snapshot = faults.status(self.topology, node, timeout=1.0)
        if snapshot is not None and snapshot.get("drained") is True:
            faults.drain(self.topology, node, undo=True)


def _from_nodes(paths: object, nodes: set[str]) -> bool:
    """Whether a BGP table entry has a path from a node (or says nothing of its peers)."""
    listed = paths if isinstance(paths, list) else []
    peers = [p.get("peerId") for p in listed if isinstance(p, dict)]
    return not peers or None in peers or any(peer in nodes for peer in peers)
