"""The recurrent layers of ``rnn``: the notes' tanh cell written out, torch's LSTM and GRU
with the same equations stepped by hand (each step's state a node of the graph), the
recurrent weights' initialisations, and the notes' Jacobian product."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn


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


def tanh_jacobian_product(W: Tensor, states: list[Tensor], k: int, t: int) -> Tensor:
    """∂c_t/∂c_k of one tanh sequence by the notes' product, (H, H): ∏_{j=k+1..t} diag(1 -
    c_j²) W, the later factors on the left; ``states`` c_1..c_T of shape (H,), 1-based."""
    jac = torch.eye(len(W), dtype=W.dtype, device=W.device)
    for j in range(k + 1, t + 1):
        jac = (1 - states[j - 1].pow(2))[:, None] * W @ jac
    return jac
