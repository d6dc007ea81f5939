"""``mc_dropout`` specifics: dropout at inference, batched passes, τ, and the sine-gap picture."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from models import mc_dropout, uncertainty
from models.context import LocalContext
from models.data import Dataset, load
from models.optim import OptimizerSpec
from models.uncertainty import model_precision, weight_decay_for_precision
from tests.support.data import RecordingContext, tiny


def fitted(
    dataset: str = "sine_gap", epochs: int = 2, spec: OptimizerSpec | None = None, **kw: Any
) -> tuple[mc_dropout.MCDropoutNet, Dataset, RecordingContext]:
    data = tiny(dataset)
    params = mc_dropout.MCDropoutParams(**{"hidden": [16], "mc_samples_eval": 4, **kw})
    module = mc_dropout.build(params, data.info)
    ctx = RecordingContext(epochs=epochs, batch_size=32, optimizer=spec)
    mc_dropout.fit(module, data, params, ctx)
    return module, data, ctx


def test_dropout_stays_on_at_inference() -> None:
    module, data, _ = fitted()
    module.eval()
    a, b = mc_dropout.predict(module, data.x_test, 50), mc_dropout.predict(module, data.x_test, 50)
    assert not torch.equal(a["mean"], b["mean"])
    assert (a["epistemic_var"] > 0).all()


def test_passes_run_as_one_batched_forward() -> None:
    module, data, _ = fitted()
    seen: list[int] = []
    module.head.register_forward_hook(lambda _m, inputs, _o: seen.append(len(inputs[0])))
    out = mc_dropout.predict(module, data.x_test[:6], 10)
    assert seen == [60]  # T·N rows, one call
    assert out["mean"].shape == (6, 1)


def test_input_dropout_option() -> None:
    module, data, _ = fitted(input_dropout=True)
    assert module.passes(data.x_test[:3], 5).shape == (5, 3, 2)  # mean and log σ²


def test_given_tau_sets_weight_decay_per_layer() -> None:
    tau, p, ls = 2.0, 0.2, 0.5
    module, data, ctx = fitted(tau=tau, dropout=p, length_scale=ls, hidden=[8, 8])
    n = data.info.n_train
    assert float(module.tau) == tau
    assert ctx.metric("tau")[-1][1] == tau
    dropped, plain = ctx.optimizers[0].param_groups
    # torch's weight_decay is 2λ for the objective's λ‖W‖²
    assert dropped["weight_decay"] == pytest.approx(2 * weight_decay_for_precision(ls, p, n, tau))
    assert plain["weight_decay"] == pytest.approx(2 * ls**2 / (2 * n * tau))
    assert len(dropped["params"]) == 2  # the second hidden layer's and the head's weights
    assert len(plain["params"]) == 4  # the first layer's weight (no input dropout) and 3 biases


def test_homoscedastic_tau_is_fitted_on_validation() -> None:
    module, data, ctx = fitted(heteroscedastic=False, epochs=3)
    taus = [v for _, v in ctx.metric("tau")]
    assert len(taus) == 3 and all(math.isfinite(t) and t > 0 for t in taus)
    out = mc_dropout.predict(module, data.x_test[:4], 6)
    expected = float(module.normalizer.y_std**2 / module.tau)
    torch.testing.assert_close(out["aleatoric_var"], torch.full((4, 1), expected))


def test_heteroscedastic_tau_comes_from_weight_decay() -> None:
    _, _, ctx = fitted()
    assert ctx.metric("tau") == []  # λ = 0: τ = ∞ is not a number to log
    _, data, ctx = fitted(spec=OptimizerSpec(weight_decay=1e-4))
    expected = model_precision(1e-2, 0.1, data.info.n_train, 1e-4 / 2)
    assert ctx.metric("tau")[-1][1] == pytest.approx(expected)


def test_best_tau_recovers_the_noise_precision() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randn(4000, 1, generator=g) * 0.5  # residual variance 0.25 -> τ = 4
    assert uncertainty.best_tau(torch.zeros(1, 4000, 1), y) == pytest.approx(4.0, rel=0.1)


def test_classification_metrics_and_summary() -> None:
    module, data, ctx = fitted("digits", heteroscedastic=True)
    assert module.head.out_features == 10  # the heteroscedastic flag is ignored
    names = {k for _, m in ctx.history for k in m}
    assert {"val_accuracy", "val_nll", "test_accuracy", "test_nll"} <= names
    out = mc_dropout.predict(module, data.x_test[:5], 20)
    assert (out["mutual_information"] > 0).all()


@pytest.mark.slow  # trains to quality
def test_sine_gap_epistemic_in_the_gap_aleatoric_grows_with_x() -> None:
    """Gal & Ghahramani 2016, Fig. 2-style check on sine_gap (σ(x) = 0.05 + 0.1|x|)."""
    data = load("sine_gap")
    params = mc_dropout.MCDropoutParams(hidden=[64, 64], mc_samples_eval=20)  # GELU default
    torch.manual_seed(0)
    module = mc_dropout.build(params, data.info)
    ctx = LocalContext(epochs=200, batch_size=64, optimizer=OptimizerSpec(lr=1e-3))
    mc_dropout.fit(module, data, params, ctx)
    assert ctx.metric("test_rmse")[-1][1] < 0.35  # noise alone gives about 0.26

    torch.manual_seed(1)
    gap = mc_dropout.predict(module, torch.linspace(-0.8, 0.8, 17)[:, None], 500)
    seen = torch.cat([torch.linspace(-2.8, -1.2, 17), torch.linspace(1.2, 2.8, 17)])[:, None]
    in_data = mc_dropout.predict(module, seen, 500)
    assert gap["epistemic_var"].mean() > 3 * in_data["epistemic_var"].mean()

    edges = mc_dropout.predict(module, torch.tensor([[-2.8], [-1.2], [1.2], [2.8]]), 500)
    ale = edges["aleatoric_var"].squeeze(1)
    assert ale[0] > ale[1] and ale[3] > ale[2]
