"""The import rules of ``models/`` (issue 13), checked on the source with ``ast``.

- A family (a module or package whose ``FAMILY`` ``models.registry`` lists; the modules
  of a family package, ``models.gan.metrics``, are that family) imports no other family:
  what families share lives in the shared modules (``models.layers``, ``models.loop``,
  ``models.nets``, ``models.data``, ``models.uncertainty``, ...).
- A shared module imports no family; only ``models.registry`` may import them all.
- ``models`` imports nothing from ``app``, ``workers``, ``tests`` or ``bench``.
- No import cycles among the modules of ``models``.

Every import counts: at module level, inside a function and under ``TYPE_CHECKING``.
A subpackage (``models.data``, ``models.gan``) is one unit: its ``__init__`` and its
submodules (``models.data.builtin``) are one node of the graph.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

MODELS = Path(__file__).resolve().parents[2] / "models"
ROOT = MODELS.parent
FORBIDDEN = ("app", "workers", "tests", "bench")
REGISTRY = "models.registry"


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. "models.gan.family"
    target: str  # the imported module, e.g. "models.mlp" (or a package: "models.data")
    where: str  # "models/gan/family.py:80"
    text: str  # "from models.mlp import Width"

    def describe(self) -> str:
        return f"{self.where}: `{self.text}`"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(MODELS.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> list[Import]:
    """Every import statement of a module, anywhere in it, as the modules it names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    out: list[Import] = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT).as_posix()}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append(Import(name, alias.name, where, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package of this module
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            text = f"from {'.' * node.level}{node.module or ''} import " + ", ".join(
                a.name for a in node.names
            )
            targets = {base}
            for alias in node.names:  # ``from models.gan import metrics``: a submodule
                if f"{base}.{alias.name}" in known:
                    targets.add(f"{base}.{alias.name}")
            if targets != {base} and base == "models":
                targets.discard(base)  # ``from models import x`` is about x, not the package
            out += [Import(name, t, where, text) for t in sorted(targets)]
    return out


def unit(module: str) -> str:
    """The node of the dependency graph: a top-level module of models, or a subpackage."""
    return ".".join(module.split(".")[:2])


def all_imports() -> list[Import]:
    src = sources()
    known = set(src)
    return [imp for name, path in src.items() for imp in imports(name, path, known)]


def families() -> dict[str, str]:
    """Unit -> family, from ``models.registry``: the modules (or packages) it imports whose
    ``FAMILY`` it reads. Look modules up by ``unit``: a family package's modules belong
    to it."""
    path = sources()[REGISTRY]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: dict[str, str] = {}  # local name -> module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "models" and not node.level:
            for alias in node.names:
                imported[alias.asname or alias.name] = f"models.{alias.name}"
    read = {
        imported[node.value.id]
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "FAMILY"
        and isinstance(node.value, ast.Name)
        and node.value.id in imported
    }
    return {m: m for m in read}


def test_the_registry_names_the_families() -> None:
    fams = families()
    assert {"models.mlp", "models.gan", "models.flow", "models.vae"} <= set(fams), fams
    assert set(fams) <= set(sources()), f"not in models/: {set(fams) - set(sources())}"
    assert unit("models.gan.metrics") == "models.gan"  # a family package's part is the family
    assert "models.nets" not in fams and "models.loop" not in fams  # shared modules


def test_no_family_imports_another() -> None:
    fams = families()
    bad = [
        f"{imp.describe()}: family {fams[unit(imp.source)]!r} imports family "
        f"{fams[unit(imp.target)]!r}"
        for imp in all_imports()
        if unit(imp.source) in fams
        and unit(imp.target) in fams
        and fams[unit(imp.source)] != fams[unit(imp.target)]
    ]
    assert not bad, "a family imports another (move the shared piece to a shared module):\n" + (
        "\n".join(bad)
    )


def test_shared_modules_import_no_family() -> None:
    fams = families()
    bad = [
        f"{imp.describe()}: shared module {imp.source!r} imports family {fams[unit(imp.target)]!r}"
        for imp in all_imports()
        if unit(imp.source) not in fams and imp.source != REGISTRY and unit(imp.target) in fams
    ]
    assert not bad, "a shared module of models/ imports a family:\n" + "\n".join(bad)


def test_models_imports_nothing_of_the_service() -> None:
    bad = [
        f"{imp.describe()}: {imp.source!r} imports {imp.target!r}"
        for imp in all_imports()
        if imp.target.split(".")[0] in FORBIDDEN
    ]
    assert not bad, f"models/ imports from {', '.join(FORBIDDEN)}:\n" + "\n".join(bad)


def find_cycle(edges: dict[str, dict[str, Import]]) -> list[Import] | None:
    """One cycle of the graph (as the imports along it), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[Import] = []

    def visit(node: str) -> list[Import] | None:
        state[node] = 1
        for nxt, imp in sorted(edges.get(node, {}).items()):
            if state.get(nxt) == 1:  # back to a node on the path (edges are never self-loops)
                start = next(i for i, e in enumerate(path) if e.source == nxt)
                return [*path[start:], imp]
            if nxt not in state:
                path.append(imp)
                found = visit(nxt)
                if found:
                    return found
                path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles_in_models() -> None:
    edges: dict[str, dict[str, Import]] = {}
    for imp in all_imports():
        a, b = unit(imp.source), unit(imp.target)
        if b.startswith("models.") and a != b:
            edges.setdefault(a, {}).setdefault(b, imp)
    cycle = find_cycle(edges)
    assert cycle is None, (
        "import cycle among models/ modules: "
        + " -> ".join([unit(cycle[0].source), *(unit(e.target) for e in cycle)])
        + "\n"
        + "\n".join(e.describe() for e in cycle)
    )


def test_find_cycle_reports_the_imports() -> None:
    a = Import("models.a", "models.b", "models/a.py:1", "from models.b import x")
    b = Import("models.b", "models.a", "models/b.py:9", "from models.a import y")
    assert find_cycle({"models.a": {"models.b": a}, "models.b": {"models.a": b}}) == [a, b]
    assert find_cycle({"models.a": {"models.b": a}}) is None
