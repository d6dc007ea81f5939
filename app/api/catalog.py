"""The catalog: models with their JSON Schemas (datasets: ``app/api/datasets.py``)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import CurrentPrincipal
from app.problems import Problem
from app.schemas import ModelOut
from models import data as zoo_data
from models.family import Family
from models.registry import REGISTRY

router = APIRouter(prefix="/v1", tags=["catalog"])


def model_out(f: Family) -> ModelOut:
    return ModelOut(
        name=f.name,
        description=f.description,
        capabilities=f.can,
        datasets=sorted(f.datasets),
        dataset_patterns={p: zoo_data.patterns()[p] for p in sorted(f.dataset_patterns)},
        params_schema=f.params.model_json_schema(),
        default_epochs=f.default_epochs,
        default_steps=f.default_steps,
    )


@router.get("/models", response_model=list[ModelOut])
def list_models(_: CurrentPrincipal) -> list[ModelOut]:
    return [model_out(f) for f in REGISTRY.values()]


@router.get("/models/{name}", response_model=ModelOut)
def get_model(name: str, _: CurrentPrincipal) -> ModelOut:
    family = REGISTRY.get(name)
    if family is None:
        raise Problem(404, f"no model {name!r}; see GET /v1/models")
    return model_out(family)
