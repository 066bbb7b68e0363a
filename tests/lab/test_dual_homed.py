"""The dual-homed lab (containerlab/dual-homed.clab.yml) as a first-class lab: `announcer lab
up` realises it and waits for every router (each leaf: a session to every node and every
node's path to each VIP; the spine: both leaves), `lab status` shows all three routers, every
node's daemon peers with both leaves over IPv4 and IPv6, and the FIB watch reads "out of every
router's FIB" over both leaves.

The layout and the merging of histories are tested without a lab; the rest needs root and FRR
(netns: run under the lab lock) and brings its own lab, under its own name, up and down.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
from click.testing import CliRunner

from announcer.lab import faults, realiser, routers, runner
from announcer.lab.bench.phase import Phase
from announcer.lab.bench.scenarios import Plan, readyz
from announcer.lab.bench.systems import by_name
from announcer.lab.cli import lab as lab_cli
from announcer.lab.fib import wait_for
from announcer.lab.matrix_dual import DUAL_FAULTS
from announcer.lab.stress import StressPlan, run_stress
from announcer.lab.stresstally import Side, Tally, render
from announcer.lab.topology import Topology, load_topology
from announcer.lab.trial import Trial
from announcer.lab.watch import FibChange
from announcer.lab.watchset import RouterWatch, union

ROOT = Path(__file__).resolve().parents[2]
DUAL = ROOT / "containerlab" / "dual-homed.clab.yml"
SIMPLE = ROOT / "containerlab" / "apiserver-vip.clab.yml"
LAB_NAME = "wdh-test"  # beside a `dual-homed` lab someone may have up
VIP4 = ip_network("198.51.100.10/32")
NODES = ("cp1", "cp2", "cp3")


def quiet(_: str) -> None:
    pass


# ---- without a lab --------------------------------------------------------------------------


def test_the_dual_homed_layout_has_two_edge_routers_and_a_spine() -> None:
    topology = load_topology(DUAL, environ={})
    assert routers.edge_routers(topology) == ["leaf1", "leaf2"]
    assert routers.upper_routers(topology) == ["spine"]
    assert routers.facing(topology, "leaf2", routers.CONTROL_PLANE) == list(NODES)
    paths = {r: routers.expected_paths(topology, r) for r in ("leaf1", "leaf2", "spine")}
    assert paths == {"leaf1": 3, "leaf2": 3, "spine": 2}


def test_the_simple_layout_is_r1_alone() -> None:
    topology = load_topology(SIMPLE, environ={})
    assert routers.edge_routers(topology) == ["r1"]
    assert routers.upper_routers(topology) == []
    assert routers.expected_paths(topology, "r1") == 3


def test_each_lab_runs_the_fault_rows_that_fit_it() -> None:
    simple = {f.name for f in runner.fitting(load_topology(SIMPLE, environ={}), runner.CATALOGUE)}
    dual = {f.name for f in runner.fitting(load_topology(DUAL, environ={}), runner.CATALOGUE)}
    rows = {f.name for f in DUAL_FAULTS}
    assert "link silently dropping" in simple - dual
    assert rows <= dual and not rows & simple
    # Without BFD in the daemon only the leaves' 90 s hold time would notice these.
    assert [f.name.split(" (")[0] for f in DUAL_FAULTS if f.needs_bfd] == [
        "uplink cut",
        "node power off",
        "daemon frozen",
        "BFD dropped on the uplink to leaf1, BGP's packets pass",
        "BFD flap storm on one neighbor",
    ]


def test_convergence_wants_each_routers_own_count() -> None:
    paths = {"leaf1 vip": 3, "spine vip": 2}
    expected = {"leaf1 vip": 3, "spine vip": 2}
    done = realiser.Convergence(4, 4, paths, expected_nexthops=3, expected=expected)
    short = realiser.Convergence(4, 4, {**paths, "spine vip": 1}, 3, expected)
    assert done.done and not short.done
    # Without per-entry counts, as the simple lab reports: one count for every VIP.
    assert realiser.Convergence(2, 2, {"vip": 3}, expected_nexthops=3).done


def test_the_stress_tally_counts_exabgp_restarts_per_node() -> None:
    before = {"cp1": 2, "cp2": 0, "cp3": -1, "cp4": 1}
    after = {"cp1": 3, "cp2": 0, "cp3": 1, "cp4": -1}  # -1: that status was not read
    tally = Tally(restarts_before=before, restarts_after=after)
    assert tally.restarts() == {"cp1": 1, "cp2": 0, "cp3": -1, "cp4": -1}
    assert "ExaBGP restarts (liveness kills under load): cp1 1, cp2 0, cp3 ?, cp4 ?" in render(
        tally, header=[]
    )


def test_union_of_two_routers_histories() -> None:
    a, b, c = (ip_address(f"192.0.2.{n}") for n in (2, 18, 6))
    leaf1 = [FibChange(1.0, VIP4, frozenset({a})), FibChange(3.0, VIP4, frozenset())]
    leaf2 = [FibChange(2.0, VIP4, frozenset({b})), FibChange(3.0, VIP4, frozenset({c}))]
    merged = union([leaf1, leaf2], VIP4)
    # At 3.0 both change at once: one entry, the union after both.
    assert [(x.at, x.nexthops) for x in merged] == [
        (1.0, frozenset({a})),
        (2.0, frozenset({a, b})),
        (3.0, frozenset({c})),
    ]


# ---- the lab --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dual(lab_topology: Topology) -> Iterator[Topology]:
    # lab_topology (tests/lab/conftest.py) skips where the lab cannot run, or fails when
    # ANNOUNCER_REQUIRE_NETNS=1; by name, `conftest` is whichever was imported last.
    topology = load_topology(DUAL, environ={**os.environ, "ANNOUNCER_LAB_NAME": LAB_NAME})
    realiser.down(topology, say=quiet)
    try:
        realiser.up(topology, say=print)
        yield topology
    finally:
        realiser.down(topology, say=quiet)


@pytest.mark.netns
def test_up_waits_for_every_router(dual: Topology) -> None:
    converged = realiser.convergence(dual)
    # Each leaf: 6 node sessions and 2 to the spine; the spine: 4 (both leaves, both families).
    assert (converged.established, converged.peers) == (20, 20)
    assert converged.nexthops == {
        f"{router} {vip}": count
        for router, count in (("leaf1", 3), ("leaf2", 3), ("spine", 2))
        for vip in dual.vips()
    }
    assert realiser.healthy(dual, realiser.Record.load(dual.lab_dir / realiser.STATE_FILE))


@pytest.mark.netns
def test_status_shows_both_leaves_and_the_spine(dual: Topology) -> None:
    result = CliRunner().invoke(lab_cli, ["status", "--topology", str(DUAL)], env=_env())
    assert result.exit_code == 0, result.output
    for router in ("leaf1", "spine", "leaf2"):
        assert f"{router} BGP sessions:" in result.output
        assert f"{router} kernel FIB:" in result.output
    assert result.output.count("announcing 2/2 VIPs") == 3, result.output
    # BFD: each leaf with the 3 nodes and the spine, the spine with both leaves; both families.
    sessions = {r: _bfd_rows(result.output, r) for r in ("leaf1", "leaf2", "spine")}
    assert {r: len(rows) for r, rows in sessions.items()} == {"leaf1": 8, "leaf2": 8, "spine": 4}
    assert "192.0.2.2 " in " ".join(sessions["leaf1"]) + " ", sessions


def _bfd_rows(output: str, router: str) -> list[str]:
    """The session rows under `ROUTER BFD sessions:` (the brief table's header aside)."""
    block = output.split(f"{router} BFD sessions:\n", 1)[1]
    rows = []
    for line in block.splitlines():
        if not line.startswith("  "):
            break
        if not line.strip().startswith("SessionId"):
            rows.append(line)
    return rows


@pytest.mark.netns
def test_every_daemon_peers_with_both_leaves_over_both_families(dual: Topology) -> None:
    for node in NODES:
        snapshot = wait_for(lambda n=node: faults.status(dual, n, timeout=2.0), 10.0)
        neighbors = snapshot.get("neighbors")
        assert isinstance(neighbors, list) and len(neighbors) == 4, neighbors
        assert {n.get("state") for n in neighbors if isinstance(n, dict)} == {"up"}
        versions = {ip_address(str(n.get("address"))).version for n in neighbors}
        assert versions == {4, 6}


@pytest.mark.netns
def test_the_trial_reads_every_leaf(dual: Topology) -> None:
    """The fault matrix's view: every node in both leaves' FIBs, nothing foreign in the
    leaves' BGP tables (the spine's client subnet is not a node's), each leaf readable alone."""
    with Trial(dual, say=quiet) as trial:
        assert isinstance(trial.watcher, RouterWatch)
        assert trial.watcher.wait(lambda: all(trial.check.is_in(n) for n in NODES), 10.0)
        assert trial.rib_foreign() == []
        leaf1 = trial.watcher.watcher("leaf1")
        gateway = ip_address("192.0.2.10")
        assert gateway in leaf1.current(VIP4)


def _env() -> dict[str, str]:
    return {"ANNOUNCER_LAB_NAME": LAB_NAME}


def run_row(lab: Topology, name: str) -> runner.Outcome:
    (row,) = [f for f in runner.fitting(lab, runner.CATALOGUE) if f.name.startswith(name)]
    (outcome,) = runner.run_faults(lab, [row], say=print)
    print(runner.render_table([outcome], width=0))
    return outcome


IPV6_BFD = (
    "seen in some runs, not alone: an FRR bfdd session stayed Up after its peer fell silent "
    "(most often the IPv6 one; the other family's went down in the BFD time), so that VIP kept "
    "the path until the 90 s hold time; containerlab/README.md says what is known of the cause"
)


@pytest.mark.netns
@pytest.mark.xfail(reason=IPV6_BFD, strict=False)
def test_the_uplink_cut_waits_for_bfd_in_the_daemon(dual: Topology) -> None:
    """Skipped, and said so, while the nodes' status has no `bfd` member; run once it has:
    only leaf1's path to the node goes, within the BFD time, for every VIP."""
    chosen = runner.fitting(dual, runner.CATALOGUE)
    assert "link silently dropping" not in {f.name for f in chosen}
    outcome = run_row(dual, "uplink cut")
    daemons_run_bfd = all("bfd" in (faults.status(dual, n, timeout=2.0) or {}) for n in NODES)
    assert bool(outcome.skipped) != daemons_run_bfd, outcome.measured
    assert outcome.ok, outcome.measured


@pytest.mark.netns
@pytest.mark.xfail(reason=IPV6_BFD, strict=False)
def test_leaf1_failing_silently_leaves_the_spine_within_its_bfd_time(dual: Topology) -> None:
    outcome = run_row(dual, "leaf1 fails")
    assert outcome.ok, outcome.measured


@pytest.mark.netns
def test_leaf1_bfdd_restarted_keeps_the_spine_served(dual: Topology) -> None:
    outcome = run_row(dual, "leaf1's bfdd restarted")
    assert outcome.ok, outcome.measured


@pytest.mark.netns
def test_a_node_powered_off_is_out_of_both_leaves_within_its_bfd_time(dual: Topology) -> None:
    outcome = run_row(dual, "node power off")
    assert outcome.ok, outcome.measured


@pytest.mark.netns
def test_a_frozen_exabgp_is_killed_and_out_of_both_leaves(dual: Topology) -> None:
    outcome = run_row(dual, "ExaBGP frozen")
    assert outcome.ok, outcome.measured


@pytest.mark.netns
def test_a_frozen_daemon_is_out_of_both_leaves_by_bfd(dual: Topology) -> None:
    outcome = run_row(dual, "daemon frozen")
    assert outcome.ok, outcome.measured


@pytest.mark.netns
def test_a_frozen_daemons_sessions_reset_by_both_leaves_get_no_route(dual: Topology) -> None:
    # What made `daemon frozen` slow once in about 25 runs: a leaf closed the session on BFD
    # down and the frozen node's ExaBGP came back at once with the routes it once announced.
    outcome = run_row(dual, "daemon SIGSTOP, then the routers reset its sessions")
    assert outcome.ok, outcome.measured


@pytest.mark.netns
def test_bfd_dropped_alone_takes_the_node_out_of_that_leaf(dual: Topology) -> None:
    outcome = run_row(dual, "BFD dropped")
    assert outcome.ok, outcome.measured


@pytest.mark.netns
def test_a_bfd_flap_storm_disturbs_no_other_session(dual: Topology) -> None:
    outcome = run_row(dual, "BFD flap storm")
    assert outcome.ok, outcome.measured


@pytest.mark.netns
def test_the_benchmark_times_out_of_every_leaf(dual: Topology) -> None:
    """The benchmark's phase on the dual-homed lab: readyz-failure and recovery, timed from
    the fault to out of (back in) both leaves' FIBs, for announcer."""
    (system,) = by_name(["announcer"])
    with Phase(dual, system) as phase:
        assert phase.all_in(30.0)
        failure, recovery = readyz(phase, Plan.quick(seed=1))
        violations = phase.violations()
    print("readyz-failure", failure.samples, "recovery", recovery.samples)
    assert failure.samples and all(s is not None and s < 2.0 for s in failure.samples)
    assert recovery.samples and all(s is not None for s in recovery.samples)
    assert violations == []


@pytest.mark.netns
def test_the_stress_run_counts_every_bfd_session_side(dual: Topology) -> None:
    """`announcer lab stress`, short and without load: cp1 at 100 ms x 3, every session side
    counted before and after (3 nodes x 4, each leaf 8, the spine 4), every node scraped
    every second, no BFD down at the defaults."""
    plan = StressPlan(seconds=10.0, fast_node="cp1", fast_interval=0.1, load=False)
    tally = run_stress(dual, plan, say=print)
    print(render(tally, header=["short stress run"]))
    assert len(tally.before) == len(tally.after) == 32
    assert tally.profiles[Side("cp1", "192.0.2.1")] == "100 ms x 3"
    assert tally.profiles[Side("leaf1", "192.0.2.6")] == "300 ms x 3"
    assert all(tally.scrapes[f"{n} {what}"] >= 9 for n in NODES for what in ("status", "metrics"))
    assert not tally.any_down(but="100 ms x 3"), render(tally, header=[])
    assert tally.restarts() == dict.fromkeys(NODES, 0), render(tally, header=[])
    cp1 = faults.status(dual, "cp1", timeout=2.0) or {}
    assert cp1.get("bfd"), "cp1's daemon runs BFD again at its own profile"
