"""Fixtures for tests that realise the lab: skip without root/iproute2/FRR, and a `lab` that is
brought up once per module and torn down afterwards whatever happened."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from announcer.lab import frr, realiser, sysnode, sysplane
from announcer.lab.cli import default_topology
from announcer.lab.topology import Topology, load_topology


def lab_unavailable() -> str | None:
    """Why the lab cannot run on this host, or None."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, mounts)"
    missing = [tool for tool in ("ip", "unshare", "mount", "curl") if shutil.which(tool) is None]
    missing += frr.missing_binaries()
    if missing:
        return f"the lab needs {', '.join(missing)}"
    return None


def quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class RunningLab:
    topology: Topology
    up_seconds: float


@pytest.fixture(scope="session")
def lab_topology() -> Topology:
    if (reason := lab_unavailable()) is not None:
        if os.environ.get("ANNOUNCER_REQUIRE_NETNS") == "1":
            pytest.fail(f"ANNOUNCER_REQUIRE_NETNS=1 but {reason}")
        pytest.skip(reason)
    # The same variable as `announcer lab --topology`, e.g. to test a renamed copy of the lab.
    path = os.environ.get("ANNOUNCER_LAB_TOPOLOGY")
    return load_topology(Path(path) if path else default_topology())


@pytest.fixture
def clean_lab(lab_topology: Topology) -> Iterator[Topology]:
    """No lab before the test, none after it (even when it fails)."""
    realiser.down(lab_topology, say=quiet)
    try:
        yield lab_topology
    finally:
        realiser.down(lab_topology, say=quiet)


@pytest.fixture(scope="module")
def lab(lab_topology: Topology) -> Iterator[RunningLab]:
    """The lab, up from nothing once for the module; always torn down."""
    realiser.down(lab_topology, say=quiet)
    try:
        took = realiser.up(lab_topology, say=print)
        yield RunningLab(lab_topology, took)
    finally:
        realiser.down(lab_topology, say=print)


def systemd_unavailable() -> str | None:
    """Why systemd lab nodes cannot run on this host, or None."""
    if (reason := lab_unavailable()) is not None:
        return reason
    if lacking := sysnode.missing_tools():
        return f"systemd nodes need {', '.join(lacking)} (Debian: systemd-container)"
    return None


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Debian package the systemd nodes install: built once from this checkout, or the
    one $ANNOUNCER_LAB_DEB names."""
    if (reason := systemd_unavailable()) is not None:
        if os.environ.get("ANNOUNCER_REQUIRE_NETNS") == "1":
            pytest.fail(f"ANNOUNCER_REQUIRE_NETNS=1 but {reason}")
        pytest.skip(reason)
    if given := os.environ.get(sysplane.LAB_DEB_ENV):
        return Path(given)  # a package to test instead of this checkout's
    output = tmp_path_factory.mktemp("deb")
    root = Path(__file__).parents[2]
    built = subprocess.run(
        ["bash", root / "scripts/build-deb", "--output", output],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if built.returncode != 0:
        pytest.fail(f"scripts/build-deb failed:\n{built.stderr[-3000:]}")
    return Path(built.stdout.split()[-1])


@contextlib.contextmanager
def systemd_lab(deb: Path, name: str, nodes: tuple[str, ...]) -> Iterator[tuple[Topology, float]]:
    """The simple network with systemd nodes that install `deb`, as lab `name`: (topology,
    seconds `up` took). Down afterwards, whatever happened; no node's namespace left."""
    environ = {**os.environ, "ANNOUNCER_LAB_INIT": "systemd", "ANNOUNCER_LAB_NAME": name}
    topology = load_topology(default_topology(), environ=environ)
    previous = os.environ.get(sysplane.LAB_DEB_ENV)
    os.environ[sysplane.LAB_DEB_ENV] = str(deb)
    realiser.down(topology, say=quiet)
    try:
        yield topology, realiser.up(topology, say=print)
    finally:
        realiser.down(topology, say=print)
        if previous is None:
            os.environ.pop(sysplane.LAB_DEB_ENV, None)
        else:
            os.environ[sysplane.LAB_DEB_ENV] = previous
        assert not [n for n in nodes if Path(f"/run/netns/{topology.netns(n)}").exists()]
