"""`announcer run|status|drain|undrain|render-exabgp` through click's CliRunner; the status
commands against a real StatusServer on a temporary socket (served from a thread)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from announcer.cli import main
from announcer.health import Health
from announcer.lifecycle import Lifecycle
from announcer.status import StatusServer
from announcer.status_protocol import (
    ControlError,
    ExabgpStatus,
    NeighborStatus,
    ProbeStatus,
    StatusSnapshot,
    VipStatus,
)

NOW = 1_700_000_000.0
ANNOUNCING = StatusSnapshot(
    announced=True,
    health=Health.UP,
    health_since=NOW - 60,
    drained=False,
    lifecycle=Lifecycle.RUNNING,
    vips=(VipStatus(prefix="198.51.100.10/32", announced=True, reason="ready"),),
    neighbors=(NeighborStatus(address="192.0.2.1", state="up", since=NOW - 60),),
    last_probe=ProbeStatus(ok=True, status=200, reason="ok", latency_ms=2.5, at=NOW - 1),
    exabgp=ExabgpStatus(pid=4242, restarts=0),
    transitions=(),
    config_error=None,
)
DRAINED = replace(
    ANNOUNCING,
    announced=False,
    drained=True,
    lifecycle=Lifecycle.DRAINED,
    vips=(VipStatus(prefix="198.51.100.10/32", announced=False, reason="drained"),),
)


class Daemon:
    """What the status socket serves, and the control requests it received."""

    def __init__(self) -> None:
        self.snapshot = ANNOUNCING
        self.calls: list[str] = []
        self.refuse: str | None = None

    async def drain(self, wait: bool) -> str:
        self.calls.append(f"drain wait={wait}")
        if self.refuse:
            raise ControlError(self.refuse)
        return "drained: routes withdrawn" if wait else "draining"

    async def undrain(self) -> str:
        self.calls.append("undrain")
        return "undrained"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Daemon, Path]]:
    """A StatusServer on its own loop in a thread, serving a `Daemon`."""
    fake = Daemon()
    path = tmp_path / "status.sock"
    ready: Future[None] = Future()
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        server = StatusServer(
            path,
            mode=0o600,
            group=None,
            snapshot=lambda: fake.snapshot,
            on_drain=fake.drain,
            on_undrain=fake.undrain,
        )
        await server.start()
        ready.set_result(None)
        try:
            await asyncio.Event().wait()
        finally:
            await server.close()

    task = loop.create_task(serve())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    ready.result(timeout=10)
    yield fake, path
    loop.call_soon_threadsafe(task.cancel)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    loop.close()


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_status_exits_0_when_announcing(daemon: tuple[Daemon, Path]) -> None:
    _, path = daemon
    code, out, _ = invoke("status", "--socket", str(path))
    assert code == 0
    assert out.startswith("ANNOUNCING: 1 of 1 VIP(s) announced\n")
    assert "198.51.100.10/32     announced (ready)" in out


def test_status_exits_3_when_not_announcing(daemon: tuple[Daemon, Path]) -> None:
    fake, path = daemon
    fake.snapshot = DRAINED
    code, out, _ = invoke("status", "--socket", str(path))
    assert code == 3
    assert out.startswith("NOT ANNOUNCING (drained)\n")


@pytest.mark.parametrize(("snapshot", "code"), [(ANNOUNCING, 0), (DRAINED, 3)])
def test_status_json_is_the_snapshot(
    daemon: tuple[Daemon, Path], snapshot: StatusSnapshot, code: int
) -> None:
    fake, path = daemon
    fake.snapshot = snapshot
    exit_code, out, _ = invoke("status", "--json", "--socket", str(path))
    assert exit_code == code
    assert json.loads(out) == snapshot.to_json()


def test_status_exits_1_when_the_daemon_cannot_be_reached(tmp_path: Path) -> None:
    code, out, err = invoke("status", "--socket", str(tmp_path / "none.sock"))
    assert (code, out) == (1, "")
    assert "cannot reach the daemon" in err


def test_status_socket_from_the_environment(
    daemon: tuple[Daemon, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path = daemon
    monkeypatch.setenv("ANNOUNCER_SOCKET", str(path))
    assert invoke("status")[0] == 0


def test_drain_and_undrain_go_through_the_socket(daemon: tuple[Daemon, Path]) -> None:
    fake, path = daemon
    assert invoke("drain", "--socket", str(path)) == (0, "draining\n", "")
    assert invoke("drain", "--wait", "--socket", str(path)) == (
        0,
        "drained: routes withdrawn\n",
        "",
    )
    assert invoke("undrain", "--socket", str(path)) == (0, "undrained\n", "")
    assert fake.calls == ["drain wait=False", "drain wait=True", "undrain"]


def test_a_refused_drain_exits_1_with_the_reason(daemon: tuple[Daemon, Path]) -> None:
    fake, path = daemon
    fake.refuse = "cannot record drained state in /var/lib/announcer/drained: read-only"
    code, _, err = invoke("drain", "--socket", str(path))
    assert code == 1
    assert "the daemon says: cannot record drained state" in err


def test_drain_exits_1_when_the_daemon_cannot_be_reached(tmp_path: Path) -> None:
    assert invoke("undrain", "--socket", str(tmp_path / "none.sock"))[0] == 1


def config_document(tmp_path: Path, **extra: object) -> dict[str, object]:
    return {
        "vips": ["198.51.100.10/32"],
        "bgp": {
            "router_id": "192.0.2.2",
            "local_as": 65100,
            "neighbors": [{"address": "192.0.2.1", "peer_as": 65000, **extra}],
        },
        "state_dir": str(tmp_path / "state"),
    }


def test_render_exabgp_redacts_the_password(tmp_path: Path) -> None:
    secret = tmp_path / "bgp-password"
    secret.write_text("s3cr3t-never-shown\n")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_document(tmp_path, password_file=str(secret))))
    code, out, _ = invoke("render-exabgp", "--config", str(config))
    assert code == 0
    assert 'md5-password "<redacted>";' in out
    assert "s3cr3t" not in out
    assert "neighbor 192.0.2.1 {" in out
    assert "processes [ relay ];" in out


def test_render_exabgp_of_a_bad_file_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("vips: [10.0.0.0/8]\n")
    code, _, err = invoke("render-exabgp", "--config", str(config))
    assert code == 2
    assert "error: vips[0]: '10.0.0.0/8' is not a /32 or /128" in err


@pytest.fixture
def announcer_logging() -> Iterator[None]:
    root = logging.getLogger("announcer")
    level = root.level
    yield
    root.setLevel(level)


@pytest.mark.usefixtures("announcer_logging")
def test_run_with_a_bad_config_exits_2_with_every_mistake(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("vips: [10.0.0.0/8]\nbgp: {router_id: nope}\n")
    code, out, err = invoke("run", "--config", str(config))
    assert (code, out) == (2, "")
    assert "error: vips[0]: '10.0.0.0/8' is not a /32 or /128" in err
    assert "error: bgp.router_id: 'nope' is not an IP address" in err


@pytest.mark.usefixtures("announcer_logging")
def test_run_without_a_config_file_exits_2(tmp_path: Path) -> None:
    code, _, err = invoke("run", "--config", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert "does not exist" in err or "cannot be read" in err


def test_run_rejects_an_unknown_log_format() -> None:
    assert invoke("run", "--log-format", "xml")[0] == 64
