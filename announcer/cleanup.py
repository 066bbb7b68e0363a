"""After the daemon has exited: take the configured VIPs off their interface.

The daemon removes its VIPs itself when it stops gracefully. When it dies instead (SIGKILL, a
watchdog abort, a crash, a unit that ends `failed`) they stay on the interface, and this
node's own processes keep reaching a VIP that nobody here serves until the next start. The
unit runs `announcer cleanup` as `ExecStopPost=`, which systemd runs on every exit path.

Must not: run while a daemon of this configuration runs (`ExecStopPost=` runs after the main
process is gone; a daemon that is running would put the VIPs back at its next check anyway),
remove any address but the configured VIPs, or touch the interface when `loopback.manage` is
false (the operator manages the addresses then).
"""

from __future__ import annotations

import asyncio

from announcer.config import Config
from announcer.config.model import VipNetwork
from announcer.loopback import Loopback

__all__ = ["remove_vips"]


def remove_vips(config: Config) -> list[VipNetwork]:
    """Remove each configured VIP from `loopback.interface`; the ones that were there.
    Raises `LoopbackError` (naming the VIP and interface) when netlink refuses."""
    if not config.loopback.manage:
        return []
    return asyncio.run(_remove(Loopback(config.loopback.interface), config.vips))


async def _remove(loopback: Loopback, vips: tuple[VipNetwork, ...]) -> list[VipNetwork]:
    return [vip for vip in vips if await loopback.ensure_absent(vip)]
