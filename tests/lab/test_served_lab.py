"""The nobody-serves-the-VIP check through r1, in the lab: from the client's namespace the VIP
is served while any node announces it, and unserved once every apiserver has crashed and
every node has withdrawn. The lab is left with every apiserver ready and three paths again.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import pytest

from announcer.lab.apiserver.control import request as control_request
from announcer.lab.fib import Fib, wait_for
from announcer.lab.topology import Topology

if TYPE_CHECKING:
    from conftest import RunningLab

pytestmark = pytest.mark.netns

VIPS = (ip_network("198.51.100.10/32"), ip_network("2001:db8:100::10/128"))
CPS = ("cp1", "cp2", "cp3")
RUN = PurePosixPath("/run/announcer")
# Runs in a lab node: prints whether anyone serves the VIPs, and why.
CHECK = """
import asyncio, sys
from ipaddress import ip_address
from announcer.served import anyone_serves
vips = [ip_address(v) for v in sys.argv[1:]]
answer = asyncio.run(anyone_serves(vips, 6443, connect_timeout=0.35))
print(answer.served, answer.reason)
"""


def served_from(topology: Topology, node: str) -> tuple[bool, str]:
    argv = [sys.executable, "-m", "announcer", "lab", "exec", "-t", str(topology.path), node]
    vips = [str(vip.network_address) for vip in VIPS]
    done = subprocess.run(
        [*argv, "--", sys.executable, "-c", CHECK, *vips],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    served, reason = done.stdout.split(maxsplit=1)
    return served == "True", reason.strip()


def set_apiservers(topology: Topology, state: str) -> None:
    for node in CPS:
        run = topology.bind_source(node, RUN)
        assert run is not None
        control_request(run / "lab-apiserver.sock", {"op": "set", "state": state})


def paths_in_r1(topology: Topology) -> int:
    with Fib(topology.netns("r1")) as fib:
        return min(len(fib.nexthops(vip)) for vip in VIPS)


def no_path_in_r1(topology: Topology) -> bool:
    with Fib(topology.netns("r1")) as fib:
        return not any(fib.nexthops(vip) for vip in VIPS)


@pytest.fixture
def topology(lab: RunningLab) -> Iterator[Topology]:
    topology = lab.topology
    try:
        wait_for(lambda: paths_in_r1(topology) == 3, 20.0, what="three paths per VIP")
        yield topology
    finally:
        set_apiservers(topology, "ready")
        wait_for(lambda: paths_in_r1(topology) == 3, 20.0, what="three paths again")


def test_the_vip_is_served_until_nobody_announces_it(topology: Topology) -> None:
    assert served_from(topology, "client") == (True, "accepted")
    set_apiservers(topology, "crash")
    started = time.monotonic()
    wait_for(lambda: no_path_in_r1(topology), 10.0, what="every path withdrawn")
    print(f"every path withdrawn {time.monotonic() - started:.2f} s after the crash")
    served, reason = served_from(topology, "client")
    assert not served
    # r1 has no route left: it answers with an ICMP error (or the SYN is lost).
    assert reason in ("unreachable", "timeout"), reason
