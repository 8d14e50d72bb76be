"""The house: no import circle among the modules of src/multibox (type-checking imports included), and no
module over 400 lines."""

import ast
from pathlib import Path

import multibox

ROOT = Path(multibox.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, known: set[str]) -> set[str]:
    """The multibox modules ``path`` imports anywhere (functions and TYPE_CHECKING blocks too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("multibox"):
            for alias in node.names:  # "from multibox.data import photometric" names a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("multibox")}
    return found & known


def test_no_import_circle():
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    known = set(files)
    graph = {name: imports(path, known) - {name} for name, path in files.items()}
    packages = {name for name, path in files.items() if path.name == "__init__.py"}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for nxt in sorted(graph[name] - packages):  # a package's __init__ re-exports: not an edge of the house
            if state.get(nxt) == 1:
                return path + [name, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [name])):
                return cycle
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name, [])
            assert cycle is None, " -> ".join(cycle)


def test_no_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}
