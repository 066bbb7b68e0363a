"""Host checks against the systemd unit: does the configuration fit what the unit allows?

Two facts of the unit (config/systemd/announcer.service, plus any drop-in an operator adds)
bound the configuration: `TimeoutStopSec=` must leave room for a stop's drain (`drain.delay`
+ `drain.withdraw_wait` + `STOP_MARGIN` to stop ExaBGP), or systemd kills the daemon
mid-drain; and under `ProtectSystem=strict` only the unit's `ReadWritePaths=` can be written,
so `state_dir` and the directory of `status.socket` must lie on a writable mount. The second
is read where check-config runs: the unit's `ExecStartPre=` runs it inside the sandbox, where
a path outside `ReadWritePaths=` is on a read-only mount.

Must not: fail, or change the host; like hostcheck, it only warns. A unit that cannot be read
or a value it cannot parse gives no warning.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Final

from announcer.config.model import Config

UNIT: Final = "announcer.service"
# Where systemd looks for the unit and its drop-ins, lowest precedence first.
UNIT_DIRS: Final = (
    Path("/lib/systemd/system"),
    Path("/usr/lib/systemd/system"),
    Path("/run/systemd/system"),
    Path("/etc/systemd/system"),
)
# From drain.withdraw_wait's end to the daemon's exit: ExaBGP's stop (5 s grace before
# SIGKILL) and its relay's disconnect (up to the same grace), with room to spare.
STOP_MARGIN: Final = 15.0
_UNITS: Final = {
    **dict.fromkeys(("ms", "msec"), 0.001),
    **dict.fromkeys(("", "s", "sec", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hour", "hours"), 3600.0),
}
_SPAN: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")


def parse_timespan(text: str) -> float | None:
    """systemd's time span (`30s`, `6min 30s`, `390`: seconds) in seconds; `infinity` is
    math.inf; None when it is not one."""
    text = text.strip()
    if text == "infinity":
        return float("inf")
    total, position = 0.0, 0
    for match in _SPAN.finditer(text):
        if text[position : match.start()].strip() or match[2] not in _UNITS:
            return None
        total += float(match[1]) * _UNITS[match[2]]
        position = match.end()
    return total if position and not text[position:].strip() else None


def unit_files(dirs: Sequence[Path] = UNIT_DIRS) -> list[Path]:
    """The unit file systemd uses (the last found in `dirs` order) and then its drop-ins,
    in the order systemd applies them (by file name)."""
    units = [folder / UNIT for folder in dirs if (folder / UNIT).is_file()]
    drop_ins: dict[str, Path] = {}
    for folder in dirs:
        for path in sorted((folder / f"{UNIT}.d").glob("*.conf")):
            drop_ins[path.name] = path  # a later directory's file of the same name wins
    return units[-1:] + [drop_ins[name] for name in sorted(drop_ins)]


def read_stop_timeout(files: Iterable[Path]) -> tuple[float, Path] | None:
    """The effective TimeoutStopSec= (or TimeoutSec=) of `files` and the file that set it."""
    found: tuple[float, Path] | None = None
    for path in files:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition("=")
            if key.strip() in ("TimeoutStopSec", "TimeoutSec"):
                seconds = parse_timespan(value)
                found = None if seconds is None else (seconds, path)
    return found


def on_read_only_mount(path: Path) -> bool:
    """`path`, or the nearest existing directory above it, is on a read-only mount."""
    for candidate in (path, *path.parents):
        try:
            return bool(os.statvfs(candidate).f_flag & os.ST_RDONLY)
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return False


def stop_timeout_warnings(config: Config, found: tuple[float, Path] | None) -> list[str]:
    """A warning if a stop's drain does not fit in the unit's TimeoutStopSec."""
    if found is None:
        return []
    timeout, source = found
    drain = config.drain
    needed = drain.delay + drain.withdraw_wait + STOP_MARGIN
    if needed <= timeout:
        return []
    return [
        f"drain.delay: {drain.delay:g} s + drain.withdraw_wait {drain.withdraw_wait:g} s + "
        f"{STOP_MARGIN:g} s to stop ExaBGP do not fit in TimeoutStopSec={timeout:g}s "
        f"({source}): systemd would kill the daemon mid-drain; raise TimeoutStopSec to at "
        f"least {needed:g}s or lower the drain"
    ]


def writable_path_warnings(config: Config, read_only: Callable[[Path], bool]) -> list[str]:
    """A warning for each path the daemon writes that lies on a read-only mount here."""
    written = [
        ("state_dir", config.state_dir, config.state_dir),
        ("status.socket", config.status.socket, config.status.socket.parent),
    ]
    return [
        f"{key}: {path} is on a read-only file system here: under the unit's "
        "ProtectSystem=strict only /var/lib/announcer and /run/announcer are writable; use "
        "those, or add the directory to ReadWritePaths= in a drop-in"
        for key, path, directory in written
        if read_only(directory)
    ]


def unit_warnings(config: Config) -> list[str]:
    """Both checks against this host's unit and mounts."""
    found = read_stop_timeout(unit_files())
    return stop_timeout_warnings(config, found) + writable_path_warnings(config, on_read_only_mount)
