"""Optimizers written from the seed notes' update rules.

Every job picks one of these by name (``OptimizerSpec.name``); ``build_optimizer``
turns the spec into one of the ``torch.optim.Optimizer`` subclasses below. They
do not wrap ``torch.optim``: each ``step`` is the update rule itself, and the
tests check it step by step against ``torch.optim`` where torch has the same rule.

Conventions shared by every rule (g is the gradient, w the parameter):

- L2 weight decay is added to the gradient, ``g <- g + λ w`` (torch's coupled
  form, not AdamW's decoupled one); it is the gradient of the penalty ``(λ/2)‖w‖²``.
- Per-parameter state lives in ``self.state[p]`` as tensors, the step count as
  an int64 scalar tensor under ``"step"``, so ``state_dict()`` round-trips and
  serialises to safetensors; param groups hold only JSON scalars.

Rules:

- ``sgd``: ``w <- w - η g``.
- ``momentum`` (heavy ball, PyTorch's convention): ``v <- μ v + g; w <- w - η v``.
- ``nesterov`` (PyTorch's convention, Sutskever et al. 2013 rewritten on the
  current iterate): ``v <- μ v + g; w <- w - η (g + μ v)``.
- ``rmsprop`` (Tieleman & Hinton 2012): ``r <- α r + (1-α) g²;
  w <- w - η g / (sqrt(r) + ε)``. The notes write ``η g / sqrt(r + ε)``; we put
  ε outside the root as ``torch.optim.RMSprop`` (and Adam) do, so the step stays
  bounded by η/ε when r ~ 0 and the rule matches torch bit for bit. The two differ
  only when r is of the order of ε.
- ``rmsprop_momentum``: ``b <- μ b + g / (sqrt(r) + ε); w <- w - η b``
  (``torch.optim.RMSprop(momentum=μ)``).
- ``adam`` (Kingma & Ba 2015, Algorithm 1): ``m <- β1 m + (1-β1) g;
  v <- β2 v + (1-β2) g²; m̂ = m / (1-β1^t); v̂ = v / (1-β2^t);
  w <- w - η m̂ / (sqrt(v̂) + ε)``.
- ``adam_no_bias_correction``: the same without the ``1/(1-β^t)`` factors. With
  m, v initialised at 0, early v is biased towards 0 and the first steps are
  too large by up to ``sqrt(1/(1-β2))`` ≈ 32 — the notes' "init correction for
  sec momentum necessary" (Kingma & Ba 2015, §3).
- ``newton``: ``w <- w - η (H + δI)⁻¹ g``, H the exact Hessian of the loss by autograd
  (one batched backward pass per parameter), δ the ``damping`` (Levenberg 1944). The
  notes' second-order update "but too big to compute": H has n² entries for n
  parameters, so the API refuses a model over ``MAX_NEWTON_PARAMETERS`` (its 422 names
  the Hessian's size). ``line_search``: backtracking (Armijo 1966) from t = η, halving t
  until ``f(w - t p) ≤ f(w) - 10⁻⁴ t gᵀp``; where p is no descent direction (H not
  positive definite there) the search follows -g instead. Without it Newton's step goes
  to any stationary point, a saddle as readily as a minimum. It needs the loss again at
  each step: ``step(closure)`` with a closure returning the loss *with its graph* (no
  backward needed); ``models.loop.train_epochs`` passes one when ``needs_closure``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

OptimizerName = Literal[
    "sgd",
    "momentum",
    "nesterov",
    "rmsprop",
    "rmsprop_momentum",
    "adam",
    "adam_no_bias_correction",
    "newton",
]
# newton's exact Hessian has n² entries: the API refuses it for a model with more
# parameters (1,000: a million entries, 7.6 MiB in float64, 1,000 backward passes a step;
# on a dense quadratic 2 s a step, and 47 s at 2,000: docs/benchmarks.md)
MAX_NEWTON_PARAMETERS = 1_000


class OptimizerSpec(BaseModel):
    """Which optimizer and its hyperparameters (unused ones are ignored by that rule)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # "0.1" is no number

    name: OptimizerName = Field("adam", description="update rule")
    lr: Annotated[float, Field(gt=0, le=10, description="learning rate η")] = 1e-3
    momentum: Annotated[
        float, Field(ge=0, lt=1, description="momentum μ (momentum, nesterov, rmsprop_momentum)")
    ] = 0.9
    alpha: Annotated[
        float, Field(gt=0, lt=1, description="RMSProp decay α of the squared-gradient average")
    ] = 0.99
    beta1: Annotated[float, Field(ge=0, lt=1, description="Adam first-moment decay β1")] = 0.9
    beta2: Annotated[float, Field(ge=0, lt=1, description="Adam second-moment decay β2")] = 0.999
    eps: Annotated[float, Field(gt=0, le=1, description="ε added for numerical stability")] = 1e-8
    weight_decay: Annotated[
        float, Field(ge=0, le=1, description="L2 penalty λ added to the gradient")
    ] = 0.0
    damping: Annotated[
        float, Field(ge=0, le=1e6, description="newton: δ added to the Hessian's diagonal")
    ] = 0.0
    line_search: bool = Field(
        False, description="newton: backtracking line search (Armijo) from the step η"
    )


Closure = Callable[[], Any] | None  # torch.optim calls the result "loss": a tensor or a float


class _Rule(torch.optim.Optimizer):
    """Shared plumbing: closure, weight decay, lazy state; subclasses update one tensor."""

    @torch.no_grad()
    def step(self, closure: Closure = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, states = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"] != 0:
                    g = g.add(p, alpha=group["weight_decay"])  # g + λ w, a new tensor
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.int64)
                    self._init_state(p, state, group)
                state["step"] += 1
                params.append(p)
                grads.append(g)
                states.append(state)
            if params:
                self._update_group(params, grads, states, group)
        return loss

    def _init_state(self, p: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Create the rule's buffers (zeros shaped like p)."""

    def _update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError

    def _update_group(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        states: list[dict[str, Any]],
        group: dict[str, Any],
    ) -> None:
        """Update every parameter of a group that has a gradient: ``_update`` on each, unless
        the rule does the same arithmetic on the whole list at once."""
        for p, g, state in zip(params, grads, states, strict=True):
            self._update(p, g, state, group)


class SGD(_Rule):
    """Plain stochastic gradient descent: w <- w - η g."""

    def __init__(self, params: Any, lr: float = 1e-2, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    def _update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        p.add_(g, alpha=-group["lr"])


class Momentum(_Rule):
    """Heavy-ball momentum (Polyak 1964), or Nesterov's variant, in PyTorch's convention."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        super().__init__(params, {**defaults, "nesterov": nesterov})

    def _init_state(self, p: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        # v_0 = 0 makes the first v = g, as torch's first-step clone of g
        state["momentum_buffer"] = torch.zeros_like(p)

    def _update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        v = state["momentum_buffer"]
        v.mul_(group["momentum"]).add_(g)  # v <- μ v + g
        direction = g.add(v, alpha=group["momentum"]) if group["nesterov"] else v
        p.add_(direction, alpha=-group["lr"])


class RMSProp(_Rule):
    """RMSProp (Tieleman & Hinton 2012), optionally with a momentum buffer on the scaled step."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "momentum": momentum}
        super().__init__(params, {**defaults, "weight_decay": weight_decay})

    def _init_state(self, p: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        state["square_avg"] = torch.zeros_like(p)
        if group["momentum"] > 0:
            state["momentum_buffer"] = torch.zeros_like(p)

    def _update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        r = state["square_avg"]
        r.mul_(group["alpha"]).addcmul_(g, g, value=1 - group["alpha"])  # r <- α r + (1-α) g²
        denom = r.sqrt().add_(group["eps"])  # sqrt(r) + ε, torch's placement (see module doc)
        if group["momentum"] > 0:
            b = state["momentum_buffer"]
            b.mul_(group["momentum"]).addcdiv_(g, denom)  # b <- μ b + g / (sqrt(r) + ε)
            p.add_(b, alpha=-group["lr"])
        else:
            p.addcdiv_(g, denom, value=-group["lr"])


class Adam(_Rule):
    """Adam (Kingma & Ba 2015), with or without the bias corrections of m and v."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        bias_correction: bool = True,
    ) -> None:
        defaults = {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps}
        super().__init__(
            params, {**defaults, "weight_decay": weight_decay, "bias_correction": bias_correction}
        )

    def _init_state(self, p: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        state["exp_avg"] = torch.zeros_like(p)  # m
        state["exp_avg_sq"] = torch.zeros_like(p)  # v

    def _update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        b1, b2 = group["beta1"], group["beta2"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(b1).add_(g, alpha=1 - b1)  # m <- β1 m + (1-β1) g
        v.mul_(b2).addcmul_(g, g, value=1 - b2)  # v <- β2 v + (1-β2) g²
        bc1, bc2 = 1.0, 1.0
        if group["bias_correction"]:
            t = int(state["step"])
            bc1, bc2 = 1 - b1**t, 1 - b2**t
        # w <- w - η m̂ / (√v̂ + ε) with m̂ = m/bc1, v̂ = v/bc2, as one temporary:
        # (√v / √bc2 + ε) is the denominator and η/bc1 the step size (torch's arrangement)
        denom = v.sqrt().div_(math.sqrt(bc2)).add_(group["eps"])
        p.addcdiv_(m, denom, value=-group["lr"] / bc1)

    def _update_group(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        states: list[dict[str, Any]],
        group: dict[str, Any],
    ) -> None:
        """``_update``'s arithmetic, op for op, on the whole list (``torch._foreach_*``):
        the same result bit for bit (tested), a fraction of the Python overhead: on a
        256-256 network each of the 8 passes was 6 calls."""
        if len({(p.device, p.dtype) for p in params}) > 1:  # foreach wants one of each
            super()._update_group(params, grads, states, group)
            return
        b1, b2 = group["beta1"], group["beta2"]
        m = [state["exp_avg"] for state in states]
        v = [state["exp_avg_sq"] for state in states]
        torch._foreach_mul_(m, b1)
        torch._foreach_add_(m, grads, alpha=1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
        bc1, bc2 = [1.0] * len(params), [1.0] * len(params)
        if group["bias_correction"]:
            steps = [int(state["step"]) for state in states]
            bc1, bc2 = [1 - b1**t for t in steps], [1 - b2**t for t in steps]
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, [math.sqrt(c) for c in bc2])
        torch._foreach_add_(denom, group["eps"])
        torch._foreach_addcdiv_(params, m, denom, [-group["lr"] / c for c in bc1])


class Newton(_Rule):
    """Newton's method with the exact Hessian, damping and an optional backtracking line
    search (see the module doc). ``step`` needs a closure that returns the loss with its
    graph; the parameters are treated as one flat vector across every group (the first
    group's settings apply)."""

    needs_closure = True  # models.loop passes step() a closure for it

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        damping: float = 0.0,
        weight_decay: float = 0.0,
        line_search: bool = False,
    ) -> None:
        defaults = {"lr": lr, "damping": damping, "line_search": line_search}
        super().__init__(params, {**defaults, "weight_decay": weight_decay})

    def step(self, closure: Closure = None) -> Any:
        if closure is None:
            raise RuntimeError("newton needs step(closure): a closure returning the loss")
        params = [p for group in self.param_groups for p in group["params"] if p.requires_grad]
        group = self.param_groups[0]
        wds = [g["weight_decay"] for g in self.param_groups for p in g["params"] if p.requires_grad]
        with torch.enable_grad():
            loss = closure()
            g, h = gradient_and_hessian(loss, params)
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1) for p in params])
            decay = torch.cat(
                [torch.full((p.numel(),), wd, dtype=flat.dtype, device=flat.device)
                 for p, wd in zip(params, wds, strict=True)]
            )  # fmt: skip
            g = g + decay * flat  # the penalty's gradient λw and Hessian λI
            h = h + torch.diag(decay + group["damping"])
            p_dir = _solve(h, g)
            t = float(group["lr"])
            if group["line_search"]:
                p_dir, t = _backtrack(
                    closure, params, flat, float(loss) + _penalty(flat, decay), g, p_dir, t, decay
                )
            _assign(params, flat - t * p_dir)
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.int64)
            state["step"] += 1
        return loss


def gradient_and_hessian(loss: Tensor, params: list[Tensor]) -> tuple[Tensor, Tensor]:
    """The gradient (n,) and the exact Hessian (n, n) of ``loss`` in ``params`` flattened
    and concatenated, by autograd: the gradient with its graph, then its n components'
    gradients as one batched backward pass (``is_grads_batched``), or one pass each where
    an operation has no batching rule. A parameter the loss ignores has zero rows."""
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    g = torch.cat(
        [
            (gi if gi is not None else torch.zeros_like(p)).reshape(-1)
            for gi, p in zip(grads, params, strict=True)
        ]
    )
    n = g.numel()
    if not g.requires_grad:  # the loss is linear in every parameter: H = 0
        return g.detach(), torch.zeros(n, n, dtype=g.dtype, device=g.device)
    eye = torch.eye(n, dtype=g.dtype, device=g.device)
    try:
        rows = torch.autograd.grad(
            g, params, grad_outputs=eye, is_grads_batched=True, retain_graph=True,
            allow_unused=True, materialize_grads=True,
        )  # fmt: skip
        h = torch.cat([r.reshape(n, -1) for r in rows], dim=1)
    except RuntimeError:  # no vmap rule for some operation: one backward pass per row
        h = torch.stack(
            [torch.cat([r.reshape(-1) for r in torch.autograd.grad(
                g[i], params, retain_graph=True, allow_unused=True, materialize_grads=True
            )]) for i in range(n)]
        )  # fmt: skip
    return g.detach(), h.detach()


def _solve(h: Tensor, g: Tensor) -> Tensor:
    """(H)⁻¹ g, or the least-squares solution where H is singular."""
    try:
        return torch.linalg.solve(h, g)
    except RuntimeError:  # torch.linalg.LinAlgError: singular
        return torch.linalg.lstsq(h, g.unsqueeze(-1)).solution.squeeze(-1)


def _assign(params: list[Tensor], flat: Tensor) -> None:
    offset = 0
    for p in params:
        p.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def _penalty(flat: Tensor, decay: Tensor) -> float:
    return float(0.5 * (decay * flat * flat).sum())


def _backtrack(
    closure: Callable[[], Any],
    params: list[Tensor],
    flat: Tensor,
    f0: float,
    g: Tensor,
    p_dir: Tensor,
    t: float,
    decay: Tensor,
    c: float = 1e-4,
    halvings: int = 50,
) -> tuple[Tensor, float]:
    """(direction, step) of a backtracking line search from ``t``: the largest t / 2^k with
    f(w - t p) ≤ f(w) - c t gᵀp (Armijo); -g where p is no descent direction."""
    slope = float(g @ p_dir)
    if not slope > 0:  # gᵀp ≤ 0 (or nan): p climbs; follow the gradient
        p_dir, slope = g, float(g @ g)
    for _ in range(halvings):
        trial = flat - t * p_dir
        _assign(params, trial)
        f = float(closure()) + _penalty(trial, decay)
        if math.isfinite(f) and f <= f0 - c * t * slope:
            break
        t /= 2
    return p_dir, t


def build_optimizer(
    spec: OptimizerSpec, params: Iterable[Any], *, weight_decay: float | None = None
) -> torch.optim.Optimizer:
    """The optimizer named by ``spec`` over ``params`` (tensors or param-group dicts).

    ``weight_decay`` overrides ``spec.weight_decay`` when given; a param group's own
    ``"weight_decay"`` key overrides both for that group.
    """
    wd = spec.weight_decay if weight_decay is None else weight_decay
    s = spec
    match s.name:
        case "sgd":
            return SGD(params, lr=s.lr, weight_decay=wd)
        case "momentum" | "nesterov":
            nesterov = s.name == "nesterov"
            return Momentum(params, s.lr, s.momentum, weight_decay=wd, nesterov=nesterov)
        case "rmsprop" | "rmsprop_momentum":
            mu = s.momentum if s.name == "rmsprop_momentum" else 0.0
            return RMSProp(params, s.lr, s.alpha, s.eps, momentum=mu, weight_decay=wd)
        case "adam" | "adam_no_bias_correction":
            bc = s.name == "adam"
            return Adam(params, s.lr, s.beta1, s.beta2, s.eps, wd, bias_correction=bc)
        case "newton":
            return Newton(params, s.lr, s.damping, wd, line_search=s.line_search)
    raise ValueError(f"unknown optimizer {s.name!r}")
