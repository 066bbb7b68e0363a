"""`announcer.speaker.runtime`: root never writes through a path another user controls."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from announcer.config import parse_config
from announcer.speaker import runtime
from announcer.speaker.errors import SpeakerError
from announcer.speaker.render import ENVIRONMENT_FILE, RuntimePaths

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the symlink attacks need root")
EXABGP_USER = "nobody"


def paths_for(state_dir: Path) -> RuntimePaths:
    document = {
        "vips": ["198.51.100.10/32"],
        "bgp": {
            "router_id": "192.0.2.2",
            "local_as": 65100,
            "neighbors": [{"address": "192.0.2.1", "peer_as": 65000}],
        },
        "state_dir": str(state_dir),
        "exabgp": {"user": EXABGP_USER},
    }
    return RuntimePaths.of(parse_config(document))


def snapshot(directory: Path) -> tuple[int, int, list[str]]:
    info = directory.stat()
    return info.st_uid, stat.S_IMODE(info.st_mode), sorted(p.name for p in directory.iterdir())


def test_the_runtime_directory_is_prepared_in_a_safe_state_dir(shared_dir: Path) -> None:
    paths = paths_for(shared_dir / "state")
    account = runtime.exabgp_account(EXABGP_USER)
    runtime.prepare(paths, account)
    info = paths.directory.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, account.gid, 0o750)
    assert paths.relay.read_bytes() == Path(runtime.relay.__file__).read_bytes()
    assert sorted(p.name for p in paths.directory.iterdir()) == [
        "exabgp.env",
        "nodump.py",
        "relay.py",
    ]
    assert paths.environment.read_text() == ENVIRONMENT_FILE


def test_a_state_dir_under_a_directory_others_can_write_is_refused(shared_dir: Path) -> None:
    """The issue's attack: the parent is writable by another user, who plants `exabgp`."""
    writable = shared_dir / "writable"
    writable.mkdir()
    writable.chmod(0o777)
    target = shared_dir / "target"
    target.mkdir(mode=0o700)
    state = writable / "state"
    state.mkdir()
    (state / "exabgp").symlink_to(target)
    before = snapshot(target)
    with pytest.raises(SpeakerError, match=rf"state_dir: {state}: {writable} \(mode 0777\)"):
        runtime.prepare(paths_for(state), runtime.exabgp_account(EXABGP_USER))
    assert snapshot(target) == before


def test_a_symlink_in_place_of_the_runtime_directory_is_not_followed(shared_dir: Path) -> None:
    state = shared_dir / "state"
    state.mkdir()
    target = shared_dir / "target"
    target.mkdir(mode=0o700)
    (state / "exabgp").symlink_to(target)
    before = snapshot(target)
    with pytest.raises(SpeakerError, match="not a directory the daemon can use"):
        runtime.prepare(paths_for(state), runtime.exabgp_account(EXABGP_USER))
    assert snapshot(target) == before


def test_a_state_dir_owned_by_another_user_is_refused(shared_dir: Path) -> None:
    state = shared_dir / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)
    with pytest.raises(SpeakerError, match=rf"state_dir: {state}: {state} is owned by uid 65534"):
        runtime.prepare(paths_for(state), runtime.exabgp_account(EXABGP_USER))
    assert list(state.iterdir()) == []


def test_write_file_replaces_a_planted_symlink_instead_of_following_it(shared_dir: Path) -> None:
    paths = paths_for(shared_dir / "state")
    account = runtime.exabgp_account(EXABGP_USER)
    runtime.prepare(paths, account)
    victim = shared_dir / "victim"
    victim.write_text("untouched\n")
    paths.config.symlink_to(victim)
    runtime.write_file(paths.config, b"secret\n", account=account, mode=runtime.CONFIG_MODE)
    assert victim.read_text() == "untouched\n"
    assert not paths.config.is_symlink()
    info = paths.config.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, account.gid, 0o640)
    assert paths.config.read_bytes() == b"secret\n"
