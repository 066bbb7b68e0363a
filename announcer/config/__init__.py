"""The announcer's configuration: one YAML file, parsed into frozen typed objects.

`parse_config` is pure (a loaded document in, a `Config` or `ConfigErrors` out);
`load_config` reads the file and checks the files it names; `host_warnings` looks at the host
and only ever warns; `render_effective` prints the configuration with every default filled.
"""

from __future__ import annotations

from announcer.config.errors import ConfigError, ConfigErrors
from announcer.config.hostcheck import HostView, host_warnings
from announcer.config.load import check_files, load_config, read_document, read_secret
from announcer.config.model import (
    DEFAULT_PATH,
    AnnounceConfig,
    ApiserverConfig,
    BgpConfig,
    Community,
    Config,
    DrainConfig,
    ExabgpConfig,
    Family,
    LargeCommunity,
    ListenAddress,
    LoopbackConfig,
    MetricsConfig,
    NeighborConfig,
    StatusConfig,
)
from announcer.config.parse import parse_config
from announcer.config.render import render_effective

__all__ = [
    "DEFAULT_PATH",
    "AnnounceConfig",
    "ApiserverConfig",
    "BgpConfig",
    "Community",
    "Config",
    "ConfigError",
    "ConfigErrors",
    "DrainConfig",
    "ExabgpConfig",
    "Family",
    "HostView",
    "LargeCommunity",
    "ListenAddress",
    "LoopbackConfig",
    "MetricsConfig",
    "NeighborConfig",
    "StatusConfig",
    "check_files",
    "host_warnings",
    "load_config",
    "parse_config",
    "read_document",
    "read_secret",
    "render_effective",
]
