"""One command for a short GPU allocation: graph breaks, compiled == eager, the speed of every script's compiled
functions, and mbpo.py end to end (one and several processes), as one Markdown table that grows row by row.

    python benchmark/gpu_check.py --out gpu.md                # one GPU; keeps to --budget seconds (default 480)
    python benchmark/gpu_check.py --parts e2e,processes       # a second call for what the first had to skip
    python benchmark/gpu_check.py --cpu-smoke --out smoke.md  # every part on the CPU, tiny sizes (the tests run it)

Every row is printed (and flushed) the moment it is measured and appended to --out, below a header naming the device,
the torch version and the command line, so a run cut off early still leaves what it measured. Before each part the
check estimates the seconds it needs (a prior, scaled by the largest ratio of measured to estimated seconds among the
earlier parts of its kind; for mbpo.py end to end, from the rates part 2 measured) and skips, in a row saying so, what
no longer fits in the budget; a run still going at the end of the budget is stopped, also in a row. The exit status
is 1 if a part failed or a graph-break count is not 0.

Columns, per device: on a GPU `--no-cuda-graph` (plain eager), default (the eager functions replayed as CUDA graphs)
and `--compile` (compiled with fullgraph=True, replayed as CUDA graphs); on the CPU default (eager) and `--compile`.
The parts (--parts), in this order:
1. graph-breaks: each script (sac.py, mbpo.py, td3.py, alm.py, mbpo_perfect_model.py) runs in-process for two
   learning steps (the first a logging one) with `--compile` (and `--no-cuda-graph`) and torch.compile replaced by a
   recorder, which keeps each function the script compiles (its `update`; mbpo.py's `model_step` and `rollout_step`
   too) uncompiled, with the arguments its loop passes. Each is then traced by `torch._dynamo.explain` on the first
   call of each argument variant (td3.py's update with and without the actor, alm.py's with and without measuring
   the model), with `trace_autograd_ops` as --compile sets it: the count, summed over the variants, must be 0; if it
   is not, the row gives the first break reason.
2. compare: per script, a run in each column for --compare-steps learning steps from the same seed (in-process, as
   benchmark/speed.py does; Hopper-v5 sizes at batch 256, alm.py at its 512, mbpo.py's model step at 7 members x 256
   and its rollout at 400 x 1 step): the largest difference of the networks' weights and buffers and of log_alpha
   from the plain eager run, absolute and relative (to the largest magnitude in that tensor; inductor's
   `fallback_random` makes the compiled graphs draw the eager random numbers), then calls/s of each recorded
   function in each run, on the recorded arguments in turn (--calls calls or --rate-seconds, whichever ends first,
   after one warm-up round).
3. e2e: mbpo.py at the paper's defaults on Hopper-v5 after 1000 random steps, one subprocess per column (default
   first, the others at its number of learning steps), for model_train_freq + 1 = 251 learning steps, or as many as
   the budget allows: env steps/s over all of them (compilation, CUDA-graph capture and the first model retrain
   included; the script's own progress line) and, with 251, the steady rate over the 250 after the first (one
   retrain per 250 steps, as in a long run), from the wall times of its TensorBoard logs at the ends of learning
   steps 1 and 251 (--log-interval 250). The fastest column is the 1-process row of part 4.
4. processes: 4 and 8 concurrent mbpo.py runs of that column: seed-steps/s in all, which says whether packed processes
   suffice or seeds must be batched inside one process as the paper's code does (its README: 6 vmapped seeds,
   ~102 seed-steps/s on an RTX 4500 Ada).
5. seeds: several seeds in one process (--num-seeds), in the fastest column of part 3: mbpo.py at 1, 4, 8 and 16 seeds
   (part 3's learning steps; steady rate where it had one) and sac.py at 1, 8 and 32 (1000 random then 2000 learning
   steps, the rate of its final progress line), each as seed-steps/s in all (issue 36's targets on an H200: mbpo.py
   >= 400, sac.py >= 5000).
With --cpu-smoke the sizes are tiny, torch.compile uses the "eager" backend (Dynamo's graphs run as they are, seconds
instead of inductor's minutes of C++ compilation), part 2 runs on mbpo.py alone (its three functions take every path;
tests/test_compile.py compares every script), end-to-end runs are in the default column only, at 5 learning steps per
retrain, part 4 runs 2 processes and part 5 1 and 2 seeds: it checks every part and counts every script's graph breaks; its timings mean
nothing.
"""
import time

START = time.monotonic()  # the budget counts from here, imports included

import argparse  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmark"))
from speed import run_in_process  # noqa: E402

SCRIPTS = ("sac.py", "mbpo.py", "td3.py", "alm.py", "mbpo_perfect_model.py")  # the most wanted first
# how much there is to trace and compile in each script, relative to sac.py's update (scales the priors below)
WEIGHT = {"sac.py": 1, "td3.py": 1, "mbpo.py": 3, "alm.py": 3, "mbpo_perfect_model.py": 1.5}
# conservative seconds per part on a GPU before anything is measured (times WEIGHT where per script)
PRIOR = {"graph breaks": 20, "run": 20, "compiled run": 60, "e2e startup": 20, "e2e compile": 180}
# mbpo.py rates (calls/s) assumed where none was measured: eager on an H200 before CUDA graphs (issue 35)
PRIOR_RATES = {"update": 109, "model_step": 296, "rollout_step": 324}
PARTS = ("graph-breaks", "compare", "e2e", "processes", "seeds")
RECORDED_CALLS = 8  # calls kept per compiled function, timed in turn (td3.py's alternate: with the actor, without)
E2E_ENV = "Hopper-v5"


class Table:
    """The Markdown table: each row printed (and flushed) the moment it is complete, and appended to `out`."""

    def __init__(self, columns: dict, out: str | None, header: list[str]):
        self.columns, self.file = list(columns), open(out, "a") if out else None
        self.write("\n".join(header) + "\n\n| what | " + " | ".join(self.columns) + " | note |\n|---|"
                   + "---|" * (len(self.columns) + 1))

    def row(self, what: str, cells: dict | None = None, note: str = ""):
        cells = cells or {}
        self.write("| " + " | ".join([what, *(cells.get(c, "") for c in self.columns), note]) + " |")

    def write(self, text: str):
        print(text, flush=True)
        if self.file:
            self.file.write(text + "\n")
            self.file.flush()


class Budget:
    """The seconds left of --budget, and how long a part will take: its prior, times the largest ratio of measured to
    prior seconds among the earlier parts of its kind (1 before any)."""

    def __init__(self, seconds: float, table: Table):
        self.seconds, self.table, self.ratios = seconds, table, {}

    def left(self) -> float:
        return self.seconds - (time.monotonic() - START)

    def fits(self, what: str, kind: str, prior: float) -> bool:
        """Whether the part fits in what is left; if not, a row says it is skipped."""
        need = prior * max(self.ratios.get(kind, [1.0]))
        if need <= self.left():
            print(f"[{time.monotonic() - START:.0f} s] {what}: ~{need:.0f} s of {self.left():.0f} s left",
                  file=sys.stderr, flush=True)
            return True
        self.table.row(f"skipped: {what}",
                       note=f"needs ~{need:.0f} s, {max(0.0, self.left()):.0f} s of the budget left")
        return False

    def took(self, kind: str, prior: float, seconds: float):
        """A part of `kind` with that prior took `seconds`: later estimates of its kind scale by the ratio."""
        self.ratios.setdefault(kind, []).append(seconds / prior)


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def variant(args: tuple, kwargs: dict) -> tuple:
    """What sets a call's graph apart: the arguments' structure, tensor shapes and dtypes, and other values (td3.py's
    update_policy, alm.py's measure)."""
    leaves, spec = torch.utils._pytree.tree_flatten((args, kwargs))
    return (str(spec), *((x.shape, x.dtype) if isinstance(x, torch.Tensor) else x for x in leaves))


def recording_compile(record: dict, compile_=None):
    """A stand-in for torch.compile: compiles with `compile_` (None: not at all) and keeps, per function name, the
    uncompiled function and the arguments of its first RECORDED_CALLS calls, and of the first call of every later
    variant (all as the script's loop passes them)."""
    def compile_and_record(fn=None, **kwargs):
        if fn is None:  # used as @torch.compile(...)
            return lambda f: compile_and_record(f, **kwargs)
        target, calls = compile_(fn, **kwargs) if compile_ else fn, []
        record[getattr(fn, "__name__", repr(fn))] = (fn, calls)

        def recorded(*args, **kw):
            if len(calls) < RECORDED_CALLS or variant(args, kw) not in {variant(*call) for call in calls}:
                calls.append((args, kw))
            return target(*args, **kw)
        return recorded
    return compile_and_record


class Check:
    """The check's settings, table and budget, and what its parts measure for the later ones."""

    def __init__(self, a: argparse.Namespace, table: Table, budget: Budget, columns: dict):
        self.a, self.table, self.budget, self.columns = a, table, budget, columns
        self.reference, self.compiled = next(iter(columns)), next(c for c in columns if "--compile" in c)
        self.log_dir = tempfile.mkdtemp(prefix="freelunch-gpu-check-")
        self.recorded = {}  # script -> {function name: (uncompiled function, [(args, kwargs)])}
        self.rates = {}  # (script, function name, column) -> calls/s
        self.run_seconds = {}  # (script, column) -> seconds of its in-process run (compilation and capture included)
        self.torch_compile = torch.compile  # the real one (under --cpu-smoke, the "eager" backend's)
        self.failures = 0  # parts that failed and graph-break counts other than 0: the check's exit status
        # the smoke: part 2 on mbpo.py alone (its three functions take every path), part 3 in the default column alone
        # (the CPU's --compile would be inductor's minutes of C++ compilation), part 4 with 2 processes
        self.compared = ("mbpo.py",) if a.cpu_smoke else SCRIPTS
        self.e2e_columns = ["default"] if a.cpu_smoke else ["default", self.compiled, self.reference]
        self.process_counts = (2,) if a.cpu_smoke else (4, 8)
        self.seed_counts = {"mbpo.py": (1, 2), "sac.py": (1, 2)} if a.cpu_smoke else {"mbpo.py": (1, 4, 8, 16), "sac.py": (1, 8, 32)}

    def device_flags(self) -> list[str]:
        return ["--cuda" if self.a.device == "cuda" else "--no-cuda"]

    def script_argv(self, script: str, learning_steps: int) -> list[str]:
        """A run of `script` that reaches its learning phase for `learning_steps` steps, at Hopper-v5 sizes; its first
        learning step is a logging one (alm.py's update then measures the model: another variant of its graph)."""
        batch = 16 if self.a.cpu_smoke else 512 if script == "alm.py" else 256
        argv = ["--env", self.a.env, "--seed", "1", "--learning-starts", str(batch), "--total-timesteps",
                str(batch + learning_steps), "--batch-size", str(batch), "--eval-episodes", "1",
                "--checkpoint-interval", "0", "--log-interval", str(batch), *self.device_flags()]
        if self.a.cpu_smoke:
            return argv + {"alm.py": ["--hidden-dim", "16", "--model-hidden-dim", "16", "--latent-dim", "8"],
                           "mbpo.py": ["--hidden-dim", "16", "--model-hidden-dim", "16", "--model-train-steps", "2",
                                       "--rollouts-per-step", "8", "--replay-ratio", "2", "--model-train-freq", "2"],
                           "mbpo_perfect_model.py": ["--hidden-dim", "16", "--rollouts-per-step", "8",
                                                     "--replay-ratio", "2", "--model-train-freq", "2"]}.get(
                script, ["--hidden-dim", "16"])
        return argv + (["--model-train-steps", "10", "--model-train-freq", "10"] if script == "mbpo.py" else [])

    def in_process(self, script: str, argv: list[str], record: dict | None = None, compile_=None) -> dict:
        """`script` run in this process (its globals back), torch.compile replaced by a recorder into `record`,
        stopped with TimeoutError at the end of the budget."""
        torch.compile = recording_compile(record if record is not None else {}, compile_)
        try:
            return run_in_process(script, [*argv, "--log-dir", tempfile.mkdtemp(dir=self.log_dir, prefix=script)],
                                  timeout=max(1, math.ceil(self.budget.left())))
        finally:
            torch.compile = self.torch_compile

    def attempt(self, what: str, kind: str, prior: float, part):
        """`part()` if it fits in the budget (else a row saying it is skipped); None if skipped, stopped or failed (a
        row says which, and why in one line)."""
        if not self.budget.fits(what, kind, prior):
            return None
        tic = time.monotonic()
        try:
            result = part()
        except TimeoutError:
            self.table.row(f"stopped: {what}", note="it ran past the budget")
            return None
        except (Exception, SystemExit) as e:  # one part's failure is its row, not the end of the check
            self.failures += 1
            self.table.row(f"failed: {what}", note=one_line(f"{type(e).__name__}: {e}"))
            return None
        self.budget.took(kind, prior, time.monotonic() - tic)
        return result

    def graph_breaks(self, script: str):
        """Part 1: each function `script` compiles, traced by torch._dynamo.explain with its loop's arguments."""
        def part():
            record = {}
            self.in_process(script, [*self.script_argv(script, 2), "--compile",
                                     *(["--no-cuda-graph"] if self.a.device == "cuda" else [])], record)
            for name, (fn, calls) in record.items():
                variants = {}  # the first call of each
                for args, kwargs in calls:
                    variants.setdefault(variant(args, kwargs), (args, kwargs))
                what = f"{script} `{name}`: graph breaks (torch._dynamo.explain" + (
                    f", {len(variants)} argument variants)" if len(variants) > 1 else ")")
                counts, reasons = [], []
                try:
                    for args, kwargs in variants.values():
                        with torch._dynamo.config.patch(trace_autograd_ops=True):  # as --compile sets it
                            out = torch._dynamo.explain(fn)(*args, **kwargs)
                        counts.append(out.graph_break_count)
                        reasons += [break_reason(reason) for reason in out.break_reasons[:1]]
                except Exception as e:  # a crash in tracing is this row's result, not the end of the check
                    self.failures += 1
                    self.table.row(what, {self.compiled: "error"}, one_line(f"{type(e).__name__}: {e}"))
                    continue
                self.failures += sum(counts) != 0
                self.table.row(what, {self.compiled: str(sum(counts))}, one_line(reasons[0]) if reasons else "")
            if not record:
                self.table.row(f"{script}: graph breaks", {self.compiled: "none compiled"},
                               "--compile compiled no function: nothing to count")
            self.recorded[script] = record
        self.attempt(f"{script} graph breaks", "graph breaks", PRIOR["graph breaks"] * WEIGHT[script], part)

    def compare_and_time(self, script: str):
        """Part 2: a run per column, parameters against the plain eager one, then calls/s of each function."""
        runs, record = {}, {}
        for column, flags in self.columns.items():
            kind = "compiled run" if "--compile" in flags else "run"

            def part():
                tic = time.monotonic()
                run = self.in_process(script, [*self.script_argv(script, self.a.compare_steps), *flags],
                                      record if "--compile" in flags else None, self.torch_compile)
                self.run_seconds[script, column] = time.monotonic() - tic
                return run
            runs[column] = self.attempt(f"{script} {column} run", kind, PRIOR[kind] * WEIGHT[script], part)
        runs = {column: run for column, run in runs.items() if run is not None}
        if self.reference in runs and len(runs) > 1:
            cells, notes = {self.reference: "reference"}, []
            for column, run in runs.items():
                if column == self.reference:
                    continue
                try:
                    absolute, relative, worst = parameter_difference(run, runs[self.reference])
                except Exception as e:  # e.g. a network that one run has and the other lacks
                    self.failures += 1
                    cells[column] = "error"
                    notes.append(one_line(f"{column}: {type(e).__name__}: {e}", 150))
                    continue
                cells[column] = f"abs {absolute:.1e}, rel {relative:.1e}"
                notes.append(f"{column}: worst {worst}" if relative > 0 else "")
            self.table.row(f"{script}: parameters after {self.a.compare_steps} learning steps, max difference from "
                           f"{self.reference}", cells, "; ".join(n for n in notes if n))
        functions = self.recorded.get(script) or record
        if not functions or not runs:
            return
        seconds = self.a.rate_seconds * len(functions) * len(runs) + 5
        rates = self.attempt(f"{script} calls/s", "timing", seconds, lambda: {
            (name, column): rate(run[name], calls, self.a.calls, self.a.rate_seconds)
            for name, (_, calls) in functions.items() for column, run in runs.items()})
        for name in functions if rates else ():
            for column in runs:
                self.rates[script, name, column] = rates[name, column]
            self.table.row(f"{script} `{name}` calls/s", {column: f"{rates[name, column]:.1f}" for column in runs})

    @property
    def e2e(self) -> dict:
        """mbpo.py's end-to-end run: random steps, retrain interval, model steps per retrain, replay ratio, flags."""
        if self.a.cpu_smoke:
            return {"learning_starts": 50, "model_train_freq": 5, "model_train_steps": 2, "replay_ratio": 2,
                    "flags": ["--hidden-dim", "16", "--model-hidden-dim", "16", "--model-train-steps", "2",
                              "--model-train-freq", "5", "--replay-ratio", "2", "--rollouts-per-step", "8"]}
        from mbpo import Args  # noqa: E402  (its defaults are the paper's)

        d = Args()
        return {"learning_starts": 1000, "model_train_freq": d.model_train_freq,
                "model_train_steps": d.model_train_steps, "replay_ratio": d.replay_ratio, "flags": []}

    def e2e_seconds(self, column: str, steps: int) -> float:
        """Predicted seconds of one end-to-end run in `column` for `steps` learning steps, from part 2's mbpo.py rates
        and run time (compilation and capture), else from PRIOR and PRIOR_RATES."""
        e = self.e2e
        r = {name: self.rates.get(("mbpo.py", name, column), prior) for name, prior in PRIOR_RATES.items()}
        once = self.run_seconds.get(("mbpo.py", column),
                                    PRIOR["e2e compile"] if "--compile" in self.columns[column] else 0)
        per_step = (e["replay_ratio"] / r["update"] + 1 / r["rollout_step"]
                    + e["model_train_steps"] / e["model_train_freq"] / r["model_step"] + 0.002)
        return PRIOR["e2e startup"] + once + e["model_train_steps"] / r["model_step"] + steps * per_step

    def e2e_steps(self, column: str) -> int:
        """Learning steps for an end-to-end run in `column`: model_train_freq + 1 (two retrains, so the steady rate is
        measured) if that fits in the budget, else as many as fit (0: not even one)."""
        ratio = max(self.budget.ratios.get("e2e", [1.0]))
        return next((n for n in range(self.e2e["model_train_freq"] + 1, 0, -1)
                     if self.e2e_seconds(column, n) * ratio <= self.budget.left()), 0)

    def end_to_end(self):
        """Part 3: mbpo.py at the paper's defaults, one process per column (default first, the others at its number of
        learning steps if they fit)."""
        e = self.e2e
        steps = max(1, self.e2e_steps("default"))  # 0: the default run does not fit, and its attempt says so
        results = {}
        for column in self.e2e_columns:
            per_process = self.attempt(f"mbpo.py end to end, {column}, {steps} learning steps", "e2e",
                                       self.e2e_seconds(column, steps),
                                       lambda: self.mbpo_processes(self.columns[column], steps, 1))
            if per_process:
                results[column] = per_process[0]
        if not results:
            return
        sizes = "tiny sizes (smoke)" if self.a.cpu_smoke else "paper defaults"
        what = f"mbpo.py end to end, {E2E_ENV}, {sizes}, {steps} learning steps after {e['learning_starts']} random"
        self.table.row(f"{what}: env steps/s over all of them (compilation, capture, first retrain included)",
                       {c: f"{whole:.2f}" for c, (whole, _) in results.items()})
        if steps > e["model_train_freq"]:
            self.table.row(f"{what}: env steps/s over the {e['model_train_freq']} after the first (steady: one retrain "
                           f"per {e['model_train_freq']})", {c: f"{steady:.2f}" for c, (_, steady) in results.items()})
        else:
            self.table.row("skipped: mbpo.py end to end, steady rate",
                           note=f"needs {e['model_train_freq'] + 1} learning steps (a second retrain); "
                                f"the budget allowed {steps}")
        self.best = max(results, key=lambda c: results[c][1] or results[c][0])
        self.best_steps, one = steps, results[self.best][1] or results[self.best][0]
        self.table.row(f"1 mbpo.py process ({self.best}), {E2E_ENV}, seed-steps/s "
                       f"({'steady' if results[self.best][1] else 'all steps'})", {self.best: f"{one:.2f}"})

    def processes(self):
        """Part 4: several mbpo.py processes at once in the fastest column of part 3 (default if it did not run), at its
        number of learning steps."""
        best = getattr(self, "best", "default")
        steps = getattr(self, "best_steps", None) or max(1, self.e2e_steps(best))
        single = self.e2e_seconds(best, steps)
        for processes in self.process_counts:
            prior = single * max(1.0, processes / 2)  # assumes the GPU serves at least two processes' worth at once
            per_process = self.attempt(f"{processes} mbpo.py processes at once ({best})", "processes", prior,
                                       lambda: self.mbpo_processes(self.columns[best], steps, processes))
            if not per_process:
                continue
            rates = [steady if steady is not None else whole for whole, steady in per_process]
            self.table.row(f"{processes} mbpo.py processes at once ({best}), {E2E_ENV}, {steps} learning steps, "
                           f"seed-steps/s in all ({'steady' if per_process[0][1] is not None else 'all steps'})",
                           {best: f"{sum(rates):.2f}"}, f"each {min(rates):.2f}-{max(rates):.2f}")

    def seeds(self):
        """Part 5: several seeds in one process (--num-seeds) in the fastest column of part 3 (default if it did not
        run): mbpo.py at part 3's learning steps, sac.py end to end; seed-steps/s in all."""
        best = getattr(self, "best", "default")
        steps = getattr(self, "best_steps", None) or max(1, self.e2e_steps(best))
        for num_seeds in self.seed_counts["mbpo.py"]:
            flags = [*self.columns[best], "--num-seeds", str(num_seeds)]
            per_process = self.attempt(f"mbpo.py --num-seeds {num_seeds} ({best})", "seeds",
                                       self.e2e_seconds(best, steps) * (1 + num_seeds / 4),
                                       lambda: self.mbpo_processes(flags, steps, 1))
            if per_process:
                whole, steady = per_process[0]
                self.table.row(f"mbpo.py --num-seeds {num_seeds} ({best}), {E2E_ENV}, {steps} learning steps, seed-steps/s "
                               f"({'steady' if steady is not None else 'all steps'})",
                               {best: f"{num_seeds * (steady if steady is not None else whole):.2f}"})
        start, steps = (50, 20) if self.a.cpu_smoke else (1000, 2000)
        for num_seeds in self.seed_counts["sac.py"]:
            command = [sys.executable, str(ROOT / "sac.py"), "--env", E2E_ENV, "--num-seeds", str(num_seeds),
                       "--learning-starts", str(start), "--total-timesteps", str(start + steps), "--eval-interval", str(10**9),
                       "--eval-episodes", "1", "--checkpoint-interval", "0", "--log-dir", tempfile.mkdtemp(dir=self.log_dir),
                       *self.device_flags(), *self.columns[best], *(["--hidden-dim", "16"] if self.a.cpu_smoke else [])]
            rate = self.attempt(f"sac.py --num-seeds {num_seeds} ({best})", "seeds", 30 + num_seeds,
                                lambda: self.learning_rate(command))
            if rate:
                self.table.row(f"sac.py --num-seeds {num_seeds} ({best}), {E2E_ENV}, {steps} learning steps after {start} "
                               f"random, seed-steps/s", {best: f"{num_seeds * rate:.1f}"})

    def learning_rate(self, command: list[str]) -> float:
        """The env steps/s of a script's learning phase, from its final progress line; TimeoutError past the budget."""
        try:
            result = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                                    text=True, timeout=max(1.0, self.budget.left()))
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{command[1]} ran past the budget")
        if result.returncode != 0:
            raise RuntimeError(f"exited with {result.returncode}: {(result.stdout + result.stderr).strip().splitlines()[-1:]}")
        return float(re.findall(r"\| learning \| SPS ([\d.e+]+)", result.stdout)[-1])

    def mbpo_processes(self, flags: list[str], steps: int, processes: int) -> list[tuple]:
        """`processes` concurrent mbpo.py runs (seeds 1...) for `steps` learning steps; per run (env steps/s over all
        its learning steps, env steps/s over the model_train_freq steps after the first or None). Stopped with
        TimeoutError at the end of the budget."""
        e, start = self.e2e, self.e2e["learning_starts"]
        command = [sys.executable, str(ROOT / "mbpo.py"),
                   "--env", E2E_ENV, "--learning-starts", str(start), "--total-timesteps", str(start + steps),
                   "--eval-interval", str(10**9), "--eval-episodes", "1", "--checkpoint-interval", "0",
                   "--log-interval", str(e["model_train_freq"]), *self.device_flags(), *e["flags"], *flags]
        run_dirs = [tempfile.mkdtemp(dir=self.log_dir, prefix=f"e2e_{processes}_") for _ in range(processes)]
        jobs = [subprocess.Popen([*command, "--seed", str(seed), "--log-dir", run_dir], cwd=ROOT,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
                for seed, run_dir in enumerate(run_dirs, 1)]
        outputs = []
        try:
            for job in jobs:
                outputs.append(job.communicate(timeout=max(1.0, self.budget.left()))[0])
        except subprocess.TimeoutExpired:
            for job in jobs:
                job.kill()
                job.wait()
            raise TimeoutError("mbpo.py ran past the budget")
        results = []
        for job, output, run_dir in zip(jobs, outputs, run_dirs):
            if job.returncode != 0:
                raise RuntimeError(f"mbpo.py exited with {job.returncode}: {output.strip().splitlines()[-1:]}")
            whole = float(re.findall(r"\| learning \| SPS ([\d.e+]+)", output)[-1])
            steady = None
            if steps > e["model_train_freq"]:
                first, second = step_end_times(run_dir, (start, start + e["model_train_freq"]))
                steady = e["model_train_freq"] / (second - first)
            results.append((whole, steady))
        return results


def step_end_times(run_dir: str, steps: tuple) -> list[float]:
    """Wall time of the last TensorBoard scalar logged at each of `steps`: the end of that step's work, which the
    logging's device reads wait for."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = min(p for p in Path(run_dir).iterdir() if p.is_dir())  # with --num-seeds, any seed's (they step together)
    events = EventAccumulator(str(path), size_guidance={"scalars": 0})
    events.Reload()
    ends = {}
    for tag in events.Tags()["scalars"]:
        for event in events.Scalars(tag):
            ends[event.step] = max(ends.get(event.step, 0.0), event.wall_time)
    return [ends[step] for step in steps]


def rate(fn, calls: list, count: int, seconds: float) -> float:
    """Calls per second of `fn` on the recorded (args, kwargs) `calls` in turn, after one warm-up round: `count` calls
    or as many as `seconds` allows."""
    for args, kwargs in calls:
        fn(*args, **kwargs)
    synchronize()
    done, start = 0, time.perf_counter()
    while done < count and (done == 0 or time.perf_counter() - start < seconds):
        args, kwargs = calls[done % len(calls)]
        fn(*args, **kwargs)
        done += 1
    synchronize()
    return done / (time.perf_counter() - start)


def parameter_difference(run: dict, reference: dict) -> tuple[float, float, str]:
    """Largest absolute difference between the two runs' module weights (and leaf tensors such as log_alpha), the
    largest relative one (to the largest magnitude in that tensor), and the tensor where that is."""
    def tensors(g: dict) -> dict:
        out = {f"{name}.{key}": t for name, v in g.items() if isinstance(v, torch.nn.Module)
               for key, t in v.state_dict().items() if t.is_floating_point()}
        out.update({name: v.detach() for name, v in g.items() if isinstance(v, torch.Tensor) and v.requires_grad})
        return out

    ours, theirs = tensors(run), tensors(reference)
    if ours.keys() != theirs.keys():
        raise KeyError(f"tensors in one run only: {sorted(ours.keys() ^ theirs.keys())}")
    absolute, relative, worst = 0.0, 0.0, ""
    for name, t in ours.items():
        difference = (t.float() - theirs[name].float()).abs().max().item() if t.numel() else 0.0
        scale = theirs[name].abs().max().item() if t.numel() else 0.0
        absolute = max(absolute, difference)
        if difference / max(scale, 1e-12) > relative:
            relative, worst = difference / max(scale, 1e-12), name
    return absolute, relative, worst


def break_reason(reason) -> str:
    """A graph break's reason and the user line where it happened."""
    where = reason.user_stack[-1] if getattr(reason, "user_stack", None) else None
    return (f"{Path(where.filename).name}:{where.lineno}: " if where else "") + reason.reason


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="every part on the CPU at tiny sizes (the tests run it)")
    parser.add_argument("--budget", type=float, default=480, help="seconds the whole check may take (default 480)")
    parser.add_argument("--out", help="also append the table to this Markdown file")
    parser.add_argument("--env", default="Hopper-v5", help="env whose sizes the in-process runs use")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per function and column, at most")
    parser.add_argument("--rate-seconds", type=float, default=2.0, help="seconds per function and column, at most")
    parser.add_argument("--compare-steps", type=int, default=20, help="learning steps before parameters are compared")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"the parts to run, in this order (default: {','.join(PARTS)})")
    a = parser.parse_args(argv)
    if a.budget <= 0 or a.calls < 1 or a.rate_seconds <= 0 or a.compare_steps < 1:
        sys.exit("error: --budget and --rate-seconds must be > 0, --calls and --compare-steps >= 1")
    a.parts = a.parts.split(",")
    if not set(a.parts) <= set(PARTS):
        unknown = ",".join(sorted(set(a.parts) - set(PARTS)))
        sys.exit(f"error: --parts {unknown} unknown; the parts are {','.join(PARTS)}")
    a.device = "cpu" if a.cpu_smoke else "cuda"
    if a.cpu_smoke:
        a.calls, a.rate_seconds, a.env = 3, 0.5, "InvertedPendulum-v5"
        compile_ = torch.compile
        torch.compile = lambda fn=None, **kw: compile_(fn, **{**kw, "backend": "eager", "mode": None})
    elif not torch.cuda.is_available():
        sys.exit("error: no GPU visible to torch; use --cpu-smoke to check the code paths on the CPU")
    try:
        if a.out:  # its folder too (benchmark/results/gpu/<device>.md)
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).open("a").close()
    except OSError as e:
        sys.exit(f"error: cannot write --out {a.out!r} ({e.strerror})")
    if a.device == "cuda":
        from torch._inductor import config as inductor_config

        inductor_config.fallback_random = True  # compiled graphs draw the eager random numbers
        columns = {"`--no-cuda-graph`": ["--no-cuda-graph"], "default": [], "`--compile`": ["--compile"]}
        device = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    else:
        columns = {"default": [], "`--compile`": ["--compile"]}
        device = f"CPU ({platform.processor() or platform.machine()}; smoke: timings mean nothing)"
    table = Table(columns, a.out, [
        f"## gpu_check: {device}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"command: `python {shlex.join(['benchmark/gpu_check.py', *argv])}`; budget {a.budget:.0f} s"])
    check = Check(a, table, Budget(a.budget, table), columns)
    for part in a.parts:
        if part == "graph-breaks":
            for script in SCRIPTS:
                check.graph_breaks(script)
        if part == "compare":
            for script in check.compared:
                check.compare_and_time(script)
        if part == "e2e":
            check.end_to_end()
        if part == "processes":
            check.processes()
        if part == "seeds":
            check.seeds()
    table.row(f"total: {time.monotonic() - START:.0f} s of the {a.budget:.0f} s budget",
              note=f"{check.failures} failed part(s) or nonzero graph-break count(s)" if check.failures else "")
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
