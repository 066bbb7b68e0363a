"""The fault matrix against the real daemon in the lab, guarantee by guarantee, and the
invariant checker's own ability to fail.

The checker tests at the top need no lab: they feed it made-up FIB histories and status
samples and assert that each invariant catches what it is meant to. The matrix tests share one
lab named `faults-test` (so they run beside the other lab tests) and one `Trial`; each runs the
faults that would break one guarantee of DESIGN.md if the daemon were wrong, and fails with
the matrix table. The soak runs only with ANNOUNCER_SOAK=1 (two minutes).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import cast

import pytest

from announcer.config import load_config
from announcer.lab import realiser
from announcer.lab.bounds import Bounds
from announcer.lab.fib import IPAddress, IPNetwork
from announcer.lab.invariants import Checker, Sample, Violation, claims_in
from announcer.lab.matrix import FAULTS
from announcer.lab.patterns import Fault
from announcer.lab.runner import Outcome, render_table, run_fault
from announcer.lab.soak import parse_duration, soak
from announcer.lab.topology import Topology, load_topology
from announcer.lab.trial import Trial
from announcer.lab.watch import FibChange, FibWatcher, ForeignRoute

LAB_NAME = "faults-test"
VIP = ip_network("198.51.100.10/32")
A, B = ip_address("192.0.2.2"), ip_address("192.0.2.6")
BOUNDS = Bounds(
    probe_failure=1.0,
    planned_shutdown=0.5,
    rise=3.0,
    frozen=3.0,
    hold=3.5,
    drain=0.9,
    restart=8.0,
    status=1.0,
    vip_back=0.9,
)


# ---- the checker, on made-up histories ------------------------------------------------------


@dataclass
class FakeWatcher:
    changes: list[FibChange]
    routes: tuple[ForeignRoute, ...] = ()
    prefixes: tuple[IPNetwork, ...] = (VIP,)

    def history(self, prefix: IPNetwork) -> tuple[FibChange, ...]:
        return tuple(c for c in self.changes if c.prefix == prefix)

    def foreign(self) -> tuple[ForeignRoute, ...]:
        return self.routes


def fib(*steps: tuple[float, Sequence[IPAddress]]) -> list[FibChange]:
    return [FibChange(at, VIP, frozenset(hops)) for at, hops in steps]


def checker(changes: list[FibChange], routes: tuple[ForeignRoute, ...] = ()) -> Checker:
    watcher = cast(FibWatcher, FakeWatcher(changes, routes))
    return Checker(watcher, {"a": frozenset({A}), "b": frozenset({B})}, BOUNDS)


def codes(found: Sequence[Violation]) -> list[str]:
    return [f"{v.invariant} {v.node}" for v in found]


def test_i1_catches_a_node_that_leaves_late_or_comes_back() -> None:
    c = checker(fib((0.0, [A, B]), (12.5, [B]), (14.0, [A, B])))
    c.stay("a", at=0.0, why="start")
    c.stay("b", at=0.0, why="start")
    c.leave("a", at=10.0, within=1.0, why="etcd down")
    found = c.check(until=20.0)
    assert codes(found) == ["I1 a", "I1 a"]
    assert "after 2.50 s" in found[0].detail and "back in r1's FIB" in found[1].detail
    assert c.check(until=20.0) == []  # each violation is reported once


def test_i1_passes_a_node_that_leaves_in_time_and_stays_out() -> None:
    c = checker(fib((0.0, [A, B]), (10.4, [B])))
    c.leave("a", at=10.0, within=1.0, why="etcd down")
    assert c.check(until=20.0) == []
    assert c.left_at("a", 10.0) == 10.4


def test_i2_catches_a_false_withdraw_and_a_blackhole_but_not_a_one_ms_replace() -> None:
    c = checker(fib((0.0, [A, B]), (5.0, [B]), (5.001, [A, B]), (8.0, []), (8.3, [A, B])))
    c.stay("a", at=0.0, why="start")
    c.stay("b", at=0.0, why="start")
    found = c.check(until=10.0)
    assert sorted(codes(found)) == ["I2 198.51.100.10/32", "I2 a", "I2 b"]
    assert all(v.at == 8.0 for v in found)


def test_i2_rejoin_must_come_back_within_its_bound() -> None:
    c = checker(fib((0.0, [B]), (14.0, [A, B])))
    c.rejoin("a", at=10.0, within=3.0, why="ready again")
    (late,) = c.check(until=20.0)
    assert late.invariant == "I2" and "after 4.00 s" in late.detail


def test_free_allows_anything() -> None:
    c = checker(fib((0.0, [A, B]), (1.0, []), (1.5, [A]), (2.0, [A, B])))
    c.free("a", at=0.0, why="clear bgp")
    c.free("b", at=0.0, why="clear bgp")
    assert c.check(until=5.0) == []


def test_i3_reports_foreign_routes() -> None:
    route = ForeignRoute(3.0, "203.0.113.0/24", frozenset({A}))
    (found,) = checker(fib((0.0, [A])), (route,)).check(until=5.0)
    assert found.invariant == "I3" and "203.0.113.0/24" in found.detail


def test_i4_catches_a_status_that_disagrees_longer_than_its_bound() -> None:
    c = checker(fib((0.0, [A, B]), (2.0, [B])))
    c.free("a", at=0.0, why="-")
    for tenth in range(50):  # says announced throughout; r1 dropped it at 2.0
        c.note("a", Sample(tenth / 10, True))
    (found,) = c.check(until=5.0)
    assert found.invariant == "I4" and found.at == 2.0


def test_i4_tolerates_short_lags_and_unknowns() -> None:
    c = checker(fib((0.0, [A, B]), (2.0, [B])))
    c.free("a", at=0.0, why="-")
    for tenth in range(50):
        c.note("a", Sample(tenth / 10, True if tenth < 25 else None if tenth < 30 else False))
    assert c.check(until=5.0) == []


def test_claims_in_needs_every_vip_running_and_every_session_up() -> None:
    vips = [{"prefix": "x", "announced": True}, {"prefix": "y", "announced": True}]
    up = [{"address": "r", "state": "up"}]
    assert claims_in({"vips": vips, "neighbors": up, "lifecycle": "running"}) is True
    assert claims_in({"vips": vips, "neighbors": up, "lifecycle": "draining"}) is None
    down = [{"address": "r", "state": "down"}]
    assert claims_in({"vips": vips, "neighbors": down, "lifecycle": "running"}) is None
    none = [{"prefix": "x", "announced": False}]
    assert claims_in({"vips": none, "neighbors": up, "lifecycle": "running"}) is False


def test_bounds_follow_the_configuration() -> None:
    config = load_config(Path(__file__).parents[2] / "containerlab" / "cp1" / "config.yaml")
    b = Bounds.from_config(config)
    api = config.apiserver
    assert b.probe_failure == pytest.approx(api.fall * api.interval + api.timeout + 0.5)
    assert b.rise == pytest.approx(api.rise * api.interval + api.min_healthy + 0.5)
    assert b.frozen == pytest.approx(config.exabgp.heartbeat_timeout + 1.0)


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "30m", "2h")] == [90, 90, 1800, 7200]
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


# ---- the matrix in the lab ------------------------------------------------------------------


@pytest.fixture(scope="module")
def faults_lab(lab_topology: Topology) -> Iterator[Topology]:
    """A lab of its own (`faults-test`), up for the module, always torn down."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANNOUNCER_LAB_NAME", LAB_NAME)
        topology = load_topology(lab_topology.path)
        assert topology.name == LAB_NAME
        realiser.down(topology, say=lambda _: None)
        try:
            realiser.up(topology, say=print)
            yield topology
        finally:
            realiser.down(topology, say=print)


@pytest.fixture(scope="module")
def trial(faults_lab: Topology) -> Iterator[Trial]:
    with Trial(faults_lab, say=print) as running:
        yield running


def run(trial: Trial, *names: str) -> list[Outcome]:
    chosen = [_fault(name) for name in names]
    outcomes = [run_fault(trial, fault) for fault in chosen]
    failed = [o for o in outcomes if not o.ok]
    assert not failed, "\n" + render_table(outcomes, width=0)
    return outcomes


def _fault(name: str) -> Fault:
    (found,) = [f for f in FAULTS if f.name == name]
    return found


GUARANTEE_1 = (
    "daemon stopped (SIGTERM)",
    "wrong CA",
    "401, no client certificate",
    "403",
    "drain across a daemon restart",
    "flapping every probe",
    "500 (etcd down)",
    "apiserver refused",
)
GUARANTEE_2 = (
    "planned shutdown, delay 3 s",
    "planned shutdown, delay 0 s",
    "hang after accept",
    "TLS handshake stall",
    "slow beyond the timeout (500 ms)",
    "slow but healthy (150 ms)",
)
GUARANTEE_3 = (
    "daemon SIGKILL",
    "daemon SIGSTOP",
    "daemon SIGSTOP, then the routers reset its sessions",
    "ExaBGP killed once",
    "ExaBGP crash-looping",
    "link silently dropping",
    "BGP peer reset from r1 (clear bgp *)",
    "r1's bgpd restarted",
)
GUARANTEE_4 = (
    "SIGHUP with an invalid file",
    "config invalid at start",
    "VIP deleted from lo",
    "commands forged into the relay's pipes (as exabgp.user)",
)
GUARANTEE_5 = ("401 with a client certificate configured", "all apiservers down, then one back")


def test_every_fault_of_the_matrix_runs_under_some_guarantee() -> None:
    names = [f.name for f in FAULTS]
    assert len(names) == len(set(names)) >= 20
    tested = {*GUARANTEE_1, *GUARANTEE_2, *GUARANTEE_3, *GUARANTEE_4, *GUARANTEE_5}
    assert tested == set(names)


@pytest.mark.netns
def test_guarantee_1_announce_only_while_ready_undrained_and_deciding(trial: Trial) -> None:
    """Guarantee 1: a node attracts traffic only while its apiserver is ready, it is not
    drained and the daemon decides. Faults that would break it if the code were wrong:
    `daemon stopped (SIGTERM)` (a stopping daemon must leave r1's ECMP set at once), `wrong
    CA` (a probe that skipped verification would stay), `401, no client certificate` and `403`
    (a probe that took any answer for health), `drain across a daemon restart` (a drain flag
    not persisted comes back announcing after the restart), `flapping every probe` (no rise
    and fall: the route follows every probe)."""
    run(trial, *GUARANTEE_1)


@pytest.mark.netns
def test_guarantee_2_withdraw_within_the_bound_and_before_a_planned_shutdown(trial: Trial) -> None:
    """Guarantee 2: a node that stops being ready leaves within its bound, and a planned
    shutdown (readyz 500, livez 200) at once, before the listener closes. Faults that would
    break it: `planned shutdown, delay 3 s` (without the livez fast path it leaves only after
    fall probes, later than interval + 0.5 s), `hang after accept`, `TLS handshake stall` and
    `slow beyond the timeout` (a probe without a hard deadline never fails), `slow but
    healthy` (a deadline below 150 ms would withdraw a healthy node), `planned shutdown,
    delay 0 s`."""
    run(trial, *GUARANTEE_2)


@pytest.mark.netns
def test_guarantee_3_fail_closed_whatever_dies_or_freezes(trial: Trial) -> None:
    """Guarantee 3: whatever dies or freezes, the routes go. Faults that would break it:
    `daemon SIGKILL` (an ExaBGP that outlived its daemon keeps announcing), `daemon SIGSTOP`
    (without the relay's heartbeat a frozen daemon announces forever), `daemon SIGSTOP, then
    the routers reset its sessions` (an ExaBGP that replays its adj-rib-out brings a frozen
    daemon's routes back to the new sessions), `ExaBGP killed once`
    and `ExaBGP crash-looping` (no restart, no replay, or no backoff), `link silently
    dropping`, `BGP peer reset from r1` and `r1's bgpd restarted` (routes not replayed)."""
    run(trial, *GUARANTEE_3)


@pytest.mark.netns
def test_guarantee_4_only_the_configured_vips(trial: Trial) -> None:
    """Guarantee 4: nothing but the configured VIPs is ever announced (I3 is checked on r1's
    FIB and BGP table for every fault). Faults that would break it: `SIGHUP with an invalid
    file` (a half-applied reload), `config invalid at start` (a daemon that starts on a broken
    file), `VIP deleted from lo` (the route must stay; the address is put back, not another),
    `commands forged into the relay's pipes` (another process of ExaBGP's user writing an
    announce into the relay's stdout and a forged session event into its stdin through /proc).
    And the checker itself must see a foreign route: one added on r1 via cp1 is reported."""
    run(trial, *GUARANTEE_4)
    r1 = trial.topology.netns("r1")
    gateway = str(min(trial.gateways["cp1"], key=lambda a: a.version))
    add = ["ip", "-n", r1, "route", "add", "203.0.113.0/24", "via", gateway, "proto", "bgp"]
    subprocess.run(add, check=True)
    try:
        trial.watcher.wait(lambda: bool(trial.watcher.foreign()), 5.0)
        found = [v for v in trial.check.check() if v.invariant == "I3"]
        assert any("203.0.113.0/24" in v.detail for v in found)
    finally:
        subprocess.run(["ip", "-n", r1, "route", "del", "203.0.113.0/24"], check=True)


@pytest.mark.netns
def test_guarantee_5_needs_nothing_from_the_cluster(trial: Trial) -> None:
    """Guarantee 5: the daemon needs nothing from the cluster. Faults that would break it:
    `all apiservers down, then one back` (the VIP must return on the first node whose own
    readyz is 200, with no other apiserver to ask, as at `kubeadm init`), and `401 with a
    client certificate configured` (a cluster without anonymous access: a local certificate
    file, no kubeconfig, keeps the node in)."""
    run(trial, *GUARANTEE_5)


@pytest.mark.netns
@pytest.mark.skipif(os.environ.get("ANNOUNCER_SOAK") != "1", reason="set ANNOUNCER_SOAK=1")
@pytest.mark.timeout(600)
def test_soak_two_minutes(faults_lab: Topology) -> None:
    """Random faults for two minutes with the checker on: no fault fails, nothing violated."""
    result = soak(faults_lab, 120.0, seed=int(os.environ.get("ANNOUNCER_SOAK_SEED", "1")))
    assert not result.failed, result.summary() + "\n" + render_table(result.failed, width=0)
