"""Energy-based models over binary units: what the ``rbm`` family (and a fully visible
Boltzmann machine) share. p(x) = exp(−F(x)) / Z with F the free energy; Z is a sum over
every binary state, computable by enumeration when one layer is small, else estimated.

- ``KeptLogZ``: an energy model whose log Z (and its standard error) lives in its
  buffers, computed once for its weights and kept in its checkpoint.
- ``enumerate_states``: every binary vector of n units, in chunks (float64).
- ``rbm_free_energy``, ``rbm_log_z_exact``: the Bernoulli-Bernoulli RBM, E(x, h) =
  −xᵀWh − bᵀx − cᵀh, F(x) = −bᵀx − Σ_j softplus(c_j + xᵀW_j); log Z by enumerating the
  smaller layer (≤ ``ENUMERABLE`` units) in float64 with logsumexp.
- ``anneal``: annealed importance sampling (Neal 2001) from any tractable base model to a
  target, given each step's log weight and a transition at each β; ``log_mean_exp``: the
  log of the mean importance weight with its standard error.
- ``ais_log_z``: ``anneal`` along the geometric path, given the log ratio of the two
  unnormalised densities (the ``boltzmann`` family's).
- ``rbm_log_z_ais``: ``anneal`` as Salakhutdinov & Murray 2008 ("On the quantitative
  analysis of deep belief networks") from the base-rate RBM (W = 0, c = 0, visible biases
  ``base_bias``, the data's marginals), with its standard error.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ENUMERABLE = 20  # the most units of a layer whose 2^n states are summed exactly
CHUNK = 1 << 14  # states per chunk of an enumeration
BLOCK = 1 << 16  # numbers per temporary of an exact RBM log Z (512 KB in float64)
S = TypeVar("S")  # an AIS run's state: its draws, and whatever the model keeps beside them


class KeptLogZ(nn.Module):
    """An energy model's log Z, kept: ``compute_log_z`` (the family's: exact or AIS) is run
    once for the weights by ``store_log_z``, into the ``log_z`` and ``log_z_stderr`` buffers
    (0-d float64; before any, 0 and a negative error: NaN would not compare equal), so the
    checkpoint carries it and requests read it (``kept_log_z``) instead of recomputing."""

    log_z: Tensor
    log_z_stderr: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("log_z", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("log_z_stderr", torch.tensor(-1.0, dtype=torch.float64))

    def compute_log_z(self) -> tuple[float, float]:
        """(log Z, its standard error: 0 when exact) for the current weights."""
        raise NotImplementedError

    def store_log_z(self) -> tuple[float, float]:
        """``compute_log_z`` for the current weights, kept in the buffers."""
        log_z, stderr = self.compute_log_z()
        self.log_z.fill_(log_z)
        self.log_z_stderr.fill_(stderr)
        return log_z, stderr

    def kept_log_z(self) -> float | None:
        """The kept log Z, None when none was computed for these weights."""
        return float(self.log_z) if float(self.log_z_stderr) >= 0 else None


def enumerate_states(
    n: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64
) -> Iterator[Tensor]:
    """All 2^n binary vectors of n units ((chunk, n)), in chunks of ``CHUNK``."""
    bits = 1 << torch.arange(n, device=device)
    for start in range(0, 1 << n, CHUNK):
        idx = torch.arange(start, min(start + CHUNK, 1 << n), device=device)
        yield ((idx[:, None] & bits) != 0).to(dtype)


def rbm_free_energy(x: Tensor, W: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """F(x) = −bᵀx − Σ_j softplus(c_j + xᵀW_j), per row of x (N, D); W is (D, H)."""
    return -(x @ b) - F.softplus(c + x @ W).sum(-1)


def rbm_enumerable(d: int, h: int) -> bool:
    """Whether the exact log Z is computed (the smaller layer has ≤ ``ENUMERABLE`` units)."""
    return min(d, h) <= ENUMERABLE


def rbm_log_z_exact(W: Tensor, b: Tensor, c: Tensor, dtype: torch.dtype = torch.float64) -> float:
    """log Z by enumerating the smaller layer, in ``dtype`` (float64; float32, ~2× faster
    on CPU and within ~1e-4 nats, for monitoring): over h, log Σ_h exp(cᵀh + Σ_i
    softplus(b_i + W_i h)); over x, log Σ_x exp(−F(x)), the same sum with the layers'
    roles swapped (bᵀx + Σ_j softplus(c_j + xᵀW_j))."""
    W, b, c = (t.detach().to(dtype) for t in (W, b, c))
    d, h = W.shape
    return _log_sum_softplus(W, b, c) if h <= d else _log_sum_softplus(W.T, c, b)


def _log_sum_softplus(W: Tensor, b: Tensor, c: Tensor) -> float:
    """log Σ_s exp(cᵀs + Σ_i softplus(b_i + W_i s)) over every binary s of the n = W.shape[1]
    units (W (m, n)). s splits into low and high bits, b + W s = (b + W_lo s_lo) + W_hi s_hi:
    two tables of 2^(n/2) rows added block by block, not a (2^n, n) × (n, m) product, in
    blocks of ``BLOCK`` numbers: malloc maps a temporary of a megabyte or more afresh each
    time, and its page faults cost more than its arithmetic (3× on the float64 log Z of
    64 × 16; 15,000 faults a call at 1 MB, none at 512 KB)."""
    n = W.shape[1]
    low = n // 2
    s_low = torch.cat(list(enumerate_states(low, W.device, W.dtype)))  # (2^low, low)
    s_high = torch.cat(list(enumerate_states(n - low, W.device, W.dtype)))
    a_low = torch.addmm(b, s_low, W[:, :low].T)  # (2^low, m)
    a_high = s_high @ W[:, low:].T  # (2^high, m)
    e_low, e_high = s_low @ c[:low], s_high @ c[low:]
    rows = max(1, BLOCK // a_low.numel())  # high states per block
    parts = [
        (e_high[i : i + rows, None] + e_low)
        + F.softplus(a_low + a_high[i : i + rows, None]).sum(-1)  # (rows, 2^low)
        for i in range(0, len(a_high), rows)
    ]
    return float(torch.logsumexp(torch.cat(parts).flatten().double(), 0))


def _uniform(shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> Tensor:
    """U[0, 1) drawn where the generator lives, moved to ``device``."""
    return torch.rand(shape, generator=gen, device=gen.device, dtype=torch.float64).to(device)


AisSchedule = Literal["linear", "sm08"]
# Salakhutdinov & Murray 2008 (§4.2): β steps of 1e-3 over [0, 0.5], 1e-4 over [0.5, 0.9]
# and 1e-5 over [0.9, 1], 14,500 in all: the knots of "sm08" (share of the steps, β)
SM08_STEPS = [0.0, 500 / 14_500, 4_500 / 14_500, 1.0]
SM08_BETAS = [0.0, 0.5, 0.9, 1.0]


def ais_schedule(betas: int, kind: AisSchedule = "linear") -> list[float]:
    """``betas`` inverse temperatures 0 = β_0 < ... < β_K = 1: evenly spaced (``linear``),
    or (``sm08``) piecewise linear in the step index, denser towards 1 where the
    intermediate distributions change fastest, in Salakhutdinov & Murray's proportions."""
    u = np.linspace(0.0, 1.0, betas)
    if kind == "sm08":
        u = np.interp(u, SM08_STEPS, SM08_BETAS)
    return [float(v) for v in u]


def rbm_log_z_ais(
    W: Tensor,
    b: Tensor,
    c: Tensor,
    base_bias: Tensor,
    runs: int,
    betas: int,
    gen: torch.Generator,
    schedule: AisSchedule = "linear",
) -> tuple[float, float]:
    """(log Z, its standard error) by AIS (``anneal``): ``runs`` independent runs through
    ``betas`` inverse temperatures 0 = β_0 < ... < β_K = 1 (``ais_schedule``), from the
    base-rate RBM.

    The intermediate unnormalised marginals are p*_β(x) = exp((1−β) b_Aᵀx + β bᵀx)
    Π_j (1 + exp(β (c_j + xᵀW_j))), the joint's energy (1−β) E_A + β E with h summed out
    (not the geometric path between the marginals, whose intermediates are no RBMs); at
    β = 0, Z_A = 2^H Π_i (1 + exp(b_A,i)). Each run draws x from the base model; its weight
    grows by log p*_k(x) − log p*_{k−1}(x), then one Gibbs sweep at β_k (h ~ p(h | x; β),
    x ~ p(x | h; β)). The state is (x, a = c + Wᵀx): two (runs, D) x (D, H) products per
    temperature, as a serves the weight update and the next sweep's p(h | x).
    """
    W, b, c = W.detach().double(), b.detach().double(), c.detach().double()
    ba = base_bias.double()
    dev = W.device
    d, h = W.shape
    log_za = h * math.log(2) + float(F.softplus(ba).sum())
    b_diff = b - ba

    def log_weight(state: tuple[Tensor, Tensor], prev: float, beta: float) -> Tensor:
        x, a = state  # log p*_β(x) − log p*_prev(x)
        hidden = F.softplus(beta * a) - F.softplus(prev * a)  # (runs, H)
        return (beta - prev) * (x @ b_diff) + hidden.sum(-1)

    def sweep(state: tuple[Tensor, Tensor], beta: float) -> tuple[Tensor, Tensor]:
        _, a = state
        hid = (_uniform((runs, h), gen, dev) < torch.sigmoid(beta * a)).double()
        p_x = torch.sigmoid((1 - beta) * ba + beta * (b + hid @ W.T))
        x = (_uniform((runs, d), gen, dev) < p_x).double()
        return x, c + x @ W

    x = (_uniform((runs, d), gen, dev) < torch.sigmoid(ba)).double()
    return anneal((x, c + x @ W), log_za, log_weight, sweep, ais_schedule(betas, schedule))


def log_mean_exp(log_w: Tensor) -> tuple[float, float]:
    """(log mean w, its standard error std(w) / (√M mean(w)), the delta method) of M
    weights given as logs, in float64."""
    log_w = log_w.double()
    r = torch.exp(log_w - log_w.max())
    log_mean = float(torch.logsumexp(log_w, 0)) - math.log(len(log_w))
    return log_mean, float(r.std() / (math.sqrt(len(log_w)) * r.mean()))


def anneal(
    state: S,
    log_z_base: float,
    log_weight: Callable[[S, float, float], Tensor],
    transition: Callable[[S, float], S],
    betas: Sequence[float],
) -> tuple[float, float]:
    """(log Z_B, its standard error) by annealed importance sampling (Neal 2001, "Annealed
    importance sampling") through intermediate models p*_β, β from 0 (the base p_A) to 1
    (the target p_B) over ``betas``.

    ``state`` holds the runs' exact draws from p_A (whose log Z_A is ``log_z_base``), with
    anything a model carries beside them; at each β_k, k = 1..K, log w +=
    ``log_weight``(state, β_{k−1}, β_k) (log p*_{β_k}(x) − log p*_{β_{k−1}}(x), per run),
    then, below β = 1, state ← ``transition``(state, β_k), a move that leaves p_{β_k}
    invariant. log Z_B = log Z_A + log mean w (``log_mean_exp``): unbiased in Z, so log Ẑ
    errs low on average, by about half its variance."""
    log_w = torch.zeros((), dtype=torch.float64)  # broadcasts to (runs,) at the first step
    for prev, beta in itertools.pairwise(betas):
        log_w = log_w + log_weight(state, prev, beta).double()
        if beta < 1.0:
            state = transition(state, beta)
    log_mean, stderr = log_mean_exp(log_w)
    return log_z_base + log_mean, stderr


def ais_log_z(
    x: Tensor,
    log_z_base: float,
    log_ratio: Callable[[Tensor], Tensor],
    transition: Callable[[Tensor, float], Tensor],
    betas: int,
) -> tuple[float, float]:
    """(log Z_B, its standard error) by ``anneal`` along the geometric path p*_β =
    p*_A^{1−β} p*_B^β, β linear from 0 to 1 in ``betas`` steps (≥ 2): x (runs, D) are exact
    draws from p_A, ``log_ratio``(x) = log p*_B(x) − log p*_A(x) per run, so each step's
    weight is (β_k − β_{k−1}) ``log_ratio``(x)."""

    def log_weight(x: Tensor, prev: float, beta: float) -> Tensor:
        return (beta - prev) * log_ratio(x)

    return anneal(x, log_z_base, log_weight, transition, ais_schedule(betas))
