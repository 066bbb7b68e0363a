"""The lab's routing layout, read from the topology's links: which routers there are, which of
them face the control-plane nodes (the edge: r1 in the simple lab, leaf1 and leaf2 in the
dual-homed one), and how many next hops each router has per VIP once the lab has converged
(an edge router: one per control-plane node linked to it; any other router, such as the
spine: one per edge router linked to it).

It only reads the topology: it must not look at a running lab.
"""

from __future__ import annotations

from announcer.lab.topology import Topology

ROUTER, CONTROL_PLANE = "router", "control-plane"


def nodes_with_role(topology: Topology, role: str) -> list[str]:
    return [name for name in topology.nodes if topology.role(name) == role]


def linked(topology: Topology, node: str) -> list[str]:
    """The nodes at the other end of `node`'s links, in link order."""
    found = []
    for link in topology.links:
        ends = (link.a.node, link.b.node)
        if node in ends:
            found.append(ends[1] if ends[0] == node else ends[0])
    return found


def facing(topology: Topology, router: str, role: str) -> list[str]:
    """The nodes of `role` linked to `router`."""
    return [node for node in linked(topology, router) if topology.role(node) == role]


def edge_routers(topology: Topology) -> list[str]:
    """The routers that have a control-plane node as a direct next hop."""
    return [r for r in nodes_with_role(topology, ROUTER) if facing(topology, r, CONTROL_PLANE)]


def upper_routers(topology: Topology) -> list[str]:
    """The routers that reach the control-plane nodes through an edge router (a spine)."""
    edge = set(edge_routers(topology))
    return [r for r in nodes_with_role(topology, ROUTER) if r not in edge]


def expected_paths(topology: Topology, router: str) -> int:
    """How many next hops `router` has per VIP when every node announces it."""
    nodes = facing(topology, router, CONTROL_PLANE)
    if nodes:
        return len(nodes)
    edge = set(edge_routers(topology))
    return sum(1 for node in linked(topology, router) if node in edge)
