"""The status snapshot: what `announcer status` shows, read from the core's state.

A VIP counts as announced when ExaBGP acknowledged a route for it (the core's `installed`),
not merely when one is desired, and never on the word of an ExaBGP the core is unsure of (a
lost channel, a kill under way): then the VIP says so, and so do the neighbors (a BGP session
"up" in the word of an ExaBGP that stopped answering is reported as unknown). A VIP that is
not announced says why: health, drain or stop, its interface error, or ExaBGP not there or
not done yet. Each neighbor with BFD enabled has its session's row. Times become Unix time
here, for humans.

Must not: change anything; it only reads.
"""

from __future__ import annotations

from collections.abc import Callable

from announcer.config.model import VipNetwork
from announcer.core import CoreState, Link
from announcer.lifecycle import Lifecycle
from announcer.speaker import SpeakerStatus
from announcer.status_protocol import (
    BfdStatus,
    ExabgpStatus,
    NeighborStatus,
    ProbeStatus,
    StatusSnapshot,
    TransitionRecord,
    VipStatus,
)

__all__ = ["build_snapshot"]

_GRACEFUL = (Lifecycle.DRAINING, Lifecycle.STOPPING)


def build_snapshot(
    *,
    state: CoreState,
    speaker: SpeakerStatus,
    config_error: str | None,
    to_wall: Callable[[float], float],
) -> StatusSnapshot:
    """`to_wall` turns a monotonic time (the core's and the speaker's clock) into Unix time."""
    vips = tuple(_vip(vip, state) for vip in state.config.vips)
    probe = state.last_probe
    return StatusSnapshot(
        announced=any(vip.announced for vip in vips),
        health=state.health.state,
        health_since=to_wall(state.health.since),
        drained=state.drained,
        lifecycle=state.lifecycle,
        vips=vips,
        neighbors=tuple(_neighbors(state, speaker, to_wall)),
        last_probe=None
        if probe is None
        else ProbeStatus(
            ok=probe.ok,
            status=probe.status,
            reason=probe.reason,
            latency_ms=round(probe.latency * 1000, 3),
            at=to_wall(probe.at),
        ),
        exabgp=ExabgpStatus(
            pid=speaker.pid,
            restarts=speaker.restarts,
            link=state.link.value,
            killed_for=state.killed_for,
        ),
        transitions=tuple(
            TransitionRecord(at=to_wall(t.at), old=t.old.value, new=t.new.value, reason=t.reason)
            for t in state.transitions
        ),
        config_error=config_error,
        bfd=tuple(_bfd(state, to_wall)),
    )


def _neighbors(
    state: CoreState, speaker: SpeakerStatus, to_wall: Callable[[float], float]
) -> list[NeighborStatus]:
    sure = state.link is Link.CONNECTED
    return [
        NeighborStatus(
            address=str(session.peer),
            state=session.state.value if sure else f"unknown (exabgp {state.link.value})",
            since=to_wall(session.since),
        )
        for session in speaker.sessions
    ]


def _bfd(state: CoreState, to_wall: Callable[[float], float]) -> list[BfdStatus]:
    """Every neighbor with BFD enabled: a session not heard of yet is Down (it starts so)."""
    rows = []
    for neighbor in state.config.bgp.neighbors:
        if not neighbor.bfd.enabled:
            continue
        record = state.bfd.get(str(neighbor.address))
        rows.append(
            BfdStatus(
                neighbor=str(neighbor.address),
                state="down" if record is None else record.state,
                diag="none" if record is None else record.diag,
                since=None if record is None else to_wall(record.since),
                changes=0 if record is None else record.changes,
                last_down=None if record is None else record.last_down,
            )
        )
    return rows


def _vip(vip: VipNetwork, state: CoreState) -> VipStatus:
    sure = state.link is Link.CONNECTED
    announced = sure and any(route.prefix == vip for route in state.installed.values())
    desired = vip in state.wanted_vips()
    why = state.reason()
    if announced:
        text = (
            f"{state.lifecycle.value}: graceful shutdown" if state.lifecycle in _GRACEFUL else why
        )
        if not desired:
            text = f"being withdrawn: {why}"
    elif vip in state.exposed_vips():
        text = f"unknown: exabgp {state.link.value}, may still announce it"
    elif (error := state.vip_errors.get(vip)) is not None:
        text = f"interface: {error}"
    elif not desired:
        text = why
    elif state.link is not Link.CONNECTED:
        text = "exabgp not connected"
    else:
        text = "waiting for exabgp"
    return VipStatus(prefix=str(vip), announced=announced, reason=text)
