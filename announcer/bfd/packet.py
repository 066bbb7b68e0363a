"""The BFD control packet (RFC 5880 section 4.1, mandatory section): encoding, decoding and the
checks of section 6.8.6 that need no session.

`decode` either returns a `ControlPacket` or raises `Discarded` with the `Discard` reason, so a
caller counts every dropped packet by what was wrong with it. The checks that need a session
(which discriminator is known, whether authentication is configured) are the session table's
and the session's; their reasons are listed here too so that one enum names every drop.

Must not: hold state, know about sockets or time, or accept the authentication section (the
announcer never configures BFD authentication, so a packet with the A bit is discarded).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

VERSION: Final = 1
LENGTH: Final = 24  # the mandatory section; the announcer sends nothing else
_FORMAT: Final = struct.Struct("!BBBBIIIII")
_U32: Final = 0xFFFFFFFF

# Flag bits of the second byte, after the 2-bit state.
POLL: Final = 0x20
FINAL: Final = 0x10
CPI: Final = 0x08
AUTH: Final = 0x04
DEMAND: Final = 0x02
MULTIPOINT: Final = 0x01


class State(enum.IntEnum):
    """bfd.SessionState and the State field (RFC 5880 section 4.1)."""

    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3


class Diag(enum.IntEnum):
    """The Diagnostic field: why the sender's session last changed state."""

    NONE = 0
    DETECTION_EXPIRED = 1
    ECHO_FAILED = 2
    NEIGHBOR_DOWN = 3
    FORWARDING_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMIN_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8


class Discard(enum.Enum):
    """Why a received packet was dropped; the value is the metrics label."""

    SHORT = "short"  # fewer bytes than the mandatory section
    VERSION = "version"
    LENGTH = "length"  # Length field below 24 or beyond the datagram
    DETECT_MULT_ZERO = "detect_mult_zero"
    MULTIPOINT = "multipoint"
    MY_DISCRIMINATOR_ZERO = "my_discriminator_zero"
    YOUR_DISCRIMINATOR_ZERO = "your_discriminator_zero"  # and state neither Down nor AdminDown
    AUTH = "auth"  # the A bit, while the announcer configures no authentication
    UNKNOWN_DISCRIMINATOR = "unknown_discriminator"
    UNKNOWN_PEER = "unknown_peer"  # Your Discriminator 0 from an address without a session
    TTL = "ttl"  # single-hop: TTL / Hop Limit not 255 (RFC 5881 section 5)
    ADMIN_DOWN = "admin_down"  # the local session is AdminDown (RFC 5880 section 6.8.6)


class Discarded(Exception):
    """A received packet that section 6.8.6 (or RFC 5881) says to discard."""

    def __init__(self, reason: Discard) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class ControlPacket:
    """The mandatory section; intervals in microseconds, as on the wire."""

    state: State
    diag: Diag = Diag.NONE
    poll: bool = False
    final: bool = False
    detect_mult: int
    my_discriminator: int
    your_discriminator: int = 0
    desired_min_tx: int
    required_min_rx: int
    required_min_echo_rx: int = 0


def encode(packet: ControlPacket) -> bytes:
    """The 24 bytes of `packet` (no C, A, D or M bit: the announcer uses none of them)."""
    flags = (POLL if packet.poll else 0) | (FINAL if packet.final else 0)
    return _FORMAT.pack(
        VERSION << 5 | packet.diag,
        packet.state << 6 | flags,
        packet.detect_mult,
        LENGTH,
        packet.my_discriminator,
        packet.your_discriminator,
        packet.desired_min_tx,
        packet.required_min_rx,
        packet.required_min_echo_rx,
    )


def decode(data: bytes) -> ControlPacket:
    """The packet in one UDP payload, after the section 6.8.6 checks that need no session."""
    if len(data) < LENGTH:
        raise Discarded(Discard.SHORT)
    fields = _FORMAT.unpack_from(data)
    first, second, detect_mult, length, my_disc, your_disc = fields[:6]
    if first >> 5 != VERSION:
        raise Discarded(Discard.VERSION)
    if length < LENGTH or length > len(data):
        raise Discarded(Discard.LENGTH)
    if detect_mult == 0:
        raise Discarded(Discard.DETECT_MULT_ZERO)
    if second & MULTIPOINT:
        raise Discarded(Discard.MULTIPOINT)
    if my_disc == 0:
        raise Discarded(Discard.MY_DISCRIMINATOR_ZERO)
    state = State(second >> 6)
    if your_disc == 0 and state not in (State.DOWN, State.ADMIN_DOWN):
        raise Discarded(Discard.YOUR_DISCRIMINATOR_ZERO)
    if second & AUTH:
        raise Discarded(Discard.AUTH)
    return ControlPacket(
        state=state,
        diag=_diag(first & 0x1F),
        poll=bool(second & POLL),
        final=bool(second & FINAL),
        detect_mult=detect_mult,
        my_discriminator=my_disc,
        your_discriminator=your_disc,
        desired_min_tx=fields[6],
        required_min_rx=fields[7],
        required_min_echo_rx=fields[8],
    )


def _diag(code: int) -> Diag:
    # Codes 9-31 are reserved; a peer sending one is not a reason to drop its packet.
    return Diag(code) if code in Diag._value2member_map_ else Diag.NONE
