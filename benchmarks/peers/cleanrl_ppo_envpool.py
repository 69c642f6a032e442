"""CleanRL-style PPO on EnvPool's Pong (CleanRL's ppo_atari_envpool.py, condensed: its
hyperparameters and Nature CNN), run in its own venv (tools/peer_venvs.sh envpool) by
benchmarks/throughput_peers.py for `--seconds` of training. EnvPool's Pong-v5 with v5's sticky
actions (repeat_action_probability 0.25), no-op starts, frame skip 4, 84x84 grayscale, 4 frames,
end-of-life and reward clipping for training. Prints `{"points": [[t, agent_steps], ...], ...}`.

    /work/venvs/envpool/bin/python benchmarks/peers/cleanrl_ppo_envpool.py \
        --seconds 60 [--threads 0]
"""

import argparse
import json
import time

import envpool
import numpy as np
import torch
from torch import nn

NUM_ENVS, NUM_STEPS, LR, GAMMA, GAE_LAMBDA = 8, 128, 2.5e-4, 0.99, 0.95
MINIBATCHES, EPOCHS, CLIP, ENT, VF, MAX_GRAD = 4, 4, 0.1, 0.01, 0.5, 0.5


def layer(m: nn.Module, std: float = np.sqrt(2)) -> nn.Module:
    nn.init.orthogonal_(m.weight, std)
    nn.init.constant_(m.bias, 0.0)
    return m


class Agent(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            layer(nn.Conv2d(4, 32, 8, stride=4)),
            nn.ReLU(),
            layer(nn.Conv2d(32, 64, 4, stride=2)),
            nn.ReLU(),
            layer(nn.Conv2d(64, 64, 3, stride=1)),
            nn.ReLU(),
            nn.Flatten(),
            layer(nn.Linear(64 * 7 * 7, 512)),
            nn.ReLU(),
        )
        self.actor, self.critic = layer(nn.Linear(512, n), 0.01), layer(nn.Linear(512, 1), 1)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(self.net(x / 255.0))

    def act(self, x: torch.Tensor, action: torch.Tensor | None = None) -> tuple:
        h = self.net(x / 255.0)
        dist = torch.distributions.Categorical(logits=self.actor(h))
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action), dist.entropy(), self.critic(h)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    envs = envpool.make(
        "Pong-v5",
        env_type="gymnasium",
        num_envs=NUM_ENVS,
        seed=0,
        episodic_life=True,
        reward_clip=True,
        repeat_action_probability=0.25,
    )
    agent = Agent(envs.action_space.n)
    opt = torch.optim.Adam(agent.parameters(), lr=LR, eps=1e-5)
    obs_buf = torch.zeros((NUM_STEPS, NUM_ENVS, 4, 84, 84), dtype=torch.uint8)
    act_buf, logp_buf, rew_buf, done_buf, val_buf = (
        torch.zeros((NUM_STEPS, NUM_ENVS)) for _ in range(5)
    )
    obs, _ = envs.reset()
    obs, done = torch.as_tensor(obs), torch.zeros(NUM_ENVS)
    t0, steps, points = time.monotonic(), 0, []
    while time.monotonic() - t0 < args.seconds:
        for s in range(NUM_STEPS):
            obs_buf[s], done_buf[s] = obs, done
            with torch.no_grad():
                a, logp, _, v = agent.act(obs.float())
            act_buf[s], logp_buf[s], val_buf[s] = a, logp, v.flatten()
            o, r, term, trunc, _ = envs.step(a.numpy())
            rew_buf[s] = torch.as_tensor(r, dtype=torch.float32)
            obs, done = (
                torch.as_tensor(o),
                torch.as_tensor(np.logical_or(term, trunc), dtype=torch.float32),
            )
        steps += NUM_STEPS * NUM_ENVS
        with torch.no_grad():
            nxt = agent.value(obs.float()).flatten()
            adv, last = torch.zeros_like(rew_buf), torch.zeros(NUM_ENVS)
            for s in reversed(range(NUM_STEPS)):
                nv, nd = (nxt, done) if s == NUM_STEPS - 1 else (val_buf[s + 1], done_buf[s + 1])
                delta = rew_buf[s] + GAMMA * nv * (1 - nd) - val_buf[s]
                last = delta + GAMMA * GAE_LAMBDA * (1 - nd) * last
                adv[s] = last
            ret = adv + val_buf
        b_obs, b_act, b_logp = (
            obs_buf.reshape(-1, 4, 84, 84),
            act_buf.reshape(-1),
            logp_buf.reshape(-1),
        )
        b_adv, b_ret = adv.reshape(-1), ret.reshape(-1)
        n, mb = NUM_STEPS * NUM_ENVS, NUM_STEPS * NUM_ENVS // MINIBATCHES
        for _ in range(EPOCHS):
            idx = torch.randperm(n)
            for i in range(0, n, mb):
                j = idx[i : i + mb]
                _, logp, ent, v = agent.act(b_obs[j].float(), b_act[j].long())
                ratio = (logp - b_logp[j]).exp()
                a = (b_adv[j] - b_adv[j].mean()) / (b_adv[j].std() + 1e-8)
                pg = torch.max(-a * ratio, -a * ratio.clamp(1 - CLIP, 1 + CLIP)).mean()
                loss = pg - ENT * ent.mean() + VF * 0.5 * ((v.flatten() - b_ret[j]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), MAX_GRAD)
                opt.step()
        points.append((time.monotonic() - t0, steps))
    print(
        json.dumps(
            {
                "points": points,
                "steps": steps,
                "wall_s": time.monotonic() - t0,
                "torch_threads": torch.get_num_threads(),
                "envpool": envpool.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
