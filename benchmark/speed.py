"""Speed against the hardware limit: each script's gradient update and mbpo.py end to end, as fractions of what the
measured fp32 matmul peak allows, beside a textbook SAC update.

    python benchmark/speed.py                       # Hopper-v5 sizes, batch 256, CPU, 1 thread (the scripts' default)
    python benchmark/speed.py --mbpo-steps 250      # plus mbpo.py end to end (one model retrain and 250 env steps)
    python benchmark/speed.py --cuda                # on a GPU
    python benchmark/speed.py --num-seeds 1 2 4     # plus seed-steps/s of sac.py and mbpo.py with --num-seeds 1, 2, 4

What it does, in one process, so machine load hits every number alike (compare ratios, not absolute times):
1. Peak: the best fp32 matmul rate over square sizes 256, 512 and 1024, measured before and after the timing rounds.
2. Each script's own update: sac.py, td3.py, mbpo.py and alm.py are run in-process for a few steps (runpy, the user's
   code path) and their `update` function, the one their training loop calls, is timed on minibatches from their
   replay buffer (td3.py's with its policy delay, alm.py's at its own network sizes, --alm-updates per round). Its
   FLOPs are counted analytically from the layer sizes: forward 2*in*out per sample and layer, and in the backward
   pass only the gradients the loss needs (weights being trained; inputs of all but the first layer, or of every layer
   where the gradient flows on to an earlier network's output).
3. Textbook reference: the same SAC math in its textbook form (CleanRL's): two separate critic MLPs, Adam's
   per-parameter loop, torch.distributions with argument validation, a Python loop for the target update, critic
   weight gradients computed (and discarded) in the actor loss.
4. With --mbpo-steps N: mbpo.py at the paper's defaults (replay ratio 20, 5000 model steps every 250 env steps, 400
   rollouts per step) for N env steps after 1000 random ones; its env steps/s over the learning phase beside the rate
   its FLOPs per env step allow at the measured peak.
5. With --num-seeds S1 S2 ...: sac.py (--seeds-steps learning steps after 1000 random ones) and mbpo.py (--mbpo-steps,
   250 if unset) end to end with each --num-seeds, one process each at a time: seed-steps/s (env steps/s of the learning
   phase, from the run's final progress line, times the seeds) and its ratio to --num-seeds 1.
"""
import contextlib
import io
import itertools
import os
import re
import runpy
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Optional
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
    """env whose observation and action sizes set the network shapes"""
    batch_size: int = 256
    """minibatch size of each update (paper: 256)"""
    updates: int = 200
    """updates per timed round"""
    alm_updates: int = 10
    """updates per timed round of alm.py's update (at its defaults ~40 times the FLOPs of a SAC update)"""
    rounds: int = 5
    """alternating timing rounds; the median round is reported"""
    torch_threads: int = 1
    """CPU threads for torch, as the scripts' --torch-threads (peak and updates use the same count)"""
    cuda: bool = False
    """time on the GPU instead of the CPU"""
    mbpo_steps: int = 0
    """if > 0, also run mbpo.py end to end for this many learning env steps (250 = one model retrain and its steps)"""
    num_seeds: tuple[int, ...] = ()
    """if given, also run sac.py and mbpo.py end to end with each of these --num-seeds: seed-steps/s"""
    seeds_steps: int = 1000
    """learning env steps of each sac.py run of --num-seeds"""
    seeds_scripts: tuple[str, ...] = ("sac.py", "mbpo.py")
    """the scripts of the --num-seeds table (MBPO's: --mbpo-steps learning steps, 250 if unset; the others': --seeds-steps)"""
    baseline: Optional[str] = None
    """another checkout (a directory) whose scripts run beside these in the --num-seeds table, alternating, --rounds
    times each: the median rates of both and this checkout's over the baseline's"""


def forward_flops(dims: list[int]) -> int:
    """Multiply-adds x2 of one forward pass of an MLP with layer sizes `dims`, per sample."""
    return sum(2 * i * o for i, o in zip(dims[:-1], dims[1:]))


def backward_flops(dims: list[int], weights: bool, first_input: bool) -> int:
    """Per sample: weight gradients (if trained) plus input gradients of every layer but the first (unless needed)."""
    inputs = forward_flops(dims) - (0 if first_input else 2 * dims[0] * dims[1])
    return (forward_flops(dims) if weights else 0) + inputs


def sac_update_flops(obs: int, act: int, hidden: int, batch: int) -> int:
    """The FLOPs one SAC update needs: target, twin critic loss, actor loss through the frozen twin critic."""
    actor, critic = [obs, hidden, hidden, 2 * act], [obs + act, hidden, hidden, 1]
    target = forward_flops(actor) + 2 * forward_flops(critic)
    critic_loss = 2 * (forward_flops(critic) + backward_flops(critic, weights=True, first_input=False))
    actor_loss = (forward_flops(actor) + backward_flops(actor, weights=True, first_input=False)
                  + 2 * (forward_flops(critic) + backward_flops(critic, weights=False, first_input=True)))
    return batch * (target + critic_loss + actor_loss)


def td3_update_flops(obs: int, act: int, hidden: int, batch: int, policy_frequency: int = 2) -> float:
    """TD3: target (target actor, twin target critics), twin critic loss, and every policy_frequency-th update the
    actor loss through Q1 alone."""
    actor, critic = [obs, hidden, hidden, act], [obs + act, hidden, hidden, 1]
    target = forward_flops(actor) + 2 * forward_flops(critic)
    critic_loss = 2 * (forward_flops(critic) + backward_flops(critic, weights=True, first_input=False))
    actor_loss = (forward_flops(actor) + backward_flops(actor, weights=True, first_input=False)
                  + forward_flops(critic) + backward_flops(critic, weights=False, first_input=True))
    return batch * (target + critic_loss + actor_loss / policy_frequency)


def alm_update_flops(obs: int, act: int, batch: int, latent: int, hidden: int, model_hidden: int, horizon: int) -> int:
    """ALM (with synthetic rollouts): the model objective over `horizon` steps (encoder, latent model, frozen reward and
    twin critic), reward and classifier, the twin critics and their target, and the actor through `horizon` imagined
    steps of the frozen model, reward, classifier and twin critic."""
    encoder, model = [obs, hidden, hidden, 2 * latent], [latent + act, model_hidden, model_hidden, 2 * latent]
    reward, classifier = [latent + act, hidden, hidden, 1], [2 * latent + act, hidden, hidden, 2]
    actor, critic = [latent, hidden, hidden, act], [latent + act, hidden, hidden, 1]

    def trained(dims, first_input=False):  # forward and backward of a network being trained
        return forward_flops(dims) + backward_flops(dims, weights=True, first_input=first_input)

    def frozen(dims):  # forward and the input gradient through a frozen network
        return forward_flops(dims) + backward_flops(dims, weights=False, first_input=True)

    k = horizon
    model_objective = (k * forward_flops(encoder) + trained(encoder) + k * trained(model, first_input=True)
                       + forward_flops(actor) + k * frozen(reward) + 2 * frozen(critic))
    reward_and_classifier = 2 * forward_flops(encoder) + forward_flops(model) + trained(reward) + trained(classifier)
    critics = forward_flops(actor) + 2 * forward_flops(critic) + 2 * trained(critic)
    actor_loss = (k + 1) * trained(actor) + k * (frozen(model) + frozen(reward) + frozen(classifier)) + 2 * (k + 1) * frozen(critic)
    return batch * (model_objective + reward_and_classifier + critics + actor_loss)


def mbpo_step_flops(obs: int, act: int, a: "Args", mbpo) -> float:
    """FLOPs per env step of mbpo.py at its defaults: replay-ratio SAC updates, the model's training amortized over
    its retrain interval, and the rollouts (actor plus every ensemble member on each start state)."""
    d = mbpo.Args()
    model = [obs + act] + [d.model_hidden_dim] * 4 + [2 * (obs + 1)]
    model_step = d.ensemble_size * d.model_batch_size * (forward_flops(model) + backward_flops(model, True, False))
    rollouts = d.rollouts_per_step * (forward_flops([obs, d.hidden_dim, d.hidden_dim, 2 * act])
                                      + d.ensemble_size * forward_flops(model))
    sac_updates = d.replay_ratio * sac_update_flops(obs, act, d.hidden_dim, d.batch_size)
    return sac_updates + d.model_train_steps / d.model_train_freq * model_step + rollouts


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, seconds: float = 0.5) -> float:
    """Best fp32 matmul GFLOP/s over square sizes 256, 512, 1024."""
    rates = []
    for n in (256, 512, 1024):
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        a @ b
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(10):
                a @ b
            count += 10
            synchronize(device)
        rates.append(count * 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return max(rates)


def script_env(**extra: str) -> dict:
    """The environment of a script's subprocess: this one with the checkout first on PYTHONPATH, before what it held (an
    offline GPU machine's wheels), and `extra`."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p), **extra}


def run_in_process(script: str, argv: list[str], timeout: int | None = None, quiet: bool = True) -> dict:
    """Run `script` in this process as `python script argv` would, and return its globals and its `main`'s locals
    (networks, buffers, optimizers, the update); with `quiet` its progress lines are swallowed. A run still going
    after `timeout` seconds raises TimeoutError (the tests' guard against a hang). The signal handlers the script
    installs end with it."""
    def too_long(signum, frame):
        raise TimeoutError(f"{script} {' '.join(argv)} still ran after {timeout} s")

    argv_before, sys.argv = sys.argv, [script, *argv]
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)}
    if timeout:
        signal.signal(signal.SIGALRM, too_long)
        signal.alarm(timeout)
    path, main_locals = str(ROOT / script), {}

    def keep_main_locals(frame, event, arg):  # the script's main() returning: its locals are the run's objects
        if event == "return" and frame.f_code.co_name == "main" and frame.f_code.co_filename == path:
            main_locals.update(frame.f_locals)

    profile_before = sys.getprofile()
    sys.setprofile(keep_main_locals)
    try:
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            return {**runpy.run_path(path, run_name="__main__"), **main_locals}
    finally:
        sys.setprofile(profile_before)
        signal.alarm(0)
        sys.argv = argv_before
        for sig, handler in handlers.items():  # Ctrl-C stops the caller again, not a checkpoint handler
            signal.signal(sig, handler)


def update_call(script: str, run: dict):
    """The update of a run's globals as its training loop calls it (a function of one minibatch), and a sampler of
    minibatches from its replay buffer."""
    update, rb, run_args = run["update"], run["rb"], run["args"]
    if script == "td3.py":  # the actor and the targets learn on every policy_frequency-th update, from the first
        count = itertools.count()
        return lambda data: update(data, next(count) % run_args.policy_frequency == 0), lambda: rb.sample(run_args.batch_size)
    if script == "alm.py":  # a minibatch of sequences and one of transitions, at the policy noise where it ends
        std = torch.tensor(run_args.exploration_noise_end, device=rb.obs.device)  # a tensor, as alm.py's loop passes it
        return (lambda data: update(data, std),
                lambda: (rb.sample_sequences(run_args.batch_size, run_args.horizon), rb.sample(run_args.batch_size)))
    return update, lambda: rb.sample(run_args.batch_size)


def script_update(script: str, a: Args, log_dir: str):
    """Run `script` for a few steps in this process (as `python script ...` would) and return its update of one
    minibatch, as its training loop calls it, with a sampler of minibatches from its replay buffer."""
    extra = ["--model-train-steps", "1", "--rollouts-per-step", "1"] if script == "mbpo.py" else []
    return update_call(script, run_in_process(script, [
        "--env", a.env, "--batch-size", str(a.batch_size), "--learning-starts", str(a.batch_size),
        "--total-timesteps", str(a.batch_size + 1), "--eval-episodes", "1", "--checkpoint-interval", "0",
        "--torch-threads", str(a.torch_threads), "--log-dir", log_dir, "--cuda" if a.cuda else "--no-cuda", *extra]))


class TwoCriticsTextbook(nn.Module):
    """The textbook twin critic: two independent MLPs, each evaluated on its own."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()

        def mlp():
            return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

        self.q1, self.q2 = mlp(), mlp()

    def forward(self, x, a):
        x = torch.cat([x, a], -1)
        return torch.stack([self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)])


def textbook_sac_update(env, device: torch.device, sample):
    """SAC's update written the textbook way (see the module docstring); same math as sac.py's."""
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    actor = sac.Actor(env, 256, 1).to(device)
    qf, qf_target = TwoCriticsTextbook(obs_dim + act_dim, 256).to(device), TwoCriticsTextbook(obs_dim + act_dim, 256).to(device)
    qf_target.load_state_dict(qf.state_dict())
    q_optimizer = torch.optim.Adam(qf.parameters(), lr=3e-4, foreach=False)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=3e-4, foreach=False)
    log_alpha = torch.zeros((), device=device, requires_grad=True)
    a_optimizer = torch.optim.Adam([log_alpha], lr=3e-4, foreach=False)

    def update(data):
        torch.distributions.Distribution.set_default_validate_args(True)  # the library default
        obs, actions, rewards, next_obs, terminations = data
        alpha = log_alpha.exp().detach()
        with torch.no_grad():
            next_actions, next_log_pi, _ = actor.get_action(next_obs)
            target = rewards + (1 - terminations) * 0.99 * (qf_target(next_obs, next_actions).min(0).values - alpha * next_log_pi)
        q1, q2 = qf(obs, actions)
        qf_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        q_optimizer.zero_grad()
        qf_loss.backward()
        q_optimizer.step()
        pi, log_pi, _ = actor.get_action(obs)
        actor_loss = (alpha * log_pi - qf(obs, pi).min(0).values).mean()
        actor_optimizer.zero_grad()
        actor_loss.backward()
        actor_optimizer.step()
        alpha_loss = (-log_alpha.exp() * (log_pi.detach() - 0.5 * act_dim)).mean()
        a_optimizer.zero_grad()
        alpha_loss.backward()
        a_optimizer.step()
        with torch.no_grad():
            for param, target_param in zip(qf.parameters(), qf_target.parameters()):
                target_param.data.copy_(0.005 * param.data + 0.995 * target_param.data)
        torch.distributions.Distribution.set_default_validate_args(False)  # as the scripts run

    return update


def mbpo_end_to_end(a: Args, log_dir: str) -> tuple[float, str]:
    """mbpo.py as a user runs it: env steps/s over its learning phase, and its time split line."""
    warmup = 1000
    command = [sys.executable, str(ROOT / "mbpo.py"), "--env", a.env, "--learning-starts", str(warmup),
               "--total-timesteps", str(warmup + a.mbpo_steps), "--eval-interval", str(10**9), "--eval-episodes", "1",
               "--checkpoint-interval", "0", "--torch-threads", str(a.torch_threads), "--log-dir", log_dir,
               "--cuda" if a.cuda else "--no-cuda"]
    output = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    split = next(line for line in output.splitlines() if line.startswith("time split over"))
    shares = {name: float(pct) for name, pct in re.findall(r"(\w+) ([\d.]+)%", split)}
    elapsed = float(re.search(r"over ([\d.]+) s", split).group(1))
    learning_seconds = elapsed * (shares["model_training"] + shares["rollouts"] + shares["sac_updates"]) / 100
    return a.mbpo_steps / learning_seconds, split


def seed_steps_per_second(script: str, num_seeds: int, steps: int, a: Args, log_dir: str, root: Path = ROOT, extra=()) -> float:
    """`script --num-seeds num_seeds` (of the checkout `root`) as a user runs it, at its defaults but for `steps` learning
    env steps after 1000 random ones: env steps/s of its learning phase (its final progress line's rate) times the seeds."""
    warmup = 1000
    command = [sys.executable, str(root / script), "--env", a.env, "--num-seeds", str(num_seeds), "--learning-starts", str(warmup),
               "--total-timesteps", str(warmup + steps), "--eval-interval", str(10**9), "--eval-episodes", "1",
               "--checkpoint-interval", "0", "--torch-threads", str(a.torch_threads), "--log-dir", log_dir,
               "--cuda" if a.cuda else "--no-cuda", *extra]
    output = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True).stdout
    final = [line for line in output.splitlines() if line.startswith(f"step {warmup + steps}/")][-1]
    return num_seeds * float(re.search(r"\| learning \| SPS ([\d.e+]+)", final).group(1))


def learning_steps(script: str, a: Args) -> int:
    """The learning env steps of `script`'s runs in the --num-seeds tables: MBPO's scripts --mbpo-steps (250 if unset),
    alm.py a tenth of --seeds-steps (its update is ~40 SAC updates), the others --seeds-steps."""
    return (a.mbpo_steps or 250) if script.startswith("mbpo") else a.seeds_steps // (10 if script == "alm.py" else 1)


def baseline_table(a: Args, log_dir: str):
    """--baseline: each --seeds-scripts script at each --num-seeds, this checkout's and the baseline's alternately,
    --rounds times: the median seed-steps/s of both; mbpo.py with 100-step retrains (not 5000: minutes each)."""
    print(f"\n| script | --num-seeds | learning env steps | seed-steps/s, baseline ({a.baseline}) | seed-steps/s, this "
          f"checkout | this / baseline |\n|---|---|---|---|---|---|")
    for script in a.seeds_scripts:
        steps = learning_steps(script, a)
        extra = ["--model-train-steps", "100"] if script == "mbpo.py" else []
        for num_seeds in a.num_seeds:
            rates = {root: [] for root in (Path(a.baseline), ROOT)}
            for _ in range(a.rounds):  # alternating, so a neighbour's load falls on both alike
                for root in rates:
                    rates[root].append(seed_steps_per_second(script, num_seeds, steps, a, log_dir, root, extra))
            base, this = (statistics.median(x) for x in rates.values())
            print(f"| {script} | {num_seeds} | {steps} | {base:.2f} | {this:.2f} | {this / base:.3f} |", flush=True)


if __name__ == "__main__":
    args = tyro.cli(Args)
    if args.cuda and not torch.cuda.is_available():
        sys.exit("error: --cuda given but torch sees no GPU")
    if min(args.batch_size, args.updates, args.alm_updates, args.rounds, args.torch_threads, args.seeds_steps, *args.num_seeds) < 1 or args.mbpo_steps < 0:
        sys.exit("error: --batch-size, --updates, --alm-updates, --rounds, --torch-threads, --seeds-steps and --num-seeds "
                 "must be >= 1, --mbpo-steps >= 0")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.torch_threads))
    device = torch.device("cuda" if args.cuda else "cpu")
    log_dir = tempfile.mkdtemp(prefix="freelunch-speed-")
    if args.baseline:  # only the side-by-side table
        sys.exit(baseline_table(args, log_dir))
    saved_argv = sys.argv
    variants, samplers = {}, {}
    for script in ("sac.py", "td3.py", "mbpo.py", "alm.py"):
        variants[f"{script} update"], samplers[f"{script} update"] = script_update(script, args, log_dir)
    sys.argv = saved_argv
    torch.set_num_threads(args.torch_threads)
    env = make_env(args.env, 0)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    variants["textbook SAC update"] = textbook_sac_update(env, device, samplers["sac.py update"])
    samplers["textbook SAC update"] = samplers["sac.py update"]
    import alm  # noqa: E402  (its defaults give its network sizes)

    d = alm.Args()
    flops = {name: sac_update_flops(obs_dim, act_dim, 256, args.batch_size) for name in variants}
    flops["td3.py update"] = td3_update_flops(obs_dim, act_dim, 256, args.batch_size)
    flops["alm.py update"] = alm_update_flops(obs_dim, act_dim, args.batch_size, d.latent_dim, d.hidden_dim, d.model_hidden_dim, d.horizon)
    updates = {name: args.alm_updates if name.startswith("alm") else args.updates for name in variants}

    batches = {name: [sample() for _ in range(16)] for name, sample in samplers.items()}
    for name, update in variants.items():  # warm-up
        for i in range(min(10, updates[name])):
            update(batches[name][i % 16])
    peaks = [matmul_peak(device)]
    rates = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, update in variants.items():
            synchronize(device)
            start = time.perf_counter()
            for i in range(updates[name]):
                update(batches[name][i % 16])
            synchronize(device)
            rates[name].append(updates[name] / (time.perf_counter() - start))
    peaks.append(matmul_peak(device))
    peak = max(peaks)

    print(f"{args.env} sizes, batch {args.batch_size}, {device}, {args.torch_threads} thread(s), {args.rounds} rounds of "
          f"{args.updates} updates ({args.alm_updates} of alm.py's); fp32 matmul peak {peak:.0f} GFLOP/s (before/after: {peaks[0]:.0f}/{peaks[1]:.0f})\n")
    textbook = statistics.median(rates["textbook SAC update"])
    print("| update | updates/s | GFLOP per update | GFLOP/s | of peak | vs textbook SAC |\n|---|---|---|---|---|---|")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"| {name} | {rate:.1f} | {flops[name] / 1e9:.3f} | {rate * flops[name] / 1e9:.1f} | "
              f"{100 * rate * flops[name] / 1e9 / peak:.0f} % | {rate / textbook:.2f}x |")

    if args.mbpo_steps > 0:
        import mbpo  # noqa: E402  (its defaults give the FLOPs per env step)

        steps_per_second, split = mbpo_end_to_end(args, log_dir)
        step_flops = mbpo_step_flops(obs_dim, act_dim, args, mbpo)
        allowed = peak * 1e9 / step_flops
        print(f"\nmbpo.py, paper defaults, {args.mbpo_steps} learning steps: {steps_per_second:.2f} env steps/s; its "
              f"{step_flops / 1e9:.1f} GFLOP per env step allow {allowed:.2f}/s at the peak: "
              f"{100 * steps_per_second / allowed:.0f} % of it\n({split})")

    if args.num_seeds and not args.baseline:
        print(f"\n| script | --num-seeds | learning env steps | seed-steps/s | env steps/s (each seed) | seed-steps/s vs --num-seeds {args.num_seeds[0]} |\n|---|---|---|---|---|---|")
        for script in args.seeds_scripts:
            steps = learning_steps(script, args)
            rates = {}
            for num_seeds in args.num_seeds:
                rates[num_seeds] = seed_steps_per_second(script, num_seeds, steps, args, log_dir)
                print(f"| {script} | {num_seeds} | {steps} | {rates[num_seeds]:.2f} | {rates[num_seeds] / num_seeds:.2f} | "
                      f"{rates[num_seeds] / rates[args.num_seeds[0]]:.2f}x |", flush=True)
