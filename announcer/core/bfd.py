"""The core's record of each neighbor's BFD session, and the log line of every change.

A session going Down is the routers' business (they withdraw this node's path); the node
keeps announcing. The core only records what the shell's BFD service reported, per neighbor:
state, diagnostic, since when, how many changes, why it last went Down. A Down the RFC calls
planned (an AdminDown, ours or the peer's: RFC 5882) is logged as such, not as a failure.
Records of neighbors without BFD any more (a reload) are forgotten.

Must not: do I/O, read a clock, or know BFD's packets and sockets (`announcer.bfd` does).
"""

from __future__ import annotations

import logging

from announcer.config.model import Config
from announcer.core.effects import Effect, Log
from announcer.core.events import BfdChanged
from announcer.core.state import BfdRecord, CoreState

__all__ = ["changed", "forget_unconfigured", "neighbors_with_bfd"]

_DOWN = ("down", "admin_down")


def neighbors_with_bfd(config: Config) -> set[str]:
    return {str(n.address) for n in config.bgp.neighbors if n.bfd.enabled}


def changed(s: CoreState, e: BfdChanged, now: float, out: list[Effect]) -> None:
    if e.neighbor not in neighbors_with_bfd(s.config):
        return  # the last words of a session a reload removed
    old = s.bfd.get(e.neighbor)
    s.bfd[e.neighbor] = BfdRecord(
        state=e.state,
        diag=e.diag,
        since=now,
        changes=(old.changes if old is not None else 0) + 1,
        last_down=e.diag if e.state == "down" else (old.last_down if old else None),
    )
    out.append(_log(e, "none" if old is None else old.state))


def forget_unconfigured(s: CoreState) -> None:
    wanted = neighbors_with_bfd(s.config)
    for neighbor in [n for n in s.bfd if n not in wanted]:
        del s.bfd[neighbor]


def _log(e: BfdChanged, old: str) -> Log:
    failure = e.state in _DOWN and not e.planned
    level = logging.WARNING if failure else logging.INFO
    detail = "planned (admin down)" if e.planned else f"diag {e.diag}"
    message = f"bfd with {e.neighbor}: {old} -> {e.state} ({detail})"
    fields = (
        ("event", f"bfd_{e.state}"),
        ("neighbor", e.neighbor),
        ("old", old),
        ("diag", e.diag),
        ("planned", "true" if e.planned else "false"),
    )
    return Log(level, message, fields)
