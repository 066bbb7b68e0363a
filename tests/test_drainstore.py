from __future__ import annotations

import os
from pathlib import Path

import pytest

from announcer.drainstore import DrainStore, DrainStoreError


def test_a_fresh_state_dir_is_not_drained(tmp_path: Path) -> None:
    assert not DrainStore(tmp_path / "state").is_drained()


def test_drain_survives_a_new_store_and_undrain_clears_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    DrainStore(state).set(True)
    assert DrainStore(state).is_drained()
    assert (state / "drained").read_text() == "drained\n"
    DrainStore(state).set(False)
    assert not DrainStore(state).is_drained()
    assert not (state / "drained").exists()


def test_set_is_idempotent_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = DrainStore(tmp_path)
    for drained in (True, True, False, False, True):
        store.set(drained)
        assert store.is_drained() is drained
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drained"]


def test_set_creates_the_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b"
    DrainStore(state).set(True)
    assert state.is_dir()
    assert DrainStore(state).is_drained()


def test_a_failed_write_raises_and_keeps_the_old_state(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(DrainStoreError, match="cannot record drained state"):
        DrainStore(blocker).set(True)


def test_an_unreadable_flag_counts_as_drained(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert DrainStore(loop).is_drained()


def test_a_planted_symlink_is_never_written_through(tmp_path: Path) -> None:
    """Symlinks at the flag's name and at every temporary name a predictable writer would use
    (its pid): setting and clearing the flag leaves their targets alone."""
    state = tmp_path / "state"
    state.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    for name in (f".drained.{os.getpid()}.tmp", f".drained.{os.getpid()}"):
        (state / name).symlink_to(victim)
    store = DrainStore(state)
    store.set(True)
    assert victim.read_text() == "untouched\n"
    assert (state / "drained").read_text() == "drained\n"
    assert not (state / "drained").is_symlink()
    (state / "drained").unlink()
    (state / "drained").symlink_to(victim)
    store.set(False)
    assert victim.read_text() == "untouched\n"
    assert not (state / "drained").exists()
