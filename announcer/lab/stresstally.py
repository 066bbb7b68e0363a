"""What `announcer lab stress` counts: BFD state changes per session side and per profile,
BFD downs seen in the per-second scrapes, scrape failures, and ExaBGP restarts per node (the
daemon's liveness check killing an ExaBGP that was only slow under load), rendered as its
report.

A session side is one end of a BFD session: a node's daemon (its `bfd[].changes` in the
status snapshot) or a router's bfdd (`show bfd peers counters json`: session up and down
events). Changes are the difference between the counters read before the load and after it.
Pure: it reads nothing and runs nothing (`stress` feeds it).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

ROUTERS = "routers (FRR profile)"


@dataclass(frozen=True, order=True)
class Side:
    """One end of a BFD session: `owner` (cp1, leaf1...) and the peer's address."""

    owner: str
    peer: str


@dataclass
class Tally:
    """Counters before and after, what the scrapes saw, per session side."""

    profiles: dict[Side, str] = field(default_factory=dict)
    before: dict[Side, int] = field(default_factory=dict)
    after: dict[Side, int] = field(default_factory=dict)
    scrapes: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    downs: list[tuple[Side, str]] = field(default_factory=list)
    restarts_before: dict[str, int] = field(default_factory=dict)  # ExaBGP's, per node
    restarts_after: dict[str, int] = field(default_factory=dict)

    def scraped(self, what: str, *, ok: bool) -> None:
        self.scrapes[what] += 1
        if not ok:
            self.failures[what] += 1

    def changes(self) -> dict[Side, int]:
        """State changes per side during the run; -1: the side's session was gone at the end."""
        return {
            side: self.after[side] - n if side in self.after else -1
            for side, n in self.before.items()
        }

    def per_profile(self) -> dict[str, int]:
        totals: dict[str, int] = collections.defaultdict(int)
        for side, n in self.changes().items():
            totals[self.profiles.get(side, "?")] += abs(n)
        return dict(totals)

    def restarts(self) -> dict[str, int]:
        """ExaBGP restarts per node during the run; -1: unknown (a status not read)."""
        after = self.restarts_after
        return {
            node: after[node] - n if n >= 0 and after.get(node, -1) >= 0 else -1
            for node, n in self.restarts_before.items()
        }

    def any_down(self, *, but: str | None = None) -> bool:
        """Whether a side changed state or was seen not up (sides of profile `but` aside)."""
        changed = [side for side, n in self.changes().items() if n != 0]
        seen = [side for side, _ in self.downs]
        return any(self.profiles.get(side) != but for side in [*changed, *seen])


def exabgp_restarts(snapshot: Mapping[str, object]) -> int:
    """A status snapshot's `exabgp.restarts`; -1 when it has none."""
    exabgp = snapshot.get("exabgp")
    value = exabgp.get("restarts") if isinstance(exabgp, dict) else None
    return value if isinstance(value, int) else -1


def daemon_counts(snapshot: Mapping[str, object]) -> dict[str, tuple[str, int]]:
    """Per neighbor of a status snapshot's `bfd` section: (state, changes)."""
    rows = snapshot.get("bfd")
    found: dict[str, tuple[str, int]] = {}
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict):
            changes = row.get("changes", 0)
            found[str(row.get("neighbor"))] = (
                str(row.get("state")),
                changes if isinstance(changes, int) else 0,
            )
    return found


def frr_counts(counters: Sequence[object]) -> dict[str, int]:
    """Per peer of `show bfd peers counters json`: session up plus down events."""
    found: dict[str, int] = {}
    for info in counters:
        if isinstance(info, dict):
            ups, downs = info.get("session-up", 0), info.get("session-down", 0)
            found[str(info.get("peer"))] = int(ups) + int(downs)
    return found


def render(tally: Tally, *, header: Sequence[str]) -> str:
    lines = [*header, "scrapes (failed):"]
    lines += [
        f"  {what:24} {n:6} ({tally.failures[what]})" for what, n in sorted(tally.scrapes.items())
    ]
    lines.append("BFD state changes per session side (owner, peer, profile):")
    for side, n in sorted(tally.changes().items()):
        count = "session gone" if n < 0 else str(n)
        lines.append(f"  {side.owner:6} {side.peer:18} {tally.profiles.get(side, '?'):22} {count}")
    lines.append("per profile:")
    lines += [f"  {name:28} {n}" for name, n in sorted(tally.per_profile().items())]
    lines.append(f"BFD not up in a scrape: {len(tally.downs)}")
    lines += [f"  {side.owner} {side.peer}: {what}" for side, what in tally.downs[:20]]
    lines.append("any BFD down: " + ("YES" if tally.any_down() else "no"))
    restarts = ", ".join(f"{node} {n if n >= 0 else '?'}" for node, n in tally.restarts().items())
    lines.append(f"ExaBGP restarts (liveness kills under load): {restarts or 'none read'}")
    return "\n".join(lines)
