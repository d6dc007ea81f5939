"""A client generated from the served OpenAPI document (openapi-python-client) drives a
real stack: authenticate, submit a job, follow it to success, predict, download a PNG."""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.stack import ADMIN_KEY, Stack

pytestmark = pytest.mark.e2e

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
# PNG and GIF bodies are read as files (bytes); no formatter run after generating: it is not needed
# to import the client and would only cost time
CONFIG = (
    "post_hooks: []\ncontent_type_overrides:\n  image/png: application/octet-stream\n"
    "  image/gif: application/octet-stream\n"
)
# the client openapi-python-client 0.29 wrote from the document before the shared Problem
# schema had 651 files, most of them one copy of the problem document per operation and status


def generate(document: bytes, where: Path, package: str) -> Path:
    spec, config = where / "openapi.json", where / "config.yaml"
    spec.write_bytes(document)
    config.write_text(CONFIG)
    out = where / package
    args = ["generate", "--path", str(spec), "--meta", "none", "--output-path", str(out)]
    run = subprocess.run(
        [str(GENERATOR), *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # every operation and response made it into the client: nothing skipped with a warning
    assert "Warning" not in run.stdout + run.stderr, run.stdout + run.stderr
    return out


def load(where: Path, package: str) -> ModuleType:
    sys.path.insert(0, str(where))
    try:
        return importlib.import_module(package)
    finally:
        sys.path.remove(str(where))


def op(client_pkg: ModuleType, dotted: str) -> Any:
    return importlib.import_module(f"{client_pkg.__name__}.api.{dotted}")


# the document and the client are the same whatever the database: one backend
@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_generated_client_drives_the_stack(stack: Stack, tmp_path: Path) -> None:
    document = stack.client.get("/openapi.json").content
    package = f"deepzoo_client_{tmp_path.name.replace('-', '_')}"
    out = generate(document, tmp_path, package)
    files = [p for p in out.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    # one Problem model for every error, not a copy per operation and status (the count
    # of files grows with operations and schemas, 224 at 45 operations, not with errors)
    assert sorted(p.name for p in files if "problem" in p.name) == [
        "problem.py",
        "problem_errors_item.py",
    ]
    assert not [p for p in files if "response_4" in p.name or "response_5" in p.name]

    dz = load(tmp_path, package)
    models = importlib.import_module(f"{package}.models")
    jobs = "jobs"
    with dz.AuthenticatedClient(base_url=stack.url, token=ADMIN_KEY, timeout=None) as client:
        # a wrong key is a typed Problem, through the same shared class
        with dz.AuthenticatedClient(base_url=stack.url, token="not-a-key") as anonymous:
            denied = op(dz, "catalog.list_models_v1_models_get").sync_detailed(client=anonymous)
        assert denied.status_code == 401
        assert isinstance(denied.parsed, models.Problem) and denied.parsed.status == 401

        catalog = op(dz, "catalog.list_models_v1_models_get").sync(client=client)
        assert "mc_dropout" in {m.name for m in catalog}

        spec = models.McDropoutJobSpec.from_dict(
            {
                "model": "mc_dropout",
                "dataset": "sine_gap",
                "params": {"hidden": [16], "dropout": 0.1},
                "train": {"epochs": 2, "batch_size": 64, "seed": 0},
                "name": "generated client",
            }
        )
        post = op(dz, f"{jobs}.post_job_v1_jobs_post")
        created = post.sync_detailed(client=client, body=spec, idempotency_key="gen-client-1")
        assert created.status_code == 201 and isinstance(created.parsed, models.JobOut)
        job = created.parsed
        # the idempotent replay answers 200 with the same typed job
        replay = post.sync_detailed(client=client, body=spec, idempotency_key="gen-client-1")
        assert replay.status_code == 200 and replay.parsed.id == job.id

        get_job = op(dz, f"{jobs}.get_job_v1_jobs_job_id_get")
        deadline = time.monotonic() + 120
        while job.status.value not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, f"job still {job.status.value}"
            time.sleep(0.2)
            job = get_job.sync(job_id=job.id, client=client)
        assert job.status.value == "succeeded", job.error
        assert isinstance(job.spec, models.McDropoutJobSpec)
        assert job.spec.train.epochs == 2 and job.spec.params.hidden == [16]
        assert all(isinstance(v, float) for v in job.metrics.additional_properties.values())

        predict = op(dz, "inference.predict_v1_jobs_job_id_predict_post").sync(
            job_id=job.id,
            client=client,
            body=models.PredictRequest(inputs=[[0.0], [2.0]], mc_samples=8),
        )
        assert isinstance(predict, models.PredictOut), predict
        assert len(predict.mean) == 2 and len(predict.epistemic_var) == 2

        png = op(dz, "evaluation.plot_png_v1_jobs_job_id_plot_png_get").sync_detailed(
            job_id=job.id, client=client
        )
        assert png.status_code == 200
        assert png.headers["content-type"] == "image/png"
        assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
        assert png.parsed.payload.read() == png.content  # a File: the PNG's bytes

        missing = get_job.sync_detailed(job_id="job_nope", client=client)
        assert missing.status_code == 404 and isinstance(missing.parsed, models.Problem)
