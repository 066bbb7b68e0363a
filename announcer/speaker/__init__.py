"""The ExaBGP side of the daemon: ExaBGP supervised, its relay, the command channel.

```
announcer run ── Speaker (process.py): renders exabgp.conf and its environment (render.py),
 │                writes the files ExaBGP's user reads (runtime.py), listens on the relay's
 │                unix socket, starts ExaBGP (launch.py) and restarts it with backoff;
 │                accepts only ExaBGP's own child on the socket (peer.py); keeps the BGP
 │                sessions (session.py) and tells its owner through `on_event`
 └─ exabgp (unprivileged, killed by the kernel when the daemon dies)
     └─ relay (relay.py, ExaBGP's only process, system Python): connects back to the socket;
        one connection = one Channel (channel.py): commands out, acks and events (events.py)
        in; heartbeat lines it consumes, and it kills ExaBGP when they stop
```
"""

from __future__ import annotations

from announcer.speaker.channel import Channel
from announcer.speaker.errors import (
    ChannelClosed,
    EventError,
    RenderError,
    SpeakerError,
)
from announcer.speaker.events import SessionState
from announcer.speaker.process import Backoff, Speaker
from announcer.speaker.render import RuntimePaths, render_environment, render_exabgp
from announcer.speaker.session import (
    Connected,
    Disconnected,
    Exited,
    Failed,
    Session,
    SessionChanged,
    SpeakerEvent,
    SpeakerStatus,
)

__all__ = [
    "Backoff",
    "Channel",
    "ChannelClosed",
    "Connected",
    "Disconnected",
    "EventError",
    "Exited",
    "Failed",
    "RenderError",
    "RuntimePaths",
    "Session",
    "SessionChanged",
    "SessionState",
    "Speaker",
    "SpeakerError",
    "SpeakerEvent",
    "SpeakerStatus",
    "render_environment",
    "render_exabgp",
]
