"""The layering, read from the source with `ast` (nothing is imported or run): the pure core
imports no I/O, and no module of `announcer` imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "announcer"
CORE = "announcer.core"
# No module of the core may import these, nor anything under them.
FORBIDDEN = (
    "asyncio",
    "socket",
    "subprocess",
    "httpx",
    "pyroute2",
    "yaml",
    "os",
    "shutil",
    "selectors",
    "ssl",
    "threading",
    "signal",
    "io",
    "pathlib",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every module `name` imports, also under TYPE_CHECKING (a cycle there is still one)."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def internal_edges(name: str) -> set[str]:
    return {m for m in imports_of(name) if m in MODULES and m != name}


CORE_MODULES = sorted(m for m in MODULES if m == CORE or m.startswith(f"{CORE}."))


def test_the_core_exists() -> None:
    assert {f"{CORE}.step", f"{CORE}.state", f"{CORE}.vips"} <= set(CORE_MODULES)


@pytest.mark.parametrize("name", CORE_MODULES)
def test_the_core_imports_no_io(name: str) -> None:
    bad = sorted(
        m for m in imports_of(name) if any(m == f or m.startswith(f"{f}.") for f in FORBIDDEN)
    )
    assert not bad, f"{name} imports {bad}"


# `announcer lab`'s subcommands register themselves on the group they import from
# `announcer.lab.cli`, which imports them back: listed so that any other cycle fails, and so
# that this list must shrink when the registration is untangled.
KNOWN_CYCLES = {
    ("announcer.lab.cli", "announcer.lab.bench.command"),
    ("announcer.lab.cli", "announcer.lab.demo"),
    ("announcer.lab.cli", "announcer.lab.runner"),
    ("announcer.lab.cli", "announcer.lab.soak"),
    ("announcer.lab.cli", "announcer.lab.stress"),
}


def find_cycles() -> list[list[str]]:
    graph = {name: internal_edges(name) for name in MODULES}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            # a package importing its own submodules (re-exports) is not a cycle
            if target.startswith(f"{name}."):
                continue
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_no_import_cycle_in_the_package() -> None:
    cycles = {tuple(c[:-1]) for c in find_cycles()}
    new = sorted(c for c in cycles if c not in KNOWN_CYCLES)
    assert not new, "import cycles: " + "; ".join(" -> ".join(c) for c in new)
    assert cycles >= KNOWN_CYCLES, f"gone, remove from KNOWN_CYCLES: {KNOWN_CYCLES - cycles}"
