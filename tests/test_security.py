"""Security properties a reviewer checks first, each on the real thing where it can be.

- ExaBGP and its relay run as the unprivileged `exabgp.user`, with no capabilities.
- No secret (the MD5 password from `password_file`, the bearer token from `token_file`) shows
  in any process's argv or environment, in the daemon's log, or in a file others can read;
  `announcer render-exabgp` redacts.
- The status socket refuses a non-root user unless `status.group` (with a group mode) lets
  that user's group in.
- Metrics are off unless `metrics.listen` is set; there is no default address, the documented
  ones are loopback, and a non-loopback address gets a host warning (the endpoint has no
  authentication).
- A secret file others can read gets a `check-config` warning.
- The systemd unit's `systemd-analyze security` exposure is at most 2.5 and `verify` is clean.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from test_daemon import EXABGP_USER, World, running, until, world_of

from announcer.cli import main
from announcer.config import HostView, host_warnings, load_config, parse_config
from announcer.config.model import MetricsConfig
from announcer.lab.apiserver.credentials import AUTHENTICATED, server_tls_context
from announcer.lab.apiserver.listen import ListenAddress
from announcer.lab.apiserver.routes import Identity
from announcer.lab.apiserver.server import FakeApiserver
from announcer.lab.pki import LabPki
from announcer.speaker import render_exabgp
from announcer.speaker.render import REDACTED

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "config" / "systemd" / "announcer.service"
PASSWORD = "Md5-Zk7q-pw"  # noqa: S105 - a test secret, searched for
TOKEN = "tok-Yx3v-0123456789abcdef"  # noqa: S105
MAX_EXPOSURE = 2.5

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def secrets(world: World) -> dict[str, dict[str, object]]:
    """Config sections with a password file per neighbor and a token file, both 0600."""
    password, token = world.base / "bgp.pw", world.base / "apiserver.token"
    password.write_text(PASSWORD + "\n")
    token.write_text(TOKEN + "\n")
    for file in (password, token):
        file.chmod(0o600)
    bgp = world.document()["bgp"]
    assert isinstance(bgp, dict)
    neighbors = [{**n, "password_file": str(password)} for n in bgp["neighbors"]]
    return {"bgp": {"neighbors": neighbors}, "apiserver": {"token_file": str(token)}}


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(word) for word in text.split()]


def nobody() -> pwd.struct_passwd:
    return pwd.getpwnam(EXABGP_USER)


# --- ExaBGP unprivileged ----------------------------------------------------------------------


@needs_root
def test_exabgp_and_its_relay_run_unprivileged(base: Path, pki: LabPki) -> None:
    """The daemon is root; what it starts to speak BGP is `exabgp.user`, without privileges
    (see also tests/speaker/test_speaker_launch.py for the launcher alone)."""
    account = nobody()

    async def test() -> None:
        async with world_of(base, pki) as world, running(world) as daemon:
            await until(lambda: bool(daemon.speaker and daemon.speaker.pid), "exabgp")
            assert daemon.speaker is not None and daemon.speaker.pid is not None
            exabgp = daemon.speaker.pid
            await until(lambda: bool(children(exabgp)), "the relay")
            for pid in (exabgp, *children(exabgp)):
                status = proc_status(pid)
                assert status["Uid"].split() == [str(account.pw_uid)] * 4, pid
                assert status["Gid"].split() == [str(account.pw_gid)] * 4, pid
                assert status["Groups"].strip() == "", pid
                assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, pid
                # non-dumpable: no other process of exabgp.user can open their API pipes
                assert fd_directory_owner(pid) == 0, pid
                assert open_fds_as(account.pw_uid, pid) == [], pid

    asyncio.run(test())


OPEN_FDS = """
import os, sys
opened = []
for fd in range(64):
    try:
        os.close(os.open(f"/proc/{sys.argv[1]}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK))
        opened.append(str(fd))
    except OSError:
        pass
print(" ".join(opened))
"""


def fd_directory_owner(pid: int) -> int:
    """Root for a non-dumpable process, else its own uid."""
    return Path(f"/proc/{pid}/fd").stat().st_uid


def open_fds_as(uid: int, pid: int) -> list[str]:
    """Which of process `pid`'s descriptors a process of `uid` can open through /proc."""
    done = subprocess.run(
        [sys.executable, "-I", "-c", OPEN_FDS, str(pid)],
        user=uid,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return done.stdout.split()


# --- secrets ----------------------------------------------------------------------------------


def process_texts(pid: int) -> dict[str, bytes]:
    return {
        f"{pid} {name}": Path(f"/proc/{pid}/{name}").read_bytes() for name in ("cmdline", "environ")
    }


@needs_root
def test_no_secret_in_argv_environment_logs_or_files_others_can_read(
    base: Path, pki: LabPki
) -> None:
    account = nobody()

    async def test() -> None:
        async with token_world(base, pki) as world:
            world.write(loopback={"manage": False}, **secrets(world))
            argv = [sys.executable, "-m", "announcer", "run", "--config", str(world.config_file)]
            daemon = await asyncio.create_subprocess_exec(
                *argv, "--log-format", "json", "--log-level", "debug",
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            texts: dict[str, bytes] = {}
            try:
                await until(lambda: world.socket.exists(), "status socket")
                await until(lambda: announced(world), "announced")
                exabgp = (await world.status()).exabgp.pid
                assert exabgp is not None
                texts |= process_texts(daemon.pid) | process_texts(exabgp)
                for relay in children(exabgp):
                    texts |= process_texts(relay)
                daemon.send_signal(signal.SIGTERM)
                _, log = await asyncio.wait_for(daemon.communicate(), 10.0)
            finally:
                if daemon.returncode is None:
                    daemon.kill()
                    await daemon.wait()
            assert daemon.returncode == 0
            assert len(texts) >= 6  # the daemon, exabgp and at least one relay
            texts["the daemon's log"] = log
            assert b'"event": "ready"' in log or b'"event":"ready"' in log  # a real run
            for where, text in texts.items():
                for secret in (PASSWORD, TOKEN):
                    assert secret.encode() not in text, f"{secret} in {where}"

    asyncio.run(test())
    state = base / "state"
    conf = state / "exabgp" / "exabgp.conf"
    assert PASSWORD in conf.read_text()  # ExaBGP needs it: the file must be closed to others
    info = conf.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o640, 0, account.pw_gid)
    directory = conf.parent.stat()
    assert directory.st_mode & 0o007 == 0 and directory.st_uid == 0
    for file in state.rglob("*"):
        if not file.is_file():
            continue
        data = file.read_bytes()
        assert TOKEN.encode() not in data, file
        if PASSWORD.encode() in data:
            mode = file.stat().st_mode
            assert mode & 0o007 == 0 and file.stat().st_gid in (0, account.pw_gid), file


@asynccontextmanager
async def token_world(base: Path, pki: LabPki) -> AsyncIterator[World]:
    """Like test_daemon's world, with an apiserver that only lets TOKEN in (so an announce
    proves the token was read and sent)."""
    node = pki.nodes["cp1"]
    tls = server_tls_context(cert=node.cert, key=node.key, client_ca=pki.ca_cert)
    listen = [ListenAddress.parse("127.0.0.1:0")]
    tokens = {TOKEN: Identity("announcer", (AUTHENTICATED,))}
    async with FakeApiserver(node="cp1", tls=tls, listen=listen, tokens=tokens) as apiserver:
        world = World(base, pki, apiserver)
        world.write()
        yield world


async def announced(world: World) -> bool:
    return (await world.status()).announced


def test_render_exabgp_redacts_the_password(base: Path, pki: LabPki) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world:
            world.write(**secrets(world))

    asyncio.run(test())
    config_file = base / "config.yaml"
    result = CliRunner().invoke(main, ["render-exabgp", str(config_file)])
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output and TOKEN not in result.output
    assert result.output.count(f'md5-password "{REDACTED}";') == 2
    # the control case: unredacted, the daemon's own rendering does carry it
    assert PASSWORD in render_exabgp(load_config(config_file), redact=False)


# --- the status socket ------------------------------------------------------------------------

CLIENT = """
import json, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    sock.connect(sys.argv[1])
except PermissionError:
    print("PermissionError")
    sys.exit(0)
sock.sendall(b'{"op": "status"}\\n')
sock.shutdown(socket.SHUT_WR)
answer = b""
while chunk := sock.recv(65536):
    answer += chunk
print("ok" if json.loads(answer)["ok"] else "refused")
"""


def as_nobody(path: Path) -> str:
    account = nobody()
    result = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", CLIENT, str(path)],
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
        cwd="/",
    )
    return result.stdout.strip()


def nobody_group() -> str:
    return grp.getgrgid(nobody().pw_gid).gr_name


@needs_root
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, "PermissionError"),
        ({"mode": "0660"}, "PermissionError"),  # the group bits alone: root's group only
        ({"mode": "0640", "group": "GROUP"}, "PermissionError"),  # connecting needs write
        ({"mode": "0660", "group": "GROUP"}, "ok"),
    ],
    ids=["default", "group-mode-root-group", "group-read-only", "group"],
)
def test_the_status_socket_refuses_others_unless_a_group_lets_them_in(
    base: Path, pki: LabPki, status: dict[str, str], expected: str
) -> None:
    section: dict[str, object] = {
        key: nobody_group() if value == "GROUP" else value for key, value in status.items()
    }

    async def test() -> None:
        async with world_of(base, pki) as world:
            world.write(status=section)
            async with running(world):
                assert await asyncio.to_thread(as_nobody, world.socket) == expected
                assert (await world.ask("status"))["ok"] is True  # root always can

    asyncio.run(test())


# --- metrics ----------------------------------------------------------------------------------

QUIET_HOST = HostView(
    sysctl=lambda _: None,
    addresses=lambda: [],
    tcp_listeners=lambda: [],
    socket_answers=lambda _: False,
    file_exists=lambda _: True,
    file_mode=lambda _: None,
    user_exists=lambda _: True,
    group_exists=lambda _: True,
)
MINIMAL: dict[str, object] = {
    "vips": ["198.51.100.10/32"],
    "bgp": {
        "router_id": "192.0.2.2",
        "local_as": 65100,
        "neighbors": [{"address": "192.0.2.1", "peer_as": 65000}],
    },
}


def test_metrics_are_off_by_default_and_documented_on_loopback() -> None:
    assert parse_config(MINIMAL).metrics == MetricsConfig(listen=None)
    text = (ROOT / "config" / "announcer.example.yaml").read_text()
    assert yaml.safe_load(text)["metrics"] == {"listen": None}
    section = text[text.index("\nmetrics:") :]
    documented = re.findall(r'"([^"]+:[0-9]+)"', section)
    assert documented, "the example names example addresses"
    for address in documented:
        listen = parse_config({**MINIMAL, "metrics": {"listen": address}}).metrics.listen
        assert listen is not None and listen.host.is_loopback, address


@pytest.mark.parametrize(
    ("listen", "warned"),
    [
        ("127.0.0.1:9470", False),
        ("[::1]:9470", False),
        ("127.0.0.53:9470", False),
        ("0.0.0.0:9470", True),
        ("[::]:9470", True),
        ("192.0.2.2:9470", True),
        ("[2001:db8::2]:9470", True),
    ],
)
def test_metrics_off_loopback_get_a_host_warning(listen: str, warned: bool) -> None:
    config = parse_config({**MINIMAL, "metrics": {"listen": listen}})
    warnings = [w for w in host_warnings(config, QUIET_HOST) if "loopback" in w]
    assert bool(warnings) is warned, warnings
    if warned:
        assert warnings[0].startswith(f"metrics.listen: {listen} is not a loopback address")


# --- secret files others can read -------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "warned"),
    [(0o600, False), (0o640, False), (0o400, False), (0o644, True), (0o604, True), (0o602, True)],
    ids=oct,
)
def test_check_config_warns_about_a_secret_file_others_can_read(
    tmp_path: Path, mode: int, warned: bool
) -> None:
    password, token = tmp_path / "bgp.pw", tmp_path / "token"
    password.write_text(PASSWORD)
    token.write_text(TOKEN)
    password.chmod(mode)
    token.chmod(0o600)
    document = {
        **MINIMAL,
        "bgp": {
            "router_id": "192.0.2.2",
            "local_as": 65100,
            "neighbors": [
                {"address": "192.0.2.1", "peer_as": 65000, "password_file": str(password)}
            ],
        },
        "apiserver": {"token_file": str(token)},
        "exabgp": {"binary": "/bin/true"},
        "state_dir": "/var/lib/announcer",  # check-config: reachable by exabgp, not created
        "status": {"socket": str(tmp_path / "status.sock")},
    }
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(document))
    result = CliRunner().invoke(main, ["check-config", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "password_file" in line]
    if warned:
        assert lines == [
            f"warning: bgp.neighbors[0].password_file: {password} is accessible to every user "
            f"on this host (mode {mode:04o}): make it 0600 (or 0640 for a trusted group)"
        ]
    else:
        assert lines == []
    assert "token_file" not in result.stderr
    assert PASSWORD not in result.output and PASSWORD not in result.stderr


def test_a_world_readable_token_file_is_warned_about_too(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o644)
    config = parse_config({**MINIMAL, "apiserver": {"token_file": str(token)}})
    host = HostView(**{**QUIET_HOST.__dict__, "file_mode": lambda p: p.stat().st_mode})
    assert [w for w in host_warnings(config, host) if "token_file" in w] == [
        f"apiserver.token_file: {token} is accessible to every user on this host (mode 0644): "
        "make it 0600 (or 0640 for a trusted group)"
    ]


# --- the systemd unit -------------------------------------------------------------------------


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit with its commands pointed at /bin/true (the analysis wants them to exist)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: the systemd package)")
    text = re.sub(
        r"(?m)^(Exec\w+=)/opt/announcer/bin/announcer ", r"\1/bin/true ", UNIT.read_text()
    )
    assert text.count("=/bin/true") == 4
    path = tmp_path / UNIT.name
    path.write_text(text)
    return path


def test_the_unit_exposure_is_at_most_2_5(unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match[1]) <= MAX_EXPOSURE, result.stdout


def test_the_unit_verifies_clean(unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
