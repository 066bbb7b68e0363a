"""What the demo looks at and pokes in a running lab, in node names rather than addresses.

`LiveLab` answers: which nodes r1's kernel FIB sends each VIP's traffic to (its nexthops mapped
to node names through the addresses on the nodes' links), which nodes r1 has a BGP route from
(its peers' received-prefix counts); in a lab with several edge routers (the dual-homed
leaves) the union over them: a node is out once no edge router has its path; whether a
node's fake apiserver is listening, and which nodes answer a handful of new HTTPS
connections from the client to the VIPs (curl inside the client, TLS verified as
`kubernetes`). It also sets apiserver states and runs commands inside nodes, as `announcer
lab apiserver` and `announcer lab exec` do.

It must not decide anything (what to expect is the demo's) nor print (that is `narrate`'s).
"""

from __future__ import annotations

import collections
import contextlib
import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

from announcer.lab import frr, realiser, routers
from announcer.lab.apiserver.control import ControlError, request
from announcer.lab.fib import Fib, IPNetwork
from announcer.lab.netns import LabError
from announcer.lab.topology import Topology

CLIENT = "client"
API_NAME, API_PORT = "kubernetes", 6443
CONNECTIONS_PER_VIP = 6
_MARK = "@@demo"
_CONTROL = PurePosixPath("/run/announcer/lab-apiserver.sock")


@dataclass(frozen=True)
class Serving:
    """Per VIP, the nodes r1 sends its traffic to (an unknown gateway appears as its address)."""

    by_vip: Mapping[str, frozenset[str]]

    @property
    def nodes(self) -> frozenset[str]:
        return frozenset().union(*self.by_vip.values())

    def everywhere(self, node: str) -> bool:
        """`node` carries traffic for every VIP."""
        return all(node in nodes for nodes in self.by_vip.values())

    def nowhere(self, node: str) -> bool:
        return node not in self.nodes

    def uniform(self) -> bool:
        """Every VIP goes to the same nodes."""
        return len(set(self.by_vip.values())) <= 1


@dataclass(frozen=True)
class ClientSample:
    """New connections from the client: how many each node answered, and what failed."""

    answers: Mapping[str, int]
    failures: tuple[str, ...]

    @property
    def total(self) -> int:
        return sum(self.answers.values()) + len(self.failures)


class Command:
    """A command running inside a node; its output is kept for when it fails."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self._out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
            env=dict(env),
        )  # fmt: skip

    def exit_code(self) -> int | None:
        """None while it runs."""
        return self._proc.poll()

    def output(self) -> str:
        self._out.seek(0)
        return self._out.read().decode(errors="replace").strip()

    def close(self) -> None:
        """Stop it if it still runs."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._out.close()


class LiveLab:
    """A lab that is up. Close it (or use `with`) to release r1's netlink socket."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.edge = tuple(routers.edge_routers(topology))
        self.router = "+".join(self.edge)  # r1 in the simple lab
        self.control_plane = tuple(realiser.nodes_with_role(topology, realiser.CONTROL_PLANE))
        self.vips: tuple[IPNetwork, ...] = tuple(topology.vips())
        self._fibs = [Fib(topology.netns(router)) for router in self.edge]
        self._names = link_addresses(topology)

    def __enter__(self) -> LiveLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fib in self._fibs:
            fib.close()

    def serving(self) -> Serving:
        by_vip = {}
        for vip in self.vips:
            hops = frozenset().union(*(fib.nexthops(vip) for fib in self._fibs))
            by_vip[str(vip)] = frozenset(self._names.get(str(hop), str(hop)) for hop in hops)
        return Serving(by_vip)

    def announcing(self) -> frozenset[str]:
        """The nodes r1 (an edge router) has received a route from (over any session)."""
        peers = [p for r in self.edge for p in frr.bgp_peers(self.topology.netns(r))]
        names = {self._names.get(p.address, p.address) for p in peers if p.prefixes_received}
        upstream = set(realiser.nodes_with_role(self.topology, realiser.ROUTER))
        return frozenset(names - upstream)

    def apiserver(self, node: str, message: dict[str, object]) -> dict[str, object]:
        """One request to the node's fake apiserver control socket; its answer."""
        sock = self.topology.bind_source(node, _CONTROL)
        if sock is None:
            raise LabError(f"{node} has no fake apiserver control socket")
        try:
            return request(sock, message)
        except (ControlError, OSError) as exc:
            raise LabError(f"{node}'s fake apiserver: {exc}") from exc

    def set_apiserver(self, node: str, state: str, *, delay: float = 0.0) -> None:
        self.apiserver(node, {"op": "set", "state": state, "delay": delay})

    def listening(self, node: str) -> bool:
        return self.apiserver(node, {"op": "get"}).get("listening") is True

    def start(self, node: str, argv: Sequence[str]) -> Command:
        """Start `argv` inside `node`, as `announcer lab exec NODE -- ARGV` does."""
        command = realiser.node_command(self.topology, node, argv)
        return Command(command, realiser.node_environment(self.topology, node))

    def sample(self, per_vip: int = CONNECTIONS_PER_VIP) -> ClientSample:
        """`per_vip` new HTTPS connections to /version through each VIP, from the client."""
        argv = curl_argv(self.topology, self.vips, per_vip)
        command = realiser.node_command(self.topology, CLIENT, argv)
        env = realiser.node_environment(self.topology, CLIENT)
        timeout = 10.0 + 3.0 * per_vip * len(self.vips)
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, env=env, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"curl in {CLIENT} did not finish within {timeout:g} s") from exc
        return parse_curl(result.stdout)


def curl_argv(topology: Topology, vips: Sequence[IPNetwork], per_vip: int) -> list[str]:
    """One curl run: per VIP a group (`--next`) of requests, each on a new connection."""
    url = f"https://{API_NAME}:{API_PORT}/version"
    argv = ["curl"]
    for index, vip in enumerate(vips):
        address = vip.network_address
        host = f"[{address}]" if address.version == 6 else str(address)
        argv += ["--next"] if index else []
        argv += [
            "--silent", "--max-time", "3", "--connect-timeout", "2",
            "--cacert", str(topology.lab_dir / "pki" / "ca.crt"),
            "--resolve", f"{API_NAME}:{API_PORT}:{host}",
            # The server closes after each answer, so the next request needs a new
            # connection: a new source port, which r1 may hash onto another node.
            "--header", "Connection: close",
            "--write-out", f"\n{_MARK} %{{http_code}} %{{exitcode}} %{{errormsg}}\n",
            *[url] * per_vip,
        ]  # fmt: skip
    return argv


def parse_curl(stdout: str) -> ClientSample:
    """Read what `curl_argv` writes: each body, then a mark line with code, exit and error."""
    answers: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    body: list[str] = []
    for line in stdout.splitlines():
        if not line.startswith(_MARK):
            body.append(line)
            continue
        _, code, exit_code, *error = line.split(" ", 3)
        node = _node_of("\n".join(body)) if code == "200" else None
        if node is None:
            failures.append(" ".join(error).strip() or f"HTTP {code}, curl exit {exit_code}")
        else:
            answers[node] += 1
        body = []
    return ClientSample(dict(answers), tuple(failures))


def _node_of(body: str) -> str | None:
    with contextlib.suppress(ValueError):
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(node := data.get("node"), str):
            return node
    return None


def link_addresses(topology: Topology) -> dict[str, str]:
    """Every address on a node's links (not `lo`, which carries the VIPs) -> the node."""
    names: dict[str, str] = {}
    for node in topology.nodes:
        for address in _addresses(topology.netns(node)):
            names[address] = node
    return names


def _addresses(netns: str) -> list[str]:
    argv = ["ip", "-json", "-netns", netns, "address", "show"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {result.stderr.strip()}")
    found: list[str] = []
    links: object = json.loads(result.stdout or "[]")
    for link in links if isinstance(links, list) else []:
        if not isinstance(link, dict) or link.get("ifname") == "lo":
            continue
        for info in link.get("addr_info") or []:
            if isinstance(info, dict) and isinstance(local := info.get("local"), str):
                found.append(local)
    return found
