"""VAE benchmarks on mnist5k_bin, measured side by side in one process on one thread.

(a) Our ``vae`` against pythae's ``VAE`` (0.1.2) with the same network: pythae's default
    MLP, 784 -> 512 ReLU -> (μ, log σ²) of 16 latents, 16 -> 512 ReLU -> 784 Bernoulli
    logits; the same epochs, batch size, Adam at the same learning rate, validation every
    epoch on both sides. Test NLL: the importance-weighted bound with the same k, the same
    estimator (``models.vae.iwae_bound``) and the same noise for both models (pythae's
    encoder and decoder are wrapped; its decoder's logits are read before its sigmoid).
    Goal: our NLL equal or lower, our training faster.
(b) Reparameterisation against REINFORCE (learned and moving-average baselines) after the
    same budget of epochs: ELBO, IWAE NLL, and the encoder's gradient variance.

    python -m bench.vae [--epochs 40] [--seeds 3] [--epochs-estimators 20] [--k 200]

About 4 minutes of CPU on one thread with the defaults.

Times are CPU seconds of this process (``time.process_time``; one torch thread), which a
busy machine disturbs far less than wall time. Writes bench/out/vae.json;
docs/benchmarks.md records the figures.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from typing import Any

import torch
from torch import Tensor, nn

from bench.common import save
from models.context import LocalContext
from models.data import Dataset, load
from models.optim import OptimizerSpec
from models.vae import FAMILY, VAE, VAEParams, iwae_bound

Z, HIDDEN, BATCH, LR, SEED = 16, 512, 64, 1e-3, 0


def ours(
    data: Dataset, epochs: int, seed: int = SEED, **params: Any
) -> tuple[VAE, LocalContext, float]:
    p = VAEParams(z_dim=Z, hidden=[HIDDEN], k_eval=1, **params)
    torch.manual_seed(seed)
    vae = FAMILY.build(p, data.info)
    assert isinstance(vae, VAE)
    ctx = LocalContext(
        epochs=epochs, batch_size=BATCH, seed=seed, optimizer=OptimizerSpec(name="adam", lr=LR)
    )
    start = time.process_time()
    FAMILY.fit(vae, data, p, ctx)
    return vae.eval(), ctx, time.process_time() - start


def pythae_vae(data: Dataset, epochs: int, seed: int = SEED) -> tuple[nn.Module, float]:
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE as PythaeVAE
    from pythae.models import VAEConfig
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    logging.getLogger("pythae").setLevel(logging.WARNING)
    shape = data.info.image_shape
    assert shape is not None

    def ds(x: Tensor, y: Tensor) -> BaseDataset:
        return BaseDataset(x.view(-1, *shape), y.float())

    torch.manual_seed(seed)
    model = PythaeVAE(VAEConfig(input_dim=shape, latent_dim=Z, reconstruction_loss="bce"))
    with tempfile.TemporaryDirectory(prefix="dz-pythae-") as tmp:
        config = BaseTrainerConfig(
            output_dir=tmp, num_epochs=epochs, learning_rate=LR, seed=seed, no_cuda=True,
            per_device_train_batch_size=BATCH, per_device_eval_batch_size=BATCH,
        )  # fmt: skip
        trainer = BaseTrainer(
            model,
            train_dataset=ds(data.x_train, data.y_train),
            eval_dataset=ds(data.x_val, data.y_val),
            training_config=config,
        )
        start = time.process_time()
        trainer.train()
        seconds = time.process_time() - start
    return model.eval(), seconds


class PythaeEncoder(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, u: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        out = self.encoder(u)
        return out.embedding, out.log_covariance


class PythaeDecoder(nn.Module):
    """pythae's Decoder_AE_MLP up to its sigmoid: Bernoulli logits (B, 1, D)."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, z: Tensor, c: Tensor | None) -> Tensor:
        hidden_layer, output_layer = self.decoder.layers
        return output_layer[0](hidden_layer(z)).view(len(z), 1, -1)


def as_ours(model: Any, data: Dataset) -> VAE:
    """pythae's networks inside our VAE, so one estimator scores both."""
    vae = VAE(VAEParams(z_dim=Z, hidden=[HIDDEN]), data.info)
    vae.encoder, vae.decoder = PythaeEncoder(model.encoder), PythaeDecoder(model.decoder)
    return vae.eval()


def test_nll(vae: VAE, data: Dataset, k: int) -> dict[str, float]:
    """Mean −log p bound (nats) and bits/dim over the test split; the ELBO is k = 1."""
    x = data.x_test
    start = time.process_time()
    iw = iwae_bound(vae, x, None, k, torch.Generator().manual_seed(SEED))
    elbo = iwae_bound(vae, x, None, 1, torch.Generator().manual_seed(SEED))
    d = x.shape[1]
    return {
        "test_iwae_nll": -float(iw.mean()),
        "test_iwae_bpd": -float(iw.mean()) / (d * 0.6931471805599453),
        "test_elbo": float(elbo.mean()),
        "score_cpu_seconds": time.process_time() - start,
    }


def warm_up(data: Dataset) -> None:
    """One short run of each side first, so neither pays for first-call set-up."""
    train = [t[:256] for t in (data.x_train, data.y_train)]
    rest = [t[:64] for t in (data.x_val, data.y_val, data.x_test, data.y_test)]
    small = Dataset(data.info, *train, *rest)
    ours(small, 1, grad_var_samples=0)
    pythae_vae(small, 1)


def compare_pythae(data: Dataset, epochs: int, k: int, seeds: int) -> dict[str, Any]:
    """Per seed, ours then pythae's, both from that seed; the means over seeds."""
    warm_up(data)
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "pythae": []}
    for seed in range(seeds):
        # pythae measures no gradient variance: ours is switched off to compare like for like
        vae, _, ours_s = ours(data, epochs, seed, grad_var_samples=0)
        runs["ours"].append({**test_nll(vae, data, k), "train_cpu_seconds": ours_s})
        theirs, theirs_s = pythae_vae(data, epochs, seed)
        runs["pythae"].append(
            {**test_nll(as_ours(theirs, data), data, k), "train_cpu_seconds": theirs_s}
        )
    mean = {
        side: {key: sum(r[key] for r in rs) / len(rs) for key in rs[0]} for side, rs in runs.items()
    }
    us, them = mean["ours"], mean["pythae"]
    return {
        "epochs": epochs,
        "k": k,
        "seeds": seeds,
        "runs": runs,
        "ours": us,
        "pythae": them,
        "nll_difference": us["test_iwae_nll"] - them["test_iwae_nll"],
        "speedup": them["train_cpu_seconds"] / us["train_cpu_seconds"],
    }


def compare_estimators(data: Dataset, epochs: int, k: int) -> dict[str, Any]:
    out: dict[str, Any] = {"epochs": epochs, "k": k}
    runs = {
        "reparam": {"estimator": "reparam"},
        "reinforce_learned": {"estimator": "reinforce", "baseline": "learned"},
        "reinforce_mean": {"estimator": "reinforce", "baseline": "mean"},
    }
    for name, params in runs.items():
        vae, ctx, seconds = ours(data, epochs, **params)
        gv = [v for _, v in ctx.metric("grad_var")]
        out[name] = {
            **test_nll(vae, data, k),
            "train_cpu_seconds": seconds,
            "val_elbo_curve": [round(v, 2) for _, v in ctx.metric("val_elbo")],
            "grad_var_first": gv[0],
            "grad_var_last": gv[-1],
            "grad_var_median": sorted(gv)[len(gv) // 2],
        }
        if ctx.metric("grad_var_reparam"):
            reparam_here = [v for _, v in ctx.metric("grad_var_reparam")]
            out[name]["grad_var_reparam_median"] = sorted(reparam_here)[len(gv) // 2]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=40, help="(a) epochs for both libraries")
    parser.add_argument("--epochs-estimators", type=int, default=20, help="(b) epochs per run")
    parser.add_argument("--seeds", type=int, default=3, help="(a) seeds per library")
    parser.add_argument("--k", type=int, default=200, help="importance samples for test NLL")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load("mnist5k_bin")
    start = time.perf_counter()
    result = {
        "pythae": compare_pythae(data, args.epochs, args.k, args.seeds),
        "estimators": compare_estimators(data, args.epochs_estimators, args.k),
    }
    result["wall_seconds"] = time.perf_counter() - start
    save("vae", result)
    a = result["pythae"]
    us, them = a["ours"], a["pythae"]
    nll = f"IWAE NLL ours {us['test_iwae_nll']:.2f} vs pythae {them['test_iwae_nll']:.2f} nats"
    cpu = f"{us['train_cpu_seconds']:.1f} vs {them['train_cpu_seconds']:.1f} CPU s"
    print(f"(a) {args.epochs} epochs, k={args.k}, mean of {args.seeds} seeds: {nll}; "
          f"train {cpu} ({a['speedup']:.2f}x)")  # fmt: skip
    for name in ("reparam", "reinforce_learned", "reinforce_mean"):
        r = result["estimators"][name]
        print(f"(b) {name}: ELBO {r['test_elbo']:.2f}, IWAE NLL {r['test_iwae_nll']:.2f}, "
              f"grad var median {r['grad_var_median']:.3g}")  # fmt: skip
    print(f"wall {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
