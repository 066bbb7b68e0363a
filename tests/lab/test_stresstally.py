"""What `announcer lab stress` counts, without a lab: counters read from a status snapshot
and from `show bfd peers counters json`, changes per side and profile, the verdict."""

from __future__ import annotations

from announcer.lab.stresstally import Side, Tally, daemon_counts, frr_counts, render

FAST, DEFAULT = "100 ms x 3", "300 ms x 3"


def test_a_snapshot_gives_each_neighbors_state_and_changes() -> None:
    snapshot = {"bfd": [{"neighbor": "192.0.2.1", "state": "up", "changes": 3}, "junk"]}
    assert daemon_counts(snapshot) == {"192.0.2.1": ("up", 3)}
    assert daemon_counts({}) == {}


def test_frr_counters_add_up_and_down_events() -> None:
    counters: list[object] = [{"peer": "192.0.2.2", "session-up": 2, "session-down": 1}, 7]
    assert frr_counts(counters) == {"192.0.2.2": 3}


def tally(after: dict[Side, int]) -> Tally:
    fast, slow = Side("cp1", "192.0.2.1"), Side("leaf1", "192.0.2.6")
    return Tally(profiles={fast: FAST, slow: DEFAULT}, before={fast: 1, slow: 1}, after=after)


def test_changes_per_side_and_profile() -> None:
    fast, slow = Side("cp1", "192.0.2.1"), Side("leaf1", "192.0.2.6")
    t = tally({fast: 3, slow: 1})
    assert t.changes() == {fast: 2, slow: 0}
    assert t.per_profile() == {FAST: 2, DEFAULT: 0}
    assert t.any_down() and not t.any_down(but=FAST)
    assert "any BFD down: YES" in render(t, header=["h"])


def test_a_session_gone_or_seen_down_is_a_down() -> None:
    fast, slow = Side("cp1", "192.0.2.1"), Side("leaf1", "192.0.2.6")
    gone = tally({fast: 1})
    assert gone.changes()[slow] == -1 and gone.any_down(but=FAST)
    seen = tally({fast: 1, slow: 1})
    assert not seen.any_down()
    seen.downs.append((slow, "down at +3.0 s"))
    assert seen.any_down(but=FAST)
    seen.scraped("cp2 status", ok=False)
    assert "cp2 status" in render(seen, header=[]) and seen.failures["cp2 status"] == 1
