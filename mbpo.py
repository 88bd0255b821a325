# MBPO (Janner et al. 2019) as run in "Stealing That Free Lunch" (arXiv 2412.14312): sac.py plus a learned model and
# synthetic rollouts (Dyna), what `diff sac.py mbpo.py` shows; what the paper's code did not run is fenced in main.
import atexit
import contextlib
import copy
import errno
import glob
import importlib
import io
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Annotated, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from torch.utils.tensorboard import SummaryWriter

from utils import get_env_state, make_env, set_env_state
from utils.envs import TERMINATION_FNS, is_dmc, termination_fn


@dataclass
class Args:
    # the experiment: task, seed, budget
    exp_name: str = os.path.basename(__file__)[: -len(".py")]  # the name of this experiment (part of the run name)
    env: str = "dmc:walker-walk"  # a Gymnasium id (`Hopper-v5`) or a DeepMind Control task (`dmc:<domain>-<task>`)
    seed: int = 1  # seed of the experiment (python, numpy, torch, env)
    num_seeds: int = 1
    """independent runs in this one process, seeds --seed ... --seed + num-seeds - 1, each with its own envs, buffer,
    networks and run directory; their networks stacked on a leading seed axis, one kernel for all (a GPU's gain)"""
    total_timesteps: Optional[int] = None  # environment steps to train for (paper: 300k for Gym ids, 500k for dmc: ids, the default when unset)

    # the algorithm: SAC's hyperparameters (the paper's defaults), then Dyna's
    learning_starts: int = 10_000  # uniformly random actions before learning starts (paper: 10k)
    buffer_size: int = 1_000_000  # replay buffer capacity (paper: 1e6)
    gamma: float = 0.99  # discount factor (paper: 0.99)
    tau: float = 0.005  # target network soft-update rate (paper: 0.005)
    batch_size: int = 256  # minibatch size of each gradient update (paper: 256)
    policy_lr: float = 3e-4  # Adam learning rate of the actor (paper: 3e-4)
    q_lr: float = 3e-4  # Adam learning rate of the critics and the temperature (paper: 3e-4)
    hidden_dim: int = 256  # width of the two hidden layers of actor and critics (paper: 256)
    init_alpha: float = 1.0  # initial entropy temperature (paper: 1.0)
    target_entropy_scale: float = 0.5  # target entropy = -scale * |A| (paper: 0.5)
    replay_ratio: int = 20  # gradient updates per environment step (paper: 20)
    layer_norm: bool = False  # LayerNorm after each critic hidden layer, before the activation (paper's mitigation; off by default)
    reset_interval: int = 0  # every this many env steps re-initialize actor, critics, targets, temperature and optimizers (paper: 128k; 0 = off)

    # Dyna (MBPO) specific arguments
    synthetic_rollouts: bool = True  # train SAC on model rollouts (off: the model is still trained and its error logged, SAC sees real data only)
    real_ratio: float = 0.05  # fraction of each SAC minibatch drawn from real transitions, the rest synthetic (paper: 0.05)
    ensemble_size: int = 7  # members of the probabilistic dynamics ensemble (paper: 7)
    num_elites: int = 5  # members with the lowest holdout loss used for rollouts (paper: 5)
    model_hidden_dim: int = 200  # width of the model's 4 hidden SiLU layers (paper: 200)
    model_lr: float = 3e-4  # Adam learning rate of the model (paper's code: 3e-4)
    model_batch_size: int = 256  # model minibatch size (paper: 256)
    model_train_freq: int = 250  # retrain the model every this many env steps (paper: 250)
    model_train_steps: int = 5000  # gradient steps per retrain (paper's code: a fixed 5000); with --model-early-stopping, the most it may take
    model_train_chunks: int = 25  # the paper's code takes a retrain's steps in this many chunks, each on a fresh holdout split (paper's code: 25)
    model_holdout_ratio: float = 0.2  # fraction of the real buffer held out to rank the elites (paper: 0.2)
    rollouts_per_step: int = 400  # model rollouts started from real states every env step (paper: 400)
    rollout_length: int = 1  # steps per model rollout (paper: 1); see --rollout-schedule
    rollout_schedule: Optional[str] = None  # MBPO's "a,b,min,max": length from min at epoch a to max at epoch b, linearly (epoch = 1000 env steps)
    synthetic_buffer_size: int = 1_000_000  # capacity of the FIFO buffer of synthetic transitions (paper: 1e6)

    # beyond the paper: what its code did not run, each off by default (main's "Beyond the paper" section)
    model_bootstrap: bool = False  # official MBPO's model trainer: one split (holdout <= 5000), a bootstrap per member, epochs
    model_early_stopping: bool = False  # official MBPO's rule (implies --model-bootstrap): stop after 5 epochs without 1 % holdout gain
    learned_logvar_bounds: bool = False  # official MBPO's learned log-variance bounds with their 0.01 penalty (paper's code: fixed at [-10, 0.5])
    normalize_targets: bool = False  # ("Fixing That Free Lunch") model targets scaled to zero mean, unit std per dimension
    predict_next_state: bool = False  # ("Fixing That Free Lunch") the model predicts s' itself instead of s' - s

    # the run's harness, not the algorithm: evaluation, logging, checkpoints, video, tracking, device, compile
    eval_interval: int = 5000  # evaluate at step 0 and every this many env steps (paper: 5000)
    eval_episodes: int = 10  # deterministic evaluation episodes per evaluation (paper: 10)
    log_interval: int = 100  # log training losses every this many env steps
    log_dir: str = "runs"
    """TensorBoard logs go to {log_dir}/{run_name}, one run directory per seed ("{seed}" in it: that seed's number)"""
    checkpoint_interval: int = 2_500  # save a checkpoint every this many env steps (0 = only on SIGTERM/SIGINT)
    resume: Optional[str] = None  # continue the run saved in this run directory (or checkpoint file) exactly as if it had never stopped
    capture_video: bool = False
    """record a deterministic episode at step 0, every --video-interval-th evaluation and the end: mp4s and TensorBoard videos"""
    video_interval: int = 10  # with --capture-video, record every this-many-th evaluation (10: every 50k env steps at --eval-interval 5000)
    track: bool = False  # also log to Weights & Biases: the scalars, the hyperparameters and the videos (as CleanRL's --track)
    wandb_project: str = "freelunch"  # the Weights & Biases project
    wandb_entity: Optional[str] = None  # the Weights & Biases entity (team or user; unset: your default one)
    wandb_group: Optional[str] = None  # the Weights & Biases group (the sweep sets one per experiment and task)
    cuda: bool = True  # use CUDA when it is available
    torch_deterministic: bool = True  # `torch.use_deterministic_algorithms`: deterministic kernels wherever torch has one (an op without one warns)
    torch_threads: int = 1
    """CPU threads per run for torch (1 suits these small networks and parallel runs; more threads than free cores slow every run)"""
    compile: Annotated[bool, tyro.conf.arg(help_behavior_hint="(default: on for a CPU run of 100k learning steps or more, else off)")] = False
    """torch.compile the gradient update (MBPO: and the model's step and the rollout's step), each as one graph (fused kernels);
    on a CPU it pays for itself within the first few thousand learning steps (benchmark/results/compile_cpu.md)"""
    cuda_graph: bool = True  # on a GPU, replay the gradient update (MBPO: and the model's step and the rollout's step) as one captured CUDA graph


class VectorizedLinear(nn.Module):
    """`num_members` linear layers as one batched matmul: (M, B, in) -> (M, B, out), or (S, B, in) -> (M, B, out), each
    of S seeds' input to its M / S members (seed-major). The paper's init (`default_init`): orthogonal (gain sqrt(2)), 0."""

    def __init__(self, in_features: int, out_features: int, num_members: int, gain: float = math.sqrt(2)):
        super().__init__()
        weights = [nn.init.orthogonal_(torch.empty(out_features, in_features), gain).T for _ in range(num_members)]
        self.weight = nn.Parameter(torch.stack(weights))
        self.bias = nn.Parameter(torch.zeros(num_members, 1, out_features))

    def forward(self, x):
        members, seeds = self.weight.shape[0], x.shape[0]
        if seeds != members:  # a seed's input shared by its members (the twin critics, the model's ensemble)
            x = x.unsqueeze(1).expand(seeds, members // seeds, *x.shape[1:]).reshape(members, *x.shape[1:])
        return torch.baddbmm(self.bias, x, self.weight)  # bias added inside the batched matmul


class VectorizedLayerNorm(nn.Module):
    """LayerNorm over features with a separate gain and bias per member; epsilon 1e-6 by default, as flax's LayerNorm
    in the paper's code (networks/common.py:43), not torch's 1e-5."""

    def __init__(self, features: int, num_members: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_members, 1, features))
        self.bias = nn.Parameter(torch.zeros(num_members, 1, features))

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight + self.bias


class SoftQNetwork(nn.Module):
    """The twin critics Q1, Q2 of every seed as one module: every layer holds them all, so the math below is written once."""

    def __init__(self, env, hidden_dim: int, layer_norm: bool, num_seeds: int, num_critics: int = 2):
        super().__init__()
        obs_dim, act_dim = np.prod(env.observation_space.shape), np.prod(env.action_space.shape)
        self.num_seeds, members = num_seeds, num_seeds * num_critics
        self.fc1 = VectorizedLinear(obs_dim + act_dim, hidden_dim, members)
        self.fc2 = VectorizedLinear(hidden_dim, hidden_dim, members)
        self.fc3 = VectorizedLinear(hidden_dim, 1, members)
        norm = (lambda: VectorizedLayerNorm(hidden_dim, members)) if layer_norm else nn.Identity
        self.norm1, self.norm2 = norm(), norm()  # paper: Dense -> LayerNorm -> ReLU

    def forward(self, x, a):
        x = torch.cat([x, a], -1)  # (seeds, batch, obs + act)
        x = F.relu(self.norm1(self.fc1(x)))
        x = F.relu(self.norm2(self.fc2(x)))
        return self.fc3(x).view(self.num_seeds, -1, x.shape[1])  # (seeds, num_critics, batch)


LOG_STD_MAX = 2
LOG_STD_MIN = -10  # the paper's code (jaxrl policies.py)


class Actor(nn.Module):
    """One policy per seed, (seeds, batch, obs) -> (seeds, batch, act)."""

    def __init__(self, env, hidden_dim: int, num_seeds: int):
        super().__init__()
        obs_dim, act_dim = np.prod(env.observation_space.shape), np.prod(env.action_space.shape)
        # the paper's code: orthogonal weights (gain sqrt(2); 1 for the log-std head), zero biases. Actions need no
        # rescaling: make_env gives every env the action space [-1, 1], tanh's range.
        self.fc1 = VectorizedLinear(obs_dim, hidden_dim, num_seeds)
        self.fc2 = VectorizedLinear(hidden_dim, hidden_dim, num_seeds)
        self.fc_mean = VectorizedLinear(hidden_dim, act_dim, num_seeds)
        self.fc_logstd = VectorizedLinear(hidden_dim, act_dim, num_seeds, gain=1.0)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        mean = self.fc_mean(x)
        log_std = torch.tanh(self.fc_logstd(x))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)  # from SpinUp / Denis Yarats
        return mean, log_std

    def get_action(self, x):
        mean, log_std = self(x)
        std = log_std.exp()
        normal = torch.distributions.Normal(mean, std)
        x_t = normal.rsample()  # reparameterization trick (mean + std * N(0,1))
        action = torch.tanh(x_t)
        # tanh's exact log-det, log(1 - tanh(x)^2) = 2 (log 2 - x - softplus(-2x)), as the paper's code (TFP's Tanh)
        log_prob = (normal.log_prob(x_t) - 2 * (math.log(2) - x_t - F.softplus(-2 * x_t))).sum(-1)
        return action, log_prob, torch.tanh(mean)


class EnsembleDynamicsModel(nn.Module):
    """MBPO's probabilistic ensemble, one per seed: every member maps normalized (s, a) to a Gaussian (mean,
    log-variance) over the target [s' - s (or s'), r], all members of all seeds in one batched matmul per layer."""

    WEIGHT_DECAYS = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)  # official MBPO and the paper's code, per layer (4 hidden + output)

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, ensemble_size: int, learned_logvar_bounds: bool, num_seeds: int):
        super().__init__()
        in_dim, out_dim = obs_dim + act_dim, obs_dim + 1
        self.num_seeds, self.ensemble_size = num_seeds, ensemble_size
        dims = [in_dim, hidden_dim, hidden_dim, hidden_dim, hidden_dim]
        self.layers = nn.ModuleList(VectorizedLinear(i, o, num_seeds * ensemble_size) for i, o in zip(dims[:-1], dims[1:]))
        self.head = VectorizedLinear(hidden_dim, 2 * out_dim, num_seeds * ensemble_size)
        for layer in (*self.layers, self.head):  # the paper's code: flax's lecun_normal (truncated at 2 std), zero biases
            # members in the fan-in: STFL's kernel is (members, in, out) and JAX counts the member axis as receptive field
            fan_in = ensemble_size * layer.weight.shape[-2]  # --ensemble-size members, never seeds (STFL vmaps seeds apart)
            std = (1 / fan_in) ** 0.5 / 0.87962566103423978  # jax's correction: the std after truncation is 1/sqrt(fan_in)
            nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
        # soft bounds of the log-variance at [-10, 0.5]: fixed in the paper's code, learned in official MBPO
        self.max_logvar = nn.Parameter(torch.full((num_seeds, 1, 1, out_dim), 0.5), requires_grad=learned_logvar_bounds)
        self.min_logvar = nn.Parameter(torch.full((num_seeds, 1, 1, out_dim), -10.0), requires_grad=learned_logvar_bounds)
        # normalizers, refitted on each seed's real buffer at every retrain (targets stay raw unless --normalize-targets)
        self.register_buffer("input_mean", torch.zeros(num_seeds, 1, 1, in_dim))
        self.register_buffer("input_std", torch.ones(num_seeds, 1, 1, in_dim))
        self.register_buffer("target_mean", torch.zeros(num_seeds, 1, 1, out_dim))
        self.register_buffer("target_std", torch.ones(num_seeds, 1, 1, out_dim))

    def forward(self, obs, actions):
        """(1 or members, B, ...) -> each member's mean and log-variance (members, B, out), in normalized target units."""
        x = (torch.cat([obs, actions], -1) - self.input_mean) / self.input_std
        x = x.expand(-1, self.ensemble_size, -1, -1).flatten(0, 1)  # (seeds * members, B, in), seed-major
        for layer in self.layers:
            x = F.silu(layer(x))
        mean, logvar = self.head(x).unflatten(0, (self.num_seeds, self.ensemble_size)).chunk(2, dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def trained_parameters(self) -> dict:  # what Adam trains, and the L2 weight decay of each: MBPO's per layer on weights
        layers = [*self.layers, self.head]
        params = [x.weight for x in layers] + [x.bias for x in layers] + [p for p in (self.max_logvar, self.min_logvar) if p.requires_grad]
        return {"params": params, "weight_decay": [*self.WEIGHT_DECAYS, *[0.0] * (len(params) - len(self.WEIGHT_DECAYS))]}


def main(args: Args):
    # the harness (below); a retrain is long work (shown as it goes, stoppable, in the ETA); the time split from step 0
    run = Run(args, work={"model_training": (args.learning_starts, args.model_train_freq)}, split=("env", "model_training", "rollouts", "sac_updates"))
    env, device, seeds = run.envs[0], run.device, run.seeds
    obs_dim, act_dim = np.prod(env.observation_space.shape), np.prod(env.action_space.shape)

    # ALGO LOGIC: initialize agent here
    # each seed's weights (every weight has a leading seed axis) drawn from a seed of its own (seed + 20_000)
    actor, qf = init_per_seed(lambda num_seeds: (Actor(env, args.hidden_dim, num_seeds).to(device),
                                                 SoftQNetwork(env, args.hidden_dim, args.layer_norm, num_seeds).to(device)),
                              [seed + 20_000 for seed in seeds])
    qf_target = copy.deepcopy(qf)
    log_alpha = torch.full((len(seeds), 1), math.log(args.init_alpha), device=device, requires_grad=True)
    q_optimizer = Adam(qf.parameters(), lr=args.q_lr)
    actor_optimizer = Adam(actor.parameters(), lr=args.policy_lr)
    a_optimizer = Adam([log_alpha], lr=args.q_lr)
    target_entropy = -args.target_entropy_scale * act_dim
    rb = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device, len(seeds))

    def update(data):
        """One gradient update of the critics, the actor and the temperature on a minibatch, written for one seed: with
        --num-seeds a seed axis leads every tensor, each seed's loss its own (Adam's `minimize` steps each on its own)."""
        obs, actions, rewards, next_obs, terminations = data
        alpha = log_alpha.exp().detach()
        with torch.no_grad():
            next_state_actions, next_state_log_pi, _ = actor.get_action(next_obs)
            qf_next_target = qf_target(next_obs, next_state_actions).min(-2).values - alpha * next_state_log_pi
            next_q_value = rewards + (1 - terminations) * args.gamma * qf_next_target

        qf_values = qf(obs, actions)  # (critics, batch): Q1 and Q2
        qf_loss = F.mse_loss(qf_values, next_q_value.unsqueeze(-2).expand_as(qf_values), reduction="none").mean(-1).sum(-1)
        q_optimizer.minimize(qf_loss)  # qf1_loss + qf2_loss

        pi, log_pi, _ = actor.get_action(obs)
        actor_loss = (alpha * log_pi - qf(obs, pi).min(-2).values).mean(-1)
        actor_optimizer.minimize(actor_loss)  # the actor's gradients only: a third of the critic's FLOPs saved

        alpha_loss = (-log_alpha.exp() * (log_pi.detach() + target_entropy)).mean(-1)
        a_optimizer.minimize(alpha_loss)

        with torch.no_grad():  # the target networks' soft update (one fused op over all parameters)
            torch._foreach_lerp_(list(qf_target.parameters()), list(qf.parameters()), args.tau)
        return qf_values.detach(), qf_loss.detach(), actor_loss.detach(), alpha, alpha_loss.detach()

    update = run.accelerate(update)  # --compile: one graph; on a GPU, one CUDA graph launch instead of ~250 kernels

    agent = (actor, qf, qf_target, q_optimizer, actor_optimizer, a_optimizer, log_alpha)  # what the update changes
    checkpointed, guarded_networks = {"agent": agent, "rb": rb}, {"qf": qf, "actor": actor}  # a checkpoint's; the NaN guard's
    # the paper's resets return actor, critics, targets and temperature to these initial weights, with fresh optimizers
    initial_agent = copy.deepcopy(state_of(agent))

    policy = lambda x: torch.tanh(actor(x)[0])  # the deterministic policy, for videos
    # Dyna: the learned model, the synthetic buffer, and minibatches that mix real and synthetic transitions
    # each seed's model drawn as its single-seed run draws it, from a generator seeded with the seed itself
    (model,) = init_per_seed(lambda num_seeds: (EnsembleDynamicsModel(obs_dim, act_dim, args.model_hidden_dim, args.ensemble_size,
                                                                      args.learned_logvar_bounds, num_seeds).to(device),), seeds)
    model_optimizer = Adam(**model.trained_parameters(), lr=args.model_lr)
    elites = torch.arange(args.num_elites, device=device).repeat(len(seeds), 1)  # each seed's own (seeds, num_elites)
    synthetic_rb = SyntheticReplayBuffer(args.synthetic_buffer_size, obs_dim, act_dim, device, len(seeds))
    checkpointed.update(model=(model, model_optimizer), elites=elites, synthetic_rb=synthetic_rb)
    guarded_networks["model"] = model
    is_terminated, rollout_schedule = termination_fn(args.env), parse_rollout_schedule(args)
    if is_terminated is None:  # the env's own rule, for model rollouts (utils/envs.py)
        sys.exit(f"error: mbpo.py has no termination function for {args.env!r}; supported Gym envs: {', '.join(TERMINATION_FNS)} (and every dmc: task)")
    # as the paper's code: 256 - int(256 * 0.95) = 13 real rows
    real_batch_size = args.batch_size - int(args.batch_size * (1 - args.real_ratio)) if args.synthetic_rollouts else args.batch_size
    # the paper's code ranks the elites on 50,000 draws from the holdout, 5,000 on Humanoid (train_parallel.py:210-212)
    elite_draws = 5_000 if args.env.startswith("Humanoid-") else 50_000

    def sample_batch():  # a SAC minibatch: `real_batch_size` real transitions, the rest synthetic (MBPO's real ratio)
        if real_batch_size == args.batch_size:
            return rb.sample(args.batch_size)
        real, synthetic = rb.sample(real_batch_size), synthetic_rb.sample(args.batch_size - real_batch_size)
        return tuple(torch.cat(pair, 1) for pair in zip(real, synthetic))

    def rows(storage, idx):  # sampling: each seed's rows `idx` (seeds, ...) of a buffer's field or a tensor (seeds, n, ...)
        return storage[torch.arange(len(seeds), device=device).view(-1, *[1] * (idx.dim() - 1)), idx]

    def model_targets(obs, rewards, next_obs):  # what the model learns: the change of state s' - s, and the reward
        return torch.cat([next_obs - obs, rewards.unsqueeze(-1)], -1)

    def from_targets(obs, prediction):  # and back: the next state and the reward
        return obs + prediction[..., :-1], prediction[..., -1]

    def predict(obs, actions, sample: bool):
        """Every member's next observation and reward (members, B, ...) in env units: sampled (rollouts), or the mean."""
        mean, logvar = model(obs, actions)
        if sample:
            mean = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        return from_targets(obs, mean * model.target_std + model.target_mean)

    @run.accelerate
    def model_step(obs, actions, targets):  # one Adam step on the members' Gaussian NLL of a minibatch (1 or members, B, ...)
        mean, logvar = model(obs, actions)
        target = (targets - model.target_mean) / model.target_std
        loss = (((mean - target) ** 2) * torch.exp(-logvar) + logvar).mean((-2, -1)).sum(-1)
        if args.learned_logvar_bounds:  # official MBPO's bound penalty
            loss = loss + 0.01 * (model.max_logvar.sum((-3, -2, -1)) - model.min_logvar.sum((-3, -2, -1)))
        model_optimizer.minimize(loss)

    def holdout_losses(idx, targets):  # each member's MSE of its mean on real transitions `idx`, in its (normalized) target units
        with torch.no_grad():
            mean, _ = model(rows(rb.obs, idx).unsqueeze(-3), rows(rb.actions, idx).unsqueeze(-3))
        return ((mean - (rows(targets, idx).unsqueeze(-3) - model.target_mean) / model.target_std) ** 2).mean((-2, -1))

    def split_and_normalize(targets, max_holdout: float):
        """A random holdout split of each seed's real buffer (seeds, n), and its normalizers refitted on the training part."""
        perm = torch.stack([torch.randperm(rb.size, device=device) for _ in seeds])
        num_holdout = int(max(1, min(int(rb.size * args.model_holdout_ratio), max_holdout)))
        holdout, train = perm[:, :num_holdout], perm[:, num_holdout:]
        inputs = torch.cat([rows(rb.obs, train), rows(rb.actions, train)], -1)
        model.input_mean.copy_(inputs.mean(-2, keepdim=True).unsqueeze(-3))
        model.input_std.copy_(inputs.std(-2, correction=0, keepdim=True).unsqueeze(-3) + 1e-6)  # the paper's code: population std + 1e-6
        if args.normalize_targets:  # below
            normalize_targets(rows(targets, train))
        return holdout, train

    def train_model():
        """Fit the ensemble on the real buffer, rank its elites by holdout MSE, measure the model. As the paper's code
        (mbpo_learner.py `train_mbpo`, model_train_chunks calls per retrain): each chunk draws a fresh split, refits the
        normalizers, takes i.i.d. minibatches from its training part, one for all members (`tile_and_shuffle` doesn't shuffle)."""
        stats = recent_model_errors() if model_optimizer.step_count.item() > 0 else {}  # before it trains on them: below
        targets = model_targets(rb.obs[:, : rb.size], rb.rewards[:, : rb.size], rb.next_obs[:, : rb.size])
        if args.model_bootstrap or args.model_early_stopping:  # official MBPO's trainer: below
            holdout, train, batch, epochs = train_model_as_mbpo(targets)
        else:
            chunks, taken = min(args.model_train_chunks, args.model_train_steps), 0
            for chunk in range(chunks):
                holdout, train = split_and_normalize(targets, max_holdout=math.inf)
                steps = args.model_train_steps // chunks + (chunk < args.model_train_steps % chunks)
                draws = torch.randint(0, train.shape[1], (steps, len(seeds), args.model_batch_size), device=device)
                for batch in rows(train, draws.transpose(0, 1)).transpose(0, 1):  # (seeds, B) each
                    run.status(f"retraining the model: {taken}/{args.model_train_steps} gradient steps")  # and a safe point to stop
                    model_step(rows(rb.obs, batch).unsqueeze(-3), rows(rb.actions, batch).unsqueeze(-3), rows(targets, batch).unsqueeze(-3))
                    taken += 1
            epochs = args.model_train_steps * args.model_batch_size / train.shape[1]
        if holdout.shape[1] > elite_draws:  # the paper's code ranks on draws from the holdout; all of a smaller one here
            holdout = rows(holdout, torch.randint(0, holdout.shape[1], (len(seeds), elite_draws), device=device))
        losses = holdout_losses(holdout, targets)
        new_elites = losses.argsort(-1)[..., : args.num_elites]
        stats["train_epochs"], stats["holdout_loss"] = torch.full((len(seeds),), epochs), losses.gather(-1, new_elites).mean(-1)
        stats["error_pct"] = model_errors(train[:, :1000], new_elites)["pct"]
        # the paper code's own figure: all members on the last training minibatch
        stats["error_pct_stfl"] = model_errors(batch, torch.arange(args.ensemble_size, device=device).repeat(len(seeds), 1))["pct"]
        return new_elites, {**stats, **holdout_model_errors(holdout, new_elites)}

    @run.accelerate
    def rollout_step(obs):  # one model step of rollouts (n, obs): the policy's action, then a random elite's sampled prediction
        with torch.no_grad():
            actions, _, _ = actor.get_action(obs)
            next_obs, rewards = predict(obs.unsqueeze(-3), actions.unsqueeze(-3), sample=True)  # all members in one pass, then pick
        member = elites.gather(-1, torch.randint(0, args.num_elites, obs.shape[:-1], device=device)).unsqueeze(-2)  # (1, n)
        return actions, next_obs.take_along_dim(member.unsqueeze(-1), -3).squeeze(-3), rewards.take_along_dim(member, -2).squeeze(-2)

    def rollout(length: int):
        """Synthetic transitions from real start states, the current policy and a random elite per rollout; the rollouts
        keep their shape to the end, those that terminated masked out of the buffer."""
        obs = rows(rb.obs, torch.randint(0, rb.size, (len(seeds), args.rollouts_per_step), device=device))
        alive = None  # every rollout, at the first step
        for t in range(length):
            actions, next_obs, rewards = rollout_step(obs)
            terminations = is_terminated(next_obs)
            synthetic_rb.add(obs, actions, rewards, next_obs, terminations, alive)
            if t + 1 < length:  # the rollouts that did not terminate go on (a host sync, which length 1 is spared)
                alive = ~terminations if alive is None else alive & ~terminations
                if not alive.any():
                    break
                obs = next_obs.clone()  # not the graph's own output tensor, which the next step overwrites

    # ==== Beyond the paper: what its code did not run: "Fixing That Free Lunch"'s targets (--predict-next-state, ========
    # --normalize-targets), official MBPO's trainer (--model-bootstrap, --model-early-stopping), the model's other errors
    if args.predict_next_state:  # the model learns s' itself, not s' - s
        model_targets = lambda obs, rewards, next_obs: torch.cat([next_obs, rewards.unsqueeze(-1)], -1)  # noqa: E731
        from_targets = lambda obs, prediction: (prediction[..., :-1], prediction[..., -1])  # noqa: E731

    def normalize_targets(targets):  # --normalize-targets: zero mean, unit std per dimension on the training part
        model.target_mean.copy_(targets.mean(-2, keepdim=True).unsqueeze(-3))
        model.target_std.copy_(targets.std(-2, correction=0, keepdim=True).unsqueeze(-3) + 1e-6)

    def train_model_as_mbpo(targets):
        """Official MBPO: one split (holdout at most 5000), each member on its own bootstrap, reshuffled every epoch; with
        --model-early-stopping each member keeps its best epoch, and training stops after 5 epochs without 1 % gain."""
        holdout, train = split_and_normalize(targets, max_holdout=5000)
        bootstrap = rows(train, torch.randint(0, train.shape[1], (len(seeds), args.ensemble_size, train.shape[1]), device=device))
        member_params = [p for layer in (*model.layers, model.head) for p in (layer.weight, layer.bias)]
        # as in official MBPO, every call starts with no best loss, so each member keeps at least its first epoch
        best_losses = torch.full((len(seeds), args.ensemble_size), math.inf, device=device)
        best_params = [p.detach().clone() for p in member_params]
        grad_steps, epochs, epochs_since_update = 0, 0.0, 0
        while grad_steps < args.model_train_steps:
            order = bootstrap.gather(2, torch.rand(bootstrap.shape, device=device).argsort(2))
            for batch in order.split(args.model_batch_size, dim=2):  # (seeds, members, B)
                run.status(f"retraining the model: {grad_steps}/{args.model_train_steps} gradient steps")
                model_step(rows(rb.obs, batch), rows(rb.actions, batch), rows(targets, batch))
                grad_steps += 1
                epochs += batch.shape[2] / train.shape[1]
                if grad_steps == args.model_train_steps:
                    break
            if args.model_early_stopping:  # official MBPO: keep each member's best epoch; stop after 5 without gain
                losses = holdout_losses(holdout, targets)
                improved = losses < 0.99 * best_losses  # official: (best - loss) / best > 1 %
                best_losses = torch.where(improved, losses, best_losses)
                for param, best in zip(member_params, best_params):
                    best[improved.flatten()] = param.detach()[improved.flatten()]
                epochs_since_update = 0 if improved.any() else epochs_since_update + 1
                if epochs_since_update > 5:
                    break
        if args.model_early_stopping:
            torch._foreach_copy_([p.detach() for p in member_params], best_params)
        return holdout, train, batch, epochs

    def model_errors(idx, members) -> dict[str, torch.Tensor]:
        """The errors of `members` on real transitions `idx` (B, or (members, B): a row each): `pct`, the paper's figure, the
        mean of 100 ||predicted ds - true ds|| / ||true ds|| (state only; heavy-tailed: near-static transitions dominate
        it); `pct_pooled`, 100 sum ||predicted ds - true ds|| / sum ||true ds||; `pct_median`, the median ratio; `reward`,
        the mean absolute reward error, and `reward_rel_pct` relative to the rewards' mean absolute deviation."""
        shared = idx.dim() == members.dim()  # one true ds for all members
        obs, actions, rewards, next_obs = (rows(x, idx.unsqueeze(-2) if shared else idx) for x in (rb.obs, rb.actions, rb.rewards, rb.next_obs))
        with torch.no_grad():
            pred_next_obs, pred_rewards = predict(obs, actions, sample=False)
        picked = members.unsqueeze(-1)  # (m, 1): the members measured
        pred_next_obs, pred_rewards = pred_next_obs.take_along_dim(picked.unsqueeze(-1), -3), pred_rewards.take_along_dim(picked, -2)
        if not shared:
            obs, next_obs = (x.take_along_dim(picked.unsqueeze(-1), -3) for x in (obs, next_obs))
            rewards = rewards.take_along_dim(picked, -2)
        errors, changes = (pred_next_obs - next_obs).norm(dim=-1), (next_obs - obs).norm(dim=-1)
        ratios, reward_errors = 100 * errors / changes.clamp_min(1e-8), (pred_rewards - rewards).abs()
        spread = (rewards - rewards.mean((-2, -1), keepdim=True)).abs().mean((-2, -1)).clamp_min(1e-8)
        return {"pct": ratios.mean((-2, -1)), "pct_pooled": 100 * errors.mean((-2, -1)) / changes.mean((-2, -1)).clamp_min(1e-8),
                "pct_median": ratios.flatten(-2).median(-1).values, "reward": reward_errors.mean((-2, -1)),
                "reward_rel_pct": 100 * reward_errors.mean((-2, -1)) / spread}

    def recent_model_errors():  # before a retrain: the errors on the transitions it has not been trained on yet
        recent = (rb.pos - torch.arange(1, min(args.model_train_freq, rb.size) + 1, device=device)) % rb.capacity
        e = model_errors(recent.expand(len(seeds), -1), elites)
        return {"error_pct_recent": e["pct"], "error_pct_recent_pooled": e["pct_pooled"], "error_pct_recent_median": e["pct_median"],
                "reward_error_recent": e["reward"], "reward_error_recent_rel_pct": e["reward_rel_pct"]}

    def holdout_model_errors(holdout, new_elites):  # after it: the new elites' errors on the holdout
        e = model_errors(holdout, new_elites)
        return {"error_pct_holdout": e["pct"], "error_pct_holdout_pooled": e["pct_pooled"], "reward_error": e["reward"],
                "reward_error_rel_pct": e["reward_rel_pct"]}
    # ==== (end of what the paper did not run) ============================================================================

    if run.checkpoint:
        obs, episode_returns, episode_lengths, last_evals = run.restore(checkpointed)
    else:  # TRY NOT TO MODIFY: start the game
        obs = np.stack([env.reset(seed=seed)[0] for env, seed in zip(run.envs, seeds)])
        episode_returns, episode_lengths, last_evals = np.zeros(len(seeds)), np.zeros(len(seeds), dtype=int), np.full(len(seeds), np.nan)

    for global_step in range(run.start_step, args.total_timesteps):
        if global_step % args.eval_interval == 0:
            last_evals = run.log_eval(global_step, lambda: evaluate(actor, qf, log_alpha, run.eval_envs, args, run.status), policy)

        # ALGO LOGIC: put action logic here
        if global_step < args.learning_starts:
            actions = np.stack([env.action_space.sample() for env in run.envs])
        else:
            with torch.no_grad():  # every seed's action in one forward pass
                actions, _, _ = actor.get_action(torch.as_tensor(obs, dtype=torch.float32, device=device)[:, None])
            actions = actions[:, 0].cpu().numpy()

        # TRY NOT TO MODIFY: execute the game and log data.
        with run.timed("env"):
            next_obs, rewards, terminations, truncations, _ = (np.stack(x) for x in zip(*(env.step(a) for env, a in zip(run.envs, actions))))
        episode_returns += rewards
        episode_lengths += 1

        # TRY NOT TO MODIFY: save data to replay buffer; time-limit truncations are bootstrapped (only `terminated` cuts)
        rb.add(obs[:, None], actions[:, None], rewards[:, None], next_obs[:, None], terminations[:, None].astype(float))

        # TRY NOT TO MODIFY: CRUCIAL step easy to overlook
        obs = next_obs
        for k in np.flatnonzero(terminations | truncations):
            run.writers[k].add_scalar("charts/episodic_return", episode_returns[k], global_step)
            run.writers[k].add_scalar("charts/episodic_length", episode_lengths[k], global_step)
            obs[k], _ = run.envs[k].reset()
            episode_returns[k], episode_lengths[k] = 0.0, 0

        # ALGO LOGIC: training.
        if global_step >= args.learning_starts:
            # Dyna: retrain the model every model_train_freq env steps, add model rollouts from real states, update SAC
            if (global_step - args.learning_starts) % args.model_train_freq == 0:
                with run.working("model_training", "retraining the model"):
                    new_elites, model_stats = train_model()
                    elites.copy_(new_elites)  # in place: the compiled and captured rollout step read this tensor
                run.log({f"model/{name}": value for name, value in model_stats.items()}, global_step)
            if args.synthetic_rollouts:
                with run.timed("rollouts"):
                    rollout(rollout_length_at(global_step, rollout_schedule))
            with run.timed("sac_updates"):
                for _ in range(args.replay_ratio):
                    qf_values, qf_loss, actor_loss, alpha, alpha_loss = update(sample_batch())
            guarded = {"qf_loss": qf_loss, "actor_loss": actor_loss, "alpha_loss": alpha_loss, "log_alpha": log_alpha}
            if global_step % args.log_interval == 0:
                run.log({"losses/qf_values": qf_values, "losses/qf_loss": qf_loss / 2.0, "losses/actor_loss": actor_loss,
                         "losses/alpha": alpha, "losses/alpha_loss": alpha_loss}, global_step)
                run.check_finite(guarded, guarded_networks, global_step)
        if global_step % args.log_interval == 0:
            run.log({"charts/rollout_length": rollout_length_at(global_step, rollout_schedule)}, global_step)

        # periodic resets against plasticity loss (paper Sec. 5): networks and temperature anew, buffers and model kept
        if args.reset_interval and (global_step + 1) % args.reset_interval == 0:
            load_state(agent, initial_agent)
            run.log({"charts/resets": (global_step + 1) // args.reset_interval}, global_step)

        loop = (obs, episode_returns, episode_lengths, last_evals)  # the loop's state, as a checkpoint keeps it
        run.progress(global_step + 1, last_evals, checkpointed, loop)
        if run.stop_signal or (args.checkpoint_interval and (global_step + 1) % args.checkpoint_interval == 0):
            if global_step >= args.learning_starts:
                run.check_finite(guarded, guarded_networks, global_step)
            run.save_checkpoint(global_step + 1, checkpointed, loop)

    if args.total_timesteps % args.eval_interval == 0:
        last_evals = run.log_eval(args.total_timesteps, lambda: evaluate(actor, qf, log_alpha, run.eval_envs, args, run.status), policy)
    run.finish(last_evals, policy)


def evaluate(actor, qf, log_alpha, eval_envs: list, args: Args, status):
    """Each seed's mean return of deterministic episodes on its eval env; and the paper's over/under-estimation gauge:
    the critic's Q(s0, mu(s0)) beside a Monte-Carlo estimate of the same soft Q from episodes that take mu(s0), then
    follow the stochastic policy, counting -alpha * log pi of every later action as the critic's target does. The seeds'
    episodes run in step (a seed that is done waits); every step draws the policy's sample, as training's stream expects."""
    num_seeds, device = len(eval_envs), log_alpha.device

    def policy(obs):
        with torch.no_grad():
            return actor.get_action(torch.as_tensor(obs, dtype=torch.float32, device=device)[:, None])

    def reset():
        return np.stack([eval_env.reset()[0] for eval_env in eval_envs]), np.zeros(num_seeds, dtype=bool)

    def step(actions, live):  # the seeds still in an episode; their rewards (0 for the others)
        rewards = np.zeros(num_seeds)
        for k in np.flatnonzero(live):
            obs[k], rewards[k], terminated, truncated, _ = eval_envs[k].step(actions[k])
            done[k] = terminated or truncated
        return rewards

    returns, q_estimates, mc_returns = (np.zeros((args.eval_episodes, num_seeds)) for _ in range(3))
    for episode in range(args.eval_episodes):  # the deterministic policy's return
        status(f"evaluating: episode {episode + 1} of {2 * args.eval_episodes}")
        obs, done = reset()
        while not done.all():
            _, _, mean = policy(obs)
            returns[episode] += step(mean[:, 0].cpu().numpy(), ~done)

    alpha = log_alpha.exp().detach()[:, 0].cpu().numpy()
    for episode in range(args.eval_episodes):  # the gauge
        status(f"evaluating: episode {args.eval_episodes + episode + 1} of {2 * args.eval_episodes}")
        (obs, done), discount = reset(), np.ones(num_seeds)
        _, _, action = policy(obs)
        with torch.no_grad():
            q_estimates[episode] = (qf(torch.as_tensor(obs, dtype=torch.float32, device=device)[:, None], action)
                                    .min(1).values[:, 0].cpu().numpy())  # min over the twin, as in the target
        while not done.all():
            live = ~done
            mc_returns[episode] += discount * step(action[:, 0].cpu().numpy(), live)
            discount = np.where(live, discount * args.gamma, discount)
            if not done.all():
                action, log_pi, _ = policy(obs)
                # the entropy bonus inside the soft Q
                mc_returns[episode] -= np.where(done, 0.0, discount * alpha * log_pi[:, 0].cpu().numpy())
    return returns.mean(0), q_estimates.mean(0), mc_returns.mean(0)


class ReplayBuffer:
    """One FIFO buffer of transitions per seed, filled in step, as one tensor per field with a leading seed axis:
    preallocated on the training device and sampled there (no host round trip), each seed its own minibatch."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device, num_seeds: int):
        self.capacity, self.size, self.pos = capacity, 0, 0
        try:
            self.obs = torch.empty((num_seeds, capacity, obs_dim), device=device)
            self.actions = torch.empty((num_seeds, capacity, act_dim), device=device)
            self.rewards = torch.empty((num_seeds, capacity), device=device)
            self.next_obs = torch.empty((num_seeds, capacity, obs_dim), device=device)
            self.terminations = torch.empty((num_seeds, capacity), device=device)
        except (RuntimeError, MemoryError):  # a --buffer-size beyond the device's memory
            sys.exit(f"error: cannot allocate a buffer of {num_seeds} x {capacity} transitions "
                     f"({num_seeds * capacity * (2 * obs_dim + act_dim + 2) * 4 / 1e9:.1f} GB) on {device}; lower --buffer-size")
        self.seeds = torch.arange(num_seeds, device=device)[:, None]  # row index of each seed's minibatch

    fields = ("obs", "actions", "rewards", "next_obs", "terminations")

    def add(self, obs, actions, rewards, next_obs, terminations):  # add a batch of transitions for every seed (seeds, number of transitions, ...)
        idx = (self.pos + torch.arange(len(obs[0]), device=self.obs.device)) % self.capacity
        for name, value in zip(self.fields, (obs, actions, rewards, next_obs, terminations)):
            storage = getattr(self, name)
            storage[:, idx] = torch.as_tensor(value, dtype=storage.dtype, device=storage.device)
        self.pos = (self.pos + len(obs[0])) % self.capacity
        self.size = min(self.size + len(obs[0]), self.capacity)

    def state_dict(self) -> dict:  # the filled rows only, so a young run's checkpoint stays small
        return {"size": self.size, "pos": self.pos, **{name: getattr(self, name)[:, : self.size].to("cpu", copy=True) for name in self.fields}}

    def load_state_dict(self, state: dict):
        self.size, self.pos = state["size"], state["pos"]
        for name in self.fields:
            getattr(self, name)[:, : self.size] = state[name]

    def sample(self, batch_size: int):  # a minibatch (seeds, batch_size, ...): each seed's own indices into its own transitions
        idx = torch.randint(0, self.size, (len(self.seeds), batch_size), device=self.obs.device)
        return (self.obs[self.seeds, idx], self.actions[self.seeds, idx], self.rewards[self.seeds, idx],
                self.next_obs[self.seeds, idx], self.terminations[self.seeds, idx])


def parse_rollout_schedule(args: Args) -> tuple[int, int, int, int]:
    """--rollout-schedule "a,b,min,max" as (a, b, min, max) (else --rollout-length at every epoch), or exit with one line."""
    if args.rollout_schedule is None:
        return 0, 1, args.rollout_length, args.rollout_length
    try:
        start, end, min_length, max_length = (int(part) for part in args.rollout_schedule.split(","))
    except ValueError:
        sys.exit(f"error: --rollout-schedule must be four integers a,b,min,max (e.g. 20,150,1,15), got {args.rollout_schedule!r}")
    if not (0 <= start < end and 1 <= min_length <= max_length):
        sys.exit(f"error: --rollout-schedule needs 0 <= a < b and 1 <= min <= max, got {args.rollout_schedule!r}")
    return start, end, min_length, max_length


def rollout_length_at(step: int, schedule: tuple[int, int, int, int]) -> int:
    """MBPO's schedule: linear in the epoch (1000 env steps) from min at epoch a to max at epoch b, clipped."""
    start, end, min_length, max_length = schedule
    fraction = min(max((step / 1000 - start) / (end - start), 0.0), 1.0)
    return int(min_length + fraction * (max_length - min_length))


class SyntheticReplayBuffer(ReplayBuffer):
    """The synthetic transitions: a ReplayBuffer whose seeds fill at their own pace (their rollouts end apart), so
    positions and sizes are per seed and on the device (no host sync); rows a seed does not add go to a scratch row."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device, num_seeds: int):
        super().__init__(capacity + 1, obs_dim, act_dim, device, num_seeds)  # + the scratch row
        self.capacity = capacity
        self.size, self.pos = (torch.zeros(num_seeds, dtype=torch.long, device=device) for _ in range(2))

    def add(self, obs, actions, rewards, next_obs, terminations, valid=None):  # those `valid` (seeds, n) holds for (None: all)
        valid = torch.ones(terminations.shape, dtype=torch.bool, device=self.obs.device) if valid is None else valid
        idx = torch.where(valid, (self.pos[:, None] + valid.cumsum(1) - 1) % self.capacity, self.capacity)
        for name, value in zip(self.fields, (obs, actions, rewards, next_obs, terminations)):
            storage = getattr(self, name)
            storage[self.seeds, idx] = value.to(storage.dtype)
        added = valid.sum(1)
        self.pos, self.size = (self.pos + added) % self.capacity, (self.size + added).clamp(max=self.capacity)

    def state_dict(self) -> dict:  # up to the fullest seed's size; rows past a seed's own, never written, as zeros
        filled = int(self.size.max())
        state = {name: getattr(self, name)[:, :filled].to("cpu", copy=True) for name in self.fields}
        unwritten = torch.arange(filled) >= self.size.cpu()[:, None]
        for rows in state.values():
            rows[unwritten] = 0
        return {"size": self.size.cpu(), "pos": self.pos.cpu(), **state}

    def load_state_dict(self, state: dict):
        torch._foreach_copy_([self.size, self.pos], [state["size"], state["pos"]])
        for name in self.fields:
            getattr(self, name)[:, : state[name].shape[1]] = state[name]

    def sample(self, batch_size: int):  # as ReplayBuffer's, each seed's indices below its own size
        idx = torch.randint(0, 2**62, (len(self.seeds), batch_size), device=self.obs.device) % self.size[:, None]
        return tuple(getattr(self, name)[self.seeds, idx] for name in self.fields)


# The harness: the same text in every script (tests/test_drift.py) but for each script's own check_args. The command
# line, run directories, seeding, envs, logs, videos, checkpoints, the NaN guard, Adam, the CUDA graph, progress.

# flags a resumed run may change; every other flag keeps the checkpoint's value
RESUMABLE_FLAGS = ("total_timesteps", "checkpoint_interval", "resume", "cuda", "torch_threads", "log_dir", "compile", "cuda_graph",
                   "capture_video", "video_interval", "track", "wandb_project", "wandb_entity", "wandb_group")
CHECKPOINT, TIMED = "checkpoint.pt", "timed.json"  # timed.json: the progress line's paces, for the next run's expected duration
CHECKPOINT_FORMAT = 5  # 3: the scripts' own Adam; 4: a seed axis; 5: the agent's tensors in "agent"; older ones cannot be resumed
COMPILE_FROM = 100_000  # learning steps from which a CPU run compiles unless told: 1.3-1.6x for ~5-150 s of compiling, once
GRAPH_STAND_IN = os.environ.get("FREELUNCH_GRAPH_STAND_IN")  # the tests' CUDA graphs on a CPU: tests.graph_stand_in


class Run:
    """What the training loop calls that is not the algorithm: run directories, seeding, the device, each seed's envs
    and logs (TensorBoard, W&B, videos), checkpoints and resume, Ctrl-C, the NaN guard, progress, timing."""

    def __init__(self, args: Args, work: Optional[dict] = None, split: tuple = ()):  # the script's long work; its time split
        check_args(args)
        self.args, self.checkpoint = args, None
        if args.resume:  # the run's own settings (into `args`), directories and state
            self.checkpoint, run_args, self.run_dirs = load_checkpoint(args)
            vars(args).update(vars(run_args))
        self.seeds = list(range(args.seed, args.seed + args.num_seeds))  # --num-seeds independent runs, in step
        if args.total_timesteps is None:
            args.total_timesteps = 500_000 if is_dmc(args.env) else 300_000

        # TRY NOT TO MODIFY: seeding
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what cuBLAS needs for --torch-deterministic
        torch.use_deterministic_algorithms(args.torch_deterministic, warn_only=True)  # an op without such a kernel warns
        torch.utils.deterministic.fill_uninitialized_memory = False  # else deterministic mode writes NaN into every buffer
        torch.set_num_threads(args.torch_threads)
        torch.distributions.Distribution.set_default_validate_args(False)  # no checks per call; check_finite catches NaN
        self.device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
        if args.compile is None:  # neither --compile nor --no-compile (a GPU replays CUDA graphs; compiling there takes minutes)
            args.compile = self.device.type == "cpu" and args.total_timesteps - args.learning_starts >= COMPILE_FROM

        # env setup: for each seed one env for training, a separate one for evaluation; the memory all seeds need is
        # checked on the first two seeds' envs, before the others and the run directories exist
        self.envs, resident = [], []
        for seed in self.seeds:
            try:
                self.envs.append(make_env(args.env, seed))
            except ValueError as e:
                sys.exit(f"error: {e}")
            resident.append(int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
            if len(resident) == min(2, len(self.seeds)):  # a seed's envs measured on the second
                self.check_memory(resident[-1] - resident[0])
        self.eval_envs = [make_env(args.env, seed + 10_000) for seed in self.seeds]
        if not isinstance(self.envs[0].action_space, gym.spaces.Box):
            sys.exit(f"error: {args.env} has a {type(self.envs[0].action_space).__name__} action space; only continuous (Box) ones are supported")
        try:  # videos of the deterministic policy, on an env of their own: the run's envs and random streams stay untouched
            self.video_envs = [make_env(args.env, seed + 20_000, render_mode="rgb_array") for seed in self.seeds] if args.capture_video else None
        except ValueError as e:  # no OpenGL backend (a GPU machine without libEGL)
            sys.exit(f"error: --capture-video: {e}")
        self.pending = []  # new run directories, removed at exit until the run starts: a failed start leaves nothing behind
        if self.checkpoint is None:
            started = int(time.time())
            self.run_dirs = [f"{args.log_dir.replace('{seed}', str(seed))}/{args.env.replace(':', '_')}__{args.exp_name}__{seed}__{started}"
                             for seed in self.seeds]
            for run_dir in self.run_dirs:
                try:
                    os.makedirs(run_dir)
                except OSError as e:
                    sys.exit(f"error: cannot create the run directory {run_dir!r} ({e.strerror}); choose another --log-dir")
                self.pending.append(run_dir)
            atexit.register(lambda pending=self.pending: [shutil.rmtree(d, ignore_errors=True) for d in pending])
        self.run_dir = self.run_dirs[0]  # the first seed's: it holds the checkpoint of them all
        self.start_step = self.checkpoint["next_step"] if self.checkpoint else 0
        self.wandb_run = None
        if args.track:  # W&B mirrors the TensorBoard logs (the same W&B run when resumed): it starts before the writers
            import wandb
            wandb.tensorboard.patch(root_logdir=self.run_dir)
            try:
                self.wandb_run = wandb.init(project=args.wandb_project, entity=args.wandb_entity, group=args.wandb_group,
                                            name=os.path.basename(self.run_dir), id=(self.checkpoint or {}).get("wandb_id"),
                                            resume="allow", config=vars(args), dir=self.run_dir)
            except Exception as e:  # wandb raises its own errors for a missing login, an unreachable server, ...
                sys.exit(f"error: --track cannot start Weights & Biases ({type(e).__name__}: {' '.join(str(e).split())}); "
                         f"run `wandb login` or set WANDB_API_KEY, or WANDB_MODE=offline to log locally")
        # a resumed run writes on in the same directories; purge_step drops what the stopped run logged after its checkpoint
        self.writers = [SummaryWriter(run_dir, purge_step=self.start_step if self.checkpoint else None) for run_dir in self.run_dirs]
        for seed, writer in zip(self.seeds, self.writers) if self.checkpoint is None else ():  # as its single-seed run logs it
            writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{key}|{value}|" for key, value in {**vars(args), "seed": seed}.items()))
        print(f"run {os.path.basename(self.run_dir)}: {args.env} for {args.total_timesteps} steps on {self.device}"
              + (f", seeds {self.seeds[0]}-{self.seeds[-1]} in one process" if len(self.seeds) > 1 else "")
              + (f", resumed at step {self.start_step}" if self.checkpoint else "")
              + (", compiling at the first learning step (--compile; --no-compile: eager)" if args.compile else ""), flush=True)
        self.kept, self.doing, self.last_evals = None, None, np.full(len(self.seeds), np.nan)
        self.stop_signal = []  # SIGTERM (preemption) or SIGINT (Ctrl-C): a checkpoint at the next safe point, then exit
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.on_signal)
        self.work = {"eval": (0, args.eval_interval), **(work or {})}  # long work (evaluations, retrains): first step, period
        settings = json.loads(json.dumps({k: v for k, v in vars(args).items() if k not in RESUMABLE_FLAGS + ("seed",)}, default=str))
        self.progress_line = ProgressLine(args.total_timesteps, args.learning_starts, self.work, self.start_step,
                                          record=(f"{self.run_dir}/{TIMED}", {**settings, "device": self.device.type}))
        print(self.expected_duration(), flush=True)
        if self.checkpoint and os.path.exists(f"{self.run_dir}/{TIMED}"):  # resumed: the ETA starts from what the run timed before
            with contextlib.suppress(ValueError, KeyError):  # (a file cut short by a kill: not used)
                record = json.load(open(f"{self.run_dir}/{TIMED}"))
                self.progress_line.paces.update(record["paces"]), self.progress_line.seconds.update(record["means"])
                self.progress_line.counts.update(dict.fromkeys(record["means"], 1))
        self.start_time, self.timings = time.time(), dict.fromkeys(split, 0.0)  # the time split: run.timed's blocks

    def expected_duration(self) -> str:  # as the latest run of the same settings in --log-dir timed it, if any
        pattern = f"{self.args.log_dir.replace('{seed}', str(self.seeds[0]))}/{self.args.env.replace(':', '_')}__{self.args.exp_name}__*/{TIMED}"
        for path in sorted(glob.glob(pattern), key=os.path.getmtime, reverse=True):
            with contextlib.suppress(OSError, ValueError, KeyError):
                record = json.load(open(path))
                seconds, _ = self.progress_line.remaining(self.start_step, record["paces"], record["means"])
                if record["settings"] == self.progress_line.record[1] and seconds is not None:
                    return (f"expected duration on this machine: {ProgressLine.duration(seconds)} (as run {os.path.basename(os.path.dirname(path))} "
                            f"of the same settings timed it; then the progress line's ETA)")
        return "expected duration: not timed on this machine yet (no run of these settings in --log-dir); the progress line's ETA will say"

    def check_memory(self, env_bytes: int):
        """Exit with one line if every seed's buffers (on the device) and envs (the second seed's measured) would not fit."""
        a, (obs, act) = self.args, (np.prod(space.shape, dtype=int) for space in (self.envs[0].observation_space, self.envs[0].action_space))
        buffers = len(self.seeds) * (a.buffer_size + getattr(a, "synthetic_buffer_size", 0)) * (2 * obs + act + 2) * 4
        envs = len(self.seeds) * env_bytes * (3 if a.capture_video else 2)
        with contextlib.suppress(OSError, StopIteration):  # where /proc/meminfo says
            ram = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemAvailable"))) * 1024
            device = torch.cuda.mem_get_info()[0] if self.device.type == "cuda" else ram - envs
            if envs > ram or buffers > device:
                sys.exit(f"error: {len(self.seeds)} seed(s) need about {(buffers + envs) / 1e9:.1f} GB (buffers {buffers / 1e9:.1f} GB on "
                         f"{self.device}, envs {envs / 1e9:.1f} GB), more than the {(ram if self.device.type == 'cpu' else device) / 1e9:.1f} GB "
                         f"available; lower --num-seeds or --buffer-size")

    def on_signal(self, signum, frame):  # the first says what the run waits for; a second Ctrl-C exits at once
        name = signal.Signals(signum).name
        if self.stop_signal:  # a repeated SIGTERM (a supervisor's, sent to a process tree) waits for the checkpoint
            if signum == signal.SIGINT:
                sys.exit(f"{name} again: stopped at once (last good checkpoint: {self.last_checkpoint()})")
            return
        self.stop_signal.append(signum)
        print(f"{name}: a checkpoint after {f'{self.doing}, at its next safe point' if self.doing else 'this env step'} (seconds; a first "
              f"--compile compiles first), then exit; Ctrl-C again exits at once", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def working(self, name: str, doing: str):
        """Long work of this step (`name` in self.work: an evaluation, a retrain): timed for the ETA, shown as it goes
        (status). A stop signal ends it at a safe point: the checkpoint kept at the step's start is saved (resumed, the
        run redoes the step); in this process's first step none is kept: the last one on disk is that step's start."""
        self.doing, tic, self.progress_line.busy = doing, time.perf_counter(), time.time()
        self.progress_line(self.progress_line.step, self.last_evals, doing=doing, force=True)  # long work says so at once
        try:
            yield
        except KeyboardInterrupt:  # from status, at a safe point
            if self.kept is None:
                sys.exit(f"{signal.Signals(self.stop_signal[0]).name} while {doing}, in this process's first step: stopped (last good "
                         f"checkpoint: {self.last_checkpoint()})")
            self.save_checkpoint(self.kept[0])
        finally:
            self.doing = None
        self.progress_line.timed(name, time.perf_counter() - tic)
        if name in self.timings:  # part of the script's time split too
            self.timings[name] += time.perf_counter() - tic

    def status(self, detail: str):  # inside long work: the progress line says how far it is; a stop signal stops it here
        if self.stop_signal:
            raise KeyboardInterrupt
        self.doing = detail
        self.progress_line(self.progress_line.step, self.last_evals, doing=detail)

    def accelerate(self, fn):  # `fn` (tensor ops, no host sync) compiled to one graph (--compile) and replayed as one CUDA graph (a GPU)
        if self.args.compile:
            torch._dynamo.config.trace_autograd_ops = True
            fn = compiled_or_eager(fn)
        if self.args.cuda_graph and (self.device.type == "cuda" or GRAPH_STAND_IN):
            fn = as_cuda_graph(fn, stand_in=None if self.device.type == "cuda" else importlib.import_module(GRAPH_STAND_IN).capture)
        return fn

    @contextlib.contextmanager
    def timed(self, name: str):  # adds the wall-clock time of the block to timings[name] (where the time goes)
        tic = time.perf_counter()
        yield
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - tic

    def log(self, values: dict, step: int):  # each seed's value to its TensorBoard: a tensor's mean past its seed axis, or a number
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().reshape(len(self.writers), -1).mean(1).tolist()
            for writer, x in zip(self.writers, np.broadcast_to(value, len(self.writers)).tolist()):
                writer.add_scalar(name, x, step)

    def log_eval(self, step: int, evaluate, policy) -> np.ndarray:  # evaluate() as long work, its logs (and videos)
        with self.working("eval", "evaluating"):
            eval_returns, q_estimates, mc_returns = evaluate()
        self.log({"eval/return": eval_returns, "diagnostics/q_estimate": q_estimates, "diagnostics/mc_return": mc_returns}, step)
        if self.args.capture_video and step // self.args.eval_interval % self.args.video_interval == 0:
            self.record_video(step, policy)
        return eval_returns

    def record_video(self, step: int, policy):
        """Each seed's episode of `policy` ((seeds, 1, obs) -> (seeds, 1, act)) as videos/step_<step>.mp4 and on TensorBoard."""
        import imageio
        for k, (env, writer) in enumerate(zip(self.video_envs, self.writers)):
            obs, _ = env.reset()
            frames, done = [env.render()], False
            while not done:
                with torch.no_grad():
                    x = torch.as_tensor(obs, dtype=torch.float32, device=self.device).expand(len(self.seeds), 1, -1)
                    obs, _, terminated, truncated, _ = env.step(policy(x)[k, 0].cpu().numpy())
                frames.append(env.render())
                done = terminated or truncated
            os.makedirs(f"{self.run_dirs[k]}/videos", exist_ok=True)
            imageio.mimwrite(f"{self.run_dirs[k]}/videos/step_{step}.mp4", frames, fps=env.metadata.get("render_fps", 30), macro_block_size=1)
            stride = max(1, len(frames) // 100)  # TensorBoard stores a GIF: at most ~100 frames, at half size
            clip = torch.from_numpy(np.stack(frames[::stride])[:, ::2, ::2].copy()).permute(0, 3, 1, 2)[None]
            writer.add_video("videos/eval", clip, step, fps=max(1, round(env.metadata.get("render_fps", 30) / stride)))

    def check_finite(self, losses: dict, networks: dict, step: int):
        """Q values growing is data (logged); NaN or inf in a loss or a network's parameter stops the run naming the
        seed, keeping the last checkpoint (written before it). One host sync per tensor: call it rarely."""
        named = [*losses.items(), *((f"{name}.{n}", p) for name, net in networks.items() for n, p in net.named_parameters())]
        for name, tensor in named:
            finite = torch.isfinite(tensor.detach().reshape(len(self.seeds), -1)).all(1)
            if not finite.all():
                sys.exit(f"error: {name} is NaN or inf at step {step} in seed {self.seeds[int((~finite).nonzero()[0])]}; "
                         f"run stopped (last good checkpoint: {self.last_checkpoint()})")

    def last_checkpoint(self) -> str:  # for an error line
        return f"{self.run_dir}/{CHECKPOINT}" if os.path.exists(f"{self.run_dir}/{CHECKPOINT}") else "none written yet"

    def checkpoint_state(self, next_step: int, agent: dict, loop: tuple) -> dict:
        """What the run's future depends on: `agent` (name: modules, optimizers, buffers, tensors), envs, loop, RNGs."""
        return {"script": os.path.basename(__file__), "format": CHECKPOINT_FORMAT, "args": vars(self.args), "next_step": next_step,
                "run_dirs": [os.path.relpath(d, self.run_dir) for d in self.run_dirs], "wandb_id": self.wandb_run.id if self.wandb_run else None,
                **{k: state_of(x) for k, x in agent.items()}, "env": [get_env_state(env) for env in self.envs],
                "eval_env": [get_env_state(env) for env in self.eval_envs], "loop": loop, "last_evals": self.last_evals,
                "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                        torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None)}

    def save_checkpoint(self, next_step: int, agent: Optional[dict] = None, loop: Optional[tuple] = None):
        """The run's state at `next_step`: the one kept in memory at that step if any (serialized once), else
        checkpoint_state's; written and renamed (a kill mid-write leaves the last one whole). After a stop signal the
        run exits."""
        kept = self.kept[1] if self.kept and self.kept[0] == next_step else None
        temporary = f"{self.run_dir}/{CHECKPOINT}.tmp"
        try:
            if kept:
                with open(temporary, "wb") as file:
                    file.write(kept)
            else:
                torch.save(self.checkpoint_state(next_step, agent, loop), temporary)
        except (OSError, RuntimeError) as e:  # torch's zip writer reports a full disk as a RuntimeError
            with contextlib.suppress(OSError):
                os.remove(temporary)
            full = getattr(e, "errno", None) == errno.ENOSPC or "write failed" in str(e) or "No space left" in str(e)
            reason = "the disk is full" if full else f"{type(e).__name__}: {' '.join(str(e).split())}"
            sys.exit(f"error: cannot write a checkpoint in {self.run_dir} ({reason}); run stopped (last good checkpoint: {self.last_checkpoint()})")
        os.replace(temporary, f"{self.run_dir}/{CHECKPOINT}")
        if self.stop_signal:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # exiting: a later Ctrl-C would only interrupt the shutdown
            sys.exit(f"{signal.Signals(self.stop_signal[0]).name} at step {next_step}: checkpoint saved"
                     + (" (resumed, the run redoes this step's long work)" if self.doing else "")
                     + f"; continue with: python {os.path.basename(__file__)} --resume {self.run_dir}")

    def restore(self, agent: dict) -> tuple:  # exactly where the checkpoint left off; the loop's state
        for name, x in agent.items():
            load_state(x, self.checkpoint[name])
        for env, state in zip(self.envs + self.eval_envs, self.checkpoint["env"] + self.checkpoint["eval_env"], strict=True):
            set_env_state(env, state)
        python, numpy, torch_cpu, cuda = self.checkpoint["rng"]
        random.setstate(python)
        np.random.set_state(numpy)
        torch.set_rng_state(torch_cpu)
        if self.device.type == "cuda" and cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        self.last_evals = self.checkpoint.get("last_evals", self.last_evals)  # for the progress line
        return self.checkpoint["loop"]

    def progress(self, step: int, last_evals: np.ndarray, agent: dict, loop: tuple):
        """After env step `step` - 1: SPS and the time split on TensorBoard, the progress line; if step `step` begins long
        work (an evaluation, a model retrain), its checkpoint (`agent`, `loop` as save_checkpoint takes them), kept in
        memory for a stop during the work."""
        self.pending.clear()  # the run has started
        self.last_evals = last_evals
        if (step - 1) % self.args.log_interval == 0:
            elapsed = time.time() - self.start_time
            self.log({"charts/SPS": int((step - 1 - self.start_step) / elapsed),
                      **{f"time/{name}_frac": seconds / elapsed for name, seconds in self.timings.items()}}, step - 1)
        self.kept = None
        if any(every and step >= first and (step - first) % every == 0 for first, every in self.work.values()):
            kept = io.BytesIO()  # serialized now: the objects change during the step
            torch.save(self.checkpoint_state(step, agent, loop), kept)
            self.kept = step, kept.getvalue()
        self.progress_line(step, last_evals)

    def finish(self, last_evals: np.ndarray, policy):  # the final policy's video, the last progress line; all closed
        if self.args.capture_video and not os.path.exists(f"{self.run_dir}/videos/step_{self.args.total_timesteps}.mp4"):
            self.record_video(self.args.total_timesteps, policy)
        self.progress_line(self.args.total_timesteps, last_evals, force=True)
        if self.timings:  # where the time went (run.timed's blocks)
            elapsed = time.time() - self.start_time
            print(f"time split over {elapsed:.1f} s: " + ", ".join(f"{k} {100 * s / elapsed:.1f}%" for k, s in self.timings.items()))
        for env in self.envs + self.eval_envs:
            env.close()
        for writer in self.writers:
            writer.close()
        if self.wandb_run:
            self.wandb_run.finish()


def parse_args() -> Args:  # tyro's command line, with its parse-error box (bad type, unknown flag) folded into one `error:` line
    box = io.StringIO()
    try:
        with contextlib.redirect_stderr(box):
            args = tyro.cli(Args)
    except SystemExit as e:
        lines = [line.strip("│╭╮╰╯─ ") for line in box.getvalue().splitlines()[1:]]
        message = " ".join(lines[: lines.index("")] if "" in lines else lines)
        sys.exit(f"error: {message}" if e.code else e.code)
    if not {"--compile", "--no-compile"} & set(sys.argv[1:]):
        args.compile = None  # neither: Run chooses (COMPILE_FROM); a resumed run keeps its own
    return args


def check_args(args: Args) -> None:
    """Exit with one line naming the bad value and what is allowed."""
    at_least = [  # integer flags with a plain lower bound: (flag, minimum, what the minimum means)
        ("num_seeds", 1, ""), ("total_timesteps", 1, ""), ("learning_starts", 0, ""), ("buffer_size", 1, ""), ("batch_size", 1, ""),
        ("hidden_dim", 1, ""), ("replay_ratio", 1, ""), ("reset_interval", 0, " (0 = off)"), ("eval_interval", 1, ""),
        ("eval_episodes", 1, ""), ("log_interval", 1, ""), ("torch_threads", 1, ""),
        ("checkpoint_interval", 0, " (0 = only on SIGTERM/SIGINT)"), ("video_interval", 1, ""),
        ("model_train_freq", 1, ""), ("rollouts_per_step", 1, ""), ("rollout_length", 1, ""), ("synthetic_buffer_size", 1, ""),
        ("learning_starts", 10, " (the model needs data to fit)"), ("ensemble_size", 1, ""), ("model_hidden_dim", 1, ""),
        ("model_batch_size", 1, ""), ("model_train_steps", 1, ""), ("model_train_chunks", 1, ""),
    ]
    errors = [(getattr(args, name) is not None and getattr(args, name) < minimum,  # total_timesteps None: set later
               f"--{name.replace('_', '-')} must be >= {minimum}{meaning}, got {getattr(args, name)}")
              for name, minimum, meaning in at_least]
    errors += [
        (not 0 <= args.seed <= 2**32 - 20_000 - args.num_seeds,  # numpy's range, less our offsets and the other seeds
         f"--seed must be in [0, {2**32 - 20_000 - args.num_seeds}] with --num-seeds {args.num_seeds}, got {args.seed}"),
        (args.track and args.num_seeds > 1, f"--track takes one seed per process (W&B mirrors one run's TensorBoard logs), got "
         f"--num-seeds {args.num_seeds}; use --num-seeds 1, or afterwards `wandb sync --sync-tensorboard <run dir>` for each seed"),
        (not 0 <= args.gamma <= 1, f"--gamma must be in [0, 1], got {args.gamma}"),
        (not 0 < args.tau <= 1, f"--tau must be in (0, 1], got {args.tau}"),
        (not (0 < args.policy_lr < math.inf and 0 < args.q_lr < math.inf), f"learning rates must be finite and > 0, got {args.policy_lr} and {args.q_lr}"),
        (not 0 < args.init_alpha < math.inf, f"--init-alpha must be finite and > 0, got {args.init_alpha}"),
        (not math.isfinite(args.target_entropy_scale), f"--target-entropy-scale must be finite, got {args.target_entropy_scale}"),
        (not 0 <= args.real_ratio <= 1, f"--real-ratio must be in [0, 1], got {args.real_ratio}"),
        (not 1 <= args.num_elites <= args.ensemble_size,
         f"--num-elites must be in [1, --ensemble-size={args.ensemble_size}], got {args.num_elites}"),
        (not 0 < args.model_lr < math.inf, f"--model-lr must be finite and > 0, got {args.model_lr}"),
        (not 0 < args.model_holdout_ratio < 1, f"--model-holdout-ratio must be in (0, 1), got {args.model_holdout_ratio}"),
        (args.model_early_stopping and args.num_seeds > 1, f"--model-early-stopping takes one seed per process (each seed "
         f"stops on its own, which stacked seeds cannot), got --num-seeds {args.num_seeds}; use --num-seeds 1"),
    ]
    for bad, message in errors:
        if bad:
            sys.exit(f"error: {message}")
    parse_rollout_schedule(args)


def load_checkpoint(args: Args) -> tuple[dict, Args, list[str]]:
    """The checkpoint at `--resume`, the run's own Args (and the flags a resumed run may change), its run directories."""
    path = os.path.join(args.resume, CHECKPOINT) if os.path.isdir(args.resume) else args.resume
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        sys.exit(f"error: cannot read checkpoint {path!r} ({type(e).__name__}); give a run directory or its {CHECKPOINT}")
    script = os.path.basename(__file__)
    if (author := checkpoint.get("script") if isinstance(checkpoint, dict) else None) != script:
        sys.exit(f"error: {path!r} is not a {script} checkpoint" + (f" (written by {author})" if author else ""))
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        sys.exit(f"error: {path!r} was written by an older {script} (checkpoint format {checkpoint.get('format')}, this one "
                 f"reads {CHECKPOINT_FORMAT}) and cannot be resumed; start a new run")
    saved, defaults = checkpoint["args"], vars(Args())
    for name, value in vars(args).items():
        if name not in RESUMABLE_FLAGS and value != defaults[name] and value != saved[name]:
            sys.exit(f"error: --{name.replace('_', '-')} {value} differs from the resumed run's {saved[name]}; "
                     f"a resumed run keeps its settings (only {', '.join(RESUMABLE_FLAGS)} may change)")
    changed = {name: getattr(args, name) for name in RESUMABLE_FLAGS if getattr(args, name) not in (defaults[name], None)}
    run_args = Args(**{**saved, **changed})
    if run_args.total_timesteps < checkpoint["next_step"]:
        sys.exit(f"error: --total-timesteps {run_args.total_timesteps} is below the checkpoint's step {checkpoint['next_step']}")
    first = os.path.dirname(os.path.abspath(path))  # the first seed's, which holds the checkpoint
    return checkpoint, run_args, [os.path.normpath(os.path.join(first, run_dir)) for run_dir in checkpoint["run_dirs"]]


def init_per_seed(make, generator_seeds: list[int]) -> tuple:
    """The modules `make(num_seeds)` returns, each seed's slice drawn as `make(1)` from a generator seeded with its entry
    of `generator_seeds`; the global stream untouched."""
    per_seed = []
    for generator_seed in generator_seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(generator_seed)
            per_seed.append(make(1))
    with torch.random.fork_rng(devices=[]):
        stacked = make(len(generator_seeds))
    with torch.no_grad():
        for i, module in enumerate(stacked):
            for name, tensor in module.state_dict().items():
                tensor.copy_(torch.cat([modules[i].state_dict()[name] for modules in per_seed]))
    return stacked


def state_of(x):  # what a checkpoint keeps of `x` (or of each of a list's): a state_dict, a tensor's values
    if isinstance(x, (tuple, list)):
        return [state_of(y) for y in x]
    return x.detach().to("cpu", copy=True) if isinstance(x, torch.Tensor) else x.state_dict()


def load_state(x, state):  # `state` (as state_of gives it) into `x`, in place: a checkpoint's, or at a reset the initial one
    if isinstance(x, (tuple, list)):
        for y, y_state in zip(x, state, strict=True):
            load_state(y, y_state)
    else:
        x.detach().copy_(state) if isinstance(x, torch.Tensor) else x.load_state_dict(state)


def compiled_or_eager(fn, watched: int = 4, every: float = 10.0):
    """`fn` compiled to one graph. Its first `watched` calls may compile (a new argument variant compiles anew): while
    one runs, a line every `every` seconds says so. If compiling fails (no C++ compiler, ...) it says why once and
    `fn` runs eager."""
    compiled, name, calls = torch.compile(fn, fullgraph=True), getattr(fn, "__name__", "fn"), 0

    def heartbeat(done: threading.Event, tic: float):  # the first line 2 s in (a call that compiles nothing is over by then)
        wait = min(2.0, every)
        while not done.wait(wait):
            print(f"compiling {name}: {time.perf_counter() - tic:.0f} s so far (once per run; --no-compile skips it)", flush=True)
            wait = every

    def call(*args):
        nonlocal compiled, calls
        done, calls = threading.Event(), calls + 1
        if watching := calls <= watched:
            threading.Thread(target=heartbeat, args=(done, time.perf_counter()), daemon=True).start()
        try:
            with warnings.catch_warnings():
                if watching:  # inductor's first imports warn of deprecations (torch.jit's): not the user's to act on
                    warnings.simplefilter("ignore", DeprecationWarning)
                return compiled(*args)
        except torch._dynamo.exc.TorchDynamoException as e:  # raised while compiling, before the graph runs
            print(f"warning: {name} runs eager: compiling it failed ({type(e).__name__}: {' '.join(str(e).split())[:300]})",
                  file=sys.stderr, flush=True)
            compiled = fn
            return fn(*args)
        finally:
            done.set()
    call.compiled = compiled  # (the tests')
    return call


def as_cuda_graph(fn, warmup: int = 3, stand_in=None):
    """`fn` (tensors and constants in, tensors out, no host sync) replayed as one captured CUDA graph: its first `warmup`
    calls run as they are (on a side stream, as torch.cuda.graph asks), the next is captured; later calls copy their
    tensors into the captured inputs and replay it. One graph per argument structure and constants, for the first
    shapes to reach `warmup` calls; other shapes run as they are. The outputs are the graph's own tensors, overwritten
    by the next call (keep one longer: clone it). A failed capture says why once; `fn` then runs as it is. `stand_in`
    (on a CPU, the tests': tests/graph_stand_in.py) captures instead of CUDA, as capture(fn, inputs, spec) does."""
    graphs, side_stream = {}, None if stand_in else torch.cuda.Stream()

    def capture(inputs: list, spec) -> tuple:  # `fn` captured on the argument leaves, run once: (replay, outputs)
        if stand_in:
            return stand_in(fn, inputs, spec)
        graph = torch.cuda.CUDAGraph()
        # torch.cuda.graph's exit leaves its capture stream current when a capture fails: the outer context restores ours
        with torch.cuda.stream(torch.cuda.current_stream()), torch.cuda.graph(graph):
            outputs = fn(*torch.utils._pytree.tree_unflatten(inputs, spec))
        graph.replay()
        return lambda: (graph.replay(), outputs)[1], outputs

    def call(*args):
        leaves, spec = torch.utils._pytree.tree_flatten(args)
        key = (str(spec), *(None if isinstance(x, torch.Tensor) else x for x in leaves))
        shapes = tuple((x.shape, x.dtype) for x in leaves if isinstance(x, torch.Tensor))
        record = graphs.setdefault(key, {"calls": {}})
        if "replay" not in record:  # not captured yet
            record["calls"][shapes] = record["calls"].get(shapes, 0) + 1
            if record["calls"][shapes] <= warmup:
                if stand_in:
                    return fn(*args)
                side_stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side_stream):
                    outputs = fn(*args)
                torch.cuda.current_stream().wait_stream(side_stream)
                return outputs
            record["shapes"], record["inputs"] = shapes, [x.clone() if isinstance(x, torch.Tensor) else x for x in leaves]
            try:
                record["replay"], outputs = capture(record["inputs"], spec)
                return outputs
            except RuntimeError as e:  # an op that cannot be captured; a failed capture's own error hides it as __context__
                cause = e.__context__ or e
                print(f"warning: {getattr(fn, '__name__', fn)} runs without a CUDA graph "
                      f"({type(cause).__name__}: {' '.join(str(cause).split())[:300]})", file=sys.stderr, flush=True)
                record["replay"] = None
        if record["replay"] is None or shapes != record["shapes"]:
            return fn(*args)
        for static, x in zip(record["inputs"], leaves):
            if isinstance(x, torch.Tensor):
                static.copy_(x)
        return record["replay"]()

    return call


class Adam:
    """Adam (Kingma & Ba 2015) as torch.optim.Adam computes it (its defaults; weight decay as its L2 term) in tensor ops,
    the step count on the device: torch.optim's step() breaks a compiled graph and counts steps on the host."""

    def __init__(self, params, lr: float, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8):
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.weight_decay = list(weight_decay) if isinstance(weight_decay, (list, tuple)) else [weight_decay] * len(self.params)
        self.step_count = torch.zeros((), device=self.params[0].device)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, grads):
        grads = [torch.add(g, p, alpha=decay) if decay else g for g, p, decay in zip(grads, self.params, self.weight_decay)]
        beta1, beta2 = self.betas
        self.step_count += 1
        torch._foreach_lerp_(self.exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(self.exp_avg_sq, beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, (1 - beta2 ** self.step_count).sqrt())
        torch._foreach_add_(denom, self.eps)
        updates = torch._foreach_div(self.exp_avg, denom)
        torch._foreach_mul_(updates, self.lr / (1 - beta1 ** self.step_count))
        torch._foreach_sub_(self.params, updates)

    def minimize(self, loss: torch.Tensor):  # each seed's loss's own gradient: no loss reads another seed's weights
        self.step(torch.autograd.grad(loss.sum(), self.params))

    def state_dict(self) -> dict:
        return {"step": self.step_count.clone(), "exp_avg": [t.clone() for t in self.exp_avg],
                "exp_avg_sq": [t.clone() for t in self.exp_avg_sq]}

    @torch.no_grad()
    def load_state_dict(self, state: dict):  # in place: a captured CUDA graph keeps reading these tensors
        self.step_count.copy_(state["step"])
        torch._foreach_copy_(self.exp_avg, [t.to(self.step_count.device) for t in state["exp_avg"]])
        torch._foreach_copy_(self.exp_avg_sq, [t.to(self.step_count.device) for t in state["exp_avg_sq"]])


class ProgressLine:
    """`step, what the run does, SPS, ETA, last eval` (the seeds' mean) every `every` seconds (and when `force`). The ETA:
    the steps left at their phase's own pace (random actions, then learning; long work left out), plus the long work to
    come (`work`, name: (first step, period)) at its measured mean, each once timed (until then it says so). What it has
    timed goes to `record` (a path, and the settings it holds for) at each line: the next run's expected duration."""

    def __init__(self, total: int, learning_starts: int, work: dict, step: int, record=None, every: float = 10.0):
        self.total, self.learning_starts, self.work, self.step, self.record, self.every = total, learning_starts, work, step, record, every
        self.last, self.clock, self.seconds, self.counts, self.paces = 0.0, None, {}, {}, {}  # clock: (time, step, long work's seconds)
        self.busy = None  # when the long work under way began

    def timed(self, name: str, seconds: float):  # long work `name` took `seconds`
        self.seconds[name], self.counts[name], self.busy = self.seconds.get(name, 0.0) + seconds, self.counts.get(name, 0) + 1, None

    def remaining(self, step: int, paces: dict, means: dict) -> tuple[Optional[float], list]:
        """Seconds from `step` to the end at `paces` (phase: seconds per step) and `means` (long work: seconds), or None
        and what is not timed yet."""
        steps = {"random": max(0, self.learning_starts - step), "learning": max(0, self.total - max(step, self.learning_starts))}
        steps.update({name: len(range(max(step, start) + (start - max(step, start)) % every, self.total + (name == "eval"), every))
                      for name, (start, every) in self.work.items() if every})  # the final evaluation follows the last step
        untimed = [name for name, n in steps.items() if n and name not in {**paces, **means}]
        return None if untimed else sum(n * {**paces, **means}[name] for name, n in steps.items() if n), untimed

    @staticmethod
    def duration(seconds: float) -> str:
        return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h" if seconds < 172_800 else f"{seconds / 86400:.1f} days"

    def __call__(self, step: int, eval_returns: np.ndarray, doing: Optional[str] = None, force: bool = False):
        now, worked, phase = time.time(), sum(self.seconds.values()), "random" if step <= self.learning_starts else "learning"
        if self.clock is None or step == self.learning_starts + 1 > self.clock[1]:  # a phase's pace from its first step done
            self.clock = (now, step, worked)  # (the first learning step compiles, captures graphs: not the pace)
        self.step = step
        if not force and now - self.last < self.every:
            return
        self.last, (since, first, worked_before) = now, self.clock
        if step > first:  # long work left out: that done (`worked`) and that under way
            self.paces[phase] = (now - since - (worked - worked_before) - (now - self.busy if self.busy else 0)) / (step - first)
        means = {name: self.seconds[name] / self.counts[name] for name in self.counts}
        seconds, untimed = self.remaining(step, self.paces, means)
        if seconds is not None:
            eta = self.duration(seconds)
        elif untimed[0] == "learning" and phase in self.paces and step < self.learning_starts:  # in the random phase
            eta = f"{self.duration((self.learning_starts - step) * self.paces[phase])} to the end of the random phase, learning not timed yet"
        else:
            work = [name for name in untimed if name in self.work]
            eta = f"estimating until the first {work[0].replace('_', ' ')} is timed" if work else "estimating"
        sps = (step - first) / (now - since) if now > since and step > first else 0
        print(f"step {step}/{self.total} ({100 * step / self.total:.1f}%) | {doing or phase} | SPS {sps:.3g} | ETA {eta} | last eval "
              f"return {np.mean(eval_returns):.1f}" + (f" (mean of {len(eval_returns)} seeds)" if len(eval_returns) > 1 else ""), flush=True)
        if self.record and self.paces:
            with contextlib.suppress(OSError), open(self.record[0], "w") as file:
                json.dump({"settings": self.record[1], "paces": self.paces, "means": means}, file)


if __name__ == "__main__":
    main(parse_args())
