"""Learning benchmark: run an algorithm script for several seeds and tabulate its `eval/return` curve.

For each seed it runs, as a subprocess from the repo root,
    python <script> --env ENV --seed S --total-timesteps T --log-dir benchmark/runs/<group>/seed_S <extra args>
(the run's stdout and stderr go to stdout.log beside its event file), then reads `eval/return` from each run's event
file and prints a Markdown table to stdout: the eval return at every eval step, the final eval, the first eval step
at or above --threshold, and the run's wall time. Progress goes to stderr, so `> file.md` keeps only the table.
Works for any script with the sac.py flags (--env, --seed, --total-timesteps, --log-dir) that logs `eval/return`.

    python benchmark/learning.py --script td3.py --env InvertedPendulum-v5 --seeds 1 2 3 --total-timesteps 20000 \\
        --threshold 900 -- --learning-starts 5000
    python benchmark/learning.py --script sac.py --env dmc:walker-walk --seeds 1 2 --total-timesteps 100000 --jobs 2
    python benchmark/learning.py --script mbpo.py --env Hopper-v5 --seeds 1 --total-timesteps 30000 -- --cuda

Runs get OMP_NUM_THREADS=1 unless it is already set: these small networks gain little from intra-op threads, and
parallel runs (or anything else on the machine) would oversubscribe the cores and slow every run down many times.
"""
import argparse
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Our flags before `--`, the algorithm script's extra flags after it."""
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    ours = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", required=True, help="algorithm script, relative to the repo root (td3.py)")
    parser.add_argument("--env", required=True, help="env id passed to the script (InvertedPendulum-v5, dmc:walker-walk)")
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="one run per seed")
    parser.add_argument("--total-timesteps", type=int, required=True, help="env steps per run")
    parser.add_argument("--threshold", type=float, default=None, help="report the first eval step with return >= this")
    parser.add_argument("--stop-at-threshold", action="store_true",
                        help="stop each run (SIGTERM: it saves a checkpoint) once an evaluation reaches --threshold")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (default 1)")
    parser.add_argument("--log-dir", default=str(ROOT / "benchmark" / "runs"), help="runs go to <log-dir>/<group>/seed_S")
    args = parser.parse_args(ours)
    if not (ROOT / args.script).is_file():
        parser.error(f"--script {args.script!r} is not a file under {ROOT}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.stop_at_threshold and args.threshold is None:
        parser.error("--stop-at-threshold needs --threshold")
    return args, extra


def run_seed(args: argparse.Namespace, extra: list[str], run_dir: Path, seed: int) -> tuple[int, float]:
    """Run one seed to completion (or, with --stop-at-threshold, to its first evaluation at or above the threshold);
    returns (exit status, wall seconds)."""
    run_dir.mkdir(parents=True)
    command = [sys.executable, str(ROOT / args.script), "--env", args.env, "--seed", str(seed),
               "--total-timesteps", str(args.total_timesteps), "--log-dir", str(run_dir), *extra]
    env = {"OMP_NUM_THREADS": "1", **os.environ, "PYTHONPATH": str(ROOT)}
    print(f"seed {seed}: started ({run_dir})", file=sys.stderr, flush=True)
    start = time.time()
    with open(run_dir / "stdout.log", "w") as log:
        process, reached = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), False
        while process.poll() is None:
            time.sleep(5)
            if args.stop_at_threshold and any(v >= args.threshold for v in eval_returns(run_dir).values()):
                process.terminate()
                process.wait()
                reached = True
        status = 0 if reached else process.returncode
    wall = time.time() - start
    outcome = "reached the threshold, stopped" if reached else "done" if status == 0 else f"FAILED (exit {status})"
    print(f"seed {seed}: {outcome} in {wall / 60:.1f} min", file=sys.stderr, flush=True)
    if status != 0:
        print((run_dir / "stdout.log").read_text()[-2000:], file=sys.stderr)
    return status, wall


def eval_returns(run_dir: Path) -> dict[int, float]:
    """step -> `eval/return` from the run directory the script wrote under `run_dir` (a resumed run holds several
    event files; the reader merges them and drops what the stopped run logged after its checkpoint)."""
    runs = {event_file.parent for event_file in run_dir.glob("*/events.out.tfevents.*")}
    if not runs:  # not started yet
        return {}
    (run,) = runs
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    if "eval/return" not in events.Tags()["scalars"]:  # no evaluation written yet
        return {}
    return {e.step: e.value for e in events.Scalars("eval/return")}


def markdown_table(seeds: list[int], curves: dict[int, dict[int, float]], walls: dict[int, float],
                   threshold: float | None) -> str:
    """One row per seed (and their mean): eval return at each eval step, final eval, first step >= threshold."""
    steps = sorted({step for curve in curves.values() for step in curve})
    header = ["seed", *map(str, steps), "final"] + ([f"first step >= {threshold:g}"] if threshold is not None else [])
    rows = []
    for seed in seeds:
        curve = curves.get(seed, {})
        row = [str(seed), *(f"{curve[s]:.1f}" if s in curve else "-" for s in steps)]
        row.append(f"{curve[max(curve)]:.1f}" if curve else "failed")
        if threshold is not None:
            row.append(str(next((s for s in sorted(curve) if curve[s] >= threshold), "never" if curve else "-")))
        rows.append(row + [f"{walls[seed] / 60:.1f}"])
    if len(curves) > 1:
        means = [sum(curve[s] for curve in curves.values()) / len(curves) if all(s in c for c in curves.values())
                 else None for s in steps]
        finals = sum(curve[max(curve)] for curve in curves.values()) / len(curves)
        rows.append(["mean", *(f"{m:.1f}" if m is not None else "-" for m in means), f"{finals:.1f}"]
                    + [""] * (threshold is not None) + [""])
    lines = ["| " + " | ".join(header + ["wall (min)"]) + " |", "|" + "---|" * (len(header) + 1)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


if __name__ == "__main__":
    args, extra = parse_args(sys.argv[1:])
    group = Path(args.log_dir) / f"{Path(args.script).stem}__{args.env.replace(':', '_')}__{int(time.time())}"
    run_dirs = {seed: group / f"seed_{seed}" for seed in args.seeds}
    with ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(args.seeds, pool.map(lambda s: run_seed(args, extra, run_dirs[s], s), args.seeds)))
    curves = {seed: eval_returns(run_dirs[seed]) for seed, (status, _) in results.items() if status == 0}
    print(f"`{shlex.join(['python', 'benchmark/learning.py', *sys.argv[1:]])}`\n")
    print(markdown_table(args.seeds, curves, {seed: wall for seed, (_, wall) in results.items()}, args.threshold))
    sys.exit(0 if len(curves) == len(args.seeds) else 1)
