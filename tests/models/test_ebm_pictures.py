"""What the energy-based models' pictures show, as maths: ``filters`` are the weights
exactly (an RBM's columns W[:, j], a Boltzmann machine's coupling rows W[i, :]); a
``chain``'s first frame is its seeded start and each later frame is the family's own
Gibbs operator applied from the one before; its last frame is what ``sample`` draws with
as many ``steps``; and a Boltzmann machine on ≤ 20 units draws exactly unless ``steps``
asks for a chain."""

from __future__ import annotations

import pytest
import torch

from models import boltzmann, rbm
from models.boltzmann import BoltzmannMachine, BoltzmannParams
from models.data import load_data
from models.family import Capability, Chain
from models.generative import OptionError, SampleOptions
from models.rbm import RBM, RBMParams


def random_rbm(dataset: str = "digits_bin", hidden: int = 5) -> RBM:
    module = RBM(RBMParams(hidden=hidden, gibbs_steps=7), load_data(dataset).info)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return module


def random_boltzmann(dataset: str = "digits_bin") -> BoltzmannMachine:
    module = BoltzmannMachine(BoltzmannParams(gibbs_steps=3), load_data(dataset).info)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        module.U.copy_(torch.randn(module.U.shape, generator=g) * 0.3)
        module.b.copy_(torch.randn(module.b.shape, generator=g))
    return module


def test_rbm_filters_are_the_columns_of_w() -> None:
    module = random_rbm()
    w = rbm.filters(module)
    assert w.shape == (5, 64)  # (units, *input_shape): digits_bin is flat
    for j in range(5):
        assert torch.equal(w[j].flatten(), module.W[:, j].detach())


def test_boltzmann_filters_are_the_coupling_rows() -> None:
    module = random_boltzmann()
    w = boltzmann.filters(module)
    assert w.shape == (64, 64)
    W = module.W.detach()
    for i in (0, 17, 63):
        assert torch.equal(w[i].flatten(), W[i])
        assert float(w[i].flatten()[i]) == 0.0  # no coupling to itself
    torch.testing.assert_close(w.flatten(1), w.flatten(1).T)  # W is symmetric


def test_rbm_chain_frames_follow_its_gibbs_sweeps() -> None:
    module = random_rbm()
    opts = SampleOptions(n=3, seed=11)
    frames = rbm.chain(module, opts, [0, 1, 4])
    assert frames.shape == (3, 3, 64)
    # the start: uniform noise from the seed, drawn first
    g = torch.Generator().manual_seed(11)
    start = rbm.bernoulli(torch.full((3, 64), 0.5), g)
    assert torch.equal(frames[0].flatten(1), start)
    # then the module's block Gibbs operator x -> h -> x, from the same generator
    one = module.gibbs(start, 1, g)
    assert torch.equal(frames[1].flatten(1), one)
    assert torch.equal(frames[2].flatten(1), module.gibbs(one, 3, g))


@pytest.mark.parametrize("family", [rbm, boltzmann])
def test_the_last_frame_is_the_sample_with_as_many_steps(family) -> None:
    module = random_rbm() if family is rbm else random_boltzmann()
    frames = family.chain(module, SampleOptions(n=1, seed=3), [0, 2, 5, 9])
    drawn = family.sample(module, SampleOptions(n=1, seed=3, steps=9))
    assert torch.equal(frames[-1], drawn)
    # each frame alone is the same state: a frame does not depend on the ones before it
    for k, s in enumerate([0, 2, 5, 9]):
        assert torch.equal(family.chain(module, SampleOptions(n=1, seed=3), [s])[0], frames[k])
    # without steps: the params' gibbs_steps (7 for this RBM, 3 for this Boltzmann machine)
    default = family.sample(module, SampleOptions(n=1, seed=3))
    sweeps = module.params.gibbs_steps
    assert torch.equal(default, family.sample(module, SampleOptions(n=1, seed=3, steps=sweeps)))
    chain = family.FAMILY.capability(Capability.CHAIN)
    assert isinstance(chain, Chain) and chain.sweeps(module) == sweeps


def test_boltzmann_chain_frames_follow_its_scan() -> None:
    module = random_boltzmann()
    frames = boltzmann.chain(module, SampleOptions(n=2, seed=4), [0, 1, 2])
    g = torch.Generator().manual_seed(4)
    start = (torch.rand(2, 64, generator=g) < 0.5).float()
    assert torch.equal(frames[0].flatten(1), start)
    one = module.gibbs(start, 1, g)
    assert torch.equal(frames[1].flatten(1), one)
    assert torch.equal(frames[2].flatten(1), module.gibbs(one, 1, g))
    assert boltzmann.scan_updates(module) == 2  # one sequential update per block of 32


def test_a_small_boltzmann_machine_draws_exactly_unless_steps_ask_for_a_chain() -> None:
    module = random_boltzmann("bars_stripes")  # 16 units: exact
    assert boltzmann.default_sweeps(module) == 0
    exact = boltzmann.sample(module, SampleOptions(n=4, seed=2))
    g = torch.Generator().manual_seed(2)
    drawn = module.draw_exact(4, g).float()
    assert torch.equal(exact, drawn)
    chained = boltzmann.sample(module, SampleOptions(n=4, seed=2, steps=5))
    assert torch.equal(chained, boltzmann.chain(module, SampleOptions(n=4, seed=2), [5])[0])


def test_chain_options_are_refused_by_name() -> None:
    with pytest.raises(OptionError) as refused:
        rbm.chain(random_rbm(), SampleOptions(n=1, label=1), [0, 3])
    assert refused.value.field == "label"
    with pytest.raises(OptionError) as refused:
        boltzmann.chain(random_boltzmann(), SampleOptions(n=1, temperature=2.0), [0, 3])
    assert refused.value.field == "temperature"
    with pytest.raises(OptionError) as refused:  # 2 chains × 10 sweeps: over 19 rows
        rbm.sample(random_rbm(), SampleOptions(n=2, steps=10, max_rows=19))
    assert refused.value.field == "n"
