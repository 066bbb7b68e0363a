"""The status snapshot: what `announcer status` shows, gathered from the daemon's parts.

A VIP counts as announced when ExaBGP acknowledged a route for it (the reconciler's
`installed`), not merely when one is desired; a VIP that is not announced says why: the
verdict's reason (health, drain, stop), its interface error, or ExaBGP not there or not done
yet. Times become Unix time here, for humans.

Must not: change anything; it only reads.
"""

from __future__ import annotations

from collections.abc import Callable

from announcer.apply import Applier
from announcer.config.model import VipNetwork
from announcer.lifecycle import Lifecycle
from announcer.reconcile import Reconciler
from announcer.speaker import SpeakerStatus
from announcer.state import NodeState
from announcer.status_protocol import (
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
    state: NodeState,
    applier: Applier,
    reconciler: Reconciler,
    speaker: SpeakerStatus,
    config_error: str | None,
    to_wall: Callable[[float], float],
) -> StatusSnapshot:
    """`to_wall` turns a time on the speaker's (monotonic) clock into Unix time."""
    vips = tuple(_vip(vip, state, applier, reconciler) for vip in state.config.vips)
    probe = state.last_probe
    return StatusSnapshot(
        announced=any(vip.announced for vip in vips),
        health=state.health,
        health_since=state.health_since,
        drained=state.drained,
        lifecycle=state.lifecycle,
        vips=vips,
        neighbors=tuple(
            NeighborStatus(
                address=str(session.peer),
                state=session.state.value,
                since=to_wall(session.since),
            )
            for session in speaker.sessions
        ),
        last_probe=None
        if probe is None
        else ProbeStatus(
            ok=probe.result.ok,
            status=probe.result.status,
            reason=probe.result.reason,
            latency_ms=round(probe.result.latency * 1000, 3),
            at=probe.wall,
        ),
        exabgp=ExabgpStatus(pid=speaker.pid, restarts=speaker.restarts),
        transitions=tuple(
            TransitionRecord(
                at=entry.wall,
                old=entry.transition.old.value,
                new=entry.transition.new.value,
                reason=entry.transition.reason,
            )
            for entry in state.transitions
        ),
        config_error=config_error,
    )


def _vip(vip: VipNetwork, state: NodeState, applier: Applier, reconciler: Reconciler) -> VipStatus:
    announced = any(route.prefix == vip for route in reconciler.installed)
    verdict = state.verdict()
    desired = any(route.prefix == vip for route in verdict.routes)
    if announced:
        graceful = state.lifecycle in _GRACEFUL
        reason = f"{state.lifecycle.value}: graceful shutdown" if graceful else verdict.reason
        if not desired:
            reason = f"being withdrawn: {verdict.reason}"
    elif (error := applier.errors.get(vip)) is not None:
        reason = f"interface: {error}"
    elif not desired:
        reason = verdict.reason
    elif not reconciler.connected:
        reason = "exabgp not connected"
    else:
        reason = "waiting for exabgp"
    return VipStatus(prefix=str(vip), announced=announced, reason=reason)
