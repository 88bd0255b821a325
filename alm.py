# ALM (Ghugare et al. 2023, "Simplifying Model-based RL"), the Dyna-style DDPG-based algorithm of "Stealing That Free Lunch"
# (arXiv 2412.14312): an encoder, a latent model and a policy trained with one objective, on td3.py's skeleton
# Read top to bottom: the settings, the networks, the update and the training loop (main); then, below "The harness",
# what every script shares (run directories, checkpoints, logs, the progress line): the same text in each.
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
from utils.envs import is_dmc


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

    # the algorithm: ALM's hyperparameters (the paper's defaults)
    learning_starts: int = 5000  # uniformly random actions before learning starts (official ALM: explore_steps 5000)
    buffer_size: int = 100_000  # replay buffer capacity (official ALM: env_buffer_size 1e5; 1e6 for Humanoid)
    gamma: float = 0.99  # discount factor (paper: 0.99)
    tau: float = 0.005  # soft-update rate of the target encoder and target critics, every gradient update (ALM: 0.005)
    batch_size: int = 512  # minibatch size of each gradient update, in sequences for the model objective (ALM: 512)
    model_lr: float = 1e-4  # Adam learning rate of encoder and latent model (ALM: 1e-4)
    reward_lr: float = 1e-4  # Adam learning rate of the reward network and the classifier (ALM: 1e-4)
    policy_lr: float = 1e-4  # Adam learning rate of the actor (ALM: 1e-4)
    q_lr: float = 1e-4  # Adam learning rate of the critics (ALM: 1e-4)
    max_grad_norm: float = 100.0  # every network's gradient is clipped to this global norm (ALM: 100)
    latent_dim: int = 50  # size of the latent state z (ALM: 50)
    hidden_dim: int = 512  # width of the two hidden layers of encoder, reward, classifier, actor and critics (ALM: 512)
    model_hidden_dim: int = 1024  # width of the two hidden layers of the latent model (ALM: 1024)
    horizon: int = 3  # K: latent-model steps in the model objective and in the actor's imagined rollouts (ALM: seq_len 3)
    return_lambda: float = 0.95  # lambda of the actor's lambda-returns over imagined rollouts (ALM: 0.95)
    lambda_cost: float = 0.1  # weight of the classifier's log p(real)/p(model) reward in the actor's returns (ALM: 0.1)
    exploration_noise_start: float = 1.0  # std of the policy's Gaussian noise when learning starts, in the [-1, 1] action units (ALM: 1.0)
    exploration_noise_end: float = 0.1  # std of the policy's Gaussian noise after the decay (ALM: 0.1)
    exploration_noise_steps: int = 100_000  # env steps after learning_starts over which the std decays linearly from start to end (ALM: 100k)
    noise_clip: float = 0.3  # policy noise in critic targets and actor losses is clipped to +-this, in the [-1, 1] action units (ALM: 0.3)
    synthetic_rollouts: bool = True
    """the actor ascends lambda-returns of K-step latent-model rollouts; off = it ascends Q(z, pi(z)) on encoded real states only"""
    replay_ratio: int = 1  # gradient updates per environment step (ALM: 1)
    layer_norm: bool = False  # LayerNorm also after the critics' second hidden layer (ALM's critics always have one after the first; off by default)
    reset_interval: int = 0
    """every this many env steps re-initialize every network (encoder, model, reward, classifier, actor, critics), targets and optimizers (paper: 128k; 0 = off)"""

    # the run's harness, not the algorithm: evaluation, logging, checkpoints, video, tracking, device, compile
    eval_interval: int = 5000  # evaluate at step 0 and every this many env steps (paper: 5000)
    eval_episodes: int = 10  # deterministic evaluation episodes per evaluation (paper: 10)
    log_interval: int = 100  # log training losses every this many env steps
    log_dir: str = "runs"
    """TensorBoard logs go to {log_dir}/{run_name}, one run directory per seed ("{seed}" in it: that seed's number)"""
    checkpoint_interval: int = 2500  # save a checkpoint every this many env steps (0 = only on SIGTERM/SIGINT)
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


def rsample(mean, std):
    """A reparameterized sample of N(mean, std^2): gradients flow to mean and std."""
    return mean + std * torch.randn_like(mean)


def gaussian_kl(mean1, std1, mean2, std2):
    """KL(N(mean1, std1^2) || N(mean2, std2^2)) of diagonal Gaussians, summed over the last dimension."""
    return (torch.log(std2 / std1) + (std1 ** 2 + (mean1 - mean2) ** 2) / (2 * std2 ** 2) - 0.5).sum(-1)


def seed_batched(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`net` (seeds, batch, in) -> (seeds, batch, out) on x (seeds, ..., in): the dimensions between seeds and features
    flattened into its batch and restored after."""
    return net(x.flatten(1, -2)).unflatten(1, x.shape[1:-1])


class GaussianMLP(nn.Module):
    """Encoder q(z|s) and latent model m(z'|z,a) of every seed, (seeds, ..., in) -> (seeds, ..., latent) twice: two ELU
    hidden layers, a diagonal Gaussian with the mean softly bounded to +-30 and the std softly bounded to [0.1, 10]
    (official ALM). ALM's initialization: orthogonal weights (gain 1), zero biases."""

    def __init__(self, in_dim: int, hidden_dim: int, latent_dim: int, num_seeds: int):
        super().__init__()
        self.net = nn.Sequential(VectorizedLinear(in_dim, hidden_dim, num_seeds, gain=1.0), nn.ELU(),
                                 VectorizedLinear(hidden_dim, hidden_dim, num_seeds, gain=1.0), nn.ELU(),
                                 VectorizedLinear(hidden_dim, 2 * latent_dim, num_seeds, gain=1.0))

    def forward(self, x):
        mean, std = seed_batched(self.net, x).chunk(2, -1)
        std = 10.0 - F.softplus(10.0 - std)
        return 30 * torch.tanh(mean / 30), 0.1 + F.softplus(std - 0.1)


class LatentMLP(nn.Module):
    """Reward r(z,a) (1 output) and classifier C(z,a,z') (2 logits) of every seed, (seeds, ..., in) -> (seeds, ..., out):
    Dense -> LayerNorm (torch's epsilon 1e-5) -> Tanh, Dense -> ELU, Dense; orthogonal weights (gain 1), zero biases."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_seeds: int):
        super().__init__()
        self.net = nn.Sequential(VectorizedLinear(in_dim, hidden_dim, num_seeds, gain=1.0),
                                 VectorizedLayerNorm(hidden_dim, num_seeds, eps=1e-5), nn.Tanh(),
                                 VectorizedLinear(hidden_dim, hidden_dim, num_seeds, gain=1.0), nn.ELU(),
                                 VectorizedLinear(hidden_dim, out_dim, num_seeds, gain=1.0))

    def forward(self, *inputs):
        return seed_batched(self.net, torch.cat(inputs, -1))


def classifier_reward(classifier, z, a, z_next):
    """log p(real | z, a, z') - log p(model | z, a, z'): the classifier's estimate of log q(z'|s') / m(z'|z,a)."""
    logits = classifier(z, a, z_next)
    return logits[..., 1] - logits[..., 0]


class QNetwork(nn.Module):
    """The twin critics Q1, Q2 on latents of every seed as one module: every layer holds them all, so the math below is
    written once. ALM's initialization: orthogonal weights (gain 1), zero biases."""

    def __init__(self, latent_dim: int, act_dim: int, hidden_dim: int, layer_norm: bool, num_seeds: int, num_critics: int = 2):
        super().__init__()
        self.num_seeds, members = num_seeds, num_seeds * num_critics
        self.fc1 = VectorizedLinear(latent_dim + act_dim, hidden_dim, members, gain=1.0)
        self.fc2 = VectorizedLinear(hidden_dim, hidden_dim, members, gain=1.0)
        self.fc3 = VectorizedLinear(hidden_dim, 1, members, gain=1.0)
        # official ALM's own: Dense -> LayerNorm (torch's, epsilon 1e-5: models.py:97, 102) -> Tanh, Dense -> ELU
        self.norm1 = VectorizedLayerNorm(hidden_dim, members, eps=1e-5)
        self.norm2 = VectorizedLayerNorm(hidden_dim, members) if layer_norm else nn.Identity()

    def forward(self, z, a):
        x = torch.cat([z, a], -1).flatten(1, -2)  # (seeds, batch, latent + act), any dims before the batch's folded into it
        x = torch.tanh(self.norm1(self.fc1(x)))
        x = F.elu(self.norm2(self.fc2(x)))
        return self.fc3(x).view(self.num_seeds, -1, *z.shape[1:-1]).movedim(1, -2)  # (seeds, ..., num_critics, batch)


class Actor(nn.Module):
    """Deterministic policy on latents, one per seed, (seeds, batch, latent) -> (seeds, batch, act): tanh output, the
    action space [-1, 1] that make_env gives every env. ALM's initialization: orthogonal weights (gain 1), zero biases."""

    def __init__(self, env, latent_dim: int, hidden_dim: int, num_seeds: int):
        super().__init__()
        act_dim = np.prod(env.action_space.shape)
        self.fc1 = VectorizedLinear(latent_dim, hidden_dim, num_seeds, gain=1.0)
        self.fc2 = VectorizedLinear(hidden_dim, hidden_dim, num_seeds, gain=1.0)
        # tanh's (-1, 1) is the action space: make_env rescales every env to it
        self.fc_mu = VectorizedLinear(hidden_dim, act_dim, num_seeds, gain=1.0)

    def forward(self, z):
        x = F.elu(self.fc1(z))
        x = F.elu(self.fc2(x))
        return torch.tanh(self.fc_mu(x))

    def sample(self, z, std: float, clip: Optional[float] = None):
        """pi(z) plus Gaussian noise (std, the same for every seed, clipped to +-clip), clamped to [-1, 1] with a
        straight-through gradient (official ALM's TruncatedNormal)."""
        mean = self(z)
        noise = torch.randn_like(mean) * std
        if clip is not None:
            noise = noise.clamp(-clip, clip)
        action = mean + noise
        return action + (action.clamp(-1, 1) - action).detach()



def main(args: Args):
    run = Run(args)  # the harness (below): run directories, seeding, device, envs, TensorBoard, W&B, checkpoints, Ctrl-C
    env, device, seeds = run.envs[0], run.device, run.seeds
    obs_dim, act_dim = np.prod(env.observation_space.shape), np.prod(env.action_space.shape)

    # ALGO LOGIC: initialize agent here
    # each seed's weights (every weight has a leading seed axis) drawn from a seed of its own (seed + 20_000)
    encoder, model, reward_net, classifier, actor, qf = init_per_seed(lambda num_seeds: (
        GaussianMLP(obs_dim, args.hidden_dim, args.latent_dim, num_seeds).to(device),
        GaussianMLP(args.latent_dim + act_dim, args.model_hidden_dim, args.latent_dim, num_seeds).to(device),
        LatentMLP(args.latent_dim + act_dim, args.hidden_dim, 1, num_seeds).to(device),
        LatentMLP(2 * args.latent_dim + act_dim, args.hidden_dim, 2, num_seeds).to(device),
        Actor(env, args.latent_dim, args.hidden_dim, num_seeds).to(device),
        QNetwork(args.latent_dim, act_dim, args.hidden_dim, args.layer_norm, num_seeds).to(device)), [seed + 20_000 for seed in seeds])
    encoder_target, qf_target = copy.deepcopy(encoder), copy.deepcopy(qf)
    model_optimizer = Adam([*encoder.parameters(), *model.parameters()], lr=args.model_lr)
    reward_optimizer = Adam([*reward_net.parameters(), *classifier.parameters()], lr=args.reward_lr)
    q_optimizer = Adam(qf.parameters(), lr=args.q_lr)
    actor_optimizer = Adam(actor.parameters(), lr=args.policy_lr)
    rb = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device, len(seeds))

    def exploration_std(step: int) -> float:
        """Policy noise std, the same for every seed: linear from exploration_noise_start at learning_starts to
        exploration_noise_end."""
        progress = min((step - args.learning_starts) / args.exploration_noise_steps, 1.0)
        return args.exploration_noise_start + progress * (args.exploration_noise_end - args.exploration_noise_start)

    def clip_grad_step(optimizer, loss):
        """One clipped Adam step on each seed's `loss` (seeds,): every ALM network clips its gradient norm to
        max_grad_norm, as clip_grad_norm_ does, each seed's norm over its own slice of the stacked parameters; from
        the gradients of the optimizer's own parameters only: no other network's weights get one, though the loss
        may run through them."""
        grads = torch.autograd.grad(loss.sum(), optimizer.params)
        per_seed = [g.reshape(len(seeds), -1) for g in grads]  # seed-major: a seed's members are its rows
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dim=1) for g in per_seed]), dim=0)
        scale = (args.max_grad_norm / (norm + 1e-6)).clamp(max=1.0)[:, None]
        optimizer.step([(g * scale).view_as(grad) for g, grad in zip(per_seed, grads)])

    def update(data, std: torch.Tensor, measure: bool = False) -> dict:
        """One gradient update of the encoder and latent model (the ALM objective), reward and classifier, critics,
        actor and targets on `data`: a minibatch of sequences (horizon, batch, ...) and one of transitions (batch, ...);
        `std`: the policy noise (a tensor, so that its decay recompiles nothing). Written for one seed: with
        --num-seeds every tensor carries a seed axis in front, which no line here names (each seed's loss is its own;
        clip_grad_step steps each seed on its own loss's gradient). Returns the losses, with `measure` the latent
        model's error too."""
        (seq_obs, seq_actions, seq_next_obs), (obs, actions, rewards, next_obs, terminations) = data
        # the ALM objective, its K-step lower bound on returns: encoder and latent model maximize
        # sum_t [r(z_t, a_t) - KL(m(.|z_t, a_t) || q_target(.|s_t+1))] + Q(z_K, pi(z_K)) (undiscounted, as in the official code), z_t+1 drawn from the model
        with torch.no_grad():
            next_mean, next_std = (x.unbind(-3) for x in encoder_target(seq_next_obs))  # each step's (batch, latent)
        z, latents, kl = rsample(*encoder(seq_obs[..., 0, :, :])), [], 0.0
        for t, action in enumerate(seq_actions.unbind(-3)):
            latents.append(z)
            prior_mean, prior_std = model(torch.cat([z, action], -1))
            kl = kl + gaussian_kl(prior_mean, prior_std, next_mean[t], next_std[t])
            z = rsample(prior_mean, prior_std)
        with torch.no_grad():
            last_actions = actor.sample(z, std, args.noise_clip)
        model_rewards = reward_net(torch.stack(latents, -3), seq_actions).squeeze(-1).sum(-2)
        alm_loss = (kl - model_rewards - qf(z, last_actions).min(-2).values).mean(-1)
        clip_grad_step(model_optimizer, alm_loss)

        with torch.no_grad():  # the rest learns on latents of the target encoder, a fresh sample for each use
            z_dist, z_next_dist = encoder_target(obs), encoder_target(next_obs)
            z_next_model = rsample(*model(torch.cat([rsample(*z_dist), actions], -1)))

        # reward regression, and the classifier: real next latents (label 1) vs the model's (label 0), half each
        z = rsample(*z_dist)
        reward_loss = F.mse_loss(reward_net(z, actions).squeeze(-1), rewards, reduction="none").mean(-1)
        fake = torch.rand(rewards.shape, device=device).argsort(-1) < args.batch_size // 2  # a random half
        z_next = torch.where(fake.unsqueeze(-1), z_next_model, rsample(*z_next_dist))
        logits = classifier(z, actions, z_next).movedim(-1, 1)  # the 2 classes at dim 1, where cross_entropy takes them
        classifier_loss = F.cross_entropy(logits, (~fake).long(), reduction="none").mean(-1)
        clip_grad_step(reward_optimizer, reward_loss + classifier_loss)

        # twin critics on latents; target actions carry the clipped exploration noise (no target actor in ALM)
        with torch.no_grad():
            z_next = rsample(*z_next_dist)
            next_state_actions = actor.sample(z_next, std, args.noise_clip)
            qf_next_target = qf_target(z_next, next_state_actions).min(-2).values
            next_q_value = rewards + (1 - terminations) * args.gamma * qf_next_target

        qf_values = qf(rsample(*z_dist), actions)  # (critics, batch): Q1 and Q2
        qf_loss = F.mse_loss(qf_values, next_q_value.unsqueeze(-2).expand_as(qf_values), reduction="none").mean((-2, -1))  # the twin losses' mean
        clip_grad_step(q_optimizer, qf_loss)

        z = rsample(*z_dist)
        if args.synthetic_rollouts:
            # imagined K-step latent rollouts (ALM's policy objective): lambda-returns of r + lambda_cost * classifier
            # reward, bootstrapped by min Q; gradients reach the actor through model, reward and classifier
            latents, imagined_actions = [z], []
            for t in range(args.horizon + 1):
                imagined_actions.append(actor.sample(latents[-1].detach(), std, args.noise_clip))
                if t < args.horizon:
                    latents.append(rsample(*model(torch.cat([latents[-1], imagined_actions[-1]], -1))))
            z_seq, a_seq = torch.stack(latents, -3), torch.stack(imagined_actions, -3)  # (horizon + 1, batch, .)
            imagined_rewards = reward_net(z_seq[..., :-1, :, :], a_seq[..., :-1, :, :]).squeeze(-1) + args.lambda_cost * \
                classifier_reward(classifier, z_seq[..., :-1, :, :], a_seq[..., :-1, :, :], z_seq[..., 1:, :, :].detach())
            r, q = imagined_rewards.unbind(-2), qf(z_seq, a_seq.detach()).min(-2).values.unbind(-2)  # steps 0..K-1, 0..K
            returns, ret = [], q[-1]
            for t in reversed(range(args.horizon)):  # G_t = r_t + gamma ((1 - lambda) Q_t+1 + lambda G_t+1)
                ret = r[t] + args.gamma * ((1 - args.return_lambda) * q[t + 1] + args.return_lambda * ret)
                returns.insert(0, ret)
            discounts = args.gamma ** torch.arange(args.horizon, device=device)
            actor_loss = -(discounts[:, None] * torch.stack(returns, -2)).mean((-2, -1))
        else:  # no synthetic rollouts: the actor ascends min Q on encoded real states only
            actor_loss = -qf(z, actor.sample(z, std, args.noise_clip)).min(-2).values.mean(-1)
        clip_grad_step(actor_optimizer, actor_loss)

        with torch.no_grad():  # the target networks' soft update (one fused op over all parameters)
            torch._foreach_lerp_(list(encoder_target.parameters()) + list(qf_target.parameters()),
                                 list(encoder.parameters()) + list(qf.parameters()), args.tau)

        metrics = {"alm_loss": alm_loss, "kl": kl, "reward_loss": reward_loss, "classifier_loss": classifier_loss,
                   "qf_values": qf_values, "qf_loss": qf_loss, "actor_loss": actor_loss}
        if measure:  # the model's mean from the real latent vs the target encoder's of the real next state
            with torch.no_grad():
                predicted = model(torch.cat([z_dist[0], actions], -1))[0]
                metrics["latent_error"] = ((predicted - z_next_dist[0]).norm(dim=-1) / z_next_dist[0].norm(dim=-1)).mean(-1)
        return {name: value.detach() for name, value in metrics.items()}

    update = run.accelerate(update)  # --compile: one graph; on a GPU, one CUDA graph launch instead of ~250 kernels

    agent = (encoder, encoder_target, model, reward_net, classifier, actor, qf, qf_target,
             model_optimizer, reward_optimizer, q_optimizer, actor_optimizer)  # what the update changes
    checkpointed, guarded_networks = {"agent": agent, "rb": rb}, {"encoder": encoder, "model": model, "qf": qf, "actor": actor}
    # the paper's resets return every network and target to these initial weights, with fresh optimizers (ALM keeps
    # no target actor: the critics' targets use the online one)
    initial_agent = copy.deepcopy(state_of(agent))

    def policy(x):  # the deterministic policy, for videos: the encoder's mean latent, the actor's mean action
        return actor(encoder(x)[0])

    if run.checkpoint:
        if len(run.checkpoint["loop"]) != 4:  # alm.py before issue 18 kept an update count in it
            sys.exit(f"error: {args.resume!r} was written by an older alm.py (its loop state holds an update count) and "
                     f"cannot be resumed exactly; start a new run")
        obs, episode_returns, episode_lengths, last_evals = run.restore(checkpointed)
    else:  # TRY NOT TO MODIFY: start the game
        obs = np.stack([env.reset(seed=seed)[0] for env, seed in zip(run.envs, seeds)])
        episode_returns, episode_lengths, last_evals = np.zeros(len(seeds)), np.zeros(len(seeds), dtype=int), np.full(len(seeds), np.nan)

    for global_step in range(run.start_step, args.total_timesteps):
        if global_step % args.eval_interval == 0:
            last_evals = run.log_eval(global_step, lambda: evaluate(encoder, actor, qf, run.eval_envs, args, run.status), policy)

        # ALGO LOGIC: put action logic here
        if global_step < args.learning_starts:
            actions = np.stack([env.action_space.sample() for env in run.envs])
        else:
            with torch.no_grad():  # a sampled latent, the actor's action plus decaying Gaussian noise (official ALM), every seed's in one forward pass
                z = rsample(*encoder(torch.as_tensor(obs, dtype=torch.float32, device=device)[:, None]))
                actions = actor.sample(z, exploration_std(global_step))
            actions = actions[:, 0].cpu().numpy()

        # TRY NOT TO MODIFY: execute the game and log data.
        next_obs, rewards, terminations, truncations, _ = (np.stack(x) for x in zip(*(env.step(a) for env, a in zip(run.envs, actions))))
        episode_returns += rewards
        episode_lengths += 1

        # TRY NOT TO MODIFY: save data to replay buffer; time-limit truncations are bootstrapped (only `terminated` cuts)
        rb.add(obs[:, None], actions[:, None], rewards[:, None], next_obs[:, None], terminations[:, None].astype(float),
               (terminations | truncations)[:, None].astype(float))

        # TRY NOT TO MODIFY: CRUCIAL step easy to overlook
        obs = next_obs
        for k in np.flatnonzero(terminations | truncations):
            run.writers[k].add_scalar("charts/episodic_return", episode_returns[k], global_step)
            run.writers[k].add_scalar("charts/episodic_length", episode_lengths[k], global_step)
            obs[k], _ = run.envs[k].reset()
            episode_returns[k], episode_lengths[k] = 0.0, 0

        # ALGO LOGIC: training.
        if global_step >= args.learning_starts:
            std = torch.tensor(exploration_std(global_step), device=device)
            for i in range(args.replay_ratio):
                data = rb.sample_sequences(args.batch_size, args.horizon), rb.sample(args.batch_size)
                measure = global_step % args.log_interval == 0 and i == args.replay_ratio - 1  # the logged update's
                metrics = update(data, std, measure)
            guarded = {name: metrics[name] for name in ("alm_loss", "qf_loss", "actor_loss")}
            if global_step % args.log_interval == 0:
                run.log({"model/latent_error": metrics["latent_error"], "losses/alm_loss": metrics["alm_loss"],
                         "losses/kl": metrics["kl"].mean(-1) / args.horizon, "losses/reward_loss": metrics["reward_loss"],
                         "losses/classifier_loss": metrics["classifier_loss"], "losses/qf_values": metrics["qf_values"],
                         "losses/qf_loss": metrics["qf_loss"], "losses/actor_loss": metrics["actor_loss"],
                         "charts/exploration_noise": std.item()}, global_step)
                run.check_finite(guarded, guarded_networks, global_step)

        # periodic resets against plasticity loss (paper Sec. 5): networks anew, buffer kept
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
        last_evals = run.log_eval(args.total_timesteps, lambda: evaluate(encoder, actor, qf, run.eval_envs, args, run.status), policy)
    run.finish(last_evals, policy)


def evaluate(encoder, actor, qf, eval_envs: list, args: Args, status):
    """Each seed's mean return of deterministic episodes on its eval env, and the critic's Q(s0, pi(s0)) beside the
    Monte-Carlo discounted return from s0 (the paper's over/under-estimation gauge). The seeds' episodes run in step
    (one forward pass for all), a seed that is done waiting for the others."""
    num_seeds, device = len(eval_envs), next(actor.parameters()).device

    def policy(obs):
        with torch.no_grad():  # deterministic: the encoder's mean latent, the actor's mean action
            return actor(encoder(torch.as_tensor(obs, dtype=torch.float32, device=device)[:, None])[0])

    def reset():
        return np.stack([eval_env.reset()[0] for eval_env in eval_envs]), np.zeros(num_seeds, dtype=bool)

    def step(actions, live):  # the seeds still in an episode; their rewards (0 for the others)
        rewards = np.zeros(num_seeds)
        for k in np.flatnonzero(live):
            obs[k], rewards[k], terminated, truncated, _ = eval_envs[k].step(actions[k])
            done[k] = terminated or truncated
        return rewards

    returns, q_estimates, mc_returns = (np.zeros((args.eval_episodes, num_seeds)) for _ in range(3))
    for episode in range(args.eval_episodes):
        status(f"evaluating: episode {episode + 1} of {args.eval_episodes}")
        (obs, done), discount = reset(), np.ones(num_seeds)
        with torch.no_grad():
            z0 = encoder(torch.as_tensor(obs, dtype=torch.float32, device=device)[:, None])[0]
            q_estimates[episode] = qf(z0, actor(z0)).min(1).values[:, 0].cpu().numpy()  # min over the twin, as in the target
        while not done.all():
            live = ~done
            rewards = step(policy(obs)[:, 0].cpu().numpy(), live)
            returns[episode] += rewards
            mc_returns[episode] += discount * rewards
            discount = np.where(live, discount * args.gamma, discount)
    return returns.mean(0), q_estimates.mean(0), mc_returns.mean(0)


class ReplayBuffer:
    """One FIFO buffer of transitions per seed, filled in step, as one tensor per field with a leading seed axis:
    preallocated on the training device and sampled there (no host round trip), each seed its own minibatch.
    `episode_ends` marks the last transition of each episode (terminated or truncated), so sequences stay inside one."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device, num_seeds: int):
        self.capacity, self.size, self.pos = capacity, 0, 0
        try:
            self.obs = torch.empty((num_seeds, capacity, obs_dim), device=device)
            self.actions = torch.empty((num_seeds, capacity, act_dim), device=device)
            self.rewards = torch.empty((num_seeds, capacity), device=device)
            self.next_obs = torch.empty((num_seeds, capacity, obs_dim), device=device)
            self.terminations = torch.empty((num_seeds, capacity), device=device)
            self.episode_ends = torch.empty((num_seeds, capacity), device=device)
        except (RuntimeError, MemoryError):  # a --buffer-size beyond the device's memory
            sys.exit(f"error: cannot allocate a buffer of {num_seeds} x {capacity} transitions "
                     f"({num_seeds * capacity * (2 * obs_dim + act_dim + 3) * 4 / 1e9:.1f} GB) on {device}; lower --buffer-size")
        self.seeds = torch.arange(num_seeds, device=device)[:, None]  # row index of each seed's minibatch

    fields = ("obs", "actions", "rewards", "next_obs", "terminations", "episode_ends")

    def add(self, obs, actions, rewards, next_obs, terminations, episode_ends):
        """Add a batch of transitions for every seed (seeds, number of transitions, ...)."""
        idx = (self.pos + torch.arange(len(obs[0]), device=self.obs.device)) % self.capacity
        for name, value in zip(self.fields, (obs, actions, rewards, next_obs, terminations, episode_ends)):
            storage = getattr(self, name)
            storage[:, idx] = torch.as_tensor(value, dtype=storage.dtype, device=storage.device)
        self.pos = (self.pos + len(obs[0])) % self.capacity
        self.size = min(self.size + len(obs[0]), self.capacity)

    def state_dict(self) -> dict:
        """The filled rows only, so a young run's checkpoint stays small."""
        return {"size": self.size, "pos": self.pos, **{name: getattr(self, name)[:, : self.size].to("cpu", copy=True) for name in self.fields}}

    def load_state_dict(self, state: dict):
        self.size, self.pos = state["size"], state["pos"]
        for name in self.fields:
            getattr(self, name)[:, : self.size] = state[name]

    def sample(self, batch_size: int):
        """A minibatch (seeds, batch_size, ...): each seed's own indices into its own transitions."""
        idx = torch.randint(0, self.size, (len(self.seeds), batch_size), device=self.obs.device)
        return (self.obs[self.seeds, idx], self.actions[self.seeds, idx], self.rewards[self.seeds, idx],
                self.next_obs[self.seeds, idx], self.terminations[self.seeds, idx])

    def sample_sequences(self, batch_size: int, length: int):
        """For every seed `batch_size` runs of `length` consecutive transitions from one episode each, at its own
        indices: obs, actions, next_obs as (seeds, length, batch, dim). An episode may end at a run's last transition
        only (official ALM's sample_seq)."""
        oldest = (self.pos - self.size) % self.capacity
        offsets = torch.arange(length, device=self.obs.device)
        start = torch.randint(0, self.size - length + 1, (len(self.seeds), batch_size), device=self.obs.device)
        while True:  # redraw the runs that cross an episode end (a handful at most)
            idx = (oldest + start[..., None] + offsets) % self.capacity  # (seeds, batch, length)
            crossing = self.episode_ends[self.seeds[..., None], idx[..., :-1]].any(-1)
            if not crossing.any():
                break
            start[crossing] = torch.randint(0, self.size - length + 1, (int(crossing.sum()),), device=self.obs.device)
        idx = idx.transpose(1, 2)  # (seeds, length, batch)
        rows = self.seeds[..., None]
        return self.obs[rows, idx], self.actions[rows, idx], self.next_obs[rows, idx]


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
        ("latent_dim", 1, ""), ("model_hidden_dim", 1, ""), ("horizon", 1, ""), ("exploration_noise_steps", 1, ""),
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
        (not all(0 < lr < math.inf for lr in (args.model_lr, args.reward_lr, args.policy_lr, args.q_lr)),
         f"learning rates must be finite and > 0, got {args.model_lr}, {args.reward_lr}, {args.policy_lr} and {args.q_lr}"),
        (not 0 < args.max_grad_norm < math.inf, f"--max-grad-norm must be finite and > 0, got {args.max_grad_norm}"),
        (args.learning_starts < args.horizon, f"--learning-starts must be >= --horizon ({args.horizon}) to sample a first sequence, got {args.learning_starts}"),
        (not 0 <= args.return_lambda <= 1, f"--return-lambda must be in [0, 1], got {args.return_lambda}"),
        (not 0 <= args.lambda_cost < math.inf, f"--lambda-cost must be finite and >= 0, got {args.lambda_cost}"),
        (not all(0 <= noise < math.inf for noise in (args.exploration_noise_start, args.exploration_noise_end)),
         f"exploration noise must be finite and >= 0, got {args.exploration_noise_start} and {args.exploration_noise_end}"),
        (not 0 <= args.noise_clip < math.inf, f"--noise-clip must be finite and >= 0, got {args.noise_clip}"),
    ]
    for bad, message in errors:
        if bad:
            sys.exit(f"error: {message}")


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
