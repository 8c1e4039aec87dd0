"""The package's layering: every intra-package import, those inside functions included, forms no cycle."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "scarlet_lib"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source (``ast``: function bodies included)."""
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {m: set() for m in modules}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        package = [p for p in package if p]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[:len(package) - (node.level - 1)]
                    target = [*base, *(node.module.split(".") if node.module else [])]
                elif node.module and node.module.split(".")[0] == "scarlet_lib":
                    target = node.module.split(".")[1:]
                else:
                    continue
                for alias in node.names:  # "from . import costs" imports a module, "from .x import f" a name
                    sub = ".".join([*target, alias.name])
                    targets.append(sub if sub in modules else ".".join(target))
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".", 1)[1] for a in node.names
                           if a.name.startswith("scarlet_lib.")]
            for t in targets:
                if t in modules and t != name:
                    graph[name].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_is_read_from_function_bodies_too():
    graph = import_graph()
    assert "space" in graph and "supernet" in graph
    assert "supernet" in graph["recipes"]  # imported at module level
    assert graph["search.core"]  # search imports the counting and the space


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module, forbidden", [
    ("space", {"blocks", "models", "supernet", "costs", "profiling", "kernels"}),
    ("blocks", {"models", "supernet", "train", "costs"}),
    ("supernet", {"train", "recipes", "cache"}),
])
def test_lower_layers_do_not_import_higher_ones(module, forbidden):
    assert not (import_graph()[module] & forbidden), import_graph()[module] & forbidden


def test_package_imports_sit_at_module_level():
    """No intra-package import hides inside a function (the way cycles used to be dodged)."""
    hidden = []
    for path in PKG.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if (isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("scarlet_lib"))) \
                        or (isinstance(node, ast.Import) and any(a.name.startswith("scarlet_lib") for a in node.names)):
                    hidden.append(f"{path.relative_to(PKG)}:{node.lineno} in {fn.name}()")
    assert not hidden, hidden
