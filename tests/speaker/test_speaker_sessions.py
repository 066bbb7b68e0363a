"""The session table the speaker keeps from ExaBGP's events (pure, no clock)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from announcer.speaker.events import SessionEvent, SessionState
from announcer.speaker.session import Session, Sessions

V4, V6 = IPv4Address("192.0.2.1"), IPv6Address("2001:db8:1::1")
DOWN, UP = SessionState.DOWN, SessionState.UP


def test_starts_down_and_records_what_exabgp_reports_with_its_time() -> None:
    sessions = Sessions([V4, V6], now=1.0)
    assert sessions.view()[V4] == Session(V4, DOWN, "exabgp not started", 1.0)
    changed = sessions.apply(SessionEvent(V6, None, UP), now=2.0)
    assert changed == Session(V6, UP, "", 2.0)
    assert sessions.view() == {V4: Session(V4, DOWN, "exabgp not started", 1.0), V6: changed}


def test_an_unconfigured_peer_is_not_recorded() -> None:
    sessions = Sessions([V4], now=1.0)
    assert sessions.apply(SessionEvent(IPv4Address("203.0.113.9"), None, UP), now=2.0) is None
    assert list(sessions.view()) == [V4]


def test_all_down_changes_only_the_sessions_not_already_down() -> None:
    sessions = Sessions([V4, V6], now=1.0)
    sessions.apply(SessionEvent(V4, None, UP), now=2.0)
    assert sessions.all_down("exabgp exited", now=3.0) == [Session(V4, DOWN, "exabgp exited", 3.0)]
    assert sessions.view()[V6].reason == "exabgp not started"
    assert sessions.all_down("again", now=4.0) == []
