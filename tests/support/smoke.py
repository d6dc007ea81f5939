"""The smoke table: every registered family on a tiny configuration, and one checker per
capability a family may declare. ``tests/models/test_smoke.py`` runs them.

A new family adds one row to ``SMOKE`` (a family without a row fails, rather than train
its full default). A family that declares a capability with no checker in ``CHECKERS``
fails too: write the checker with the capability.

``declared``, ``capability_fn``, ``with_capability`` and ``latent_size`` are the only
functions here that read the ``Family`` record's capability map.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from models.data import DataKind, Environment
from models.family import Capability, Family, Params, Unsupported
from models.generative import LogProb, SampleOptions
from models.rl import RolloutOptions, as_obs, eval_seed


@dataclass(frozen=True)
class Smoke:
    """One family's tiny run: ``params`` the smallest network that still exercises every
    layer kind, ``train`` the context's budget (``epochs`` or ``steps``, at least 2 so a
    run can stop halfway and resume), on the first rows of ``dataset`` and of each of
    ``also`` (the other kinds of data the family takes: another task, images, bits).
    ``variants``: overrides of ``params`` that change what a built module holds (an order
    drawn at build, say), each also trained, resumed and round-tripped on ``dataset``."""

    dataset: str
    params: dict[str, Any]
    train: dict[str, int] = field(default_factory=lambda: {"epochs": 2})
    batch_size: int = 32
    also: tuple[str, ...] = ()
    variants: tuple[dict[str, Any], ...] = ()

    @property
    def datasets(self) -> tuple[str, ...]:
        return (self.dataset, *self.also)


SMOKE: dict[str, Smoke] = {
    "mlp": Smoke(
        "moons", {"hidden": [8], "batchnorm": True, "dropout": 0.1}, also=("diabetes", "digits")
    ),
    "mc_dropout": Smoke(
        "moons", {"hidden": [8, 8], "mc_samples_eval": 4}, also=("sine_gap", "digits")
    ),
    "ensemble": Smoke("moons", {"members": 3, "hidden": [8, 8]}, also=("sine_gap", "digits")),
    "multitask": Smoke("multitask_synth", {"hidden": [8]}),
    "flow": Smoke("moons", {"transform": "realnvp", "layers": 2, "hidden": [8]}, also=("digits",)),
    "vae": Smoke(
        "digits_bin",
        {"hidden": [8], "z_dim": 2, "k_eval": 4, "grad_var_samples": 2},
        also=("moons", "digits"),
    ),
    "gan": Smoke(
        "moons",
        {"hidden_g": [8], "hidden_d": [8], "latent_dim": 2, "conv_width": 4},
        also=("digits",),
    ),
    # order natural: their completion of the first half (check_complete) is exact only
    # there, and a random order's 409 is tested in tests/models/test_made.py, test_nade.py;
    # the random order (drawn at build, a buffer) is the variant
    "made": Smoke(
        "digits_bin",
        {"hidden": [8], "num_masks": 2, "inference_masks": 2},
        also=("moons",),
        variants=({"order": "random"},),
    ),
    "nade": Smoke("digits_bin", {"hidden": 8}, also=("moons",), variants=({"order": "random"},)),
    "rbm": Smoke(
        "digits_bin",
        {"hidden": 4, "chains": 8, "gibbs_steps": 3},
        also=("bars_stripes",),
        # 64 visible and 24 hidden units: log Z by AIS, PCD chains in the checkpoint; a
        # constant rate: PCD's default linear decay spans the budget, which differs between
        # the half run and the whole one of the resume test (tests/models/test_rbm.py
        # resumes a decayed run within one budget)
        variants=(
            {
                "persistent": True, "hidden": 24, "ais_runs": 4, "ais_betas": 10,
                "lr_decay": "constant",
            },
        ),
    ),
    "pixelcnn": Smoke("digits_bin", {"channels": 4, "layers": 1}, also=("digits",)),
    "gated_pixelcnn": Smoke(
        "digits_bin", {"channels": 4, "layers": 1, "conditional": True}, also=("digits",)
    ),
    # two stages on 8 × 8 would be three: filters and one block per stage keep it tiny
    "pixelcnn_pp": Smoke(
        "digits_bin", {"filters": 4, "nr_resnet": 1, "components": 2}, also=("digits",)
    ),
    "pixelrnn": Smoke(
        "digits_bin", {"hidden": 4, "layers": 1}, also=("digits",),
        variants=({"layer": "row_lstm"},),
    ),
    # the gated decoder conditioned on z, and a factorised one (decoder_layers 0)
    "pixelvae": Smoke(
        "digits_bin",
        {"latent_dim": 2, "hidden": 8, "channels": 4, "decoder_layers": 1, "k_eval": 2},
        also=("digits",),
        variants=({"decoder_layers": 0},),
    ),
    # 64 units: Gibbs training, the AIS log Z; exact enumeration is tested on tiny
    # synthetic sets in tests/models/test_boltzmann.py; pcd's chains are a buffer
    "boltzmann": Smoke(
        "digits_bin",
        {"chains": 8, "gibbs_steps": 1, "ais_runs": 4, "ais_betas": 10},
        also=("bars_stripes",),  # 16 units: exact log Z and exact samples
        variants=({"sampler": "pcd"},),
    ),
    # a constant ε: a schedule over the budget would differ between the half run and the
    # whole one of the resume test; a buffer smaller than the budget, so the ring wraps
    "dqn": Smoke(
        "cartpole",
        {
            "hidden": [8], "conv_channels": 2, "buffer_size": 32, "learning_starts": 16,
            "train_freq": 2, "gradient_steps": 2, "target_update": 8, "tau": 0.5,
            "double": True, "eps_start": 0.5, "eps_end": 0.5, "eval_every": 32,
            "eval_episodes": 1, "frame_skip": 2, "reward_clip": 1.0,
        },
        train={"steps": 64},
        batch_size=8,
        also=("minatar_breakout",),
    ),
    # 64 environment steps: a few CartPole episodes, updates, evaluations at 32 and 64
    "reinforce": Smoke(
        "cartpole",
        {
            "hidden": [8],
            "episodes_per_update": 2,
            "grad_var_samples": 2,
            "eval_every": 32,
            "eval_episodes": 1,
        },
        train={"steps": 64},
        also=("minatar_breakout",),
        variants=({"baseline": "mean", "normalize_returns": False},),  # no value network
    ),
    # updates from step 16 on, a buffer smaller than the budget (it wraps)
    "ddpg": Smoke(
        "pendulum",
        {
            "actor_hidden": [8],
            "critic_hidden": [8],
            "buffer_size": 48,
            "learning_starts": 16,
            "noise": "ou",
            "eval_every": 32,
            "eval_episodes": 1,
        },
        train={"steps": 64},
        batch_size=8,
        also=("mountaincar_continuous",),
    ),
    # the tanh cell by hand; the gated cells (torch's, stepped by hand for the gradients)
    # and the scaled init as variants
    "rnn": Smoke(
        "seq_digits",
        {"cell": "tanh", "hidden": 4, "probe": 4},
        also=("adding_50", "mnist1d"),
        variants=(
            {"cell": "lstm", "layers": 2, "clip_norm": 0.5},
            {"cell": "gru", "init": "scaled", "spectral_radius": 1.5},
        ),
    ),
    # holdout 0.2: karate's link AUC is scored; the variant: node2vec's biased walks,
    # negative sampling (its output matrix has n rows, not n − 1)
    "deepwalk": Smoke(
        "karate",
        {"walks_per_node": 2, "walk_length": 8, "window": 2, "dim": 8, "holdout": 0.2},
        also=("les_miserables",),
        variants=({"objective": "negative_sampling", "negative": 2, "p": 0.5, "q": 2.0},),
    ),
    # a 3-D quadratic (the one landscape of any dimension); the job's optimizer is the
    # context's default, Adam
    "optim": Smoke(
        "quadratic", {"dim": 3, "condition_number": 100.0}, train={"steps": 8},
        also=("rosenbrock", "logistic"),
    ),
}  # fmt: skip


def smoke_params(family: Family, **overrides: Any) -> Params:
    """The family's tiny ``Params`` (its smoke row's, with ``overrides``)."""
    return family.params(**{**SMOKE[family.name].params, **overrides})


# --- the family record's capabilities: read here only --------------------------------------


def declared(family: Family) -> set[str]:
    """What the family answers: the keys of its capability map (as the catalog lists them)."""
    return {c.value for c in family.capabilities}


def capability_fn(family: Family, capability: str) -> Callable[..., Any]:
    """The function behind one declared capability."""
    return family.capability(Capability(capability))


def with_capability(family: Family, capability: str) -> Family:
    """The family declaring one capability more (for the test that an unchecked one fails)."""
    extra = {Capability(capability): lambda *args: None}
    return dataclasses.replace(family, capabilities={**family.capabilities, **extra})


def latent_size(family: Family, params: Params) -> int:
    """The size of z that the family's decoder takes."""
    return family.capability(Capability.DECODE).latent_dim(params)


# --- one checker per capability -------------------------------------------------------------


@dataclass
class Probe:
    """A built (or trained) module of a family, and the data it was built for."""

    family: Family
    params: Params
    module: nn.Module
    data: Any  # a DataKind: a tensor table, or an environment
    n: int = 5

    @property
    def x(self) -> Tensor:
        """The first test inputs; for an environment, observations of seeded resets."""
        if isinstance(self.data, Environment):
            return reset_observations(self.data, self.n)
        return self.data.x_test[: self.n]


def reset_observations(data: DataKind, n: int) -> Tensor:
    """(n, *obs_shape): the first observation of n seeded evaluation episodes."""
    assert isinstance(data, Environment)
    env = data.make()
    try:
        return torch.stack([as_obs(env.reset(seed=eval_seed(0, i))[0]) for i in range(n)])
    finally:
        env.close()


# a checker calls the capability with fixed seeds, asserts what its answer must be, and
# returns the tensors it got (a checkpoint's round trip must give them back exactly)
Checker = Callable[[Probe], dict[str, Tensor]]


def check_predict(p: Probe) -> dict[str, Tensor]:
    """Single-task keys, or ``<task>.<key>`` for each task of a multitask set."""
    torch.manual_seed(123)  # MC dropout samples masks: same seed, same masks
    out: dict[str, Tensor] = capability_fn(p.family, Capability.PREDICT)(p.module, p.x, 5)
    info = p.data.info
    if info.task == "multitask":
        for t in info.tasks:
            sub = {k.split(".", 1)[1]: v for k, v in out.items() if k.startswith(f"{t.name}.")}
            _check_task_output(sub, t.kind, t.dim, t.n_classes, p.n)
        assert sum(k.count(".") for k in out) == len(out)  # every key belongs to one task
    else:
        _check_task_output(out, info.task, info.target_dim, info.n_classes, p.n)
    return out


def _check_task_output(
    out: dict[str, Tensor], kind: str, target_dim: int, n_classes: int | None, n: int
) -> None:
    shapes: dict[str, tuple[int, ...]]
    if kind == "regression":
        keys = {"mean", "epistemic_var", "aleatoric_var", "total_var"}
        shapes = dict.fromkeys(keys, (n, target_dim))
    else:
        c = n_classes or 0
        shapes = {"probs": (n, c)} | dict.fromkeys(
            ["predictive_entropy", "expected_entropy", "mutual_information"], (n,)
        )
    assert {k: tuple(v.shape) for k, v in out.items()} == shapes
    assert all(torch.isfinite(v).all() for v in out.values())
    if kind == "classification":
        torch.testing.assert_close(out["probs"].sum(-1), torch.ones(n))
    else:
        assert (out["epistemic_var"] >= 0).all() and (out["aleatoric_var"] >= 0).all()


def check_sample(p: Probe) -> dict[str, Tensor]:
    """``n`` finite samples in the data's shape; the same seed draws the same ones."""
    fn = capability_fn(p.family, Capability.SAMPLE)
    drawn: Tensor = fn(p.module, SampleOptions(n=p.n, seed=5))
    assert drawn.shape == (p.n, *p.data.info.input_shape)
    assert bool(torch.isfinite(drawn).all())
    assert torch.equal(drawn, fn(p.module, SampleOptions(n=p.n, seed=5)))
    return {"samples": drawn}


def check_log_prob(p: Probe) -> dict[str, Tensor]:
    """One finite log-likelihood per input; a bound says how many samples it took."""
    torch.manual_seed(123)  # a bound draws its importance samples
    out = capability_fn(p.family, Capability.LOG_PROB)(p.module, p.x, None, 2)
    assert isinstance(out, LogProb)
    assert out.log_prob.shape == (p.n,) and bool(torch.isfinite(out.log_prob).all())
    assert out.exact or out.k is not None
    return {"log_prob": out.log_prob}


def check_encode(p: Probe) -> dict[str, Tensor]:
    """The posterior's ``mean`` and ``log_var`` per input, of the decoder's latent size."""
    torch.manual_seed(123)
    out: dict[str, Tensor] = capability_fn(p.family, "encode")(p.module, p.x, None)
    d = latent_size(p.family, p.params)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "mean": (p.n, d),
        "log_var": (p.n, d),
    }
    assert all(bool(torch.isfinite(v).all()) for v in out.values())
    return out


def check_decode(p: Probe) -> dict[str, Tensor]:
    """Latents z -> finite outputs in the data's shape."""
    z = torch.randn(
        p.n, latent_size(p.family, p.params), generator=torch.Generator().manual_seed(7)
    )
    x: Tensor = capability_fn(p.family, "decode")(p.module, z, None)
    assert x.shape == (p.n, *p.data.info.input_shape) and bool(torch.isfinite(x).all())
    return {"decoded": x}


def check_interpolate(p: Probe) -> dict[str, Tensor]:
    """The family's path between two encodings (or two drawn latents), ends included,
    decoded: finite outputs in the data's shape, starting where the first end decodes."""
    decode = capability_fn(p.family, "decode")
    if "encode" in declared(p.family):
        ends = capability_fn(p.family, "encode")(p.module, p.x[:2], None)["mean"]
    else:
        d = latent_size(p.family, p.params)
        ends = torch.randn(2, d, generator=torch.Generator().manual_seed(7))
    path = capability_fn(p.family, "interpolate")(ends[0], ends[1], 4)  # (4, d)
    assert path.shape == (4, ends.shape[1])
    torch.testing.assert_close(path[[0, -1]], ends.cpu())  # ends included
    x: Tensor = decode(p.module, path, None)
    assert x.shape == (4, *p.data.info.input_shape) and bool(torch.isfinite(x).all())
    torch.testing.assert_close(x[:1], decode(p.module, ends[:1], None))
    return {"path": x}


def check_receptive_field(p: Probe) -> dict[str, Tensor]:
    """For the first and the last position: a finite, non-negative map in the data's shape
    that is zero at the position itself (a conditional never sees its own value); some
    input influences one of them."""
    fn = capability_fn(p.family, Capability.RECEPTIVE_FIELD)
    d = p.data.x_test[0].numel()
    maps = {}
    for k in (0, d - 1):
        m: Tensor = fn(p.module, k)
        assert m.shape == p.data.info.input_shape, (m.shape, p.data.info.input_shape)
        assert bool(torch.isfinite(m).all()) and bool((m >= 0).all())
        assert float(m.flatten()[k]) == 0.0
        maps[f"field_{k}"] = m
    assert sum(float(m.sum()) for m in maps.values()) > 0
    return maps


def check_complete(p: Probe) -> dict[str, Tensor]:
    """Completions of the inputs with their first half (flat order) observed: finite, in
    the data's shape, equal to the inputs where observed; the same seed, the same ones."""
    fn = capability_fn(p.family, Capability.COMPLETE)
    shape = p.data.info.input_shape
    d = p.x[0].numel()
    observed = (torch.arange(d) < d // 2).view(shape)
    opts = SampleOptions(n=p.n, seed=5)
    out: Tensor = fn(p.module, p.x, observed, opts)
    assert out.shape == (p.n, *shape) and bool(torch.isfinite(out).all())
    torch.testing.assert_close(out[:, observed], p.x[:, observed].to(out))
    assert torch.equal(out, fn(p.module, p.x, observed, opts))
    return {"completions": out}


def check_filters(p: Probe) -> dict[str, Tensor]:
    """Finite weights, one image per unit in the data's shape; the same call, the same ones."""
    fn = capability_fn(p.family, Capability.FILTERS)
    w: Tensor = fn(p.module)
    assert w.ndim == 1 + len(p.data.info.input_shape) and len(w) >= 1
    assert w.shape[1:] == p.data.info.input_shape and bool(torch.isfinite(w).all())
    assert torch.equal(w, fn(p.module))
    return {"filters": w}


def check_chain(p: Probe) -> dict[str, Tensor]:
    """States after 0, 1 and 3 sweeps of seeded chains, in the data's shape; the last is
    what SAMPLE with 3 steps draws; its default sweeps and updates per sweep are counts."""
    fn = capability_fn(p.family, Capability.CHAIN)
    opts = SampleOptions(n=2, seed=5, steps=3)
    states: Tensor = fn(p.module, opts, [0, 1, 3])
    assert states.shape == (3, 2, *p.data.info.input_shape)
    assert bool(torch.isfinite(states).all())
    assert torch.equal(states[-1], capability_fn(p.family, Capability.SAMPLE)(p.module, opts))
    assert torch.equal(states, fn(p.module, opts, [0, 1, 3]))
    assert fn.sweeps(p.module) >= 0 and fn.updates(p.module) >= 1  # type: ignore[attr-defined]
    return {"chain": states}


def check_act(p: Probe) -> dict[str, Tensor]:
    """An action per observation, inside the action space; ``q_values`` (the actions are
    their argmax) or ``probs`` (a distribution) beside them; the same call, the same answer."""
    fn = capability_fn(p.family, Capability.ACT)
    out: dict[str, Tensor] = fn(p.module, p.x)
    space = p.data.action
    assert "actions" in out and out.keys() <= {"actions", "q_values", "probs"}, sorted(out)
    a = out["actions"]
    if space.type == "discrete":
        assert a.shape == (p.n,) and a.dtype == torch.int64
        assert bool(((a >= 0) & (a < space.n)).all())
        for key in ("q_values", "probs"):
            if key in out:
                assert out[key].shape == (p.n, space.n) and bool(torch.isfinite(out[key]).all())
        if "q_values" in out:
            assert torch.equal(a, out["q_values"].argmax(-1))
        if "probs" in out:
            torch.testing.assert_close(out["probs"].sum(-1), torch.ones(p.n))
    else:
        assert a.shape == (p.n, *space.shape) and bool(torch.isfinite(a).all())
        if space.low is not None and space.high is not None:
            assert bool(
                (a >= torch.tensor(space.low)).all() and (a <= torch.tensor(space.high)).all()
            )
    again = fn(p.module, p.x)
    assert all(torch.equal(v, again[k]) for k, v in out.items())
    return out


def check_rollout(p: Probe) -> dict[str, Tensor]:
    """Returns and lengths of greedy episodes, one each, lengths within the time limit;
    the same seed, the same episodes."""
    fn = capability_fn(p.family, Capability.ROLLOUT)
    opts = RolloutOptions(episodes=2, seed=3)
    out: dict[str, Tensor] = fn(p.module, p.data, opts)
    assert out.keys() == {"returns", "lengths"}
    assert out["returns"].shape == out["lengths"].shape == (2,)
    assert bool(torch.isfinite(out["returns"]).all()) and bool((out["lengths"] >= 1).all())
    limit = p.data.max_episode_steps
    assert limit is None or bool((out["lengths"] <= limit).all())
    again = fn(p.module, p.data, opts)
    assert all(torch.equal(v, again[k]) for k, v in out.items())
    return out


def check_gradients(p: Probe) -> dict[str, Tensor]:
    """A gradient profile of the first test sequences: at most 32 recorded steps from the
    first to the last, finite non-negative norms; ‖∂c_T/∂c_T‖ = 1; the same call, the
    same answer."""
    fn = capability_fn(p.family, Capability.GRADIENTS)
    x, y = p.data.x_test[: p.n], p.data.y_test[: p.n]
    out: dict[str, Tensor] = fn(p.module, x, y)
    at = out["positions"]
    assert 1 <= len(at) <= 32 and int(at[0]) == 1 and int(at[-1]) == x.shape[1]
    assert bool((at[1:] > at[:-1]).all())
    for key in ("grad_norm", "jacobian_norm"):
        assert out[key].shape == at.shape, key
        assert bool(torch.isfinite(out[key]).all() and (out[key] >= 0).all()), key
    torch.testing.assert_close(out["jacobian_norm"][-1], torch.tensor(1.0))
    again = fn(p.module, x, y)
    assert all(torch.equal(v, again[k]) for k, v in out.items())
    return out


def _nodes(p: Probe) -> Tensor:
    """The first ``p.n`` nodes of a graph (their indices)."""
    return torch.arange(min(p.n, p.data.info.input_shape[0]))


def check_embed(p: Probe) -> dict[str, Tensor]:
    """A finite vector per node, all of one size; the same call, the same vectors."""
    fn = capability_fn(p.family, Capability.EMBED)
    nodes = _nodes(p)
    out: dict[str, Tensor] = fn(p.module, nodes)
    assert out.keys() == {"vectors"}
    vectors = out["vectors"]
    assert vectors.ndim == 2 and len(vectors) == len(nodes) and bool(torch.isfinite(vectors).all())
    assert torch.equal(vectors, fn(p.module, nodes)["vectors"])
    return out


def check_neighbors(p: Probe) -> dict[str, Tensor]:
    """k other nodes per node, distinct, most similar first, similarities cosines."""
    fn = capability_fn(p.family, Capability.NEIGHBORS)
    nodes = _nodes(p)
    out: dict[str, Tensor] = fn(p.module, nodes, 3)
    assert out.keys() == {"nodes", "similarity"}
    found, sim = out["nodes"], out["similarity"]
    k = min(3, p.data.info.input_shape[0] - 1)
    assert found.shape == sim.shape == (len(nodes), k) and found.dtype == torch.int64
    assert not bool((found == nodes.unsqueeze(1)).any())
    assert all(len(set(row)) == k for row in found.tolist())
    assert bool((sim[:, :-1] >= sim[:, 1:]).all()) and bool((sim.abs() <= 1 + 1e-5).all())
    return out


def check_trajectory(p: Probe) -> dict[str, Tensor]:
    """The landscape's loss at points of the plotted plane, finite, one per point; at whole
    points (every coordinate) the module's own loss; the same call, the same numbers."""
    fn = capability_fn(p.family, Capability.TRAJECTORY)
    grid = torch.cartesian_prod(torch.linspace(-1, 1, 3), torch.linspace(-1, 1, 3))
    out: dict[str, Tensor] = fn(p.module, grid)
    assert out.keys() == {"loss"} and out["loss"].shape == (9,)
    assert bool(torch.isfinite(out["loss"]).all())
    assert torch.equal(out["loss"], fn(p.module, grid)["loss"])
    w = torch.cat([q.detach().reshape(-1) for q in p.module.parameters()])
    whole = fn(p.module, w.unsqueeze(0))["loss"]
    assert whole.shape == (1,) and bool(torch.isfinite(whole).all())
    return out


# keyed by capability (a ``Capability`` is its own value, so its name finds it too)
CHECKERS: dict[str, Checker] = {
    Capability.PREDICT: check_predict,
    Capability.SAMPLE: check_sample,
    Capability.LOG_PROB: check_log_prob,
    Capability.ENCODE: check_encode,
    Capability.DECODE: check_decode,
    Capability.INTERPOLATE: check_interpolate,
    Capability.RECEPTIVE_FIELD: check_receptive_field,
    Capability.COMPLETE: check_complete,
    Capability.FILTERS: check_filters,
    Capability.CHAIN: check_chain,
    Capability.ACT: check_act,
    Capability.ROLLOUT: check_rollout,
    Capability.GRADIENTS: check_gradients,
    Capability.EMBED: check_embed,
    Capability.NEIGHBORS: check_neighbors,
    Capability.TRAJECTORY: check_trajectory,
}


def unchecked(family: Family) -> set[str]:
    """Capabilities the family declares that no checker answers (each fails the smoke test)."""
    return declared(family) - CHECKERS.keys()


def check_all(p: Probe) -> dict[str, dict[str, Tensor]]:
    """Every declared capability through its checker: capability -> the tensors it gave."""
    missing = unchecked(p.family)
    names = sorted(map(str, missing))
    assert not missing, f"{p.family.name} declares {names}: add a checker to CHECKERS"
    return {str(c): CHECKERS[c](p) for c in sorted(declared(p.family))}


def answers_or_refusals(p: Probe) -> dict[str, dict[str, Tensor] | str]:
    """``check_all``, with a capability the module refuses (its 409: a completion in a
    random order) recorded as the refusal's message instead of failing."""
    out: dict[str, dict[str, Tensor] | str] = {}
    for c in sorted(declared(p.family)):
        try:
            out[str(c)] = CHECKERS[c](p)
        except Unsupported as refused:
            out[str(c)] = str(refused)
    return out
