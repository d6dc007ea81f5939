"""The registry: an explicit name -> Family mapping of the zoo."""

from __future__ import annotations

from models.family import Family


def _families() -> dict[str, Family]:
    from models import (
        boltzmann,
        ddpg,
        deepwalk,
        dqn,
        ensemble,
        flow,
        gan,
        gated_pixelcnn,
        made,
        mc_dropout,
        mlp,
        multitask,
        nade,
        optim_lab,
        pixelcnn,
        pixelcnn_pp,
        pixelrnn,
        pixelvae,
        rbm,
        reinforce,
        rnn,
        vae,
    )

    families = [
        mlp.FAMILY,
        mc_dropout.FAMILY,
        ensemble.FAMILY,
        multitask.FAMILY,
        flow.FAMILY,
        vae.FAMILY,
        gan.FAMILY,
        made.FAMILY,
        nade.FAMILY,
        rbm.FAMILY,
        pixelcnn.FAMILY,
        gated_pixelcnn.FAMILY,
        pixelcnn_pp.FAMILY,
        pixelrnn.FAMILY,
        pixelvae.FAMILY,
        boltzmann.FAMILY,
        dqn.FAMILY,
        reinforce.FAMILY,
        ddpg.FAMILY,
        rnn.FAMILY,
        deepwalk.FAMILY,
        optim_lab.FAMILY,
    ]
    return {f.name: f for f in families}


REGISTRY: dict[str, Family] = _families()


def get_family(name: str) -> Family:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {sorted(REGISTRY)}") from None


def trains_on_uploads(family: Family) -> bool:
    """Whether a job of this family may name a user's upload as its dataset.

    A table upload is vectors in, one target out: it suits every family that predicts and
    trains on the built-in vector sets of ``mlp`` (``mc_dropout``, an ensemble, ...); an
    edge list suits the families of the built-in graphs (``deepwalk``); sequence, control
    and generative families train on other shapes. (``app.datasets.check_upload_kind``
    matches the upload's kind to the family's.)
    """
    from models.data import GRAPH_DATASETS, PREDICTIVE_DATASETS
    from models.family import Capability

    predicts = Capability.PREDICT in family.capabilities
    return (predicts and bool(family.datasets & PREDICTIVE_DATASETS)) or bool(
        family.datasets & GRAPH_DATASETS
    )
