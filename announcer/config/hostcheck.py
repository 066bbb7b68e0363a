"""Host checks for a valid configuration. Errors: this machine lacks what the daemon needs to
work at all (the ExaBGP user, the loopback interface, an ExaBGP that user can start, a state
directory it can reach). Warnings: things that will not stop the daemon but that the operator
should know (a VIP inside a connected subnet, ARP settings, a missing CA, taken ports).
They never run during parsing.

Every fact is read through `HostView`, whose fields are plain functions: tests pass their own.

Must not: change the host, or fail: a fact that cannot be read gives no finding or says so.
"""

from __future__ import annotations

import grp
import pwd
import socket
import stat
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface, ip_address
from pathlib import Path
from typing import Final

from announcer.config.errors import ConfigError
from announcer.config.model import Config, IPAddress, ListenAddress, VipNetwork
from announcer.config.pathcheck import path_errors
from announcer.config.unitcheck import unit_warnings
from announcer.config.useraccess import EXECUTE, READ, interpreter, nearest_existing, user_can

IPInterface = IPv4Interface | IPv6Interface
BGP_PORT: Final = 179
_TCP_LISTEN: Final = "0A"


def read_sysctl(name: str) -> int | None:
    """An integer sysctl by its /proc/sys path (`net/ipv4/conf/eth0/arp_ignore`)."""
    try:
        return int((Path("/proc/sys") / name).read_text().strip())
    except (OSError, ValueError):
        return None


def read_addresses() -> list[tuple[str, IPInterface]]:
    """(interface name, address with prefix) for every address of this network namespace;
    OSError when netlink refuses."""
    # netlink, imported only when the host is really looked at
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    found: list[tuple[str, IPInterface]] = []
    try:
        with IPRoute() as ipr:
            for message in ipr.get_addr():
                local = message.get_attr("IFA_LOCAL") or message.get_attr("IFA_ADDRESS")
                if local is None:
                    continue
                name = socket.if_indextoname(message["index"])
                family = IPv4Interface if message["family"] == socket.AF_INET else IPv6Interface
                found.append((name, family(f"{local}/{message['prefixlen']}")))
    except NetlinkError as error:
        raise OSError(error.code, str(error)) from error
    return found


def _proc_address(hex_address: str) -> IPAddress:
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":  # /proc prints each 32-bit word in host order
        raw = b"".join(raw[index : index + 4][::-1] for index in range(0, len(raw), 4))
    return ip_address(raw)


def read_tcp_listeners() -> list[ListenAddress]:
    """The listening TCP sockets of this network namespace, from /proc/net/tcp{,6}."""
    listeners: list[ListenAddress] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            columns = line.split()
            if len(columns) > 3 and columns[3] == _TCP_LISTEN:
                host, port = columns[1].split(":")
                listeners.append(ListenAddress(host=_proc_address(host), port=int(port, 16)))
    return listeners


def unix_socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(0.5)
        try:
            client.connect(str(path))
        except OSError:
            return False
    return True


def _file_exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long cannot exist
        return False


def _file_mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode
    except OSError:  # missing or unreadable: load_config reports that, not a warning
        return None


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _interface_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


@dataclass(frozen=True, kw_only=True)
class HostView:
    """How host facts are read; every field defaults to reading this machine."""

    sysctl: Callable[[str], int | None] = read_sysctl
    addresses: Callable[[], Sequence[tuple[str, IPInterface]]] = read_addresses
    tcp_listeners: Callable[[], Collection[ListenAddress]] = read_tcp_listeners
    socket_answers: Callable[[Path], bool] = unix_socket_answers
    file_exists: Callable[[Path], bool] = _file_exists
    file_mode: Callable[[Path], int | None] = _file_mode
    user_exists: Callable[[str], bool] = _user_exists
    group_exists: Callable[[str], bool] = _group_exists
    interface_exists: Callable[[str], bool] = _interface_exists
    # (user, path, READ/EXECUTE bits) -> can the user reach it; None: user or path missing
    user_can: Callable[[str, Path, int], bool | None] = user_can
    interpreter: Callable[[Path], Path | None] = interpreter


@dataclass(frozen=True)
class HostReport:
    """What `host_check` found: `errors` mean the daemon could not work on this host."""

    errors: tuple[ConfigError, ...]
    warnings: tuple[str, ...]


def host_check(config: Config, host: HostView | None = None) -> HostReport:
    """Errors and warnings about this host for a valid configuration."""
    host = host or HostView()
    return HostReport(
        errors=tuple(_host_errors(config, host)), warnings=tuple(_warnings(config, host))
    )


def host_warnings(config: Config, host: HostView | None = None) -> list[str]:
    """The warnings of `host_check` (empty when all is well)."""
    return list(host_check(config, host).warnings)


def _warnings(config: Config, host: HostView) -> list[str]:
    warnings = _file_warnings(config, host) + _secret_warnings(config, host)
    if config.loopback.manage:
        warnings += _subnet_warnings(config, host)
    warnings += _listener_warnings(config, host)
    return warnings + unit_warnings(config)


def _host_errors(config: Config, host: HostView) -> list[ConfigError]:
    errors = []
    user = config.exabgp.user
    if not host.user_exists(user):
        errors.append(ConfigError("exabgp.user", "is not a user on this host", value=user))
    else:
        errors += _exabgp_access_errors(config, host)
    interface = config.loopback.interface
    if config.loopback.manage and not host.interface_exists(interface):
        reason = "is not an interface on this host: the VIPs could not be added"
        errors.append(ConfigError("loopback.interface", reason, value=interface))
    return errors + path_errors(config)


def _exabgp_access_errors(config: Config, host: HostView) -> list[ConfigError]:
    user, binary = config.exabgp.user, config.exabgp.binary
    errors = []
    hint = (
        "(its permissions, or those of a directory on the way, shut it out, e.g. under /root "
        "or a home directory: install under /opt with /usr/bin/python3)"
    )
    if host.user_can(user, binary, EXECUTE) is False:
        reason = f"cannot be executed by the user {user!r} {hint}"
        errors.append(ConfigError("exabgp.binary", reason, value=str(binary)))
    program = host.interpreter(binary)
    if program is not None and host.user_can(user, program, EXECUTE) is False:
        reason = f"names the interpreter {program}, which the user {user!r} cannot run {hint}"
        errors.append(ConfigError("exabgp.binary", reason, value=str(binary)))
    state = nearest_existing(config.state_dir)
    if host.user_can(user, state, READ | EXECUTE) is False:
        reason = (
            f"cannot be reached by the user {user!r} (it cannot search its way to {state}), "
            "which reads its ExaBGP configuration under it"
        )
        errors.append(ConfigError("state_dir", reason, value=str(config.state_dir)))
    return errors


def _file_warnings(config: Config, host: HostView) -> list[str]:
    warnings = []
    ca_file = config.apiserver.ca_file
    if not host.file_exists(ca_file):
        warnings.append(
            f"apiserver.ca_file: {ca_file} does not exist: every probe fails (and nothing is "
            "announced) until it does; kubeadm writes it during `kubeadm init` or `join`"
        )
    group = config.status.group
    if group is not None and not host.group_exists(group):
        warnings.append(f"status.group: no group {group!r} on this host")
    return warnings


def _secret_files(config: Config) -> list[tuple[str, Path]]:
    files = [("apiserver.token_file", config.apiserver.token_file)]
    for index, neighbor in enumerate(config.bgp.neighbors):
        files.append((f"bgp.neighbors[{index}].password_file", neighbor.password_file))
    return [(key, file) for key, file in files if file is not None]


def _secret_warnings(config: Config, host: HostView) -> list[str]:
    warnings = []
    for key, file in _secret_files(config):
        mode = host.file_mode(file)
        if mode is not None and mode & 0o006:
            warnings.append(
                f"{key}: {file} is accessible to every user on this host (mode "
                f"{stat.S_IMODE(mode):04o}): make it 0600 (or 0640 for a trusted group)"
            )
    return warnings


def _subnet_warnings(config: Config, host: HostView) -> list[str]:
    try:
        addresses = host.addresses()
    except OSError as error:
        return [f"cannot list this host's addresses to check the VIPs against them: {error}"]
    warnings = []
    for index, vip in enumerate(config.vips):
        for name, interface in addresses:
            on_link = interface.network.prefixlen < interface.max_prefixlen
            if name == config.loopback.interface or not on_link:
                continue
            if vip.version == interface.version and vip.network_address in interface.network:
                warnings.append(_subnet_warning(host, index, vip, name, interface))
    return warnings


def _subnet_warning(
    host: HostView, index: int, vip: VipNetwork, name: str, interface: IPInterface
) -> str:
    text = (
        f"vips[{index}]: {vip} is inside {interface.network} on {name}: hosts on that link "
        "reach the VIP directly instead of through the routers (no ECMP, no failover); "
        "use an address outside every connected subnet"
    )
    if interface.version == 4:
        arp = _arp_warning(host, name)
        text += f"; {arp}" if arp else "; ARP settings are safe"
    return text


def _arp_warning(host: HostView, interface: str) -> str | None:
    # The kernel applies the larger of the `all` and the per-interface value.
    wanted = {"arp_ignore": 1, "arp_announce": 2}
    wrong = []
    for name, minimum in wanted.items():
        values = [host.sysctl(f"net/ipv4/conf/{scope}/{name}") for scope in ("all", interface)]
        known = [value for value in values if value is not None]
        if not known or max(known) < minimum:
            shown = max(known) if known else "unreadable"
            wrong.append(f"net.ipv4.conf.{{all,{interface}}}.{name} is {shown} (want >= {minimum})")
    if not wrong:
        return None
    return (
        " and ".join(wrong) + f": while announced, this node answers ARP for the VIP on {interface}"
    )


def _conflicts(wanted: ListenAddress, taken: ListenAddress) -> bool:
    same_host = wanted.host == taken.host or wanted.host.is_unspecified or taken.host.is_unspecified
    return wanted.port == taken.port and same_host


def _listener_warnings(config: Config, host: HostView) -> list[str]:
    warnings = []
    listeners = host.tcp_listeners()
    listen = config.metrics.listen
    if listen is not None and not listen.host.is_loopback:
        warnings.append(
            f"metrics.listen: {listen} is not a loopback address: the endpoint has no "
            "authentication, so whoever reaches it reads this node's state"
        )
    if listen is not None and any(_conflicts(listen, taken) for taken in listeners):
        warnings.append(f"metrics.listen: {listen} is already taken by a listening socket")
    if any(taken.port == BGP_PORT for taken in listeners):
        warnings.append(
            f"a process on this host listens on TCP port {BGP_PORT} (bird, bgpd, another "
            "ExaBGP?): if it peers with the same routers from the same address, the sessions "
            "collide"
        )
    if host.socket_answers(config.status.socket):
        warnings.append(
            f"status.socket: {config.status.socket} already answers: is another announcer running?"
        )
    return warnings
