"""Host checks: facts read through HostView, faked here, and the real readers on this host."""

from __future__ import annotations

import os
import pwd
import socket
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, ip_address, ip_interface
from pathlib import Path

import pytest
import yaml

from announcer.config import (
    Config,
    HostView,
    ListenAddress,
    host_check,
    host_warnings,
    parse_config,
)
from announcer.config.hostcheck import (
    read_addresses,
    read_sysctl,
    read_tcp_listeners,
    unix_socket_answers,
)
from announcer.config.useraccess import EXECUTE, READ, interpreter, user_can

SNIPPETS = Path(__file__).parent / "config_snippets"
IPInterface = IPv4Interface | IPv6Interface


def config(vip: str = "198.51.100.10/32", **sections: object) -> Config:
    document = yaml.safe_load((SNIPPETS / "minimal.yaml").read_text())
    document["vips"] = [vip]
    document.update(sections)
    return parse_config(document)


def host(
    *,
    addresses: Sequence[tuple[str, str]] = (("lo", "127.0.0.1/8"),),
    sysctls: Mapping[str, int] | None = None,
    listeners: Sequence[ListenAddress] = (),
    socket_answers: bool = False,
) -> HostView:
    """A quiet host: ARP sysctls set, the CA, user and group exist, nothing listens."""
    quiet = {"net/ipv4/conf/all/arp_ignore": 1, "net/ipv4/conf/all/arp_announce": 2}
    values = quiet if sysctls is None else dict(sysctls)
    interfaces: list[tuple[str, IPInterface]] = [
        (name, ip_interface(address)) for name, address in addresses
    ]
    return HostView(
        sysctl=values.get,
        addresses=lambda: interfaces,
        tcp_listeners=lambda: listeners,
        socket_answers=lambda path: socket_answers,
        file_exists=lambda path: True,
        user_exists=lambda name: True,
        group_exists=lambda name: True,
        interface_exists=lambda name: True,
        user_can=lambda user, path, want: True,
        interpreter=lambda path: None,
    )


ETH0 = (("lo", "127.0.0.1/8"), ("eth0", "198.51.100.2/24"))
OUTSIDE = (("lo", "127.0.0.1/8"), ("eth0", "192.0.2.2/24"))
SUBNET = (
    "vips[0]: 198.51.100.10/32 is inside 198.51.100.0/24 on eth0: hosts on that link reach "
    "the VIP directly instead of through the routers (no ECMP, no failover); use an address "
    "outside every connected subnet"
)


def test_quiet_host_gives_no_warning() -> None:
    assert host_check(config(), host(addresses=OUTSIDE)) == host_check(config(), host())
    assert host_warnings(config(), host(addresses=OUTSIDE)) == []
    assert host_check(config(), host(addresses=OUTSIDE)).errors == ()


def test_vip_in_a_connected_subnet_warns_and_names_the_arp_sysctls() -> None:
    sysctls = {"net/ipv4/conf/all/arp_ignore": 0, "net/ipv4/conf/eth0/arp_announce": 1}
    assert host_warnings(config(), host(addresses=ETH0, sysctls=sysctls)) == [
        f"{SUBNET}; net.ipv4.conf.{{all,eth0}}.arp_ignore is 0 (want >= 1) and "
        "net.ipv4.conf.{all,eth0}.arp_announce is 1 (want >= 2): "
        "while announced, this node answers ARP for the VIP on eth0"
    ]


@pytest.mark.parametrize(
    "sysctls",
    [
        {"net/ipv4/conf/all/arp_ignore": 1, "net/ipv4/conf/all/arp_announce": 2},
        # the kernel takes the larger of `all` and the interface's own value
        {"net/ipv4/conf/eth0/arp_ignore": 2, "net/ipv4/conf/all/arp_announce": 2},
    ],
)
def test_arp_sysctls_set_only_shorten_the_warning(sysctls: dict[str, int]) -> None:
    assert host_warnings(config(), host(addresses=ETH0, sysctls=sysctls)) == [
        f"{SUBNET}; ARP settings are safe"
    ]


def test_arp_is_not_checked_when_the_vip_is_not_managed() -> None:
    unmanaged = config(loopback={"manage": False})
    assert host_warnings(unmanaged, host(addresses=ETH0)) == []


def test_vip_outside_connected_subnets_is_fine_and_ipv6_inside_warns() -> None:
    addresses = (("eth0", "192.0.2.2/24"), ("eth0", "2001:db8:1::2/64"))
    v6 = config(
        vip="2001:db8:100::10/128",
        bgp={
            "router_id": "192.0.2.2",
            "local_as": 65100,
            "neighbors": [{"address": "2001:db8:1::1", "peer_as": 65000}],
        },
    )
    assert host_warnings(config(), host(addresses=addresses)) == []
    assert host_warnings(v6, host(addresses=addresses)) == []
    inside = (("eth0", "2001:db8:100::2/64"),)
    assert host_warnings(v6, host(addresses=inside)) == [
        "vips[0]: 2001:db8:100::10/128 is inside 2001:db8:100::/64 on eth0: hosts on that "
        "link reach the VIP directly instead of through the routers (no ECMP, no failover); "
        "use an address outside every connected subnet"
    ]


def test_missing_ca_user_group_and_interface() -> None:
    view = HostView(
        sysctl=lambda name: None,
        addresses=lambda: [],
        tcp_listeners=lambda: [],
        socket_answers=lambda path: False,
        file_exists=lambda path: False,
        user_exists=lambda name: False,
        group_exists=lambda name: False,
        interface_exists=lambda name: False,
    )
    report = host_check(config(status={"group": "ops"}, loopback={"interface": "dummy0"}), view)
    assert report.warnings == (
        "apiserver.ca_file: /etc/kubernetes/pki/ca.crt does not exist: every probe fails "
        "(and nothing is announced) until it does; kubeadm writes it during `kubeadm init` "
        "or `join`",
        "status.group: no group 'ops' on this host",
    )
    assert [str(error) for error in report.errors] == [
        "exabgp.user: 'exabgp' is not a user on this host",
        "loopback.interface: 'dummy0' is not an interface on this host: the VIPs could not "
        "be added",
    ]


def test_an_unmanaged_loopback_interface_is_not_looked_up() -> None:
    view = HostView(**{**vars(host()), "interface_exists": lambda name: False})
    assert host_check(config(loopback={"manage": False}), view).errors == ()


def test_an_exabgp_its_user_cannot_start_is_an_error() -> None:
    venv = Path("/root/venv/bin/exabgp")
    python = Path("/root/.pyenv/versions/3.12.0/bin/python3")
    blocked = {venv: False, python: False, Path("/var/lib"): True}
    view = HostView(
        **{
            **vars(host()),
            "user_can": lambda user, path, want: blocked.get(path),
            "interpreter": lambda path: python,
        }
    )
    report = host_check(config(exabgp={"binary": str(venv)}), view)
    assert [error.path for error in report.errors] == ["exabgp.binary", "exabgp.binary"]
    assert "cannot be executed by the user 'exabgp'" in str(report.errors[0])
    assert f"names the interpreter {python}" in str(report.errors[1])
    assert "under /root" in str(report.errors[1])


def test_a_state_dir_its_user_cannot_reach_is_an_error(tmp_path: Path) -> None:
    state = tmp_path / "private" / "state"
    view = HostView(
        **{**vars(host()), "user_can": lambda user, path, want: path != tmp_path / "private"}
    )
    (tmp_path / "private").mkdir()
    report = host_check(config(state_dir=str(state)), view)
    assert [error.path for error in report.errors] == ["state_dir"]


def test_conflicting_listeners() -> None:
    listeners = [
        ListenAddress(host=ip_address("0.0.0.0"), port=9470),  # noqa: S104 - data, no bind
        ListenAddress(host=ip_address("::"), port=179),
    ]
    with_metrics = config(metrics={"listen": "127.0.0.1:9470"})
    assert host_warnings(with_metrics, host(listeners=listeners, socket_answers=True)) == [
        "metrics.listen: 127.0.0.1:9470 is already taken by a listening socket",
        "a process on this host listens on TCP port 179 (bird, bgpd, another ExaBGP?): if it "
        "peers with the same routers from the same address, the sessions collide",
        "status.socket: /run/announcer/status.sock already answers: is another announcer running?",
    ]


def test_other_ports_and_addresses_do_not_conflict() -> None:
    listeners = [
        ListenAddress(host=ip_address("127.0.0.1"), port=9471),
        ListenAddress(host=ip_address("127.0.0.2"), port=9470),
    ]
    with_metrics = config(metrics={"listen": "127.0.0.1:9470"})
    assert host_warnings(with_metrics, host(listeners=listeners)) == []


def test_on_this_machine_a_vip_in_a_connected_subnet() -> None:
    # Real addresses of this network namespace, faked sysctls: pick a connected IPv4 subnet.
    connected = [
        (name, interface)
        for name, interface in read_addresses()
        if isinstance(interface, IPv4Interface)
        and name != "lo"
        and interface.network.prefixlen <= 30
    ]
    if not connected:
        pytest.skip("no connected IPv4 subnet besides loopback here")
    name, interface = connected[0]
    vip = next(a for a in interface.network.hosts() if a != interface.ip)
    view = HostView(
        sysctl=lambda key: 0,
        tcp_listeners=lambda: [],
        socket_answers=lambda path: False,
        file_exists=lambda path: True,
        user_exists=lambda user: True,
    )
    warnings = host_warnings(config(vip=f"{vip}/32"), view)
    assert warnings == [
        f"vips[0]: {vip}/32 is inside {interface.network} on {name}: hosts on that link reach "
        "the VIP directly instead of through the routers (no ECMP, no failover); use an "
        "address outside every connected subnet; "
        f"net.ipv4.conf.{{all,{name}}}.arp_ignore is 0 (want >= 1) and "
        f"net.ipv4.conf.{{all,{name}}}.arp_announce is 0 (want >= 2): "
        f"while announced, this node answers ARP for the VIP on {name}"
    ]


def test_real_readers_see_this_host(tmp_path: Path) -> None:
    assert ("lo", IPv4Interface("127.0.0.1/8")) in read_addresses()
    assert read_sysctl("net/ipv4/conf/all/arp_ignore") in (0, 1, 2, 3, 8)
    assert read_sysctl("net/ipv4/conf/no-such-interface/arp_ignore") is None
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert ListenAddress(host=IPv4Address("127.0.0.1"), port=port) in read_tcp_listeners()
    path = tmp_path / "status.sock"
    assert not unix_socket_answers(path)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        assert unix_socket_answers(path)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user can search (pytest's own tmp_path is 0700)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as name:
        folder = Path(name)
        folder.chmod(0o755)
        yield folder


def test_user_access_reads_the_real_permission_bits(open_dir: Path) -> None:
    try:
        user = pwd.getpwnam("exabgp").pw_name
    except KeyError:
        pytest.skip("no exabgp user on this host (scripts/setup creates it)")
    if os.geteuid() != 0:
        pytest.skip("needs root: files owned by another user than exabgp")
    tmp_path = open_dir
    home = tmp_path / "home"
    program = home / "bin" / "exabgp"
    program.parent.mkdir(parents=True)
    program.write_text("#!/root/.pyenv/bin/python3 -u\n")
    program.chmod(0o755)
    home.chmod(0o700)
    assert user_can(user, program, EXECUTE) is False
    home.chmod(0o755)
    assert user_can(user, program, EXECUTE) is True
    assert user_can(user, program, READ | EXECUTE) is True
    program.chmod(0o700)
    assert user_can(user, program, EXECUTE) is False
    assert user_can(user, tmp_path / "missing", READ) is None
    assert user_can("no-such-user-here", program, READ) is None
    assert interpreter(program) == Path("/root/.pyenv/bin/python3")
