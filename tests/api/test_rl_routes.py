"""dqn over HTTP, trained in process: act (actions are the argmax of q_values; a wrong
observation shape is a 422 naming observations), seeded rollouts with bounded episodes,
episode.gif, the 409 for a model that cannot act, and RL jobs counted in environment steps
(train.epochs refused, train.steps defaulted)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support.jobs import trained

TINY = {
    "hidden": [8], "buffer_size": 64, "learning_starts": 16, "train_freq": 4,
    "target_update": 16, "eval_every": 48, "eval_episodes": 1,
}  # fmt: skip


def dqn_job(client: TestClient, dataset: str = "cartpole") -> str:
    spec = {
        "model": "dqn",
        "dataset": dataset,
        "params": TINY,
        "train": {"steps": 48, "batch_size": 8},
    }
    return trained(client, spec)


def test_act_rollout_and_episode_gif(client: TestClient) -> None:
    jid = dqn_job(client)
    obs = [[0.0, 0.1, 0.02, -0.1], [0.1, -0.2, -0.05, 0.3]]
    r = client.post(f"/v1/jobs/{jid}/act", json={"observations": obs})
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["actions"]) == 2 and len(out["q_values"][0]) == 2
    assert out["actions"] == [max(range(2), key=q.__getitem__) for q in out["q_values"]]
    assert out["checkpoint"] and out["job_id"] == jid

    r = client.post(f"/v1/jobs/{jid}/act", json={"observations": [[0.0, 0.1, 0.2]]})
    assert r.status_code == 422 and r.json()["errors"][0]["path"].startswith("observations")

    too_many = [[0.0, 0.0, 0.0, 0.0]] * 10_001  # the default DEEPZOO_MAX_INPUTS + 1
    r = client.post(f"/v1/jobs/{jid}/act", json={"observations": too_many})
    assert r.status_code == 413, r.text

    url = f"/v1/jobs/{jid}/rollout"
    a = client.post(url, json={"episodes": 2, "seed": 5})
    assert a.status_code == 200, a.text
    body = a.json()
    assert len(body["returns"]) == len(body["lengths"]) == 2
    assert body["returns"] == [float(n) for n in body["lengths"]]  # CartPole: +1 a step
    assert client.post(url, json={"episodes": 2, "seed": 5}).json() == body
    r = client.post(url, json={"episodes": 41})  # 41 × 500 steps > 20,000
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "episodes"

    gif = client.get(f"/v1/jobs/{jid}/episode.gif", params={"seed": 1, "fps": 20})
    assert gif.status_code == 200, gif.text
    assert gif.headers["content-type"] == "image/gif" and gif.content[:6] == b"GIF89a"


def test_minatar_frames_act_over_http(client: TestClient) -> None:
    jid = dqn_job(client, "minatar_breakout")
    frame = [[[0.0] * 4 for _ in range(10)] for _ in range(10)]
    r = client.post(f"/v1/jobs/{jid}/act", json={"observations": [frame]})
    assert r.status_code == 200 and len(r.json()["q_values"][0]) == 3, r.text
    gif = client.get(f"/v1/jobs/{jid}/episode.gif")
    assert gif.status_code == 200 and gif.content[:6] == b"GIF89a"


def test_rl_jobs_count_environment_steps(client: TestClient) -> None:
    spec = {"model": "dqn", "dataset": "cartpole", "train": {"epochs": 3}}
    r = client.post("/v1/jobs", json=spec)
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "train.epochs", r.text
    r = client.post("/v1/jobs", json={"model": "dqn", "dataset": "cartpole"})
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["train"]["steps"] == 50_000
    assert r.json()["spec"]["train"]["epochs"] is None
    assert client.get("/v1/models/dqn").json()["default_steps"] == 50_000


def test_a_model_that_cannot_act_is_a_409(client: TestClient) -> None:
    jid = trained(
        client,
        {"model": "mlp", "dataset": "moons", "params": {"hidden": [4]}, "train": {"epochs": 1}},
    )
    r = client.post(f"/v1/jobs/{jid}/act", json={"observations": [[0.0, 0.0]]})
    assert r.status_code == 409 and "act" in r.text
    assert client.post(f"/v1/jobs/{jid}/rollout", json={}).status_code == 409
    assert client.get(f"/v1/jobs/{jid}/episode.gif").status_code == 409
