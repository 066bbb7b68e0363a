"""Parsing the sections about this host's side: `drain`, `loopback`, `status`, `exabgp`.

Must not: look at the host (whether the interface, user or group exist is `hostcheck`'s
business, and only ever a warning).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from announcer.config import fields
from announcer.config.errors import ConfigError, ConfigErrors
from announcer.config.exabgp_settings import DAEMON_SETTINGS, setting
from announcer.config.fields import Section
from announcer.config.model import (
    DrainConfig,
    ExabgpConfig,
    LogConfig,
    LogFormat,
    LoopbackConfig,
    SettingValue,
    StatusConfig,
)
from announcer.config.parse_bgp import MAX_PREPEND

_INTERFACE: Final = re.compile(r"[A-Za-z0-9_.@-]{1,15}")
_ACCOUNT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_MODE: Final = re.compile(r"0?([0-7]{3})")
_SETTING: Final = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*")
# The settings the daemon sets itself (the ones the renderer fixes, and daemon.user).
RESERVED_SETTINGS: Final = DAEMON_SETTINGS
# sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH: Final = 107


def parse_drain(data: object, errors: list[ConfigError]) -> DrainConfig:
    section, default = Section(data, "drain", errors), DrainConfig()
    drain = DrainConfig(
        graceful_shutdown=section.take(
            "graceful_shutdown", fields.boolean, default.graceful_shutdown
        ),
        as_path_prepend=section.take(
            "as_path_prepend", fields.integer_in(0, MAX_PREPEND), default.as_path_prepend
        ),
        delay=section.take("delay", fields.seconds_in(0, 300), default.delay),
        withdraw_wait=section.take(
            "withdraw_wait", fields.seconds_in(0, 60), default.withdraw_wait
        ),
    )
    section.finish()
    return drain


def interface_name(value: object, path: str) -> str:
    raw = fields.text(value, path)
    if not _INTERFACE.fullmatch(raw) or raw in (".", ".."):
        raise ConfigError(
            path, "is not an interface name (1..15 of A-Z a-z 0-9 _ . @ -)", value=value
        )
    return raw


def parse_loopback(data: object, errors: list[ConfigError]) -> LoopbackConfig:
    section, default = Section(data, "loopback", errors), LoopbackConfig()
    loopback = LoopbackConfig(
        manage=section.take("manage", fields.boolean, default.manage),
        interface=section.take("interface", interface_name, default.interface),
    )
    section.finish()
    return loopback


def account(value: object, path: str) -> str:
    raw = fields.text(value, path)
    if not _ACCOUNT.fullmatch(raw):
        raise ConfigError(path, "is not a user or group name", value=value)
    return raw


def socket_path(value: object, path: str) -> Path:
    result = fields.absolute_path(value, path)
    if len(str(result).encode()) > _MAX_SOCKET_PATH:
        raise ConfigError(path, f"is longer than {_MAX_SOCKET_PATH} bytes", value=value)
    return result


def mode(value: object, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        reason = 'is not a quoted octal string like "0600" (YAML reads 0600 as 384)'
        raise ConfigError(path, reason, value=value)
    match = _MODE.fullmatch(fields.text(value, path))
    if match is None:
        raise ConfigError(path, 'is not an octal mode like "0600"', value=value)
    number = int(match[1], 8)
    if number & 0o002:
        raise ConfigError(
            path, "is world-writable: any local user could drain this node", value=value
        )
    return number


def parse_status(data: object, errors: list[ConfigError]) -> StatusConfig:
    section, default = Section(data, "status", errors), StatusConfig()
    status = StatusConfig(
        socket=section.take("socket", socket_path, default.socket),
        mode=section.take("mode", mode, default.mode),
        group=section.take("group", fields.optional(account), default.group),
    )
    section.finish()
    return status


def unprivileged_user(value: object, path: str) -> str:
    name = account(value, path)
    if name == "root":
        raise ConfigError(path, "is root: ExaBGP runs unprivileged", value=value)
    return name


def settings(value: object, path: str) -> tuple[tuple[str, SettingValue], ...]:
    """ExaBGP settings (see `exabgp_settings`); every bad one is reported."""
    if not isinstance(value, dict):
        raise ConfigError(path, "is not a mapping", value=value)
    result: dict[str, SettingValue] = {}
    problems: list[ConfigError] = []
    for key, item in value.items():
        item_path = fields.key_path(path, key)
        try:
            if not isinstance(key, str) or not _SETTING.fullmatch(key):
                reason = "is not an ExaBGP setting name (section.option, without exabgp.)"
                raise ConfigError(item_path, reason, value=key)
            result[key] = setting(key, item, item_path)
        except ConfigError as error:
            problems.append(error)
    if problems:
        raise ConfigErrors(problems)
    return tuple(sorted(result.items()))


def parse_exabgp(data: object, errors: list[ConfigError]) -> ExabgpConfig:
    section, default = Section(data, "exabgp", errors), ExabgpConfig()
    binary = section.take("binary", fields.optional(fields.absolute_path), None)
    exabgp = ExabgpConfig(
        binary=default.binary if binary is None else binary,
        user=section.take("user", unprivileged_user, default.user),
        heartbeat_timeout=section.take(
            "heartbeat_timeout", fields.seconds_in(0.5, 30), default.heartbeat_timeout
        ),
        settings=section.take("settings", settings, default.settings),
    )
    section.finish()
    return exabgp


def log_format(value: object, path: str) -> LogFormat:
    names = [member.value for member in LogFormat]
    if value not in names:
        raise ConfigError(path, f"is not a log format ({' or '.join(names)})", value=value)
    return LogFormat(value)


def parse_log(data: object, errors: list[ConfigError]) -> LogConfig:
    section, default = Section(data, "log", errors), LogConfig()
    log = LogConfig(format=section.take("format", log_format, default.format))
    section.finish()
    return log
