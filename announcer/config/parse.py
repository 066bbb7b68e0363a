"""`parse_config`: a pure function from a loaded YAML document to a `Config`.

Every mistake in the document is collected (the operator fixes them all in one go) and raised
together as `ConfigErrors`, each naming its key path and value. Unknown keys are mistakes.

Must not: read files (not even the ones the configuration names: that is `load.check_files`),
look at the host, or raise anything but `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_interface, ip_network
from typing import Final
from urllib.parse import urlsplit

from announcer.config import fields
from announcer.config.errors import ConfigError, ConfigErrors
from announcer.config.fields import Section
from announcer.config.model import (
    ApiserverConfig,
    BgpConfig,
    Config,
    Family,
    ListenAddress,
    MetricsConfig,
    NeighborConfig,
    VipNetwork,
)
from announcer.config.parse_bfd import parse_bfd
from announcer.config.parse_bgp import parse_announce, parse_bgp
from announcer.config.parse_host import (
    parse_drain,
    parse_exabgp,
    parse_log,
    parse_loopback,
    parse_status,
)

TOP_LEVEL: Final = "(top level)"
_PLACEHOLDER_BGP: Final = BgpConfig(router_id=IPv4Address("192.0.2.0"), local_as=1, neighbors=())
_DNS_NAME: Final = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_LISTEN: Final = re.compile(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([0-9.]+):([0-9]{1,5})")
MAX_INTERVAL: Final = 60.0
_NO_VIPS: Final[tuple[VipNetwork, ...]] = ()


def parse_config(data: object) -> Config:
    """The `Config` a loaded YAML document describes; raises `ConfigErrors` listing every
    mistake. Files the configuration names are not looked at (see `load.check_files`)."""
    if data is None:
        raise ConfigErrors([ConfigError(TOP_LEVEL, "the document is empty")])
    if not isinstance(data, dict):
        raise ConfigErrors([ConfigError(TOP_LEVEL, "is not a mapping of sections", value=data)])
    errors: list[ConfigError] = []
    config = _parse(data, errors)
    if errors:
        raise ConfigErrors(errors)
    return config


def _parse(data: dict[object, object], errors: list[ConfigError]) -> Config:
    top = Section(data, "", errors)
    apiserver = parse_apiserver(top.raw("apiserver"), errors)
    vips = top.require("vips", vip_list, _NO_VIPS)
    bfd = parse_bfd(top.raw("bfd"), errors)
    errors_before = len(errors)
    bgp = top.require("bgp", lambda value, _: parse_bgp(value, errors, bfd=bfd), _PLACEHOLDER_BGP)
    if len(errors) == errors_before and top.fine("vips"):  # else the check would mislead
        _check_vips_carried(top, vips, bgp.neighbors)
    config = Config(
        apiserver=apiserver,
        vips=vips,
        bgp=bgp,
        bfd=bfd,
        announce=parse_announce(top.raw("announce"), errors),
        drain=parse_drain(top.raw("drain"), errors),
        loopback=parse_loopback(top.raw("loopback"), errors),
        status=parse_status(top.raw("status"), errors),
        state_dir=top.take("state_dir", fields.absolute_path, Config.state_dir),
        exabgp=parse_exabgp(top.raw("exabgp"), errors),
        metrics=parse_metrics(top.raw("metrics"), errors),
        log=parse_log(top.raw("log"), errors),
    )
    top.finish()
    return config


def _check_vips_carried(
    top: Section, vips: tuple[VipNetwork, ...], neighbors: Sequence[NeighborConfig]
) -> None:
    carried = {family for neighbor in neighbors for family in neighbor.families}
    raw = top.raw("vips")
    for index, vip in enumerate(vips):
        family = Family.of(vip)
        if family not in carried:
            value = raw[index] if isinstance(raw, list) else str(vip)
            reason = f"is {family.value} but no neighbor carries {family.value}"
            top.reject("vips", ConfigError(f"vips[{index}]", reason, value=value))


def vip(value: object, path: str) -> VipNetwork:
    """A host route: `198.51.100.10/32`, `2001:db8::10/128` (or the bare address)."""
    raw = fields.text(value, path)
    try:
        interface = ip_interface(raw)
    except ValueError:
        raise ConfigError(path, "is not an IP address or prefix", value=value) from None
    if interface.network.prefixlen != interface.max_prefixlen:
        raise ConfigError(path, "is not a /32 or /128", value=value)
    address = interface.ip
    unusable = address.is_unspecified or address.is_multicast or address.is_loopback
    if unusable or address.is_link_local or "%" in raw:
        raise ConfigError(path, "is not a usable VIP (global or private unicast)", value=value)
    return ip_network(f"{address}/{interface.max_prefixlen}")


def vip_list(value: object, path: str) -> tuple[VipNetwork, ...]:
    if value == []:
        raise ConfigError(path, "is empty: list at least one VIP", value=value)
    return tuple(fields.each_item(value, path, vip))


def url(value: object, path: str) -> str:
    raw = fields.text(value, path)
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(path, "is not a URL", value=value) from None
    if parts.scheme != "https" or not parts.hostname or any(c.isspace() for c in raw):
        raise ConfigError(path, "is not an https:// URL with a host", value=value)
    if parts.username is not None or parts.password is not None:
        raise ConfigError(path, "carries credentials: use token_file or a client certificate")
    if parts.query or parts.fragment:
        raise ConfigError(path, "has a query or fragment: give the base URL", value=value)
    return raw.rstrip("/")


def server_name(value: object, path: str) -> str:
    raw = fields.text(value, path)
    if _DNS_NAME.fullmatch(raw):
        return raw
    try:
        ip_address(raw)
    except ValueError:
        raise ConfigError(path, "is not a DNS name or IP address", value=value) from None
    return raw


def parse_apiserver(data: object, errors: list[ConfigError]) -> ApiserverConfig:
    section, default = Section(data, "apiserver", errors), ApiserverConfig()
    optional_file = fields.optional(fields.absolute_path)
    apiserver = ApiserverConfig(
        url=section.take("url", url, default.url),
        ca_file=section.take("ca_file", fields.absolute_path, default.ca_file),
        server_name=section.take("server_name", server_name, default.server_name),
        client_cert_file=section.take("client_cert_file", optional_file, None),
        client_key_file=section.take("client_key_file", optional_file, None),
        token_file=section.take("token_file", optional_file, None),
        interval=section.take(
            "interval", fields.seconds_in(0, MAX_INTERVAL, lo_open=True), default.interval
        ),
        timeout=section.take(
            "timeout", fields.seconds_in(0, MAX_INTERVAL, lo_open=True), default.timeout
        ),
        fast_interval=section.take(
            "fast_interval",
            fields.seconds_in(0, MAX_INTERVAL, lo_open=True),
            default.fast_interval,
        ),
        rise=section.take("rise", fields.integer_in(1, 100), default.rise),
        fall=section.take("fall", fields.integer_in(1, 100), default.fall),
        min_healthy=section.take("min_healthy", fields.seconds_in(0, 3600), default.min_healthy),
    )
    _check_apiserver(section, apiserver)
    apiserver = _fast_interval(section, apiserver)
    section.finish()
    return apiserver


def _check_apiserver(section: Section, apiserver: ApiserverConfig) -> None:
    if section.fine("timeout", "interval") and apiserver.timeout >= apiserver.interval:
        if section.has("timeout"):
            bad, reason = "timeout", f"is not below apiserver.interval ({apiserver.interval:g})"
        else:
            bad = "interval"
            reason = f"is not above the default timeout ({apiserver.timeout:g}): set timeout too"
        section.reject(bad, ConfigError(section.at(bad), reason, value=section.raw(bad)))
    cert, key = apiserver.client_cert_file, apiserver.client_key_file
    if section.fine("client_cert_file", "client_key_file") and (cert is None) != (key is None):
        missing = "client_key_file" if key is None else "client_cert_file"
        other = "client_cert_file" if key is None else "client_key_file"
        reason = f"is required with {section.at(other)}"
        section.reject(missing, ConfigError(section.at(missing), reason))


def _fast_interval(section: Section, apiserver: ApiserverConfig) -> ApiserverConfig:
    """`fast_interval` checked against `interval`; when not set, 0.1 s or half a shorter
    interval (a short interval needs no tuning of its own)."""
    if not section.has("fast_interval"):
        fast = min(ApiserverConfig().fast_interval, apiserver.interval / 2)
        return dataclasses.replace(apiserver, fast_interval=fast)
    if section.fine("fast_interval", "interval") and apiserver.fast_interval >= apiserver.interval:
        reason = f"is not below apiserver.interval ({apiserver.interval:g})"
        error = ConfigError(section.at("fast_interval"), reason, value=section.raw("fast_interval"))
        section.reject("fast_interval", error)
    return apiserver


def listen_address(value: object, path: str) -> ListenAddress:
    match = _LISTEN.fullmatch(fields.text(value, path))
    if match is None:
        raise ConfigError(path, "is not HOST:PORT or [HOST]:PORT", value=value)
    host_text, port_text = (match[1], match[2]) if match[1] else (match[3], match[4])
    try:
        host = ip_address(host_text)
    except ValueError:
        raise ConfigError(path, "does not start with an IP address", value=value) from None
    if host.is_multicast or (isinstance(host, IPv6Address) and host.scope_id is not None):
        raise ConfigError(path, "is not a unicast address", value=value)
    if not 1 <= int(port_text) <= 65535:
        raise ConfigError(path, "has a port outside 1..65535", value=value)
    return ListenAddress(host=host, port=int(port_text))


def parse_metrics(data: object, errors: list[ConfigError]) -> MetricsConfig:
    section = Section(data, "metrics", errors)
    metrics = MetricsConfig(listen=section.take("listen", fields.optional(listen_address), None))
    section.finish()
    return metrics
