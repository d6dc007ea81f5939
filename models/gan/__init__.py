"""``gan``: generative adversarial networks with the losses and tricks of the notes (§5.1).

Goodfellow et al. 2014: a generator G maps noise z ~ N(0, I) to data, a discriminator D
tells data from G's samples, and the two play the minimax game

    min_G max_D  V(D, G) = E_x log D(x) + E_z log(1 − D(G(z))),

whose inner maximum is ``2 JS(p_data ‖ p_G) − log 4`` (the Jensen–Shannon view). Every
loss here is a function of D's *logits* l (D = σ(l)), so no log of a saturated sigmoid
is ever taken:

- discriminator (all but ``wasserstein``): BCE(l_real, 1 − α) + BCE(l_fake, 0), with α the
  one-sided ``label_smoothing`` (Salimans et al. 2016): only real targets are smoothed.
- ``minimax``: G minimises log(1 − D(G(z))) = −softplus(l). Its gradient in l is −σ(l):
  it vanishes exactly when D rejects the fakes confidently (early training).
- ``non_saturating``: G minimises −log D(G(z)) = softplus(−l); gradient −σ(−l) → −1 there.
- ``max_likelihood`` (Goodfellow 2014b, tutorial 2016 §3.2.3):
  J_G = −½ E exp(σ⁻¹(D(G(z)))) = −½ E exp(l). At the optimal D its expected gradient is
  that of KL(p_data ‖ p_G), i.e. maximum likelihood. See ``max_likelihood_g_loss`` for
  the stable form.
- ``wasserstein`` (Arjovsky et al. 2017): the critic f maximises E f(x) − E f(G(z)) over
  1-Lipschitz f, enforced by ``wasserstein_constraint``: ``clip`` (weights clipped to
  [−c, c], c = 0.01, RMSProp as in the paper) or ``gp`` (Gulrajani et al. 2017: penalty
  λ E(‖∇f(x̂)‖₂ − 1)² at random interpolates x̂, λ = 10, Adam β = (0.5, 0.9)); G
  minimises −E f(G(z)). ``critic_steps`` critic updates per generator update (5 by
  default here, 1 for the other losses).

Tricks: ``conditional`` (Mirza & Osindero 2014: the label enters G through conditional
BatchNorm, per-class γ and β (de Vries et al. 2017; Miyato & Koyama 2018), and D through
one-hot concatenation), ``label_smoothing``, ``pack`` (PacGAN, Lin et al. 2018: D
judges m samples at once, concatenated, which penalises mode collapse), and ``r1``
(Mescheder et al. 2018: γ/2 E‖∇_x D(x)‖² on real data, any loss).

Nets: MLPs (ReLU + BatchNorm in G, LeakyReLU in D) for vector data; DCGAN-style
(Radford et al. 2016) transposed convolutions for images whose side is a multiple of 4.
Training counts generator steps; an epoch is one pass of D over the training split.
Diagnostics (``models.gan.metrics``) are logged after every epoch.

Discriminator rejection sampling (``drs``; Azadi et al. 2019) after training: see
``models.gan.drs``.

The package: ``nets`` (the parameters, G, D and the ``GAN`` module), ``losses`` (every
objective as a function of D's logits), ``drs`` (calibration and rejection sampling),
``metrics`` (the diagnostics), ``family`` (the training loop, inference and the
``FAMILY`` record).

Checkpoint state: ``model`` (``g.*``, ``d.*``, and with ``drs`` the 0-d buffer
``drs_max_logit``: M, NaN until calibrated), ``optimizer`` (G's), ``optimizer_d``,
``epoch``, ``step`` (generator steps). Every checkpoint is marked best: a GAN's losses do
not rank sample quality, so inference uses the latest.
"""

from models.gan.family import FAMILY

__all__ = ["FAMILY"]
