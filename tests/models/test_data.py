"""The built-in predictive datasets: shapes, ranges, fixed splits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.data import DataInfo, catalog, load, load_data

# name -> (task, features, classes, total examples)
EXPECTED = {
    "sine_gap": ("regression", 1, None, 700),
    "diabetes": ("regression", 10, None, 442),
    "boston": ("regression", 13, None, 506),
    "moons": ("classification", 2, 2, 2000),
    "digits": ("classification", 64, 10, 1797),
    "mnist5k": ("classification", 784, 10, 5000),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_builtin_shapes_and_types(name: str) -> None:
    task, features, classes, total = EXPECTED[name]
    d = load(name)
    assert d.info.task == task and d.info.n_classes == classes
    assert d.info.input_shape == (features,)
    assert d.info.n_train == len(d.x_train) == len(d.y_train)
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == total
    for x in (d.x_train, d.x_val, d.x_test):
        assert x.dtype == torch.float32 and x.shape[1:] == (features,)
        assert torch.isfinite(x).all()
    if task == "classification":
        assert d.y_train.dtype == torch.int64 and d.y_train.ndim == 1
        assert set(d.y_train.unique().tolist()) == set(range(classes or 0))
    else:
        assert d.y_train.dtype == torch.float32 and d.y_train.shape == (len(d.x_train), 1)
    assert DataInfo.from_json(d.info.to_json()) == d.info
    assert name in catalog()


def test_split_sizes_are_70_10_20() -> None:
    d = load("moons")
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (1400, 200, 400)


def test_value_ranges() -> None:
    digits, mnist = load("digits"), load("mnist5k")
    assert digits.x_train.min() == 0 and digits.x_train.max() == 16
    assert torch.equal(digits.x_train, digits.x_train.round())  # 17 grey levels
    assert mnist.x_train.min() == 0 and mnist.x_train.max() == 1


@pytest.mark.parametrize("name", ["diabetes", "boston", "moons", "digits"])
def test_splits_are_fixed(name: str) -> None:
    builder = load_data.__wrapped__  # bypass the per-process cache: build it again
    assert builder(name).sha256() == builder(name).sha256() == load(name).sha256()


def test_multitask_synth_layout() -> None:
    d = load("multitask_synth")
    info = d.info
    assert info.task == "multitask" and info.input_shape == (2,) and info.target_dim == 4
    assert [(t.name, t.kind, t.n_classes) for t in info.tasks] == [
        ("reg_quiet", "regression", None),
        ("reg_noisy", "regression", None),
        ("cls_quiet", "classification", 2),
        ("cls_noisy", "classification", 2),
    ]
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (1400, 200, 400)
    assert d.y_train.dtype == torch.float32 and d.y_train.shape == (1400, 4)
    labels = d.y_train[:, 2:]
    assert set(labels.unique().tolist()) == {0.0, 1.0}  # label columns hold class indices
    assert DataInfo.from_json(info.to_json()) == info
    assert info.task_list() == info.tasks
    assert "multitask_synth" in catalog()


def test_data_info_json_stays_backward_compatible() -> None:
    """Jobs stored before multitask sets have no ``tasks`` key; single-task JSON still has none."""
    old = {
        "name": "moons",
        "task": "classification",
        "input_shape": [2],
        "target_dim": 1,
        "n_classes": 2,
        "n_train": 1400,
    }
    info = DataInfo.from_json(old)
    assert info == load("moons").info and info.tasks == ()
    assert info.to_json() == old
    (only,) = info.task_list()
    assert (only.name, only.kind, only.n_classes) == ("classification", "classification", 2)


def test_the_adding_problem_at_any_length(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``adding_<T>``: any T in 2..1,000 by name, the same set each time (a seed of T),
    the listed lengths' sets as they were (``adding_100`` is ``adding``'s), at most
    ADDING_VALUES sequences × steps, never written to the disk cache."""
    from models.data import builtin, builtin_description, loading, patterns

    monkeypatch.setenv("DEEPZOO_CACHE_DIR", str(tmp_path))
    odd = loading.load_data.__wrapped__("adding_37")  # uncached: a fresh build
    assert isinstance(odd, type(load("adding")))
    assert odd.info.input_shape == (37, 2) and odd.info.n_train == 7000
    assert odd.fingerprint() == load("adding_37").fingerprint()
    assert load("adding_100").fingerprint() == load("adding").fingerprint()
    longest = load("adding_1000")
    n = longest.info.n_train + len(longest.x_val) + len(longest.x_test)
    assert n * 1000 <= builtin.ADDING_VALUES and longest.info.input_shape == (1000, 2)
    assert load("adding_2").info.input_shape == (2, 2)
    assert not list(tmp_path.rglob("adding_*"))
    assert "adding_37" not in catalog() and "adding_<T>" in patterns()
    assert builtin_description("adding_37") == patterns()["adding_<T>"]
    for bad in ("adding_1", "adding_1001", "adding_037", "adding_", "adding_x", "adding_-5"):
        with pytest.raises(KeyError, match=bad):
            load_data(bad)
        assert builtin_description(bad) is None
    with pytest.raises(KeyError, match="from 2 to 1,000"):
        load_data("adding_5000")


def test_the_adding_patterns_json_schema_says_what_it_accepts() -> None:
    """The job spec's JSON Schema pattern and ``member`` accept the same names."""
    import re

    from models.data.builtin import PATTERNS

    pattern = PATTERNS["adding_<T>"]
    names = [f"adding_{t}" for t in range(0, 1200)] + ["adding_007", "adding_", "adding_x"]
    for name in names:
        try:
            accepted = pattern.member(name) is not None
        except ValueError:
            accepted = False
        assert accepted == bool(re.fullmatch(pattern.json_pattern.strip("^$"), name)), name
