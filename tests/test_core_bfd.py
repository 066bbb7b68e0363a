"""`step` by tables for what BFD and ExaBGP's liveness tell the core: each neighbor's BFD
session recorded and logged (a planned Down is no failure), records of neighbors a reload
removed forgotten; a silent ExaBGP killed, and the status then not taking its word."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from ipaddress import ip_address

import pytest
from core_world import DOCUMENT, World
from core_world import config as base_config

from announcer.config import Config, parse_config
from announcer.core import Link
from announcer.core import events as ev
from announcer.core.effects import KillExabgp, Log
from announcer.core.state import BfdRecord
from announcer.snapshot import build_snapshot
from announcer.speaker import SpeakerStatus
from announcer.speaker.events import SessionState
from announcer.speaker.session import Session
from announcer.status_protocol import StatusSnapshot

PEER = "192.0.2.1"


def with_bfd(enabled: bool = True) -> Config:
    document = dict(DOCUMENT)
    neighbor = {**DOCUMENT["bgp"]["neighbors"][0], "local_address": "192.0.2.2"}  # type: ignore[index]
    document["bgp"] = {**DOCUMENT["bgp"], "neighbors": [neighbor]}  # type: ignore[dict-item]
    document["bfd"] = {"enabled": enabled}
    return parse_config(document)


def bfd_logs(effects: Sequence[object]) -> list[tuple[int, dict[str, str]]]:
    return [
        (e.level, dict(e.fields))
        for e in effects
        if isinstance(e, Log) and dict(e.fields).get("event", "").startswith("bfd_")
    ]


@pytest.mark.parametrize(
    ("state", "diag", "planned", "level"),
    [
        ("up", "none", False, logging.INFO),
        ("init", "none", False, logging.INFO),
        ("down", "detection_expired", False, logging.WARNING),
        ("down", "neighbor_down", False, logging.WARNING),
        ("down", "neighbor_down", True, logging.INFO),  # the peer's AdminDown: RFC 5882
        ("admin_down", "admin_down", True, logging.INFO),
    ],
)
def test_each_change_is_recorded_and_logged(
    state: str, diag: str, planned: bool, level: int
) -> None:
    w = World(cfg=with_bfd())
    w.tick(1.0)
    effects = w.feed(ev.BfdChanged(PEER, state, diag, planned))
    record = w.state.bfd[PEER]
    assert (record.state, record.diag, record.since, record.changes) == (state, diag, 1.0, 1)
    assert record.last_down == (diag if state == "down" else None)
    [(logged_level, fields)] = bfd_logs(effects)
    assert logged_level == level
    assert fields["event"] == f"bfd_{state}"
    assert (fields["neighbor"], fields["diag"], fields["old"]) == (PEER, diag, "none")


def test_changes_count_and_the_last_down_reason_stays_until_the_next_down() -> None:
    w = World(cfg=with_bfd())
    for state, diag in [("up", "none"), ("down", "detection_expired"), ("init", "none"),
                        ("up", "none")]:  # fmt: skip
        w.tick(0.5)
        w.feed(ev.BfdChanged(PEER, state, diag))
    assert w.state.bfd[PEER] == BfdRecord("up", "none", 2.0, 4, "detection_expired")


def test_bfd_never_changes_what_is_announced() -> None:
    w = World(cfg=with_bfd())
    w.healthy()
    before = (dict(w.state.installed), w.kills)
    effects = w.feed(ev.BfdChanged(PEER, "down", "detection_expired"))
    assert (dict(w.state.installed), w.kills) == before
    assert [e for e in effects if not isinstance(e, Log)] == []


def test_a_change_for_a_neighbor_without_bfd_is_ignored() -> None:
    for cfg in (with_bfd(enabled=False), base_config()):
        w = World(cfg=cfg)
        assert w.feed(ev.BfdChanged(PEER, "up", "none")) == []
        assert w.state.bfd == {}


def test_a_reload_that_turns_bfd_off_forgets_the_record() -> None:
    w = World(cfg=with_bfd())
    w.feed(ev.BfdChanged(PEER, "up", "none"))
    w.feed(ev.ReloadRequested(with_bfd(enabled=False)))
    assert w.state.bfd == {}


def test_step_copies_the_bfd_records() -> None:
    w = World(cfg=with_bfd())
    before = w.state
    w.feed(ev.BfdChanged(PEER, "up", "none"))
    assert before.bfd == {} and PEER in w.state.bfd


# -- ExaBGP silent


def _snapshot(w: World) -> StatusSnapshot:
    up = Session(peer=ip_address(PEER), state=SessionState.UP, reason="", since=0.0)
    speaker = SpeakerStatus(pid=42, restarts=0, connected=True, sessions=(up,))
    return build_snapshot(
        state=w.state, speaker=speaker, config_error=None, to_wall=lambda t: 1000.0 + t
    )


def test_a_silent_exabgp_is_killed_and_its_word_is_not_taken() -> None:
    w = World(cfg=with_bfd())
    w.healthy()
    w.feed(ev.BfdChanged(PEER, "up", "none"))
    snap = _snapshot(w)
    assert snap.announced and [n.state for n in snap.neighbors] == ["up"]
    effects = w.feed(ev.ExabgpSilent())
    assert [type(e) for e in effects if isinstance(e, KillExabgp)] == [KillExabgp]
    assert w.state.link is Link.KILLING
    snap = _snapshot(w)
    assert not snap.announced and not any(v.announced for v in snap.vips)
    assert [n.state for n in snap.neighbors] == ["unknown (exabgp killing)"]
    assert (snap.exabgp.link, snap.exabgp.killed_for) == (
        "killing",
        "exabgp did not answer in time",
    )
    assert [(b.neighbor, b.state, b.changes) for b in snap.bfd] == [(PEER, "up", 1)]
    w.exabgp_exits()
    w.start_exabgp()
    w.quiet()
    snap = _snapshot(w)
    assert snap.announced and snap.exabgp.killed_for is None
    assert [n.state for n in snap.neighbors] == ["up"]


def test_a_second_silence_while_killing_kills_once() -> None:
    w = World()
    w.healthy()
    w.feed(ev.ExabgpSilent())
    assert w.feed(ev.ExabgpSilent()) == [] or all(not isinstance(e, KillExabgp) for e in w.effects)
    assert w.kills == 1


def test_a_neighbor_with_bfd_not_heard_of_yet_is_down() -> None:
    w = World(cfg=with_bfd())
    [row] = _snapshot(w).bfd
    assert (row.neighbor, row.state, row.diag, row.since, row.changes, row.last_down) == (
        PEER, "down", "none", None, 0, None,
    )  # fmt: skip
