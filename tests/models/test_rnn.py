"""The ``rnn`` family's maths: the notes' Jacobian product against autograd, their bound
on random W, clipping, the scaled init's spectral radius, the LSTM's forget bias in
torch's layout, the hand-stepped gated cells against torch's, and the datasets it reads."""

from __future__ import annotations

import math
import random
from functools import partial

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from models.context import LocalContext
from models.data import load
from models.data.builtin import adding_problem
from models.family import GRADIENT_METRICS
from models.rnn import (
    RNN,
    RNNParams,
    TanhLayer,
    clip_gradients,
    fit,
    gradients,
    positions,
    tanh_jacobian_product,
)
from tests.support.data import tiny


def tanh_layer(h: int, f: int, scale: float, seed: int) -> TanhLayer:
    g = torch.Generator().manual_seed(seed)
    layer = TanhLayer(f, h).double()
    with torch.no_grad():
        layer.W.copy_(torch.randn(h, h, generator=g, dtype=torch.float64) * scale / math.sqrt(h))
        layer.U.copy_(torch.randn(h, f, generator=g, dtype=torch.float64))
        layer.b.copy_(torch.randn(h, generator=g, dtype=torch.float64) * 0.1)
    return layer


def run_from(layer: TanhLayer, x: torch.Tensor, c: torch.Tensor, k: int, t: int) -> torch.Tensor:
    """c_t from c_k, the notes' recurrence on one sequence x (T, F); steps 1-based."""
    for j in range(k + 1, t + 1):
        c = torch.tanh(layer.W @ c + layer.U @ x[j - 1] + layer.b)
    return c


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_the_jacobian_product_is_autograds(scale: float) -> None:
    layer = tanh_layer(6, 3, scale, seed=1)
    x = torch.randn(1, 9, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        states = [s[0] for s in layer.steps(x)]
    for k, t in [(1, 9), (3, 7), (4, 5), (6, 6)]:
        auto = torch.autograd.functional.jacobian(
            partial(run_from, layer, x[0], k=k, t=t), states[k - 1]
        )
        torch.testing.assert_close(tanh_jacobian_product(layer.W.detach(), states, k, t), auto)


@pytest.mark.parametrize("seed", range(5))
def test_the_bound_holds_on_random_w(seed: int) -> None:
    """‖∂c_j/∂c_{j-1}‖ ≤ ‖Wᵀ‖·‖diag σ'‖ at every step, so ‖∂c_T/∂c_k‖ ≤ bound^(T-k) with
    the bound's max over the steps."""
    g = torch.Generator().manual_seed(seed)
    scale = float(torch.empty(1).uniform_(0.3, 4.0, generator=g))
    layer = tanh_layer(8, 2, scale, seed=seed)
    x = torch.randn(1, 12, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        states = [s[0] for s in layer.steps(x)]
    W = layer.W.detach()
    w_norm = torch.linalg.matrix_norm(W, ord=2)
    slopes = [float((1 - s.pow(2)).max()) for s in states]
    for j in range(2, 13):
        step = torch.linalg.matrix_norm(tanh_jacobian_product(W, states, j - 1, j), ord=2)
        assert step <= w_norm * slopes[j - 1] * (1 + 1e-12)
    bound = float(w_norm) * max(slopes)
    for k in range(1, 13):
        jac = torch.linalg.matrix_norm(tanh_jacobian_product(W, states, k, 12), ord=2)
        assert jac <= bound ** (12 - k) * (1 + 1e-9)


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_the_diagnostics_jacobians_are_under_their_logged_bound(scale: float) -> None:
    """``gradients`` reports ‖W‖₂ and, for the tanh cell, the bound ‖Wᵀ‖·max‖diag σ'‖ whose
    (T - k)-th power is above its ‖∂c_T/∂c_k‖ at every recorded step k."""
    W = tanh_layer(8, 2, scale, seed=3).W.detach()
    module = RNN(RNNParams(cell="tanh", hidden=8), load("adding_50").info).double()
    with torch.no_grad():
        module.first.W.copy_(W)
    data = tiny("adding_50")
    xs, ys = data.x_val[:4].double(), data.y_val[:4].double()
    profile = gradients(module, xs, ys)
    torch.testing.assert_close(profile["w_norm"], torch.linalg.matrix_norm(W, ord=2))
    T, at = xs.shape[1], profile["positions"]
    assert bool((profile["jacobian_norm"] <= profile["jacobian_bound"] ** (T - at) + 1e-9).all())


def test_vanishing_below_radius_one_and_a_flat_lstm() -> None:
    """A tanh cell whose W has spectral radius 0.5 loses the gradient over 50 steps (many
    decades); an LSTM with its forget gate open keeps it within a few."""
    data = tiny("adding_50")
    x, y = data.x_val[:8], data.y_val[:8]
    torch.manual_seed(0)
    tanh = RNN(RNNParams(cell="tanh", init="scaled", spectral_radius=0.5), data.info)
    lstm = RNN(RNNParams(cell="lstm"), data.info)
    g_tanh, g_lstm = gradients(tanh, x, y)["grad_norm"], gradients(lstm, x, y)["grad_norm"]
    assert float(g_tanh[0] / g_tanh[-1]) < 1e-8
    assert float(g_lstm[0] / g_lstm[-1]) > 1e-3


def test_clipping_keeps_the_direction_and_returns_the_norm_before() -> None:
    g = torch.Generator().manual_seed(0)
    params = [nn.Parameter(torch.zeros(4, 3)), nn.Parameter(torch.zeros(5))]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 10
    before = torch.cat([p.grad.flatten() for p in params if p.grad is not None])
    norm = clip_gradients(params, 1.5)
    after = torch.cat([p.grad.flatten() for p in params if p.grad is not None])
    assert norm == pytest.approx(float(before.norm()), rel=1e-6)
    assert float(after.norm()) == pytest.approx(1.5, rel=1e-5)
    torch.testing.assert_close(after / after.norm(), before / before.norm())
    assert clip_gradients(params, None) == pytest.approx(1.5, rel=1e-5)  # no clip: kept
    torch.testing.assert_close(torch.cat([p.grad.flatten() for p in params]), after)


def test_fit_logs_the_norm_before_clipping() -> None:
    data = tiny("adding_50")
    params = RNNParams(cell="tanh", hidden=4, clip_norm=1e-3, probe=4)
    ctx = LocalContext(epochs=2, batch_size=16)
    fit(RNN(params, data.info), data, params, ctx)
    epochs = [m for _, m in ctx.history if "grad_norm" in m]
    assert len(epochs) == 2
    for m in epochs:
        assert m["grad_norm_max"] >= m["grad_norm"] > 1e-3 and m["clipped"] == 1.0
        assert {f"{GRADIENT_METRICS[0]}1", f"{GRADIENT_METRICS[1]}50"} <= m.keys()


@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
@pytest.mark.parametrize("radius", [0.7, 1.6])
def test_scaled_init_has_that_spectral_radius(cell: str, radius: float) -> None:
    torch.manual_seed(0)
    info = load("adding_50").info
    module = RNN(RNNParams(cell=cell, hidden=16, init="scaled", spectral_radius=radius), info)
    layer = module.first
    blocks = [layer.W] if cell == "tanh" else list(layer.rnn.weight_hh_l0.detach().split(16))
    for w in blocks:
        rho = torch.linalg.eigvals(w.detach()).abs().max()
        assert float(rho) == pytest.approx(radius, rel=1e-4)


def test_spectral_radius_is_refused_without_the_scaled_init() -> None:
    with pytest.raises(ValidationError, match="spectral_radius"):
        RNNParams(init="orthogonal", spectral_radius=0.5)
    for params in (RNNParams(), RNNParams(init="scaled", spectral_radius=0.5)):
        assert RNNParams(**params.model_dump()) == params  # a stored spec validates again


@pytest.mark.parametrize("forget_bias", [None, 0.0, 2.5, -1.0])
def test_the_forget_bias_sits_in_torchs_forget_block(forget_bias: float | None) -> None:
    """torch's LSTM computes each gate with b_ih + b_hh, its blocks in the order i, f, g, o:
    that sum is ``forget_bias`` (1 by default) in block 1, f, and 0 in the others."""
    torch.manual_seed(0)
    params = RNNParams(cell="lstm", hidden=6, layers=2, forget_bias=forget_bias)
    module = RNN(params, load("adding_50").info)
    for layer in module.layers:
        bias = (layer.rnn.bias_ih_l0 + layer.rnn.bias_hh_l0).detach()
        i, f, g, o = bias.chunk(4)
        assert f.tolist() == [1.0 if forget_bias is None else forget_bias] * 6
        assert torch.cat([i, g, o]).abs().max() == 0


def test_forget_bias_is_refused_without_the_lstm() -> None:
    for cell in ("tanh", "gru"):
        with pytest.raises(ValidationError, match="forget_bias"):
            RNNParams(cell=cell, forget_bias=1.0)
    params = RNNParams(cell="lstm", forget_bias=3.0)
    assert RNNParams(**params.model_dump()) == params  # a stored spec validates again


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_hand_stepped_gated_cells_are_torchs(cell: str) -> None:
    """Every weight and both biases random (a forget bias of 2 on top): a bias in the wrong
    block or the wrong vector would show."""
    torch.manual_seed(0)
    params = RNNParams(cell=cell, hidden=5, forget_bias=2.0 if cell == "lstm" else None)
    module = RNN(params, load("adding_50").info)
    layer = module.first
    with torch.no_grad():
        for w in layer.weights:
            w.add_(torch.randn_like(w) * 0.5)
    x = torch.randn(3, 7, 2)
    torch.testing.assert_close(layer.output(layer.steps(x)), layer(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_cells_train_a_tiny_adding_problem(cell: str) -> None:
    data = tiny("adding_50")
    params = RNNParams(cell=cell, hidden=8, layers=2, clip_norm=1.0, probe=4)
    ctx = LocalContext(steps=6, batch_size=8)
    module = RNN(params, data.info)
    fit(module, data, params, ctx)
    last = ctx.history[-1][1]
    assert math.isfinite(last["test_mse"]) and last["test_mse"] > 0
    assert all(math.isfinite(v) for _, m in ctx.history for v in m.values())


def test_positions_are_bounded_and_include_both_ends() -> None:
    assert positions(8).tolist() == list(range(1, 9))
    at = positions(200)
    assert len(at) <= 32 and int(at[0]) == 1 and int(at[-1]) == 200


def test_the_adding_problem() -> None:
    x, y = adding_problem(50, 20, np.random.default_rng(0))
    markers = x[:, :, 1]
    assert (markers.sum(1) == 2).all()
    assert (markers[:, :10].sum(1) == 1).all() and (markers[:, 10:].sum(1) == 1).all()
    np.testing.assert_allclose(y, (x[:, :, 0] * markers).sum(1))


def test_mnist1d_leaves_the_global_generators_as_they_were() -> None:
    from models.data.builtin import mnist1d

    np.random.seed(5)
    random.seed(5)
    a, b = np.random.get_state()[1].copy(), random.getstate()
    data = mnist1d()
    assert np.array_equal(np.random.get_state()[1], a) and random.getstate() == b
    assert data.x_train.shape[1:] == (40, 1) and data.info.n_classes == 10


@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
def test_checkpoint_keys(cell: str) -> None:
    """The keys docs/models.md lists: a checkpoint written before models/rnn.py became a
    package still loads."""
    module = RNN(RNNParams(cell=cell, hidden=4, layers=2), load("adding_50").info)
    per_layer = ["W", "U", "b"] if cell == "tanh" else [
        f"rnn.{w}" for w in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    ]  # fmt: skip
    layers = [f"layers.{i}.{k}" for i in range(2) for k in per_layer]
    expected = ["y_mean", "y_std", "noise_var", *layers, "head.weight", "head.bias"]
    assert list(module.state_dict()) == expected
    digits = RNN(RNNParams(cell=cell, hidden=4), load("seq_digits").info)
    assert list(digits.state_dict()) == [k for k in expected if "layers.1" not in k][3:]


def test_chrono_initialisation() -> None:
    """Tallec & Ollivier 2018: b_f = log u, u ~ U(1, T - 1) per unit, b_i = -b_f; the g and
    o blocks 0; every layer its own draw."""
    torch.manual_seed(0)
    params = RNNParams(cell="lstm", hidden=64, layers=2, forget_bias="chrono")
    module = RNN(params, load("adding_50").info)
    drawn = []
    for layer in module.layers:
        bias = (layer.rnn.bias_ih_l0 + layer.rnn.bias_hh_l0).detach()
        i, f, g, o = bias.chunk(4)
        assert 0 <= float(f.min()) and float(f.max()) <= math.log(49)
        assert float(f.std()) > 0.3  # spread over the time scales, not one value
        torch.testing.assert_close(i, -f)
        assert torch.cat([g, o]).abs().max() == 0
        drawn.append(f)
    assert not torch.equal(*drawn)
    assert RNNParams(**params.model_dump()) == params  # a stored spec validates again
    with pytest.raises(ValidationError, match="forget_bias"):
        RNNParams(cell="gru", forget_bias="chrono")
    with pytest.raises(ValidationError):
        RNNParams(cell="lstm", forget_bias="chronos")


def test_a_steps_states_are_bounded() -> None:
    """At most MAX_STEP_STATES states (sequences × T × layers × hidden) in a training step
    (the largest batch_size the API admits) or the diagnostics' probe (build refuses)."""
    from models.rnn import FAMILY, build
    from models.rnn.model import MAX_STEP_STATES

    info = load("adding_1000").info
    wide = RNNParams(hidden=256, layers=4, probe=16)
    assert FAMILY.max_batch_size is not None
    assert FAMILY.max_batch_size(wide, info) == MAX_STEP_STATES // (1000 * 4 * 256) == 65
    assert FAMILY.max_batch_size(RNNParams(), load("adding").info) > 10_000
    with torch.device("meta"):
        build(RNNParams(hidden=256, layers=4, probe=65), info)
        with pytest.raises(ValueError, match="probe"):
            build(RNNParams(hidden=256, layers=4, probe=66), info)
