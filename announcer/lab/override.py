"""A writable stand-in for a node's `/etc/announcer/config.yaml`, for configuration faults.

`/etc/announcer` in a node is bound read-only from the repository's `containerlab/<node>/`,
which no fault may touch. So `ConfigOverride.install()` copies the node's config.yaml to
`<lab dir>/<node>/faults/config.yaml` and bind-mounts that copy over
`/etc/announcer/config.yaml` inside the running daemon's own mount namespace (`nsenter -m`:
the node's private namespace, so neither another node nor the host sees it, and a daemon the
node restarts reads it too). `write()` rewrites the copy in place (the bind follows the
inode) and sends the daemon SIGHUP; `remove()` writes the original text back, reloads, and
unmounts. A node whose main process is restarted starts from a fresh mount namespace,
without any override.

It must not decide what a reload should do (the matrix does).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess

from announcer.lab.faults import CONFIG, FaultError, find, host_path, kill, write_in_place
from announcer.lab.topology import Topology


class ConfigOverride:
    """A writable stand-in for a node's `/etc/announcer/config.yaml` (see the module doc)."""

    def __init__(self, topology: Topology, node: str) -> None:
        self.topology, self.node = topology, node
        self.original = host_path(topology, node, CONFIG).read_text()
        self.path = topology.node_dir(node) / "faults" / "config.yaml"
        self._installed = False

    def install(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(self.original)
        self._nsenter(["mount", "--bind", str(self.path), str(CONFIG)])
        self._installed = True

    def write(self, text: str) -> None:
        """Replace the daemon's configuration with `text` and reload it (SIGHUP)."""
        if not self._installed:
            raise FaultError(f"{self.node}: configuration override not installed")
        write_in_place(self.path, text.encode())
        daemon = find(self.topology, self.node, "daemon")
        if daemon is not None:  # none: the node is restarting it, and it will read the file
            kill(daemon.pid, signal.SIGHUP)

    def remove(self) -> None:
        """The original configuration back (reloaded), then the bind mount gone."""
        if not self._installed:
            return
        self.write(self.original)
        with contextlib.suppress(FaultError):
            self._nsenter(["umount", str(CONFIG)])
        self._installed = False

    def _nsenter(self, argv: list[str]) -> None:
        # The node's main process: its mount namespace is the daemon's, whichever daemon.
        node = find(self.topology, self.node, "node")
        if node is None:
            raise FaultError(f"{self.node}: not running")
        command = ["nsenter", "-t", str(node.pid), "-m", *argv]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise FaultError(f"{self.node}: {' '.join(argv)}: {result.stderr.strip()}")
