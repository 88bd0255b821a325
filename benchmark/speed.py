"""SAC update throughput on this machine: sac.py's fused twin critic beside a naive two-copy twin critic.

    python benchmark/speed.py                      # Hopper-v5 sizes, batch 256, CPU, 1 thread
    python benchmark/speed.py --env dmc:walker-walk --updates 500 --rounds 5
    python benchmark/speed.py --mbpo-steps 250      # also mbpo.py end to end: env steps/s and its time split

Both variants run the same SAC update (sac.py's networks and losses; only the critic module and its optimizer
differ) and are timed in alternating rounds within one process, so machine load hits both alike: compare the ratio,
not the absolute numbers. The naive critic is the textbook form (CleanRL's): two separate MLPs evaluated one after
the other, and Adam's per-parameter loop. Also prints the fp32 matmul rate (256x256) measured in the same run.
With --mbpo-steps N it then runs `mbpo.py` itself (paper defaults: replay ratio 20, model retrained every 250 steps
for 5000 gradient steps, 400 rollouts per step) for N learning steps after 1000 random ones, and prints its env
steps/s and where the time went.
"""
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import sac  # noqa: E402
from utils import make_env  # noqa: E402


@dataclass
class Args:
    env: str = "Hopper-v5"
    """env whose observation/action sizes set the network shapes"""
    batch_size: int = 256
    """minibatch size of each update (paper: 256)"""
    updates: int = 300
    """updates per timed round"""
    rounds: int = 5
    """alternating rounds per variant; the median round is reported"""
    torch_threads: int = 1
    """CPU threads for torch (as the scripts' --torch-threads)"""
    mbpo_steps: int = 0
    """if > 0, also time mbpo.py end to end for this many learning steps (250 = one model retrain and its steps)"""


class TwoCopyCritic(nn.Module):
    """The textbook twin critic: two independent MLPs, each layer written and run twice."""

    def __init__(self, env, hidden_dim: int):
        super().__init__()
        in_dim = env.observation_space.shape[0] + env.action_space.shape[0]

        def mlp():
            return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                                 nn.Linear(hidden_dim, 1))

        self.q1, self.q2 = mlp(), mlp()

    def forward(self, x, a):
        x = torch.cat([x, a], -1)
        return torch.stack([self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)])


def make_update(env, make_critic, fused: bool, batch_size: int):
    """One SAC update as in sac.py (critic, actor, temperature, target), on a fixed random batch."""
    actor, critic, critic_target = sac.Actor(env, 256), make_critic(), make_critic()
    critic_target.load_state_dict(critic.state_dict())
    q_optimizer = torch.optim.Adam(critic.parameters(), lr=3e-4, foreach=fused)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=3e-4, foreach=fused)
    log_alpha = torch.zeros((), requires_grad=True)
    a_optimizer = torch.optim.Adam([log_alpha], lr=3e-4, foreach=fused)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    obs, next_obs = torch.randn(batch_size, obs_dim), torch.randn(batch_size, obs_dim)
    actions, rewards, terminations = torch.rand(batch_size, act_dim) * 2 - 1, torch.randn(batch_size), torch.zeros(batch_size)
    target_entropy = -0.5 * act_dim

    def update():
        alpha = log_alpha.exp().detach()
        with torch.no_grad():
            next_actions, next_log_pi, _ = actor.get_action(next_obs)
            target = rewards + (1 - terminations) * 0.99 * (critic_target(next_obs, next_actions).min(0).values - alpha * next_log_pi)
        q_values = critic(obs, actions)
        q_loss = F.mse_loss(q_values, target.expand_as(q_values), reduction="none").mean(1).sum()
        q_optimizer.zero_grad()
        q_loss.backward()
        q_optimizer.step()
        pi, log_pi, _ = actor.get_action(obs)
        actor_loss = (alpha * log_pi - critic(obs, pi).min(0).values).mean()
        actor_optimizer.zero_grad()
        actor_loss.backward()
        actor_optimizer.step()
        alpha_loss = (-log_alpha.exp() * (log_pi.detach() + target_entropy)).mean()
        a_optimizer.zero_grad()
        alpha_loss.backward()
        a_optimizer.step()
        with torch.no_grad():
            for param, target_param in zip(critic.parameters(), critic_target.parameters()):
                target_param.lerp_(param, 0.005)

    return update


def matmul_gflops(seconds: float = 1.0) -> float:
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            a @ b
        count += 50
    return count * 2 * 256**3 / (time.perf_counter() - start) / 1e9


if __name__ == "__main__":
    args = tyro.cli(Args)
    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(0)
    env = make_env(args.env, 0)

    variants = {
        "fused twin critic (sac.py)": make_update(env, lambda: sac.SoftQNetwork(env, 256, False), True, args.batch_size),
        "naive two-copy twin critic": make_update(env, lambda: TwoCopyCritic(env, 256), False, args.batch_size),
    }
    rates = {name: [] for name in variants}
    for update in variants.values():  # warm-up
        for _ in range(20):
            update()
    gflops = [matmul_gflops()]
    for _ in range(args.rounds):
        for name, update in variants.items():
            start = time.perf_counter()
            for _ in range(args.updates):
                update()
            rates[name].append(args.updates / (time.perf_counter() - start))
    gflops.append(matmul_gflops())

    print(f"env {args.env}, batch {args.batch_size}, {args.torch_threads} thread(s), {args.rounds} rounds of "
          f"{args.updates} updates; fp32 matmul 256x256: {statistics.mean(gflops):.0f} GFLOP/s")
    baseline = statistics.median(rates["naive two-copy twin critic"])
    print("| variant | SAC updates/s (median round) | vs naive |\n|---|---|---|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):.1f} | {statistics.median(values) / baseline:.2f}x |")

    if args.mbpo_steps > 0:
        warmup = 1000
        command = [sys.executable, str(ROOT / "mbpo.py"), "--env", args.env, "--learning-starts", str(warmup),
                   "--total-timesteps", str(warmup + args.mbpo_steps), "--eval-interval", str(10**9),
                   "--eval-episodes", "1", "--torch-threads", str(args.torch_threads), "--log-dir", "/tmp/freelunch-speed"]
        output = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
        split = next(line for line in output.splitlines() if line.startswith("time split over"))
        shares = {name: float(pct) for name, pct in re.findall(r"(\w+) ([\d.]+)%", split)}
        elapsed = float(re.search(r"over ([\d.]+) s", split).group(1))
        learning_seconds = elapsed * (shares["model_training"] + shares["rollouts"] + shares["sac_updates"]) / 100
        print(f"\nmbpo.py on {args.env}, replay ratio 20, {args.mbpo_steps} learning steps: "
              f"{args.mbpo_steps / learning_seconds:.2f} env steps/s over the learning phase ({split})")
        outside = 100 - shares["model_training"] - shares["sac_updates"]
        print(f"time outside SAC updates and model training: {outside:.1f}% (target <= 15%)")
