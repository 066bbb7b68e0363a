"""Fault injection in a running lab: one function per thing that can go wrong, and its undo.

Apiserver states go through the fake apiserver's control socket; processes are found inside
a node's network namespace (`ip netns pids`, then `/proc/PID/cmdline`) and signalled; the
link is cut with iptables DROP rules on the node's side inside its namespace (in the
dual-homed lab eth1 is the node's uplink to leaf1: an uplink cut); the edge routers (r1, or
both leaves) are poked with vtysh or by restarting their bgpd, a router's bfdd is restarted,
and a router fails whole (`router_down`: its links silent, its daemons killed); commands run
inside a node the way `announcer lab exec` runs them. On a systemd node
(`announcer.lab/init: systemd`) commands run through `nsenter` into its container's PID 1,
the daemon's status socket is reached through that PID's `/proc/PID/root` (sampled ten times
a second, it cannot afford a command per query), and systemd, not the lab, starts the daemon
again. Every function returns once its action is done, so the caller's `time.monotonic()`
taken just before the call is the fault's time.

A node loses power with `power_off` (its processes frozen, then every link silent), and BFD
alone is dropped on a link with `drop_bfd` (UDP 3784 only: BGP's TCP still passes).

Configuration faults go through `override.ConfigOverride` (the repository's files are never
touched); `swap_ca` rewrites the node's lab copy of the cluster CA.

It must not decide what a fault should cause (that is the matrix's) nor watch r1 (`watch`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_interface
from pathlib import Path, PurePosixPath

from announcer.lab import frr, netns, peering, realiser, routers, sysnode, sysplane
from announcer.lab.apiserver.control import ControlError, request
from announcer.lab.fib import IPNetwork
from announcer.lab.netns import LabError
from announcer.lab.topology import Topology
from announcer.status_client import DaemonUnreachable, query

CONFIG = PurePosixPath("/etc/announcer/config.yaml")
KUBE_CA = PurePosixPath("/etc/kubernetes/pki/ca.crt")
RUN_DIR = PurePosixPath("/run/announcer")
_CONTROL = RUN_DIR / "lab-apiserver.sock"
_STATUS = RUN_DIR / "status.sock"
_LINK = "eth1"
_STOP_TIMEOUT = 15.0


def _is_node(argv: tuple[str, ...]) -> bool:
    return _runs_announcer(argv) and "lab" in argv and "node" in argv


def _is_daemon(argv: tuple[str, ...]) -> bool:
    return _runs_announcer(argv) and "run" in argv and "lab" not in argv


def _is_exabgp(argv: tuple[str, ...]) -> bool:
    # `exabgp server ...`, `python -m exabgp server ...`, or through the daemon's launcher:
    # `python -I .../nodump.py .../exabgp server ...`
    program = any(arg == "exabgp" or arg.endswith("/exabgp") for arg in argv[:4])
    return program and "server" in argv


def _is_relay(argv: tuple[str, ...]) -> bool:
    return any(arg.endswith("/relay.py") for arg in argv[:4])


def _is_apiserver(argv: tuple[str, ...]) -> bool:
    return "announcer.lab.apiserver" in argv[:3]


def _runs_announcer(argv: tuple[str, ...]) -> bool:
    # `.../bin/announcer ...` (the console script) or `python -m announcer ...`
    return any(arg == "announcer" or arg.endswith("/announcer") for arg in argv[:3])


# What tells a node's processes apart, from their whole argv (never a substring of one
# argument: `/run/announcer/...` is in the apiserver's argv too).
ROLES: dict[str, Callable[[tuple[str, ...]], bool]] = {
    "node": _is_node,
    "daemon": _is_daemon,
    "exabgp": _is_exabgp,
    "relay": _is_relay,
    "apiserver": _is_apiserver,
}


class FaultError(LabError):
    """A fault could not be injected or undone; the message says which and why."""


_CONTAINERS: dict[str, netns.ProcessId] = {}


def container(topology: Topology, node: str) -> int | None:
    """The PID 1 of `node`'s systemd container, None for a light node."""
    if not sysnode.wants_systemd(topology.nodes[node].labels):
        return None
    name = topology.netns(node)
    known = _CONTAINERS.get(name)
    if known is not None and netns.alive(known):
        return known.pid
    pid = sysnode.container_in(netns.netns_pids(name))
    proc = None if pid is None else netns.process_id(pid)
    if proc is None:
        raise FaultError(f"{node}: its systemd container is not running")
    _CONTAINERS[name] = proc
    return proc.pid


def run_dir_inside(topology: Topology, node: str) -> PurePosixPath:
    """Where the node's lab run directory (`host_path(..., RUN_DIR)`) is seen inside it."""
    return RUN_DIR if container(topology, node) is None else PurePosixPath(sysnode.LAB_RUN)


@dataclass(frozen=True, slots=True)
class NodeProcess:
    pid: int
    argv: tuple[str, ...]


# ---- processes ------------------------------------------------------------------------------


def processes(topology: Topology, node: str) -> list[NodeProcess]:
    """Every process in `node`'s network namespace with its command line."""
    found = []
    for pid in netns.netns_pids(topology.netns(node)):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        found.append(NodeProcess(pid, tuple(raw.decode(errors="replace").split("\0")[:-1])))
    return found


def find(topology: Topology, node: str, role: str) -> NodeProcess | None:
    """The process of `role` (a key of ROLES) in `node`, or None."""
    matches = ROLES[role]
    return next((proc for proc in processes(topology, node) if matches(proc.argv)), None)


def send(topology: Topology, node: str, role: str, sig: signal.Signals) -> int:
    """Send `sig` to `node`'s `role` process; its pid."""
    proc = find(topology, node, role)
    if proc is None:
        raise FaultError(f"{node}: no {role} process to send {sig.name} to")
    kill(proc.pid, sig)
    return proc.pid


_WRITE_AS = """
import sys
try:
    with open(sys.argv[1], "w") as target:
        target.write(sys.argv[2])
except OSError as error:
    print(error.strerror)
else:
    print("written")
"""


def forge_into_relay(topology: Topology, node: str, user: str, *, fd: int, line: str) -> str:
    """Write `line` into descriptor `fd` of `node`'s relay through /proc/<relay>/fd, as a
    process of `user` (ExaBGP's) would: "written", or why not (the error's text)."""
    relay = find(topology, node, "relay")
    if relay is None:
        raise FaultError(f"{node}: no relay process to write to")
    uid, gid = _account(topology, node, user)
    argv = ["/usr/bin/python3", "-I", "-c", _WRITE_AS, f"/proc/{relay.pid}/fd/{fd}", line]
    result = subprocess.run(
        argv,
        user=uid,
        group=gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=5.0,
        check=False,
    )
    return result.stdout.strip() or result.stderr.strip()[-200:] or f"exit {result.returncode}"


def _account(topology: Topology, node: str, user: str) -> tuple[int, int]:
    """`user`'s uid and gid as `node` knows them (a systemd node has its own /etc/passwd)."""
    pid = container(topology, node)
    if pid is None:
        try:
            account = pwd.getpwnam(user)
        except KeyError:
            raise FaultError(f"{node}: no user {user!r} to write as") from None
        return account.pw_uid, account.pw_gid
    passwd = sysnode.path_inside(pid, PurePosixPath("/etc/passwd")).read_text()
    for fields in (entry.split(":") for entry in passwd.splitlines()):
        if fields[0] == user and len(fields) > 3:
            return int(fields[2]), int(fields[3])
    raise FaultError(f"{node}: no user {user!r} in its /etc/passwd to write as")


def kill(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError as exc:
        raise FaultError(f"process {pid} is gone: cannot send {sig.name}") from exc


def wait_gone(pid: int, timeout: float) -> bool:
    """Whether process `pid` exited within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while netns.process_id(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# ---- apiserver and daemon -------------------------------------------------------------------


def host_path(topology: Topology, node: str, inside: PurePosixPath) -> Path:
    source = topology.bind_source(node, inside)
    if source is None:
        raise FaultError(f"{node}: {inside} is not bound from the host")
    return source


def set_apiserver(
    topology: Topology, node: str, state: str, *, delay: float = 0.0, ms: float = 0.0
) -> None:
    """Switch `node`'s fake apiserver to `state` (`ready`, `etcd-down`, `shutdown`, ...)."""
    message: dict[str, object] = {"op": "set", "state": state, "delay": delay, "ms": ms}
    try:
        request(host_path(topology, node, _CONTROL), message, timeout=5.0)
    except (ControlError, OSError) as exc:
        raise FaultError(f"{node}: apiserver {state}: {exc}") from exc


def status(topology: Topology, node: str, *, timeout: float = 0.5) -> dict[str, object] | None:
    """The daemon's status snapshot (`announcer status --json`), or None if unreachable."""
    pid = container(topology, node)
    path = host_path(topology, node, _STATUS) if pid is None else sysnode.path_inside(pid, _STATUS)
    try:
        answer = query(path, {"op": "status"}, timeout=timeout)
    except DaemonUnreachable:
        return None
    snapshot = answer.get("status")
    return dict(snapshot) if isinstance(snapshot, dict) else None


def run_in_node(
    topology: Topology, node: str, argv: Sequence[str], *, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run `argv` inside `node` (as `announcer lab exec` does) to completion."""
    pid = container(topology, node)
    if pid is None:
        command = realiser.node_command(topology, node, argv)
        env = realiser.node_environment(topology, node)
    else:
        command, env = sysnode.inside_argv(pid, argv), dict(sysnode.NODE_ENV)
    try:
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise FaultError(f"{node}: {' '.join(argv)}: no exit within {timeout} s") from exc


def freeze_node(topology: Topology, node: str, *, undo: bool = False) -> None:
    """SIGSTOP (or SIGCONT) every process in `node`'s namespace: its main process, daemon,
    ExaBGP, relay and apiserver stop where they are, as a powered-off host's would."""
    sig = signal.SIGCONT if undo else signal.SIGSTOP
    for proc in processes(topology, node):
        with contextlib.suppress(FaultError):  # gone meanwhile
            kill(proc.pid, sig)


def drain(topology: Topology, node: str, *, undo: bool = False) -> None:
    """`announcer drain` (or `undrain`) inside `node`."""
    argv = ["announcer", "undrain" if undo else "drain"]
    result = run_in_node(topology, node, argv)
    if result.returncode != 0:
        raise FaultError(f"{node}: {' '.join(argv)}: exit {result.returncode}: {result.stderr}")


def restart_node(topology: Topology, node: str) -> None:
    """Stop `node`'s main process (its children in order, the daemon with its graceful
    stop), kill what is left in its namespace, and start the main process anew. On a systemd
    node: `systemctl restart` of the fake apiserver and the service."""
    if container(topology, node) is not None:
        argv = ["systemctl", "restart", sysplane.APISERVER_UNIT, "announcer.service"]
        result = run_in_node(topology, node, argv, timeout=2 * _STOP_TIMEOUT)
        if result.returncode != 0:
            raise FaultError(f"{node}: {' '.join(argv)}: {result.stderr.strip()}")
        return
    spec = topology.nodes[node]
    if not spec.cmd:
        raise FaultError(f"{node} has no main process to restart")
    main = find(topology, node, "node")
    if main is not None:
        kill(main.pid, signal.SIGTERM)
        if not wait_gone(main.pid, _STOP_TIMEOUT):
            raise FaultError(
                f"{node}: main process {main.pid} still there {_STOP_TIMEOUT} s after SIGTERM"
            )
    netns.kill_netns_processes(topology.netns(node))
    log = topology.node_dir(node) / "log" / "main.log"
    argv = realiser.node_command(topology, node, spec.cmd)
    pid = netns.spawn_detached(argv, env=realiser.node_environment(topology, node), log=log)
    _replace_in_record(topology, node, pid)


def _replace_in_record(topology: Topology, node: str, pid: int) -> None:
    """Keep `<lab dir>/state.json` naming the node's live process, for `lab up`'s health."""
    record = realiser.Record.load(topology.lab_dir / realiser.STATE_FILE)
    proc = netns.process_id(pid)
    if record is None or proc is None:
        return
    alive = [
        p
        for p in record.processes
        if netns.alive(netns.ProcessId(int(p["pid"]), int(p["start_time"])))
    ]
    record.processes = [*alive, {"node": node, "pid": proc.pid, "start_time": proc.start_time}]
    record.save()


# ---- network --------------------------------------------------------------------------------


def drop_uplinks(topology: Topology, node: str, *, undo: bool = False) -> None:
    """`drop_link` on every link of `node` (one in the simple lab, both uplinks when
    dual-homed): the node falls silent to every router."""
    ends = [end for link in topology.links for end in (link.a, link.b) if end.node == node]
    for end in ends:
        drop_link(topology, node, undo=undo, link=end.interface)


def drop_link(topology: Topology, node: str, *, undo: bool = False, link: str = _LINK) -> None:
    """Silently drop everything on `node`'s uplink `link` (both directions, IPv4 and IPv6;
    eth1: its only one in the simple lab, the one to leaf1 in the dual-homed lab)."""
    action = "-D" if undo else "-I"
    for tool in ("iptables", "ip6tables"):
        for chain, side in (("INPUT", "-i"), ("OUTPUT", "-o")):
            argv = [
                "ip",
                "netns",
                "exec",
                topology.netns(node),
                tool,
                "-w",
                action,
                chain,
                side,
                link,
                "-j",
                "DROP",
            ]
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
            if result.returncode != 0 and not undo:
                raise FaultError(f"{node}: {' '.join(argv[4:])}: {result.stderr.strip()}")


def link_dropped(topology: Topology, node: str) -> bool:
    argv = ["ip", "netns", "exec", topology.netns(node), "iptables", "-w", "-S", "INPUT"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    return "-j DROP" in result.stdout


def router(topology: Topology) -> str:
    """The lab's one router (r1); a lab with several has no single answer."""
    names = realiser.nodes_with_role(topology, realiser.ROUTER)
    if len(names) != 1:
        raise FaultError(f"{topology.name} has routers {', '.join(names)}: name one")
    return names[0]


def clear_bgp(topology: Topology) -> None:
    """`clear bgp *` on every edge router (r1; both leaves): every node session is reset."""
    for name in routers.edge_routers(topology):
        frr.vtysh(topology.netns(name), "clear bgp *")


def reset_sessions(topology: Topology, node: str) -> dict[tuple[str, str], int]:
    """`clear bgp <address>` on every edge router for its sessions with `node`, as a router
    does on BFD down: it closes them and drops the node's paths; the node's ExaBGP connects
    again at once. Each session's (router, address) -> times it had been Established."""
    before: dict[tuple[str, str], int] = {}
    for name in routers.edge_routers(topology):
        for session in peering.bgp_sessions(topology, name, node):
            before[(name, session.address)] = session.established
    for name, address in before:
        frr.vtysh(topology.netns(name), f"clear bgp {address}")
    if not before:
        raise FaultError(f"{node}: no edge router has a BGP session with it")
    return before


def restart_bgpd(topology: Topology) -> None:
    """Stop every edge router's bgpd (SIGTERM, wait) and start it again, as watchfrr would."""
    for name in routers.edge_routers(topology):
        restart_frr_daemon(topology, name, "bgpd")


def restart_frr_daemon(topology: Topology, name: str, daemon: str) -> None:
    """Stop router `name`'s FRR `daemon` (bgpd, bfdd; SIGTERM, wait) and start it again."""
    pathspace = topology.netns(name)
    pid_file = frr.run_dir(pathspace) / f"{daemon}.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError) as exc:
        raise FaultError(f"{name}: no {daemon} pid: {exc}") from exc
    kill(pid, signal.SIGTERM)
    if not wait_gone(pid, _STOP_TIMEOUT):
        raise FaultError(f"{name}: {daemon} {pid} ignored SIGTERM")
    daemons = frr.parse_daemons(
        host_path(topology, name, PurePosixPath("/etc/frr/daemons")).read_text()
    )
    config = host_path(topology, name, PurePosixPath("/etc/frr/frr.conf"))
    log = topology.node_dir(name) / "log" / f"{daemon}.log"
    argv = [
        "ip", "netns", "exec", pathspace, str(frr.FRR_BIN_DIR / daemon), "-N", pathspace,
        "-f", str(config), "-i", str(pid_file), "--log", f"file:{log}", "-d",
        *daemons.options.get(daemon, ()),
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FaultError(f"{name}: {daemon} did not start again: {result.stderr.strip()}")
    _replace_in_record(topology, name, int(pid_file.read_text().strip()))


def router_down(topology: Topology, name: str) -> None:
    """Router `name` fails silently: every packet in, out and through each of its links
    dropped (no carrier loss, so its neighbors can only notice by BFD or the hold time),
    then every FRR daemon of it SIGKILLed (nothing it says on the way out gets through)."""
    pathspace = topology.netns(name)
    _drop_router(topology, name, "-I")
    for pid_file in sorted(frr.run_dir(pathspace).glob("*.pid")):
        try:
            kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        except (OSError, ValueError, FaultError):
            continue  # not running: down already


def router_up(topology: Topology, name: str) -> None:
    """Undo `router_down` as a failed router comes back, rebooted: its FIB empty (no route or
    nexthop object its killed zebra left behind), its links passing traffic again, its FRR
    daemons started as at `lab up`. FRR 8.4's zebra started over its predecessor's kernel
    routes sometimes leaves a second IPv6 route for a VIP whose next hops it never updates
    again: a node taken out of that leaf's BGP stays in its kernel's ECMP set."""
    pathspace = topology.netns(name)
    _flush_fib(topology, name)
    _drop_router(topology, name, "-D")
    daemons_file = host_path(topology, name, PurePosixPath("/etc/frr/daemons"))
    config = host_path(topology, name, PurePosixPath("/etc/frr/frr.conf"))
    daemons = frr.parse_daemons(daemons_file.read_text())
    log_dir = topology.node_dir(name) / "log"
    started = frr.start_daemons(pathspace, daemons=daemons, config=config, log_dir=log_dir)
    for pid in started.values():
        _replace_in_record(topology, name, pid)


def _flush_fib(topology: Topology, name: str) -> None:
    """Every nexthop object and BGP route of router `name`'s kernel removed."""
    for args in (("nexthop", "flush"), ("-4", "route", "flush", "proto", "bgp"),
                 ("-6", "route", "flush", "proto", "bgp")):  # fmt: skip
        argv = ["ip", "-n", topology.netns(name), *args]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0 and "Nothing to flush" not in result.stderr:
            raise FaultError(f"{name}: {' '.join(argv[3:])}: {result.stderr.strip()}")


def router_is_down(topology: Topology, name: str) -> bool:
    """Whether router `name` still drops what passes through it (a `router_down` not undone)."""
    argv = ["ip", "netns", "exec", topology.netns(name), "iptables", "-w", "-S", "FORWARD"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    return "-j DROP" in result.stdout


def _drop_router(topology: Topology, name: str, action: str) -> None:
    rules = (("INPUT", "-i"), ("OUTPUT", "-o"), ("FORWARD", "-i"))
    for tool in ("iptables", "ip6tables"):
        for interface in _interfaces(topology, name):
            for chain, side in rules:
                argv = [tool, "-w", action, chain, side, interface, "-j", "DROP"]
                command = ["ip", "netns", "exec", topology.netns(name), *argv]
                result = subprocess.run(command, capture_output=True, text=True, check=False)
                if result.returncode != 0 and action == "-I":
                    raise FaultError(f"{name}: {' '.join(argv)}: {result.stderr.strip()}")


def _interfaces(topology: Topology, name: str) -> list[str]:
    ends = [end for link in topology.links for end in (link.a, link.b)]
    return [end.interface for end in ends if end.node == name]


def delete_vip(topology: Topology, node: str, vip: IPNetwork) -> None:
    """Delete `vip` from `node`'s `lo` by hand, as a careless operator would."""
    argv = ["ip", "-n", topology.netns(node), "addr", "del", str(vip), "dev", "lo"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FaultError(f"{node}: {' '.join(argv)}: {result.stderr.strip()}")


def lo_addresses(topology: Topology, node: str) -> frozenset[IPNetwork]:
    argv = ["ip", "-n", topology.netns(node), "-o", "addr", "show", "dev", "lo"]
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    words = (line.split() for line in out.splitlines())
    return frozenset(ip_interface(w[3]).network for w in words if len(w) > 3)


# ---- files ----------------------------------------------------------------------------------


def swap_ca(topology: Topology, node: str, *, wrong: bool) -> None:
    """Make `node`'s cluster CA an unrelated one (or the lab's again). The daemon looks at
    the file before every probe; the fake apiserver read it once at start."""
    target = host_path(topology, node, KUBE_CA)
    source = topology.lab_dir / "pki" / ("other-ca.crt" if wrong else "ca.crt")
    write_in_place(target, source.read_bytes())


def write_in_place(path: Path, data: bytes) -> None:
    # Same inode: a file bind-mounted elsewhere keeps showing the new content.
    with path.open("r+b") as out:
        out.truncate(0)
        out.write(data)


# ---- a node powered off; BFD alone dropped ---------------------------------------------------

# What stops when a node loses power, the daemon first: BFD runs in it, so the node falls
# silent to BFD at once (the frozen processes keep their sockets: nothing is closed).
POWERED = ("daemon", "exabgp", "relay", "apiserver")
BFD_PORT = 3784  # RFC 5881: single-hop BFD control packets go to this UDP port


def power_off(topology: Topology, node: str) -> None:
    """Node `node` loses power, as its routers see it: its daemon, ExaBGP, relay and fake
    apiserver stop (SIGSTOP; none exits, no session is closed), then every link of it
    drops everything silently (no carrier loss). `power_on` undoes it."""
    listed = processes(topology, node)  # once: the processes stop within a millisecond
    found = {role: next((p for p in listed if ROLES[role](p.argv)), None) for role in POWERED}
    missing = [role for role, proc in found.items() if proc is None]
    if missing:
        raise FaultError(f"{node}: no {', '.join(missing)} process to stop")
    for proc in (p for p in found.values() if p is not None):
        kill(proc.pid, signal.SIGSTOP)
    drop_uplinks(topology, node)


def power_on(topology: Topology, node: str) -> None:
    """Undo `power_off`: the links pass traffic again, then the processes go on (SIGCONT)."""
    drop_uplinks(topology, node, undo=True)
    for proc in processes(topology, node):
        if any(ROLES[role](proc.argv) for role in POWERED):
            with contextlib.suppress(FaultError):  # gone meanwhile
                kill(proc.pid, signal.SIGCONT)


def drop_bfd(topology: Topology, node: str, *, undo: bool = False, link: str = _LINK) -> None:
    """Silently drop the single-hop BFD control packets (UDP port 3784) on `node`'s `link`,
    both directions, IPv4 and IPv6: everything else, BGP's TCP included, still passes."""
    action = "-D" if undo else "-I"
    for tool in ("iptables", "ip6tables"):
        for chain, side in (("INPUT", "-i"), ("OUTPUT", "-o")):
            rule = [chain, side, link, "-p", "udp", "--dport", str(BFD_PORT), "-j", "DROP"]
            argv = ["ip", "netns", "exec", topology.netns(node), tool, "-w", action, *rule]
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
            if result.returncode != 0 and not undo:
                raise FaultError(f"{node}: {tool} {action} {' '.join(rule)}: {result.stderr}")


def bfd_dropped(topology: Topology, node: str, *, link: str = _LINK) -> bool:
    """Whether `drop_bfd` rules are in place on `node`'s `link` (a drop not undone)."""
    argv = ["ip", "netns", "exec", topology.netns(node), "iptables", "-w", "-S", "INPUT"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    return any(
        f"-i {link}" in line and f"--dport {BFD_PORT}" in line
        for line in result.stdout.splitlines()
    )
