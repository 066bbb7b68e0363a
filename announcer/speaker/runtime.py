"""The files ExaBGP's unprivileged user needs, written where it can read them and no one else.

`<state_dir>/exabgp/` (0750, root:<user's group>) holds the relay's copy (0644: its content is
public), exabgp.conf (0640, root:<user's group>: it holds the MD5 passwords) and the relay's
socket (0660, root:<user's group>). Files are replaced atomically, never rewritten in place.

Must not: start processes or render configurations.
"""

from __future__ import annotations

import os
import pwd
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from announcer.speaker import relay
from announcer.speaker.errors import SpeakerError
from announcer.speaker.render import RuntimePaths

DIRECTORY_MODE = 0o750
RELAY_MODE = 0o644
CONFIG_MODE = 0o640
SOCKET_MODE = 0o660


@dataclass(frozen=True)
class Account:
    """The user ExaBGP runs as. `switch` is False when we cannot (not root) or need not."""

    name: str
    uid: int
    gid: int
    switch: bool


def exabgp_account(name: str) -> Account:
    """The account `exabgp.user` names; SpeakerError if it does not exist."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise SpeakerError(f"exabgp.user: no user {name!r} on this host") from None
    switch = os.geteuid() == 0 and entry.pw_uid != 0
    return Account(name=name, uid=entry.pw_uid, gid=entry.pw_gid, switch=switch)


def prepare(paths: RuntimePaths, account: Account) -> None:
    """Create the runtime directory and the relay's copy; check the user can reach them."""
    paths.directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    _own(paths.directory, account, DIRECTORY_MODE)
    _check_reachable(paths.directory.parent, account)
    write_file(paths.relay, Path(relay.__file__).read_bytes(), account=None, mode=RELAY_MODE)


def write_file(path: Path, data: bytes, *, account: Account | None, mode: int) -> None:
    """Replace `path` atomically; group-owned by `account`'s group when given."""
    # The temporary file starts 0600 (mkstemp), so a secret is never readable by others.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        if account is not None:
            _own(temporary, account, mode)
        else:
            temporary.chmod(mode)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def own_socket(path: Path, account: Account) -> None:
    _own(path, account, SOCKET_MODE)


def _own(path: Path, account: Account, mode: int) -> None:
    if os.geteuid() == 0:
        os.chown(path, 0, account.gid)
    path.chmod(mode)


def _check_reachable(directory: Path, account: Account) -> None:
    """SpeakerError unless `account` may traverse every directory down to `directory`."""
    for ancestor in (directory, *directory.parents):
        info = ancestor.stat()
        if info.st_uid == account.uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == account.gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            raise SpeakerError(
                f"{ancestor} (mode {stat.S_IMODE(info.st_mode):04o}) does not let exabgp.user "
                f"{account.name!r} reach {directory}: allow it to search (x) this directory"
            )
