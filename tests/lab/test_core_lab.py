"""The windows the core closes, produced for real in the lab and measured at r1's FIB.

- a withdraw whose acknowledgement is lost because the relay is frozen: ExaBGP is killed
  (the withdraw goes out as closed sessions) and the VIP stays on cp1's lo for as long as r1
  may route it there;
- SIGTERM during a drain: the graceful phase is not started again;
- `drain --wait` racing a stop: the client is not told "withdrawn" by a daemon that is
  stopping;
- a probe that hangs in connection setup (the apiserver's SYNs dropped): the probe ends at
  its own deadline, the node withdraws within fall probes, and the loop that feeds the
  relay's heartbeat never waits on the stuck connect (ExaBGP is not restarted);
- a stopped (SIGSTOP) ExaBGP, whose TCP sessions stay open: it stops answering the liveness
  check, is killed (r1 drops cp1's path at once, not after its hold time) and restarted, and
  meanwhile cp1's status does not say it announces.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import test_announcer
from test_announcer import (
    GATEWAYS,
    VIP4,
    apiserver,
    daemon_pid,
    graceful,
    lab_exec,
    netns_test,
    node_config,
    node_processes,
    path_from,
    r1_paths,
    status,
    wait_fib,
    with_,
    without,
)

from announcer.daemon import ACK_TIMEOUT
from announcer.lab import netns
from announcer.lab.fib import Fib, wait_for
from announcer.lab.topology import Topology
from announcer.liveness import BOUND, INTERVAL
from announcer.status_protocol import ProbeStatus, StatusSnapshot

topology = test_announcer.topology  # the lab, converged and checked before and after


def is_relay(argv: list[str]) -> bool:
    return any(Path(arg).name == "relay.py" for arg in argv)


def on_lo(topology: Topology, node: str) -> set[str]:
    out = subprocess.run(
        ["ip", "-n", topology.netns(node), "-j", "addr", "show", "dev", "lo"],
        capture_output=True, text=True, check=True, timeout=5,
    ).stdout  # fmt: skip
    return {f"{a['local']}/{a['prefixlen']}" for i in json.loads(out) for a in i["addr_info"]}


@netns_test
def test_a_lost_ack_kills_exabgp_and_keeps_the_vip_while_routed(topology: Topology) -> None:
    config = node_config(topology, "cp1")
    bound = config.apiserver.fall * config.apiserver.interval + ACK_TIMEOUT + 2.0
    relays = node_processes(topology, "cp1", is_relay)
    assert relays, "cp1's relay"
    gateway = GATEWAYS["cp1"][4]
    blackholed = 0.0  # seconds r1 routed the VIP to cp1 while it was off cp1's lo
    with Fib(topology.netns("r1")) as fib:
        for pid in relays:
            os.kill(pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            apiserver(topology, "cp1", "etcd-down")
            last = start
            while gateway in fib.nexthops(VIP4):
                now = time.monotonic()
                if str(VIP4) not in on_lo(topology, "cp1"):
                    blackholed += now - last
                last = now
                assert now - start < 15.0, "r1 still routes the VIP to cp1"
            left = time.monotonic() - start
        finally:
            for pid in relays:
                with_pid_gone_ok(pid, signal.SIGCONT)
    print(f"relay frozen, apiserver down: cp1 left r1's FIB in {left:.2f} s; VIP off lo while "
          f"routed there: {blackholed:.3f} s")  # fmt: skip
    assert blackholed == 0.0
    assert left < bound  # fall * interval, the ack timeout, then the kill and BGP


def with_pid_gone_ok(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


@netns_test
def test_sigterm_during_a_drain_keeps_the_drain_deadline(topology: Topology) -> None:
    config = node_config(topology, "cp3")
    delay = config.drain.delay
    gateway = GATEWAYS["cp3"][4]
    pid = daemon_pid(topology, "cp3")
    proc = netns.process_id(pid)
    assert proc is not None
    drain = subprocess.run(
        [*lab_exec(topology, "cp3"), "announcer", "drain"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    start = time.monotonic()
    assert drain.returncode == 0, drain.stderr
    wait_for(lambda: graceful(path_from(r1_paths(topology, VIP4), gateway)), 5.0, interval=0.01)
    time.sleep(delay / 2)  # the fault: SIGTERM half-way through the graceful phase
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: path_from(r1_paths(topology, VIP4), gateway) is None, 10.0, interval=0.01)
    withdrawn_at = time.monotonic() - start
    wait_for(lambda: not netns.alive(proc), 10.0, interval=0.01)
    print(
        f"drain, SIGTERM at {delay / 2:g} s: withdrawn at {withdrawn_at:.2f} s "
        f"(drain.delay {delay:g} s; restarting the phase would take {1.5 * delay:g} s)"
    )
    assert withdrawn_at < delay + 1.0


@netns_test
def test_drain_wait_racing_a_stop_is_not_told_withdrawn(topology: Topology) -> None:
    pid = daemon_pid(topology, "cp2")
    drain = subprocess.Popen(
        [*lab_exec(topology, "cp2"), "announcer", "drain", "--wait"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        gateway = GATEWAYS["cp2"][4]
        wait_for(lambda: graceful(path_from(r1_paths(topology, VIP4), gateway)), 5.0, interval=0.01)
        os.kill(pid, signal.SIGTERM)
        out, err = drain.communicate(timeout=30)
    finally:
        drain.kill()
        drain.wait()
    print(f"drain --wait, then SIGTERM: exit {drain.returncode}, said {(out + err).strip()!r}")
    assert drain.returncode != 0
    assert "drained: routes withdrawn" not in out


def probe_after(topology: Topology, node: str, since: float) -> ProbeStatus | None:
    """`node`'s last probe if it was made after `since` (wall clock)."""
    probe = status(topology, node).last_probe
    return probe if probe is not None and probe.at > since else None


@netns_test
def test_a_probe_hanging_in_connect_withdraws_within_fall_probes(topology: Topology) -> None:
    settings = node_config(topology, "cp1").apiserver
    bound = settings.fall * settings.interval + settings.timeout + 1.0  # and BGP to r1
    gateway = GATEWAYS["cp1"][4]
    before = status(topology, "cp1").exabgp
    with Fib(topology.netns("r1")) as fib:
        start = time.monotonic()
        apiserver(topology, "cp1", "connect-hang")
        wait_for(lambda: gateway not in fib.nexthops(VIP4), 15.0, interval=0.01)
        left = time.monotonic() - start
    # Let several probes hang in connect and time out; each must end at its own deadline.
    at = status(topology, "cp1").last_probe
    assert at is not None
    probe = wait_for(
        lambda: probe_after(topology, "cp1", at.at + 3 * settings.interval), 10.0, what="probes"
    )
    after = status(topology, "cp1")
    print(
        f"apiserver's SYNs dropped: cp1 left r1's FIB in {left:.2f} s (bound {bound:.2f} s); "
        f"last probe {probe.latency_ms:.0f} ms ({probe.reason}); timeout {settings.timeout:g} s; "
        f"exabgp pid {before.pid} -> {after.exabgp.pid}, restarts {before.restarts} -> "
        f"{after.exabgp.restarts}"
    )
    assert left < bound
    assert not probe.ok
    assert probe.latency_ms <= (settings.timeout + 0.5) * 1000  # ended at its deadline
    assert (after.exabgp.pid, after.exabgp.restarts) == (before.pid, before.restarts)
    assert not after.announced


def is_exabgp_itself(argv: list[str]) -> bool:
    return any(Path(arg).name == "exabgp" for arg in argv) and not is_relay(argv)


@netns_test
def test_a_stopped_exabgp_is_killed_within_the_liveness_bound(topology: Topology) -> None:
    pids = node_processes(topology, "cp1", is_exabgp_itself)
    assert len(pids) == 1, f"cp1's exabgp: {pids}"
    proc = netns.process_id(pids[0])
    assert proc is not None
    with Fib(topology.netns("r1")) as fib:
        os.kill(proc.pid, signal.SIGSTOP)  # wedged: its sessions stay open, it answers nothing
        start = time.monotonic()
        try:
            left = wait_fib(fib, without("cp1"), 10.0, start=start)
        finally:
            with_pid_gone_ok(proc.pid, signal.SIGCONT)
        during: list[StatusSnapshot] = []
        while (snapshot := status(topology, "cp1")).exabgp.link != "connected":
            during.append(snapshot)
            assert time.monotonic() - start < RESTORE, "exabgp not back"
        back = wait_fib(fib, with_("cp1"), RESTORE, start=start)
    first = during[0] if during else None
    shown = None if first is None else (first.announced, first.exabgp, first.neighbors[0].state)
    print(f"exabgp SIGSTOP: cp1 left r1's FIB in {left:.3f} s (bound {INTERVAL + BOUND:g} s "
          f"+ the kill), back in {back:.2f} s; status while killed: {shown}")  # fmt: skip
    assert left <= INTERVAL + BOUND + 0.3
    assert not netns.alive(proc)
    assert snapshot.exabgp.pid != proc.pid
    assert during, "the status never showed exabgp killed"
    assert first is not None and first.exabgp.killed_for == "exabgp did not answer in time"
    for seen in during:  # the status never takes the word of the killed process
        assert not seen.announced
        assert all(n.state != "up" for n in seen.neighbors)


RESTORE = 20.0
