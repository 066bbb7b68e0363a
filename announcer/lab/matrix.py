"""The fault matrix: every fault we can produce in the lab, with its expected outcome and bound.

`FAULTS`, in the order the matrix runs them, each on the node named (the soak picks any
node). Faults that kill or stop ExaBGP are spread over the nodes so that the daemon's restart
backoff of one does not lengthen the next (`Trial.exabgp_bound` allows for it anyway).
The order matters little otherwise: the runner brings the lab back to clean between faults.

It must not run faults (`runner` does) nor inject anything itself (`faults` does).
"""

from __future__ import annotations

import functools
import itertools
import json
import signal
import time
from collections.abc import Callable

import yaml

from announcer.lab import faults, peering
from announcer.lab.bounds import BGPD_START, DAEMON_KILLED, SESSION_BACK
from announcer.lab.patterns import (
    ANY_NETWORK,
    ONE_ROUTER,
    Fault,
    Run,
    apiserver,
    back,
    drop_and_return,
    new_pid,
    now,
    ready,
    restarts,
    stays,
    wait_for,
)
from announcer.lab.trial import Finding, Trial, timed

CRASHES = 4  # ExaBGP kills in a row for the crash loop
FAULTS: list[Fault] = []
# The rows that involve the daemon or ExaBGP process and run, with the same bounds, on
# systemd nodes too (`announcer.lab/init: systemd`; systemd starts a stopped daemon again
# where the light node does). Not here: the two whose configuration override binds over a
# light node's read-only file (a reload of a broken file is tests/lab/test_systemd.py's).
ON_SYSTEMD = frozenset(
    {
        "ExaBGP killed once",
        "ExaBGP crash-looping",
        "daemon SIGKILL",
        "daemon stopped (SIGTERM)",
        "daemon SIGSTOP",
        "VIP deleted from lo",
        "drain across a daemon restart",
        "commands forged into the relay's pipes (as exabgp.user)",
        "config invalid at start",
    }
)


def fault(
    name: str,
    expected: str,
    node: str = "cp1",
    *,
    shared: bool = False,
    network: str = ANY_NETWORK,
    needs_bfd: bool = False,
    into: list[Fault] = FAULTS,
) -> Callable[[Run], Run]:
    def register(run: Run) -> Run:
        into.append(Fault(name, node, expected, run, shared, network, needs_bfd))
        return run

    return register


# ---- the apiserver --------------------------------------------------------------------------

FIRST = "out <= {probe_failure:.2f} s, back <= {rise:.2f} s"
fault("apiserver refused", FIRST)(apiserver("stopped"))
fault("500 (etcd down)", "status 500, " + FIRST)(apiserver("etcd-down", code=500))
fault("hang after accept", FIRST)(apiserver("hang"))
# A restarted apiserver whose handshakes stall: the probe's kept-alive connection is closed
# first (as a restart closes it), so the next probe needs a handshake.
fault("TLS handshake stall", FIRST)(apiserver("stopped", "tls-stall"))
fault("401, no client certificate", "status 401, " + FIRST, "cp2")(
    apiserver("unauthorized", code=401)
)
fault("403", "status 403, " + FIRST, "cp2")(apiserver("forbidden", code=403))
fault("slow beyond the timeout (500 ms)", FIRST, "cp3")(apiserver("slow", ms=500))
fault("planned shutdown, delay 3 s", "out <= {planned_shutdown:.2f} s, before close", "cp3")(
    apiserver("shutdown", bound="planned_shutdown", delay=3.0)
)
fault("planned shutdown, delay 0 s", FIRST, "cp2")(apiserver("shutdown"))


@fault("wrong CA", FIRST)
def wrong_ca(t: Trial, node: str) -> list[Finding]:
    bound = t.bounds[node].probe_failure
    t0 = now()
    faults.swap_ca(t.topology, node, wrong=True)
    t.check.leave(node, at=t0, within=bound, why="wrong CA")
    found = t.until_out(node, t0, bound)
    undo = lambda: faults.swap_ca(t.topology, node, wrong=False)  # noqa: E731
    return [found, back(t, node, undo, t.bounds[node].rise)]


@fault("slow but healthy (150 ms)", "never withdrawn ({probe_failure:.2f} s x 2)", "cp2")
def slow_healthy(t: Trial, node: str) -> list[Finding]:
    inject = lambda: faults.set_apiserver(t.topology, node, "slow", ms=150)  # noqa: E731
    return stays(t, 2 * t.bounds[node].probe_failure, inject, ready(t, node))


@fault("flapping every probe", "FIB changes <= rise/fall allow, back <= {rise:.2f} s", "cp1")
def flapping(t: Trial, node: str) -> list[Finding]:
    api = t.configs[node].apiserver
    cycle = api.rise * api.interval + api.min_healthy  # the fastest a withdrawn node returns
    duration = 2 * cycle
    t0 = now()
    t.check.free(node, at=t0, why="flapping")
    tick = 0
    while now() - t0 < duration:
        state = "etcd-down" if tick % 2 else "ready"
        faults.set_apiserver(t.topology, node, state)
        tick += 1
        time.sleep(max(0.0, t0 + tick * api.interval - now()))  # pacing the fault, not a wait
    t1 = now()
    faults.set_apiserver(t.topology, node, "ready")
    # The flapper's period is not locked to the probe ticks: two probes can land in one
    # etcd-down half-period, and a withdraw they cause may come up to fall x interval +
    # timeout after the last flip. The node stays free for that long; then it must return.
    time.sleep(api.fall * api.interval + api.timeout)
    allowed = 1 + 2 * int(duration // cycle)
    changes = t.check.changes(node, t0, t1)
    outs = [b - a for a, b in t.check.absences(node, t0, t1) if t0 < a and b < t1]
    quick = [f"{out:.2f}" for out in outs if out < api.min_healthy]
    return [
        Finding(f"{changes} FIB changes in {duration:.1f} s (<= {allowed})", changes <= allowed),
        Finding(f"out for < {api.min_healthy:g} s: {', '.join(quick) or 'never'}", not quick),
        back(t, node, ready(t, node), t.bounds[node].rise),
    ]


ALL_DOWN = "all out <= {probe_failure:.2f} s; one back <= {rise:.2f} s, alone"


@fault("all apiservers down, then one back", ALL_DOWN, "cp2", shared=True)
def all_down(t: Trial, node: str) -> list[Finding]:
    t0 = now()
    for each in t.nodes:
        faults.set_apiserver(t.topology, each, "etcd-down")
        t.check.leave(each, at=t0, within=t.bounds[each].probe_failure, why="all down")
    found = [t.until_out(each, t0, t.bounds[each].probe_failure) for each in t.nodes]
    found.append(back(t, node, ready(t, node), t.bounds[node].rise))
    others = [each for each in t.nodes if each != node]
    found.append(t.observe(1.0, f"{node} alone", only=[node]))
    return found + [back(t, each, ready(t, each), t.bounds[each].rise) for each in others]


# ---- the daemon and ExaBGP ------------------------------------------------------------------


@fault("ExaBGP killed once", "back <= {exabgp:.1f} s + backoff, restarts +1", "cp1")
def exabgp_killed(t: Trial, node: str) -> list[Finding]:
    before = restarts(t, node)
    t0 = now()
    faults.send(t.topology, node, "exabgp", signal.SIGKILL)
    t.exabgp_exited(node, t0)
    found = drop_and_return(t, node, t0, t.exabgp_bound(node))
    after = restarts(t, node)
    return [*found, Finding(f"restarts {before} -> {after}", after == before + 1)]


@fault("ExaBGP crash-looping", "restart delays grow, status counts them, others stay", "cp3")
def crash_loop(t: Trial, node: str) -> list[Finding]:
    before = restarts(t, node)
    t0 = now()
    t.check.free(node, at=t0, why="crash loop")
    delays: list[float] = []
    for _ in range(CRASHES):
        pid = faults.send(t.topology, node, "exabgp", signal.SIGKILL)
        t.exabgp_exited(node, now())
        delay = wait_for(functools.partial(new_pid, t, node, "exabgp", pid), t.exabgp_bound(node))
        if delay is None:
            return [Finding(f"ExaBGP not back within {t.exabgp_bound(node):.1f} s", False)]
        delays.append(delay)
    t1 = now()
    bound = t.exabgp_bound(node)
    t.check.rejoin(node, at=t1, within=bound, why="crash loop over")
    growing = all(b > a for a, b in itertools.pairwise(delays))
    after = restarts(t, node)
    return [
        Finding("restart delays " + ", ".join(f"{d:.1f}" for d in delays) + " s", growing),
        Finding(f"restarts {before} -> {after}", after == before + CRASHES),
        t.until_in(node, t1, bound),
    ]


@fault("daemon SIGKILL", "out <= {killed:.2f} s, no ExaBGP left, back <= {restart:.2f} s", "cp2")
def daemon_killed(t: Trial, node: str) -> list[Finding]:
    exabgp = faults.find(t.topology, node, "exabgp")
    t0 = now()
    faults.send(t.topology, node, "daemon", signal.SIGKILL)
    t.check.leave(node, at=t0, within=DAEMON_KILLED, why="daemon killed")
    found = [t.until_out(node, t0, DAEMON_KILLED)]
    gone = exabgp is None or faults.wait_gone(exabgp.pid, max(0.0, t0 + DAEMON_KILLED - now()))
    found.append(Finding("its ExaBGP gone" if gone else "its ExaBGP still running", gone))
    t.daemon_restarted(node)
    t1 = now()  # the lab node starts the daemon again, as systemd would
    t.check.rejoin(node, at=t1, within=t.bounds[node].restart, why="daemon restarted")
    return [*found, t.until_in(node, t1, t.bounds[node].restart)]


STOP = "graceful: out <= {drain:.2f} s, exit <= drain delay + 2 s; back <= {restart:.2f} s"


@fault("daemon stopped (SIGTERM)", STOP, "cp3")
def daemon_terminated(t: Trial, node: str) -> list[Finding]:
    exit_bound = t.configs[node].drain.delay + 2.0  # issue 3: the delay plus 2 s
    t0 = now()
    pid = faults.send(t.topology, node, "daemon", signal.SIGTERM)
    t.check.leave(node, at=t0, within=t.bounds[node].drain, why="daemon stopping")
    found = [t.until_out(node, t0, t.bounds[node].drain)]
    exited = faults.wait_gone(pid, max(0.0, t0 + exit_bound - now()))
    found.append(timed("exited", now() - t0 if exited else None, exit_bound))
    t.daemon_restarted(node)
    t1 = now()  # the lab node starts the daemon again, as systemd would
    t.check.rejoin(node, at=t1, within=t.bounds[node].restart, why="daemon restarted")
    return [*found, t.until_in(node, t1, t.bounds[node].restart)]


@fault("daemon SIGSTOP", "out <= {frozen:.2f} s; SIGCONT: back <= {exabgp:.1f} s + backoff", "cp2")
def daemon_stopped(t: Trial, node: str) -> list[Finding]:
    bound = t.bounds[node].frozen
    t0 = now()
    faults.send(t.topology, node, "daemon", signal.SIGSTOP)
    t.check.leave(node, at=t0, within=bound, why="daemon frozen")
    found = [t.until_out(node, t0, bound)]
    t.exabgp_exited(node, now())  # the relay's dead-man switch stopped it
    cont = lambda: faults.send(t.topology, node, "daemon", signal.SIGCONT)  # noqa: E731
    return [*found, back(t, node, cont, t.exabgp_bound(node))]


# A router resetting a frozen daemon's sessions (as one does on BFD down): out at once, and the
# node's ExaBGP, which connects again by itself, must bring the new sessions no route while the
# daemon is frozen (it keeps no adj-rib-out to replay). Both watches end before the relay's
# heartbeat timeout (2 s, its pulse every 0.5 s: 1.5 s at the earliest) stops ExaBGP.
RESET_OUT = 0.5  # the router drops the paths of a session it closes: about 0.1 s
SESSION_AGAIN = 1.0  # ExaBGP's first session is back within 0.5 s; the other may take 1.1 s
WATCH_UNTIL = 1.4  # from the freeze; a replay shows on the router 0.05 to 0.3 s after the OPEN


def sessions_again(
    t: Trial, node: str, before: dict[tuple[str, str], int], since: float
) -> Finding:
    """Seconds from `since` until one of `node`'s reset sessions is Established again."""

    def again() -> bool:
        return any(
            (name, p.address) in before
            and p.state == "Established"
            and p.established > before[(name, p.address)]
            for name in {name for name, _ in before}
            for p in peering.bgp_sessions(t.topology, name, node)
        )

    start = now()
    took = wait_for(again, max(0.0, since + SESSION_AGAIN - start))
    at = None if took is None else start + took - since
    return timed("a session up again, daemon frozen", at, SESSION_AGAIN)


def nothing_replayed(t: Trial, node: str, routers: set[str], until: float) -> Finding:
    """No router received a route from `node` from now until `until`."""

    def received() -> int:
        return sum(
            p.prefixes_received for r in routers for p in peering.bgp_sessions(t.topology, r, node)
        )

    watch = max(0.0, until - now())
    replayed = wait_for(lambda: received() > 0, watch)
    text = "no route on it" if replayed is None else f"routes on it after +{replayed:.2f} s"
    return Finding(f"{text} (watched {watch:.2f} s)", replayed is None)


@fault(
    "daemon SIGSTOP, then the routers reset its sessions",
    f"out <= {RESET_OUT:g} s; ExaBGP's new sessions get no route; "
    "SIGCONT: back <= {exabgp:.1f} s + backoff",
    "cp1",
)
def frozen_sessions_reset(t: Trial, node: str) -> list[Finding]:
    found: list[Finding] = []
    t0 = now()
    faults.send(t.topology, node, "daemon", signal.SIGSTOP)
    try:
        before = faults.reset_sessions(t.topology, node)
        t.check.leave(node, at=t0, within=RESET_OUT, why="sessions reset, daemon frozen")
        found += [t.until_out(node, t0, RESET_OUT), sessions_again(t, node, before, t0)]
        routers = {name for name, _ in before}
        found.append(nothing_replayed(t, node, routers, t0 + WATCH_UNTIL))
    finally:
        t.exabgp_exited(node, now())  # the relay's dead-man switch stops it meanwhile
        cont = lambda: faults.send(t.topology, node, "daemon", signal.SIGCONT)  # noqa: E731
        found.append(back(t, node, cont, t.exabgp_bound(node)))
    return found


@fault("VIP deleted from lo", "put back <= {vip_back:.2f} s, never withdrawn", "cp1")
def vip_deleted(t: Trial, node: str) -> list[Finding]:
    vip = t.vips[0]
    bound = t.bounds[node].vip_back
    start = now()
    faults.delete_vip(t.topology, node, vip)
    took = wait_for(lambda: vip in faults.lo_addresses(t.topology, node), bound + 1.0)
    rest = max(0.0, bound - (now() - start)) + 1.0
    return [timed(f"{vip} back on lo", took, bound), t.observe(rest)]


DRAIN = "out <= {drain:.2f} s, still out after a restart; undrain: back <= {rise:.2f} s"


@fault("drain across a daemon restart", DRAIN, "cp2")
def drain_restart(t: Trial, node: str) -> list[Finding]:
    b = t.bounds[node]
    t0 = now()
    faults.drain(t.topology, node)
    returned = now()  # the command's own start-up is not the daemon's to answer for
    t.check.leave(node, at=t0, within=returned - t0 + b.drain, why="drained")
    t.until_out(node, returned, b.drain)
    left = t.check.left_at(node, t0)
    out = None if left is None else max(0.0, left - returned)
    found = [timed(f"{node} out after `drain`", out, b.drain)]
    old = faults.send(t.topology, node, "daemon", signal.SIGTERM)
    t.daemon_restarted(node)
    answers = lambda: new_pid(t, node, "daemon", old) and faults.status(t.topology, node)  # noqa: E731
    if wait_for(answers, b.restart) is None:
        return [*found, Finding("the daemon did not come back", False)]
    drained = t.status(node).get("drained") is True
    found.append(Finding("drained after restart" if drained else "undrained by restart", drained))
    t1 = now()
    found.append(t.observe(b.rise, "others stayed", only=[n for n in t.nodes if n != node]))
    stayed = t.check.back_at(node, t1) is None
    found.append(Finding(f"stayed out {now() - t1:.1f} s" if stayed else "came back", stayed))
    undrain = lambda: faults.drain(t.topology, node, undo=True)  # noqa: E731
    return [*found, back(t, node, undrain, b.rise)]


FORGED_ROUTE = "203.0.113.66/32"
FORGED = "both refused; " + FORGED_ROUTE + " never on r1; sessions still up in status"


@fault("commands forged into the relay's pipes (as exabgp.user)", FORGED, "cp1")
def forged_relay_input(t: Trial, node: str) -> list[Finding]:
    """What any process of ExaBGP's user could try: a command into the relay's stdout (read
    by ExaBGP) and a forged session event into its stdin (read by the daemon)."""
    user = t.configs[node].exabgp.user
    peer = t.configs[node].bgp.neighbors[0].address
    state = {"type": "state", "neighbor": {"address": {"peer": str(peer)}, "state": "down"}}
    forgeries = {
        1: f"neighbor {peer} announce route {FORGED_ROUTE} next-hop self\n",
        0: json.dumps(state) + "\n",
    }
    found = []
    for fd, line in forgeries.items():
        outcome = faults.forge_into_relay(t.topology, node, user, fd=fd, line=line)
        found.append(Finding(f"fd {fd}: {outcome}", outcome != "written"))
    found.append(t.observe(2.0))
    foreign = t.rib_foreign()
    found.append(Finding(f"foreign on r1: {', '.join(foreign) or 'none'}", not foreign))
    found.append(sessions_up(t, node))
    if found[0].ok:
        return found
    undo = f"neighbor {peer} withdraw route {FORGED_ROUTE}\n"  # leave the lab clean
    faults.forge_into_relay(t.topology, node, user, fd=1, line=undo)
    return found


def sessions_up(t: Trial, node: str) -> Finding:
    neighbors = t.status(node).get("neighbors")
    listed = neighbors if isinstance(neighbors, list) else []
    states = [n.get("state") for n in listed if isinstance(n, dict)]
    return Finding(f"sessions in status: {', '.join(map(str, states))}", set(states) == {"up"})


# ---- configuration --------------------------------------------------------------------------

BAD_CONFIG = """\
vips: [198.51.100.10/32]
apiserver: {interval: -1}
bgp: {router_id: 192.0.2.2, local_as: 65100, neighbors: [{address: 192.0.2.1, peer_as: 65000}]}
"""


@fault("config invalid at start", "exit 2 naming the key, nothing else changes", "cp1")
def config_invalid_at_start(t: Trial, node: str) -> list[Finding]:
    host = faults.host_path(t.topology, node, faults.RUN_DIR) / "faults-bad-config.yaml"
    host.write_text(BAD_CONFIG)
    inside = faults.run_dir_inside(t.topology, node) / host.name
    start = now()
    result = faults.run_in_node(t.topology, node, ["announcer", "run", "--config", str(inside)])
    took = now() - start
    named = "apiserver.interval" in result.stderr
    host.unlink()
    return [
        Finding(f"exit {result.returncode} in {took:.1f} s", result.returncode == 2),
        Finding(f"says {result.stderr.strip().splitlines()[-1:]}", named),
        t.observe(0.5),
    ]


@fault("SIGHUP with an invalid file", "keeps announcing, status names the error", "cp2")
def sighup_invalid(t: Trial, node: str) -> list[Finding]:
    override = t.override(node)
    before = faults.find(t.topology, node, "daemon")
    invalid = lambda: override.write(override.original + "\nbogus_key: 1\n")  # noqa: E731
    found = stays(t, 2 * t.bounds[node].probe_failure, invalid, lambda: None)
    error = t.status(node).get("config_error")
    found.append(Finding(f"config_error {str(error)[:60]!r}", "bogus_key" in str(error)))
    after = faults.find(t.topology, node, "daemon")
    same = before is not None and after is not None and before.pid == after.pid
    found.append(Finding("same daemon" if same else "daemon replaced", same))
    override.remove()
    cleared = wait_for(lambda: t.status(node).get("config_error") is None, 5.0)
    return [*found, Finding("error cleared by a good reload", cleared is not None)]


@fault("401 with a client certificate configured", "certificate accepted: never out", "cp3")
def client_certificate(t: Trial, node: str) -> list[Finding]:
    override = t.override(node)
    config = yaml.safe_load(override.original)
    pki = t.topology.lab_dir / "pki"
    files = {"client_cert_file": pki / "client.crt", "client_key_file": pki / "client.key"}
    config.setdefault("apiserver", {}).update({k: str(v) for k, v in files.items()})
    override.write(yaml.safe_dump(config))
    if wait_for(lambda: t.status(node).get("config_error") is None, 2.0) is None:
        return [Finding(f"reload refused: {t.status(node).get('config_error')}", False)]
    inject = lambda: faults.set_apiserver(t.topology, node, "unauthorized")  # noqa: E731
    found = stays(t, 2 * t.bounds[node].probe_failure, inject, ready(t, node))
    override.remove()
    return found


# ---- BGP and the network --------------------------------------------------------------------


@fault("BGP peer reset from r1 (clear bgp *)", "everyone back <= {session:.2f} s", shared=True)
def clear_bgp(t: Trial, node: str) -> list[Finding]:
    t0 = now()
    faults.clear_bgp(t.topology)
    return [f for each in t.nodes for f in drop_and_return(t, each, t0, SESSION_BACK)]


@fault("r1's bgpd restarted", "everyone back <= {bgpd:.2f} s", shared=True)
def bgpd_restarted(t: Trial, node: str) -> list[Finding]:
    t0 = now()
    for each in t.nodes:
        t.check.free(each, at=t0, why="bgpd restart")
    faults.restart_bgpd(t.topology)
    bound = SESSION_BACK + BGPD_START
    return [f for each in t.nodes for f in drop_and_return(t, each, t0, bound)]


@fault(
    "link silently dropping",
    "out <= {hold:.2f} s (hold time), back <= {session:.2f} s",
    "cp3",
    network=ONE_ROUTER,  # dual-homed, the node keeps its other uplink: see `uplink cut`
)
def link_dropping(t: Trial, node: str) -> list[Finding]:
    bound = t.bounds[node].hold
    t0 = now()
    faults.drop_link(t.topology, node)
    t.check.leave(node, at=t0, within=bound, why="link dropping")
    found = t.until_out(node, t0, bound)
    undo = lambda: faults.drop_link(t.topology, node, undo=True)  # noqa: E731
    return [found, back(t, node, undo, SESSION_BACK)]
