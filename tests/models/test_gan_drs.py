"""Discriminator rejection sampling (``drs``, Azadi et al. 2019) in the ``gan`` family:
the parameters' rules, the buffer, the acceptance rule against two known Gaussians, the
sampler's determinism and cap, and the calibration inside ``fit`` (stop, resume)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import Tensor, nn

from models.checkpoint import dump_state, load_state
from models.data import load
from models.gan.drs import DRS_CHUNK, drs_burn_in_logits, drs_calibrated
from models.gan.family import fit, sample, sample_plain
from models.gan.nets import GAN, GANParams, build
from models.generative import OptionError, SampleOptions
from tests.support.data import RecordingContext, tiny

TINY: dict[str, Any] = {"hidden_g": [8], "hidden_d": [8], "latent_dim": 2}
P_G = (0.0, 2.0)  # G's samples: N(0, 2² I₂)
P_DATA = (1.0, 0.5)  # the data: N(1, 0.5² I₂)


# --- parameters and state ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "why"),
    [({"loss": "wasserstein"}, "BCE loss"), ({"pack": 2}, "pack 1")],
)
def test_drs_refuses_a_critic_and_packs(extra: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError, match=f"drs needs .*{why}") as err:
        GANParams(drs=True, **extra)
    assert isinstance(err.value, ValueError)
    GANParams(drs=False, **extra)  # fine without drs
    for loss in ("minimax", "non_saturating", "max_likelihood"):
        GANParams(drs=True, loss=loss)


def test_the_buffer_exists_only_with_drs() -> None:
    info = load("rings8").info
    plain = build(GANParams(**TINY), info)
    with_drs = build(GANParams(drs=True, **TINY), info)
    assert "drs_max_logit" not in plain.state_dict()
    assert set(with_drs.state_dict()) - set(plain.state_dict()) == {"drs_max_logit"}
    assert not any(k.startswith("drs") for k in plain.state_dict())
    m = with_drs.state_dict()["drs_max_logit"]
    assert m.shape == () and math.isnan(float(m)) and not drs_calibrated(with_drs)
    # a non-DRS checkpoint loads into a non-DRS GAN exactly as before
    build(GANParams(**TINY), info).load_state_dict(plain.state_dict())
    # the 0-d NaN survives the service's checkpoint format
    back = load_state(dump_state({"model": with_drs.state_dict()}))["model"]["drs_max_logit"]
    assert back.shape == () and math.isnan(float(back))
    # uncalibrated: plain samples
    opts = SampleOptions(n=7, seed=3)
    torch.testing.assert_close(sample(with_drs, opts), sample_plain(with_drs, opts))


# --- the acceptance rule against known densities -----------------------------------------------


def _log_normal(x: Tensor, mean: float, std: float) -> Tensor:
    """log N(x; mean, std² I) of rows x (B, 2)."""
    return -((x - mean) ** 2).sum(1) / (2 * std**2) - 2 * math.log(std) - math.log(2 * math.pi)


class _LinearG(nn.Module):
    """x = 2 z: z ~ N(0, I₂) gives p_G = N(0, 2² I₂)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        with torch.no_grad():
            self.lin.weight.copy_(torch.eye(2) * P_G[1])
            self.lin.bias.fill_(P_G[0])

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.lin(z)


class _RatioD(nn.Module):
    """The optimal D's logit for these two: l(x) = log p_data(x) − log p_G(x) (+ ``shift``)."""

    def __init__(self, shift: float = 0.0) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.tensor(shift))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return _log_normal(x, *P_DATA) - _log_normal(x, *P_G) + self.shift


def _known_gan(shift: float = 0.0) -> GAN:
    """A DRS GAN whose G and D are the two above, M the exact maximum of l."""
    module = build(
        GANParams(drs=True, latent_dim=2, hidden_g=[4], hidden_d=[4]), load("rings8").info
    )
    module.g = _LinearG()  # type: ignore[assignment]
    module.d = _RatioD(shift)  # type: ignore[assignment]
    # l = −2‖x − 1‖² + ‖x‖²/8 + const is largest where −4(x − 1) + x/4 = 0: x = 16/15
    x_max = torch.full((1, 2), 16 / 15)
    with torch.no_grad():
        module.drs_max_logit.fill_(float(module.d(x_max)[0] - shift))
    return module.eval()


def test_drs_samples_follow_the_data_where_g_does_not() -> None:
    """With D's logit the exact log density ratio and M its maximum, the kept samples are
    N(1, 0.5² I) while G's own are N(0, 2² I): the rule turns p_G into p_data."""
    module = _known_gan()
    plain = sample_plain(module, SampleOptions(n=4000, seed=1))
    torch.testing.assert_close(plain.mean(0), torch.zeros(2), atol=0.12, rtol=0)
    torch.testing.assert_close(plain.std(0), torch.full((2,), 2.0), atol=0.08, rtol=0)

    drs = sample(module, SampleOptions(n=4000, seed=1))
    assert drs.shape == (4000, 2)
    # standard errors: 0.5/√4000 ≈ 0.008 for the mean, ≈ 0.006 for the std
    torch.testing.assert_close(drs.mean(0), torch.ones(2), atol=0.03, rtol=0)
    torch.testing.assert_close(drs.std(0), torch.full((2,), 0.5), atol=0.025, rtol=0)
    # a Gaussian's radius: P(‖x − μ‖ ≤ σ) = 1 − e^{−1/2} ≈ 0.393 in 2-D
    inside = float(((drs - 1).norm(dim=1) <= 0.5).double().mean())
    assert inside == pytest.approx(1 - math.exp(-0.5), abs=0.03)


def test_the_burn_in_maximum_also_recovers_the_data() -> None:
    """M from the burn-in (as ``calibrate_drs`` sets it) instead of the exact maximum."""

    module = _known_gan()
    exact = float(module.drs_max_logit)
    burn_in = float(drs_burn_in_logits(module).max())
    assert exact - 0.5 < burn_in <= exact + 1e-5
    module.drs_max_logit.fill_(burn_in)
    drs = sample(module, SampleOptions(n=3000, seed=2))
    torch.testing.assert_close(drs.mean(0), torch.ones(2), atol=0.04, rtol=0)
    torch.testing.assert_close(drs.std(0), torch.full((2,), 0.5), atol=0.03, rtol=0)


def test_a_quantile_m_keeps_g_where_the_ratio_passes_it() -> None:
    """M at the q-quantile of G's logits: the sampler then draws ∝ min(p_G, p_data/e^M),
    so a kept sample lies above M with probability P_G(l > M)/acceptance = (1 − q)/a,
    a = E_G min(1, e^{l − M}); below M the relative weights are exact DRS's."""

    module = _known_gan()
    q = 0.9
    logits = drs_burn_in_logits(module)
    m = float(torch.quantile(logits, q))
    module.drs_max_logit.fill_(m)
    acceptance = float(torch.exp((logits - m).clamp(max=0)).mean())
    kept = sample(module, SampleOptions(n=4000, seed=3))
    above = float((module.d(kept) > m).double().mean())
    # 4,000 samples: the standard error of a fraction near 0.4 is about 0.008
    assert above == pytest.approx((1 - q) / acceptance, abs=0.03)
    assert 0.2 < above < 0.9  # the check has room to fail both ways


def test_drs_samples_are_determined_by_the_seed_not_by_n() -> None:

    module = _known_gan()
    logits = drs_burn_in_logits(module)
    acceptance = float(torch.exp((logits - module.drs_max_logit).clamp(max=0)).mean())
    assert 300 / acceptance > 1.2 * DRS_CHUNK  # about 1 in 21 kept: n = 300 spans chunks
    a = sample(module, SampleOptions(n=300, seed=5))
    torch.testing.assert_close(a, sample(module, SampleOptions(n=300, seed=5)))
    b = sample(module, SampleOptions(n=600, seed=5))
    torch.testing.assert_close(b[:300], a)
    assert not torch.equal(a, sample(module, SampleOptions(n=300, seed=6)))


def test_too_low_an_acceptance_is_refused_on_n() -> None:
    module = _known_gan(shift=-60.0)  # every logit ~60 below M: exp(−60) ≈ 1e-26 kept
    with pytest.raises(OptionError, match=r"acceptance 0\.000%") as err:
        sample(module, SampleOptions(n=1, seed=0))
    assert err.value.field == "n"
    assert "65,536" in str(err.value)


def test_labels_for_a_conditional_drs_gan() -> None:
    info = load("rings8").info
    module = build(GANParams(drs=True, conditional=True, **TINY), info).eval()
    module.drs_max_logit.fill_(0.0)  # logits of an untrained D are small: some are kept
    x = sample(module, SampleOptions(n=5, seed=0, label=3))
    assert x.shape == (5, 2)
    torch.testing.assert_close(x, sample(module, SampleOptions(n=5, seed=0, label=3)))
    assert sample(module, SampleOptions(n=5, seed=0)).shape == (5, 2)  # labels from the seed
    unconditional = build(GANParams(drs=True, **TINY), info).eval()
    unconditional.drs_max_logit.fill_(0.0)
    with pytest.raises(OptionError) as err:
        sample(unconditional, SampleOptions(n=2, label=1))
    assert err.value.field == "label"


# --- calibration in fit ------------------------------------------------------------------------


def _run(ctx: RecordingContext, **extra: Any) -> tuple[GAN, RecordingContext]:
    params = GANParams(drs=True, drs_steps=20, **{**TINY, **extra})
    torch.manual_seed(0)
    module = build(params, tiny("rings8").info)
    fit(module, tiny("rings8"), params, ctx)
    return module, ctx


def test_fit_calibrates_before_the_last_checkpoint() -> None:
    module, ctx = _run(RecordingContext(steps=12, batch_size=32))  # epochs end at 5, 10, 12
    assert [s for s, _, _ in ctx.checkpoints] == [5, 10, 12]
    drs_steps = [s for s, m in ctx.history if "drs_acceptance" in m]
    assert drs_steps == [12]
    last = ctx.history[-1][1]
    assert {"modes", "hq", "drs_max_logit", "drs_acceptance", "drs_modes", "drs_hq"} <= set(last)
    assert 0 < last["drs_acceptance"] <= 1 and 0 <= last["drs_hq"] <= 1
    assert drs_calibrated(module) and float(module.drs_max_logit) == last["drs_max_logit"]

    torch.testing.assert_close(  # M: the default 0.95 quantile of the burn-in logits
        module.drs_max_logit, torch.quantile(drs_burn_in_logits(module), 0.95)
    )
    state = ctx.checkpoints[-1][1]["model"]
    assert float(state["drs_max_logit"]) == last["drs_max_logit"]
    assert all(math.isnan(float(st["model"]["drs_max_logit"])) for _, st, _ in ctx.checkpoints[:-1])
    for k, v in module.state_dict().items():  # the checkpoint holds the fine-tuned D
        assert torch.equal(state[k], v), k
    opts = SampleOptions(n=50, seed=0)
    assert not torch.equal(sample(module, opts), sample_plain(module, opts))


def test_a_stop_during_calibration_leaves_m_unset_and_the_resume_redoes_the_end() -> None:
    straight, _ = _run(RecordingContext(steps=12, batch_size=32))
    # 12 polls train, the next 5 fine-tune D, then the stop
    module, ctx = _run(RecordingContext(steps=12, batch_size=32, stop_after=17))
    assert ctx.polls == 18 and not drs_calibrated(module)
    assert math.isnan(float(module.drs_max_logit))
    assert [s for s, _, _ in ctx.checkpoints] == [5, 10]
    assert not any("drs_acceptance" in m for _, m in ctx.history)
    assert [s for s, m in ctx.history if "train_loss" in m] == [5, 10]

    resumed = RecordingContext(steps=12, batch_size=32, resume=ctx.checkpoints[-1][1])
    resumed.set_rng(ctx.rng[-1])
    module, resumed = _run(resumed)
    assert [s for s, _, _ in resumed.checkpoints] == [12]
    assert drs_calibrated(module)
    for (k, v), w in zip(straight.state_dict().items(), module.state_dict().values(), strict=True):
        assert torch.equal(v, w), k


def test_a_resume_at_the_end_uncalibrated_calibrates_after_the_loop() -> None:
    _, first = _run(RecordingContext(steps=12, batch_size=32))
    state = dict(first.checkpoints[-1][1])
    state["model"] = {**state["model"], "drs_max_logit": torch.tensor(math.nan)}
    module, ctx = _run(RecordingContext(steps=12, batch_size=32, resume=state))
    assert drs_calibrated(module)
    assert [s for s, m in ctx.history] == [12] and "drs_acceptance" in ctx.history[0][1]
    assert "train_loss" not in ctx.history[0][1]
    assert [s for s, _, _ in ctx.checkpoints] == [12]
    assert math.isfinite(float(ctx.checkpoints[0][1]["model"]["drs_max_logit"]))


def test_extending_a_calibrated_run_calibrates_again() -> None:
    module, first = _run(RecordingContext(steps=12, batch_size=32))
    m_first = float(module.drs_max_logit)
    extended = RecordingContext(steps=17, batch_size=32, resume=first.checkpoints[-1][1])
    extended.set_rng(first.rng[-1])
    module, ctx = _run(extended)
    assert [s for s, m in ctx.history if "drs_acceptance" in m] == [17]
    assert drs_calibrated(module) and float(module.drs_max_logit) != m_first
