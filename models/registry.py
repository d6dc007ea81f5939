"""The registry: an explicit name -> Family mapping of the zoo."""

from __future__ import annotations

from models.family import Family


def _families() -> dict[str, Family]:
    from models import ensemble, mc_dropout, mlp, multitask

    families = [mlp.FAMILY, mc_dropout.FAMILY, ensemble.FAMILY, multitask.FAMILY]
    return {f.name: f for f in families}


REGISTRY: dict[str, Family] = _families()


def get_family(name: str) -> Family:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {sorted(REGISTRY)}") from None
