"""In-node launcher: apply a node's binds inside a private mount namespace, then exec argv.

Run as `python -m announcer.lab.launch [--bind SRC:DST[:ro]]... [--created-log F] -- ARGV...`
from `unshare --mount --propagation private` inside the node's network namespace (see
`netns.node_argv`). It bind-mounts (mount(2)) each source over its destination, read-only
where asked, creating a missing destination (a directory or an empty file, like the source)
after noting in the created-log what it creates on the host, so `lab down` removes it.
It must never mount in the host's own mount namespace: it refuses to run there.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
from collections.abc import Sequence
from pathlib import Path

MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
_EXIT_SETUP = 125  # like `env`/`chroot`: the launcher failed, not the program (126/127)


class LaunchError(Exception):
    pass


def parse_bind(spec: str) -> tuple[Path, Path, bool]:
    """`SRC:DST[:ro|:rw]` -> (source, destination, read_only)."""
    parts = spec.split(":")
    read_only = False
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        read_only = parts.pop() == "ro"
    if len(parts) != 2 or not parts[0].startswith("/") or not parts[1].startswith("/"):
        raise LaunchError(f"bind {spec!r}: expected /SOURCE:/DESTINATION[:ro]")
    return Path(parts[0]), Path(parts[1]), read_only


def mount_namespace(pid: int | str = "self") -> str:
    """The mount namespace of `pid`, e.g. `mnt:[4026531841]`."""
    return str(Path(f"/proc/{pid}/ns/mnt").readlink())


def _check_private(outside: str | None) -> None:
    # The caller names its own mount namespace; without it, compare with our parent's (the
    # caller, since `ip netns exec` and `unshare` exec without forking).
    if mount_namespace() == (outside or mount_namespace(os.getppid())):
        raise LaunchError("not in a private mount namespace: refusing to mount on the host")


def _create_destination(source: Path, destination: Path, created_log: Path | None) -> None:
    # Record the topmost missing ancestor: removing it removes everything created under it.
    top = destination
    while not top.parent.exists():
        top = top.parent
    if created_log is not None:
        with created_log.open("a") as log:
            log.write(f"{top}\n")
    if source.is_dir():
        destination.mkdir(parents=True, exist_ok=True)
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.touch()


def _mount(source: Path | None, target: Path, flags: int) -> None:
    # mount(2) directly: a `mount` process per bind costs more than the rest of the launcher.
    libc = ctypes.CDLL(None, use_errno=True)
    src = None if source is None else os.fsencode(source)
    if libc.mount(src, os.fsencode(target), None, ctypes.c_ulong(flags), None) != 0:
        errno = ctypes.get_errno()
        raise LaunchError(f"mount {source or ''} {target}: {os.strerror(errno)}")


def apply_bind(spec: str, created_log: Path | None) -> None:
    source, destination, read_only = parse_bind(spec)
    if not source.exists():
        raise LaunchError(f"bind {spec!r}: source {source} does not exist")
    if not destination.exists():
        _create_destination(source, destination, created_log)
    _mount(source, destination, MS_BIND)
    if read_only:
        _mount(None, destination, MS_REMOUNT | MS_BIND | MS_RDONLY)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="announcer.lab.launch", description=__doc__)
    parser.add_argument("--bind", action="append", default=[], metavar="SRC:DST[:ro]")
    parser.add_argument("--created-log", type=Path, default=None)
    parser.add_argument("--outside-mntns", default=None, help="the caller's mount namespace")
    parser.add_argument("argv", nargs="+", help="the program and its arguments, after --")
    return parser


def main(args: Sequence[str] | None = None) -> int:
    opts = _parser().parse_args(args)
    try:
        if opts.bind:
            _check_private(opts.outside_mntns)
        for spec in opts.bind:
            apply_bind(spec, opts.created_log)
    except (LaunchError, OSError) as exc:
        print(f"announcer.lab.launch: {exc}", file=sys.stderr)
        return _EXIT_SETUP
    try:
        os.execvp(opts.argv[0], opts.argv)  # noqa: S606 - argv as given, never a shell
    except OSError as exc:
        print(f"announcer.lab.launch: {opts.argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 0  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main())
