"""The pure core: the node's decision state and `step(state, event, now) -> (state, effects)`.

```
events.py   what the world tells the core (probes, ticks, requests, ExaBGP, the interface)
effects.py  what the core asks of the world (commands, VIPs, kill, replies, logs, exit)
state.py    CoreState: health, lifecycle, what ExaBGP may hold, VIPs, waiting clients
exabgp.py   the next command, what an answer means, when to kill ExaBGP
bfd.py      each neighbor's BFD session, recorded and logged (the routers act on it)
vips.py     the VIP rule: on the interface while any router may route it here
step.py     step(): one event, then the settling pass every event ends with
```
Only `step` changes decision state. Must not: import asyncio, sockets, subprocesses, httpx,
pyroute2, yaml or do any other I/O; it has no clock of its own (`now` is passed in).
"""

from __future__ import annotations

from announcer.core.state import CoreState, Link, initial
from announcer.core.step import step

__all__ = ["CoreState", "Link", "initial", "step"]
