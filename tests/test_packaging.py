"""Packaging: `python -m build` gives a wheel and an sdist; the wheel installed into a fresh
virtualenv gives a working `announcer` (with click's shell completion); scripts/install and
scripts/uninstall put the host files in place and take them away again; the FRR
configurations that docs/ ships parse with FRR's own `vtysh --dryrun`.

The artifacts are built once per session from a copy of the checkout (git's tracked and
unignored files), so the build leaves nothing in the working tree. Building and installing
fetch from the package index: when it cannot be reached, these tests skip and say so.

The install test runs the scripts with `--root` into a temporary directory (never the real
/opt, /etc or /var of this host, which a running lab or an operator's install may use): every
step except `systemctl` and `getent` runs as on a host, `useradd`/`userdel` included, so it
needs root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from announcer import __version__

ROOT = Path(__file__).parent.parent
SYSTEM_PYTHON = Path("/usr/bin/python3")
ACCOUNT_FILES = ("passwd", "group", "shadow", "gshadow")


def run(
    argv: Sequence[str | Path], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; fail the test with its output if it fails."""
    words = [str(arg) for arg in argv]
    environment = None if env is None else {**os.environ, **env}
    result = subprocess.run(
        words, capture_output=True, text=True, timeout=600, cwd=cwd, env=environment
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(words)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


def index_unreachable() -> str | None:
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/")
    try:
        httpx.head(f"{index}/pip/", timeout=15, follow_redirects=True).raise_for_status()
    except httpx.HTTPError as error:
        return f"the package index {index} cannot be reached ({error}): build and pip need it"
    return None


def copy_checkout(destination: Path) -> Path:
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():  # tracked files being deleted are listed too
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


@dataclass(frozen=True)
class Built:
    source: Path  # the copy of the checkout the artifacts were built from
    wheel: Path
    sdist: Path


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if reason := index_unreachable():
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("build")
    source = copy_checkout(base / "src")
    run([sys.executable, "-m", "build", "--outdir", base / "dist", source])
    (wheel,) = (base / "dist").glob("announcer-*.whl")
    (sdist,) = (base / "dist").glob("announcer-*.tar.gz")
    return Built(source=source, wheel=wheel, sdist=sdist)


def test_wheel_holds_the_package_with_its_relay_and_no_tests(built: Built) -> None:
    assert built.wheel.name == f"announcer-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(built.wheel) as wheel:
        names = wheel.namelist()
    assert "announcer/speaker/relay.py" in names
    assert "announcer/config/schema.py" in names
    dist_info = f"announcer-{__version__}.dist-info/"
    assert [name for name in names if not name.startswith(("announcer/", dist_info))] == []
    assert [name for name in names if "/test_" in name or "/tests/" in name] == []


def test_sdist_holds_the_sources(built: Built) -> None:
    top = f"announcer-{__version__}"
    with tarfile.open(built.sdist) as sdist:
        names = sdist.getnames()
    assert f"{top}/pyproject.toml" in names
    assert f"{top}/announcer/speaker/relay.py" in names


@pytest.fixture(scope="module")
def fresh_venv(built: Built) -> Iterator[Path]:
    # Where the ExaBGP user can reach it, as under /opt: check-config checks that it can
    # (pytest's own temporary directories are private to root).
    with tempfile.TemporaryDirectory(prefix="announcer-venv-", dir="/tmp") as name:
        Path(name).chmod(0o755)
        venv = Path(name) / "venv"
        run([SYSTEM_PYTHON, "-m", "venv", venv])
        run([venv / "bin/python", "-m", "pip", "install", "-q", built.wheel])
        yield venv


def test_wheel_in_a_fresh_virtualenv_gives_a_working_announcer(
    fresh_venv: Path, tmp_path: Path
) -> None:
    announcer = fresh_venv / "bin/announcer"
    version = run([announcer, "--version"], cwd=tmp_path).stdout
    assert version == f"announcer, version {__version__}\n"
    config = tmp_path / "config.yaml"
    document = yaml.safe_load((ROOT / "config/announcer.example.yaml").read_text())
    document["apiserver"]["ca_file"] = str(tmp_path / "not-yet/ca.crt")  # only a warning
    config.write_text(yaml.safe_dump(document))
    checked = run([announcer, "check-config", "--print", "--config", config], cwd=tmp_path)
    assert checked.stderr.splitlines()[-1] == f"{config}: ok"
    # The daemon would run the ExaBGP the wheel pinned, installed next to it.
    effective = yaml.safe_load(checked.stdout)
    assert effective["exabgp"]["binary"] == str(fresh_venv / "bin/exabgp")
    assert "ExaBGP : 5.0.15" in run([fresh_venv / "bin/exabgp", "version"]).stdout


def test_wheel_installs_the_relay_where_the_system_python_can_run_it(fresh_venv: Path) -> None:
    code = "import announcer.speaker.relay as relay; print(relay.__file__)"
    relay = Path(run([fresh_venv / "bin/python", "-I", "-c", code]).stdout.strip())
    assert relay.is_relative_to(fresh_venv) and relay.name == "relay.py"
    # ExaBGP's user runs a copy of it with Debian's Python, away from the virtualenv.
    run([SYSTEM_PYTHON, "-I", "-c", f"import ast; ast.parse(open({str(relay)!r}).read())"])


def test_bash_completion_of_the_installed_command(fresh_venv: Path) -> None:
    # What docs/install.md tells operators to install, exercised the way bash calls it.
    path = {"PATH": f"{fresh_venv / 'bin'}:{os.environ['PATH']}"}
    script = run(["announcer"], env={**path, "_ANNOUNCER_COMPLETE": "bash_source"}).stdout
    assert "complete -o nosort -F _announcer_completion announcer" in script
    complete = (
        f"{script}\nCOMP_WORDS=(announcer check-c); COMP_CWORD=1\n"
        "_announcer_completion announcer; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    assert run(["bash", "-c", complete], env=path).stdout.split() == ["check-config"]


# ---- scripts/install and scripts/uninstall ---------------------------------------------------


def seed_accounts(root: Path) -> dict[str, str]:
    """A root with only root's accounts, as `useradd --prefix` needs; the seeded content."""
    (root / "etc").mkdir(parents=True)
    seeded = {
        "passwd": "root:x:0:0:root:/root:/bin/bash\n",
        "group": "root:x:0:\n",
        "shadow": "root:*:19000:0:99999:7:::\n",
        "gshadow": "root:*::\n",
    }
    for name, content in seeded.items():
        (root / "etc" / name).write_text(content)
    return seeded


def world_readable(path: Path, top: Path) -> bool:
    """`path` and every directory from `top` down to it can be read by any user."""
    if not path.stat().st_mode & 0o004:
        return False
    folders = [top / folder for folder in path.relative_to(top).parents]
    return all(folder.stat().st_mode & 0o005 == 0o005 for folder in folders)


@pytest.fixture
def host_root() -> Iterator[Path]:
    """A stand-in for `/` that every user can search, as `/` is: check-config verifies that
    the ExaBGP user can reach the installed ExaBGP (pytest's tmp_path is private)."""
    if os.geteuid() != 0:
        pytest.skip("useradd and userdel need root")
    with tempfile.TemporaryDirectory(prefix="announcer-root-", dir="/tmp") as name:
        Path(name).chmod(0o755)
        yield Path(name) / "root"


def test_install_twice_then_uninstall_leaves_nothing(host_root: Path, built: Built) -> None:
    root, source = host_root, built.source
    seeded = seed_accounts(root)
    installed = run(["bash", source / "scripts/install", "--root", root])
    assert "systemctl enable --now announcer" in installed.stdout
    _assert_installed(root, source)

    # Again, from the wheel, after the operator edited the configuration: it is kept.
    config = root / "etc/announcer/config.yaml"
    edited = config.read_text() + "# edited\n"
    config.write_text(edited)
    again = run(["bash", source / "scripts/install", "--root", root, "--wheel", built.wheel])
    assert f"keeping the existing {config}" in again.stdout
    assert config.read_text() == edited
    _assert_installed(root, source)
    assert (root / "etc/passwd").read_text().count("\nexabgp:") == 1

    run(["bash", source / "scripts/uninstall", "--root", root])
    assert config.read_text() == edited  # kept without --purge
    for name, content in seeded.items():
        assert (root / "etc" / name).read_text() == content, name
    run(["bash", source / "scripts/uninstall", "--root", root, "--purge"])
    run(["bash", source / "scripts/uninstall", "--root", root, "--purge"])
    accounts = {root / "etc" / name for base in ACCOUNT_FILES for name in (base, f"{base}-")}
    left = {path for path in root.rglob("*") if not path.is_dir()}
    assert left <= accounts


def test_uninstall_keeps_the_drop_ins_and_purge_removes_them(host_root: Path) -> None:
    unit = host_root / "etc/systemd/system/announcer.service"
    dropin = host_root / "etc/systemd/system/announcer.service.d/override.conf"
    dropin.parent.mkdir(parents=True)
    unit.write_text("[Service]\n")
    dropin.write_text("[Service]\nEnvironment=X=1\n")
    script = ROOT / "scripts/uninstall"

    kept = run(["bash", script, "--root", host_root])
    assert not unit.exists()
    assert dropin.exists()
    assert "keeping" in kept.stdout and "announcer.service.d" in kept.stdout

    run(["bash", script, "--root", host_root, "--purge"])
    assert not dropin.parent.exists()
    assert (host_root / "etc/systemd/system").is_dir()  # only the unit's own files go


def test_uninstall_resets_the_failed_state_where_systemd_runs() -> None:
    # The real host's systemd cannot be used in a test; the command must be on the path the
    # script takes when systemd runs, after the unit is gone.
    script = (ROOT / "scripts/uninstall").read_text()
    systemd_block = script[script.index("if $systemd; then\n    systemctl daemon-reload") :]
    assert "systemctl reset-failed announcer.service" in systemd_block.split("\nfi\n")[0]


def _assert_installed(root: Path, source: Path) -> None:
    announcer = root / "opt/announcer/bin/announcer"
    assert run([announcer, "--version"]).stdout == f"announcer, version {__version__}\n"
    link = root / "usr/local/bin/announcer"
    assert link.readlink() == Path("/opt/announcer/bin/announcer")
    unit = root / "etc/systemd/system/announcer.service"
    assert unit.read_text() == (source / "config/systemd/announcer.service").read_text()
    schema = root / "etc/announcer/announcer.schema.json"
    assert schema.read_text() == (source / "config/announcer.schema.json").read_text()
    assert (root / "var/lib/announcer").is_dir()
    passwd = (root / "etc/passwd").read_text().splitlines()
    (exabgp,) = [line for line in passwd if line.startswith("exabgp:")]
    assert exabgp.endswith(":/nonexistent:/usr/sbin/nologin")
    assert any(line.startswith("exabgp:") for line in (root / "etc/group").read_text().split())
    (relay,) = (root / "opt/announcer/lib").glob(
        "python3.*/site-packages/announcer/speaker/relay.py"
    )
    assert world_readable(relay, root / "opt/announcer")
    config = root / "etc/announcer/config.yaml"
    checked = run([announcer, "check-config", "--config", config])
    assert checked.stderr.splitlines()[-1] == f"{config}: ok"


# ---- docs/ -----------------------------------------------------------------------------------


FRR_BLOCK = re.compile(r"^```frr\n(.*?)^```$", flags=re.MULTILINE | re.DOTALL)
FRR_DOCS = [doc for doc in sorted(ROOT.glob("docs/*.md")) if FRR_BLOCK.search(doc.read_text())]


@pytest.mark.parametrize("doc", FRR_DOCS, ids=lambda path: path.name)
def test_frr_configurations_in_the_docs_parse(doc: Path, tmp_path: Path) -> None:
    blocks = FRR_BLOCK.findall(doc.read_text())
    vtysh = shutil.which("vtysh")
    if vtysh is None:
        pytest.skip("vtysh (Debian's frr) is not installed")
    for number, block in enumerate(blocks):
        config = tmp_path / f"{number}.conf"
        config.write_text(block)
        run([vtysh, "--dryrun", "--inputfile", config])
