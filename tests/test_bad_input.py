"""Bad input never takes the daemon down nor reaches ExaBGP as a second command.

- Every configuration value that ends up in ExaBGP's text API or exabgp.conf refuses line
  breaks and control characters at parse time, and the renderers refuse them again.
- The relay stream fed garbage (partial, non-JSON, huge and unknown lines, an `error` for every
  command, a crash mid-line): the daemon stays up, resynchronises, and once the garbage stops
  ExaBGP holds exactly the desired routes (guarantee: announced iff healthy, never stuck).
- The real daemon's status socket fed garbage and oversized requests keeps serving and is
  never drained by a malformed request.

The daemon runs in-process with the harness of tests/test_daemon.py.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
import socket
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from pathlib import Path

import pytest
import yaml
from test_daemon import World, running, until, world_of

from announcer.config import ConfigError, load_config, parse_config
from announcer.config.model import Community, LargeCommunity
from announcer.lab.pki import LabPki
from announcer.routes import Route, RouteError, render_announce, render_withdraw
from announcer.speaker import Channel, RenderError, render_environment, render_exabgp
from announcer.status import MAX_CLIENTS
from announcer.status_protocol import MAX_REQUEST

INJECTION = "neighbor 192.0.2.1 announce route 10.0.0.0/8 next-hop self"
BAD_CHARS = ["\n", "\r", "\r\n", "\x00", "\t", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u2028"]

# --- configuration: every value that reaches ExaBGP -------------------------------------------


def minimal() -> dict[str, object]:
    return {
        "vips": ["198.51.100.10/32"],
        "bgp": {
            "router_id": "192.0.2.2",
            "local_as": 65100,
            "neighbors": [{"address": "192.0.2.1", "peer_as": 65000}],
        },
    }


def neighbor(key: str) -> Callable[[dict[str, object], str], None]:
    def put(document: dict[str, object], value: str) -> None:
        bgp = document["bgp"]
        assert isinstance(bgp, dict)
        bgp["neighbors"][0][key] = value

    return put


def section(name: str, key: str) -> Callable[[dict[str, object], str], None]:
    def put(document: dict[str, object], value: str) -> None:
        part = document.setdefault(name, {})
        assert isinstance(part, dict)
        part[key] = value

    return put


def as_list(name: str, key: str) -> Callable[[dict[str, object], str], None]:
    def put(document: dict[str, object], value: str) -> None:
        document.setdefault(name, {})
        part = document[name]
        assert isinstance(part, dict)
        part[key] = [value]

    return put


def vip(document: dict[str, object], value: str) -> None:
    document["vips"] = [value]


def v6_over_v4(document: dict[str, object], value: str) -> None:
    document["vips"] = ["2001:db8:100::10/128"]
    neighbor("families")(document, ["ipv6"])  # type: ignore[arg-type]
    neighbor("next_hop_ipv6")(document, value)


def setting(document: dict[str, object], value: str) -> None:
    section("exabgp", "settings")(document, {"log.destination": value})  # type: ignore[arg-type]


# (error path, how to put a value there, a valid value)
FIELDS: list[tuple[str, Callable[[dict[str, object], str], None], str]] = [
    ("vips[0]", vip, "198.51.100.10/32"),
    ("announce.communities[0]", as_list("announce", "communities"), "65000:100"),
    ("announce.large_communities[0]", as_list("announce", "large_communities"), "65000:1:2"),
    ("bgp.router_id", section("bgp", "router_id"), "192.0.2.2"),
    ("bgp.neighbors[0].address", neighbor("address"), "192.0.2.1"),
    ("bgp.neighbors[0].local_address", neighbor("local_address"), "192.0.2.2"),
    ("bgp.neighbors[0].next_hop_ipv6", v6_over_v4, "2001:db8:1::2"),
    ("bgp.neighbors[0].password_file", neighbor("password_file"), "/etc/announcer/bgp.pw"),
    ("exabgp.settings['log.destination']", setting, "stdout"),
    ("exabgp.user", section("exabgp", "user"), "exabgp"),
    ("exabgp.binary", section("exabgp", "binary"), "/usr/sbin/exabgp"),
    ("status.group", section("status", "group"), "adm"),
    ("status.socket", section("status", "socket"), "/run/announcer/status.sock"),
    ("loopback.interface", section("loopback", "interface"), "lo"),
    ("apiserver.url", section("apiserver", "url"), "https://127.0.0.1:6443"),
    ("apiserver.token_file", section("apiserver", "token_file"), "/etc/announcer/token"),
]
FIELD_IDS = [path for path, _, _ in FIELDS]


@pytest.mark.parametrize(("path", "put", "good"), FIELDS, ids=FIELD_IDS)
def test_every_field_reaching_exabgp_parses_when_clean(
    path: str, put: Callable[[dict[str, object], str], None], good: str
) -> None:
    document = minimal()
    put(document, good)
    parse_config(document)  # the control case: only the bad character makes the difference


@pytest.mark.parametrize("char", BAD_CHARS, ids=[repr(c) for c in BAD_CHARS])
@pytest.mark.parametrize(("path", "put", "good"), FIELDS, ids=FIELD_IDS)
def test_control_characters_are_refused_at_config_time(
    path: str, put: Callable[[dict[str, object], str], None], good: str, char: str
) -> None:
    for value in (good + char + INJECTION, good + char, char + good):
        document = copy.deepcopy(minimal())
        put(document, value)
        with pytest.raises(ConfigError) as caught:
            parse_config(document)
        paths = [error.path for error in caught.value.errors]
        assert path in paths, (value, [str(e) for e in caught.value.errors])
        for error in caught.value.errors:  # the message itself stays one line
            assert "\n" not in str(error) and "\r" not in str(error)


@pytest.mark.parametrize("char", ["\n", "\r", "\x00", "\x1b"])
def test_a_setting_name_with_a_control_character_is_refused(char: str) -> None:
    document = minimal()
    setting_name = f"log.destination{char}{INJECTION}"
    document["exabgp"] = {"settings": {setting_name: "stdout"}}
    with pytest.raises(ConfigError, match="is not an ExaBGP setting name"):
        parse_config(document)


@pytest.fixture
def password_config(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    password = tmp_path / "bgp.pw"
    password.write_text("s3cret-md5\n")
    password.chmod(0o600)
    document = minimal()
    neighbor("password_file")(document, str(password))
    section("exabgp", "binary")(document, "/bin/true")
    section("apiserver", "ca_file")(document, "/etc/hostname")
    document["state_dir"] = str(tmp_path / "state")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(document))
    yield config_file, password


@pytest.mark.parametrize(
    "content",
    [f"Zq9\n{INJECTION}\n", "Zq9\r", 'Zq9"; }\nneighbor 10.0.0.1 {', "Zq9\x00x", "Zq 9", "Zq9\\"],
    ids=["newline", "cr", "quote", "nul", "space", "backslash"],
)
def test_a_password_that_could_break_out_of_exabgp_conf_is_refused(
    password_config: tuple[Path, Path], content: str
) -> None:
    config_file, password = password_config
    config = load_config(config_file)  # a clean password: loads
    password.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_config(config_file)
    assert [e.path for e in caught.value.errors] == ["bgp.neighbors[0].password_file"]
    assert "Zq" not in str(caught.value)  # never shows the secret
    # Defence in depth: changed after the load, the renderer reads it again and refuses.
    with pytest.raises(RenderError, match=r"bgp.neighbors\[0\].password_file"):
        render_exabgp(config, redact=False)


# --- the renderers refuse what parsing would have refused -------------------------------------


class EvilAddress(IPv4Address):
    def __str__(self) -> str:
        return f"192.0.2.1\n{INJECTION}"


def route(**fields: object) -> Route:
    good: dict[str, object] = {
        "neighbor": ip_address("192.0.2.1"),
        "prefix": ip_network("198.51.100.10/32"),
    }
    return Route(**{**good, **fields})  # type: ignore[arg-type]


BAD_ROUTES = {
    "neighbor text": {"neighbor": f"192.0.2.1\n{INJECTION}"},
    "neighbor str()": {"neighbor": EvilAddress("192.0.2.1")},
    "prefix text": {"prefix": f"198.51.100.10/32\n{INJECTION}"},
    "prefix not a host": {"prefix": IPv4Network("10.0.0.0/8")},
    "next hop text": {"next_hop": "self\nneighbor"},
    "next hop str()": {"next_hop": EvilAddress("192.0.2.9")},
    "zone index": {"neighbor": ip_address("fe80::1%eth0")},
    "community text": {"communities": (f"65000:1\n{INJECTION}",)},
    "community value": {"communities": (Community(2**32),)},
    "large community": {"large_communities": (LargeCommunity(1, 2, -1),)},
    "med": {"med": "1\nx"},
    "as path": {"as_path": ("65100\nx",)},
}


@pytest.mark.parametrize("fields", BAD_ROUTES.values(), ids=BAD_ROUTES.keys())
def test_route_renderers_refuse_values_parsing_would_refuse(fields: dict[str, object]) -> None:
    bad = route(**fields)
    with pytest.raises(RouteError):
        render_announce(bad)
    if set(fields) <= {"neighbor", "prefix", "next_hop"}:
        with pytest.raises(RouteError):
            render_withdraw(bad)


def test_a_clean_route_renders_as_one_line() -> None:
    assert render_announce(route()) == (
        "neighbor 192.0.2.1 announce route 198.51.100.10/32 next-hop self"
    )


@pytest.mark.parametrize("char", BAD_CHARS, ids=[repr(c) for c in BAD_CHARS])
def test_the_channel_sends_no_command_with_a_control_character(char: str) -> None:
    async def test() -> None:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            reader, writer = await asyncio.open_connection(sock=ours)
            channel = Channel(reader, writer, on_event=lambda _: None)
            with pytest.raises(ValueError, match="one line"):
                await channel.send(f"announce{char}{INJECTION}", timeout=1.0)
            theirs.setblocking(False)
            with pytest.raises(BlockingIOError):
                theirs.recv(100)  # nothing at all was written
            writer.close()

    asyncio.run(test())


@pytest.mark.parametrize("char", ["\n", "\r", "\x00", "\x1b", "\u2028"])
def test_exabgp_settings_with_a_control_character_are_not_rendered(
    password_config: tuple[Path, Path], char: str
) -> None:
    config = load_config(password_config[0])
    exabgp = dataclasses.replace(config.exabgp, settings=(("log.level", f"INFO{char}x"),))
    bad = dataclasses.replace(config, exabgp=exabgp)
    with pytest.raises(RenderError, match="control character"):
        render_environment(bad)
    with pytest.raises(RenderError, match="control character"):
        render_exabgp(bad, redact=True)


# --- the relay stream fed garbage, through the whole daemon -----------------------------------

GARBAGE_EXABGP = r'''#!/usr/bin/python3 -I
"""A fake `exabgp server CONF` that runs the relay and, while control/garbage holds a count
above 0, answers each command with a burst of garbage and `error` (and decrements it); with
control/crash present it ends the stream in the middle of a line and exits, once. Otherwise
it answers `done` and keeps the routes it accepted in control/rib.json."""
import json, os, re, signal, subprocess, sys, time
from pathlib import Path

CONTROL = Path(__file__).resolve().parent / "control"
STATE = b'{"exabgp": "5.0.0", "type": "state", "neighbor": '
GARBAGE = [
    b"this is not json\n",
    b"x" * 200000 + b"\n",
    b"{" * 70000 + b"\n",
    b'{"exabgp": "5.0.0", "type": "teleport", "teleport": {"to": "mars"}}\n',
    STATE + b'"not an object"}\n',
    STATE + b'{"address": {"peer": "203.0.113.9"}, "state": "up"}}\n',
    STATE + b'{"address": {"peer": "192.0.2.1"}, "state": 42}}\n',
    b"[1, 2, 3]\n",
    b'{"type": \n',
    b"\xff\xfe\x00garbage\x1b[2J\n",
    b"\n\r\n   \n",
    b"donee\n",
    b"Error\n",
    b"shutdownx\n",
]


def write(out, data):
    out.write(data)
    out.flush()


def replace(name, text):
    tmp = CONTROL / f"{name}.{os.getpid()}"
    tmp.write_text(text)
    os.replace(tmp, CONTROL / name)


def garbage_left():
    try:
        return int((CONTROL / "garbage").read_text())
    except (OSError, ValueError):
        return 0


def garble(out, relay):
    if (CONTROL / "crash").exists():
        (CONTROL / "crash").unlink()
        write(out, b'{"exabgp": "5.0.0", "type": "sta')
        out.close()  # the stream ends mid-line; the relay passes it on and exits
        relay.wait()
        os._exit(1)
    for line in GARBAGE:
        write(out, line)
    write(out, STATE + b'{"address": {"peer": "203.0.11')  # split over two writes
    time.sleep(0.02)
    write(out, b'3.9"}, "state": "down"}}\n')
    write(out, b"error\n")


def main():
    text = Path(sys.argv[2]).read_text()
    run = re.search(r"^\s*run (.*);$", text, re.MULTILINE)
    relay = subprocess.Popen(
        run[1].split(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=os.setpgrp
    )
    out = relay.stdin

    def shutdown(signum, frame):
        out.write(b'{ "type": "notification", "notification": "shutdown" }\n')
        out.close()
        relay.wait()
        os._exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    rib = {}
    for line in relay.stdout:
        command = line.decode().strip()
        left = garbage_left()
        if left > 0:
            replace("garbage", str(left - 1))
            garble(out, relay)
            continue
        words = command.split()
        if words[2:4] == ["announce", "route"]:
            rib[(words[1], words[4])] = command
        elif words[2:4] == ["withdraw", "route"]:
            rib.pop((words[1], words[4]), None)
        replace("rib.json", json.dumps(sorted(rib.values())))
        write(out, b"done\n")
    sys.exit(1)


main()
'''


@pytest.fixture
def base(base: Path) -> Path:
    """The shared fixture's directory, with the garbage ExaBGP and its control directory."""
    (base / "garbage-exabgp").write_text(GARBAGE_EXABGP)
    (base / "garbage-exabgp").chmod(0o755)
    (base / "control").mkdir()
    (base / "control").chmod(0o777)  # ExaBGP's unprivileged user writes there
    return base


def rib(base: Path) -> list[str] | None:
    try:
        loaded = json.loads((base / "control" / "rib.json").read_text())
    except (OSError, ValueError):
        return None
    assert isinstance(loaded, list)
    return [str(item) for item in loaded]


def messages(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in record.getMessage() for record in caplog.records)


def test_relay_garbage_resyncs_and_ends_with_the_desired_routes(
    base: Path, pki: LabPki, caplog: pytest.LogCaptureFixture
) -> None:
    """Guarantee: routes follow health. Garbage from ExaBGP must neither crash the daemon nor
    leave ExaBGP with routes other than the desired ones once it stops."""
    caplog.set_level(logging.INFO)
    control = base / "control"
    (control / "garbage").write_text("3")
    (control / "crash").touch()

    async def test() -> None:
        async with world_of(base, pki) as world:
            world.write(exabgp={"binary": str(base / "garbage-exabgp")})
            async with running(world) as daemon:
                await until(lambda: not (control / "crash").exists(), "crash mid-line")
                await until(lambda: (control / "garbage").read_text() == "0", "garbage sent")
                await world.status()  # the status socket answers all along
                desired = frozenset(daemon.core.desired().values())
                expected = sorted(render_announce(r) for r in desired)
                await until_long(lambda: rib(base) == expected, "exabgp holds the desired routes")
                await until(
                    lambda: frozenset(daemon.core.installed.values()) == desired, "acknowledged"
                )
                assert len(desired) == 2
                assert (await world.status()).announced

    asyncio.run(test())
    assert messages(caplog, "relay connected") >= 2  # the crash mid-line: a new relay, a replay
    assert messages(caplog, "dropped a partial line from exabgp at disconnect") >= 1
    assert messages(caplog, "exabgp refused a command, resynchronising") >= 2
    assert messages(caplog, "longer than 65536 bytes") >= 2
    assert messages(caplog, "ignored a line from exabgp") >= 2
    assert messages(caplog, "ignored a message from exabgp") >= 2
    assert messages(caplog, "exabgp reported unknown neighbor 203.0.113.9") >= 1
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def until_long(predicate: Callable[[], bool], what: str) -> None:
    """Retries back off (1 s, 2 s, 5 s): allow more than the harness's deadline."""
    deadline = asyncio.get_running_loop().time() + 30.0
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within 30 s")
        await asyncio.sleep(0.02)


# --- the real daemon's status socket fed garbage ----------------------------------------------


def exchange(path: Path, data: bytes, *, close_early: bool = False) -> bytes:
    """Send `data`, half-close, read the answer to EOF (a reset counts as no answer)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10.0)
        sock.connect(str(path))
        try:
            sock.sendall(data)
            if close_early:
                return b""
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return b""
        return b"".join(chunks)


def refused(answer: bytes) -> bool:
    """No answer, or one JSON `ok: false` line."""
    if not answer:
        return True
    reply = json.loads(answer)
    return isinstance(reply, dict) and reply.get("ok") is False and bool(reply.get("error"))


STATUS_GARBAGE = {
    "binary": b"\x00\xff\xfe garbage \x1b[2J\n",
    "not json": b"status please\n",
    "json list": b'["op", "drain"]\n',
    "unknown op": b'{"op": "reboot"}\n',
    "op not text": b'{"op": 5}\n',
    "drain with bad wait": b'{"op": "drain", "wait": "yes"}\n',
    "two requests": b'{"op": "status"}\n{"op": "drain"}\n',
    "deep json": b"[" * 100000 + b"\n",
    "oversized": b'{"op": "drain", "pad": "' + b"x" * (4 * MAX_REQUEST) + b'"}\n',
    "oversized, no newline": b"x" * (1 << 20),
    "no newline": b'{"op": "drain"',
    "empty": b"",
    "huge number": b'{"op": "status", "n": ' + b"9" * 5000 + b"}\n",
    "invalid utf-8 in a string": b'{"op": "dr\xc3\x28ain"}\n',
}


def test_the_daemon_status_socket_survives_garbage_and_is_not_drained(
    base: Path, pki: LabPki
) -> None:
    async def test() -> None:
        async with world_of(base, pki) as world, running(world) as daemon:
            await until(lambda: world_announced(world), "announced")
            for name, data in STATUS_GARBAGE.items():
                answer = await asyncio.to_thread(exchange, world.socket, data)
                if name == "two requests":  # only the first line counts
                    assert json.loads(answer)["ok"] is True, answer[:200]
                else:
                    assert refused(answer), (name, answer[:200])
            for _ in range(5):
                await asyncio.to_thread(exchange, world.socket, b'{"op": "dra', close_early=True)
            # More idle connections than it serves at once (told "busy": tests/test_status.py)
            hogs = [
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2 * MAX_CLIENTS)
            ]
            try:
                for sock in hogs:
                    sock.connect(str(world.socket))
                await asyncio.to_thread(exchange, world.socket, b'{"op": "status"}\n')
            finally:
                for sock in hogs:
                    sock.close()
            await until(lambda: world_announced(world), "answers again once the hogs leave")
            snapshot = await world.status()
            assert (snapshot.announced, snapshot.drained) == (True, False)
            assert daemon.core.installed == daemon.core.desired() != {}

    asyncio.run(test())


async def world_announced(world: World) -> bool:
    """Announced, per the status socket; False while it says "busy"."""
    answer = await world.ask("status")
    status = answer.get("status")
    return answer["ok"] is True and isinstance(status, dict) and status["announced"] is True
