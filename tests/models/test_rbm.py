"""The ``rbm`` family's maths: free energy, conditionals and log Z against brute-force
enumeration of both layers, AIS against the exact log Z, CD-k against the exact gradient,
and a short fit on ``bars_stripes``."""

from __future__ import annotations

import itertools
import math
import time
from typing import Any, Literal

import pytest
import torch

import models.energy as energy_module
from models.context import LocalContext
from models.data import load_data
from models.energy import (
    AisSchedule,
    ais_schedule,
    enumerate_states,
    rbm_free_energy,
    rbm_log_z_ais,
    rbm_log_z_exact,
)
from models.generative import NotAnswerable, SampleOptions
from models.optim import OptimizerSpec
from models.rbm import (
    AIS_MAX_WORK,
    RBM,
    CDSurrogate,
    RBMParams,
    cd_loss,
    fit,
    log_prob,
    sample,
)
from tests.support.data import RecordingContext


def tiny(d: int = 4, h: int = 3, seed: int = 0, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d, h, generator=g, dtype=torch.float64) * scale
    b = torch.randn(d, generator=g, dtype=torch.float64) * scale
    c = torch.randn(h, generator=g, dtype=torch.float64) * scale
    return W, b, c


def all_states(n: int) -> torch.Tensor:
    return torch.cat(list(enumerate_states(n)))


def energy(x, h, W, b, c):
    """E(x, h) for every pair: (|x|, |h|)."""
    return -(x @ W @ h.T) - (x @ b)[:, None] - (h @ c)[None, :]


def test_enumerate_states_lists_every_vector_once() -> None:
    s = all_states(5)
    assert s.shape == (32, 5)
    assert len({tuple(r.tolist()) for r in s}) == 32


def test_free_energy_marginalises_h() -> None:
    W, b, c = tiny()
    xs, hs = all_states(4), all_states(3)
    brute = -torch.logsumexp(-energy(xs, hs, W, b, c), 1)
    torch.testing.assert_close(rbm_free_energy(xs, W, b, c), brute)


def test_conditionals_match_the_energy() -> None:
    W, b, c = tiny()
    xs, hs = all_states(4), all_states(3)
    log_joint = -energy(xs, hs, W, b, c)  # (X, H), unnormalised
    p_h_given_x = torch.softmax(log_joint, 1)  # over every h, per x
    p_x_given_h = torch.softmax(log_joint, 0)  # over every x, per h
    info = load_data("bars_stripes").info
    rbm = RBM(RBMParams(hidden=3), info)
    p_h1 = torch.sigmoid(c + xs @ W)  # the family's p(h_j = 1 | x)
    p_x1 = torch.sigmoid(b + hs @ W.T)
    torch.testing.assert_close(p_h_given_x @ hs, p_h1)  # marginals of the enumerated p(h|x)
    torch.testing.assert_close(p_x_given_h.T @ xs, p_x1)
    # and the factorisation: p(h | x) = Π_j p(h_j | x)
    fact = (hs[None] * p_h1[:, None] + (1 - hs[None]) * (1 - p_h1[:, None])).prod(-1)
    torch.testing.assert_close(p_h_given_x, fact)
    # the module's own conditionals: a 4-visible model inside the 16-pixel module's shapes
    rbm.double()
    with torch.no_grad():
        rbm.W.zero_()
        rbm.W[:4] = W
        rbm.b.zero_()
        rbm.b[:4] = b
        rbm.c.copy_(c)
    x16 = torch.zeros(len(xs), 16, dtype=torch.float64)
    x16[:, :4] = xs
    torch.testing.assert_close(rbm.p_h(x16), p_h1)
    torch.testing.assert_close(rbm.p_x(hs)[:, :4], p_x1)


@pytest.mark.parametrize("shape", [(4, 3), (3, 5), (1, 1), (9, 7)])  # h, then x; odd n
def test_exact_log_z_against_both_layers(shape: tuple[int, int]) -> None:
    W, b, c = tiny(*shape)
    xs, hs = all_states(shape[0]), all_states(shape[1])
    brute = float(torch.logsumexp((-energy(xs, hs, W, b, c)).flatten(), 0))
    assert rbm_log_z_exact(W, b, c) == pytest.approx(brute, abs=1e-10)


@pytest.mark.parametrize("block", [1, 216])  # 1 or 3 of the 16 high states a block
def test_exact_log_z_by_blocks(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    W, b, c = tiny(9, 7, seed=1)
    xs, hs = all_states(9), all_states(7)
    brute = float(torch.logsumexp((-energy(xs, hs, W, b, c)).flatten(), 0))
    monkeypatch.setattr(energy_module, "BLOCK", block)
    assert rbm_log_z_exact(W, b, c) == pytest.approx(brute, abs=1e-10)


def test_pseudo_nll_and_log_prob_against_enumeration() -> None:
    info = load_data("bars_stripes").info
    rbm = RBM(RBMParams(hidden=3), info).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        rbm.W.copy_(torch.randn(16, 3, generator=g, dtype=torch.float64))
        rbm.b.copy_(torch.randn(16, generator=g, dtype=torch.float64) * 0.3)
    x = (torch.rand(5, 16, generator=g) < 0.5).double()
    log_z = rbm_log_z_exact(rbm.W, rbm.b, rbm.c)
    lp = rbm.log_prob(x, log_z)
    # pseudo-likelihood: -Σ_i log p(x_i | x_-i) from the free energies of both values of x_i
    want = torch.zeros(5, dtype=torch.float64)
    for i in range(16):
        x1, x0 = x.clone(), x.clone()
        x1[:, i], x0[:, i] = 1, 0
        f1, f0 = rbm.free_energy(x1), rbm.free_energy(x0)
        p1 = torch.sigmoid(f0 - f1)
        want -= torch.where(x[:, i] == 1, p1.log(), (1 - p1).log())
    torch.testing.assert_close(rbm.pseudo_nll(x), want)
    # log P sums to 1 over the 2^3 hidden layer's enumeration of log Z: log P ≤ 0
    assert bool((lp < 0).all())
    out = log_prob(rbm, x.float(), None, 1)
    assert out.exact and out.log_prob.shape == (5,)


@pytest.mark.parametrize("schedule", ["linear", "sm08"])
def test_ais_within_its_error_bar_and_shrinking(schedule: AisSchedule) -> None:
    W, b, c = tiny(12, 10, seed=3, scale=0.5)
    exact = rbm_log_z_exact(W, b, c)
    base = torch.zeros(12, dtype=torch.float64)
    errs = []
    for runs in (50, 800):
        gen = torch.Generator().manual_seed(0)
        est, se = rbm_log_z_ais(W, b, c, base, runs, 300, gen, schedule=schedule)
        assert abs(est - exact) < 3 * se + 1e-3, (runs, est, exact, se)
        errs.append(se)
    assert errs[1] < errs[0] / 2  # ~ 1/√runs: 4x smaller expected


def test_ais_schedules_run_from_0_to_1_increasing() -> None:
    for n in (2, 3, 10, 14_500):
        for kind in ("linear", "sm08"):
            betas = ais_schedule(n, kind)
            assert len(betas) == n and betas[0] == 0.0 and betas[-1] == 1.0
            assert all(a < b for a, b in itertools.pairwise(betas)), (n, kind)
    # at Salakhutdinov & Murray's 14,500: steps of 1e-3, 1e-4, 1e-5 over their segments
    sm = ais_schedule(14_500, "sm08")
    for at, step in ((100, 1e-3), (3_000, 1e-4), (10_000, 1e-5)):
        assert sm[at + 1] - sm[at] == pytest.approx(step, rel=1e-3)


def test_cd_gradient_matches_the_exact_gradient_in_expectation() -> None:
    info = load_data("bars_stripes").info
    data = load_data("bars_stripes").x_train[:64]
    rbm = RBM(RBMParams(hidden=4, cd_k=1), info).double()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        rbm.W.copy_(torch.randn(16, 4, generator=g, dtype=torch.float64) * 0.3)
    x = data.double()
    # exact: ∇ (mean F(data) + log Z) = gradient of the NLL
    rbm.zero_grad()
    xs = all_states(16)
    log_z = torch.logsumexp(-rbm.free_energy(xs), 0)
    (rbm.free_energy(x).mean() + log_z).backward()
    exact = torch.cat([p.grad.flatten() for p in (rbm.W, rbm.b, rbm.c)])
    # CD-1 averaged over many chains: every example repeated
    rbm.zero_grad()
    reps = x.repeat(200, 1)
    cd_loss(rbm, reps, torch.Generator().manual_seed(3)).backward()
    cd1 = torch.cat([p.grad.flatten() for p in (rbm.W, rbm.b, rbm.c)])
    assert float(torch.cosine_similarity(cd1, exact, 0)) > 0.9
    # many sweeps from the data: close to the exact gradient
    rbm.params = RBMParams(hidden=4, cd_k=200)
    rbm.zero_grad()
    cd_loss(rbm, reps, torch.Generator().manual_seed(4)).backward()
    cdk = torch.cat([p.grad.flatten() for p in (rbm.W, rbm.b, rbm.c)])
    assert float(torch.cosine_similarity(cdk, exact, 0)) > 0.97
    assert float((cdk - exact).norm() / exact.norm()) < 0.25


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_cd_surrogate_gradient_is_autograds(weight_decay: float) -> None:
    """The closed-form backward of ``CDSurrogate`` against autograd through the two free
    energies, with negatives as many as PCD's chains (not the batch) and a scaled loss."""
    W, b, c = (t.requires_grad_() for t in tiny(6, 4, seed=5))
    g = torch.Generator().manual_seed(6)
    x = torch.randint(0, 2, (5, 6), generator=g, dtype=torch.float64)
    neg = torch.randint(0, 2, (9, 6), generator=g, dtype=torch.float64)
    surrogate = rbm_free_energy(x, W, b, c).mean() - rbm_free_energy(neg, W, b, c).mean()
    surrogate = surrogate + 0.5 * weight_decay * (W**2).sum()
    expected = torch.autograd.grad(3 * surrogate, (W, b, c))
    loss = CDSurrogate.apply(W, b, c, x, neg, weight_decay)
    torch.testing.assert_close(loss, surrogate)
    for got, want in zip(torch.autograd.grad(3 * loss, (W, b, c)), expected, strict=True):
        torch.testing.assert_close(got, want)


def test_fit_on_bars_stripes_improves_the_exact_test_nll() -> None:
    data = load_data("bars_stripes")
    params = RBMParams(hidden=8, cd_k=5)
    rbm = RBM(params, data.info)
    x = data.x_test.flatten(1)
    with torch.no_grad():
        before = float(-rbm.log_prob(x, rbm_log_z_exact(rbm.W, rbm.b, rbm.c)).mean())
    ctx = LocalContext(epochs=15, batch_size=32, optimizer=OptimizerSpec(name="adam", lr=0.05))
    fit(rbm, data, params, ctx)
    final = ctx.history[-1][1]
    assert final["test_nll"] < before - 3.0, (before, final)  # measured: 11.09 -> 5.84
    assert final["test_nll"] < 16 * math.log(2)  # better than uniform
    assert final["test_nll_stderr"] == 0.0 and final["test_ais_runs"] == 0.0
    assert {"val_recon_error", "val_pseudo_nll", "val_nll"} <= set(ctx.history[0][1])
    drawn = sample(rbm, SampleOptions(n=8, seed=4))
    assert drawn.shape == (8, 16)  # input_shape: flattened images
    assert torch.equal(drawn, sample(rbm, SampleOptions(n=8, seed=4)))


def test_ais_work_is_bounded_at_build() -> None:
    """The final test's AIS: runs x betas x 2 x D x H over ``AIS_MAX_WORK`` (1e13) is
    refused when the job is built (the API's 422 at params); Salakhutdinov & Murray's 100
    runs x 14,500 betas on mnist5k_bin with 500 hidden units fit."""
    info = load_data("mnist5k_bin").info
    RBM(RBMParams(hidden=500, ais_betas=14_500), info)  # 1.1e12
    RBM(RBMParams(hidden=500, ais_runs=1_000, ais_betas=10_000), info)  # 7.8e12
    with pytest.raises(ValueError, match="ais_runs"):
        RBM(RBMParams(hidden=500, ais_runs=2_000, ais_betas=10_000), info)  # 1.6e13
    RBM(RBMParams(hidden=20, ais_runs=100_000, ais_betas=1_000_000), info)  # exact: no AIS


def test_the_default_ais_grows_with_the_model_within_its_bound() -> None:
    """No ``ais_betas``: 20 temperatures per hidden unit, at least 1,000, at most what
    ``AIS_MAX_WORK`` allows for the runs; a given count is kept."""
    mnist, digits = load_data("mnist5k_bin").info, load_data("digits_bin").info
    assert RBM(RBMParams(hidden=500), mnist).ais_betas == 10_000
    assert RBM(RBMParams(hidden=64), mnist).ais_betas == 1_280
    assert RBM(RBMParams(hidden=24), digits).ais_betas == 1_000
    assert RBM(RBMParams(hidden=500, ais_betas=300), mnist).ais_betas == 300
    for runs in (100, 100_000):  # the cap, then the least a run needs
        wide = RBM(RBMParams(hidden=4096, ais_runs=runs), mnist)
        assert wide.ais_betas == max(2, AIS_MAX_WORK // (2 * runs * 784 * 4096))
        assert wide.ais_work <= AIS_MAX_WORK


@pytest.mark.parametrize(
    ("persistent", "lr_decay", "last_lr"),
    [(False, None, "constant"), (True, "constant", "constant"), (False, "linear", "linear")],
)
def test_lr_decay_defaults_to_linear_for_pcd_alone(
    persistent: bool, lr_decay: Literal["constant", "linear"] | None, last_lr: str
) -> None:
    """Null ``lr_decay`` is linear with PCD (``test_linear_lr_decay...`` below) and constant
    with CD; a given one holds either way."""
    data = load_data("bars_stripes")
    params = RBMParams(hidden=8, persistent=persistent, chains=16, lr_decay=lr_decay)
    ctx = RecordingContext(epochs=2, batch_size=16, optimizer=OptimizerSpec(name="sgd", lr=0.1))
    fit(RBM(params, data.info), data, params, ctx)
    steps = int(ctx.checkpoints[-1][1]["step"])
    expected = 0.1 / steps if last_lr == "linear" else 0.1
    assert ctx.optimizers[0].param_groups[0]["lr"] == pytest.approx(expected)


def test_linear_lr_decay_ends_near_zero_and_resumes_as_one_run() -> None:
    """``lr_decay: linear`` (PCD's default): the rate at optimizer step t of T is η (1 − t/T),
    η/T at the last; a job stopped and resumed from its checkpoint (the runner's RNG states
    restored) ends with the weights of one straight run."""
    data = load_data("bars_stripes")
    params = RBMParams(hidden=8, persistent=True, chains=16)
    spec = OptimizerSpec(name="momentum", lr=0.1)

    def run(**kwargs: Any) -> tuple[RBM, RecordingContext]:
        torch.manual_seed(0)
        rbm = RBM(params, data.info)
        ctx = RecordingContext(epochs=4, batch_size=16, optimizer=spec, **kwargs)
        fit(rbm, data, params, ctx)
        return rbm, ctx

    straight, ctx = run()
    steps = int(ctx.checkpoints[-1][1]["step"])
    assert ctx.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 / steps)
    _, first = run(stop_after=steps // 2 + 1)  # stopped mid-epoch: resumes at an epoch's end
    assert 0 < int(first.checkpoints[-1][1]["step"]) < steps
    torch.manual_seed(1)
    resumed = RBM(params, data.info)
    ctx2 = RecordingContext(
        epochs=4, batch_size=16, optimizer=spec, resume=first.checkpoints[-1][1], best=first.best
    )
    ctx2.set_rng(first.rng[-1])
    fit(resumed, data, params, ctx2)
    for key in ("W", "b", "c", "chain"):
        assert torch.equal(resumed.state_dict()[key], straight.state_dict()[key]), key


def test_a_request_needing_an_ais_over_its_bound_is_refused_at_once() -> None:
    """The worst case: the widest RBM (4,096 hidden) on 784 pixels with the largest AIS a
    build allows (100 x 15,000 betas: 9.6e12 multiply-adds, minutes) and no stored log Z
    (a checkpoint before its final test): log-prob refuses (the API's 409) before any
    annealing; with a stored log Z it answers −F(x) − log Z."""
    info = load_data("mnist5k_bin").info
    rbm = RBM(RBMParams(hidden=4096, ais_betas=15_000), info)
    x = load_data("mnist5k_bin").x_test[:3].flatten(1)
    start = time.process_time()
    with pytest.raises(NotAnswerable, match="no log Z yet"):
        log_prob(rbm, x, None, 1)
    assert time.process_time() - start < 1.0
    rbm.log_z.fill_(123.0)
    rbm.log_z_stderr.fill_(0.5)
    out = log_prob(rbm, x, None, 1)
    want = -rbm.free_energy(x).double() - 123.0
    torch.testing.assert_close(out.log_prob, want.float())
    assert not out.exact and out.k == 100


def test_the_served_checkpoint_keeps_the_final_tests_log_z() -> None:
    """After fit, the checkpoint inference serves carries the log Z (and its standard
    error) the final test logged: a fresh module loaded from it answers log-prob with
    that log Z, without annealing again."""
    data = load_data("digits_bin")
    params = RBMParams(hidden=24, persistent=True, ais_runs=8, ais_betas=50)
    torch.manual_seed(0)
    rbm = RBM(params, data.info)
    ctx = RecordingContext(epochs=3, batch_size=64)
    fit(rbm, data, params, ctx)
    final = ctx.history[-1][1]
    served = ctx.served()["model"]
    assert float(served["log_z"]) == final["test_log_z"]
    assert float(served["log_z_stderr"]) == final["test_nll_stderr"] > 0
    fresh = RBM(params, data.info)
    fresh.load_state_dict(served)
    x = data.x_test[:5].flatten(1)
    out = log_prob(fresh, x, None, 1)
    want = -fresh.free_energy(x).double() - final["test_log_z"]
    torch.testing.assert_close(out.log_prob, want.float())
    # the served weights: the best epoch's by validation, as final_test scored them
    for key in ("W", "b", "c"):
        assert torch.equal(served[key], rbm.state_dict()[key]), key
