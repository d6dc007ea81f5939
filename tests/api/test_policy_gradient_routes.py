"""reinforce and ddpg over HTTP, trained in process: act answers the greedy action with the
policy's probs (reinforce) or the bounded deterministic action (ddpg), a wrong observation
shape is a 422 naming observations, rollouts repeat by seed, and a pendulum swings in a GIF."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.support.jobs import trained


def job(client: TestClient, model: str, dataset: str, params: dict[str, Any]) -> str:
    spec = {
        "model": model,
        "dataset": dataset,
        "params": params,
        "train": {"steps": 40, "batch_size": 8},
    }
    return trained(client, spec)


def test_reinforce_acts_greedily_with_its_probabilities(client: TestClient) -> None:
    jid = job(
        client, "reinforce", "cartpole", {"hidden": [8], "eval_every": 40, "eval_episodes": 1}
    )
    obs = [[0.0, 0.1, 0.02, -0.1], [0.1, -0.2, -0.05, 0.3]]
    r = client.post(f"/v1/jobs/{jid}/act", json={"observations": obs})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out.get("q_values") is None
    assert [abs(sum(p) - 1) < 1e-6 for p in out["probs"]] == [True, True]
    assert out["actions"] == [max(range(2), key=p.__getitem__) for p in out["probs"]]
    r = client.post(f"/v1/jobs/{jid}/act", json={"observations": [[0.0, 0.1]]})
    assert r.status_code == 422 and r.json()["errors"][0]["path"].startswith("observations")
    url = f"/v1/jobs/{jid}/rollout"
    a = client.post(url, json={"episodes": 2, "seed": 3})
    assert a.status_code == 200, a.text
    assert client.post(url, json={"episodes": 2, "seed": 3}).json() == a.json()


def test_ddpg_acts_within_the_bounds(client: TestClient) -> None:
    params = {
        "actor_hidden": [8], "critic_hidden": [8], "buffer_size": 32, "learning_starts": 16,
        "eval_every": 40, "eval_episodes": 1,
    }  # fmt: skip
    jid = job(client, "ddpg", "pendulum", params)
    obs = [[1.0, 0.0, 0.0], [-1.0, 0.0, 8.0], [0.0, 1.0, -8.0]]
    r = client.post(f"/v1/jobs/{jid}/act", json={"observations": obs})
    assert r.status_code == 200, r.text
    actions = r.json()["actions"]
    assert len(actions) == 3 and all(len(a) == 1 and -2.0 <= a[0] <= 2.0 for a in actions)
    r = client.post(f"/v1/jobs/{jid}/act", json={"observations": [[1.0, 0.0, 0.0, 0.0]]})
    assert r.status_code == 422 and r.json()["errors"][0]["path"].startswith("observations")
    r = client.post(f"/v1/jobs/{jid}/rollout", json={"episodes": 1, "seed": 0})
    assert r.status_code == 200 and r.json()["lengths"] == [200], r.text
    gif = client.get(f"/v1/jobs/{jid}/episode.gif", params={"seed": 1, "fps": 20})
    assert gif.status_code == 200 and gif.content[:6] == b"GIF89a", gif.text
