"""One command for a short GPU lease: the CUDA-graph tests, then how fast the scripts run with graphs, as one Markdown
table that grows row by row. A lease is ~15 minutes of device time, the machine's start included, so one default call
keeps to --budget 480 s, imports included.

    python benchmark/gpu_check.py --out gpu.md                    # one GPU, the default parts, <= 8 minutes
    python benchmark/gpu_check.py --compile --parts graph-breaks,compare --budget 540  # inductor's rows, minutes each
    python benchmark/gpu_check.py --cpu-smoke --out smoke.md      # every part on the CPU, tiny sizes (the tests run it)

A default call runs, in this order (the seconds are the priors below, before anything is measured; `plan()` adds them
up, ~425 s with this process's imports, and tests/test_gpu_check.py checks that they fit the 480 s budget):
1. tests (120 s): `python -m pytest -v -rA tests/test_graphs.py`: on a GPU each script's real loop with its real CUDA
   graphs and with `--no-cuda-graph`, the checkpoints equal bit for bit. A row per test (passed, failed with its
   reason, skipped with its reason) below one row of counts; a row saying so where the file is not in the checkout.
2. compare (~95 s): sac.py, td3.py and mbpo.py in-process (as benchmark/speed.py does; Hopper-v5 sizes at batch 256,
   mbpo.py's model step at 7 members x 256 and its rollout at 400 x 1 step) for --compare-steps learning steps from
   the same seed, once per column: `--no-cuda-graph` (plain eager) and default (the same functions replayed as CUDA
   graphs). The largest difference of the networks' weights and buffers and of log_alpha from the eager run (0
   expected), then calls/s of each function the script captures (its `update`; mbpo.py's `model_step` and
   `rollout_step` too) in each column, on the arguments the eager run's loop passed, in turn (--calls calls or
   --rate-seconds, whichever ends first, after one warm-up round). Those arguments are recorded by running the eager
   column with `--compile` and torch.compile replaced by a recorder that compiles nothing.
3. e2e (~30 s): mbpo.py at the paper's defaults on Hopper-v5 with CUDA graphs, a subprocess, 1000 random steps then
   model_train_freq + 1 = 251 learning steps (or as many as the budget allows): env steps/s over all of them (capture
   and the first model retrain included; the script's own progress line) and the steady rate over the 250 after the
   first (one retrain per 250 steps, as in a long run), from the wall times of its TensorBoard logs at the ends of
   learning steps 1 and 251 (--log-interval 250).
4. seeds (~155 s): several seeds in one process (--num-seeds) with CUDA graphs, seed-steps/s in all: mbpo.py at 1
   (part 3's run), 8 and 16 seeds (part 3's learning steps; steady rate where it had one) and sac.py at 1, 8 and 32
   (1000 random then 1000 learning steps, the rate of its final progress line). Issue 36's targets on an H200:
   mbpo.py >= 400, sac.py >= 5000.
Only when asked:
- `--compile` adds a `--compile` column (torch.compile(fullgraph=True), replayed as CUDA graphs) to parts 2 and 3 and
  part graph-breaks before part 2. Its calls/s are timed as `--compile` users get them; its parameters are those of a
  second compiled run under inductor's `fallback_random` (scoped to that run), so that it draws the eager random
  numbers. Inductor takes minutes per function: give it a lease and a --budget of its own.
- graph-breaks: each script (sac.py, mbpo.py, td3.py, alm.py, mbpo_perfect_model.py) runs in-process for two
  learning steps (the first a logging one) with `--compile --no-cuda-graph` and the recorder; each function it
  compiles is then traced by `torch._dynamo.explain` on the first call of each argument variant (td3.py's update with
  and without the actor, alm.py's with and without measuring the model), with `trace_autograd_ops` as --compile sets
  it: the count, summed over the variants, must be 0; if it is not, the row gives the first break reason.
- processes: 4 and 8 concurrent mbpo.py runs at part 3's learning steps, seed-steps/s in all.

Every row is printed (and flushed) the moment it is measured and appended to --out, below a header naming the device,
the torch version, the command line and the plan, so a run cut off early still leaves what it measured. Before each
part the check estimates the seconds it needs (its prior, scaled by the largest ratio of measured to estimated seconds
among the earlier parts of its kind; mbpo.py's and sac.py's end-to-end runs from the calls/s part 2 measured) and
skips, in a row saying so, what no longer fits in the budget; a run still going at the end of the budget is stopped,
also in a row. The exit status is 1 if a part or a graph test failed or a graph-break count is not 0.

With --cpu-smoke every part runs on the CPU at tiny sizes, with `--compile`: the CPU has no CUDA graph, so its columns
are default (eager) and `--compile` (torch.compile's "eager" backend: Dynamo's graphs run as they are, seconds instead
of inductor's minutes of C++ compilation); part 1 runs the first test of tests/test_graphs.py alone (the suite runs
them all), part 2 mbpo.py alone (its three functions take every path; tests/test_compile.py compares every script),
part 3 in the default column alone, at 5 learning steps per retrain, processes with 2 processes and seeds with 1 and 2
seeds. It checks every part and counts every script's graph breaks; its timings mean nothing.
"""
import time

START = time.monotonic()  # the budget counts from here, imports included

import argparse  # noqa: E402
import atexit  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmark"))
from speed import run_in_process, script_env  # noqa: E402

SCRIPTS = ("sac.py", "mbpo.py", "td3.py", "alm.py", "mbpo_perfect_model.py")  # the most wanted first
COMPARED = ("sac.py", "td3.py", "mbpo.py")
# functions each script captures, 1 where not named: its update (mbpo.py: and its model step and rollout step)
FUNCTIONS = {"mbpo.py": 3}
# how much there is to trace and compile in each script, relative to sac.py's update (scales the priors below)
WEIGHT = {"sac.py": 1, "td3.py": 1, "mbpo.py": 3, "alm.py": 3, "mbpo_perfect_model.py": 1.5}
PARTS = ("tests", "graph-breaks", "compare", "e2e", "seeds", "processes")  # the order they run in
DEFAULT_PARTS = ("tests", "compare", "e2e", "seeds")  # --compile adds graph-breaks, --cpu-smoke runs them all
GRAPH_TESTS = "tests/test_graphs.py"

# Priors: what the check assumes before it measures anything, to plan a call that completes. Estimates, not
# measurements: the CUDA-graph path has never run on a GPU. Where they rest on the H200 measurements of 2026-12-04
# (torch 2.11, ../shared/device/README.md), they say so.
PRIOR_IMPORTS = 20  # seconds of this process's imports and CUDA context before the first part
PRIOR_GRAPH_TESTS = 120  # seconds of `pytest tests/test_graphs.py` on a GPU, its startup included (a guess)
PRIOR_STARTUP = 15  # seconds of a script's subprocess before its first step: imports, CUDA context, envs
PRIOR_RUN = 8  # seconds of an in-process compare run of sac.py's size (times WEIGHT), graph capture included
PRIOR_COMPILE = 60  # seconds of inductor for sac.py's update (times WEIGHT)
PRIOR_GRAPH_BREAKS = 20  # seconds to trace sac.py's functions with torch._dynamo.explain (times WEIGHT)
# eager calls/s, measured on the H200 on 2026-12-04 (README's table; sac.py's and td3.py's update, mbpo.py's three)
PRIOR_EAGER_RATES = {"sac.py": {"update": 109}, "td3.py": {"update": 181},
                     "mbpo.py": {"update": 121, "model_step": 296, "rollout_step": 324}}
# a CUDA graph's speedup over eager: the H200's eager sac.py update took ~10 ms of wall time for 0.85 ms of GPU work
# (its profile), so a graph could be ~10x faster; 4x leaves room for what a replay and its input copies cost
PRIOR_GRAPH_SPEEDUP = 4
# GPU time of a captured step grows ~6 % per seed beyond the first (H200, scaling.py: 190 µs at 1 seed, 276 µs at 8)
PRIOR_SEED_COST = 0.06
PRIOR_HOST_STEP = 0.002  # seconds of host work per env step outside the graphs: the action, buffer adds, logging
PRIOR_SAMPLE = 0.0002  # seconds to draw one minibatch outside the graph (~20 eager launches)
PRIOR_ENV_STEP = 0.0001  # seconds of one Hopper-v5 step (per seed)

RECORDED_CALLS = 8  # calls kept per function, timed in turn (td3.py's alternate: with the actor, without)
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

    def __init__(self, seconds: float):
        self.seconds, self.table, self.ratios = seconds, None, {}

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
    """The check's settings, its plan and budget, and what its parts measure for the later ones."""

    def __init__(self, a: argparse.Namespace):
        self.a, self.table, self.budget = a, None, Budget(a.budget)
        if a.device == "cuda":
            self.columns = {"`--no-cuda-graph`": ["--no-cuda-graph"], "default": []}
        else:
            self.columns = {"default": []}
        if a.compile:
            self.columns["`--compile`"] = ["--compile"]
        self.reference = next(iter(self.columns))  # plain eager
        self.compiled = "`--compile`"
        self.log_dir = None  # made by start()
        self.rates = {}  # (script, function name, column) -> calls/s
        self.run_seconds = {}  # (script, column) -> seconds of its in-process run (compilation and capture included)
        self.e2e_results = {}  # column -> (learning steps, env steps/s over all, steady env steps/s or None)
        self.torch_compile = torch.compile  # the real one (under --cpu-smoke, the "eager" backend's)
        self.failures = 0  # failed parts and graph tests, graph-break counts other than 0: the check's exit status
        self.compared = ("mbpo.py",) if a.cpu_smoke else COMPARED
        self.e2e_columns = ["default", *([self.compiled] if a.compile and not a.cpu_smoke else [])]
        self.process_counts = (2,) if a.cpu_smoke else (4, 8)
        self.seed_counts = ({"mbpo.py": (1, 2), "sac.py": (1, 2)} if a.cpu_smoke
                            else {"mbpo.py": (1, 8, 16), "sac.py": (1, 8, 32)})
        self.sac_steps = (50, 20) if a.cpu_smoke else (1000, 1000)  # random, then learning steps

    def start(self, table: Table):
        self.table = self.budget.table = table
        self.log_dir = tempfile.mkdtemp(prefix="freelunch-gpu-check-")
        atexit.register(shutil.rmtree, self.log_dir, ignore_errors=True)  # its runs' logs and checkpoints: the table is the result

    # the priors: each part's seconds before it is measured (the plan's), or from what earlier parts measured

    def run_prior(self, script: str, column: str) -> float:
        return (PRIOR_RUN + (PRIOR_COMPILE if "--compile" in self.columns[column] else 0)) * WEIGHT[script]

    def timing_prior(self, script: str, columns: int) -> float:
        return self.a.rate_seconds * FUNCTIONS.get(script, 1) * columns + 2

    def rate_of(self, script: str, name: str, column: str) -> float:
        """calls/s of `script`'s function `name` in `column`: measured by part 2, else its prior."""
        graphs = self.a.device == "cuda" and "--no-cuda-graph" not in self.columns[column]
        prior = PRIOR_EAGER_RATES[script][name] * (PRIOR_GRAPH_SPEEDUP if graphs else 1)
        return self.rates.get((script, name, column), prior)

    def compile_seconds(self, script: str, column: str) -> float:
        """Seconds a subprocess of `script` in `column` spends compiling: part 2's run, else the prior."""
        if "--compile" not in self.columns[column]:
            return 0
        return self.run_seconds.get((script, column), self.run_prior(script, column))

    @property
    def e2e(self) -> dict:
        """mbpo.py's end-to-end run: random steps, retrain interval, model steps per retrain, replay ratio, flags."""
        if self.a.cpu_smoke:
            return {"learning_starts": 50, "model_train_freq": 5, "model_train_steps": 2, "replay_ratio": 2,
                    "rollouts": 8, "flags": ["--hidden-dim", "16", "--model-hidden-dim", "16", "--model-train-steps",
                                             "2", "--model-train-freq", "5", "--replay-ratio", "2",
                                             "--rollouts-per-step", "8"]}
        from mbpo import Args  # noqa: E402  (its defaults are the paper's)

        d = Args()
        return {"learning_starts": 1000, "model_train_freq": d.model_train_freq, "model_train_steps": d.model_train_steps,
                "replay_ratio": d.replay_ratio, "rollouts": d.rollouts_per_step, "flags": []}

    def e2e_seconds(self, column: str, steps: int, num_seeds: int = 1) -> float:
        """Predicted seconds of one mbpo.py subprocess in `column` for `steps` learning steps at `num_seeds` seeds."""
        e, r = self.e2e, {name: self.rate_of("mbpo.py", name, column) for name in PRIOR_EAGER_RATES["mbpo.py"]}
        model_steps = e["model_train_steps"] * max(1.0, steps / e["model_train_freq"])
        gpu = steps * (e["replay_ratio"] / r["update"] + 1 / r["rollout_step"]) + model_steps / r["model_step"]
        host = steps * (PRIOR_HOST_STEP + e["replay_ratio"] * PRIOR_SAMPLE) \
            + (e["learning_starts"] + steps) * PRIOR_ENV_STEP * num_seeds
        return (PRIOR_STARTUP + self.compile_seconds("mbpo.py", column)
                + gpu * (1 + PRIOR_SEED_COST * (num_seeds - 1)) + host)

    def sac_seconds(self, column: str, num_seeds: int) -> float:
        """Predicted seconds of one sac.py subprocess in `column` at `num_seeds` seeds (part 4's run)."""
        start, steps = self.sac_steps
        gpu = steps / self.rate_of("sac.py", "update", column) * (1 + PRIOR_SEED_COST * (num_seeds - 1))
        host = steps * (PRIOR_HOST_STEP + PRIOR_SAMPLE) + (start + steps) * PRIOR_ENV_STEP * num_seeds
        return PRIOR_STARTUP + self.compile_seconds("sac.py", column) + gpu + host

    def e2e_steps(self, column: str) -> int:
        """Learning steps for an end-to-end run in `column`: model_train_freq + 1 (two retrains, so the steady rate is
        measured) if that fits in the budget, else as many as fit (0: not even one)."""
        ratio = max(self.budget.ratios.get("e2e", [1.0]))
        return next((n for n in range(self.e2e["model_train_freq"] + 1, 0, -1)
                     if self.e2e_seconds(column, n) * ratio <= self.budget.left()), 0)

    def plan(self) -> list[tuple[str, float]]:
        """What --parts will run, each with its prior seconds (before anything is measured), this process's imports
        first."""
        steps, rows = self.e2e["model_train_freq"] + 1, [("imports", PRIOR_IMPORTS)]
        for part in self.a.parts:
            if part == "tests":
                rows.append(("tests", PRIOR_GRAPH_TESTS))
            if part == "graph-breaks":
                rows += [(f"{script} graph breaks", PRIOR_GRAPH_BREAKS * WEIGHT[script]) for script in SCRIPTS]
            if part == "compare":
                for script in self.compared:
                    rows += [(f"{script} {column} run", self.run_prior(script, column)) for column in self.columns]
                    if self.compiled in self.columns:  # the second compiled run, with fallback_random
                        rows.append((f"{script} {self.compiled} run (fallback_random)",
                                     self.run_prior(script, self.compiled)))
                    rows.append((f"{script} calls/s", self.timing_prior(script, len(self.columns))))
            if part == "e2e":
                rows += [(f"mbpo.py end to end, {column}", self.e2e_seconds(column, steps)) for column in self.e2e_columns]
            if part == "seeds":
                rows += [(f"mbpo.py --num-seeds {n}", self.e2e_seconds("default", steps, n))
                         for n in self.seed_counts["mbpo.py"] if n > 1 or "e2e" not in self.a.parts]
                rows += [(f"sac.py --num-seeds {n}", self.sac_seconds("default", n)) for n in self.seed_counts["sac.py"]]
            if part == "processes":
                rows += [(f"{n} mbpo.py processes", self.e2e_seconds("default", steps) * max(1.0, n / 2))
                         for n in self.process_counts]
        return rows

    # running the parts

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

    def graph_tests(self):
        """Part 1: tests/test_graphs.py in a subprocess (under --cpu-smoke its first test alone), a row per test."""
        if not (ROOT / GRAPH_TESTS).exists():
            self.table.row(f"{GRAPH_TESTS} not found", note="no graph == eager tests in this checkout")
            return
        pytest = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]

        def part():
            tic, targets = time.monotonic(), [GRAPH_TESTS]
            if self.a.cpu_smoke:
                listed = subprocess.run([*pytest, "-q", "--collect-only", GRAPH_TESTS], cwd=ROOT, env=script_env(),
                                        capture_output=True, text=True, timeout=max(1.0, self.budget.left()))
                targets = [line for line in listed.stdout.splitlines() if "::" in line][:1] or targets
            job = subprocess.Popen([*pytest, "-v", "-rA", *targets], cwd=ROOT, env=script_env(), text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                output, stopped = job.communicate(timeout=max(1.0, self.budget.left()))[0], False
            except subprocess.TimeoutExpired:
                job.kill()
                output, stopped = job.communicate()[0], True
            return graph_test_outcomes(output), job.returncode, output, stopped, time.monotonic() - tic, targets

        result = self.attempt("graph tests", "tests", PRIOR_GRAPH_TESTS, part)
        if result is None:
            return
        outcomes, returncode, output, stopped, seconds, targets = result
        counts = {}
        for _, outcome, _ in outcomes:
            counts[outcome] = counts.get(outcome, 0) + 1
        failed = sum(n for outcome, n in counts.items() if outcome in ("failed", "error"))
        if returncode not in (0, 5) and not failed and not stopped:  # e.g. a collection error: no test line at all
            reason = next((line[1:].strip() for line in output.splitlines() if line.startswith("E ")), last_lines(output))
            failed, outcomes = 1, [*outcomes, (GRAPH_TESTS, "error", one_line(reason, 200))]
        self.failures += failed
        counted = ", ".join(f"{n} {outcome}" for outcome, n in counts.items()) or "no test ran"
        note = f"{seconds:.0f} s" + ("; stopped at the end of the budget" if stopped else "") \
            + ("; smoke: the first test alone" if self.a.cpu_smoke else "")
        self.table.row(f"{GRAPH_TESTS}: {counted}",
                       {"default": "failed" if failed else "stopped" if stopped else "ok"}, note)
        for test, outcome, reason in outcomes:
            self.table.row(f"graph test {test.split('::', 1)[-1]}", {"default": outcome}, reason)

    def graph_breaks(self, script: str):
        """Part graph-breaks: each function `script` compiles, traced by torch._dynamo.explain with its loop's
        arguments."""
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
        self.attempt(f"{script} graph breaks", "graph breaks", PRIOR_GRAPH_BREAKS * WEIGHT[script], part)

    def compare_and_time(self, script: str):
        """Part 2: a run per column, parameters against the plain eager one, then calls/s of each function."""
        runs, record, argv = {}, {}, self.script_argv(script, self.a.compare_steps)
        for column, flags in self.columns.items():
            kind = "compiled run" if "--compile" in flags else "run"

            def part():
                tic = time.monotonic()
                if column == self.reference:  # the functions and their arguments recorded, nothing compiled
                    run = self.in_process(script, [*argv, *flags, "--compile"], record)
                else:
                    run = self.in_process(script, [*argv, *flags], None, self.torch_compile)
                self.run_seconds[script, column] = time.monotonic() - tic
                return run
            runs[column] = self.attempt(f"{script} {column} run", kind, self.run_prior(script, column), part)
        runs = {column: run for column, run in runs.items() if run is not None}
        compared = dict(runs)  # the runs whose parameters are compared with the eager one's
        if self.compiled in runs:  # its random numbers drawn as eager draws them, in this run alone
            from torch._inductor import config as inductor_config

            def part():
                with inductor_config.patch(fallback_random=True):
                    return self.in_process(script, [*argv, *self.columns[self.compiled]], None, self.torch_compile)
            compared[self.compiled] = self.attempt(f"{script} {self.compiled} run with fallback_random",
                                                   "compiled run", self.run_prior(script, self.compiled), part)
        if self.reference in runs and len(runs) > 1:
            cells, notes = {self.reference: "reference"}, []
            for column, run in compared.items():
                if column == self.reference or run is None:
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
            if self.compiled in compared:
                notes.append(f"{self.compiled}: its second run, with inductor's fallback_random")
            self.table.row(f"{script}: parameters after {self.a.compare_steps} learning steps, max difference from "
                           f"{self.reference}", cells, "; ".join(n for n in notes if n))
        if not record or self.reference not in runs:
            return

        def timing():  # the eager column calls the function itself, the others what their run's loop calls
            return {(name, column): rate(fn if column == self.reference else run[name], calls, self.a.calls,
                                         self.a.rate_seconds)
                    for name, (fn, calls) in record.items() for column, run in runs.items()}
        rates = self.attempt(f"{script} calls/s", "timing", self.timing_prior(script, len(runs)), timing)
        for name in record if rates else ():
            for column in runs:
                self.rates[script, name, column] = rates[name, column]
            speedups = [f"{column} {rates[name, column] / rates[name, self.reference]:.1f}x" for column in runs
                        if column != self.reference]
            self.table.row(f"{script} `{name}` calls/s", {column: f"{rates[name, column]:.1f}" for column in runs},
                           f"vs {self.reference}: " + ", ".join(speedups) if speedups else "")

    def end_to_end(self):
        """Part 3: mbpo.py at the paper's defaults, one process per column (default first, the others at its number of
        learning steps if they fit)."""
        e = self.e2e
        steps = max(1, self.e2e_steps("default"))  # 0: the default run does not fit, and its attempt says so
        for column in self.e2e_columns:
            per_process = self.attempt(f"mbpo.py end to end, {column}, {steps} learning steps", "e2e",
                                       self.e2e_seconds(column, steps),
                                       lambda: self.mbpo_processes(self.columns[column], steps, 1))
            if per_process:
                self.e2e_results[column] = (steps, *per_process[0])
        if not self.e2e_results:
            return
        sizes = "tiny sizes (smoke)" if self.a.cpu_smoke else "paper defaults"
        what = f"mbpo.py end to end, {E2E_ENV}, {sizes}, {steps} learning steps after {e['learning_starts']} random"
        self.table.row(f"{what}: env steps/s over all of them (capture, compilation, first retrain included)",
                       {c: f"{whole:.2f}" for c, (_, whole, _) in self.e2e_results.items()})
        if steps > e["model_train_freq"]:
            self.table.row(f"{what}: env steps/s over the {e['model_train_freq']} after the first (steady: one retrain "
                           f"per {e['model_train_freq']})",
                           {c: f"{steady:.2f}" for c, (_, _, steady) in self.e2e_results.items()})
        else:
            self.table.row("skipped: mbpo.py end to end, steady rate",
                           note=f"needs {e['model_train_freq'] + 1} learning steps (a second retrain); "
                                f"the budget allowed {steps}")

    def seeds(self):
        """Part 4: several seeds in one process (--num-seeds) with CUDA graphs (the default column): mbpo.py at part
        3's learning steps (its run is the one seed's), sac.py end to end; seed-steps/s in all."""
        steps = self.e2e_results["default"][0] if "default" in self.e2e_results else max(1, self.e2e_steps("default"))
        for num_seeds in self.seed_counts["mbpo.py"]:
            what = f"mbpo.py --num-seeds {num_seeds}, {E2E_ENV}, {steps} learning steps, seed-steps/s"
            if num_seeds == 1 and "default" in self.e2e_results:
                _, whole, steady = self.e2e_results["default"]
                note = "part 3's run"
            else:
                flags = ["--num-seeds", str(num_seeds)]
                per_process = self.attempt(f"mbpo.py --num-seeds {num_seeds}", "e2e",
                                           self.e2e_seconds("default", steps, num_seeds),
                                           lambda: self.mbpo_processes(flags, steps, 1))
                if not per_process:
                    continue
                (whole, steady), note = per_process[0], ""
            self.table.row(f"{what} ({'steady' if steady is not None else 'all steps'})",
                           {"default": f"{num_seeds * (steady if steady is not None else whole):.2f}"}, note)
        start, steps = self.sac_steps
        for num_seeds in self.seed_counts["sac.py"]:
            command = [sys.executable, str(ROOT / "sac.py"), "--env", E2E_ENV, "--num-seeds", str(num_seeds),
                       "--learning-starts", str(start), "--total-timesteps", str(start + steps), "--eval-interval",
                       str(10**9), "--eval-episodes", "1", "--checkpoint-interval", "0",
                       "--log-dir", tempfile.mkdtemp(dir=self.log_dir), *self.device_flags(),
                       *(["--hidden-dim", "16"] if self.a.cpu_smoke else [])]
            sps = self.attempt(f"sac.py --num-seeds {num_seeds}", "e2e", self.sac_seconds("default", num_seeds),
                               lambda: self.learning_rate(command))
            if sps:
                self.table.row(f"sac.py --num-seeds {num_seeds}, {E2E_ENV}, {steps} learning steps after {start} "
                               f"random, seed-steps/s", {"default": f"{num_seeds * sps:.1f}"})

    def processes(self):
        """Part processes: several mbpo.py processes at once with CUDA graphs, at part 3's learning steps."""
        steps = self.e2e_results["default"][0] if "default" in self.e2e_results else max(1, self.e2e_steps("default"))
        for processes in self.process_counts:
            prior = self.e2e_seconds("default", steps) * max(1.0, processes / 2)  # the GPU serves two at once at least
            per_process = self.attempt(f"{processes} mbpo.py processes at once", "e2e", prior,
                                       lambda: self.mbpo_processes([], steps, processes))
            if not per_process:
                continue
            rates = [steady if steady is not None else whole for whole, steady in per_process]
            self.table.row(f"{processes} mbpo.py processes at once, {E2E_ENV}, {steps} learning steps, seed-steps/s "
                           f"in all ({'steady' if per_process[0][1] is not None else 'all steps'})",
                           {"default": f"{sum(rates):.2f}"}, f"each {min(rates):.2f}-{max(rates):.2f}")

    def learning_rate(self, command: list[str]) -> float:
        """The env steps/s of a script's learning phase, from its final progress line; TimeoutError past the budget."""
        try:
            result = subprocess.run(command, cwd=ROOT, env=script_env(), capture_output=True, text=True,
                                    timeout=max(1.0, self.budget.left()))
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{command[1]} ran past the budget")
        if result.returncode != 0:
            raise RuntimeError(f"exited with {result.returncode}: {last_lines(result.stdout + result.stderr)}")
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
        jobs = [subprocess.Popen([*command, "--seed", str(seed), "--log-dir", run_dir], cwd=ROOT, env=script_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
                raise RuntimeError(f"mbpo.py exited with {job.returncode}: {last_lines(output)}")
            whole = float(re.findall(r"\| learning \| SPS ([\d.e+]+)", output)[-1])
            steady = None
            if steps > e["model_train_freq"]:
                first, second = step_end_times(run_dir, (start, start + e["model_train_freq"]))
                steady = e["model_train_freq"] / (second - first)
            results.append((whole, steady))
        return results


def graph_test_outcomes(output: str) -> list[tuple[str, str, str]]:
    """(test id, outcome, reason) of each test in pytest's `-v -rA` output: outcomes from its per-test lines (printed
    as each test ends, so a run stopped early keeps them), reasons from its short summary."""
    outcomes, reasons = {}, {}
    for line in output.splitlines():
        if m := re.fullmatch(r"(\S+::.+?) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)(?: \((.*)\))? +\[ *\d+%\]", line):
            outcomes[m[1]] = m[2].lower()
            if m[3]:
                reasons[m[1]] = m[3]
        elif m := re.fullmatch(r"(?:FAILED|ERROR) (\S+::.+?) - (.*)", line):
            reasons[m[1]] = m[2]
    return [(test, outcome, one_line(reasons.get(test, ""), 200)) for test, outcome in outcomes.items()]


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


def last_lines(text: str, count: int = 3) -> str:
    return " / ".join(text.strip().splitlines()[-count:])


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="every part on the CPU at tiny sizes (the tests run it)")
    parser.add_argument("--compile", action="store_true",
                        help="also the `--compile` column and the graph-breaks part (inductor: minutes per function)")
    parser.add_argument("--budget", type=float, default=480, help="seconds the whole check may take (default 480)")
    parser.add_argument("--out", help="also append the table to this Markdown file")
    parser.add_argument("--env", default="Hopper-v5", help="env whose sizes the in-process runs use")
    parser.add_argument("--calls", type=int, default=100, help="timed calls per function and column, at most")
    parser.add_argument("--rate-seconds", type=float, default=1.0, help="seconds per function and column, at most")
    parser.add_argument("--compare-steps", type=int, default=10, help="learning steps before parameters are compared")
    parser.add_argument("--parts", help=f"the parts to run, in the order {','.join(PARTS)} (default: "
                                        f"{','.join(DEFAULT_PARTS)}; --compile adds graph-breaks, which implies it)")
    a = parser.parse_args(argv)
    if a.budget <= 0 or a.calls < 1 or a.rate_seconds <= 0 or a.compare_steps < 1:
        sys.exit("error: --budget and --rate-seconds must be > 0, --calls and --compare-steps >= 1")
    if a.parts is None:
        asked = PARTS if a.cpu_smoke else DEFAULT_PARTS + (("graph-breaks",) if a.compile else ())
    else:
        asked = a.parts.split(",")
        if not set(asked) <= set(PARTS):
            unknown = ",".join(sorted(set(asked) - set(PARTS)))
            sys.exit(f"error: --parts {unknown} unknown; the parts are {','.join(PARTS)}")
    a.parts = [part for part in PARTS if part in asked]
    a.compile = a.compile or "graph-breaks" in a.parts  # its counts are the `--compile` column's
    a.device = "cpu" if a.cpu_smoke else "cuda"
    if a.cpu_smoke:
        a.calls, a.rate_seconds, a.env, a.compile = 3, 0.5, "InvertedPendulum-v5", True
    return a


def main(argv: list[str]) -> int:
    a = parse(argv)
    if a.cpu_smoke:
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
        device = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    else:
        device = f"CPU ({platform.processor() or platform.machine()}; smoke: timings mean nothing)"
    check = Check(a)
    plan, smoke_note = check.plan(), ", a GPU's: the smoke takes far less" if a.cpu_smoke else ""
    check.start(Table(check.columns, a.out, [
        f"## gpu_check: {device}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"command: `python {shlex.join(['benchmark/gpu_check.py', *argv])}`; budget {a.budget:.0f} s",
        f"plan (priors, s{smoke_note}): {sum(s for _, s in plan):.0f} = " + " + ".join(f"{what} {s:.0f}" for what, s in plan)]))
    for part in a.parts:
        if part == "tests":
            check.graph_tests()
        if part == "graph-breaks":
            for script in SCRIPTS:
                check.graph_breaks(script)
        if part == "compare":
            for script in check.compared:
                check.compare_and_time(script)
        if part == "e2e":
            check.end_to_end()
        if part == "seeds":
            check.seeds()
        if part == "processes":
            check.processes()
    check.table.row(f"total: {time.monotonic() - START:.0f} s of the {a.budget:.0f} s budget",
                    note=f"{check.failures} failed part(s) or test(s), or nonzero graph-break count(s)"
                    if check.failures else "")
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
