"""Admission for the daemon's small servers: the status socket and the metrics endpoint.

Both serve one short request per connection from the daemon's event loop, so both need the
same guard: a bounded number of connections, a bounded number per peer (a uid for the Unix
socket, an address for TCP), and a read deadline. Idle connections must never lock anyone
out, so a connection that has not yet sent its request can be evicted: a newcomer from a
peer at its limit takes the place of that peer's oldest idle connection, and a newcomer on a
full server takes the place of the oldest idle connection of anyone. A client that sends its
request at once (an operator's `drain`, a Prometheus scrape) is therefore always admitted
unless every slot is held by requests already being answered, and a single peer never holds
more than `per_peer` of those.

The servers' listeners do not await their connection handlers, so `Clients.close` does: every
admitted connection, evicted ones included, has ended when it returns.

This module owns that bookkeeping (`Clients`) and nothing else: it must not read, write or
parse anything; the servers do, and call `Clients.admit` and `Ticket.reading_done`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass, field

__all__ = ["Clients", "Ticket"]


@dataclass(eq=False, slots=True)
class Ticket:
    """One admitted connection; `reading` until its request is in, then not evictable."""

    peer: Hashable
    task: asyncio.Task[object]
    reading: bool = True
    _owner: Clients | None = field(default=None, repr=False)

    def reading_done(self) -> None:
        self.reading = False

    def release(self) -> None:
        if self._owner is not None:
            self._owner.forget(self)
            self._owner = None


class Clients:
    """The connections a server holds: at most `capacity`, at most `per_peer` per peer."""

    def __init__(self, *, capacity: int, per_peer: int) -> None:
        if capacity < 1 or not 1 <= per_peer <= capacity:
            raise ValueError(f"need 1 <= per_peer ({per_peer}) <= capacity ({capacity})")
        self._capacity = capacity
        self._per_peer = per_peer
        self._tickets: list[Ticket] = []  # oldest first
        self._evicted: set[asyncio.Task[object]] = set()  # cancelled, not yet ended

    def __len__(self) -> int:
        return len(self._tickets)

    def admit(self, peer: Hashable) -> Ticket | None:
        """A ticket for the current task, evicting an idle connection if needed; None: busy."""
        task = asyncio.current_task()
        if task is None:
            return None
        if self._count(peer) >= self._per_peer and not self._evict(peer):
            return None
        if len(self._tickets) >= self._capacity and not self._evict(None):
            return None
        ticket = Ticket(peer=peer, task=task, _owner=self)
        self._tickets.append(ticket)
        return ticket

    def forget(self, ticket: Ticket) -> None:
        if ticket in self._tickets:
            self._tickets.remove(ticket)

    async def close(self) -> None:
        """Cancel every connection's task and wait for them, and for evicted ones, to end."""
        tasks = [ticket.task for ticket in self._tickets]
        for task in tasks:
            task.cancel()
        current = asyncio.current_task()
        waited = {*tasks, *self._evicted} - {current}
        await asyncio.gather(*waited, return_exceptions=True)
        self._tickets.clear()

    def _count(self, peer: Hashable) -> int:
        return sum(1 for ticket in self._tickets if ticket.peer == peer)

    def _evict(self, peer: Hashable | None) -> bool:
        """Cancel the oldest idle connection (of `peer`, or of anyone when None)."""
        for ticket in self._tickets:
            if ticket.reading and (peer is None or ticket.peer == peer):
                self.forget(ticket)
                ticket._owner = None
                ticket.task.cancel()
                self._evicted.add(ticket.task)  # close() awaits it: nobody else does
                ticket.task.add_done_callback(self._evicted.discard)
                return True
        return False
