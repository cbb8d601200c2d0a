"""The import graph of ``coordinatord``, read from the source (every ``import`` statement,
at module level, under ``TYPE_CHECKING`` and inside functions alike): no cycle among modules or
among packages, and no arrow from a lower layer to a higher one."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import coordinatord

ROOT = Path(coordinatord.__file__).resolve().parent
PACKAGE = "coordinatord"


def module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in ROOT.rglob("*.py")}


def imported(module: str, path: Path) -> Iterator[str]:
    """Every module ``module`` names in an import: ``from a import b`` is ``a.b`` when that is a
    module of ours, else ``a``; external modules are given by their full dotted name."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                yield candidate if candidate in MODULES else source


GRAPH = {
    module: {target for target in imported(module, path) if target != module}
    for module, path in MODULES.items()
}


def internal(targets: set[str]) -> set[str]:
    return {target for target in targets if target in MODULES}


def unit(module: str) -> str:
    """A module's package below ``coordinatord`` (``coordinatord.server``), or the top-level
    module itself (``coordinatord.app``)."""
    return ".".join(module.split(".")[:2])


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (its nodes in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_graph_is_read() -> None:
    """Known imports, including one inside a function and one of an external module, are in the graph, so
    an empty reading cannot make the checks below pass."""
    # A reader that found nothing would pass every test below.
    assert "coordinatord.context" in GRAPH["coordinatord.tools.kv"]
    assert "coordinatord.server.framing" in GRAPH["coordinatord.server.relay"]
    assert "coordinatord.daemon.lifecycle" in GRAPH["coordinatord.cli"]  # an import in a function
    assert "mcp.server.lowlevel" in GRAPH["coordinatord.server.mcp_session"]


def test_no_module_imports_itself_through_others() -> None:
    """No chain of imports among coordinatord's modules leads back to where it started."""
    assert cycle({module: internal(targets) for module, targets in GRAPH.items()}) is None


def test_no_package_imports_itself_through_others() -> None:
    """No chain of imports among coordinatord's packages and top-level modules leads back to where it
    started."""
    packages: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        packages.setdefault(unit(module), set()).update(
            unit(target) for target in internal(targets) if unit(target) != unit(module)
        )
    # The root package holds only the version, which every layer may read.
    packages.pop(PACKAGE, None)
    assert cycle(packages) is None


FORBIDDEN = {
    # The data layers know nothing of who calls them.
    "coordinatord.store": ("coordinatord.tools", "coordinatord.server", "coordinatord.control", "mcp"),
    "coordinatord.services": ("coordinatord.tools", "coordinatord.server", "coordinatord.control", "mcp"),
    "coordinatord.keyspace": ("coordinatord.tools", "coordinatord.server", "coordinatord.control", "mcp"),
    # A tool sees its context, never the daemon's wiring or the protocol.
    "coordinatord.context": ("coordinatord.app", "coordinatord.tools", "coordinatord.server", "mcp"),
    "coordinatord.tools": ("coordinatord.app", "coordinatord.server", "coordinatord.control", "mcp"),
    # Below the server: the app, the jobs and the control commands.
    "coordinatord.app": ("coordinatord.server", "coordinatord.control", "coordinatord.daemon", "mcp"),
    "coordinatord.jobs": ("coordinatord.server", "coordinatord.control", "coordinatord.daemon", "mcp"),
    "coordinatord.control": ("coordinatord.server", "coordinatord.daemon", "mcp"),
}


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_arrow_points_up(layer: str) -> None:
    """No module of each layer imports a layer above it (or mcp where the protocol is off limits), keeping
    the data layers unaware of their callers."""
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if within(module, layer)
        for target in targets
        for above in FORBIDDEN[layer]
        if within(target, above) or (above == "mcp" and target == "mcp_types")
    )
    assert wrong == []


def test_the_control_client_imports_only_the_standard_library_and_its_helpers() -> None:
    """``coordinatord status`` must start fast: the client's side of the channel."""
    allowed = {"coordinatord.control.client", "coordinatord.control.wire", "coordinatord.errors"}
    allowed |= {"coordinatord.paths", "coordinatord.preamble", "coordinatord.socket_trust"}
    for module in ("coordinatord.control", "coordinatord.control.client", "coordinatord.control.wire"):
        ours = internal(GRAPH[module])
        assert ours <= allowed, (module, ours - allowed)


def test_the_socket_trust_modules_import_only_the_standard_library_and_errors() -> None:
    """The shim and the git hook connect through socket_trust and find the default socket through
    private_folder: both import nothing of ours but each other and the error hierarchy, and nothing
    from outside the standard library."""
    ours = {"coordinatord.socket_trust", "coordinatord.private_folder", "coordinatord.errors"}
    for module in ("coordinatord.socket_trust", "coordinatord.private_folder"):
        assert internal(GRAPH[module]) <= ours, module
        outside = {target.split(".")[0] for target in GRAPH[module] - set(MODULES)}
        assert outside <= {"__future__", "os", "pwd", "socket", "stat", "struct", "pathlib"}, module


def test_only_socket_trust_connects_to_a_unix_socket() -> None:
    """Every client of the daemon's socket goes through socket_trust.connect, which checks the
    server's uid before a byte is sent: no other module calls connect() or opens a Unix
    connection itself."""
    calls = sorted(
        (module, node.lineno)
        for module, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("connect", "connect_ex", "open_unix_connection", "connect_unix")
        and not (isinstance(node.func.value, ast.Name) and node.func.value.id == "socket_trust")
    )
    assert {module for module, _ in calls} == {"coordinatord.socket_trust"}, calls
