"""``dqn``'s maths by hand: TD targets (terminal vs truncated, double DQN), Huber vs ½δ²
gradients, hard and soft target updates, the ε schedule; the toggles; seeded repeats."""

from __future__ import annotations

import pytest
import torch

from models.context import LocalContext
from models.data import load_data
from models.dqn import (
    DQN,
    DQNParams,
    build,
    dqn_loss,
    epsilon,
    fit,
    td_loss,
    td_target,
    update_target,
)

torch.set_num_threads(1)

TINY = {
    "hidden": [8], "buffer_size": 64, "learning_starts": 8, "train_freq": 1,
    "target_update": 16, "eval_every": 1000, "eval_episodes": 1,
}  # fmt: skip


def test_td_target_by_hand_terminal_vs_truncated() -> None:
    # three transitions; the second terminated, the third truncated (a time limit)
    reward = torch.tensor([1.0, 1.0, 1.0])
    terminated = torch.tensor([False, True, False])
    next_q = torch.tensor([[2.0, 5.0], [7.0, 3.0], [4.0, 6.0]])
    y = td_target(reward, terminated, next_q, 0.9)
    # r + γ max Q'(s'): 1 + 0.9·5; terminal: 1; truncated still bootstraps: 1 + 0.9·6
    torch.testing.assert_close(y, torch.tensor([5.5, 1.0, 6.4]))


def test_double_dqn_target_by_hand() -> None:
    reward, terminated = torch.tensor([0.0, 2.0]), torch.tensor([False, False])
    target_q = torch.tensor([[1.0, 10.0, 3.0], [4.0, 0.0, 8.0]])
    online_q = torch.tensor([[9.0, 0.0, 0.0], [0.0, 5.0, 1.0]])  # picks a' = 0, then 1
    y = td_target(reward, terminated, target_q, 0.5, next_q_online=online_q)
    # the online net chooses, the target net values: 0 + 0.5·1, 2 + 0.5·0
    torch.testing.assert_close(y, torch.tensor([0.5, 2.0]))
    plain = td_target(reward, terminated, target_q, 0.5)  # max over the target: 10 and 8
    torch.testing.assert_close(plain, torch.tensor([5.0, 6.0]))


def test_huber_and_half_squared_error_gradients_by_hand() -> None:
    y = torch.tensor([0.0, 0.0, 0.0])
    for kind, expected in (("mse", [0.5, -3.0, 0.1]), ("huber", [0.5, -1.0, 0.1])):
        q = torch.tensor([0.5, -3.0, 0.1], requires_grad=True)  # δ = q − y
        td_loss(q, y, kind).backward()
        # ½ mean δ²: δ/B; Huber: δ/B inside |δ| ≤ 1, sign(δ)/B beyond (the clipped gradient)
        assert q.grad is not None
        torch.testing.assert_close(q.grad, torch.tensor(expected) / 3)
    q = torch.tensor([0.5, -3.0])
    assert float(td_loss(q, torch.zeros(2), "huber")) == pytest.approx((0.125 + 2.5) / 2)
    assert float(td_loss(q, torch.zeros(2), "mse")) == pytest.approx((0.125 + 4.5) / 2)


def test_soft_update_formula_and_hard_copy() -> None:
    online, target = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    w, w_minus = online.weight.detach().clone(), target.weight.detach().clone()
    update_target(target, online, 0.25)
    torch.testing.assert_close(target.weight, 0.25 * w + 0.75 * w_minus)
    update_target(target, online, 1.0)
    assert torch.equal(target.weight, online.weight)


def test_epsilon_schedule_is_linear_then_flat() -> None:
    p = DQNParams(eps_start=1.0, eps_end=0.1, eps_fraction=0.5)
    assert [epsilon(s, 100, p) for s in (0, 25, 50, 90)] == pytest.approx([1.0, 0.55, 0.1, 0.1])


class HardUpdates(LocalContext):
    """Snapshots the target network at every logged step."""

    def __init__(self, module: DQN, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.module, self.targets, self.online = module, [], {}

    def progress(self, step: int, total: int) -> None:
        super().progress(step, total)
        assert self.module.target is not None
        self.targets.append((step, self.module.target.state_dict()["head.weight"].clone()))
        self.online[step] = self.module.q.head.weight.detach().clone()


def test_target_network_untouched_between_hard_updates_and_equal_after_one() -> None:
    data = load_data("cartpole")
    params = DQNParams(**TINY)
    torch.manual_seed(0)
    module = build(params, data.info)
    ctx = HardUpdates(module, steps=40, batch_size=4)
    w0 = module.q.head.weight.detach().clone()
    fit(module, data, params, ctx)
    for step, w in ctx.targets:
        if step < 16:
            assert torch.equal(w, w0), step  # no update before the first interval
    at16 = dict(ctx.targets)[16]
    assert not torch.equal(at16, w0)  # the online net learned from step 8 on
    assert torch.equal(at16, ctx.online[16])  # a copy of it at the update
    assert not torch.equal(ctx.online[31], ctx.online[16])  # which moved on alone
    between = [w for s, w in ctx.targets if 16 <= s < 32]
    assert all(torch.equal(w, at16) for w in between)
    # after the update at 32 the target equals what the online net was then; at the end
    # (40 < 48) it has not moved since
    assert torch.equal(dict(ctx.targets)[32], ctx.online[32])
    assert torch.equal(ctx.targets[-1][1], dict(ctx.targets)[32])


def test_without_target_network_targets_come_from_the_online_net() -> None:
    data = load_data("cartpole")
    params = DQNParams(**{**TINY, "target_network": False})
    module = build(params, data.info)
    assert module.target is None and all(k.startswith("q.") for k in module.state_dict())
    batch = {
        "obs": torch.randn(3, 4), "next_obs": torch.randn(3, 4),
        "action": torch.tensor([0, 1, 0]), "reward": torch.ones(3),
        "terminated": torch.tensor([False, False, True]),
    }  # fmt: skip
    loss, q_sa = dqn_loss(module, batch, params)
    with torch.no_grad():
        y = batch["reward"] + 0.99 * module.q(batch["next_obs"]).max(-1).values * torch.tensor(
            [1.0, 1.0, 0.0]
        )
    assert float(loss.detach()) == pytest.approx(float(td_loss(q_sa.detach(), y, "huber")))


def test_same_seed_same_returns_and_no_replay_learns_online() -> None:
    data = load_data("cartpole")

    def run(seed: int, **over: object) -> list[tuple[int, float]]:
        params = DQNParams(**{**TINY, **over})  # type: ignore[arg-type]
        torch.manual_seed(seed)
        module = build(params, data.info)
        ctx = LocalContext(steps=120, batch_size=4, seed=seed)
        fit(module, data, params, ctx)
        return ctx.metric("episode_return") + ctx.metric("td_loss")

    a = run(1)
    assert a == run(1) and a != run(2)
    online = run(1, replay=False)
    assert online != a and len(online) > 0


def test_conv_q_network_for_minatar_frames() -> None:
    info = load_data("minatar_breakout").info
    module = build(DQNParams(hidden=[8], conv_channels=2), info)
    q = module.q(torch.zeros(5, 10, 10, 4))
    assert q.shape == (5, 3) and module.q.image
    with pytest.raises(ValueError, match="discrete"):
        build(DQNParams(), load_data("pendulum").info)
