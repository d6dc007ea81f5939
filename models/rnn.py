"""``rnn``: recurrent networks on sequences, with their gradients through time made visible.

What it shows: the recurrence of the notes (section 3), c_t = tanh(W c_{t-1} + U x_t + b),
trained by backpropagation through time. Its gradient is a product of Jacobians,
∂c_t/∂c_k = ∏_{j=k+1..t} ∂c_j/∂c_{j-1} with ∂c_j/∂c_{j-1} = diag(σ'(a_j)) W (a_j the
pre-activation, σ' = 1 - tanh² = 1 - c_j²), so ‖∂c_j/∂c_{j-1}‖ ≤ ‖Wᵀ‖·‖diag σ'(a_j)‖:
when that bound stays below 1 the product vanishes exponentially in t - k, and it can
explode above it (Bengio, Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013, who
also clip the gradient's norm). The gated cells carry their state additively and keep the
gradient alive over long spans: the LSTM (Hochreiter & Schmidhuber 1997, with the forget
gate of Gers et al. 2000, its bias ``forget_bias``, 1 by default) and the GRU (Cho et al.
2014), both torch's (``nn.LSTM``, ``nn.GRU``) for training and stepped by hand from the
same weights for the diagnostics. The tanh cell is written here from the recurrence (no ``nn.RNN``).

A many-to-one model: the last state of the top layer, through a linear head, gives the
sequence's class logits or its standardised regression target.

Diagnostics (``gradients``, the GRADIENTS capability): at every evaluation, on a fixed
probe batch (the first ``probe`` validation sequences), the mean over examples of
‖∂ℓ/∂c_k‖ (ℓ one example's training loss, c_k the first layer's state after step k: (h, c)
for an LSTM) and of the spectral norm ‖∂c_T/∂c_k‖ (on up to 4 examples), at ≤ 32 evenly
spread steps k, logged as the metrics ``grad_t{k}`` and ``jacobian_t{k}``; with the
spectral radius and norm of W (for the gated cells, the candidate block of the first
layer's recurrent weights) and, for the tanh cell, the notes' bound
‖Wᵀ‖·max‖diag σ'‖ (max over the probe's steps). Every epoch also logs the pre-clip
global gradient norm, its mean ``grad_norm`` and ``grad_norm_max`` (and, with
``clip_norm``, the fraction of steps ``clipped``).

Checkpoint ``state["model"]`` keys: ``layers.{i}.{W,U,b}`` (tanh) or
``layers.{i}.rnn.{weight_ih_l0,weight_hh_l0,bias_ih_l0,bias_hh_l0}`` (lstm, gru),
``head.{weight,bias}``, and for regression ``y_mean``, ``y_std`` (the training targets'
moments) and ``noise_var`` (the validation residual variance, raw units).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator
from torch import Tensor, nn

from models.data import DataInfo, Dataset
from models.family import GRADIENT_METRICS, Capability, Context, Family, Params
from models.loop import final_test, train_epochs
from models.uncertainty import classification_summary, regression_summary

CellName = Literal["tanh", "lstm", "gru"]
MAX_POSITIONS = 32  # time steps a gradient profile records (a long sequence is subsampled)
JACOBIAN_EXAMPLES = 4  # probe examples whose Jacobians ∂c_T/∂c_k are taken
DATASETS = frozenset({"adding", "adding_50", "adding_200", "seq_digits", "sine_seq", "mnist1d"})


class RNNParams(Params):
    cell: CellName = Field(
        "lstm", description="tanh: the notes' c_t = tanh(W c_{t-1} + U x_t + b); lstm; gru"
    )
    hidden: int = Field(64, ge=1, le=256, description="state size of each layer")
    layers: int = Field(1, ge=1, le=4, description="stacked recurrent layers")
    init: Literal["xavier", "orthogonal", "scaled"] = Field(
        "xavier",
        description="recurrent weights (each gate's block): xavier uniform, orthogonal, or "
        "Gaussian rescaled to spectral_radius",
    )
    spectral_radius: float | None = Field(
        None,
        gt=0.0,
        le=10.0,
        description="the scaled init's spectral radius of W (< 1: vanishing, > 1: exploding "
        "gradients); only with init 'scaled', where null means 1",
    )
    clip_norm: float | None = Field(
        None, gt=0.0, le=1e6, description="clip the global gradient norm to this; null: no clip"
    )
    forget_bias: float | None = Field(
        None,
        ge=-10.0,
        le=10.0,
        description="the LSTM forget gate's initial bias b_f, σ(b_f) of the cell state kept "
        "each step (Gers et al. 2000); only with cell 'lstm', where null means 1",
    )
    probe: int = Field(
        32, ge=1, le=256, description="validation sequences in the diagnostics' probe batch"
    )

    @field_validator("spectral_radius")
    @classmethod
    def _scaled_only(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is not None and info.data.get("init", "xavier") != "scaled":
            raise ValueError("spectral_radius sets the radius of init 'scaled'; give that init")
        return v

    @field_validator("forget_bias")
    @classmethod
    def _lstm_only(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is not None and info.data.get("cell", "lstm") != "lstm":
            raise ValueError("forget_bias sets the forget gate of cell 'lstm'; give that cell")
        return v


# --- cells -----------------------------------------------------------------------------------


class TanhLayer(nn.Module):
    """c_t = tanh(W c_{t-1} + U x_t + b), c_0 = 0: the notes' recurrence, stepped in Python."""

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(hidden, hidden))
        self.U = nn.Parameter(torch.empty(hidden, n_in))
        self.b = nn.Parameter(torch.zeros(hidden))

    def steps(self, x: Tensor) -> list[Tensor]:
        """(B, T, F) -> the states c_1..c_T, (B, H) each, as nodes of the graph."""
        drive = x @ self.U.T + self.b  # (B, T, H): U x_t + b for every t at once
        c = x.new_zeros(len(x), self.W.shape[0])
        states = []
        for t in range(x.shape[1]):
            c = torch.tanh(drive[:, t] + c @ self.W.T)
            states.append(c)
        return states

    def output(self, states: list[Tensor]) -> Tensor:
        return torch.stack(states, 1)  # (B, T, H)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.steps(x))

    @property
    def recurrent(self) -> Tensor:
        return self.W


def lstm_step(drive: Tensor, s: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """One LSTM step (Hochreiter & Schmidhuber 1997, forget gate of Gers et al. 2000) in
    torch's layout: c' = σ(f) c + σ(i) tanh(g), h' = σ(o) tanh(c'), the gates (i, f, g, o)
    = drive + W_hh h + b_hh. drive (B, 4H) is W_ih x_t + b_ih, s (B, 2H) is (h, c); -> (h', c')."""
    h, c = s.chunk(2, -1)
    i, f, g, o = (drive + h @ w_hh.T + b_hh).chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], -1)


def gru_step(drive: Tensor, s: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """One GRU step (Cho et al. 2014) in torch's layout, the reset gate applied after W_hn:
    h' = (1 - z) tanh(x_n + r (W_hn h + b_hn)) + z h, r and z sigmoids of their blocks of
    drive + W_hh h + b_hh. drive (B, 3H) is W_ih x_t + b_ih, s (B, H) is h; -> h'."""
    xr, xz, xn = drive.chunk(3, -1)
    hr, hz, hn = (s @ w_hh.T + b_hh).chunk(3, -1)
    reset, update = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    return (1 - update) * torch.tanh(xn + reset * hn) + update * s


class GatedLayer(nn.Module):
    """torch's LSTM or GRU layer; ``steps`` runs the same equations by hand (torch's gate
    order: i, f, g, o and r, z, n) so that each step's state is a node of the graph."""

    def __init__(self, cell: Literal["lstm", "gru"], n_in: int, hidden: int) -> None:
        super().__init__()
        self.cell, self.hidden = cell, hidden
        self.rnn: nn.LSTM | nn.GRU = (nn.LSTM if cell == "lstm" else nn.GRU)(
            n_in, hidden, batch_first=True
        )

    def steps(self, x: Tensor) -> list[Tensor]:
        """(B, T, F) -> the states s_1..s_T: (B, 2H) = (h, c) for an LSTM, (B, H) for a GRU."""
        w_ih, w_hh, b_ih, b_hh = self.weights
        step = lstm_step if self.cell == "lstm" else gru_step
        drive = x @ w_ih.T + b_ih  # (B, T, gates · H)
        s = x.new_zeros(len(x), 2 * self.hidden if self.cell == "lstm" else self.hidden)
        states = []
        for t in range(x.shape[1]):
            s = step(drive[:, t], s, w_hh, b_hh)
            states.append(s)
        return states

    def output(self, states: list[Tensor]) -> Tensor:
        return torch.stack([s[:, : self.hidden] for s in states], 1)  # (B, T, H): the h's

    def forward(self, x: Tensor) -> Tensor:
        return self.rnn(x)[0]

    @property
    def weights(self) -> list[nn.Parameter]:
        """torch's (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0): (gates · H, F),
        (gates · H, H), (gates · H,) twice, the gates' blocks stacked in torch's order."""
        return self.rnn.all_weights[0]

    @property
    def recurrent(self) -> Tensor:
        """The candidate block (g of an LSTM, n of a GRU): the W of its tanh."""
        H = self.hidden
        return self.weights[1][2 * H : 3 * H]


Layer = TanhLayer | GatedLayer


def lstm_forget_bias(params: RNNParams) -> float:
    """The forget gate's initial bias: ``forget_bias``, by default 1, so that the gate starts
    open, σ(1) ≈ 0.73 (Gers et al. 2000; Jozefowicz, Zaremba & Sutskever 2015)."""
    return 1.0 if params.forget_bias is None else params.forget_bias


def init_recurrent(w: Tensor, init: str, radius: float) -> None:
    """One square block in place: xavier uniform, orthogonal, or N(0, 1/H) rescaled so that
    its largest eigenvalue modulus is ``radius``."""
    if init == "xavier":
        nn.init.xavier_uniform_(w)
    elif init == "orthogonal":
        nn.init.orthogonal_(w)
    else:
        nn.init.normal_(w, std=1 / math.sqrt(len(w)))
        w.mul_(radius / torch.linalg.eigvals(w).abs().max())


class RNN(nn.Module):
    """Sequences (B, T, F) -> logits (B, C) or standardised targets (B, D), from the top
    layer's last state."""

    y_mean: Tensor
    y_std: Tensor
    noise_var: Tensor

    def __init__(self, params: RNNParams, info: DataInfo) -> None:
        super().__init__()
        if len(info.input_shape) != 2:
            raise ValueError(f"rnn reads sequences (T, F); {info.name} has {info.input_shape}")
        self.task, self.cell, self.length = info.task, params.cell, info.input_shape[0]
        n_in, H = info.input_shape[1], params.hidden
        self.layers = nn.ModuleList(
            TanhLayer(n_in if i == 0 else H, H)
            if params.cell == "tanh"
            else GatedLayer(params.cell, n_in if i == 0 else H, H)
            for i in range(params.layers)
        )
        out_dim = (info.n_classes or 1) if info.task == "classification" else info.target_dim
        self.head = nn.Linear(H, out_dim)
        if info.task == "regression":
            self.register_buffer("y_mean", torch.zeros(info.target_dim))
            self.register_buffer("y_std", torch.ones(info.target_dim))
            self.register_buffer("noise_var", torch.zeros(info.target_dim))
        if not self.head.weight.is_meta:  # the API counts parameters on the meta device
            self._init(params)

    @torch.no_grad()
    def _init(self, params: RNNParams) -> None:
        H, radius = params.hidden, params.spectral_radius or 1.0
        for layer in self.layers:
            if isinstance(layer, TanhLayer):
                nn.init.xavier_uniform_(layer.U)
                init_recurrent(layer.W, params.init, radius)
                continue
            assert isinstance(layer, GatedLayer)
            w_ih, w_hh, b_ih, b_hh = layer.weights
            for block in w_ih.split(H):
                nn.init.xavier_uniform_(block)
            for block in w_hh.split(H):
                init_recurrent(block, params.init, radius)
            b_ih.zero_()
            b_hh.zero_()
            if params.cell == "lstm":  # b_f = b_ih + b_hh of the f block: all in b_ih
                b_ih[H : 2 * H] = lstm_forget_bias(params)

    @property
    def first(self) -> Layer:
        layer = self.layers[0]
        assert isinstance(layer, TanhLayer | GatedLayer)
        return layer

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x[:, -1])

    def probe_forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The forward pass with the first layer stepped by hand: (outputs, its states)."""
        states = self.first.steps(x)
        h = self.first.output(states)
        for layer in self.layers[1:]:
            h = layer(h)
        return self.head(h[:, -1]), states

    def target(self, y: Tensor) -> Tensor:
        """Labels as they are; regression targets standardised."""
        return y if self.task == "classification" else (y - self.y_mean) / self.y_std


def build(params: RNNParams, info: DataInfo) -> RNN:
    return RNN(params, info)


def example_losses(module: RNN, out: Tensor, y: Tensor) -> Tensor:
    """One loss per sequence, (B,): cross-entropy, or squared error on standardised targets."""
    if module.task == "classification":
        return F.cross_entropy(out, y, reduction="none")
    return (out - module.target(y)).pow(2).mean(-1)


# --- the notes' maths --------------------------------------------------------------------------


def tanh_jacobian_product(W: Tensor, states: list[Tensor], k: int, t: int) -> Tensor:
    """∂c_t/∂c_k of one tanh sequence by the notes' product, (H, H): ∏_{j=k+1..t} diag(1 -
    c_j²) W, the later factors on the left; ``states`` c_1..c_T of shape (H,), 1-based."""
    jac = torch.eye(len(W), dtype=W.dtype, device=W.device)
    for j in range(k + 1, t + 1):
        jac = (1 - states[j - 1].pow(2))[:, None] * W @ jac
    return jac


def clip_gradients(parameters: list[nn.Parameter], clip_norm: float | None) -> float:
    """Scale every gradient by one factor so that their global L2 norm is at most
    ``clip_norm`` (Pascanu et al. 2013; the direction is kept); returns the norm before."""
    return float(nn.utils.clip_grad_norm_(parameters, math.inf if clip_norm is None else clip_norm))


def positions(length: int) -> Tensor:
    """The 1-based steps a profile records: all of them up to MAX_POSITIONS, else that many
    evenly spread from 1 to T, (K,)."""
    return torch.linspace(1, length, min(length, MAX_POSITIONS)).round().long().unique()


def gradients(module: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """The gradient profile of a batch (x (B, T, F), y): ``positions`` (K,), ``grad_norm``
    (K,) the mean over sequences of ‖∂ℓ/∂c_k‖, ``jacobian_norm`` (K,) the mean over the
    first JACOBIAN_EXAMPLES of the spectral norm ‖∂c_T/∂c_k‖; 0-d ``spectral_radius`` and
    ``w_norm`` of W; for the tanh cell the notes' ``jacobian_bound`` ‖Wᵀ‖·max‖diag σ'‖."""
    assert isinstance(module, RNN)
    dev = module.head.weight.device
    x, y = x.to(dev), y.to(dev)
    at = positions(x.shape[1])
    with torch.enable_grad():
        out, states = module.probe_forward(x)
        kept = [states[k - 1] for k in at.tolist()]
        grads = torch.autograd.grad(example_losses(module, out, y).sum(), kept)
        grad_norm = torch.stack([g.norm(dim=-1).mean() for g in grads])  # (K,)
        jacobian_norm = torch.stack(
            [
                _jacobian_norms(module, x[i : i + 1], at)
                for i in range(min(len(x), JACOBIAN_EXAMPLES))
            ]
        ).mean(0)
    W = module.first.recurrent.detach()
    result = {
        "positions": at,
        "grad_norm": grad_norm.detach(),
        "jacobian_norm": jacobian_norm.detach(),
        "spectral_radius": torch.linalg.eigvals(W).abs().max(),
        "w_norm": torch.linalg.matrix_norm(W, ord=2),
    }
    if module.cell == "tanh":  # σ'(a) = 1 - tanh(a)² = 1 - c²
        slope = max(float((1 - s.detach().pow(2)).max()) for s in states)
        result["jacobian_bound"] = result["w_norm"] * slope
    return result


def _jacobian_norms(module: RNN, x: Tensor, at: Tensor) -> Tensor:
    """‖∂c_T/∂c_k‖₂ for one sequence x (1, T, F) at the steps ``at``, (K,): the Jacobians'
    rows by one batched backward pass (one cotangent per state unit)."""
    states = module.first.steps(x)
    last = states[-1]  # (1, S)
    eye = torch.eye(last.shape[1], dtype=last.dtype, device=last.device)[:, None]  # (S, 1, S)
    rows = torch.autograd.grad(
        last, [states[k - 1] for k in at.tolist()], eye, is_grads_batched=True
    )
    jac = torch.stack([r[:, 0] for r in rows])  # (K, S, S): row i of ∂c_T/∂c_k
    return torch.linalg.matrix_norm(jac, ord=2)


# --- training ------------------------------------------------------------------------------


def gradient_metrics(profile: dict[str, Tensor]) -> dict[str, float]:
    """A profile as metrics: ``grad_t{k}``, ``jacobian_t{k}`` per recorded step k, and the
    scalars (spectral radius, norm, bound) under their own names."""
    grad, jac = GRADIENT_METRICS
    metrics = {}
    for i, k in enumerate(profile["positions"].tolist()):
        metrics[f"{grad}{k}"] = float(profile["grad_norm"][i])
        metrics[f"{jac}{k}"] = float(profile["jacobian_norm"][i])
    for name in ("spectral_radius", "w_norm", "jacobian_bound"):
        if name in profile:
            metrics[name] = float(profile[name])
    return metrics


@torch.no_grad()
def evaluate(module: RNN, x: Tensor, y: Tensor, split: str) -> dict[str, float]:
    """Loss and accuracy or raw-unit MSE on one split; on ``val`` also refreshes ``noise_var``."""
    out = torch.cat([module(xb) for xb in x.split(1024)])
    loss = float(example_losses(module, out, y).mean())
    if module.task == "classification":
        return {
            f"{split}_loss": loss,
            f"{split}_accuracy": float((out.argmax(-1) == y).float().mean()),
        }
    residual = y - (out * module.y_std + module.y_mean)  # (N, D), raw units
    if split == "val":
        module.noise_var.copy_(residual.pow(2).mean(0))
    return {f"{split}_loss": loss, f"{split}_mse": float(residual.pow(2).mean())}


def fit(module: nn.Module, data: Dataset, params: RNNParams, ctx: Context) -> None:
    assert isinstance(module, RNN)
    dev = ctx.device
    module.to(dev)
    x, y = data.x_train.to(dev), data.y_train.to(dev)
    x_val, y_val = data.x_val.to(dev), data.y_val.to(dev)
    if module.task == "regression":
        module.y_mean.copy_(y.mean(0))
        module.y_std.copy_(y.std(0).clamp_min(1e-6))
    probe_x, probe_y = x_val[: params.probe], y_val[: params.probe]
    opt = ctx.make_optimizer(module.parameters())
    weights = list(module.parameters())
    norms: list[float] = []  # this epoch's pre-clip gradient norms

    def clip() -> None:
        norms.append(clip_gradients(weights, params.clip_norm))

    def validate() -> dict[str, float]:
        metrics = evaluate(module, x_val, y_val, "val")
        metrics |= gradient_metrics(gradients(module, probe_x, probe_y))
        if norms:
            metrics |= {"grad_norm": sum(norms) / len(norms), "grad_norm_max": max(norms)}
            if params.clip_norm is not None:
                metrics["clipped"] = sum(n > params.clip_norm for n in norms) / len(norms)
        norms.clear()
        return metrics

    finished = train_epochs(
        module, opt, x, y, ctx,
        loss_fn=lambda xb, yb: example_losses(module, module(xb), yb).mean(),
        evaluate=validate,
        before_step=clip,
    )  # fmt: skip
    if finished:
        final_test(
            module, ctx, lambda: evaluate(module, data.x_test.to(dev), data.y_test.to(dev), "test")
        )


@torch.no_grad()
def predict(module: nn.Module, x: Tensor, mc_samples: int = 1) -> dict[str, Tensor]:
    """Deterministic prediction of sequences x (N, T, F) (``mc_samples`` is ignored): raw
    units. Regression: mean, epistemic_var (zeros), aleatoric_var (``noise_var``),
    total_var, (N, D) each; classification: probs (N, C) and the entropies (N,)."""
    assert isinstance(module, RNN)
    module.eval()
    out = module(x.to(module.head.weight.device))
    if module.task == "classification":
        return classification_summary(out.softmax(-1).unsqueeze(0))
    mean = out * module.y_std + module.y_mean
    return regression_summary(mean.unsqueeze(0), module.noise_var.expand_as(mean).unsqueeze(0))


def predict_rows(module: nn.Module) -> int:
    """A prediction steps through the sequence: T forward rows per input (the API's bound)."""
    assert isinstance(module, RNN)
    return module.length


FAMILY = Family(
    name="rnn",
    description="tanh/LSTM/GRU sequence models: vanishing and exploding gradients through time",
    params=RNNParams,
    datasets=DATASETS,
    capabilities={Capability.PREDICT: predict, Capability.GRADIENTS: gradients},
    build=build,
    fit=fit,
    default_epochs=30,
    mc_passes=lambda module, t: 1,
    predict_rows=predict_rows,
)
