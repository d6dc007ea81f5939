"""The CUDA path, on a real GPU: training on the device, serving the checkpoint on the
CPU, and an out-of-memory job failing once with a reason instead of being retried.

Skipped where torch sees no CUDA device (CI has none); run on a GPU machine with
``python -m pytest -m cuda tests/cuda`` (docs/reliability.md records the last run).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from models.checkpoint import dump_state, load_state
from models.family import Capability
from models.generative import SampleOptions
from models.registry import REGISTRY
from tests.stack import Stack
from tests.support.data import RecordingContext, tiny
from tests.support.smoke import smoke_params

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]

# Each worker process may take 0.2% of the GPU's memory (~280 MiB on an H200, ~160 MiB on
# an H100): plenty for the small job, far too little for the large one.
FRACTION = "0.002"
SMALL = {
    "model": "mc_dropout",
    "dataset": "sine_gap",
    "params": {"hidden": [64, 64]},
    "train": {"epochs": 30, "device": "cuda"},
}
# 37.6M parameters: 150 MB of weights, 600 MB with gradients and Adam's two moments
LARGE = {
    "model": "mlp",
    "dataset": "mnist5k",
    "params": {"hidden": [4096, 4096, 4096]},
    "train": {"epochs": 2, "device": "cuda", "batch_size": 4096},
}


@pytest.fixture(scope="module")
def gpu_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("cuda-stack")
    s = Stack(
        tmp,
        f"sqlite:///{tmp / 'deepzoo.db'}",
        None,
        extra_env={"DEEPZOO_CUDA_MEMORY_FRACTION": FRACTION},
    )
    try:
        s.start_api_only()
        s.start_worker("gpu1", queues="gpu")
        yield s
    finally:
        s.stop()
        for log in sorted(tmp.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")


def test_trains_on_the_gpu_and_serves_on_the_cpu(gpu_stack: Stack) -> None:
    job = gpu_stack.post_job(SMALL)
    done = gpu_stack.wait_status(job["id"], {"succeeded", "failed"}, timeout=300)
    assert done["status"] == "succeeded", done["error"]
    assert done["provenance"]["device"].startswith("cuda")
    assert done["attempts"] == 1
    # the API process has no CUDA context of its own: the checkpoint loads on the CPU
    r = gpu_stack.client.post(
        f"/v1/jobs/{job['id']}/predict", json={"inputs": [[0.0], [2.0]], "mc_samples": 50}
    )
    assert r.status_code == 200, r.text
    assert all(row[0] > 0 for row in r.json()["total_var"])


def test_out_of_memory_fails_once_with_an_actionable_reason(gpu_stack: Stack) -> None:
    job = gpu_stack.post_job(LARGE)
    done = gpu_stack.wait_status(job["id"], {"succeeded", "failed"}, timeout=300)
    assert done["status"] == "failed"
    assert done["error"].startswith("out of memory on cuda"), done["error"]
    assert "train.batch_size" in done["error"]
    assert done["attempts"] == 1
    # not retried: still one attempt after the reconciler has had several rounds
    time.sleep(3)
    again = gpu_stack.job(job["id"])
    assert again["status"] == "failed" and again["attempts"] == 1
    # and the worker takes the next job as usual (a fresh process per job)
    nxt = gpu_stack.post_job(SMALL)
    assert gpu_stack.wait_status(nxt["id"], {"succeeded", "failed"}, 300)["status"] == "succeeded"


@pytest.mark.parametrize(
    ("name", "dataset"),
    [(n, d) for n, f in REGISTRY.items() for d in sorted(f.datasets) if d != "mnist5k"],
)
def test_every_family_fits_and_predicts_on_the_gpu(name: str, dataset: str) -> None:
    """Each family's fit and predict on CUDA: every buffer and tensor on the one device,
    the metrics finite, and the state loadable on the CPU (how the API serves it)."""
    fam, data = REGISTRY[name], tiny(dataset)
    params = smoke_params(fam)
    module = fam.build(params, data.info).to("cuda")
    ctx = RecordingContext(epochs=2, batch_size=32, device="cuda")
    fam.fit(module, data, params, ctx)
    assert all(math.isfinite(v) for _, m in ctx.history for v in m.values())
    x = data.x_test[:5].cuda()
    if Capability.PREDICT in fam.capabilities:
        on_gpu = fam.capability(Capability.PREDICT)(module, x, 3)
        assert all(v.device.type == "cuda" for v in on_gpu.values())
    if Capability.SAMPLE in fam.capabilities:
        sample = fam.capability(Capability.SAMPLE)
        drawn = sample(module, SampleOptions(n=4, seed=1))
        assert drawn.shape[0] == 4 and bool(torch.isfinite(drawn).all())
        again = sample(module, SampleOptions(n=4, seed=1))
        assert torch.equal(drawn.cpu(), again.cpu()), "same seed, same samples on the GPU"
    if Capability.LOG_PROB in fam.capabilities:
        log_prob = fam.capability(Capability.LOG_PROB)
        assert bool(torch.isfinite(log_prob(module, x, None, 2).log_prob).all())
    cpu = fam.build(params, data.info)
    state = load_state(dump_state(ctx.checkpoints[-1][1]))
    cpu.load_state_dict(state["model"])
    assert all(p.device.type == "cpu" for p in cpu.state_dict().values())
