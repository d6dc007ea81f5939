"""``models.data.kinds``: every data kind keeps the protocol the runner, the limits and the
catalog rely on, and ``DataInfo`` JSON stays readable."""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from models.data import (
    KIND_TASKS,
    DataInfo,
    DataKind,
    DataSize,
    Environment,
    Graph,
    ImageSet,
    Landscape,
    SequenceSet,
    Space,
    TensorTable,
    catalog,
    from_arrays,
    load,
    load_data,
)
from models.data import builtin as builtin_module
from models.data import environments as environments_module

rng = np.random.default_rng(0)
X, Y = rng.normal(size=(20, 4)), rng.integers(0, 2, size=20)


def table(shift: float = 0.0) -> TensorTable:
    return from_arrays(
        "t", "classification", (X[:12] + shift, Y[:12]), (X[12:16], Y[12:16]), (X[16:], Y[16:]),
        n_classes=2,
    )  # fmt: skip


def images(shift: float = 0.0) -> TensorTable:
    return from_arrays(
        "im", "regression", (X[:12] + shift, Y[:12]), (X[12:16], Y[12:16]), (X[16:], Y[16:]),
        image_shape=(1, 2, 2), levels=(2, 1.0),
    )  # fmt: skip


def tokens(last: int = 2) -> SequenceSet:
    return SequenceSet(
        "text", "next_token", train=(np.array([0, 1, 2]), np.array([2, 1, last])),
        test=(np.array([1, 1]),), vocab=("a", "b", "c"),
    )  # fmt: skip


def series(scale: float = 1.0) -> SequenceSet:
    s = np.linspace(0, 1, 10, dtype=np.float32).reshape(5, 2)
    return SequenceSet("series", "forecast", train=(s * scale, s[:3]), val=(s[:2],))


def graph(v: int = 2) -> Graph:
    return Graph("path", 4, ((0, 1), (1, v), (2, 3)), labels=(0, 0, 1, 1))


def environment(steps: int = 500) -> Environment:
    return Environment(
        "cartpole", "CartPole-v1",
        observation=Space("box", (4,), low=-1e9, high=1e9), action=Space("discrete", n=2),
        max_episode_steps=steps,
    )  # fmt: skip


def landscape(b: float = 100.0) -> Landscape:
    return Landscape(
        "rosenbrock", "rosenbrock", ((-2.0, 2.0), (-1.0, 3.0)), start=(-1.5, 2.0),
        params={"a": 1.0, "b": b}, minima=((1.0, 1.0),),
    )  # fmt: skip


# kind -> (an example, the same example with a different content)
KINDS: dict[str, tuple[Callable[[], DataKind], Callable[[], DataKind]]] = {
    "tensor_table": (table, lambda: table(shift=1e-3)),
    "image_set": (images, lambda: images(shift=1e-3)),
    "sequences": (tokens, lambda: tokens(last=0)),
    "sequences/forecast": (series, lambda: series(scale=2.0)),
    "graph": (graph, lambda: graph(v=3)),
    "environment": (environment, lambda: environment(steps=200)),
    "landscape": (landscape, lambda: landscape(b=50.0)),
}


def test_every_declared_kind_has_an_example() -> None:
    assert {k.split("/")[0] for k in KINDS} == set(KIND_TASKS)


@pytest.mark.parametrize("name", list(KINDS))
def test_the_protocol(name: str) -> None:
    make, changed = KINDS[name]
    data = make()
    assert isinstance(data, DataKind)
    assert data.info.kind == name.split("/")[0]
    assert data.info.task in KIND_TASKS[data.info.kind]
    # provenance: stable across equal contents, changed by any change of it
    fp = data.fingerprint()
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert make().fingerprint() == fp != changed().fingerprint()
    # limits: the size and the DataInfo a model is built from (stored as JSON by a job)
    size = data.size()
    assert isinstance(size, DataSize) and size.examples >= 0 and size.values >= 0
    assert DataInfo.from_json(json.loads(json.dumps(data.info.to_json()))) == data.info
    # the catalog: JSON, with the keys every kind gives
    about = json.loads(json.dumps(data.describe()))
    assert {"name", "kind", "task", "shape", "sizes", "size", "description", "info"} <= set(about)
    assert about["kind"] == data.info.kind and about["task"] == data.info.task
    assert about["size"] == size.to_json()
    assert DataInfo.from_json(about["info"]) == data.info


def test_a_tensor_tables_fingerprint_is_the_sha256_jobs_recorded() -> None:
    t = table()
    h = hashlib.sha256()
    for x in (t.x_train, t.y_train, t.x_val, t.y_val, t.x_test, t.y_test):
        h.update(x.numpy().tobytes())
    assert t.fingerprint() == t.sha256() == h.hexdigest()
    assert t.size() == DataSize(examples=20, values=20 * 4 + 20)
    assert t.describe()["shape"] == [12, 4]
    assert t.describe()["sizes"] == {"train": 12, "val": 4, "test": 4}


def test_image_sets_are_tables_with_an_image_shape() -> None:
    im = images()
    assert isinstance(im, ImageSet) and isinstance(table(), TensorTable)
    assert not isinstance(table(), ImageSet)
    assert im.describe()["info"]["image_shape"] == [1, 2, 2]
    with pytest.raises(ValueError, match="image_shape"):
        ImageSet(table().info, *table().tensors())
    assert type(load("digits")) is ImageSet and type(load("moons")) is TensorTable


def test_sequences() -> None:
    t, s = tokens(), series()
    assert (t.info.input_shape, t.info.n_classes, t.info.n_train) == ((1,), 3, 2)
    assert t.info.extra == {"max_len": 3}
    assert (s.info.input_shape, s.info.target_dim, s.info.n_classes) == ((2,), 2, None)
    with pytest.raises(ValueError, match="outside"):
        SequenceSet("x", "next_token", train=(np.array([0, 3]),), vocab=("a", "b"))
    with pytest.raises(ValueError, match="one F"):
        SequenceSet("x", "forecast", train=(np.zeros((3, 2)), np.zeros((3, 1))))


def test_graphs() -> None:
    g = graph()
    assert g.neighbors() == [[1], [0, 2], [1, 3], [2]]
    assert (g.info.task, g.info.n_classes, g.info.n_train) == ("node_classification", 2, 4)
    assert g.info.extra == {"n_nodes": 4, "n_edges": 3, "directed": False}
    assert Graph("g", 2, ((0, 1),), directed=True).neighbors() == [[1], []]
    assert Graph("g", 2, ((0, 1),)).info.task == "embedding"
    with pytest.raises(ValueError, match="outside"):
        Graph("g", 2, ((0, 2),))


def test_environments_describe_their_spaces_without_gymnasium() -> None:
    env = environment()
    info = env.info
    assert (info.input_shape, info.n_classes, info.target_dim, info.n_train) == ((4,), 2, 1, 0)
    assert info.extra["env_id"] == "CartPole-v1" and info.extra["max_episode_steps"] == 500
    box = Environment("p", "Pendulum-v1", Space("box", (3,)), Space("box", (1,), low=-2, high=2))
    assert (box.info.n_classes, box.info.target_dim) == (None, 1)
    with pytest.raises(ValueError, match="discrete"):
        Space("discrete")
    # gymnasium is imported by make() only, never with the module
    source = Path(environments_module.__file__)
    imported = set()
    for node in ast.parse(source.read_text()).body:  # module-level statements only
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "gymnasium" not in imported and "gym" not in imported


def test_landscapes_are_differentiable_functions() -> None:
    land = landscape()
    xy = torch.tensor([[1.0, 1.0], [0.0, 0.0]], requires_grad=True)
    loss = land(xy)
    assert loss.shape == (2,) and loss[0].item() == 0.0 and loss[1].item() == 1.0
    loss.sum().backward()
    assert xy.grad is not None and torch.equal(xy.grad[0], torch.zeros(2))
    for name, at in (("himmelblau", (3.0, 2.0)), ("rastrigin", (0.0, 0.0))):
        fn = Landscape(name, name, ((-5, 5), (-5, 5)), start=(0, 0))
        assert abs(fn(torch.tensor(at)).item()) < 1e-5
    with pytest.raises(ValueError, match="no function"):
        Landscape("x", "nope", ((0, 1), (0, 1)), start=(0, 0))


# --- DataInfo --------------------------------------------------------------------------------


def test_data_info_validates_the_task_by_its_kind() -> None:
    base = {"name": "x", "input_shape": (2,), "target_dim": 1, "n_classes": None, "n_train": 1}
    with pytest.raises(ValueError, match="unknown data kind"):
        DataInfo(task="regression", kind="hologram", **base)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no task 'control'"):
        DataInfo(task="control", **base)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no task 'regression'"):
        DataInfo(task="regression", kind="environment", **base)  # type: ignore[arg-type]
    assert DataInfo(task="regression", **base).kind == "tensor_table"  # type: ignore[arg-type]


def test_old_data_info_json_still_loads() -> None:
    """JSON stored before kinds existed has no ``kind``: a table, or an image set when it
    names an image shape; tables and image sets still write exactly that JSON."""
    old_image = {
        "name": "digits_bin",
        "task": "classification",
        "input_shape": [64],
        "target_dim": 1,
        "n_classes": 10,
        "n_train": 1258,
        "image_shape": [1, 8, 8],
        "levels": 2,
        "value_max": 1.0,
    }
    info = DataInfo.from_json(old_image)
    assert info.kind == "image_set" and info.extra == {}
    assert info == load("digits_bin").info and info.to_json() == old_image
    old_multitask = load("multitask_synth").info.to_json()
    assert "kind" not in old_multitask and "extra" not in old_multitask
    assert DataInfo.from_json(old_multitask).kind == "tensor_table"


def test_new_kinds_write_their_kind_and_extra() -> None:
    d = graph().info.to_json()
    assert d["kind"] == "graph" and d["extra"] == {"n_nodes": 4, "n_edges": 3, "directed": False}
    assert hash(graph().info) == hash(DataInfo.from_json(d))  # extra is not hashed


# --- the registry of built-ins takes any kind ------------------------------------------------


def test_a_builtin_of_another_kind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEEPZOO_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(builtin_module.BUILTINS, "path_graph", (graph, "a path of 4 nodes"))
    load_data.cache_clear()
    try:
        assert catalog()["path_graph"] == "a path of 4 nodes"
        g = load_data("path_graph")
        assert isinstance(g, Graph) and g.fingerprint() == graph().fingerprint()
        with pytest.raises(TypeError, match="is a graph, not a tensor table"):
            load("path_graph")
        assert not list(tmp_path.rglob("*.npz"))  # only tables are cached on disk
    finally:
        load_data.cache_clear()


@pytest.mark.parametrize("name", ["graph", "environment", "landscape"])
def test_kinds_with_mappings_stay_hashable(name: str) -> None:
    make, _ = KINDS[name]
    assert hash(make()) == hash(make())


def test_the_package_imports_one_way() -> None:
    """No module of ``models.data`` imports the package itself (its ``__init__`` imports
    them all), and their imports of each other form no cycle."""
    package = Path(builtin_module.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in sorted(package.glob("*.py")):
        name = path.stem
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "models.data":
                subs = {a.name for a in node.names if (package / f"{a.name}.py").exists()}
                whole = len(subs) < len(node.names)  # names from the package's __init__
                assert name == "__init__" or not whole, f"{path.name} imports models.data"
                deps |= subs
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "models.data."
            ):
                deps.add(node.module.split(".")[2])
        graph[name] = deps
    done: set[str] = set()
    while len(done) < len(graph):  # peel off the modules whose imports are all done
        ready = {m for m, deps in graph.items() if m not in done and deps <= done}
        assert ready, f"an import cycle among {sorted(set(graph) - done)}"
        done |= ready
