"""Jobs made in process: through the database (the runner's tests) or over HTTP with the
runner called in place of a worker (the API's tests), and a model as the API holds it."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from app.api.jobs import SPEC_ADAPTER, create_job
from app.auth import Principal
from app.db.models import Job
from app.db.session import session_scope
from app.inference import Loaded
from models.data import load
from models.registry import get_family
from workers.runner import run_job

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

ME = Principal("key_test", "owner_test", False)
# a job the runner finishes in a moment (the runner's tests)
TINY: dict[str, Any] = {
    "model": "mlp",
    "dataset": "sine_gap",
    "params": {"hidden": [8]},
    "train": {"epochs": 4},
}
# the same over HTTP, two epochs (the API's tests)
SPEC: dict[str, Any] = {
    "model": "mlp",
    "dataset": "sine_gap",
    "params": {"hidden": [8]},
    "train": {"epochs": 2},
}
GAN_TINY = {"hidden_g": [16], "hidden_d": [16], "latent_dim": 4, "conv_width": 4}


def new_job(spec: dict[str, Any] = TINY) -> str:
    with session_scope() as s:
        job, _ = create_job(s, ME, SPEC_ADAPTER.validate_python(spec))
        return job.id


def job_row(job_id: str) -> Job:
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        s.expunge(job)
        return job


def trained(client: TestClient, spec: dict[str, Any]) -> str:
    """POST the job, then run it here as a worker would; its id once it succeeded."""
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert run_job(job_id) == "succeeded"
    return str(job_id)


def gan_job(client: TestClient, dataset: str, steps: int = 5, **params: Any) -> str:
    return trained(
        client,
        {
            "model": "gan",
            "dataset": dataset,
            "params": {**GAN_TINY, **params},
            "train": {"steps": steps, "batch_size": 256},
        },
    )


def built(model: str, dataset: str, **params: Any) -> Loaded:
    """A model as the API holds it, weights as initialised (the bounds do not read them)."""
    family, info = get_family(model), load(dataset).info
    hyper = family.params(**params)
    module = family.build(hyper, info).eval()
    n = sum(p.numel() for p in module.parameters())
    return Loaded("job_x", "owner", "ckpt", family, info, module, hyper, parameters=n)
