"""One command for a borrowed GPU: eager vs compiled speed of every script's update, MBPO's model step and rollout,
mbpo.py end to end, several mbpo.py processes on one GPU, and the compiled-equals-eager check; one table.

    python benchmark/gpu_check.py                 # on a machine with one GPU, at most ~8 minutes
    python benchmark/gpu_check.py --cpu-smoke     # the same code paths on the CPU with tiny budgets (in the tests)

What it measures (each as a row of the table, eager beside `--compile`, on the same machine in the same process):
1. sac.py, td3.py, mbpo.py and alm.py: their own `update(data)` (run in-process for a few steps, as benchmark/speed.py
   does), updates/s at batch 256 on Hopper-v5 sizes (alm at its batch 512).
2. mbpo.py: the model's gradient step (7 members, batch 256) and the rollout (400 one-step rollouts), per second.
3. mbpo.py at the paper's defaults end to end on Hopper-v5 and dmc:hopper-stand: env steps/s over --e2e-steps
   learning steps after 1000 random ones (time split from the script's own last line).
4. 1, 4 and 8 concurrent mbpo.py processes (--compile) on the one GPU: aggregate seed-steps/s, which decides whether
   packed processes suffice or seeds must be batched inside one process as the paper's code does (its README: 6
   vmapped seeds, Hopper-v3 300k steps in 4 h 53 min on an RTX 4500 Ada, ~102 seed-steps/s).
5. compiled == eager: a few updates of each script from the same seed and batches, parameters compared (max abs
   difference; inductor's `fallback_random` makes the compiled graphs draw the eager random numbers).
With --cpu-smoke every part runs on the CPU with tiny budgets and tiny networks, and torch.compile uses the
"aot_eager" backend in-process and is disabled (TORCH_COMPILE_DISABLE=1) in the subprocesses: it checks that this
script and the scripts' --compile paths run, not their speed.
"""
import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmark"))
from speed import run_in_process, update_call  # noqa: E402

SCRIPTS = ("sac.py", "td3.py", "mbpo.py", "alm.py")


def script_argv(script: str, a: argparse.Namespace, compiled: bool, steps: int) -> list[str]:
    """A short run of `script` that reaches its learning phase: its update, buffers and model exist afterwards."""
    batch = 512 if script == "alm.py" else 256
    if a.cpu_smoke:
        batch = 16
    argv = ["--env", a.env, "--seed", "1", "--learning-starts", str(batch), "--total-timesteps", str(batch + steps),
            "--batch-size", str(batch), "--eval-episodes", "1", "--checkpoint-interval", "0",
            "--cuda" if a.device == "cuda" else "--no-cuda"]
    if a.cpu_smoke:
        argv += {"alm.py": ["--hidden-dim", "16", "--model-hidden-dim", "16", "--latent-dim", "8"],
                 "mbpo.py": ["--hidden-dim", "16", "--model-hidden-dim", "16", "--model-train-steps", "2",
                             "--rollouts-per-step", "8", "--replay-ratio", "2", "--model-train-freq", "2"]}.get(
            script, ["--hidden-dim", "16"])
    elif script == "mbpo.py":
        argv += ["--model-train-steps", "1", "--model-train-freq", "10"]
    return argv + (["--compile"] if compiled else [])


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def rate(fn, calls: int) -> float:
    """Calls per second of `fn()` after a warm-up (compilation happens there)."""
    for _ in range(3):
        fn()
    synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize()
    return calls / (time.perf_counter() - start)


def update_rates(a: argparse.Namespace, log_dir: str) -> tuple[list, list]:
    """(name, eager per second, compiled per second) for each script's update and MBPO's model step and rollout; and
    (script, max abs parameter difference) between its eager and compiled runs from the same seed, before timing."""
    import torch._inductor.config

    torch._inductor.config.fallback_random = True  # the compiled graphs draw the eager random numbers
    rows, differences = [], []
    for script in SCRIPTS:
        runs = {compiled: run_in_process(script, [*script_argv(script, a, compiled, 4), "--log-dir",
                                                  f"{log_dir}/{script}_{compiled}"]) for compiled in (False, True)}
        names = ("actor", "qf", "model") if script == "mbpo.py" else ("actor", "qf")
        differences.append((script, max((p - q).abs().max().item() for name in names
                                        for p, q in zip(runs[False][name].parameters(), runs[True][name].parameters()))))
        calls = {c: update_call(script, run) for c, run in runs.items()}
        batches = {c: [sample() for _ in range(8)] for c, (_, sample) in calls.items()}
        counter = itertools.count()
        per_s = {c: rate(lambda: calls[c][0](batches[c][next(counter) % 8]), a.calls) for c in calls}
        rows.append((f"{script} update", per_s[False], per_s[True]))
        if script == "mbpo.py":
            targets = {c: run["model_targets"](run["rb"].obs[: run["rb"].size], run["rb"].rewards[: run["rb"].size],
                                               run["rb"].next_obs[: run["rb"].size]) for c, run in runs.items()}
            batch = {c: torch.randint(0, run["rb"].size, (run["args"].model_batch_size,), device=run["device"])
                     for c, run in runs.items()}
            per_s = {c: rate(lambda: run["model_step"](batch[c], targets[c]), a.calls) for c, run in runs.items()}
            rows.append(("mbpo.py model step", per_s[False], per_s[True]))
            per_s = {c: rate(lambda: run["rollout"](1), a.calls) for c, run in runs.items()}
            rows.append((f"mbpo.py rollout ({runs[False]['args'].rollouts_per_step} x 1 step)", per_s[False], per_s[True]))
    return rows, differences


def end_to_end(a: argparse.Namespace, env_id: str, compiled: bool, log_dir: str, processes: int = 1) -> float:
    """Aggregate env steps/s over the learning phase of `processes` concurrent mbpo.py runs (paper defaults)."""
    warmup, steps = (50, 20) if a.cpu_smoke else (1000, a.e2e_steps)
    command = [sys.executable, str(ROOT / "mbpo.py"), "--env", env_id, "--learning-starts", str(warmup),
               "--total-timesteps", str(warmup + steps), "--eval-interval", str(10**9), "--eval-episodes", "1",
               "--checkpoint-interval", "0", "--cuda" if a.device == "cuda" else "--no-cuda",
               *(["--compile"] if compiled else [])]
    if a.cpu_smoke:
        command += ["--hidden-dim", "16", "--model-hidden-dim", "16", "--model-train-steps", "2", "--rollouts-per-step", "8"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), **({"TORCH_COMPILE_DISABLE": "1"} if a.cpu_smoke else {})}
    jobs = [subprocess.Popen([*command, "--seed", str(seed), "--log-dir", f"{log_dir}/e2e_{env_id}_{compiled}_{processes}"],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for seed in range(1, processes + 1)]
    total = 0.0
    for job in jobs:
        output = job.communicate()[0]
        if job.returncode != 0:
            sys.exit(f"error: mbpo.py on {env_id} failed:\n{output[-1500:]}")
        split = next(line for line in output.splitlines() if line.startswith("time split over"))
        shares = dict(re.findall(r"(\w+) ([\d.]+)%", split))
        elapsed = float(re.search(r"over ([\d.]+) s", split).group(1))
        learning = elapsed * sum(float(shares[k]) for k in ("model_training", "rollouts", "sac_updates")) / 100
        total += steps / learning
    return total


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="every code path on the CPU, tiny budgets (< 2 min)")
    parser.add_argument("--env", default="Hopper-v5", help="env whose sizes the update timings use")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per update (after 3 warm-up calls)")
    parser.add_argument("--e2e-steps", type=int, default=2000, help="learning steps of each end-to-end mbpo.py run")
    a = parser.parse_args(argv)
    a.device = "cpu" if a.cpu_smoke else "cuda"
    if a.cpu_smoke:
        a.calls, a.env = 3, "InvertedPendulum-v5"
        torch.compile = (lambda compile_: lambda fn=None, **kw: compile_(fn, **{**kw, "backend": "aot_eager", "mode": None}))(torch.compile)
    elif not torch.cuda.is_available():
        sys.exit("error: no GPU visible to torch; use --cpu-smoke to check the code paths on the CPU")
    device = torch.cuda.get_device_name() if a.device == "cuda" else "CPU (smoke: timings mean nothing)"
    log_dir = tempfile.mkdtemp(prefix="freelunch-gpu-check-")
    start = time.time()
    timed, differences = update_rates(a, log_dir)
    rows = [(name, f"{eager:.1f}", f"{compiled:.1f}", f"{compiled / eager:.2f}x") for name, eager, compiled in timed]
    one_process = {}
    for env_id in ("Hopper-v5", "dmc:hopper-stand"):
        eager, one_process[env_id] = (end_to_end(a, env_id, c, log_dir) for c in (False, True))
        rows.append((f"mbpo.py end to end, {env_id}, env steps/s", f"{eager:.2f}", f"{one_process[env_id]:.2f}",
                     f"{one_process[env_id] / eager:.2f}x"))
    for processes in (1, 2) if a.cpu_smoke else (1, 4, 8):
        steps = one_process["Hopper-v5"] if processes == 1 else end_to_end(a, "Hopper-v5", True, log_dir, processes)
        rows.append((f"{processes} mbpo.py process(es) at once (--compile), Hopper-v5, seed-steps/s", "", f"{steps:.2f}", ""))
    for script, difference in differences:
        rows.append((f"{script}: compiled vs eager after 4 learning steps, max abs parameter difference", "",
                     f"{difference:.2e}", ""))
    print(f"device: {device}; torch {torch.__version__}; {time.time() - start:.0f} s\n")
    print("| what | eager | compiled | compiled/eager |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
