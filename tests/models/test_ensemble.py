"""``ensemble`` specifics: the mixture, vectorised members, per-member gradients and orders."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from models import ensemble
from models.context import LocalContext
from models.data import Dataset, load
from models.loop import minibatches
from models.uncertainty import heteroscedastic_loss
from tests.support.data import RecordingContext, tiny


def fitted(
    dataset: str = "sine_gap", epochs: int = 2, **kw: Any
) -> tuple[ensemble.EnsembleNet, Dataset, RecordingContext]:
    data = tiny(dataset)
    params = ensemble.EnsembleParams(**{"members": 3, "hidden": [16], **kw})
    module = ensemble.build(params, data.info)
    ctx = RecordingContext(epochs=epochs, batch_size=32)
    ensemble.fit(module, data, params, ctx)
    return module, data, ctx


def standalone(module: ensemble.EnsembleNet, m: int) -> nn.Sequential:
    """Member m as an ordinary network of ``nn.Linear`` layers with copies of its weights."""
    layers: list[nn.Module] = []
    for layer in [*module.trunk, module.head]:
        if isinstance(layer, ensemble.BatchedLinear):
            w, b = layer.weight[m].detach(), layer.bias[m, 0].detach()
            linear = nn.Linear(*w.shape)
            with torch.no_grad():
                linear.weight.copy_(w.T)  # nn.Linear holds (out, in)
                linear.bias.copy_(b)
            layers.append(linear)
        else:
            layers.append(type(layer)())
    return nn.Sequential(*layers)


def test_mixture_moments_match_a_hand_computation() -> None:
    """μ* = mean of μ_m; σ*² = mean of (σ_m² + μ_m²) − μ*², split into epistemic + aleatoric."""
    info = load("sine_gap").info
    module = ensemble.build(ensemble.EnsembleParams(members=3, hidden=[2]), info)
    mu, var = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0.5, 1.0, 1.5])
    with torch.no_grad():  # zero weights: every member outputs its head bias (μ_m, log σ_m²)
        for p in module.parameters():
            p.zero_()
        module.head.bias[:, 0, 0] = mu
        module.head.bias[:, 0, 1] = var.log()
    out = ensemble.predict(module, torch.zeros(2, 1))
    mean = 7 / 3  # (1 + 2 + 4) / 3
    total = (0.5 + 1 + 1 + 4 + 1.5 + 16) / 3 - mean**2  # 8 - 49/9 = 23/9
    expected = {
        "mean": mean,
        "epistemic_var": (1 + 4 + 16) / 3 - mean**2,  # 14/9
        "aleatoric_var": 1.0,
        "total_var": total,
    }
    for key, value in expected.items():
        torch.testing.assert_close(out[key], torch.full((2, 1), value), msg=key)
    assert total == pytest.approx(23 / 9)


def test_members_differ_after_init() -> None:
    module = ensemble.build(ensemble.EnsembleParams(members=4, hidden=[8, 8]), load("moons").info)
    for layer in [module.trunk[0], module.trunk[2], module.head]:
        assert isinstance(layer, ensemble.BatchedLinear)
        w = layer.weight.detach().flatten(1)  # (M, in·out)
        assert torch.cdist(w, w).add(torch.eye(4)).min() > 0  # no two members alike
    out = module(load("moons").x_test[:5])
    assert out.shape == (4, 5, 2) and not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("dataset", ["sine_gap", "digits"])
def test_vectorised_forward_equals_each_member_alone(dataset: str) -> None:
    data = tiny(dataset)
    module = ensemble.build(ensemble.EnsembleParams(members=3, hidden=[8, 8]), data.info)
    module.normalizer.fit(data.x_train.flatten(1), data.y_train if dataset == "sine_gap" else None)
    seen: list[tuple[int, ...]] = []
    module.head.register_forward_hook(lambda _m, inputs, _o: seen.append(tuple(inputs[0].shape)))
    x = data.x_test[:6]
    out = module(x)  # (M, N, K)
    assert seen == [(3, 6, 8)]  # one call for all members
    h = module.normalizer.x(x.flatten(1))
    for m in range(3):
        torch.testing.assert_close(out[m], standalone(module, m)(h))


def member_alone_loss(
    module: ensemble.EnsembleNet, net: nn.Module, x: Tensor, y: Tensor, eps: float
) -> Tensor:
    """What member m's loss would be trained alone: the single-network loss (plus its FGSM term)."""
    norm, d = module.normalizer, module.target_dim

    def ell(h: Tensor) -> Tensor:
        out = net(h)
        if module.task == "classification":
            return nn.functional.cross_entropy(out, y)
        if module.heteroscedastic:
            return heteroscedastic_loss(norm.y(y), out[:, :d], out[:, d:])
        return 0.5 * (norm.y(y) - out).pow(2).sum(-1).mean()

    h = norm.x(x.flatten(1))
    if eps == 0:
        return ell(h)
    h = h.detach().requires_grad_(True)
    clean = ell(h)
    (grad,) = torch.autograd.grad(clean, h, retain_graph=True)
    return clean + ell((h + eps * grad.sign()).detach())


@pytest.mark.parametrize(
    ("dataset", "heteroscedastic", "eps"),
    [
        ("sine_gap", True, 0.0),
        ("sine_gap", False, 0.0),
        ("digits", True, 0.0),
        ("diabetes", True, 0.05),
    ],
)
def test_each_member_gets_exactly_its_standalone_gradient(
    dataset: str, heteroscedastic: bool, eps: float
) -> None:
    data, members = tiny(dataset), 3
    params = ensemble.EnsembleParams(
        members=members, hidden=[8, 8], heteroscedastic=heteroscedastic
    )
    module = ensemble.build(params, data.info)
    module.normalizer.fit(data.x_train.flatten(1), data.y_train if dataset != "digits" else None)
    g = torch.Generator().manual_seed(0)
    idx = torch.stack([torch.randperm(len(data.x_train), generator=g)[:16] for _ in range(members)])
    x, y = data.x_train[idx], data.y_train[idx]  # (M, B, ...): each member its own batch

    ensemble.loss(module, x, y, eps).backward()  # Σ_m ℓ_m
    for m in range(members):
        net = standalone(module, m)
        member_alone_loss(module, net, x[m], y[m], eps).backward()
        linears = [layer for layer in net if isinstance(layer, nn.Linear)]
        batched = [*module.trunk[::2], module.head]
        for alone, stacked in zip(linears, batched, strict=True):
            assert alone.weight.grad is not None and stacked.weight.grad is not None
            assert stacked.bias.grad is not None
            torch.testing.assert_close(stacked.weight.grad[m], alone.weight.grad.T)
            torch.testing.assert_close(stacked.bias.grad[m, 0], alone.bias.grad)


def test_each_member_has_its_own_order_and_sees_every_example_once() -> None:
    n, members, g = 50, 4, torch.Generator().manual_seed(0)
    order = ensemble.MemberOrder(n, members, g)
    batches = [order(pos) for pos in minibatches(n, 8, g)]  # each (M, B)
    epoch = torch.cat(batches, dim=1)  # (M, N)
    assert all(torch.equal(row.sort().values, torch.arange(n)) for row in epoch)
    assert not torch.equal(batches[0][0], batches[0][1])  # members' batches differ
    first = order.perm
    order.new_epoch()
    order(torch.arange(3))
    assert first is not None and order.perm is not None and not torch.equal(first, order.perm)


def test_regression_metrics_are_logged_each_epoch_and_at_the_end() -> None:
    _, _, ctx = fitted(epochs=3)
    assert [s for s, _ in ctx.metric("val_rmse")] == [1, 2, 3]
    assert [s for s, _ in ctx.metric("val_ll")] == [1, 2, 3]
    names = set(ctx.history[-1][1])
    assert names == {"test_loss", "test_rmse", "test_ll"}
    assert ctx.history[-1][1]["test_loss"] == -ctx.history[-1][1]["test_ll"]


def test_homoscedastic_noise_is_fitted_on_validation() -> None:
    module, data, _ = fitted(heteroscedastic=False, epochs=3)
    assert module.head.weight.shape[-1] == 1  # means only
    noise = float(module.noise_var)
    assert math.isfinite(noise) and 0 < noise < float(data.y_val.var()) * 10
    out = ensemble.predict(module, data.x_test[:4])
    torch.testing.assert_close(out["aleatoric_var"], torch.full((4, 1), noise))


def test_predict_uses_every_member_whatever_mc_samples() -> None:
    module, data, _ = fitted()
    a, b = (
        ensemble.predict(module, data.x_test[:5], 1),
        ensemble.predict(module, data.x_test[:5], 500),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (a["epistemic_var"] > 0).all()


def test_dropout_regularises_training_only() -> None:
    """With ``dropout`` each member drops its own units per example while training; at
    inference the members are deterministic and equal to the same nets without dropout."""
    torch.manual_seed(0)
    module, data, _ = fitted(dropout=0.5)
    x = data.x_test[:8]
    h = module.normalizer.x(x.flatten(1)).expand(module.members, -1, -1)
    module.train()
    a, b = module.members_forward(h), module.members_forward(h)
    assert not torch.equal(a, b)
    hidden = module.trunk[1](module.trunk[0](h))  # (M, N, 16) after the activation
    dropped = module.trunk[2](hidden) == 0
    assert dropped.any() and not torch.equal(dropped[0], dropped[1])  # a mask per member
    p1 = ensemble.predict(module, x)
    plain = ensemble.build(ensemble.EnsembleParams(members=3, hidden=[16]), data.info)
    plain.load_state_dict(module.state_dict())  # dropout has no weights: same state
    p2 = ensemble.predict(plain, x)
    assert all(torch.equal(p1[k], p2[k]) for k in p1)
    assert all(torch.equal(p1[k], ensemble.predict(module, x)[k]) for k in p1)


def test_classification_entropy_decomposition_on_digits() -> None:
    module, data, ctx = fitted("digits", heteroscedastic=True)
    assert module.head.weight.shape[-1] == 10  # the heteroscedastic flag is ignored
    names = {k for _, m in ctx.history for k in m}
    assert {"val_nll", "val_accuracy", "test_nll", "test_accuracy"} <= names
    out = ensemble.predict(module, data.x_test[:8])
    total, ale, mi = out["predictive_entropy"], out["expected_entropy"], out["mutual_information"]
    torch.testing.assert_close(total, ale + mi)  # H[E p] = E H[p] + MI
    assert (mi >= 0).all() and (mi > 0).any()
    assert (total <= math.log(10) + 1e-6).all()


@pytest.mark.slow  # trains to quality
def test_sine_gap_epistemic_in_the_gap_aleatoric_grows_with_x() -> None:
    """Members agree where there is data and disagree in the gap (−1, 1)."""
    data = load("sine_gap")
    params = ensemble.EnsembleParams()  # 5 members, [64, 64], GELU
    torch.manual_seed(0)
    module = ensemble.build(params, data.info)
    ctx = LocalContext(epochs=100, batch_size=64)
    ensemble.fit(module, data, params, ctx)
    assert ctx.metric("test_rmse")[-1][1] < 0.35  # noise alone gives about 0.26

    gap = ensemble.predict(module, torch.linspace(-0.8, 0.8, 17)[:, None])
    seen = torch.cat([torch.linspace(-2.8, -1.2, 17), torch.linspace(1.2, 2.8, 17)])[:, None]
    in_data = ensemble.predict(module, seen)
    assert gap["epistemic_var"].mean() > 3 * in_data["epistemic_var"].mean()

    edges = ensemble.predict(module, torch.tensor([[-2.8], [-1.2], [1.2], [2.8]]))
    ale = edges["aleatoric_var"].squeeze(1)
    assert ale[0] > ale[1] and ale[3] > ale[2]
