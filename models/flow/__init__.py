"""``flow``: normalizing flows with an exact log-likelihood.

A flow is an invertible map x = f(z) of a standard normal base z ~ N(0, I); by the
change of variables (the notes' §5.3)

    log p(x) = log N(f⁻¹(x); 0, I) + log |det ∂f⁻¹/∂x|,

summed over the layers of f = f_K ∘ … ∘ f_1. Every layer here knows both directions
and the log-determinant of each: ``to_base`` (data -> noise, for the likelihood) and
``to_data`` (noise -> data, for sampling and reverse KL).

- ``planar`` (Rezende & Mohamed 2015, eq. 10): f(z) = z + û tanh(wᵀz + b), with
  û = u + (m(wᵀu) − wᵀu) w/‖w‖², m(a) = −1 + softplus(a), so wᵀû > −1 and the map
  is invertible (their appendix A.1). The inverse has no closed form, but along w it
  is a 1-D monotone equation wᵀx = α + wᵀû tanh(α + b) in α = wᵀz: bisection finds
  the root, and one Newton step with gradients gives the implicit-function gradient,
  so planar flows train by maximum likelihood too.
- ``radial`` (ibid., eq. 14): f(z) = z + β(z − z₀)/(α + r), r = ‖z − z₀‖, α > 0,
  β ≥ −α. Its inverse is closed form: ‖x − z₀‖ = r(1 + β/(α + r)) is a quadratic in r
  with one positive root.
- ``realnvp`` (Dinh et al. 2017): affine couplings x_b = z_b·exp(s(z_a)) + t(z_a) on
  alternating halves, log scales soft-clamped to (−c, c) by c·tanh(·/c).
- ``maf`` (Papamakarios et al. 2017): x_i = z_i·exp(α_i) + μ_i with (μ, α) a MADE
  (Germain et al. 2015) of x_<i; data -> noise is one pass, sampling D passes;
  the order is reversed between layers.

Objectives: ``forward_kl`` (maximum likelihood on the data, KL(p_data‖q)) or
``reverse_kl`` (variational inference, KL(q‖p) = E_q[log q − log p̃] + log Z for a
known unnormalised p̃, ``models/densities.py``). Reverse KL is mode-seeking: it
pays nothing for missing mass, so q under-covers p; the ``var_ratio`` metric
(tr Cov of samples / tr Cov of the target) shows it.

Data: 2-D points are standardised with the training split's statistics (an affine
layer whose Jacobian is counted). Images (digits, mnist5k) are dequantised
(v + u·Δ, u ~ U[0, 1)), scaled to [0, 1] and mapped to logit space with
p = α + (1 − 2α)y (Dinh et al. 2017, §4.1), the Jacobian included; log P of the
discrete pixels is reported in nats and bits/dim. Conditioners are MLPs on the
flattened image, not convolutional couplings.

With ``batchnorm`` (on by default for realnvp and maf by maximum likelihood) a batch
normalisation bijector follows every layer (``BatchNormFlow``): batch statistics in
training, running averages in eval mode, where log p is exact.

The package: ``bijectors`` (the layers, each giving its own log-det), ``flow`` (the
parameters, the ``Flow`` module and the losses), ``family`` (training, evaluation,
inference and the ``FAMILY`` record). MADE lives in the shared ``models.nets``.

Checkpoint ``state["model"]`` keys: ``pre.*`` (standardisation or logit buffers),
``layers.<k>.*`` per transform (with batchnorm, transform k is ``layers.<2k>`` and its
normalisation ``layers.<2k+1>``, holding only ``running_mean`` and ``running_var``).
"""

from models.flow.family import FAMILY

__all__ = ["FAMILY"]
