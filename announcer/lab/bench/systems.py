"""The systems the benchmark compares, and how a lab control-plane node is switched to one.

- `announcer`: the node's announcer daemon with the shipped defaults (the lab's own
  `containerlab/<node>/config.yaml`, which sets only addresses and AS numbers);
- `exabgp-healthcheck`: ExaBGP 5 with `exabgp healthcheck` as its process, checking
  `curl -sf -k https://127.0.0.1:6443/readyz` (the kubeadm HA guide's check), with
  `--withdraw-on-down`, everything else at the checker's defaults;
- `exabgp-healthcheck-matched`: the same with interval, fast interval, rise, fall and timeout
  taken from announcer's defaults (the checker's `--timeout` takes whole seconds only, so the
  0.35 s deadline goes to curl's `--max-time`, with `--timeout 1` behind it);
- `announcer-bfd-100ms`, `announcer-no-bfd` (the dual-homed network's variants): the node's
  own config.yaml with its top-level `bfd` section replaced (100 ms x 3; `enabled: false`),
  rendered into `<lab dir>/<node>/bench/config.yaml`.

A node runs the baseline by the lab node's own plain-ExaBGP stage (`node.choose_speaker`: no
config.yaml in /etc/announcer), given an /etc/announcer bound from `<lab dir>/<node>/bench/`
that holds only the rendered `exabgp.conf` (`exabgp/healthcheck.conf.tmpl`, one session per
IPv4 neighbor of the node's config from `exabgp/healthcheck-neighbor.conf.tmpl`: both leaves
on the dual-homed network); the repository's files are never touched. Switching restarts the
node's main process (`faults.restart_node`) with that bind in place of the topology's. The
baseline announces the IPv4 VIP only: the checker sends `neighbor * announce route ...
next-hop self`, which ExaBGP rejects as a whole for an IPv6 VIP as soon as an IPv4 session
exists.

It must not measure anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import signal
import string
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path, PurePosixPath
from types import MappingProxyType

import yaml

import announcer
from announcer.config import Config, load_config
from announcer.config.model import ApiserverConfig
from announcer.lab import faults
from announcer.lab.fib import IPNetwork
from announcer.lab.netns import LabError
from announcer.lab.node import EXABGP_ENV
from announcer.lab.topology import Topology
from announcer.status_protocol import JSONObject, JSONValue

ANNOUNCER = "announcer"
HEALTHCHECK = "exabgp-healthcheck"
MATCHED = "exabgp-healthcheck-matched"
TEMPLATE = Path("exabgp") / "healthcheck.conf.tmpl"
NEIGHBOR_TEMPLATE = Path("exabgp") / "healthcheck-neighbor.conf.tmpl"
BFD_100MS = "announcer-bfd-100ms"
NO_BFD = "announcer-no-bfd"
READYZ = "https://127.0.0.1:6443/readyz"
_CONFIG_DIR = PurePosixPath("/etc/announcer")
_STOP_TIMEOUT = 15.0


class BenchError(LabError):
    """The benchmark could not set a system up or measure it; the message says why."""


@dataclass(frozen=True)
class System:
    """One contender: its name, a line saying what it is, and for the baseline the options
    of `exabgp healthcheck` beyond the common ones (None: the announcer daemon)."""

    name: str
    summary: str
    options: tuple[str, ...] | None = None
    curl_options: tuple[str, ...] = ()
    bfd: Mapping[str, object] | None = None  # announcer: its top-level `bfd` section instead

    @property
    def is_announcer(self) -> bool:
        return self.options is None

    @property
    def reconfigured(self) -> bool:
        """Whether the node's own /etc/announcer is not what it runs with."""
        return not self.is_announcer or self.bfd is not None


def _matched() -> System:
    api = ApiserverConfig()  # announcer's shipped defaults
    options = (
        "--interval", f"{api.interval:g}", "--fast-interval", f"{api.interval:g}",
        "--rise", str(api.rise), "--fall", str(api.fall),
        "--timeout", str(math.ceil(api.timeout)),
    )  # fmt: skip
    return System(
        MATCHED,
        "the same, interval/rise/fall/timeout set to announcer's defaults",
        options,
        ("--max-time", f"{api.timeout:g}"),
    )


SYSTEMS: tuple[System, ...] = (
    System(ANNOUNCER, "announcer daemon, shipped defaults"),
    System(HEALTHCHECK, "ExaBGP + `exabgp healthcheck`, curl /readyz, defaults", ()),
    _matched(),
)
# The dual-homed network's announcer variants (the leaves' profile accepts down to 100 ms).
VARIANTS: tuple[System, ...] = (
    System(BFD_100MS, "announcer daemon, BFD at 100 ms x 3",
           bfd=MappingProxyType({"enabled": True, "transmit_interval": 0.1,
                                 "receive_interval": 0.1, "detect_multiplier": 3})),
    System(NO_BFD, "announcer daemon, BFD off", bfd=MappingProxyType({"enabled": False})),
)  # fmt: skip
DUAL_SYSTEMS: tuple[System, ...] = (SYSTEMS[0], *VARIANTS, *SYSTEMS[1:])


def by_name(names: Sequence[str]) -> tuple[System, ...]:
    known = {system.name: system for system in DUAL_SYSTEMS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BenchError(f"unknown system {', '.join(unknown)}: one of {', '.join(known)}")
    return tuple(system for system in DUAL_SYSTEMS if system.name in names)


# ---- the baseline's command line and configuration -------------------------------------------


def check_command(system: System) -> str:
    """The shell command the checker runs (`curl -sf -k` as the kubeadm HA guide has it)."""
    return " ".join(["curl", "-sf", "-k", *system.curl_options, READYZ])


def healthcheck_args(system: System, vips: Sequence[IPNetwork]) -> list[str]:
    """`exabgp healthcheck`'s options. `--no-syslog`: the lab has no /dev/log (the checker
    then logs a traceback per line); it logs to ExaBGP's output instead, as it does anyway."""
    if system.options is None:
        raise BenchError(f"{system.name} does not run exabgp healthcheck")
    args = ["--no-syslog", "--cmd", check_command(system), "--withdraw-on-down"]
    for vip in vips:
        args += ["--ip", str(vip)]
    return [*args, *system.options]


def effective_options(args: Sequence[str]) -> JSONObject:
    """What the checker runs with, read by its own argument parser (defaults included)."""
    from exabgp.application import healthcheck  # the baseline's own parser, not a copy

    parser = argparse.ArgumentParser(add_help=False)
    healthcheck.setargs(parser)
    parsed = parser.parse_args(list(args))
    keys = ("interval", "fast", "timeout", "rise", "fall", "withdraw_on_down", "command")
    names = {"fast": "fast_interval"}
    return {names.get(key, key): getattr(parsed, key) for key in keys}


def template_path(template: Path = TEMPLATE) -> Path:
    root = Path(announcer.__file__).resolve().parents[1]
    for candidate in (root / template, Path.cwd() / template):
        if candidate.is_file():
            return candidate
    raise BenchError(f"no {template} next to the package or in the current directory")


def render_exabgp(system: System, config: Config, vips: Sequence[IPNetwork]) -> str:
    """The node's ExaBGP configuration for `system`, from its announcer `config`: one
    session per IPv4 neighbor (the IPv6 ones are left out: the baseline announces the IPv4
    VIP only)."""
    v4 = [n for n in config.bgp.neighbors if n.address.version == 4]
    if not v4:
        raise BenchError("the baseline needs an IPv4 session; bgp.neighbors has none")
    argv = [sys.executable, "-m", "exabgp", "healthcheck", *healthcheck_args(system, vips)]
    block = string.Template(template_path(NEIGHBOR_TEMPLATE).read_text())
    neighbors = [
        block.substitute(
            router_id=str(config.bgp.router_id),
            local_address=str(neighbor.local_address or config.bgp.router_id),
            local_as=str(config.bgp.local_as),
            neighbor=str(neighbor.address),
            peer_as=str(neighbor.peer_as),
            hold_time=str(neighbor.hold_time),
        )
        for neighbor in v4
    ]
    fields = {"run": " ".join(_quote(arg) for arg in argv), "neighbors": "\n".join(neighbors)}
    return string.Template(template_path().read_text()).substitute(fields)


def _quote(arg: str) -> str:
    # ExaBGP's tokeniser keeps a double-quoted string as one argument.
    if '"' in arg or ";" in arg:
        raise BenchError(f"cannot quote {arg!r} for ExaBGP's `run`")
    return f'"{arg}"' if any(c.isspace() for c in arg) else arg


# ---- a node -----------------------------------------------------------------------------------


def node_config(topology: Topology, node: str) -> Config:
    return load_config(faults.host_path(topology, node, faults.CONFIG))


def announced_vips(system: System, topology: Topology) -> tuple[IPNetwork, ...]:
    vips = tuple(topology.vips())
    return vips if system.is_announcer else tuple(v for v in vips if isinstance(v, IPv4Network))


def settings(system: System, topology: Topology, node: str) -> JSONObject:
    """What `system` runs with on `node`, for the record."""
    config = node_config(variant(topology, system, node) if system.bfd else topology, node)
    if system.is_announcer:
        api = config.apiserver
        return {
            "apiserver": {k: getattr(api, k) for k in ("interval", "timeout", "rise", "fall")}
            | {"min_healthy": api.min_healthy},
            "hold_time": max(n.hold_time for n in config.bgp.neighbors),
            "heartbeat_timeout": config.exabgp.heartbeat_timeout,
            "drain_delay": config.drain.delay,
            "vips": [str(v) for v in announced_vips(system, topology)],
            "bfd": dataclasses.asdict(config.bfd),
        }
    args = healthcheck_args(system, announced_vips(system, topology))
    return {
        "healthcheck": effective_options(args),
        "healthcheck_args": list[JSONValue](args),
        "exabgp_env": dict(EXABGP_ENV),
        "hold_time": next(n.hold_time for n in config.bgp.neighbors if n.address.version == 4),
        "vips": [str(v) for v in announced_vips(system, topology)],
    }


def variant(topology: Topology, system: System, node: str) -> Topology:
    """`topology` with `node`'s /etc/announcer bound from where `system` needs it."""
    if not system.reconfigured:
        return topology
    bench_dir = topology.node_dir(node) / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("exabgp.conf", "config.yaml"):
        (bench_dir / stale).unlink(missing_ok=True)
    if system.bfd is not None:
        (bench_dir / "config.yaml").write_text(render_config(topology, node, system.bfd))
    else:
        config = node_config(topology, node)
        vips = announced_vips(system, topology)
        (bench_dir / "exabgp.conf").write_text(render_exabgp(system, config, vips))
    spec = topology.nodes[node]
    binds = tuple(
        dataclasses.replace(b, source=bench_dir) if b.destination == _CONFIG_DIR else b
        for b in spec.binds
    )
    nodes = dict(topology.nodes) | {node: dataclasses.replace(spec, binds=binds)}
    return dataclasses.replace(topology, nodes=MappingProxyType(nodes))


def render_config(topology: Topology, node: str, bfd: Mapping[str, object]) -> str:
    """The node's own config.yaml with its top-level `bfd` section replaced by `bfd`."""
    data = yaml.safe_load(faults.host_path(topology, node, faults.CONFIG).read_text())
    if not isinstance(data, dict):
        raise BenchError(f"{node}: its config.yaml is not a mapping")
    data["bfd"] = dict(bfd)
    return yaml.safe_dump(data, sort_keys=False)


def install(topology: Topology, system: System, nodes: Sequence[str]) -> None:
    """Run `system` on `nodes`: stop their main processes together (announcer's graceful
    stop takes its drain delay), then start each anew with the binds `system` needs."""
    with ThreadPoolExecutor(max_workers=len(nodes) or 1) as pool:
        list(pool.map(lambda node: _stop_main(topology, node), nodes))
    for node in nodes:  # one at a time: each start rewrites the lab's state record
        faults.restart_node(variant(topology, system, node), node)


def _stop_main(topology: Topology, node: str) -> None:
    main = faults.find(topology, node, "node")
    if main is None:
        return
    faults.kill(main.pid, signal.SIGTERM)
    if not faults.wait_gone(main.pid, _STOP_TIMEOUT):
        raise BenchError(f"{node}: main process {main.pid} still there {_STOP_TIMEOUT:g} s later")


# ---- its processes ----------------------------------------------------------------------------


def _is_healthcheck(argv: tuple[str, ...]) -> bool:
    program = any(arg == "exabgp" or arg.endswith("/exabgp") for arg in argv[:3])
    return program and "healthcheck" in argv[:5]


def health_process(topology: Topology, system: System, node: str) -> faults.NodeProcess | None:
    """The process that decides: the daemon, or the baseline's checker."""
    if system.is_announcer:
        return faults.find(topology, node, "daemon")
    procs = faults.processes(topology, node)
    return next((proc for proc in procs if _is_healthcheck(proc.argv)), None)


def speaker_root(topology: Topology, system: System, node: str) -> faults.NodeProcess | None:
    """The process whose tree is everything `system` runs on the node: the daemon (ExaBGP
    and its relay below it), or ExaBGP (the checker and its curls below it)."""
    return faults.find(topology, node, "daemon" if system.is_announcer else "exabgp")


def check_interval(system: System, topology: Topology, node: str) -> float:
    """Seconds between two health checks in the steady state."""
    if system.is_announcer:
        return node_config(topology, node).apiserver.interval
    args = healthcheck_args(system, announced_vips(system, topology))
    return float(str(effective_options(args)["interval"]))
