"""The maths of the flows: log-determinants against autograd, inverses, the planar
invertibility condition, MADE's autoregressive masks, and short fits."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch.autograd.functional import jacobian

from models.context import LocalContext
from models.data import load
from models.densities import banana, ring_u1, target_stats
from models.flow.bijectors import BatchNormFlow, Logit, Planar, Radial, Standardize, Transform
from models.flow.family import fit, log_prob, sample
from models.flow.flow import Flow, FlowParams, build, make_layer
from models.generative import OptionError, SampleOptions
from models.nets.made import MADE
from models.optim import OptimizerSpec
from tests.support.data import tiny

TRANSFORMS = ["planar", "radial", "realnvp", "maf"]
# (transform, conditioner activation): the conditioned transforms with a smooth one too
CASES = [(t, "relu") for t in TRANSFORMS] + [("realnvp", "tanh"), ("maf", "tanh")]


def perturbed_layer(
    transform: str, dim: int = 3, k: int = 1, activation: str = "relu"
) -> Transform:
    """A layer away from its identity initialisation (couplings start at zero)."""
    torch.manual_seed(0)
    params = FlowParams(transform=transform, hidden=[16, 16], activation=activation)  # type: ignore[arg-type]
    layer = make_layer(params, k, dim, None)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.4 * torch.randn_like(p))
    return layer


def autograd_log_det(fn: object, x: torch.Tensor) -> torch.Tensor:
    """log|det J| of a map (B, D) -> (B, D), one example at a time."""
    jac = torch.stack([jacobian(lambda v: fn(v[None])[0][0], xi) for xi in x])  # type: ignore[operator]
    return torch.linalg.slogdet(jac.double())[1].float()


@pytest.mark.parametrize(("transform", "activation"), CASES)
@pytest.mark.parametrize("direction", ["to_base", "to_data"])
def test_log_det_matches_autograd_jacobian(transform: str, activation: str, direction: str) -> None:
    layer = perturbed_layer(transform, activation=activation)
    x = 1.5 * torch.randn(6, 3)
    fn = getattr(layer, direction)
    _, log_det = fn(x)
    torch.testing.assert_close(log_det.detach(), autograd_log_det(fn, x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("pre", [Standardize(3), Logit(17.0)])
def test_preprocessing_log_det_matches_autograd(pre: Transform) -> None:
    if isinstance(pre, Standardize):
        pre.shift.copy_(torch.tensor([0.5, -1.0, 2.0]))
        pre.scale.copy_(torch.tensor([0.3, 2.0, 1.5]))
        x = torch.randn(5, 3)
    else:
        x = torch.rand(5, 3) * 17.0
    for fn, inp in ((pre.to_base, x), (pre.to_data, pre.to_base(x)[0])):
        torch.testing.assert_close(fn(inp)[1], autograd_log_det(fn, inp), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pre.to_data(pre.to_base(x)[0])[0], x, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("transform", "activation"), CASES)
def test_inverse_of_forward_is_identity(transform: str, activation: str) -> None:
    """realnvp and maf in closed form; radial by its quadratic; planar by bisection."""
    layer = perturbed_layer(transform, activation=activation)
    z = 2 * torch.randn(50, 3)
    x, ld_data = layer.to_data(z)
    z_back, ld_base = layer.to_base(x)
    torch.testing.assert_close(z_back, z, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ld_base, -ld_data, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_whole_flow_round_trip_and_log_density(transform: str) -> None:
    """log p(x) = log N(f⁻¹(x)) + log|det ∂f⁻¹/∂x| equals the log q of the sampling pass."""
    info = load("moons").info
    torch.manual_seed(1)
    flow = Flow(FlowParams(transform=transform, layers=3, hidden=[16]), info)
    flow.eval()  # batch normalisation (realnvp, maf) on its running statistics
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
        for name, b in flow.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                b.copy_(0.5 + torch.rand_like(b))
        x, log_q = flow.sample(64)
        torch.testing.assert_close(flow.log_density(x), log_q, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(flow.to_data(flow.to_base(x)[0])[0], x, atol=1e-4, rtol=1e-4)


def batchnorm_layer() -> BatchNormFlow:
    bn = BatchNormFlow(3)
    bn.running_mean.copy_(torch.tensor([0.2, -1.0, 3.0]))
    bn.running_var.copy_(torch.tensor([0.25, 4.0, 1.5]))
    return bn


def test_batchnorm_bijector_eval_log_det_and_inverse() -> None:
    """In eval mode the layer is the fixed affine map of its running statistics: both
    directions' log-determinants match autograd's Jacobian, and each inverts the other."""
    bn = batchnorm_layer().eval()
    x = 2 * torch.randn(6, 3)
    for fn, inp in ((bn.to_base, x), (bn.to_data, bn.to_base(x)[0])):
        torch.testing.assert_close(fn(inp)[1], autograd_log_det(fn, inp), atol=1e-4, rtol=1e-4)
    z, ld = bn.to_base(x)
    back, ld_back = bn.to_data(z)
    torch.testing.assert_close(back, x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ld_back, -ld)
    torch.testing.assert_close(z, (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps))
    expected = -0.5 * torch.log(torch.tensor([0.25, 4.0, 1.5]) + bn.eps).sum()
    torch.testing.assert_close(ld, expected.expand(6))


def test_batchnorm_bijector_train_uses_the_batch_and_updates_running_stats() -> None:
    """In training the batch is standardised by its own mean and (biased) variance, and
    log|det| = −½ Σ log(σ² + ε) with that variance; the running averages move by the
    momentum (0.1) toward the batch's mean and unbiased variance, as nn.BatchNorm1d's."""
    bn = batchnorm_layer().train()
    x = torch.tensor([[1.0, 2.0, -1.0], [3.0, 0.0, 0.0], [2.0, 7.0, 4.0], [6.0, -1.0, 1.0]])
    mean, var = x.mean(0), x.var(0, unbiased=False)
    old_mean, old_var = bn.running_mean.clone(), bn.running_var.clone()
    z, ld = bn.to_base(x)
    torch.testing.assert_close(z, (x - mean) / torch.sqrt(var + 1e-5))
    torch.testing.assert_close(ld, (-0.5 * torch.log(var + 1e-5)).sum().expand(4))
    torch.testing.assert_close(bn.running_mean, 0.9 * old_mean + 0.1 * mean)
    torch.testing.assert_close(bn.running_var, 0.9 * old_var + 0.1 * x.var(0, unbiased=True))
    assert not list(bn.parameters())  # no learnable affine: the next layer's s, t do that


@pytest.mark.parametrize("transform", ["realnvp", "maf"])
def test_flow_log_det_is_the_sum_of_its_layers_in_training_too(transform: str) -> None:
    """Flow.to_base sums the batch normalisations' log-dets from their stacked variances:
    the same total, and the same gradients, as chaining every layer's own to_base."""
    import copy

    torch.manual_seed(4)
    flow = Flow(FlowParams(transform=transform, layers=3, hidden=[16]), load("moons").info)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    chained = copy.deepcopy(flow)
    x = torch.randn(32, 2) * 2 + 1
    z, log_det = flow.to_base(x)
    z2, ld2 = chained.pre.to_base(x)
    for layer in chained.transforms():
        z2, ld = layer.to_base(z2)
        ld2 = ld2 + ld
    torch.testing.assert_close(z, z2)
    torch.testing.assert_close(log_det, ld2)
    g1 = torch.autograd.grad(log_det.mean(), list(flow.parameters()))
    g2 = torch.autograd.grad(ld2.mean(), list(chained.parameters()))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b)
    for (name, a), b in zip(flow.named_buffers(), chained.buffers(), strict=True):
        torch.testing.assert_close(a, b, msg=name)  # running statistics updated alike


def test_batchnorm_defaults_and_refusals() -> None:
    """On by default exactly where it applies (realnvp and maf by maximum likelihood);
    asked for where it cannot apply, a validation error naming it."""
    info = load("moons").info
    assert FlowParams().uses_batchnorm() and FlowParams(transform="maf").uses_batchnorm()
    for off in (
        FlowParams(transform="planar"),
        FlowParams(objective="reverse_kl", target="banana"),
    ):
        assert not off.uses_batchnorm()
    assert not FlowParams(batchnorm=False).uses_batchnorm()
    kinds = [type(t).__name__ for t in Flow(FlowParams(layers=2, hidden=[4]), info).layers]
    assert kinds == ["AffineCoupling", "BatchNormFlow"] * 2
    assert len(Flow(FlowParams(layers=2, hidden=[4], batchnorm=False), info).layers) == 2
    for bad in ({"transform": "radial"}, {"objective": "reverse_kl", "target": "banana"}):
        with pytest.raises(ValidationError, match="batchnorm"):
            FlowParams(batchnorm=True, **bad)  # type: ignore[arg-type]


def test_planar_reparameterisation_keeps_the_map_invertible() -> None:
    """wᵀû ≥ −1 for any u, w (appendix A.1), so x·w is increasing in z·w: one preimage."""
    torch.manual_seed(2)
    for _ in range(50):
        layer = Planar(2)
        with torch.no_grad():
            layer.u.copy_(5 * torch.randn(2))
            layer.w.copy_(5 * torch.randn(2))
            layer.b.copy_(torch.randn(()))
            assert float(layer.w @ layer.u_hat()) > -1
            w_unit = layer.w / layer.w.norm()
            t = torch.linspace(-10, 10, 401)[:, None]  # points along w
            x, log_det = layer.to_data(t * w_unit + torch.randn(1, 2))
            along = x @ w_unit
            assert (along[1:] >= along[:-1]).all() and torch.isfinite(log_det).all()


def test_planar_without_reparameterisation_could_fold() -> None:
    """The condition matters: with a raw u where wᵀu < −1 the map folds along w."""
    w, u = torch.tensor([1.0, 0.0]), torch.tensor([-3.0, 0.0])
    t = torch.linspace(-2, 2, 101)
    along = t + (w @ u) * torch.tanh(t)  # x·w for z = t·w, b = 0
    assert not (along[1:] >= along[:-1]).all()


def test_radial_parameters_stay_in_the_invertible_set() -> None:
    layer = Radial(2)
    with torch.no_grad():
        layer.beta_raw.fill_(-20.0)
        alpha, beta = layer._alpha_beta()
    assert float(alpha) > 0 and float(beta) >= -float(alpha)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_made_is_autoregressive_jacobian_triangular(activation: str) -> None:
    """∂(μ, α)_i/∂x_j = 0 unless j comes before i in the order: in that order the
    Jacobian of x -> z is lower triangular with diagonal exp(−α)."""
    torch.manual_seed(3)
    d, order = 5, torch.tensor([2, 0, 4, 1, 3])  # order[j]: position of dimension j
    made = MADE(order, [32, 32], activation)  # type: ignore[arg-type]
    with torch.no_grad():
        for p in made.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(d)
    for out in range(2):
        jac = jacobian(lambda v, out=out: made(v[None])[out][0], x)  # (D, D): out i, in j
        allowed = order[None, :] < order[:, None]
        assert (jac[~allowed] == 0).all() and (jac[allowed] != 0).any()
    layer = make_layer(FlowParams(transform="maf", hidden=[32]), 1, d, None)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    perm = torch.argsort(layer.order)  # dimensions in autoregressive order
    jac = jacobian(lambda v: layer.to_base(v[None])[0][0], x)[perm][:, perm]
    assert torch.equal(jac, jac.tril())


def fit_flow(dataset: str, steps: int, lr: float = 3e-3, n_train: int = 160, **params: object):
    data = tiny(dataset, n_train=n_train)
    p = FlowParams(**params)  # type: ignore[arg-type]
    torch.manual_seed(0)
    module = build(p, data.info)
    ctx = LocalContext(steps=steps, batch_size=32, optimizer=OptimizerSpec(name="adam", lr=lr))
    fit(module, data, p, ctx)
    return module, ctx


def test_fit_logs_the_variance_ratio_and_the_test_nll() -> None:
    _, ctx = fit_flow("moons", 6, transform="realnvp", layers=2, hidden=[8])
    assert {"train_loss", "val_loss", "var_ratio"} <= set(ctx.history[0][1])
    assert "test_nll" in ctx.history[-1][1]


@pytest.mark.slow  # trains to quality
@pytest.mark.parametrize(
    ("transform", "layers", "lr"),
    [("realnvp", 4, 3e-3), ("maf", 4, 3e-3), ("radial", 6, 3e-2), ("planar", 8, 3e-2)],
)
def test_short_fit_on_moons_lowers_nll(transform: str, layers: int, lr: float) -> None:
    _, ctx = fit_flow("moons", 150, lr=lr, transform=transform, layers=layers, hidden=[32])
    val = [v for _, v in ctx.metric("val_nll")]
    assert val[-1] < val[0] - 0.15, val
    assert {"train_loss", "val_loss", "var_ratio"} <= set(ctx.history[0][1])
    assert "test_nll" in ctx.history[-1][1]


@pytest.mark.slow  # trains to quality
def test_reverse_kl_under_estimates_variance_forward_kl_does_not() -> None:
    """rings8's own density as the target: reverse KL (mode-seeking) collapses onto few of
    the 8 modes; maximum likelihood on samples of the same density spreads over all."""
    common = {"transform": "realnvp", "layers": 4, "hidden": [32]}
    _, fwd = fit_flow("rings8", 250, lr=1e-3, n_train=1000, **common)
    _, rev = fit_flow(
        "rings8", 250, lr=1e-3, objective="reverse_kl", reverse_kl_samples=128, **common
    )
    fwd_ratio, rev_ratio = fwd.history[-1][1]["var_ratio"], rev.history[-1][1]["var_ratio"]
    assert 0.5 < fwd_ratio < 2.0 and rev_ratio < 0.2, (fwd_ratio, rev_ratio)
    last = rev.history[-1][1]
    rkl = [v for _, v in rev.metric("val_reverse_kl")]
    assert rkl[-1] < rkl[0] / 5  # it did fit, to the modes it found
    assert last["log_z_elbo"] <= last["log_z_true"] + 0.05  # the ELBO bounds log Z
    assert rev.history[-1][1]["test_nll"] > fwd.history[-1][1]["test_nll"]  # mass missing


@pytest.mark.slow  # trains to quality
def test_reverse_kl_fits_an_energy_and_bounds_log_z() -> None:
    _, ctx = fit_flow(
        "moons", 200, objective="reverse_kl", target="ring_u1", transform="maf", layers=4,
        hidden=[32], reverse_kl_samples=128,
    )  # fmt: skip
    first, last = ctx.history[0][1], ctx.history[-1][1]
    assert last["test_reverse_kl"] < 0.3 * first["val_reverse_kl"]
    assert last["log_z_elbo"] < last["log_z_true"] + 0.05
    assert "val_nll" not in first  # the data is not this target's


def test_target_moments_by_quadrature() -> None:
    stats = target_stats("banana", "moons")  # x₁ ~ N(0, 1), x₂|x₁ ~ N(x₁²/2 − 1, 0.25)
    assert abs(stats.log_z - math.log(2 * math.pi * 0.5)) < 1e-3
    assert abs(stats.mean[1] - (-0.5)) < 1e-2 and abs(stats.total_var - 1.75) < 1e-2
    assert torch.isfinite(ring_u1(torch.zeros(1, 2))).all() and banana(torch.zeros(1, 2)) < 0


def test_params_refuse_target_without_reverse_kl() -> None:
    with pytest.raises(ValidationError, match="reverse_kl"):
        FlowParams(target="banana")
    assert FlowParams(objective="reverse_kl", target="banana").target == "banana"


def test_reverse_kl_needs_a_known_density() -> None:
    with pytest.raises(ValueError, match="known only through samples"):
        fit_flow("moons", 1, objective="reverse_kl")


def test_images_dequantised_log_prob_and_samples_on_levels() -> None:
    module, ctx = fit_flow("digits", 30, layers=2, hidden=[32])
    info = module.info
    assert {"val_bits_per_dim", "test_bits_per_dim"} <= {k for _, m in ctx.history for k in m}
    x = tiny("digits").x_test[:4]
    out = log_prob(module, x, None, 4)
    assert not out.exact and out.k == 4 and torch.isfinite(out.log_prob).all()
    assert torch.equal(out.log_prob, log_prob(module, x, None, 4).log_prob)  # seeded
    # log P(v) ≤ 0 for discrete data (a probability), so bits/dim are positive
    assert (out.log_prob < 0).all()
    s = sample(module, SampleOptions(n=5, seed=3))
    assert s.shape == (5, *info.input_shape)
    assert torch.equal(s, s.round()) and s.min() >= 0 and s.max() <= 16
    assert torch.equal(s, sample(module, SampleOptions(n=5, seed=3)))
    with pytest.raises(OptionError) as err:
        log_prob(module, x + 17, None, 1)
    assert err.value.field == "inputs"


def test_conditioning_options_are_refused() -> None:
    module = build(FlowParams(layers=1, hidden=[4]), load("moons").info)
    with pytest.raises(OptionError) as err:
        sample(module, SampleOptions(n=2, label=1))
    assert err.value.field == "label"
    with pytest.raises(OptionError):
        log_prob(module, torch.zeros(2, 2), torch.zeros(2, dtype=torch.int64), 1)
    cold = sample(module, SampleOptions(n=500, seed=0, temperature=0.1))
    warm = sample(module, SampleOptions(n=500, seed=0, temperature=1.0))
    assert cold.var(0).sum() < 0.05 * warm.var(0).sum()
