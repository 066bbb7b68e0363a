"""The announcer's configuration: one YAML file, parsed into frozen typed objects.

`parse_config` is pure (a loaded document in, a `Config` or `ConfigErrors` out);
`load_config` reads the file and checks the files it names; `host_check` looks at the host
(errors when the daemon could not work there, warnings otherwise); `render_effective` prints
the configuration with every default filled.

Importing this package loads only the model and the errors: the parser, the YAML reader
(`load`), the host checks and the renderer are imported on first use of their names, so that a
command that needs none of them (`announcer status`) does not pay for PyYAML or netlink.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from announcer.config.errors import ConfigError, ConfigErrors
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
    LogConfig,
    LogFormat,
    LoopbackConfig,
    MetricsConfig,
    NeighborConfig,
    StatusConfig,
)

if TYPE_CHECKING:
    from announcer.config.hostcheck import HostReport, HostView, host_check, host_warnings
    from announcer.config.load import check_files, load_config, read_document, read_secret
    from announcer.config.parse import parse_config
    from announcer.config.render import render_effective

_LAZY = {
    "HostReport": "hostcheck",
    "HostView": "hostcheck",
    "host_check": "hostcheck",
    "host_warnings": "hostcheck",
    "check_files": "load",
    "load_config": "load",
    "read_document": "load",
    "read_secret": "load",
    "parse_config": "parse",
    "render_effective": "render",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


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
    "HostReport",
    "HostView",
    "LargeCommunity",
    "ListenAddress",
    "LogConfig",
    "LogFormat",
    "LoopbackConfig",
    "MetricsConfig",
    "NeighborConfig",
    "StatusConfig",
    "check_files",
    "host_check",
    "host_warnings",
    "load_config",
    "parse_config",
    "read_document",
    "read_secret",
    "render_effective",
]
