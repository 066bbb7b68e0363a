"""`planned-restart`: a rolling restart of the control-plane apiservers under client load.

While the client node opens a new HTTPS connection to the IPv4 VIP for every request (200 a
second), each node in turn goes through what a kubelet restarting its apiserver does: SIGTERM
(the fake apiserver's `shutdown` with `--shutdown-delay-duration` = `delay`: /readyz fails at
once, the listener closes `delay` later), down for `plan.down` seconds, `starting` (listening,
/readyz failing) for `plan.starting` seconds, then `ready`; the next node starts once this one is
back in r1's FIB. Timings: from the SIGTERM to the node leaving r1's FIB (and whether that was
before its listener closed). Failed requests are split by time against the VIP's FIB changes
(`traffic.split_failures`).

It must not render results nor inject faults other than the apiserver states.
"""

from __future__ import annotations

import time
from ipaddress import IPv4Network
from pathlib import Path

from announcer.lab import faults
from announcer.lab.apiserver.control import ControlError, request
from announcer.lab.bench.outcome import Event, Outcome, Sample, Timeline
from announcer.lab.bench.phase import Phase
from announcer.lab.bench.scenarios import SETTLE, Plan, restore
from announcer.lab.bench.systems import BenchError
from announcer.lab.bench.traffic import LoadClient, in_flight, split_failures
from announcer.lab.fib import IPNetwork
from announcer.status_protocol import JSONObject

LEAD = 1.0  # client traffic before the first and after the last restart
_CONTROL = faults.RUN_DIR / "lab-apiserver.sock"


def planned_restart(phase: Phase, plan: Plan, *, delay: float, raw: Path) -> Outcome:
    vip = client_vip(phase.vips)
    events: list[Event] = []
    outs: list[tuple[str, Sample]] = []
    before_close = 0
    client = LoadClient(phase.topology, str(vip.network_address), out=raw, rate=plan.rate)
    with client:
        phase.pause(LEAD)
        for node in phase.nodes[: plan.rolling]:
            out, closed = _restart(phase, plan, node, delay=delay, events=events)
            outs.append((node, out))
            before_close += out is not None and closed is not None and out < closed
        phase.pause(LEAD)
        ended = time.monotonic()
        requests = client.stop()
    changes = phase.changes(vip, client.started, ended)
    events += _fib_events(phase, vip, client.started, ended)
    moments = [c.at for c in changes]
    failures = split_failures(requests, moments)
    flagged = frozenset(i for i, r in enumerate(requests) if not r.ok and in_flight(r, moments))
    figures: JSONObject = {
        "delay_s": delay, "vip": str(vip), "rate_per_s": plan.rate,
        "failed_requests": failures.failed, "total_requests": failures.total,
        "failed_in_flight_at_fib_change": failures.in_flight, "failed_other": failures.other,
        "failed_by_outcome": dict(failures.by_outcome),
        "failed_other_by_outcome": dict(failures.other_by_outcome),
        "withdrawn_before_listener_closed": before_close, "restarts": len(outs),
        "fib_changes": len(changes),
        "achieved_rate_per_s": round(len(requests) / max(ended - client.started, 1e-9), 1),
    }  # fmt: skip
    timeline = Timeline(
        client.started,
        ended,
        tuple(requests),
        flagged,
        tuple(sorted(events, key=lambda e: e.at)),
        delay,
    )
    return Outcome(
        samples=tuple(o for _, o in outs), nodes=tuple(n for n, _ in outs),
        figures=figures,
        violations=tuple(phase.violations()), timeline=timeline,
    )  # fmt: skip


def client_vip(vips: tuple[IPNetwork, ...]) -> IPNetwork:
    """The VIP the client uses: the first IPv4 one (every system announces it)."""
    for vip in vips:
        if isinstance(vip, IPv4Network):
            return vip
    raise BenchError("no IPv4 VIP for the client")


def _restart(
    phase: Phase, plan: Plan, node: str, *, delay: float, events: list[Event]
) -> tuple[Sample, float | None]:
    """One node's restart: (seconds to leave r1's FIB, seconds to its listener closing)."""
    topology = phase.topology
    phase.faulting(node)
    t0 = time.monotonic()
    faults.set_apiserver(topology, node, "shutdown", delay=delay)
    events.append(Event(t0, node, "shutdown"))
    closed = _wait_stopped(phase, node, deadline=t0 + delay + 10.0)
    if closed is not None:
        events.append(Event(closed, node, "closed"))
    phase.pause(plan.down)
    events.append(Event(time.monotonic(), node, "starting"))
    faults.set_apiserver(topology, node, "starting")
    phase.pause(plan.starting)
    t1 = time.monotonic()
    faults.set_apiserver(topology, node, "ready")
    events.append(Event(t1, node, "ready"))
    phase.in_after(node, t1, plan.never_after)
    restore(phase, node)
    phase.pause(max(0.0, LEAD - SETTLE))
    # A checker that had not seen the failure by the time the apiserver was ready again never
    # withdraws: "never" here means not during its restart.
    left = phase.checker.left_at(node, t0)
    return None if left is None else left - t0, None if closed is None else closed - t0


def _wait_stopped(phase: Phase, node: str, *, deadline: float) -> float | None:
    """When the node's fake apiserver had closed its listener (polled every 5 ms)."""
    sock = faults.host_path(phase.topology, node, _CONTROL)
    while time.monotonic() < deadline:
        try:
            listening = request(sock, {"op": "get"}, timeout=2.0).get("listening")
        except (ControlError, OSError) as exc:
            raise BenchError(f"{node}: fake apiserver control: {exc}") from exc
        if listening is False:
            return time.monotonic()
        phase.pause(0.005)
    return None


def _fib_events(phase: Phase, vip: IPNetwork, since: float, until: float) -> list[Event]:
    """Each node entering (`in`) or leaving (`out`) r1's FIB for `vip` in [since, until]."""
    found: list[Event] = []
    before: set[str] = set()
    for change in phase.watcher.history(vip):
        now = {phase.node_of(hop) or str(hop) for hop in change.nexthops}
        if since <= change.at <= until:
            found += [Event(change.at, node, "out") for node in sorted(before - now)]
            found += [Event(change.at, node, "in") for node in sorted(now - before)]
        before = now
    return found
