"""Fixtures for the in-process daemon tests (test_daemon, test_metrics, test_bad_input,
test_security): a directory ExaBGP's unprivileged user can reach, the lab's PKI in it, and a
directory of each test's own with the fake ExaBGP.

Names and scopes are chosen not to meet tests/speaker/conftest.py (`shared_dir`, function
scope) or tests/lab/conftest.py: `shared` is per module, so every module cleans up what its
daemons left, and each test's directory is named after the test, sanitised and unique.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from announcer.lab.pki import LabPki, write_lab_pki

HERE = Path(__file__).parent
FAKE_EXABGP = HERE / "speaker" / "fake_exabgp.py"


@pytest.fixture(scope="module")
def shared(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A directory ExaBGP's unprivileged user can traverse (tmp_path is root-only)."""
    prefix = f"{request.module.__name__.removeprefix('test_')[:12]}-"
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def pki(shared: Path) -> LabPki:
    return write_lab_pki(shared / "lab", {"cp1": []})


@pytest.fixture
def base(shared: Path, request: pytest.FixtureRequest) -> Path:
    """The test's own directory (short: the status socket's path must fit in sun_path), with
    the fake ExaBGP in it."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)
    path = Path(tempfile.mkdtemp(prefix=f"{name[:24]}-", dir=shared))
    path.chmod(0o755)
    fake = path / "fake-exabgp"
    shutil.copyfile(FAKE_EXABGP, fake)
    fake.chmod(0o755)
    return path
