"""`announcer.smallserver.Clients`: who is admitted, who is evicted, who is told busy."""

from __future__ import annotations

import asyncio

import pytest

from announcer.smallserver import Clients, Ticket


async def hold(clients: Clients, peer: str, tickets: list[Ticket | None]) -> None:
    """A connection's task: admitted and waiting until cancelled, or refused and done."""
    ticket = clients.admit(peer)
    tickets.append(ticket)
    if ticket is not None:
        await asyncio.Event().wait()


def test_admission_evicts_idle_connections_oldest_first_and_never_a_served_one() -> None:
    async def body() -> None:
        clients = Clients(capacity=3, per_peer=2)
        tickets: list[Ticket | None] = []
        tasks = []
        for peer in ("a", "a", "b"):
            tasks.append(asyncio.create_task(hold(clients, peer, tickets)))
            await asyncio.sleep(0)
        assert len(clients) == 3 and all(tickets)
        first = tickets[0]
        assert first is not None
        first.reading_done()  # a's first request is being answered: not evictable
        tasks.append(asyncio.create_task(hold(clients, "a", tickets)))  # a at its limit
        await asyncio.sleep(0)
        assert tickets[3] is not None and tasks[1].cancelling()  # a's idle one went
        tasks.append(asyncio.create_task(hold(clients, "c", tickets)))  # full: oldest idle
        await asyncio.sleep(0)
        assert tickets[4] is not None and tasks[2].cancelling()  # b's
        for ticket in tickets[3:]:
            assert ticket is not None
            ticket.reading_done()
        tasks.append(asyncio.create_task(hold(clients, "d", tickets)))
        await asyncio.sleep(0)
        assert tickets[5] is None  # every slot answering: busy
        await clients.close()
        assert len(clients) == 0
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 1)
        assert [type(r).__name__ for r in results] == ["CancelledError"] * 5 + ["NoneType"]

    asyncio.run(body())


def test_limits_must_make_sense() -> None:
    with pytest.raises(ValueError, match=r"per_peer \(5\) <= capacity \(4\)"):
        Clients(capacity=4, per_peer=5)


async def evicted_slowly(clients: Clients, cleaned: list[str]) -> None:
    """A connection whose cancellation takes a few turns of the loop (closing its stream)."""
    clients.admit("a")
    try:
        await asyncio.Event().wait()
    finally:
        for _ in range(5):
            await asyncio.sleep(0)
        cleaned.append("evicted")


def test_close_awaits_evicted_connections_too() -> None:
    """`close()` returns only when every connection it admitted has ended, including one a
    newcomer evicted (nobody else awaits that one) after the newcomer itself is done."""

    async def body() -> None:
        clients = Clients(capacity=1, per_peer=1)
        cleaned: list[str] = []
        first = asyncio.create_task(evicted_slowly(clients, cleaned))
        await asyncio.sleep(0)
        newcomer = clients.admit("a")  # this task, as the next connection
        assert newcomer is not None and first.cancelling()
        newcomer.release()
        await clients.close()
        assert first.done() and cleaned == ["evicted"]

    asyncio.run(body())
