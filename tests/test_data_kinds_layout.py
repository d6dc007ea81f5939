"""The runner, the limits and the catalogs never branch on the data kind (issue 13).

They handle data only through ``models.data.DataKind`` (``info``, ``fingerprint()``,
``size()``, ``describe()``): checked on the source with ``ast``, they name no kind class
(``TensorTable``, ``Graph``, ... imported from ``models.data``, directly or as an
attribute of the module), no kind name as a string (``"graph"``), and read no
``info.kind``. A new kind then needs no change in them.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import models.data as zoo_data
from models.data import KIND_TASKS, DataKind

ROOT = Path(__file__).resolve().parents[1]
GUARDED = ["workers/runner.py", "app/limits.py", "app/api/datasets.py", "app/api/catalog.py"]


def kind_classes() -> set[str]:
    """Every name ``models.data`` exports for a class with the protocol's methods."""
    return {
        name
        for name, obj in vars(zoo_data).items()
        if inspect.isclass(obj)
        and obj is not DataKind
        and all(callable(getattr(obj, m, None)) for m in ("fingerprint", "size", "describe"))
    }


def offences(source: str, filename: str = "<src>") -> list[str]:
    tree = ast.parse(source, filename=filename)
    classes, kinds = kind_classes(), set(KIND_TASKS)
    modules: set[str] = set()  # local names of models.data (``from models import data``)
    local: set[str] = set()  # local names of kind classes
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("models"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full == "models.data":
                    modules.add(alias.asname or alias.name)
                elif node.module.startswith("models.data") and alias.name in classes:
                    local.add(alias.asname or alias.name)
                    out.append(f"line {node.lineno}: imports the kind class {alias.name}")
        elif isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "models.data"}
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Name) and node.id in local:
            out.append(f"line {line}: uses the kind class {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in classes:
            base = ast.unparse(node.value)
            if base in modules or base == "models.data":
                out.append(f"line {line}: uses the kind class {node.attr}")
        elif isinstance(node, ast.Attribute) and node.attr == "kind":
            if ast.unparse(node.value).split(".")[-1].endswith("info"):
                out.append(f"line {line}: reads {ast.unparse(node)}")
        elif isinstance(node, ast.Constant) and node.value in kinds:
            out.append(f"line {line}: names the data kind {node.value!r}")
    return out


def test_the_checker_finds_kind_branches() -> None:
    assert {"TensorTable", "Dataset", "ImageSet", "Graph", "Environment"} <= kind_classes()
    assert {"SequenceSet", "Landscape"} <= kind_classes()
    assert "DataInfo" not in kind_classes()
    bad = """
from models import data as zd
from models.data import Graph as G, DataInfo
def f(data, info):
    if isinstance(data, G) or isinstance(data, zd.TensorTable):
        pass
    if info.kind == "environment" or data.info.kind:
        pass
"""
    found = offences(bad)
    assert len(found) == 6, found
    assert offences("from app.db.models import Dataset\nx = Dataset\ny = row.kind == 'table'") == []


@pytest.mark.parametrize("path", GUARDED)
def test_runner_limits_and_catalog_do_not_branch_on_the_kind(path: str) -> None:
    file = ROOT / path
    found = offences(file.read_text(encoding="utf-8"), str(file))
    assert not found, f"{path} must use the DataKind protocol only:\n" + "\n".join(found)
