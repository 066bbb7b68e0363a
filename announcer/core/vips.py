"""The VIP rule, stated once: the VIP stays on the interface while any router may still
route it here, and leaves only after that stopped being so for `drain.withdraw_wait`.

A router may route a VIP here while a route for it is announced, being withdrawn, or unknown
(ExaBGP disconnected or silent): `CoreState.exposed`. That stops with a withdraw ExaBGP
acknowledged, or with ExaBGP known dead (exited, killed). Then `withdraw_wait` more seconds
let the routers converge (skipped when a second stop signal asked for haste: ExaBGP is dead
or every withdraw acknowledged by then all the same). A VIP goes on the interface before any
route for it is sent (`CoreState.usable`); one that someone removed is put back.

Must not: do I/O or decide what to announce.
"""

from __future__ import annotations

import logging

from announcer.config.model import VipNetwork
from announcer.core.effects import AddVip, Effect, Log, RemoveVip
from announcer.core.state import CoreState

__all__ = ["failed", "observed", "place", "release"]


def place(s: CoreState, out: list[Effect], *, retry: bool = False) -> None:
    """Ask for every needed VIP that is not on the interface (nor on its way); one that
    failed is asked for again only on `retry` (a tick)."""
    if not s.manage_vips:
        return
    needed = s.wanted_vips() | s.exposed_vips()  # exposed: someone removed it mid-withdraw
    for vip in sorted(needed - s.placed - s.adding - s.removing, key=_order):
        if vip in s.vip_errors and not retry:
            continue
        s.adding.add(vip)
        out.append(AddVip(vip))


def release(s: CoreState, now: float, out: list[Effect]) -> None:
    """Remove each VIP no router may route here any more, `withdraw_wait` after that began."""
    if not s.manage_vips:
        return
    wanted, exposed = s.wanted_vips(), s.exposed_vips()
    wait = 0.0 if s.hurry else s.config.drain.withdraw_wait
    for vip in sorted(s.placed, key=_order):
        if vip in wanted or vip in exposed:
            s.clear_since.pop(vip, None)
            continue
        since = s.clear_since.setdefault(vip, now)
        if vip not in s.removing and now - since >= wait:
            s.removing.add(vip)
            out.append(RemoveVip(vip))
            why = "withdrawn" if s.exited or s.hurry else f"withdrawn {wait:g} s ago"
            out.append(Log(logging.INFO, f"VIP {vip} off the interface ({why})", _fields(vip)))


def observed(s: CoreState, vip: VipNetwork, present: bool, out: list[Effect]) -> None:
    s.adding.discard(vip)
    if present:
        s.vip_errors.pop(vip, None)
        s.removing.discard(vip)
        s.placed.add(vip)
        return
    if vip in s.placed and vip not in s.removing:
        message = f"VIP {vip} disappeared from the interface: putting it back"
        out.append(Log(logging.WARNING, message, _fields(vip)))
    s.removing.discard(vip)
    s.placed.discard(vip)
    s.clear_since.pop(vip, None)


def failed(s: CoreState, vip: VipNetwork, error: str, out: list[Effect]) -> None:
    s.adding.discard(vip)
    if s.vip_errors.get(vip) != error:
        message = f"cannot put VIP {vip} on the interface, not announcing it: {error}"
        out.append(Log(logging.ERROR, message, _fields(vip)))
    s.vip_errors[vip] = error


def _fields(vip: VipNetwork) -> tuple[tuple[str, str], ...]:
    return (("event", "vip"), ("vip", str(vip)))


def _order(vip: VipNetwork) -> tuple[int, int]:
    return (vip.version, int(vip.network_address))
