"""The ``rnn`` model: its params, the stacked layers with a linear head on the top layer's
last state, and one loss per sequence."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator
from torch import Tensor, nn

from models.data import DataInfo
from models.family import Params
from models.rnn.cells import GatedLayer, Layer, TanhLayer, init_recurrent

CellName = Literal["tanh", "lstm", "gru"]
# states (sequences × steps × layers × hidden) one training step or the diagnostics' probe
# may hold: 2 GB of an LSTM's activations (its gates and states, ~8 floats a state value)
MAX_STEP_STATES = 2**26


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
    forget_bias: Annotated[float, Field(ge=-10.0, le=10.0)] | Literal["chrono"] | None = Field(
        None,
        description="the LSTM forget gate's initial bias b_f, σ(b_f) of the cell state kept "
        "each step (Gers et al. 2000), or 'chrono': b_f ~ log U(1, T - 1) per unit and the "
        "input gate's b_i = -b_f, T the sequence length (Tallec & Ollivier 2018); only with "
        "cell 'lstm', where null means 1",
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


def step_states(params: RNNParams, length: int) -> int:
    """The state values one sequence's forward pass holds: T × layers × hidden."""
    return length * params.layers * params.hidden


def lstm_gate_biases(params: RNNParams, hidden: int, length: int) -> tuple[Tensor, Tensor]:
    """The input and forget gates' initial biases (b_i, b_f), (H,) each. ``forget_bias``
    a number (by default 1, so that the gate starts open, σ(1) ≈ 0.73: Gers et al. 2000;
    Jozefowicz, Zaremba & Sutskever 2015): b_f that number, b_i = 0. 'chrono' (Tallec &
    Ollivier 2018): b_f = log u, u ~ U(1, T_max - 1) with T_max the sequence ``length``,
    and b_i = -b_f, so that unit j starts as a leaky integrator of time constant about u_j:
    the characteristic forgetting times spread over the range of dependencies."""
    if params.forget_bias == "chrono":
        b_f = torch.empty(hidden).uniform_(1.0, max(length - 1.0, 1.0)).log()
        return -b_f, b_f
    fb = 1.0 if params.forget_bias is None else params.forget_bias
    return torch.zeros(hidden), torch.full((hidden,), fb)


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
            if params.cell == "lstm":  # b_i, b_f = b_ih + b_hh of their blocks: all in b_ih
                b_ih[:H], b_ih[H : 2 * H] = lstm_gate_biases(params, H, self.length)

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
    """The model; a ValueError (a 422 on ``params`` in the API) when the diagnostics' probe
    would hold more than MAX_STEP_STATES states on this data."""
    module = RNN(params, info)
    most = MAX_STEP_STATES // step_states(params, module.length)
    if params.probe > most:
        raise ValueError(
            f"probe: {params.probe} sequences of {module.length} steps through {params.layers} "
            f"layers of {params.hidden} exceed the diagnostics' bound; at most {most}"
        )
    return module


def example_losses(module: RNN, out: Tensor, y: Tensor) -> Tensor:
    """One loss per sequence, (B,): cross-entropy, or squared error on standardised targets."""
    if module.task == "classification":
        return F.cross_entropy(out, y, reduction="none")
    return (out - module.target(y)).pow(2).mean(-1)
