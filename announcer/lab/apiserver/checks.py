"""Health checks of the fake apiserver and the bodies of /readyz, /livez and /healthz.

Owns the check lists (in the real order) and the rendering rules of k8s.io/apiserver's
`healthz.handleRootHealth`. Pure: it must not do I/O nor decide who may see the answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from announcer.lab.apiserver.states import State

_POSTSTARTHOOKS_EARLY = tuple(
    f"poststarthook/{hook}"
    for hook in (
        "start-apiserver-admission-initializer",
        "generic-apiserver-start-informers",
        "priority-and-fairness-config-consumer",
        "priority-and-fairness-filter",
        "storage-object-count-tracker-hook",
        "start-apiextensions-informers",
        "start-apiextensions-controllers",
        "crd-informer-synced",
        "start-system-namespaces-controller",
        "start-cluster-authentication-info-controller",
        "start-kube-apiserver-identity-lease-controller",
        "start-kube-apiserver-identity-lease-garbage-collector",
        "start-legacy-token-tracking-controller",
        "start-service-ip-repair-controllers",
        "rbac/bootstrap-roles",
        "scheduling/bootstrap-system-priority-classes",
        "priority-and-fairness-config-producer",
        "bootstrap-controller",
        "start-kubernetes-service-cidr-controller",
        "start-kube-aggregator-informers",
        "apiservice-status-local-available-controller",
        "apiservice-status-remote-available-controller",
        "apiservice-registration-controller",
        "apiservice-discovery-controller",
        "kube-apiserver-autoregistration",
    )
)
# autoregister-completion sits among the hooks, not after them, in the real order.
_POSTSTARTHOOKS_LATE = (
    "poststarthook/apiservice-openapi-controller",
    "poststarthook/apiservice-openapiv3-controller",
)

READYZ_CHECKS: tuple[str, ...] = (
    "ping",
    "log",
    "etcd",
    "etcd-readiness",
    "informer-sync",
    *_POSTSTARTHOOKS_EARLY,
    "autoregister-completion",
    *_POSTSTARTHOOKS_LATE,
    "shutdown",
)
_READYZ_ONLY = frozenset({"etcd-readiness", "informer-sync", "shutdown"})
LIVEZ_CHECKS: tuple[str, ...] = tuple(c for c in READYZ_CHECKS if c not in _READYZ_ONLY)

CHECKS: dict[str, tuple[str, ...]] = {
    "readyz": READYZ_CHECKS,
    "livez": LIVEZ_CHECKS,
    "healthz": LIVEZ_CHECKS,
}

_FAILING: dict[State, frozenset[str]] = {
    State.STARTING: frozenset(
        {
            "poststarthook/crd-informer-synced",
            "poststarthook/rbac/bootstrap-roles",
            "poststarthook/scheduling/bootstrap-system-priority-classes",
        }
    ),
    State.ETCD_DOWN: frozenset({"etcd", "etcd-readiness"}),
    State.SHUTDOWN: frozenset({"shutdown"}),
}

# What the real checks would log; the public endpoints withhold it.
_REASONS = {
    "etcd": "etcd client connection not yet established",
    "etcd-readiness": "etcd client connection not yet established",
    "shutdown": "process is shutting down",
}


def failing_checks(state: State) -> frozenset[str]:
    """The checks that fail in `state` (on whichever endpoint carries them)."""
    return _FAILING.get(state, frozenset())


def go_quote(text: str) -> str:
    """Close to Go's %q for the names that show up here."""
    return json.dumps(text, ensure_ascii=False)


def root_health(
    endpoint: str, query: Sequence[tuple[str, str]], failing: frozenset[str]
) -> tuple[int, str]:
    """Status and body of `/<endpoint>` ("readyz", "livez" or "healthz") for a query."""
    names = CHECKS[endpoint]
    excluded = {value for key, value in query if key == "exclude"}
    lines: list[str] = []
    failed = False
    for name in names:
        if name in excluded:
            lines.append(f"[+]{name} excluded: ok\n")
        elif name in failing:
            lines.append(f"[-]{name} failed: reason withheld\n")
            failed = True
        else:
            lines.append(f"[+]{name} ok\n")
    unknown = sorted(excluded.difference(names))
    if unknown:
        quoted = ",".join(go_quote(n) for n in unknown)
        lines.append(f"warn: some health checks cannot be excluded: no matches for {quoted}\n")
    if failed:
        # Failures are always verbose (http.Error appends the newline).
        return 500, "".join(lines) + f"{endpoint} check failed\n"
    if not any(key == "verbose" for key, _ in query):
        return 200, "ok"
    return 200, "".join(lines) + f"{endpoint} check passed\n"


def single_check(endpoint: str, name: str, failing: frozenset[str]) -> tuple[int, str] | None:
    """Status and body of `/<endpoint>/<name>`, or None when no such check exists."""
    if name not in CHECKS[endpoint]:
        return None
    if name in failing:
        reason = _REASONS.get(name, "not finished")
        return 500, f"internal server error: {reason}\n"
    return 200, "ok"
