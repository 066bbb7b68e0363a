"""How long r1's FIB may take to show a fault, per kind of fault, from a node's configuration.

Every bound is computed from the node's own config.yaml (`Bounds.from_config`), never
written down as a number, except the few that the daemon's configuration does not set:
`DAEMON_KILLED` and `EXABGP_BACK` are issue 3's acceptance figures (a killed daemon's routes
gone within 0.5 s; ExaBGP killed: back within 5 s), `DAEMON_START` is the lab node's restart
delay plus the time a Python daemon and its ExaBGP take to start, `SESSION_BACK` and
`BGPD_START` are the router's side of a session reset (FRR's 1 s connect timer, bgpd's
start). `MARGIN` covers the path ExaBGP -> FRR -> kernel (~63 ms measured, of which ~61 ms is
FRR's batching) and scheduling.

It must not measure anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from announcer.config import Config

MARGIN = 0.5
DAEMON_KILLED = 0.5
EXABGP_BACK = 5.0
DAEMON_START = 5.0
SESSION_BACK = 5.0
BGPD_START = 3.0
# FRR replaces an IPv6 multipath route as a delete followed ~1 ms later by an add: absences
# this short are the router's, not a withdrawal.
GAP = 0.05


@dataclass(frozen=True, slots=True)
class Bounds:
    """Seconds from a fault (or its undoing) until r1's FIB reflects it."""

    probe_failure: float  # every probe fails: fall x interval + timeout
    planned_shutdown: float  # readyz 500 while livez 200: the first failed probe
    rise: float  # healthy again: rise x interval + minimum healthy time
    frozen: float  # daemon stopped: the relay's heartbeat timeout, then ExaBGP exits
    hold: float  # silent link: the BGP hold time
    drain: float  # graceful-shutdown community: the path leaves r1's ECMP set at once
    restart: float  # daemon restarted by the lab node: start, then rise
    status: float  # I4: the daemon's status and r1's FIB may disagree this long
    vip_back: float  # a VIP deleted from lo by hand: put back by the next decision
    gap: float = GAP

    @classmethod
    def from_config(cls, config: Config) -> Bounds:
        api = config.apiserver
        rise = api.rise * api.interval + api.min_healthy + MARGIN
        hold = max(neighbor.hold_time for neighbor in config.bgp.neighbors)
        return cls(
            probe_failure=api.fall * api.interval + api.timeout + MARGIN,
            planned_shutdown=api.interval + MARGIN,
            rise=rise,
            frozen=config.exabgp.heartbeat_timeout + 2 * MARGIN,
            hold=hold + MARGIN,
            drain=api.interval + MARGIN,
            restart=DAEMON_START + rise,
            # a session's end is seen by each side on its own hold timer, a keepalive apart
            status=hold / 3 + api.interval + MARGIN,
            vip_back=api.interval + MARGIN,
        )

    @classmethod
    def worst(cls, each: list[Bounds]) -> Bounds:
        """The largest of every bound over several nodes."""
        names = cls.__dataclass_fields__
        return cls(**{name: max(getattr(b, name) for b in each) for name in names})
