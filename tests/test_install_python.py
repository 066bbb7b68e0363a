"""scripts/install refuses a Python older than 3.11 (or none at all) with a message naming the
interpreter and the version it found, before it installs anything. A fake interpreter, given
with `--python`, answers as an old Python would; `--root` keeps a failure away from the host.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

OLD_PYTHON = """#!/bin/sh
# An old interpreter: `--version` says 3.9, the version check `-c ...` exits 1.
case "$1" in --version) echo "Python 3.9.2" ;; *) exit 1 ;; esac
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="scripts/install runs as root only")


def install(tmp_path: Path, python: Path) -> subprocess.CompletedProcess[str]:
    argv = ["bash", str(ROOT / "scripts/install"), "--root", str(tmp_path / "root")]
    return subprocess.run(
        [*argv, "--python", str(python)], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_too_old_python_is_refused_naming_its_version(tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.write_text(OLD_PYTHON)
    fake.chmod(0o755)
    result = install(tmp_path, fake)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"install: {fake} is Python 3.9.2; announcer needs Python 3.11 or newer "
        "(nothing was installed)"
    )
    assert not (tmp_path / "root").exists()


def test_a_missing_python_is_refused_naming_the_path(tmp_path: Path) -> None:
    result = install(tmp_path, tmp_path / "nowhere" / "python3")
    assert result.returncode == 1
    assert f"no Python at {tmp_path}/nowhere/python3" in result.stderr
    assert not (tmp_path / "root").exists()
