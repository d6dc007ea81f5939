"""End to end: real uvicorn, real Celery worker processes, real Redis, real database."""

from __future__ import annotations

import numpy as np
import pytest

from tests.stack import Stack, wait_until
from tests.support.e2e import SINE, assert_clean_curve

pytestmark = pytest.mark.e2e


def test_a_job_streams_its_events_and_serves_predictions_metrics_and_checkpoints(
    stack: Stack,
) -> None:
    epochs = 5  # the plumbing: what the model learned is test_mc_dropout_sine_gap_uncertainty's
    job = stack.post_job({**SINE, "train": {**SINE["train"], "epochs": epochs}})
    events = stack.follow_events(job["id"])
    statuses = [data["status"] for _, kind, data in events if kind == "status"]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded", statuses
    assert "running" in statuses
    # however short the job (shorter than one heartbeat), its last progress event is 100 %
    progress = [data for _, kind, data in events if kind == "progress"]
    assert progress and progress[-1]["fraction"] == 1.0, progress
    assert any(kind == "metrics" for _, kind, _ in events)
    ids = [i for i, _, _ in events]
    assert ids == list(range(1, len(ids) + 1))  # the job's own events, API's and worker's

    done = stack.job(job["id"])
    assert done["status"] == "succeeded" and done["checkpoint"]
    assert done["progress"]["fraction"] == 1.0
    assert done["provenance"]["dataset_sha256"] and done["provenance"]["device"] == "cpu"
    assert_clean_curve(stack, job["id"], "train_loss", epochs)

    r = stack.client.post(
        f"/v1/jobs/{job['id']}/predict", json={"inputs": [[-2.0], [0.0], [2.0]], "mc_samples": 50}
    )
    assert r.status_code == 200, r.text
    out = r.json()
    epi, ale = np.array(out["epistemic_var"]).ravel(), np.array(out["aleatoric_var"]).ravel()
    total = np.array(out["total_var"]).ravel()
    np.testing.assert_allclose(total, epi + ale, rtol=1e-5)
    lo, hi = np.array(out["interval"]["lower"]).ravel(), np.array(out["interval"]["upper"]).ravel()
    assert (lo < np.array(out["mean"]).ravel()).all() and (hi > lo).all()

    default = stack.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[0.0]]}).json()
    assert default["mc_samples"] == 100 and default["epistemic_var"][0][0] > 0

    csv = stack.client.get(f"/v1/jobs/{job['id']}/metrics", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "name,step,value,time"
    ckpts = stack.client.get(f"/v1/jobs/{job['id']}/checkpoints").json()
    assert done["checkpoint"] in {c["id"] for c in ckpts}
    blob = stack.client.get(f"/v1/jobs/{job['id']}/checkpoints/{ckpts[-1]['id']}")
    assert blob.status_code == 200 and blob.headers["x-checkpoint-sha256"] == ckpts[-1]["sha256"]


@pytest.mark.slow  # trains to quality; the database under it is the test above's concern
@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_mc_dropout_sine_gap_uncertainty(stack: Stack) -> None:
    job = stack.post_job(SINE)
    done = stack.wait_status(job["id"], {"succeeded", "failed"}, timeout=600)
    assert done["status"] == "succeeded", done["error"]
    assert_clean_curve(stack, job["id"], "train_loss", 200)

    gap = np.linspace(-0.6, 0.6, 13).tolist()
    data = [-2.5, -2.0, -1.5, 1.5, 2.0, 2.5]
    r = stack.client.post(
        f"/v1/jobs/{job['id']}/predict",
        json={"inputs": [[x] for x in gap + data], "mc_samples": 200},
    )
    assert r.status_code == 200, r.text
    epi = np.array(r.json()["epistemic_var"]).ravel()
    assert epi[: len(gap)].mean() > 2 * epi[len(gap) :].mean()

    # aleatoric variance follows the generating noise sigma(x) = 0.05 + 0.1|x|
    near, far = [[-1.2], [1.2]], [[-2.8], [2.8]]
    r = stack.client.post(
        f"/v1/jobs/{job['id']}/predict", json={"inputs": near + far, "mc_samples": 200}
    )
    ale = np.array(r.json()["aleatoric_var"]).ravel()
    assert ale[2:].mean() > 1.5 * ale[:2].mean(), ale
    true_far = (0.05 + 0.1 * 2.8) ** 2
    assert 0.3 * true_far < ale[2:].mean() < 3 * true_far, ale


def test_capability_conflict(stack: Stack) -> None:
    job = stack.post_job(
        {"model": "mlp", "dataset": "moons", "params": {"hidden": [8]}, "train": {"epochs": 2}}
    )
    stack.wait_status(job["id"], {"succeeded"})
    r = stack.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[0.1, 0.2]]})
    assert r.status_code == 200
    probs = np.array(r.json()["probs"])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    bad = stack.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[0.1]]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "inputs[0]"
    nan = stack.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[0.1, 1e39]]})
    assert nan.status_code == 422
    huge = stack.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[3e38, -3e38]]})
    # finite float32 input: answered, or, when the prediction overflows, 422 naming it
    assert huge.status_code == 200 or huge.json()["errors"][0]["path"] == "inputs[0]"


def test_cancel_running_job(stack: Stack) -> None:
    job = stack.post_job({**SINE, "train": {"epochs": 100_000, "seed": 1}})
    wait_until(lambda: stack.job(job["id"])["progress"]["step"] >= 2, 60, "training to start")
    r = stack.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 202
    done = stack.wait_status(job["id"], {"cancelled"}, timeout=5)
    assert done["checkpoint"], "the last checkpoint is kept"
    assert stack.client.get(f"/v1/jobs/{job['id']}/checkpoints").json()


def test_kill_worker_resumes_from_checkpoint(stack: Stack) -> None:
    epochs = 120
    job = stack.post_job({**SINE, "train": {"epochs": epochs, "seed": 2, "keep_checkpoints": 100}})
    jid = job["id"]
    wait_until(
        lambda: len(stack.client.get(f"/v1/jobs/{jid}/checkpoints").json()) >= 5,
        60,
        "a few checkpoints",
    )
    before = stack.job(jid)["progress"]["step"]
    assert before < epochs, "the job finished before the kill; make it longer"
    stack.kill_worker("w1")
    stack.start_worker("w1")
    done = stack.wait_status(jid, {"succeeded", "failed"}, timeout=180)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    for name in ("train_loss", "val_loss"):
        assert_clean_curve(stack, jid, name, epochs)
    resumed = [c["step"] for c in stack.client.get(f"/v1/jobs/{jid}/checkpoints").json()]
    assert resumed == sorted(resumed) and len(set(resumed)) == len(resumed)


def test_sigterm_hands_the_job_back(stack: Stack) -> None:
    """A deploy: the worker checkpoints, hands the job back, and another finishes it."""
    epochs = 120
    job = stack.post_job({**SINE, "train": {"epochs": epochs, "seed": 3, "keep_checkpoints": 100}})
    jid = job["id"]
    wait_until(
        lambda: len(stack.client.get(f"/v1/jobs/{jid}/checkpoints").json()) >= 3,
        60,
        "a few checkpoints",
    )
    took = stack.stop_worker("w1")
    assert took < 20, f"the worker took {took:.1f}s to stop"
    handed = stack.job(jid)
    assert handed["status"] == "queued" and handed["attempts"] == 0
    assert handed["progress"]["step"] < epochs
    stack.start_worker("w1")
    done = stack.wait_status(jid, {"succeeded", "failed"}, timeout=180)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 1  # a hand-back is not a failed attempt
    assert_clean_curve(stack, jid, "train_loss", epochs)
    events = stack.follow_events(jid)
    assert any(kind == "status" and data.get("handed_back") for _, kind, data in events)
