"""The A3C worker loop, written once and run by every backend.

One update: pull the global parameters -> collect an n-step rollout on the worker's envs (one
batched forward pass per step, without gradient) -> re-evaluate the rollout in one batch with
gradient -> loss (eq. 1-3) -> gradients -> clip by global norm -> push to the shared optimizer ->
record what happened for the next report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from a3c import algo, normalize
from a3c.config import Config
from a3c.envs import EnvFn, make_env_batch, make_env_fn, worker_seeds
from a3c.models import State, make_model, reset_ended
from a3c.optim import GlobalParams, piecewise_linear, scheduled_lr


@dataclass
class WorkerReport:
    """What one worker did since its previous report; sums, so reports add up."""

    worker: int
    steps: int = 0
    updates: int = 0
    nonfinite_updates: int = 0
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    policy_loss: float = 0.0
    value_loss: float = 0.0
    entropy: float = 0.0
    grad_norm: float = 0.0
    update_lag: float = 0.0
    learning_rate: float = 0.0


class Worker:
    """One asynchronous actor-learner: its envs, a local copy of the model, its RNG."""

    def __init__(self, cfg: Config, index: int, store: GlobalParams, env_fn: EnvFn | None = None, incarnation: int = 0) -> None:
        self.cfg, self.index, self.store = cfg, index, store
        n_envs, self.n_steps = cfg.env.envs_per_worker, cfg.algo.n_steps
        # A restarted worker (incarnation > 0) draws new random streams, not a replay of the dead one's.
        seeds = worker_seeds(cfg.run.seed, index, n_envs + 1, incarnation)
        self.generator = torch.Generator().manual_seed(seeds[-1])
        self.envs = make_env_batch(env_fn or make_env_fn(cfg.env), n_envs, seeds[:-1])
        self.model = make_model(self.envs.observation_space, self.envs.action_space, cfg.model)
        self.head = self.model.policy_head
        # The rollout runs the actor alone in inference mode and the loss re-evaluates it in one
        # batch: one backward pass over T * B samples. (The kept-graph mode below lost its config
        # key, model.keep_rollout_graph; docs/architecture.md has the measurements.)
        self.graph_rollout = False
        self.params = self.model.ordered_parameters()
        # The local parameters are views into one flat tensor, so a pull is a single copy.
        self.flat = torch.empty(store.size, dtype=torch.float32)
        offset = 0
        for p in self.params:
            p.data = self.flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        space = self.envs.observation_space
        discrete_obs = isinstance(space, gym.spaces.Discrete)
        obs_shape = () if discrete_obs else space.shape
        obs_dtype = torch.int64 if discrete_obs else (torch.uint8 if space.dtype == np.uint8 else torch.float32)
        T, B = self.n_steps, n_envs
        self.obs_buf = torch.zeros((T + 1, B, *obs_shape), dtype=obs_dtype)  # s_0..s_T
        self.act_buf = torch.zeros((T, B, *self.head.action_shape), dtype=self.head.action_dtype)
        self.rew_np = np.zeros((T, B), dtype=np.float32)
        self.term_np = np.zeros((T, B), dtype=np.float32)
        self.end_np = np.zeros((T, B), dtype=np.float32)
        self.obs_buf[0].copy_(torch.from_numpy(self.envs.obs))
        self.state = self.model.initial_state(B)  # the LSTM state, carried across rollouts
        self._rollouts = 0
        self.report = WorkerReport(index)

    def update(self) -> None:
        """One A3C update: pull, rollout, loss, gradient, clip, push."""
        cfg, T, B = self.cfg, self.n_steps, len(self.envs)
        pulled_at = self.store.pull(self.flat)
        if hasattr(self.head, "resample"):
            self.head.resample(self.generator)  # gSDE: one exploration matrix per rollout
        norm = self._observation_normalizer()
        finals: list[tuple[int, int, np.ndarray]] = []  # (t, env, final obs) at time-limit truncations
        state0 = self.state
        end_t = torch.from_numpy(self.end_np)
        if self.graph_rollout:
            out, v_t, v_tp1, hiddens, state = self._rollout_with_graph(norm, state0, finals)
        else:
            state = self._rollout(norm, state0, finals)
            # One forward pass (with gradient) over s_0..s_T; the values of s_1..s_T are the bootstraps.
            out, values, hiddens = self.model.unroll(norm(self.obs_buf), state0, end_t)
            out, v_t, v_tp1 = out[: T * B], values[:T], values[1:].detach()
        self.state = None if state is None else (state[0].detach().clone(), state[1].detach().clone())
        with torch.no_grad():
            v_tp1 = v_tp1.clone()
            if finals:  # a time-limit truncation bootstraps from V(final observation)
                extra = torch.as_tensor(np.stack([o for _, _, o in finals])).to(self.obs_buf.dtype)
                ts = [t for t, _, _ in finals]
                idx = [i for _, i, _ in finals]
                before = None if not hiddens else tuple(torch.stack([hiddens[t][k][i] for t, i in zip(ts, idx, strict=True)]) for k in (0, 1))
                v_tp1[ts, idx] = self.model.value_after(norm(extra), before)
        r_t = torch.from_numpy(self.rew_np)
        if cfg.algo.reward_scale != 1.0:
            r_t = r_t * cfg.algo.reward_scale
        discount_t = cfg.algo.gamma * (1.0 - torch.from_numpy(self.term_np))
        adv_t = algo.advantages(r_t, discount_t, v_t.detach(), v_tp1, end_t, cfg.algo.gae_lambda)
        logp, entropy = self.head.logp_entropy(out, self.act_buf.view(T * B, *self.head.action_shape))
        global_steps = self.store.global_steps()
        ent_coef = piecewise_linear(cfg.algo.ent_coef, cfg.algo.ent_coef_schedule, global_steps)
        loss = algo.a3c_loss(logp, entropy, v_t.reshape(-1), adv_t.reshape(-1), ent_coef, cfg.algo.vf_coef)

        grads = torch.autograd.grad(loss.total, self.params)
        grad = torch.cat([g.reshape(-1) for g in grads])
        self.obs_buf[0].copy_(self.obs_buf[T])  # the next rollout starts where this one ended
        grad_norm = float(grad.norm())
        steps = T * B
        rep = self.report
        for ret, length in self.envs.take_finished():
            rep.episode_returns.append(ret)
            rep.episode_lengths.append(length)
        pl, vl, ent = torch.stack([loss.policy_loss, loss.value_loss, -loss.entropy_loss]).detach().tolist()
        if not (math.isfinite(grad_norm) and math.isfinite(pl) and math.isfinite(vl)):
            self.store.count_skipped(self.index, steps)
            rep.steps += steps
            rep.nonfinite_updates += 1
            return
        if cfg.algo.max_grad_norm is not None and grad_norm > cfg.algo.max_grad_norm:
            grad.mul_(cfg.algo.max_grad_norm / (grad_norm + 1e-6))
        lr = scheduled_lr(cfg.optim.learning_rate, cfg.optim.lr_schedule, global_steps, cfg.run.total_steps)
        critic_base = cfg.optim.critic_learning_rate
        critic_lr = lr if critic_base is None else scheduled_lr(critic_base, cfg.optim.lr_schedule, global_steps, cfg.run.total_steps)
        lag = self.store.push(grad, lr, critic_lr, self.index, steps, pulled_at)
        # Counted once the store has counted them: a Ctrl-C before that leaves no steps in the
        # report that the checkpoint (which counts the store's) would not have.
        rep.steps += steps
        rep.updates += 1
        rep.policy_loss += pl
        rep.value_loss += vl
        rep.entropy += ent
        rep.grad_norm += grad_norm
        rep.update_lag += lag
        rep.learning_rate += lr

    def _step_envs(self, t: int, actions: torch.Tensor, finals: list[tuple[int, int, np.ndarray]]) -> None:
        self.act_buf[t] = actions
        obs, reward, terminated, truncated, final_obs = self.envs.step(self.head.to_env(actions))
        self.rew_np[t] = reward
        self.term_np[t] = terminated
        self.end_np[t] = terminated | truncated
        finals.extend((t, i, o) for i, o in final_obs)
        self.obs_buf[t + 1].copy_(torch.from_numpy(obs))

    def _rollout(self, norm: Callable[[torch.Tensor], torch.Tensor], state: State, finals: list[tuple[int, int, np.ndarray]]) -> State:
        """n steps of the actor alone without gradient (the learning pass re-evaluates them)."""
        with torch.inference_mode():
            for t in range(self.n_steps):
                out, state = self.model.act(norm(self.obs_buf[t]), state)
                self._step_envs(t, self.head.sample(out, self.generator), finals)
                state = reset_ended(state, torch.from_numpy(self.end_np[t]))
        return state

    def _rollout_with_graph(self, norm: Callable[[torch.Tensor], torch.Tensor], state: State, finals: list[tuple[int, int, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[int, State], State]:
        """n steps of actor and critic with gradient, kept for the loss: the learning pass needs no
        second forward (the parameters do not change during a rollout, so the graph is the same).
        Returns policy outputs `[T * B, ...]`, V(s_0..s_T-1) with gradient, V(s_1..s_T) without,
        the core's state after each step, and the state after the rollout."""
        outs, values, hiddens = [], [], {}
        for t in range(self.n_steps):
            out, v, state = self.model(norm(self.obs_buf[t]), state)
            outs.append(out)
            values.append(v)
            if state is not None:
                hiddens[t] = state
            with torch.no_grad():
                actions = self.head.sample(out, self.generator)
            self._step_envs(t, actions, finals)
            state = reset_ended(state, torch.from_numpy(self.end_np[t]))
        v_t = torch.stack(values)
        with torch.no_grad():
            _, v_last, _ = self.model(norm(self.obs_buf[self.n_steps]), state)
            v_tp1 = torch.cat([v_t[1:].detach(), v_last.unsqueeze(0)])
        return torch.cat(outs), v_t, v_tp1, hiddens, state

    def _observation_normalizer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Add the last rollout's observations to this worker's statistics and snapshot the global
        mean and std for this update (identity without normalisation)."""
        stats = self.store.obs_stats
        if stats is None:
            return lambda obs: obs
        # Before the first rollout only s_0 is new; after it, s_1..s_T of the previous rollout are.
        normalize.add(stats[self.index], self.obs_buf[1:] if self._rollouts else self.obs_buf[:1])
        self._rollouts += 1
        mean, std = normalize.mean_std(stats)
        return lambda obs: normalize.normalize(obs, mean, std)

    def take_report(self) -> WorkerReport:
        rep, self.report = self.report, WorkerReport(self.index)
        return rep

    def close(self) -> None:
        self.envs.close()
