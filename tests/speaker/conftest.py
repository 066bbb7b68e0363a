"""Fixtures for the speaker's tests: configurations, and directories ExaBGP's user can reach."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from announcer.config import Config, parse_config

HERE = Path(__file__).parent
EXABGP_USER = "nobody"  # exists on Debian; the tests switch to it when run as root


def config_document(state_dir: Path, **exabgp: object) -> dict[str, object]:
    return {
        "vips": ["198.51.100.10/32"],
        "bgp": {
            "router_id": "192.0.2.2",
            "local_as": 65100,
            "neighbors": [{"address": "192.0.2.1", "peer_as": 65000}],
        },
        "state_dir": str(state_dir),
        "exabgp": {"user": EXABGP_USER, **exabgp},
    }


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A temporary directory any user may traverse (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="spk-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_exabgp(shared_dir: Path) -> Path:
    """tests/speaker/fake_exabgp.py, executable, where ExaBGP's user can run it."""
    target = shared_dir / "fake-exabgp"
    shutil.copyfile(HERE / "fake_exabgp.py", target)
    target.chmod(0o755)
    return target


@pytest.fixture
def fake_config(shared_dir: Path, fake_exabgp: Path) -> Callable[..., Config]:
    """A Config running the fake ExaBGP; keyword arguments go into its `exabgp` section."""

    def make(**exabgp: object) -> Config:
        # `fake.*` settings steer the fake ExaBGP. The parser refuses settings ExaBGP does not
        # have, so they join the parsed configuration afterwards.
        settings = exabgp.pop("settings", None)
        given = dict(settings) if isinstance(settings, dict) else {}
        fake = {key: value for key, value in given.items() if key.startswith("fake.")}
        real = {key: value for key, value in given.items() if key not in fake}
        if real:
            exabgp["settings"] = real
        document = config_document(shared_dir / "state", binary=str(fake_exabgp), **exabgp)
        config = parse_config(document)
        if not fake:
            return config
        merged = tuple(sorted({**dict(config.exabgp.settings), **fake}.items()))
        return replace(config, exabgp=replace(config.exabgp, settings=merged))

    return make
