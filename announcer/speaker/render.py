"""ExaBGP's configuration file and environment, rendered from our `Config`.

One `process relay` (the relay, `encoder json`) and one `neighbor` block per configured
neighbor, each naming the relay in its `api` block. No static routes: routes only ever come
through the API. ExaBGP's own settings go into its environment, the ones our guarantees depend
on fixed here, the rest from `exabgp.settings`; its settings file is pinned to an empty one
the daemon writes, so no `exabgp.env` elsewhere can change its behaviour.

Must not: write files or start anything (that is `runtime` and `process`). Reading the MD5
password files is the one I/O, and `redact=True` skips it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from announcer.config import Config, ConfigError, Family, NeighborConfig
from announcer.config.load import read_password
from announcer.config.model import DEFAULT_BGP_PORT
from announcer.speaker.errors import RenderError

PROCESS: Final = "relay"
NODUMP: Final = "nodump.py"  # ExaBGP's launcher, in the runtime directory
REDACTED: Final = "<redacted>"
SYSTEM_PYTHON: Final = Path("/usr/bin/python3")
GTSM_TTL: Final = 255  # RFC 5082: send with 255, accept only 255 from a directly connected peer
# sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH: Final = 107
# Characters ExaBGP's tokeniser reads literally in a `run` line (no spaces, quotes, ;{}[]#\).
_PLAIN_WORD: Final = re.compile(r"[A-Za-z0-9._/+@%:=~-]+")
_PASSWORD: Final = re.compile(r"[!-~]{1,80}")

# Settings the daemon's guarantees depend on (see DESIGN.md), as `exabgp.settings` keys
# (without `exabgp.`): the configuration refuses them there (RESERVED_SETTINGS, with
# daemon.user, which comes from exabgp.user).
FIXED_SETTINGS: Final[Mapping[str, str]] = {
    "api.ack": "true",  # one command in flight, acknowledged
    "api.encoder": "json",  # events are parsed as JSON
    "api.cli": "false",  # the named-pipe CLI can stop every peer when its helper fails
    "api.respawn": "true",  # a relay that cannot reconnect makes ExaBGP give up and exit
    "daemon.daemonize": "false",  # supervised in the foreground
}
# ExaBGP's own settings file, read for every setting the environment leaves unset: the
# daemon points it at ENVIRONMENT_FILE, which it writes, so nothing else can add settings.
ENVFILE_VARIABLE: Final = "EXABGP_ENVFILE"
ENVIRONMENT_FILE: Final = "# Rendered by announcer: every setting is in ExaBGP's environment.\n"
# Defaults which `exabgp.settings` may override.
DEFAULT_SETTINGS: Final[Mapping[str, str]] = {
    "daemon.drop": "false",  # started unprivileged already: nothing left to drop
    "log.destination": "stdout",  # drained into the daemon's log
    "log.statistics": "false",  # otherwise a log line per keepalive
    # The reactor polls every speed*10 ms when idle; each wake-up costs CPU for nothing, since
    # commands wake it at once (its poll includes the API pipe) and a command or a busy peer
    # sets the next poll to 0. Keepalives are whole seconds apart. Measured idle: speed 1 ->
    # 5 took 1.3 % -> 0.4 % of a core; 5 -> 10 cut another ~3x (two idle ExaBGPs each side by
    # side: 6 -> 2 ticks in 40 s).
    "reactor.speed": "10",
}


@dataclass(frozen=True)
class RuntimePaths:
    """Where the files ExaBGP's user must read, and the relay's socket, live."""

    directory: Path
    relay: Path
    config: Path
    socket: Path
    environment: Path  # the settings file ExaBGP is pointed at (EXABGP_ENVFILE)
    launcher: Path  # announcer.speaker.nodump's copy, which ExaBGP is started through

    @classmethod
    def of(cls, config: Config) -> RuntimePaths:
        directory = config.state_dir / "exabgp"
        return cls(
            directory=directory,
            relay=directory / "relay.py",
            config=directory / "exabgp.conf",
            socket=directory / "relay.sock",
            environment=directory / "exabgp.env",
            launcher=directory / NODUMP,
        )


def relay_python() -> Path:
    """Debian's own interpreter (readable by any user), else the one running the daemon."""
    if os.access(SYSTEM_PYTHON, os.X_OK):
        return SYSTEM_PYTHON
    return Path(sys.executable)


def render_environment(config: Config) -> dict[str, str]:
    """ExaBGP's settings as environment variables (`exabgp.api.ack=true` style), and
    `EXABGP_ENVFILE`: ExaBGP reads unset settings from `<its prefix>/etc/exabgp/exabgp.env`
    unless told another file, so it is pointed at the daemon's own (`ENVIRONMENT_FILE`)."""
    settings = dict(DEFAULT_SETTINGS)
    for key, value in config.exabgp.settings:
        text = _setting_text(value)
        if not (key + text).isprintable():  # the settings are echoed into exabgp.conf too
            raise RenderError(f"exabgp.settings.{key}: holds a control character")
        if key == "daemon.user" or (key in FIXED_SETTINGS and FIXED_SETTINGS[key] != text):
            raise RenderError(f"exabgp.settings.{key}: is set by the daemon")
        settings[key] = text
    settings.update(FIXED_SETTINGS)
    settings["daemon.user"] = config.exabgp.user
    pinned = {ENVFILE_VARIABLE: str(RuntimePaths.of(config).environment)}
    return pinned | {f"exabgp.{key}": settings[key] for key in sorted(settings)}


def render_exabgp(config: Config, *, redact: bool, python: Path | None = None) -> str:
    """exabgp.conf for `config`. `redact=True` shows passwords as `<redacted>` (for humans);
    `python` is the relay's interpreter (default: `relay_python()`)."""
    paths = RuntimePaths.of(config)
    lines = ["# Rendered by announcer: do not edit. ExaBGP's environment:"]
    lines += [f"#   {key}={value}" for key, value in render_environment(config).items()]
    lines += ["", *_process(config, paths, python or relay_python())]
    for index, neighbor in enumerate(config.bgp.neighbors):
        password = _password(neighbor, index, redact=redact)
        lines += ["", *_neighbor(config, neighbor, password=password)]
    return "\n".join(lines) + "\n"


def _process(config: Config, paths: RuntimePaths, python: Path) -> list[str]:
    if len(str(paths.socket).encode()) > MAX_SOCKET_PATH:
        raise RenderError(f"state_dir: the relay socket {paths.socket} is too long a path")
    words = [str(python), "-I", "-S", str(paths.relay), str(paths.socket)]
    for word in words:
        if not _PLAIN_WORD.fullmatch(word):
            raise RenderError(f"{word!r}: ExaBGP cannot run a path with spaces or punctuation")
    run = " ".join([*words, f"{config.exabgp.heartbeat_timeout:g}"])
    return [f"process {PROCESS} {{", f"    run {run};", "    encoder json;", "}"]


def _neighbor(config: Config, neighbor: NeighborConfig, *, password: str | None) -> list[str]:
    body = [f"router-id {config.bgp.router_id};"]
    if neighbor.local_address is not None:
        body.append(f"local-address {neighbor.local_address};")
    body += [
        f"local-as {config.bgp.local_as};",
        f"peer-as {neighbor.peer_as};",
        f"hold-time {neighbor.hold_time};",
        # ExaBGP would otherwise replay what it once announced to every new session on its
        # own, say while the daemon is frozen and a router reset the session on BFD down
        # (without BFD strict mode it accepts BGP again at once). The daemon sends each new
        # session its routes itself (`core.exabgp.session_up`).
        "adj-rib-out false;",
    ]
    if neighbor.port != DEFAULT_BGP_PORT:
        body.append(f"connect {neighbor.port};")
    if password is not None:
        body.append(f'md5-password "{password}";')
    body += _ttl(neighbor)
    families = [family for family in Family if family in neighbor.families]
    body += ["family {", *(f"    {family.value} unicast;" for family in families), "}"]
    body += ["api {", f"    processes [ {PROCESS} ];", "    neighbor-changes;", "}"]
    return [f"neighbor {neighbor.address} {{", *(f"    {line}" for line in body), "}"]


def _ttl(neighbor: NeighborConfig) -> list[str]:
    if neighbor.ttl_security:
        return [f"outgoing-ttl {GTSM_TTL};", f"incoming-ttl {GTSM_TTL};"]
    if neighbor.multihop is not None:
        return [f"outgoing-ttl {neighbor.multihop};"]
    return []


def _password(neighbor: NeighborConfig, index: int, *, redact: bool) -> str | None:
    if neighbor.password_file is None:
        return None
    if redact:
        return REDACTED
    key = f"bgp.neighbors[{index}].password_file"
    try:
        password = read_password(neighbor.password_file, key=key)
    except ConfigError as error:
        raise RenderError(error.message) from None
    # read_password checks the same; a quote here would end the string in exabgp.conf.
    if not _PASSWORD.fullmatch(password) or any(char in password for char in "\"'\\"):
        raise RenderError(f"{key}: the password cannot be written into exabgp.conf")
    return password


def _setting_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
