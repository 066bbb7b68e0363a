"""Carrying out a verdict: the VIPs on the interface and the reconciler's desired routes, in
the order that never sends traffic where nothing answers.

- A VIP goes on the interface before any route for it is desired: a router may forward the
  first packet as soon as the announcement leaves.
- A VIP comes off only after its routes are withdrawn (the reconciler has converged, or has
  no ExaBGP to talk to) and `withdraw_wait` more seconds, for the routers to converge.
- A VIP that should be there but is not (someone deleted it) is put back on the next apply,
  and a VIP that cannot be put on the interface is not announced (fail closed).
With `loopback.manage: false` (no `VipTable`) routes go to the reconciler as they are.

It must not decide what to announce (`announcer.state` does) nor talk to ExaBGP except by
`Reconciler.set_desired`. It logs one line per VIP that starts or stops being announced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from announcer.config.model import VipNetwork
from announcer.loopback import LoopbackError
from announcer.reconcile import Reconciler
from announcer.state import Verdict

__all__ = ["REMOVAL_CAP", "Applier", "VipTable"]

log = logging.getLogger(__name__)

# After this long past withdraw_wait a VIP comes off even if ExaBGP never confirmed (a route
# it keeps refusing would otherwise pin the VIP to the interface for good).
REMOVAL_CAP: Final = 10.0


class VipTable(Protocol):
    """`announcer.loopback.Loopback`, or a fake in tests."""

    async def ensure_present(self, vip: VipNetwork) -> bool: ...

    async def ensure_absent(self, vip: VipNetwork) -> bool: ...

    async def missing(self, vips: Iterable[VipNetwork]) -> list[VipNetwork]: ...


@dataclass(slots=True)
class _Leaving:
    since: float  # when its routes stopped being desired
    settled: float | None = None  # when the reconciler first had nothing left to withdraw


class Applier:
    """Apply verdicts; one at a time (a lock), from the decision loop and control requests."""

    def __init__(
        self, reconciler: Reconciler, vips: VipTable | None, *, withdraw_wait: float
    ) -> None:
        self._reconciler = reconciler
        self._vips = vips
        self.withdraw_wait = withdraw_wait
        self._lock = asyncio.Lock()
        self._placed: set[VipNetwork] = set()  # on the interface because of us
        self._leaving: dict[VipNetwork, _Leaving] = {}
        self._announcing: frozenset[VipNetwork] = frozenset()
        self._errors: dict[VipNetwork, str] = {}

    @property
    def announcing(self) -> frozenset[VipNetwork]:
        """VIPs whose routes are desired right now."""
        return self._announcing

    @property
    def errors(self) -> dict[VipNetwork, str]:
        """VIPs that could not be put on the interface, and why."""
        return dict(self._errors)

    @property
    def placed(self) -> frozenset[VipNetwork]:
        return frozenset(self._placed)

    async def apply(self, verdict: Verdict, now: float) -> None:
        async with self._lock:
            wanted = {route.prefix for route in verdict.routes}
            usable = await self._place(wanted)
            routes = frozenset(r for r in verdict.routes if r.prefix in usable)
            self._reconciler.set_desired(routes)
            self._log_changes(frozenset(usable), verdict.reason)
            for vip in usable:
                self._leaving.pop(vip, None)
            for vip in self._placed - usable:
                self._leaving.setdefault(vip, _Leaving(since=now))
            await self._remove_settled(now)

    async def clear(self, vips: Iterable[VipNetwork] = ()) -> None:
        """Take `vips` and every VIP this placed off the interface, now."""
        if self._vips is None:
            return
        async with self._lock:
            for vip in sorted({*vips, *self._placed}, key=_order):
                await self._remove(vip, why="clearing")

    async def _place(self, wanted: set[VipNetwork]) -> set[VipNetwork]:
        if self._vips is None or not wanted:
            self._errors = {}
            return wanted
        errors: dict[VipNetwork, str] = {}
        try:
            missing = await self._vips.missing(sorted(wanted, key=_order))
        except LoopbackError as exc:
            errors = dict.fromkeys(wanted, str(exc))
            missing = []
        for vip in missing:
            if vip in self._placed:
                log.warning(
                    "VIP %s disappeared from the interface: putting it back",
                    vip,
                    extra={"event": "vip-restored", "vip": str(vip)},
                )
            try:
                await self._vips.ensure_present(vip)
            except LoopbackError as exc:
                errors[vip] = str(exc)
        self._report(errors)
        usable = wanted - set(errors)
        self._placed |= usable
        return usable

    def _report(self, errors: dict[VipNetwork, str]) -> None:
        for vip, problem in sorted(errors.items(), key=lambda item: _order(item[0])):
            if self._errors.get(vip) != problem:
                log.error(
                    "cannot put VIP %s on the interface, not announcing it: %s",
                    vip,
                    problem,
                    extra={"event": "vip-error", "vip": str(vip)},
                )
        self._errors = errors

    def _log_changes(self, announcing: frozenset[VipNetwork], reason: str) -> None:
        for vip in sorted(announcing - self._announcing, key=_order):
            log.info("announce %s", vip, extra={"event": "announce", "vip": str(vip)})
        for vip in sorted(self._announcing - announcing, key=_order):
            why = self._errors.get(vip, reason)
            log.info(
                "withdraw %s (%s)",
                vip,
                why,
                extra={"event": "withdraw", "vip": str(vip), "reason": why},
            )
        self._announcing = announcing

    async def _remove_settled(self, now: float) -> None:
        reconciler = self._reconciler
        quiet = reconciler.converged or not reconciler.connected
        for vip, leaving in list(self._leaving.items()):
            if leaving.settled is None and quiet:
                leaving.settled = now
            settled_long = (
                leaving.settled is not None and now - leaving.settled >= self.withdraw_wait
            )
            overdue = now - leaving.since >= self.withdraw_wait + REMOVAL_CAP
            if settled_long or overdue:
                why = "withdrawn" if settled_long else "withdraw not confirmed in time"
                await self._remove(vip, why=why)

    async def _remove(self, vip: VipNetwork, *, why: str) -> None:
        assert self._vips is not None
        try:
            removed = await self._vips.ensure_absent(vip)
        except LoopbackError as exc:
            log.error(
                "cannot remove VIP %s from the interface: %s", vip, exc, extra={"vip": str(vip)}
            )
            return
        self._placed.discard(vip)
        self._leaving.pop(vip, None)
        if removed:
            log.info(
                "VIP %s off the interface (%s)",
                vip,
                why,
                extra={"event": "vip-removed", "vip": str(vip)},
            )


def _order(vip: VipNetwork) -> tuple[int, int]:
    return (vip.version, int(vip.network_address))
