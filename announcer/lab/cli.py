"""`announcer lab ...`: a thin command line over the realiser, the node process and the fake
apiserver's control socket. Lab errors become click errors (exit 1) here and nowhere else.
Other lab commands (the demo) attach themselves to the `lab` group.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath

import click

import announcer
from announcer.lab import frr, realiser, sysnode, sysplane
from announcer.lab.apiserver.states import State
from announcer.lab.fib import Fib
from announcer.lab.netns import LabError, list_netns, netns_pids
from announcer.lab.node import NodeError, run_node
from announcer.lab.topology import Topology, TopologyError, load_topology

DEFAULT_TOPOLOGY = Path("containerlab") / "apiserver-vip.clab.yml"
_RUN_ANNOUNCER = PurePosixPath("/run/announcer")
_CONTROL_SOCKET = "lab-apiserver.sock"
_STATUS_SOCKET = "status.sock"  # the daemon's default socket, in its /run/announcer


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (LabError, TopologyError, NodeError) as exc:
        raise click.ClickException(str(exc)) from exc


def default_topology() -> Path:
    """The lab topology of the repository holding this package, else of the current dir."""
    for root in (Path(announcer.__file__).resolve().parents[1], Path.cwd()):
        if (candidate := root / DEFAULT_TOPOLOGY).is_file():
            return candidate
    raise click.ClickException(
        f"no {DEFAULT_TOPOLOGY} next to the package or in the current directory: "
        "pass --topology PATH"
    )


def _topology(path: Path | None) -> Topology:
    with _errors():
        return load_topology(path or default_topology())


topology_option = click.option(
    "--topology", "-t", "topology_path", type=click.Path(path_type=Path, dir_okay=False),
    default=None, envvar="ANNOUNCER_LAB_TOPOLOGY",
    help=f"containerlab topology file [default: {DEFAULT_TOPOLOGY} of the repository]",
)  # fmt: skip


@click.group("lab")
def lab() -> None:
    """The test lab: the containerlab topology realised with network namespaces and host FRR."""


@lab.command()
@topology_option
@click.option("--recreate", is_flag=True, help="Tear down whatever a previous lab left first.")
@click.option(
    "--apiserver-state", type=click.Choice([s.value for s in State]), default=None,
    help="Start every fake apiserver in this state (e.g. stopped: a cold start); "
    "then wait for the BGP sessions only.",
)  # fmt: skip
def up(topology_path: Path | None, recreate: bool, apiserver_state: str | None) -> None:
    """Bring the lab up and wait until every router has every session and every ECMP path.

    Says so and does nothing if the lab is already up and healthy; refuses if a previous lab
    left anything behind (`announcer lab down` first, or --recreate to do that here)."""
    topology = _topology(topology_path)
    with _errors():
        took = realiser.up(
            topology, recreate=recreate, say=click.echo, apiserver_state=apiserver_state
        )
    if took:
        click.echo(f"lab {topology.name} is up in {took:.2f} s")


@lab.command()
@topology_option
def down(topology_path: Path | None) -> None:
    """Remove every namespace, process and file of the lab (works from any half state)."""
    topology = _topology(topology_path)
    with _errors():
        if os.geteuid() != 0:
            raise LabError("the lab needs root: run it with sudo")
        realiser.down(topology, say=click.echo)


@lab.command()
@topology_option
def pki(topology_path: Path | None) -> None:
    """Write the lab PKI only (what `containerlab deploy` needs before it starts)."""
    from announcer.lab.pki import write_lab_pki

    topology = _topology(topology_path)
    sans = [str(vip.network_address) for vip in topology.vips()]
    nodes = realiser.nodes_with_role(topology, realiser.CONTROL_PLANE)
    write_lab_pki(topology.lab_dir, dict.fromkeys(nodes, sans))
    click.echo(f"lab PKI written under {topology.lab_dir}")


@lab.command(
    "exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@topology_option
@click.argument("node")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, topology_path: Path | None, node: str, argv: tuple[str, ...]) -> None:
    """Run ARGV inside NODE (its namespace and binds), e.g. `exec cp1 -- announcer status`."""
    if argv[:1] == ("--",):  # after NODE, click passes `--` through
        argv = argv[1:]
    if not argv:
        raise click.UsageError("no command to run")
    if os.geteuid() != 0:
        raise click.ClickException("entering a lab node needs root: run it with sudo")
    topology = _topology(topology_path)
    if node not in topology.nodes:
        raise click.BadParameter(f"{node!r} is not a node of {topology.name}", param_hint="NODE")
    if topology.netns(node) not in list_netns(topology.netns(node)):
        raise click.ClickException(f"{node} is not running: `announcer lab up` first")
    command = realiser.node_command(topology, node, argv)
    env = realiser.node_environment(topology, node)
    ctx.exit(subprocess.run(command, env=env, check=False).returncode)


@lab.command()
@topology_option
@click.argument("node")
@click.argument("state")
@click.option("--delay", type=float, default=0.0, help="shutdown: seconds before not accepting")
@click.option("--retry-after", is_flag=True, help="shutdown: answer 429 + Retry-After")
@click.option("--ms", type=float, default=0.0, help="slow: answer delay in milliseconds")
def apiserver(
    topology_path: Path | None, node: str, state: str, delay: float, retry_after: bool, ms: float
) -> None:
    """Switch NODE's fake apiserver to STATE (ready, shutdown, stopped, ...)."""
    topology = _topology(topology_path)
    request = {"op": "set", "state": state, "delay": delay, "retry_after": retry_after, "ms": ms}
    answer = _control(topology, node, request)
    phase = answer.get("phase")
    click.echo(
        f"{node}: apiserver {answer.get('state')}" + (f" ({phase})" if phase != "none" else "")
    )


@lab.command()
@click.option("--name", default=None, help="node name [default: $CLAB_LABEL_CLAB_NODE_NAME]")
@click.option("--vips", default=None, help="VIPs [default: $CLAB_LABEL_ANNOUNCER_LAB_VIPS]")
def node(name: str | None, vips: str | None) -> None:
    """A control-plane node's main process: fake apiserver plus its BGP speaker."""
    with _errors():
        sys.exit(run_node(name, vips))


@lab.command()
@topology_option
def status(topology_path: Path | None) -> None:
    """One screen: nodes, fake apiservers, daemons, and every router's BGP sessions,
    installed nexthops and, where it runs bfdd, BFD sessions (r1's; both leaves' and the
    spine's)."""
    topology = _topology(topology_path)
    present = set(list_netns(realiser.namespace_prefix(topology)))
    click.echo(f"lab {topology.name}  ({topology.path})")
    for name in topology.nodes:
        netns = topology.netns(name)
        line = f"  {name:8} {topology.role(name) or '-':14} {netns}"
        line += "" if netns in present else "  (absent)"
        if topology.role(name) == realiser.CONTROL_PLANE and netns in present:
            line += f"  apiserver: {_apiserver_state(topology, name)}"
            line += f"  announcer: {_announcer_state(topology, name)}"
        click.echo(line)
    for router in realiser.nodes_with_role(topology, realiser.ROUTER):
        if topology.netns(router) in present:
            _router_status(topology, router)


def _control(topology: Topology, node: str, request: dict[str, object]) -> dict[str, object]:
    from announcer.lab.apiserver.control import ControlError
    from announcer.lab.apiserver.control import request as control_request

    run_dir = topology.bind_source(node, _RUN_ANNOUNCER) if node in topology.nodes else None
    if run_dir is None:
        raise click.ClickException(f"{node!r} is not a control-plane node of {topology.name}")
    try:
        return dict(control_request(run_dir / _CONTROL_SOCKET, request))
    except ControlError as exc:
        raise click.ClickException(f"{node}: {exc}") from exc
    except OSError as exc:
        raise click.ClickException(f"{node}: fake apiserver unreachable: {exc}") from exc


def _apiserver_state(topology: Topology, node: str) -> str:
    try:
        answer = _control(topology, node, {"op": "get"})
    except click.ClickException as exc:
        return f"? ({exc.message})"
    return str(answer.get("state", answer))


def _announcer_state(topology: Topology, node: str) -> str:
    """The node's announcer daemon, once the node runs one (its config.yaml is bound in)."""
    from announcer.status_client import DaemonUnreachable, query

    config_dir = topology.bind_source(node, PurePosixPath("/etc/announcer"))
    if config_dir is None or not (config_dir / "config.yaml").exists():
        return "- (plain ExaBGP)"
    run_dir = topology.bind_source(node, _RUN_ANNOUNCER)
    if run_dir is None:
        return "? (no /run/announcer bind)"
    if sysnode.wants_systemd(topology.nodes[node].labels):
        found = _systemd_status(topology, node)
        return f"unreachable ({found['error']})" if "error" in found else _describe(found)
    try:
        answer = query(run_dir / _STATUS_SOCKET, {"op": "status"}, timeout=2.0)
    except DaemonUnreachable as exc:
        return f"unreachable ({exc})"
    snapshot = answer.get("status")
    if not isinstance(snapshot, dict):
        return f"? ({answer.get('error', 'no status')})"
    return _describe(snapshot)


def _systemd_status(topology: Topology, node: str) -> dict[str, object]:
    """A systemd node's daemon status: its socket is inside, so the command runs there."""
    pid = sysnode.container_in(netns_pids(topology.netns(node)))
    if pid is None:
        return {"error": "its systemd container is not running"}
    return sysplane.daemon_status(pid)


def _describe(snapshot: Mapping[str, object]) -> str:
    vips = snapshot.get("vips")
    vips = vips if isinstance(vips, list) else []
    count = sum(1 for vip in vips if isinstance(vip, dict) and vip.get("announced") is True)
    if snapshot.get("announced") is True:
        return f"announcing {count}/{len(vips)} VIPs"
    reason = next((str(v.get("reason")) for v in vips if isinstance(v, dict)), "?")
    return f"not announcing ({reason})"


def _router_status(topology: Topology, router: str) -> None:
    netns = topology.netns(router)
    click.echo(f"{router} BGP sessions:")
    try:
        for peer in frr.bgp_peers(netns):
            click.echo(f"  {peer.address:16} {peer.family:12} {peer.state:12} "
                       f"{peer.prefixes_received} received")  # fmt: skip
        click.echo(f"{router} kernel FIB:")
        with Fib(netns) as fib:
            for vip in topology.vips():
                hops = sorted(fib.nexthops(vip), key=str)
                click.echo(f"  {vip!s:22} {len(hops)} via {', '.join(map(str, hops)) or '-'}")
    except LabError as exc:
        click.echo(f"  ? {exc}")
    _bfd_status(topology, router)


def _bfd_status(topology: Topology, router: str) -> None:
    """The router's BFD sessions (`show bfd peers brief`), where its bfdd runs."""
    daemons = topology.bind_source(router, PurePosixPath("/etc/frr/daemons"))
    if daemons is None or "bfdd" not in frr.parse_daemons(daemons.read_text()).enabled:
        return
    click.echo(f"{router} BFD sessions:")
    try:
        lines = frr.vtysh(topology.netns(router), "show bfd peers brief").splitlines()
    except LabError as exc:
        click.echo(f"  ? {exc}")
        return
    for line in lines:
        if line.strip() and not line.startswith(("Session count", "=")):
            click.echo(f"  {line.rstrip()}")


from announcer.lab import demo as _demo  # noqa: E402, F401 - registers `lab demo` on `lab`
from announcer.lab import runner as _runner  # noqa: E402, F401 - registers `lab faults`
from announcer.lab import soak as _soak  # noqa: E402, F401 - registers `lab soak`
from announcer.lab import stress as _stress  # noqa: E402, F401 - registers `lab stress`
from announcer.lab.bench import command as _bench  # noqa: E402, F401 - registers `lab bench`
