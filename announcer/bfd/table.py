"""The sessions of one BFD speaker, and which of them a received packet belongs to.

RFC 5880 section 6.8.6: a packet with a non-zero Your Discriminator belongs to the session
with that local discriminator; one with zero (the peer does not know us yet) to the session
with the packet's source address. Either way the source address must be the session's peer
and the kind (single-hop or multihop, i.e. the port it arrived on) the session's kind, or the
packet is dropped. The destination address is the listening socket's, which is bound to the
sessions' local address.

Must not: open sockets, read a clock, or run the sessions (that is `service`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from announcer.bfd.packet import ControlPacket, Discard, Discarded
from announcer.bfd.session import Profile, Session

IPAddress = IPv4Address | IPv6Address
_U32: Final = 0xFFFFFFFF
_ATTEMPTS: Final = 1000  # a broken random source must not hang the daemon


@dataclass(frozen=True)
class SessionKey:
    """A session: the peer's address, the local address packets are sent from, and whether it
    is multihop (RFC 5883, UDP port 4784) or single-hop (RFC 5881, port 3784)."""

    peer: IPAddress
    local: IPAddress
    multihop: bool = False

    def __post_init__(self) -> None:
        if self.peer.version != self.local.version:
            raise ValueError(f"peer {self.peer} and local address {self.local} differ in family")

    def __str__(self) -> str:
        return f"{self.peer} from {self.local}{' multihop' if self.multihop else ''}"

    def sort_key(self) -> tuple[int, int, int, bool]:
        """IPv4 before IPv6, then by address (addresses of two families do not compare)."""
        return (self.peer.version, int(self.peer), int(self.local), self.multihop)


class SessionTable:
    """Sessions by key and by local discriminator (unique, random, never zero)."""

    def __init__(self, *, random: Callable[[], float]) -> None:
        self._random = random
        self._by_key: dict[SessionKey, Session] = {}
        self._by_discriminator: dict[int, SessionKey] = {}

    def __iter__(self) -> Iterator[tuple[SessionKey, Session]]:
        return iter(sorted(self._by_key.items(), key=lambda item: item[0].sort_key()))

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def get(self, key: SessionKey) -> Session:
        return self._by_key[key]

    def add(self, key: SessionKey, profile: Profile, now: float) -> Session:
        if key in self._by_key:
            raise ValueError(f"BFD session {key} exists already")
        session = Session(
            discriminator=self._new_discriminator(),
            profile=profile,
            random=self._random,
            now=now,
        )
        self._by_key[key] = session
        self._by_discriminator[session.discriminator] = key
        return session

    def remove(self, key: SessionKey) -> Session:
        session = self._by_key.pop(key)
        del self._by_discriminator[session.discriminator]
        return session

    def _new_discriminator(self) -> int:
        for _ in range(_ATTEMPTS):
            candidate = 1 + int(self._random() * _U32)
            if candidate <= _U32 and candidate not in self._by_discriminator:
                return candidate
        raise RuntimeError(f"no free BFD discriminator in {_ATTEMPTS} random draws")

    def match(
        self, packet: ControlPacket, *, source: IPAddress, multihop: bool
    ) -> tuple[SessionKey, Session]:
        """The session `packet` (received from `source`) belongs to; raises `Discarded`."""
        if packet.your_discriminator:
            key = self._by_discriminator.get(packet.your_discriminator)
            if key is None or key.multihop != multihop:
                raise Discarded(Discard.UNKNOWN_DISCRIMINATOR)
            if key.peer != source:
                raise Discarded(Discard.UNKNOWN_PEER)
            return key, self._by_key[key]
        for key, session in self._by_key.items():
            if key.peer == source and key.multihop == multihop:
                return key, session
        raise Discarded(Discard.UNKNOWN_PEER)
