"""Which ExaBGP 5 environment settings `exabgp.settings` may hold, and what each accepts.

Every setting ExaBGP knows is either here with a converter, or reserved with the reason the
daemon cannot let it change: it would make ExaBGP listen, go passive, delay, give up on peers,
stop in a debugger, or change the API and process model the daemon relies on (see
docs/cni-bgp.md and DESIGN.md). A name in neither table is a mistake.

Must not: render the environment (that is `announcer.speaker.render`) or parse other keys.
"""

from __future__ import annotations

import re
from typing import Final

from announcer.config import fields
from announcer.config.errors import ConfigError
from announcer.config.model import SettingValue

_LOG_LEVELS: Final = ("FATAL", "CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET")
_UMASK: Final = re.compile(r"0?[0-7]{3}")
_DEBUGGING: Final = "a debugging aid: ExaBGP would stop at a fault, or run slower"

# Settings the daemon sets itself (announcer.speaker.render.FIXED_SETTINGS, and daemon.user).
DAEMON_SETTINGS: Final = {
    "daemon.user": "set exabgp.user instead",
    "daemon.daemonize": "the daemon supervises ExaBGP in the foreground",
    "api.respawn": "routes are withdrawn when the daemon dies only because ExaBGP respawns",
    "api.ack": "the daemon checks an acknowledgement for every command",
    "api.encoder": "the daemon reads ExaBGP's events as JSON",
    "api.cli": "the named-pipe CLI can stop every peer when its helper fails",
}
# Settings that would break what the daemon guarantees.
REFUSED_SETTINGS: Final = {
    "daemon.pid": "the daemon supervises ExaBGP and knows its pid",
    "api.compact": "the daemon reads ExaBGP's full JSON encoding",
    "api.terminate": "the daemon restarts ExaBGP itself; this would stop it on a relay restart",
    "api.pipename": "the named-pipe CLI is off (api.cli)",
    "tcp.bind": "would make ExaBGP listen for BGP connections: the node only connects out",
    "tcp.port": "is the port ExaBGP listens on, and it must not listen (tcp.bind)",
    "tcp.acl": "is not implemented by ExaBGP",
    "tcp.delay": "would hold every announcement back until the minute is a multiple of it",
    "tcp.once": "would give up on a peer after one failed connection, until ExaBGP restarts",
    "tcp.attempts": "would give up on a peer after that many failed connections",
    "bgp.passive": "would make every session passive: this node opens none",
    "pdb.enable": _DEBUGGING,
    "profile.enable": _DEBUGGING,
    "profile.file": _DEBUGGING,
    "debug.pdb": _DEBUGGING,
    "debug.memory": _DEBUGGING,
    "debug.configuration": _DEBUGGING,
    "debug.selfcheck": _DEBUGGING,
    "debug.route": _DEBUGGING,
    "debug.defensive": _DEBUGGING,
    "debug.rotate": _DEBUGGING,
}


def _log_level(value: object, path: str) -> SettingValue:
    raw = fields.text(value, path)
    if raw.upper() not in _LOG_LEVELS:
        raise ConfigError(path, f"is not a log level ({', '.join(_LOG_LEVELS)})", value=value)
    return raw.upper()


def _umask(value: object, path: str) -> SettingValue:
    if isinstance(value, str) and _UMASK.fullmatch(value):
        return value
    raise ConfigError(path, 'is not a quoted octal umask like "0137"', value=value)


def _speed(value: object, path: str) -> SettingValue:
    fields.seconds(value, path, lo=0.1, hi=10)
    assert isinstance(value, int | float)  # seconds() refused anything else
    return value


_LOG_SWITCHES: Final = (
    "all",
    "configuration",
    "reactor",
    "daemon",
    "processes",
    "network",
    "statistics",
    "packets",
    "rib",
    "message",
    "timers",
    "routes",
    "parser",
    "short",
    "enable",
)

# Every setting `exabgp.settings` may hold, with the converter for its value.
KNOWN_SETTINGS: Final[dict[str, fields.Convert[SettingValue]]] = {
    **{f"log.{name}": fields.boolean for name in _LOG_SWITCHES},
    "log.level": _log_level,
    "log.destination": fields.text,
    "daemon.drop": fields.boolean,
    "daemon.umask": _umask,
    "bgp.openwait": fields.integer_in(1, 3600),
    "cache.attributes": fields.boolean,
    "cache.nexthops": fields.boolean,
    "api.chunk": fields.integer_in(1, 1_000_000),
    "reactor.speed": _speed,
}


def setting(key: str, value: object, path: str) -> SettingValue:
    """The value of setting `key`, converted; `ConfigError` for a reserved or unknown key."""
    if key in DAEMON_SETTINGS:
        raise ConfigError(path, f"is set by the daemon: {DAEMON_SETTINGS[key]}")
    if key in REFUSED_SETTINGS:
        raise ConfigError(path, f"is refused: {REFUSED_SETTINGS[key]}")
    convert = KNOWN_SETTINGS.get(key)
    if convert is None:
        known = ", ".join(sorted(KNOWN_SETTINGS))
        raise ConfigError(path, f"is not an ExaBGP setting the daemon allows (allowed: {known})")
    return convert(value, path)
