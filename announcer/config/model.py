"""The configuration as typed, frozen values, and the defaults (product decisions, each with
its reason in `config/announcer.example.yaml`).

Must not: parse, read files or look at the host. Building these objects by hand skips every
validation: use `parse_config`.
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Final

IPAddress = IPv4Address | IPv6Address
VipNetwork = IPv4Network | IPv6Network
SettingValue = str | int | float | bool

DEFAULT_PATH: Final = Path("/etc/announcer/config.yaml")
DEFAULT_HOLD_TIME: Final = 9
DEFAULT_BGP_PORT: Final = 179


def default_exabgp_binary() -> Path:
    """The exabgp installed with the running Python (the package pins its version)."""
    return Path(sys.prefix) / "bin" / "exabgp"


class LogFormat(enum.Enum):
    """How the daemon writes its log: one line per event, or one JSON object a line."""

    TEXT = "text"
    JSON = "json"


class Family(enum.Enum):
    """An address family a BGP session carries (unicast only)."""

    IPV4 = "ipv4"
    IPV6 = "ipv6"

    @classmethod
    def of(cls, address: IPAddress | VipNetwork) -> Family:
        return cls.IPV4 if address.version == 4 else cls.IPV6


# RFC 1997 well-known communities by the names ExaBGP also accepts.
WELL_KNOWN_COMMUNITIES: Final = {
    "no-export": 0xFFFFFF01,
    "no-advertise": 0xFFFFFF02,
    "no-export-subconfed": 0xFFFFFF03,
    "nopeer": 0xFFFFFF04,
}
BLACKHOLE: Final = 0xFFFF029A  # RFC 7999: would ask the routers to drop the VIP's traffic
GRACEFUL_SHUTDOWN: Final = 0xFFFF0000  # RFC 8326: 65535:0


@dataclass(frozen=True, order=True)
class Community:
    """A standard community; `str()` gives the configuration spelling (a name if well known)."""

    value: int

    @property
    def numeric(self) -> str:
        return f"{self.value >> 16}:{self.value & 0xFFFF}"

    def __str__(self) -> str:
        for name, value in WELL_KNOWN_COMMUNITIES.items():
            if value == self.value:
                return name
        return self.numeric


@dataclass(frozen=True, order=True)
class LargeCommunity:
    """An RFC 8092 large community `global:local1:local2`."""

    global_admin: int
    local1: int
    local2: int

    def __str__(self) -> str:
        return f"{self.global_admin}:{self.local1}:{self.local2}"


@dataclass(frozen=True)
class ListenAddress:
    """An IP literal and a TCP port; `str()` gives `127.0.0.1:9470` or `[::1]:9470`."""

    host: IPAddress
    port: int

    def __str__(self) -> str:
        return (
            f"[{self.host}]:{self.port}" if self.host.version == 6 else f"{self.host}:{self.port}"
        )


@dataclass(frozen=True, kw_only=True)
class ApiserverConfig:
    url: str = "https://127.0.0.1:6443"
    ca_file: Path = Path("/etc/kubernetes/pki/ca.crt")
    server_name: str = "kubernetes"
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    token_file: Path | None = None
    interval: float = 0.4
    timeout: float = 0.35
    fast_interval: float = 0.1
    rise: int = 3
    fall: int = 2
    min_healthy: float = 2.0


@dataclass(frozen=True, kw_only=True)
class BfdConfig:
    """The BFD profile of a session (RFC 5880 asynchronous mode); intervals in seconds."""

    enabled: bool = False
    transmit_interval: float = 0.3
    receive_interval: float = 0.3
    detect_multiplier: int = 3


@dataclass(frozen=True, kw_only=True)
class NeighborConfig:
    """One BGP session. `hold_time`, `families` and `bfd` are resolved (never null) by the
    parser."""

    address: IPAddress
    peer_as: int
    local_address: IPAddress | None = None
    hold_time: int = DEFAULT_HOLD_TIME
    password_file: Path | None = None
    ttl_security: bool = False
    multihop: int | None = None
    families: tuple[Family, ...] = (Family.IPV4,)
    next_hop_ipv6: IPv6Address | None = None
    port: int = DEFAULT_BGP_PORT
    bfd: BfdConfig = field(default_factory=BfdConfig)


@dataclass(frozen=True, kw_only=True)
class BgpConfig:
    router_id: IPv4Address
    local_as: int
    hold_time: int = DEFAULT_HOLD_TIME
    neighbors: tuple[NeighborConfig, ...]


@dataclass(frozen=True, kw_only=True)
class AnnounceConfig:
    communities: tuple[Community, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()
    med: int | None = None
    as_path_prepend: int = 0


@dataclass(frozen=True, kw_only=True)
class DrainConfig:
    graceful_shutdown: bool = True
    as_path_prepend: int = 3
    delay: float = 3.0
    withdraw_wait: float = 1.0


@dataclass(frozen=True, kw_only=True)
class LoopbackConfig:
    manage: bool = True
    interface: str = "lo"


@dataclass(frozen=True, kw_only=True)
class StatusConfig:
    socket: Path = Path("/run/announcer/status.sock")
    mode: int = 0o600
    group: str | None = None


@dataclass(frozen=True, kw_only=True)
class ExabgpConfig:
    binary: Path = field(default_factory=default_exabgp_binary)
    user: str = "exabgp"
    heartbeat_timeout: float = 2.0
    # Sorted (key, value) pairs: hashable and order-independent; `dict()` them to use.
    settings: tuple[tuple[str, SettingValue], ...] = ()


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    listen: ListenAddress | None = None


@dataclass(frozen=True, kw_only=True)
class LogConfig:
    """Read when the daemon starts (`run --log-format` overrides it); a reload keeps it."""

    format: LogFormat = LogFormat.TEXT


@dataclass(frozen=True, kw_only=True)
class Config:
    apiserver: ApiserverConfig = field(default_factory=ApiserverConfig)
    vips: tuple[VipNetwork, ...]
    bgp: BgpConfig
    bfd: BfdConfig = field(default_factory=BfdConfig)
    announce: AnnounceConfig = field(default_factory=AnnounceConfig)
    drain: DrainConfig = field(default_factory=DrainConfig)
    loopback: LoopbackConfig = field(default_factory=LoopbackConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    state_dir: Path = Path("/var/lib/announcer")
    exabgp: ExabgpConfig = field(default_factory=ExabgpConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
