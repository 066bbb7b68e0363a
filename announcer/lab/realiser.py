"""Realise a containerlab topology with network namespaces and host FRR: `up`, `down`, health.

`up` builds the lab step by step and notes every thing it is about to create in
`<lab dir>/state.json` before creating it, so `down` can clean up after a crash half-way.
With `apiserver_state` (a cold start: every fake apiserver starts `stopped`, say) nothing is
announced yet, so `up` waits for the BGP sessions only.
`down` needs no record: it stops every process in every `<prefix>-<lab>-*` namespace, deletes
those namespaces (their veths go with them), FRR's run directories, the bind destinations the
lab had to create on the host, and the lab dir. It is idempotent.
What runs inside a node is `netns`'s business, FRR's `frr`'s, and a node labelled
`announcer.lab/init: systemd` is `sysnode`'s and `sysplane`'s (`down` powers those off
first, so their service drains, and unmounts their roots); this module only sequences.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from announcer.lab import frr, netns, routers, sysnode, sysplane
from announcer.lab.fib import Fib, wait_for
from announcer.lab.netns import LabError, ProcessId
from announcer.lab.node import APISERVER_STATE_ENV
from announcer.lab.pki import write_lab_pki
from announcer.lab.routers import CONTROL_PLANE as CONTROL_PLANE  # re-exported
from announcer.lab.routers import ROUTER as ROUTER  # re-exported
from announcer.lab.routers import nodes_with_role as nodes_with_role  # re-exported
from announcer.lab.topology import Topology

STATE_FILE = "state.json"
# Mount points the launcher had to create on the host (/etc/kubernetes/pki, ...). Shared by
# every lab on the machine: they are removed when the last lab goes down, not before, since
# removing one detaches it from the other labs' node mount namespaces too.
CREATED_LOG = Path("/run/announcer-lab/created-paths")
CONVERGE_TIMEOUT = 20.0
_FRR_DAEMONS = PurePosixPath("/etc/frr/daemons")
_FRR_CONF = PurePosixPath("/etc/frr/frr.conf")
_REQUIRED_TOOLS = ("ip", "unshare", "mount")

Say = Callable[[str], None]


class NotConverged(LabError):
    """The lab was built but a router did not get every session and path in time; it is
    left up."""


@dataclass
class Record:
    """What `up` created or is about to create; saved on every change."""

    path: Path
    lab: str
    completed: bool = False
    namespaces: list[str] = field(default_factory=list)
    run_dirs: list[str] = field(default_factory=list)
    processes: list[dict[str, str | int]] = field(default_factory=list)

    def note(self, kind: str, value: object) -> None:
        getattr(self, kind).append(value)
        self.save()

    def process_ids(self) -> list[ProcessId]:
        return [ProcessId(int(p["pid"]), int(p["start_time"])) for p in self.processes]

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(self.path)

    @classmethod
    def load(cls, path: Path) -> Record | None:
        """The record at `path`; None if there is none or it is unreadable."""
        try:
            data = json.loads(path.read_text())
            record = cls(
                path, str(data["lab"]), completed=data.get("completed") is True,
                namespaces=[str(x) for x in data.get("namespaces", [])],
                run_dirs=[str(x) for x in data.get("run_dirs", [])],
                processes=[dict(p) for p in data.get("processes", [])],
            )  # fmt: skip
            record.process_ids()
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return record


def namespace_prefix(topology: Topology) -> str:
    node = next(iter(topology.nodes))
    return topology.netns(node).removesuffix(node)


def _env_key(label: str) -> str:
    return "CLAB_LABEL_" + re.sub(r"[^A-Za-z0-9_]", "_", label).upper()


def node_environment(topology: Topology, node: str) -> dict[str, str]:
    """What containerlab exports into a node: its labels as CLAB_LABEL_*, plus its env."""
    spec = topology.nodes[node]
    labels = {
        "containerlab": topology.name,
        "clab-node-name": node,
        "clab-node-longname": topology.netns(node),
        "clab-node-kind": spec.kind,
        "clab-node-group": spec.group or "",
        "clab-node-lab-dir": str(topology.node_dir(node)),
        "clab-topo-file": str(topology.path),
        **spec.labels,
    }
    env = {_env_key(key): value for key, value in labels.items()}
    links = sum((link.a.node, link.b.node).count(node) for link in topology.links)
    env["CLAB_INTFS"] = str(links)
    return netns.node_env({**env, **spec.env})


def node_command(topology: Topology, node: str, argv: Sequence[str]) -> list[str]:
    """argv running `argv` inside `node`: its namespace, its binds."""
    CREATED_LOG.parent.mkdir(parents=True, exist_ok=True)
    created = CREATED_LOG
    binds = topology.nodes[node].binds
    return netns.node_argv(topology.netns(node), argv, binds=binds, created_log=created)


def preflight(topology: Topology) -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, mounts): run it with sudo")
    missing = [tool for tool in _REQUIRED_TOOLS if shutil.which(tool) is None]
    if any(frr.is_frr_image(spec.image) for spec in topology.nodes.values()):
        missing += frr.missing_binaries()
    if missing:
        raise LabError(f"missing on this host: {', '.join(missing)} (Debian: apt install frr)")
    if not topology.vips():
        raise LabError(f"{topology.path}: no VIPs (label announcer.lab/vips) on any node")
    if _systemd_nodes(topology) and (lacking := sysnode.missing_tools()):
        raise LabError(
            f"{sysnode.INIT_LABEL}: systemd nodes need {', '.join(lacking)} "
            "(Debian: apt install systemd-container)"
        )


def _systemd_nodes(topology: Topology) -> list[str]:
    return [node for node, spec in topology.nodes.items() if sysnode.wants_systemd(spec.labels)]


def leftovers(topology: Topology) -> list[str]:
    """What a previous lab left: its namespaces and its state record."""
    found = [f"namespace {name}" for name in netns.list_netns(namespace_prefix(topology))]
    if (topology.lab_dir / STATE_FILE).exists():
        found.append(f"state record {topology.lab_dir / STATE_FILE}")
    return found


# ---- health ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Convergence:
    """BGP sessions Established out of all, and per FIB entry (a VIP, or `router VIP` when
    the lab has several routers) how many next hops are installed against how many are
    expected (`expected`, else `expected_nexthops` for every entry)."""

    established: int
    peers: int
    nexthops: Mapping[str, int]
    expected_nexthops: int
    expected: Mapping[str, int] = field(default_factory=dict)

    @property
    def sessions_up(self) -> bool:
        return self.peers > 0 and self.established == self.peers

    @property
    def done(self) -> bool:
        wanted = self.expected
        paths = all(
            n == wanted.get(key, self.expected_nexthops) for key, n in self.nexthops.items()
        )
        return self.sessions_up and paths

    def __str__(self) -> str:
        fib = ", ".join(f"{vip} via {n}" for vip, n in self.nexthops.items())
        return f"BGP {self.established}/{self.peers} Established; FIB {fib}"


def convergence(topology: Topology) -> Convergence:
    """Every router's BGP sessions and, per VIP, how many next hops its kernel has installed:
    an edge router (r1; each leaf) one per control-plane node linked to it, a router above
    the edge (the spine) one per edge router linked to it."""
    names = nodes_with_role(topology, ROUTER)
    established = peers = 0
    paths: dict[str, int] = {}
    expected: dict[str, int] = {}
    for router in names:
        sessions = frr.bgp_peers(topology.netns(router))
        established += sum(p.state == "Established" for p in sessions)
        peers += len(sessions)
        label = "" if len(names) == 1 else f"{router} "
        with Fib(topology.netns(router)) as fib:
            for vip in topology.vips():
                paths[f"{label}{vip}"] = len(fib.nexthops(vip))
                expected[f"{label}{vip}"] = routers.expected_paths(topology, router)
    return Convergence(
        established=established, peers=peers, nexthops=paths,
        expected_nexthops=len(nodes_with_role(topology, CONTROL_PLANE)), expected=expected,
    )  # fmt: skip


def healthy(topology: Topology, record: Record | None) -> bool:
    if record is None or not record.completed:
        return False
    if set(record.namespaces) - set(netns.list_netns(namespace_prefix(topology))):
        return False
    if not all(netns.alive(proc) for proc in record.process_ids()):
        return False
    try:
        return convergence(topology).done
    except LabError:
        return False


# ---- up -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _step(say: Say, what: str, start: float) -> Iterator[None]:
    yield
    say(f"[{time.monotonic() - start:5.2f} s] {what}")


def up(
    topology: Topology,
    *,
    recreate: bool = False,
    say: Say = print,
    apiserver_state: str | None = None,
) -> float:
    """Bring the lab up and wait until it has converged (with `apiserver_state` other than
    ready: until every BGP session is up); seconds it took (0 if already up)."""
    start = time.monotonic()
    preflight(topology)
    if found := leftovers(topology):
        if healthy(topology, Record.load(topology.lab_dir / STATE_FILE)):
            say(f"lab {topology.name} is already up")
            return 0.0
        if not recreate:
            raise LabError(
                f"lab {topology.name} is there but not (or not yet) healthy ({'; '.join(found)}): "
                "run `announcer lab down` first (or `announcer lab up --recreate`)"
            )
        say(f"lab {topology.name}: removing what a previous run left ({'; '.join(found)})")
        down(topology, say=say)
    topology.lab_dir.mkdir(parents=True, exist_ok=True)
    record = Record(topology.lab_dir / STATE_FILE, topology.name)
    record.save()
    try:
        _build(topology, record, say, start, apiserver_state)
        _converge(topology, say, start, sessions_only=apiserver_state not in (None, "ready"))
    except NotConverged:
        raise
    except BaseException:  # including Ctrl-C: leave nothing half-built behind
        say("up failed: tearing the lab down")
        down(topology, say=say)
        raise
    record.completed = True
    record.save()
    return time.monotonic() - start


def _build(
    topology: Topology, record: Record, say: Say, start: float, apiserver_state: str | None
) -> None:
    with _step(say, "lab PKI and node directories", start):
        _prepare_dirs(topology)
    with _step(say, f"{len(topology.nodes)} namespaces", start):
        for node in topology.nodes:
            record.note("namespaces", topology.netns(node))
            netns.add_netns(topology.netns(node))
    with _step(say, f"{len(topology.links)} links", start):
        for link in topology.links:
            a, b = link.a, link.b
            netns.add_veth(topology.netns(a.node), a.interface, topology.netns(b.node), b.interface)
    with _step(say, "exec commands", start), ThreadPoolExecutor() as pool:
        list(pool.map(lambda node: _run_exec(topology, node, say), topology.nodes))
    with _step(say, "node processes", start):
        for node in topology.nodes:
            _start_node(topology, node, record, apiserver_state)


def _prepare_dirs(topology: Topology) -> None:
    control_plane = nodes_with_role(topology, CONTROL_PLANE)
    sans = [str(vip.network_address) for vip in topology.vips()]
    write_lab_pki(topology.lab_dir, dict.fromkeys(control_plane, sans))
    for node, spec in topology.nodes.items():
        (topology.node_dir(node) / "log").mkdir(parents=True, exist_ok=True)
        for bind in spec.binds:
            if bind.source.exists():
                continue
            if topology.lab_dir not in bind.source.parents:
                raise LabError(f"{node}: bind source {bind.source} does not exist")
            bind.source.mkdir(parents=True)  # as Docker does for a missing bind source


def _run_exec(topology: Topology, node: str, say: Say) -> None:
    env = node_environment(topology, node)
    log = topology.node_dir(node) / "log" / "exec.log"
    for argv in topology.nodes[node].exec:
        error = netns.run(node_command(topology, node, argv), env=env)
        with log.open("a") as out:
            out.write(f"$ {' '.join(argv)}\n{error or 'ok'}\n")
        if error:  # as containerlab: logged, not fatal
            say(f"{node}: exec {' '.join(argv)!r} failed: {error}")


def _start_node(
    topology: Topology, node: str, record: Record, apiserver_state: str | None = None
) -> None:
    spec = topology.nodes[node]
    name = topology.netns(node)
    if frr.is_frr_image(spec.image):
        daemons_file = _bind_file(topology, node, _FRR_DAEMONS)
        config = _bind_file(topology, node, _FRR_CONF)
        record.note("run_dirs", str(frr.run_dir(name)))
        daemons = frr.parse_daemons(daemons_file.read_text())
        log_dir = topology.node_dir(node) / "log"
        pids = frr.start_daemons(name, daemons=daemons, config=config, log_dir=log_dir)
        for pid in pids.values():
            _note_process(record, node, pid)
    elif sysnode.wants_systemd(spec.labels):
        sysplane.start_control_plane(
            topology, node, apiserver_state=apiserver_state,
            on_spawn=lambda pid: _note_process(record, node, pid),
        )  # fmt: skip
    elif spec.cmd:
        log = topology.node_dir(node) / "log" / "main.log"
        argv = node_command(topology, node, spec.cmd)
        env = node_environment(topology, node)
        env.pop(APISERVER_STATE_ENV, None)  # only `up`'s argument says, not the caller's env
        if apiserver_state:
            env[APISERVER_STATE_ENV] = apiserver_state
        pid = netns.spawn_detached(argv, env=env, log=log)
        _note_process(record, node, pid)


def _bind_file(topology: Topology, node: str, inside: PurePosixPath) -> Path:
    source = topology.bind_source(node, inside)
    if source is None or not source.is_file():
        raise LabError(f"{node}: an FRR node needs {inside} bound to a file (binds:)")
    return source


def _note_process(record: Record, node: str, pid: int) -> None:
    if (proc := netns.process_id(pid)) is not None:
        record.note("processes", {"node": node, "pid": proc.pid, "start_time": proc.start_time})


def _converge(topology: Topology, say: Say, start: float, *, sessions_only: bool = False) -> None:
    last: list[Convergence | str] = ["no answer yet"]

    def converged() -> Convergence | None:
        try:
            now: Convergence | str = convergence(topology)
        except LabError as exc:  # bgpd still starting
            now = str(exc)
        done = isinstance(now, Convergence) and (now.sessions_up if sessions_only else now.done)
        if isinstance(now, Convergence) and str(now) != str(last[0]) and not done:
            say(f"[{time.monotonic() - start:5.2f} s] {now}")
        last[0] = now
        return now if isinstance(now, Convergence) and done else None

    remaining = CONVERGE_TIMEOUT - (time.monotonic() - start)
    try:
        state = wait_for(converged, max(remaining, 1.0), interval=0.05)
    except TimeoutError:
        raise NotConverged(
            f"lab {topology.name} did not converge within {CONVERGE_TIMEOUT:.0f} s "
            f"({last[0]}); it is left up for inspection: see {topology.lab_dir}/*/log/, "
            "`announcer lab status`, then `announcer lab down`"
        ) from None
    say(f"[{time.monotonic() - start:5.2f} s] converged: {state}")


# ---- down -----------------------------------------------------------------------------------


def down(topology: Topology, *, say: Say = print) -> float:
    """Remove everything of the lab, from any state; seconds it took."""
    start = time.monotonic()
    record = Record.load(topology.lab_dir / STATE_FILE)
    names = set(netns.list_netns(namespace_prefix(topology)))
    procs = [p for name in names for pid in netns.netns_pids(name) if (p := netns.process_id(pid))]
    if record is not None:
        procs += [proc for proc in record.process_ids() if netns.alive(proc)]
    # A booted node shuts down as a host does (its service drains) before anything is killed.
    nspawns = sysnode.nspawn_pids([proc.pid for proc in procs])
    sysnode.power_off(sorted(nspawns | {p.pid for p in procs if _is_nspawn(p.pid)}))
    procs = [proc for proc in procs if netns.alive(proc)]
    netns.terminate(set(procs))
    sysnode.unmount_under(topology.lab_dir)
    for name in sorted(names):
        netns.delete_netns(name)
    run_dirs = {frr.run_dir(topology.netns(node)) for node in topology.nodes}
    run_dirs |= {frr.run_dir(name) for name in names}
    run_dirs |= {Path(d) for d in (record.run_dirs if record else [])}
    for run_dir in run_dirs:
        shutil.rmtree(run_dir, ignore_errors=True)
    others = set(netns.list_netns("clab-")) - names
    if others:
        say(f"kept the shared mount points: other labs are up ({', '.join(sorted(others))})")
    else:
        _remove_created(CREATED_LOG, say)
    shutil.rmtree(topology.lab_dir, ignore_errors=True)
    took = time.monotonic() - start
    say(f"lab {topology.name} is down ({len(names)} namespaces, {len(procs)} processes)")
    return took


def _is_nspawn(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "systemd-nspawn"
    except OSError:
        return False


def _remove_created(created_log: Path, say: Say) -> None:
    """Remove the bind destinations the launcher created on the host, if still unused."""
    try:
        paths = dict.fromkeys(Path(line) for line in created_log.read_text().splitlines() if line)
    except OSError:
        return
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            _remove_empty_tree(path)
        elif path.is_file() and path.stat().st_size == 0:
            path.unlink()
        if path.exists():
            say(f"kept {path}: it is no longer empty")
    created_log.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        created_log.parent.rmdir()


def _remove_empty_tree(top: Path) -> None:
    # Only what the launcher makes: directories and empty mount-point files.
    for dirpath, _, files in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
        for name in files:
            file = Path(dirpath, name)
            if file.is_file() and file.stat().st_size == 0:
                file.unlink()
        with contextlib.suppress(OSError):
            Path(dirpath).rmdir()
