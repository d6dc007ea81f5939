"""``Family.capabilities``: one function per capability, checked when the record is made
(at import), and read back typed through ``Family.capability``."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from models.data import load
from models.family import Capability, Chain, Decoder, Family, LikelihoodReport, Params, Unsupported
from models.generative import LogProb, latent_path
from models.registry import REGISTRY


def predict(module: nn.Module, x: torch.Tensor, mc_samples: int) -> dict[str, torch.Tensor]:
    return {"mean": x}


def log_prob(module: nn.Module, x: torch.Tensor, labels: Any, k: int) -> LogProb:
    return LogProb(torch.zeros(len(x)), exact=True)


def decode(module: nn.Module, z: torch.Tensor, labels: Any) -> torch.Tensor:
    return z


def family(capabilities: dict[Any, Any]) -> Family:
    return Family(
        name="toy",
        description="a record under test",
        params=Params,
        datasets=frozenset({"moons"}),
        capabilities=capabilities,
        build=lambda params, info: nn.Identity(),
        fit=lambda module, data, params, ctx: None,
    )


def test_a_capability_without_its_function_is_refused() -> None:
    with pytest.raises(TypeError, match="declares sample without its function"):
        family({Capability.PREDICT: predict, Capability.SAMPLE: None})
    with pytest.raises(TypeError, match="declares log_prob without its function"):
        family({Capability.LOG_PROB: "log_prob"})


def test_a_function_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(TypeError, match="predict function"):
        family({Capability.PREDICT: log_prob})  # takes 4 arguments, predict passes 3
    with pytest.raises(TypeError, match="log_prob function"):
        family({Capability.LOG_PROB: predict})  # takes 3, log_prob passes 4
    with pytest.raises(TypeError, match="Decoder"):
        family({Capability.DECODE: decode})  # a decoder says its latent size too
    with pytest.raises(TypeError, match="interpolate without decode"):
        family({Capability.INTERPOLATE: latent_path})
    with pytest.raises(TypeError, match="not a Capability"):
        family({"predict": predict})


def test_a_chain_is_declared_as_a_chain_record_beside_sample() -> None:
    def sample(module: nn.Module, opts: Any) -> torch.Tensor:
        return torch.zeros(opts.n, 2)

    def run(module: nn.Module, opts: Any, at: Any) -> torch.Tensor:
        return torch.zeros(len(at), opts.n, 2)

    chain = Chain(run, sweeps=lambda module: 5, updates=lambda module: 2)
    with pytest.raises(TypeError, match="Chain"):
        family({Capability.SAMPLE: sample, Capability.CHAIN: run})  # says its sweeps too
    with pytest.raises(TypeError, match="chain without sample"):
        family({Capability.CHAIN: chain})
    with pytest.raises(TypeError, match="chain function"):  # run takes 3 arguments
        family(
            {
                Capability.SAMPLE: sample,
                Capability.CHAIN: Chain(sample, chain.sweeps, chain.updates),
            }
        )


def test_capability_returns_the_declared_function_or_names_what_it_can() -> None:
    toy = family(
        {
            Capability.PREDICT: predict,
            Capability.DECODE: Decoder(decode, latent_dim=lambda params: 3),
            Capability.INTERPOLATE: latent_path,
        }
    )
    assert toy.capability(Capability.PREDICT) is predict
    decoder = toy.capability(Capability.DECODE)
    assert decoder.latent_dim(Params()) == 3 and torch.equal(
        decoder(nn.Identity(), torch.ones(2, 3), None), torch.ones(2, 3)
    )
    assert toy.can == ["decode", "interpolate", "predict"]
    with pytest.raises(Unsupported) as err:
        toy.capability(Capability.SAMPLE)
    assert err.value.can == ["decode", "interpolate", "predict"]
    assert str(err.value) == "model 'toy' cannot sample; it can: decode, interpolate, predict"
    with pytest.raises(TypeError):
        toy.capabilities[Capability.SAMPLE] = predict  # type: ignore[index]


def test_latent_path_is_the_straight_line_with_its_ends() -> None:
    za, zb = torch.zeros(3), torch.tensor([2.0, 4.0, 6.0])
    path = latent_path(za, zb, 3)
    assert path.shape == (3, 3)
    torch.testing.assert_close(path, torch.tensor([[0.0, 0, 0], [1, 2, 3], [2, 4, 6]]))


def test_the_registry_lists_what_each_family_answers() -> None:
    """The families that serve today answer what they did before the map (a new family
    is free to answer what it declares: the smoke table checks each capability)."""
    can = {name: fam.can for name, fam in REGISTRY.items()}
    expected = {
        "mlp": ["predict"],
        "mc_dropout": ["predict"],
        "ensemble": ["predict"],
        "multitask": ["predict"],
        "flow": ["log_prob", "sample"],
        "vae": ["decode", "encode", "interpolate", "log_prob", "sample"],
        "gan": ["decode", "interpolate", "sample"],
    }
    assert {name: can[name] for name in expected} == expected


def test_likelihood_reports_say_what_kind_of_number_they_are() -> None:
    """Exact (nade, made), a bound (vae's importance-weighted one), and for a flow what the
    data makes it: an exact density on 2-D points, a dequantisation bound on pixels."""
    digits, moons, bits = load("digits").info, load("moons").info, load("digits_bin").info
    report = {n: f.likelihood for n, f in REGISTRY.items() if f.likelihood is not None}
    assert {"nade", "made", "vae", "flow"} <= report.keys()
    assert "mlp" not in report and "gan" not in report
    kind = {n: r.kind_for(bits if n != "flow" else digits, None) for n, r in report.items()}
    assert kind["nade"] == kind["made"] == "exact" and kind["vae"] == kind["flow"] == "bound"
    assert report["flow"].kind_for(moons, None) == "exact"
    assert report["vae"].metric_names(bits) == ("test_iwae_nll", "test_iwae_bpd", "test_k")
    assert report["nade"].metric_names(moons) == ("test_nll",)  # no bits/dim of a density
    with pytest.raises(TypeError, match="likelihood kind"):
        LikelihoodReport("test_nll", kind="guess")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="likelihood kind"):
        LikelihoodReport("test_nll", kind=lambda info, params: "guess").kind_for(moons, None)  # type: ignore[arg-type,return-value]
