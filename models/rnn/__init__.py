"""``rnn``: recurrent networks on sequences, with their gradients through time made visible.

What it shows: the recurrence of the notes (section 3), c_t = tanh(W c_{t-1} + U x_t + b),
trained by backpropagation through time. Its gradient is a product of Jacobians,
∂c_t/∂c_k = ∏_{j=k+1..t} ∂c_j/∂c_{j-1} with ∂c_j/∂c_{j-1} = diag(σ'(a_j)) W (a_j the
pre-activation, σ' = 1 - tanh² = 1 - c_j²), so ‖∂c_j/∂c_{j-1}‖ ≤ ‖Wᵀ‖·‖diag σ'(a_j)‖:
when that bound stays below 1 the product vanishes exponentially in t - k, and it can
explode above it (Bengio, Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013, who
also clip the gradient's norm). The gated cells carry their state additively and keep the
gradient alive over long spans: the LSTM (Hochreiter & Schmidhuber 1997, with the forget
gate of Gers et al. 2000, its bias ``forget_bias``, 1 by default, or Tallec & Ollivier
2018's chrono initialisation) and the GRU (Cho et al. 2014), both torch's (``nn.LSTM``,
``nn.GRU``) for training and stepped by hand from the same weights for the diagnostics.
The tanh cell is written here from the recurrence (no ``nn.RNN``).

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

The package: ``cells`` (the layers, their steps and inits, the notes' Jacobian product),
``model`` (the params, the network, the loss), ``diagnostics`` (the gradient profile and
clipping), ``family`` (fit, evaluate, predict and the ``FAMILY`` record).
"""

from models.rnn.cells import GatedLayer, TanhLayer, gru_step, lstm_step, tanh_jacobian_product
from models.rnn.diagnostics import clip_gradients, gradient_metrics, gradients, positions
from models.rnn.family import FAMILY, evaluate, fit, predict
from models.rnn.model import RNN, RNNParams, build, example_losses

__all__ = [
    "FAMILY",
    "RNN",
    "GatedLayer",
    "RNNParams",
    "TanhLayer",
    "build",
    "clip_gradients",
    "evaluate",
    "example_losses",
    "fit",
    "gradient_metrics",
    "gradients",
    "gru_step",
    "lstm_step",
    "positions",
    "predict",
    "tanh_jacobian_product",
]
