"""Parsing ExaBGP's JSON events: real lines captured from ExaBGP 5.0.15, and garbage."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from announcer.speaker.errors import EventError
from announcer.speaker.events import SessionEvent, SessionState, Shutdown, parse_event

# Captured from ExaBGP 5.0.15 talking to FRR 8.4 (session up, FRR `neighbor X shutdown`,
# link down, SIGTERM), in that order.
SAMPLES = (Path(__file__).parent / "exabgp-events.jsonl").read_text().splitlines()
PEER = IPv4Address("198.18.0.1")
LOCAL = IPv4Address("198.18.0.2")


def test_real_samples_parse_to_typed_events() -> None:
    assert [parse_event(line) for line in SAMPLES] == [
        SessionEvent(PEER, LOCAL, SessionState.CONNECTED),
        SessionEvent(PEER, LOCAL, SessionState.UP),
        SessionEvent(PEER, LOCAL, SessionState.DOWN, "notification received (6,2)"),
        SessionEvent(PEER, LOCAL, SessionState.DOWN, "closing connection"),
        SessionEvent(PEER, LOCAL, SessionState.DOWN, "stop, message [shutting down]"),
        Shutdown(),
    ]


def test_ipv6_peer_and_undiscovered_local_address() -> None:
    message = json.loads(SAMPLES[1])
    message["neighbor"]["address"] = {"local": "None", "peer": "2001:db8:1::1"}
    assert parse_event(json.dumps(message)) == SessionEvent(
        IPv6Address("2001:db8:1::1"), None, SessionState.UP
    )


@pytest.mark.parametrize(
    "line",
    [
        '{ "exabgp": "5.0.0", "type": "fsm", "neighbor": {} }',
        '{ "type": "signal", "neighbor": {} }',
        # A BGP NOTIFICATION (not ExaBGP's own shutdown): the `down` state event follows.
        '{ "type": "notification", "neighbor": {}, "notification": {"code": 6} }',
    ],
)
def test_known_messages_of_no_interest_are_none(line: str) -> None:
    assert parse_event(line) is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("done", "not JSON"),
        ('{"type": "state", "neighbor": {', "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"type": "update"}', "unknown message type 'update'"),
        ('{"no": "type"}', "unknown message type 'None'"),
        ('{"type": "state"}', "without a neighbor object"),
        ('{"type": "state", "neighbor": {"address": 1}}', "without neighbor.address"),
        (
            '{"type": "state", "neighbor": {"address": {"peer": "x"}, "state": "up"}}',
            "without a valid neighbor.address.peer",
        ),
        (
            '{"type": "state", "neighbor": {"address": {"peer": "192.0.2.1"}, "state": "odd"}}',
            "unknown session state 'odd'",
        ),
    ],
)
def test_garbage_is_an_event_error(line: str, message: str) -> None:
    with pytest.raises(EventError, match=message.replace("[", r"\[")):
        parse_event(line)
