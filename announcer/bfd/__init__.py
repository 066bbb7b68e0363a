"""Native BFD (RFC 5880 asynchronous mode over UDP, RFC 5881 single-hop, RFC 5883 multihop).

Sans-I/O parts, driven by tables in tests: `packet` (the control packet and the reception
checks), `session` (one session's state machine and timers), `table` (which session a packet
belongs to). The I/O shell: `sockets` (UDP, TTL 255) and `service` (`BfdService`, the sessions
on the asyncio loop).

Must not: know about BGP, ExaBGP or the configuration file; the daemon maps neighbors to
`SessionKey`s and `Profile`s and decides what a session going down means.
"""

from __future__ import annotations

from announcer.bfd.packet import ControlPacket, Diag, Discard, State
from announcer.bfd.service import BfdService, SessionStatus
from announcer.bfd.session import Profile, StateChange
from announcer.bfd.sockets import BfdSocketError
from announcer.bfd.table import SessionKey

__all__ = [
    "BfdService",
    "BfdSocketError",
    "ControlPacket",
    "Diag",
    "Discard",
    "Profile",
    "SessionKey",
    "SessionStatus",
    "State",
    "StateChange",
]
