"""`announcer.config.pathcheck`: which directories root may write in, on real directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from announcer.cli import main
from announcer.config.pathcheck import path_problem

NOBODY = 65534
ROOT_ONLY = frozenset({0})
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as others")


@pytest.fixture
def base(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    return tmp_path


def test_a_root_owned_tree_is_safe_even_where_it_does_not_exist_yet(base: Path) -> None:
    assert path_problem("state_dir", base / "state" / "deeper") is None
    assert path_problem("state_dir", Path("/tmp")) is None  # sticky: others cannot touch ours


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o777])
def test_a_directory_others_can_write_is_refused(base: Path, mode: int) -> None:
    shared = base / "shared"
    shared.mkdir()
    shared.chmod(mode)
    assert path_problem("state_dir", shared / "state") == (
        f"state_dir: {shared / 'state'}: {shared} (mode {mode:04o}) is writable by group or others"
    )


@needs_root
def test_a_directory_owned_by_another_user_is_refused(base: Path) -> None:
    state = base / "state"
    state.mkdir()
    os.chown(state, NOBODY, NOBODY)
    assert path_problem("state_dir", state) == (
        f"state_dir: {state}: {state} is owned by uid {NOBODY}, not root"
    )


@needs_root
def test_a_symlink_planted_by_another_user_is_refused(base: Path) -> None:
    sticky = base / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    link = sticky / "state"
    link.symlink_to("/etc")
    os.chown(link, NOBODY, NOBODY, follow_symlinks=False)
    assert path_problem("state_dir", link / "exabgp", owners=ROOT_ONLY) == (
        f"state_dir: {link / 'exabgp'}: {link} is a symlink owned by uid {NOBODY}, not root"
    )


def test_a_root_symlink_is_followed_and_its_target_checked(base: Path) -> None:
    unsafe = base / "unsafe"
    unsafe.mkdir()
    unsafe.chmod(0o777)
    (base / "good").symlink_to(base)
    (base / "bad").symlink_to(unsafe / "state")
    assert path_problem("state_dir", base / "good" / "state") is None
    problem = path_problem("state_dir", base / "bad")
    assert problem is not None
    assert problem.endswith(f"{unsafe} (mode 0777) is writable by group or others")
    loop = base / "loop"
    loop.symlink_to(loop)
    assert path_problem("state_dir", loop) == f"state_dir: {loop}: too many symlinks at {loop}"


def test_a_file_where_a_directory_should_be_is_refused(base: Path) -> None:
    (base / "file").write_text("")
    assert path_problem("state_dir", base / "file" / "state") == (
        f"state_dir: {base / 'file' / 'state'}: {base / 'file'} is not a directory"
    )


def test_check_config_names_an_unsafe_state_dir_and_socket_directory(base: Path) -> None:
    shared = base / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    document = {
        "bgp": {
            "router_id": "192.0.2.2",
            "local_as": 65100,
            "neighbors": [{"address": "192.0.2.1", "peer_as": 65000}],
        },
        "vips": ["198.51.100.10/32"],
        "exabgp": {"binary": "/bin/true"},
        "state_dir": str(shared / "state"),
        "status": {"socket": str(shared / "run" / "status.sock")},
    }
    config_file = base / "config.yaml"
    config_file.write_text(yaml.safe_dump(document))
    result = CliRunner().invoke(main, ["check-config", "--config", str(config_file)])
    unsafe = f"is unsafe to write in as root: {shared} (mode 0777) is writable by group or others"
    assert result.exit_code == 2
    # (a long value is elided in the middle: the reason names the directory in full)
    errors = [line for line in result.stderr.splitlines() if line.endswith(unsafe)]
    assert [line.split(":", 2)[1].strip() for line in errors] == ["state_dir", "status.socket"]
