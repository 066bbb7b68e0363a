"""The BFD control packet codec: golden bytes and every reason RFC 5880 6.8.6 gives to drop."""

from __future__ import annotations

import contextlib
import struct

import pytest

from announcer.bfd.packet import (
    ControlPacket,
    Diag,
    Discard,
    Discarded,
    State,
    decode,
    encode,
)

# Up, Poll, detect mult 3, length 24, discriminators 1 and 2, 300 ms both ways, no echo.
GOLDEN = bytes.fromhex("20e003180000000100000002000493e0000493e000000000")
PACKET = ControlPacket(
    state=State.UP,
    poll=True,
    detect_mult=3,
    my_discriminator=1,
    your_discriminator=2,
    desired_min_tx=300_000,
    required_min_rx=300_000,
)


def test_encode_gives_the_golden_bytes() -> None:
    assert encode(PACKET) == GOLDEN


def test_decode_reads_the_golden_bytes() -> None:
    assert decode(GOLDEN) == PACKET


def test_diag_state_and_final_are_placed_in_their_bits() -> None:
    packet = ControlPacket(
        state=State.DOWN,
        diag=Diag.DETECTION_EXPIRED,
        final=True,
        detect_mult=255,
        my_discriminator=0xFFFFFFFF,
        desired_min_tx=1_000_000,
        required_min_rx=10_000,
    )
    data = encode(packet)
    assert data[:4] == bytes([0x21, 0x50, 0xFF, 24])
    assert decode(data) == packet


def test_a_longer_datagram_is_read_up_to_the_mandatory_section() -> None:
    assert decode(GOLDEN + b"\0" * 8) == PACKET


def test_a_reserved_diag_code_reads_as_none() -> None:
    assert decode(bytes([0x20 | 17]) + GOLDEN[1:]).diag is Diag.NONE


def _with(**changes: int) -> bytes:
    """GOLDEN with some header fields replaced (byte offsets of the mandatory section)."""
    fields = list(struct.unpack("!BBBBIIIII", GOLDEN))
    names = ["first", "second", "mult", "length", "my", "your", "tx", "rx", "echo"]
    for name, value in changes.items():
        fields[names.index(name)] = value
    return struct.pack("!BBBBIIIII", *fields)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", Discard.SHORT),
        (GOLDEN[:23], Discard.SHORT),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Discard.VERSION),
        (_with(first=0x00), Discard.VERSION),  # version 0
        (_with(first=0x40), Discard.VERSION),  # version 2
        (_with(first=0xE0), Discard.VERSION),  # version 7
        (_with(length=23), Discard.LENGTH),
        (_with(length=0), Discard.LENGTH),
        (_with(length=25), Discard.LENGTH),  # beyond the datagram
        (_with(length=255), Discard.LENGTH),
        (_with(mult=0), Discard.DETECT_MULT_ZERO),
        (_with(second=0xC1), Discard.MULTIPOINT),
        (_with(my=0), Discard.MY_DISCRIMINATOR_ZERO),
        (_with(your=0), Discard.YOUR_DISCRIMINATOR_ZERO),  # state Up
        (_with(second=0x80, your=0), Discard.YOUR_DISCRIMINATOR_ZERO),  # state Init
        (_with(second=0xC4), Discard.AUTH),
        (_with(second=0xC4, length=26) + b"\x01\x02", Discard.AUTH),
    ],
)
def test_malformed_packets_are_discarded_with_their_reason(data: bytes, reason: Discard) -> None:
    with pytest.raises(Discarded) as caught:
        decode(data)
    assert caught.value.reason is reason


@pytest.mark.parametrize("state", [0x00, 0x40])  # AdminDown, Down
def test_your_discriminator_zero_is_fine_while_down(state: int) -> None:
    assert decode(_with(second=state, your=0)).your_discriminator == 0


def test_no_byte_string_raises_anything_but_discarded() -> None:
    # Every length up to the section plus one, every value of the first two bytes.
    for length in range(26):
        for first in range(256):
            data = bytes([first, (first * 7) & 0xFF]) + GOLDEN[2:length]
            with contextlib.suppress(Discarded):
                decode(data[:length])
