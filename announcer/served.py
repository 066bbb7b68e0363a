"""Whether anyone serves the VIP: a TCP connect from this node to the VIP's apiserver port,
made while this node does not hold the VIP on lo, so that it leaves through the routers and
reaches whichever node they send the VIP to, if any.

- served: the handshake completed; some node accepts apiserver connections at the VIP.
- unserved: refused (the routers send it to a node whose apiserver is gone, or a router
  answers with a reset), unreachable (no route: an ICMP error), or no answer within
  `connect_timeout` (no route upstream, the packet is dropped).

How the daemon's core uses it: when a probe succeeds while the health machine is not UP and
this node announces nothing, it asks `anyone_serves` for the configured VIPs (the port of
`apiserver.url`, a deadline of `apiserver.fast_interval`), and feeds the success to
`HealthMachine.observe(..., unserved=True)` when the answer is unserved: this node announces at
this first healthy answer, since any healthy answer beats none (the first apiserver of a new
cluster, the first one back after all were down). Served: `rise` and `min_healthy` apply as
always, so a node that flaps while others serve gains nothing.

The deadline can be short: a node that serves answers a SYN within a LAN round trip, well
under a millisecond, whereas routers rate-limit their ICMP errors (measured in the lab: r1's
"unreachable" came back in ~1 ms for two checks in a row, the third got silence) or send none,
so silence is a common answer when nobody serves.

What a wrong guess costs. "Unserved" while others do serve (their answer was lost, or slower
than the deadline): this node announces after one healthy answer instead of `rise` answers
over `min_healthy`, once; the others keep their paths, and if this apiserver fails again it
is withdrawn after `fall` probes at `fast_interval`. "Served" while nobody serves (something
else accepts at the VIP's port): the usual `rise` and `min_healthy`, as before this check.

Must not: send a byte (the connection is aborted once established; the serving apiserver
logs a handshake EOF), run while this node holds the VIP on lo (it would reach itself), or
decide anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from announcer.config.model import IPAddress
from announcer.probe import describe_failure

__all__ = ["Served", "anyone_serves", "vip_served"]


@dataclass(frozen=True, slots=True)
class Served:
    """The answer for one address: `served`, and why ("accepted", "refused", "timeout"...)."""

    address: IPAddress
    served: bool
    reason: str


async def vip_served(address: IPAddress, port: int, *, connect_timeout: float) -> Served:
    """Connect to `address`:`port` within `connect_timeout` seconds; never raises OSError."""
    try:
        async with asyncio.timeout(connect_timeout):
            _, writer = await asyncio.open_connection(str(address), port)
    except (OSError, TimeoutError) as exc:
        return Served(address, served=False, reason=describe_failure(exc))
    writer.transport.abort()
    return Served(address, served=True, reason="accepted")


async def anyone_serves(
    addresses: Iterable[IPAddress], port: int, *, connect_timeout: float
) -> Served:
    """The VIPs asked in parallel; the first definite answer (accepted, refused, unreachable)
    decides and the other connects are cancelled: every node announces all its VIPs, so one
    VIP speaks for all. Only when every VIP stays silent is the answer a timeout."""
    tasks = [
        asyncio.ensure_future(vip_served(a, port, connect_timeout=connect_timeout))
        for a in addresses
    ]
    if not tasks:
        raise ValueError("addresses: no VIP to ask")
    try:
        for next_answer in asyncio.as_completed(tasks):
            answer = await next_answer
            if answer.served or answer.reason != "timeout":
                return answer
        return tasks[0].result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
