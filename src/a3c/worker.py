"""The A3C worker loop, written once and run by every backend.

One update: pull the global parameters -> collect an n-step rollout on the worker's envs (one
batched forward pass per step, without gradient) -> re-evaluate the rollout in one batch with
gradient -> loss (eq. 1-3) -> gradients -> clip by global norm -> push to the store -> record what
happened for the next report. The worker knows nothing of schedules or of where the parameters
live: it talks to a `ParameterStore` (a3c/store.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from a3c import algo
from a3c.algo import LossTerms
from a3c.config import Config
from a3c.envs import EnvFn, make_env_batch, make_env_fn, worker_seeds
from a3c.heads import GaussianHead
from a3c.metrics import LOSS_COLUMNS, WorkerReport
from a3c.models import State, make_model, reset_ended
from a3c.normalize import Normalizer, identity
from a3c.store import ParameterStore, Pulled

Finals = list[tuple[int, int, np.ndarray]]  # (t, env, final observation) at time-limit truncations


class Worker:
    """One asynchronous actor-learner: its envs, a local copy of the model, its RNG."""

    def __init__(
        self,
        cfg: Config,
        index: int,
        store: ParameterStore,
        env_fn: EnvFn | None = None,
        incarnation: int = 0,
    ) -> None:
        self.cfg, self.index, self.store = cfg, index, store
        n_envs, self.n_steps = cfg.env.envs_per_worker, cfg.algo.n_steps
        # A restarted worker (incarnation > 0) draws new random streams, not a replay of the dead
        # one's.
        seeds = worker_seeds(cfg.run.seed, index, n_envs + 1, incarnation)
        self.generator = torch.Generator().manual_seed(seeds[-1])
        self.envs = make_env_batch(
            env_fn or make_env_fn(cfg.env),
            n_envs,
            seeds[:-1],
            f"worker {index}",
            cfg.env.action_masks,
        )
        self.model = make_model(self.envs.observation_space, self.envs.action_space, cfg.model)
        self.head = self.model.policy_head
        self.params = self.model.ordered_parameters()
        # The local parameters are views into one flat tensor, so a pull is a single copy.
        self.flat = torch.empty(store.size, dtype=torch.float32)
        offset = 0
        for p in self.params:
            p.data = self.flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        layout = self.model.layout  # Discrete: indices; Box: as it comes; anything else packed
        T, B = self.n_steps, n_envs
        self.obs_buf = torch.zeros((T + 1, B, *layout.shape), dtype=layout.dtype)  # s_0..s_T
        # Action masks: the valid actions at s_t, as the env gave them (a view of the envs' array).
        self.mask_now = None if self.envs.masks is None else torch.from_numpy(self.envs.masks)
        self.mask_buf = (
            None
            if self.mask_now is None
            else torch.zeros((T, B, self.mask_now.shape[1]), dtype=torch.bool)
        )
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
        T, B = self.n_steps, len(self.envs)
        pulled = self.store.pull(self.flat)
        if isinstance(self.head, GaussianHead):
            # gSDE: one exploration matrix per rollout (else a no-op)
            self.head.resample(self.generator)
        norm = self._normalizer()
        finals: Finals = []
        state0 = self.state
        state = self._rollout(norm, state0, finals)
        self.state = (
            None if state is None else (state[0].detach().clone(), state[1].detach().clone())
        )
        loss = self._loss(norm, state0, finals, pulled)
        grads = torch.autograd.grad(loss.total, self.params)
        grad = torch.cat([g.reshape(-1) for g in grads])
        self.obs_buf[0].copy_(self.obs_buf[T])  # the next rollout starts where this one ended
        grad_norm = float(grad.norm())
        rep, steps = self.report, T * B
        for ret, length in self.envs.take_finished():
            rep.episode_returns.append(ret)
            rep.episode_lengths.append(length)
        rep.nonfinite_steps += self.envs.take_nonfinite()
        terms = torch.stack(list(loss[1:])).detach().tolist()  # LossTerms without the total
        if not (math.isfinite(grad_norm) and all(math.isfinite(x) for x in terms)):
            self.store.push(self.index, steps, pulled, None)
            rep.steps += steps
            rep.nonfinite_updates += 1
            return
        if self.cfg.algo.max_grad_norm is not None and grad_norm > self.cfg.algo.max_grad_norm:
            grad.mul_(self.cfg.algo.max_grad_norm / (grad_norm + 1e-6))
        pushed = self.store.push(self.index, steps, pulled, grad)
        # Counted once the store has counted them: a Ctrl-C before that leaves no steps in the
        # report that the checkpoint (which counts the store's) would not have.
        rep.steps += steps
        rep.updates += 1
        for name, value in zip(LOSS_COLUMNS, terms, strict=True):
            rep.add(name, value)
        rep.add("grad_norm", grad_norm)
        rep.add("update_lag", pushed.lag)
        rep.add("learning_rate", pushed.learning_rate)

    def _loss(
        self, norm: Normalizer | None, state0: State, finals: Finals, pulled: Pulled
    ) -> LossTerms:
        """The loss of the rollout in the buffers: one forward pass with gradient over s_0..s_T
        (the values of s_1..s_T are the bootstraps), advantages (eq. 1), loss (eq. 2 and 3)."""
        cfg, T, B = self.cfg, self.n_steps, len(self.envs)
        prepare: Callable[[torch.Tensor], torch.Tensor] = norm or identity
        end_t = torch.from_numpy(self.end_np)
        out, values, hiddens = self.model.unroll(prepare(self.obs_buf), state0, end_t)
        out, v_t = out[: T * B], values[:T]
        with torch.no_grad():
            v_tp1 = values[1:].detach().clone()
            if finals:  # a time-limit truncation bootstraps from V(final observation)
                extra = torch.as_tensor(np.stack([o for _, _, o in finals])).to(self.obs_buf.dtype)
                ts = [t for t, _, _ in finals]
                idx = [i for _, i, _ in finals]
                before = None
                if hiddens:  # the core's state right before each truncated episode's reset
                    h0 = torch.stack([hiddens[t][0][i] for t, i in zip(ts, idx, strict=True)])
                    c0 = torch.stack([hiddens[t][1][i] for t, i in zip(ts, idx, strict=True)])
                    before = (h0, c0)
                v_tp1[ts, idx] = self.model.value_after(prepare(extra), before)
        r_t = torch.from_numpy(self.rew_np)
        if cfg.algo.reward_scale != 1.0:
            r_t = r_t * cfg.algo.reward_scale
        discount_t = cfg.algo.gamma * (1.0 - torch.from_numpy(self.term_np))
        adv_t = algo.advantages(r_t, discount_t, v_t.detach(), v_tp1, end_t, cfg.algo.gae_lambda)
        if self.mask_buf is not None:
            out = self.head.apply_mask(out, self.mask_buf.view(T * B, -1))
        logp, entropy = self.head.logp_entropy(
            out, self.act_buf.view(T * B, *self.head.action_shape)
        )
        return algo.a3c_loss(
            logp, entropy, v_t.reshape(-1), adv_t.reshape(-1), pulled.ent_coef, cfg.algo.vf_coef
        )

    def _step_envs(self, t: int, actions: torch.Tensor, finals: Finals) -> None:
        # what the step plays (Atari's forced FIRE), not only what was drawn
        actions = self.envs.played(actions)
        self.act_buf[t] = actions
        obs, reward, terminated, truncated, final_obs = self.envs.step(self.head.to_env(actions))
        self.rew_np[t] = reward
        self.term_np[t] = terminated
        self.end_np[t] = terminated | truncated
        finals.extend((t, i, o) for i, o in final_obs)
        self.obs_buf[t + 1].copy_(torch.from_numpy(obs))

    def _rollout(self, norm: Normalizer | None, state: State, finals: Finals) -> State:
        """n steps of the actor alone without gradient (the learning pass re-evaluates them)."""
        prepare: Callable[[torch.Tensor], torch.Tensor] = norm or identity
        with torch.inference_mode():
            for t in range(self.n_steps):
                out, state = self.model.act(prepare(self.obs_buf[t]), state)
                if self.mask_buf is not None and self.mask_now is not None:
                    self.mask_buf[t].copy_(self.mask_now)
                    out = self.head.apply_mask(out, self.mask_buf[t])
                self._step_envs(t, self.head.sample(out, self.generator), finals)
                state = reset_ended(state, torch.from_numpy(self.end_np[t]))
        return state

    def _normalizer(self) -> Normalizer | None:
        """Add the last rollout's observations to this worker's statistics and snapshot the global
        mean and std for this update (None without normalisation)."""
        stats = self.store.obs_stats
        if stats is None:
            return None
        # Before the first rollout only s_0 is new; after it, s_1..s_T of the previous rollout are.
        stats.update(self.index, self.obs_buf[1:] if self._rollouts else self.obs_buf[:1])
        self._rollouts += 1
        return stats.snapshot()

    def take_report(self) -> WorkerReport:
        rep, self.report = self.report, WorkerReport(self.index)
        return rep

    def close(self) -> None:
        self.envs.close()
