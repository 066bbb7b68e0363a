"""The Debian package scripts/build-deb makes: its files, conffiles, control data and pins,
what its virtualenv can run without the lab's extras, and lintian's verdict.

The package is built once per module into a temporary directory (pip fetches the pinned
dependencies from the package index: when it cannot be reached, or dpkg-deb or fakeroot is
missing, these tests skip and say so). Installing it and running the unit under systemd is
the lab's business (tests/lab/test_systemd.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from test_packaging import index_unreachable, run

from announcer import __version__

ROOT = Path(__file__).parent.parent
PREFIX = "opt/announcer"
SITE = f"{PREFIX}/lib/python3.11/site-packages"
# The lab's, the benchmark's and the tests' dependencies: none may be in the package.
NOT_RUNTIME = ("trustme", "cryptography", "jsonschema", "regex", "matplotlib", "pytest", "numpy")
# What lintian may still say, and why (see config/deb/lintian-overrides for the rest).
LINTIAN_ACCEPTED: set[str] = set()


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [tool for tool in ("dpkg-deb", "fakeroot", "git") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian: dpkg-dev fakeroot git)")
    if reason := index_unreachable():
        pytest.skip(reason)
    output = tmp_path_factory.mktemp("deb")
    built = run(["bash", ROOT / "scripts/build-deb", "--output", output])
    path = Path(built.stdout.strip().splitlines()[-1])
    assert path == output / f"announcer_{__version__}_amd64.deb"
    return path


@pytest.fixture(scope="module")
def unpacked(deb: Path) -> Iterator[Path]:
    # Where the ExaBGP user can reach it, as under /opt: check-config checks that it can
    # (pytest's own temporary directories are private to root).
    with tempfile.TemporaryDirectory(prefix="announcer-deb-", dir="/tmp") as name:
        Path(name).chmod(0o755)
        root = Path(name) / "root"
        run(["dpkg-deb", "-R", deb, root])
        yield root


def contents(deb: Path) -> dict[str, str]:
    """Each path in the package (without './') -> its `dpkg-deb -c` line."""
    lines = run(["dpkg-deb", "-c", deb]).stdout.splitlines()
    return {line.split(" ./", 1)[1].split(" -> ")[0].rstrip("/"): line for line in lines}


def test_control_data_names_the_package_and_its_python(deb: Path) -> None:
    fields = dict(re.findall(r"^ ?([A-Za-z-]+): (.*)$", run(["dpkg-deb", "-f", deb]).stdout, re.M))
    assert fields["Package"] == "announcer"
    assert fields["Version"] == __version__
    assert fields["Architecture"] == "amd64"
    assert "python3.11" in fields["Depends"].split(", ")


def test_configuration_is_a_conffile_and_the_unit_is_systemds(deb: Path, unpacked: Path) -> None:
    conffiles = (unpacked / "DEBIAN/conffiles").read_text().split()
    assert conffiles == ["/etc/announcer/config.yaml", "/etc/announcer/announcer.schema.json"]
    example = (ROOT / "config/announcer.example.yaml").read_text()
    assert (unpacked / "etc/announcer/config.yaml").read_text() == example
    unit = (unpacked / "lib/systemd/system/announcer.service").read_text()
    assert unit == (ROOT / "config/systemd/announcer.service").read_text()
    listing = contents(deb)
    assert listing["usr/bin/announcer"].endswith("-> /opt/announcer/bin/announcer")
    for script in ("postinst", "prerm", "postrm"):
        assert (unpacked / "DEBIAN" / script).stat().st_mode & 0o111


def test_virtualenv_holds_exactly_the_pinned_runtime_dependencies(deb: Path) -> None:
    pins = {
        line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
        for line in (ROOT / "config/constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    site = re.compile(rf"^{SITE}/([^/]+)-([^-/]+)\.dist-info$")
    installed = {
        match[1].lower().replace("_", "-"): match[2]
        for path in contents(deb)
        if (match := site.match(path))
    }
    assert installed == {**pins, "announcer": __version__}
    modules = {path.split("/")[4] for path in contents(deb) if path.startswith(f"{SITE}/")}
    assert not modules & set(NOT_RUNTIME)


def test_virtualenv_points_at_opt_and_debians_python(unpacked: Path) -> None:
    venv = unpacked / PREFIX
    assert (venv / "bin/announcer").read_text().startswith("#!/opt/announcer/bin/python\n")
    assert (venv / "bin/python3").readlink() == Path("/usr/bin/python3")
    build_paths = subprocess.run(
        ["grep", "-rlI", "/tmp/", venv / "bin", venv / "pyvenv.cfg"], capture_output=True
    )
    assert build_paths.stdout == b""


def test_daemon_commands_run_without_the_lab_extras(unpacked: Path, tmp_path: Path) -> None:
    # The unpacked virtualenv runs where it lies: Python finds it from its own path.
    python = unpacked / PREFIX / "bin/python"
    modules = "announcer.daemon, announcer.cli, announcer.status_client, exabgp.application"
    run([python, "-I", "-c", f"import {modules}"])
    announcer = [python, "-I", "-m", "announcer"]
    assert "lab" not in run([*announcer, "--help"]).stdout.split()
    config = tmp_path / "config.yaml"
    document = yaml.safe_load((ROOT / "config/announcer.example.yaml").read_text())
    document["apiserver"]["ca_file"] = str(tmp_path / "ca.crt")
    config.write_text(yaml.safe_dump(document))
    assert run([*announcer, "check-config", "--config", config]).stderr.endswith(f"{config}: ok\n")
    socket = tmp_path / "status.sock"
    status = subprocess.run(
        [*announcer, "status", "--socket", socket], capture_output=True, text=True
    )
    assert (status.returncode, status.stderr) == (
        1,
        f"Error: cannot reach the daemon at {socket}: No such file or directory\n",
    )


def test_lintian_finds_nothing_but_the_accepted(deb: Path) -> None:
    if shutil.which("lintian") is None:
        pytest.skip("lintian is not installed (Debian package lintian)")
    found = subprocess.run(
        ["lintian", "--tag-display-limit", "0", deb], capture_output=True, text=True
    )
    tags = {match[1] for match in re.finditer(r"^[EW]: announcer: (\S+)", found.stdout, flags=re.M)}
    assert tags <= LINTIAN_ACCEPTED, found.stdout
