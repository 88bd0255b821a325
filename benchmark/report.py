"""Report of a sweep: one tidy CSV, a Markdown report and PNG figures, read from the runs' TensorBoard event files.

    python benchmark/report.py runs/sweep_quick --protocol quick   # -> runs/sweep_quick/report/{report.md, runs.csv, *.png}
    python benchmark/report.py --from-csv benchmark/results/quick/runs.csv --out benchmark/results/quick --protocol quick
    python benchmark/report.py runs/sweep_evidence --protocol evidence --steps 10000 20000 30000 \
        --published benchmark/results/evidence/published.csv --out benchmark/results/evidence

It reads every run under <root>/<experiment>/<task>/seed_<k>/ (benchmark/sweep.py's layout) with its own reader of
the event files (TensorBoard's stops at the first damaged record; this one reads past it and says so) that keeps
what TensorBoard shows (files in name order; a resume's purge, or a step logged again, drops the earlier values); a
run directory's seed is the one its name says (<env>__<script>__<seed>__<time>: a --num-seeds process given a literal
--log-dir puts all its seeds into one seed directory); of several run directories of one seed, the newest by its
name's time. Or, with --from-csv, the runs.csv of an
earlier report (when the runs themselves are gone). It writes
- runs.csv, tidy: run, algorithm, variant, task, seed, step, tag, value (tags starting with --tags; default the
  evaluations, the diagnostics, the model's errors and training returns; --tags '' keeps all),
- report.md: every seed directory's state, steps and, where it is not used, why; per task and experiment, whether the
  final evaluation return improves beyond the step-0 (random initialization) return (the paper's headline, "k of N"
  tasks): a one-sided paired t-test over seeds and a minimum effect (MIN_EFFECT of the task's range), with the gain,
  its bound, the effect and a Benjamini-Hochberg column; each experiment against its baseline per task at the same
  env step, and the further pairs --protocol names (paired or Welch, with the effect; also at --steps, with the
  critic's gauge; a step a side did not reach says so); published numbers (--published) against ours; aggregate
  normalized returns with rliable's metrics (IQM and optimality gap with 95 % stratified bootstrap CIs, seeded, per
  experiment on its own tasks, probability of improvement of each experiment over its baseline on the tasks and seeds
  both have); the model's error by task (train, holdout and not-yet-trained-on transitions at each
  retrain, pooled and median beside the paper's mean ratio, the "Fixing That Free Lunch" model beside it, the DMC -
  Gym median difference with a bootstrap interval); links to the figures:
- learning curves of eval/return (published numbers marked), model/error_pct, and the critic's diagnostics/q_estimate
  beside diagnostics/mc_return, one panel per task, one figure per suite; bars of the model error per task.
A run is asked for a number of steps: --protocol-steps, else --protocol's budget for its experiment and task, else the
last command its stdout.log records, else its finished.json (the Runs table names the rule). It is
- finished: a readable finished.json for at least those steps. Its final return is the evaluation at F, the last
  evaluation step that a finished run of its experiment and task reached within its steps; one without an evaluation
  at F is listed, not used. From a CSV (no markers): it evaluated at that step.
- failed: it stopped on NaN/inf (its stdout.log ends with the scripts' "... is NaN or inf ..." line) or it logged a
  non-finite evaluation return. It counts as not improved: its final return is its last finite evaluation return or
  its step-0 one, whichever is lower. From a CSV only the second sign is there.
- unfinished: neither (still running, stopped, or crashed otherwise; the sweep retries it).
- unreadable: no record of its event files could be read (none there, or all damaged).
- absent: --protocol plans it, but it has no seed directory (from a CSV: no rows).
A run without a step-0 evaluation has no random-initialization return and is listed, not used. Nothing is dropped
without a line: every seed directory is a row of the Runs table.
"""
import argparse
import json
import math
import struct
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch
from scipy import stats
from tensorboard.compat.proto import event_pb2, types_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.util import tensor_util

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import FINISHED, LOG, PAPER, PROTOCOLS, Protocol, suite_of, task_dir  # noqa: E402

class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        sys.exit(f"error: {message}")


# runs.csv's columns and their kinds (see read_table): a failed run's value may be NaN or inf
RUNS_COLUMNS = {"run": "text", "algorithm": "text", "variant": "text", "task": "text", "seed": "int", "step": "int",
                "tag": "text", "value": "number"}
COLUMNS = list(RUNS_COLUMNS)
TAGS = ("eval/", "diagnostics/", "model/", "charts/episodic_return")
ALPHA = 0.05  # one-sided paired t-test, final > step 0
# the smallest mean gain that counts, as a fraction of the task's range (reference - random; 1000 - random on DMC):
# 0.05 is 50 points of DMC's 1000, ~175 of Hopper's 3500. A consistent +2 on every seed passes a t-test (p = 0) but is
# not learning; 5 % is well under what SAC gains on a task it learns (pytorch_sac's cheetah-run at 100k: ~21 %).
MIN_EFFECT = 0.05
STATES = ("finished", "failed", "unfinished", "unreadable", "absent")
NAN_STOP = "is NaN or inf"  # the scripts' last line when they stop on a non-finite tensor
MIN_SEEDS_FOR_BAND = 5  # below it a t-band is mostly its quantile (12.7 at 2 seeds): each seed is drawn instead
MIN_RUNS_FOR_CI = 3  # below it a bootstrap over runs resamples 1 or 2 values: the CI is not shown
# return of 1.0 after normalization: DMC's maximum return; Gym, round numbers near SAC's return after ~1M steps
# (Haarnoja et al. 2018; InvertedPendulum's maximum): a common scale, not a ceiling
GYM_REFERENCE = {"InvertedPendulum-v5": 1000, "Hopper-v5": 3500, "HalfCheetah-v5": 12000, "Walker2d-v5": 5000,
                 "Ant-v5": 6000, "Humanoid-v5": 6000}
SUITES = ("dmc", "gym")
SUITE_NAMES = {"dmc": "DMC", "gym": "Gym"}
SUITE_COLORS = {"gym": "C0", "dmc": "C3"}
# what mbpo.py logs at every model retrain (its step), and the report's name for it
MODEL_TAGS = {"model/error_pct": "train %", "model/error_pct_holdout": "holdout %",
              "model/error_pct_recent": "recent %", "model/error_pct_recent_pooled": "recent pooled %",
              "model/error_pct_recent_median": "recent median %", "model/reward_error": "reward error (holdout)",
              "model/reward_error_recent": "reward error (recent)", "model/reward_error_recent_rel_pct": "recent reward rel %",
              "model/error_pct_stfl": "STFL %"}
RECENT = "model/error_pct_recent"
Q_TAG, MC_TAG = "diagnostics/q_estimate", "diagnostics/mc_return"  # the critic's gauge
FTFL = "_ftfl"  # suffix of an experiment running the "Fixing That Free Lunch" model beside the plain one


@dataclass
class Marker:
    """What a run's seed directory says besides its scalars (see the docstring's run states)."""
    finished: int | None = None  # the steps its finished.json says (None: absent or unreadable)
    nan_stop: bool = False  # its stdout.log ends with the scripts' NaN/inf stop
    steps: int | None = None  # the env steps it was asked for
    steps_rule: str = "not known"  # where `steps` came from
    problems: tuple[str, ...] = ()  # event files that ended early or hold damaged records, one phrase each
    readable: bool = True  # whether any record of its event files could be read
    wall_s: float | None = None  # seconds its event files span, summed over its attempts (one file each)
    attempts: int = 0  # its event files: the start and each resume
    absent: bool = False  # planned by the protocol, but no seed directory (or no rows in a CSV)


def read_records(data: bytes) -> tuple[list[tuple[int, bytes]], list[tuple[str, int, int]]]:
    """(offset, record) of each record of a TFRecord file whose length and data CRCs check, and the damage:
    ("tail", offset, 0) for a record cut off by the end of the file, ("damaged", offset, next) for bytes skipped up to
    the next record that checks (next = -1: none does). TensorBoard's reader stops at the first bad record; this one
    reads on after it."""
    records, damage, pos = [], [], 0

    def end_of(at: int) -> int:
        """The end of a whole record at `at` whose CRCs check; 0 where none does; -1 where the file ends inside it."""
        if at + 12 > len(data):
            return -1
        head = data[at:at + 8]
        if struct.unpack("<I", data[at + 8:at + 12])[0] != masked_crc32c(head):
            return 0
        end = at + 12 + struct.unpack("<Q", head)[0] + 4
        if end > len(data):
            return -1
        return end if struct.unpack("<I", data[end - 4:end])[0] == masked_crc32c(data[at + 12:end - 4]) else 0

    while pos < len(data):
        end = end_of(pos)
        if end > 0:
            records.append((pos, data[pos + 12:end - 4]))
            pos = end
        elif end < 0:
            damage.append(("tail", pos, 0))
            break
        else:
            following = next((at for at in range(pos + 1, len(data) - 12) if end_of(at) > 0), -1)
            damage.append(("damaged", pos, following))
            if following < 0:
                break
            pos = following
    return records, damage


def read_run_dir(run_dir: Path, tags: tuple[str, ...]) -> tuple[list[tuple[int, str, float]], list[str], bool, float]:
    """(step, tag, value) of the scalars with `tags` in the event files of `run_dir`, read as TensorBoard reads them: the
    files in the order of their names (the name's timestamp orders a run's attempts, whatever the files' modification
    times say), a resume's purge (SessionLog START) dropping every value from its step on, and a value of a tag at a
    step it already reached dropping that tag's values from that step on (TensorBoard's preemption: a step logged
    twice keeps the later value). Also the damage found, one phrase each, naming the last step read before it, and
    the steps a file logged again without a purge; whether any record could be read; and the seconds its event files
    span (first to last record's wall time), summed over the files."""
    scalars, problems, readable, seconds = [], [], False, 0.0
    last = {}  # tag -> the step of its latest value
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        records, damage = read_records(data)
        readable |= bool(records)
        steps_at, times, again = [], [], set()  # (offset, step) of each record with a scalar; wall times; steps relogged
        for offset, record in records:
            try:
                event = event_pb2.Event.FromString(record)
            except Exception:  # CRCs check but it does not parse
                problems.append(f"{path.name}: the record at byte {offset} does not parse, skipped")
                continue
            times.append(event.wall_time)
            step = int(event.step)
            if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
                scalars = [s for s in scalars if s[0] < step]
                last = {tag: max((s for s, t, _ in scalars if t == tag), default=-1) for tag in last}
            for value in event.summary.value:
                if not value.tag.startswith(tags):
                    continue
                if value.HasField("simple_value"):
                    number = float(value.simple_value)
                elif value.HasField("tensor") and value.tensor.dtype == types_pb2.DT_FLOAT:
                    number = float(tensor_util.make_ndarray(value.tensor).flat[0])
                else:
                    continue
                if last.get(value.tag, -1) >= step:  # logged again without a purge: the later value preempts
                    again |= {s for s, t, _ in scalars if t == value.tag and s >= step}
                    scalars = [s for s in scalars if s[1] != value.tag or s[0] < step]
                scalars.append((step, value.tag, number))
                last[value.tag] = step
            if event.summary.value:
                steps_at.append((offset, step))
        if again:
            problems.append(f"{path.name} logs steps {min(again)}-{max(again)} again without a purge ({plural(len(again), 'step')}"
                            f" twice); the later values kept, as TensorBoard shows them")
        for kind, at, following in damage:
            before = [step for offset, step in steps_at if offset < at]
            read = f"the last scalar read before it is at step {before[-1]}" if before else "no scalar before it"
            problems.append(f"{path.name} " + (
                f"ends early, in a cut-off record ({read})" if kind == "tail" else
                f"is damaged at byte {at} and unreadable after it ({read})" if following < 0 else
                f"has {following - at} damaged bytes at byte {at}, skipped ({read})"))
        seconds += max(times) - min(times) if times else 0.0
    return scalars, problems, readable, seconds


def recorded_steps(lines: list[str]) -> int | None:
    """The --total-timesteps of the last command a sweep wrote into a run's stdout.log ('# <date> <command>')."""
    for line in reversed(lines):
        if line.startswith("# ") and "--total-timesteps" in line:
            words = line.split()
            try:
                return int(words[words.index("--total-timesteps") + 1])
            except (ValueError, IndexError):
                return None
    return None


def started(run_dir: Path) -> tuple[int, str]:
    """A run directory's start time as its name (env__script__seed__time) says it, then the name: the sort key."""
    stamp = run_dir.name.rsplit("__", 1)[-1]
    return int(stamp) if stamp.isdigit() else -1, run_dir.name


def named_seed(run_dir: Path, default: int) -> int:
    """The seed a run directory's name (env__script__seed__time) says; `default` (its seed directory's) when the name
    says none. A --num-seeds process given a literal --log-dir puts every seed's run directory into that one folder."""
    parts = run_dir.name.split("__")
    return int(parts[-2]) if len(parts) >= 4 and parts[-2].isdigit() else default


def seed_dir_names(seed_dir: str) -> tuple[str, str, int]:
    """(experiment, task, seed) of <experiment>/<task dir>/seed_<k>."""
    experiment, task, seed = seed_dir.split("/")
    return experiment, "dmc:" + task[4:] if task.startswith("dmc_") else task, int(seed[5:])


def read_sweep(root: Path, tags: tuple[str, ...] = TAGS, planned: dict[tuple[str, str], int] | None = None
               ) -> tuple[pd.DataFrame, dict[str, Marker]]:
    """The tidy table of every run under root/<experiment>/<task>/seed_<k>/<run dir> and a Marker per seed, readable or
    not. A run directory's seed is the one its name says (a --num-seeds process with a literal --log-dir writes every
    seed's into one seed directory), its seed directory's when the name says none; of several run directories of one
    seed, the newest by its name's time is read. `planned`: (experiment, task) -> the steps its protocol asks for."""
    rows, markers, found = [], {}, {}
    for seed_dir in sorted(root.glob("*/*/seed_*")):
        if seed_dir.is_dir() and seed_dir.name[5:].isdigit():
            found.setdefault(str(seed_dir.relative_to(root)), [])
            for run_dir in {p.parent for p in seed_dir.glob("*/events.out.tfevents.*")}:
                key = str(seed_dir.parent.relative_to(root) / f"seed_{named_seed(run_dir, int(seed_dir.name[5:]))}")
                found.setdefault(key, []).append(run_dir)
    for key, run_dirs in sorted(found.items()):
        experiment, task, seed = seed_dir_names(key)
        run_dirs = sorted(run_dirs, key=lambda d: (*started(d), str(d)))
        seed_dir = run_dirs[-1].parent if run_dirs else root / key  # its run's: the process's finished.json and log
        try:
            finished = int(json.loads((seed_dir / FINISHED).read_text())["total_timesteps"])
        except (OSError, ValueError, KeyError, TypeError):  # absent, truncated or not a marker: unfinished
            finished = None
        log = seed_dir / LOG
        lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
        last = next((line for line in reversed(lines) if line.strip()), "")
        steps, rule = next(((s, r) for s, r in [
            ((planned or {}).get((experiment, task)), "the protocol"), (recorded_steps(lines), "its stdout.log's last command"),
            (finished, "its finished.json")] if s is not None), (None, "not known"))
        problems, readable, wall_s = [], False, None
        if run_dirs:
            run_dir = run_dirs[-1]
            algorithm = run_dir.name.split("__")[1] if run_dir.name.count("__") >= 3 else experiment  # env__script__seed__time
            variant = ("default" if experiment == algorithm else
                       experiment[len(algorithm) + 1:] if experiment.startswith(algorithm + "_") else experiment)
            scalars, problems, readable, wall_s = read_run_dir(run_dir, tags)
            if seed_dir.name != f"seed_{seed}":
                problems.append(f"its run directory is in {seed_dir.name}/ (a --num-seeds process given a literal "
                                f"--log-dir), read as seed {seed} by its name")
            if len(run_dirs) > 1:
                where = {d: d.name if d.parent == root / key else f"{d.parent.name}/{d.name}" for d in run_dirs}
                problems.append(f"{len(run_dirs)} run directories of seed {seed}: read the newest by the name's time, "
                                f"{where[run_dir]}; not read: {', '.join(where[d] for d in run_dirs[:-1])}")
            rows += [(str(run_dir.relative_to(root)), algorithm, variant, task, seed, step, tag, value)
                     for step, tag, value in scalars]
        elif finished is None and not lines:
            continue  # an empty seed directory: the sweep made it, the run never started
        else:
            problems = ["no event file"]
        attempts = len(list(run_dirs[-1].glob("events.out.tfevents.*"))) if run_dirs else 0
        markers[key] = Marker(finished, NAN_STOP in last, steps, rule, tuple(problems), readable, wall_s, attempts)
    return pd.DataFrame(rows, columns=COLUMNS), markers


def absent_markers(markers: dict[str, Marker], protocol: Protocol) -> dict[str, Marker]:
    """A marker for each run `protocol` plans (experiment, task, seed) that has none in `markers`."""
    return {key: Marker(steps=steps, steps_rule="the protocol", readable=False, absent=True)
            for (experiment, task), steps in protocol.budgets().items() for seed in protocol.seeds
            if (key := f"{experiment}/{task_dir(task)}/seed_{seed}") not in markers}


def with_experiment(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `experiment` (sweep.py's name: algorithm, or algorithm_variant), `suite` and `seed_dir` (the key of its
    seed: <experiment>/<task>/seed_<its seed>, whichever seed directory holds its run directory)."""
    df = df.copy()
    df["experiment"] = [a if v == "default" else f"{a}_{v}" for a, v in zip(df.algorithm, df.variant)]
    df["suite"] = df.task.map(suite_of)
    df["seed_dir"] = [f"{run.split('/')[0]}/{run.split('/')[1]}/seed_{seed}" for run, seed in zip(df.run, df.seed)]
    return df


def markers_from_csv(df: pd.DataFrame, protocol_steps: int | None = None,
                     planned: dict[tuple[str, str], int] | None = None) -> dict[str, Marker]:
    """The markers a CSV implies (it has no finished.json or stdout.log): a run asked for the protocol's steps
    (--protocol-steps, else --protocol's, else the furthest evaluation of its experiment and task) finished when it
    evaluated at the last evaluation step of its experiment and task within them."""
    markers = {seed_dir: Marker() for seed_dir in df.seed_dir.unique()}
    evals = df[df.tag == "eval/return"]
    for cell_key, cell in evals.groupby(["experiment", "task"]):
        for seed_dir, run in cell.groupby("seed_dir"):
            steps, rule = ((protocol_steps, "--protocol-steps") if protocol_steps else
                           (planned[cell_key], "the protocol") if planned and cell_key in planned else
                           (int(cell.step.max()), "the furthest evaluation of its experiment and task (no protocol given)"))
            within = cell.step[cell.step <= steps]
            done = len(within) and (run.step == within.max()).any()
            markers[seed_dir] = Marker(steps if done else None, False, steps, rule)
    return markers


def run_table(df: pd.DataFrame, markers: dict[str, Marker], protocol_steps: int | None = None) -> pd.DataFrame:
    """One row per seed, readable or not: experiment, task, suite, seed, state (see the docstring), steps (what it was
    asked for) and rule (who said so), last_step (its last evaluation, -1 for none), grid (see grid), final_step (its
    experiment and task's last evaluation step F: the furthest that a finished run of the cell evaluated at within its
    steps, -1 when none finished), initial (step-0 return), final (at F when finished, the failed rule's when failed),
    used (whether verdicts and aggregates use it) and note (why not, and any damage to its event files)."""
    evals = df[df.tag == "eval/return"].drop_duplicates(["seed_dir", "step"], keep="last")
    returns_of = {d: g.set_index("step").value.sort_index() for d, g in evals.groupby("seed_dir")}
    named = df.groupby("seed_dir")[["experiment", "task", "seed"]].first()
    rows = []
    for key in sorted(set(markers) | set(named.index)):
        m = markers.get(key, Marker())
        experiment, task, seed = named.loc[key].tolist() if key in named.index else seed_dir_names(key)
        steps, rule = (protocol_steps, "--protocol-steps") if protocol_steps else (m.steps, m.steps_rule)
        returns = returns_of.get(key, pd.Series(dtype=float))
        finite = returns[np.isfinite(returns)]
        if m.absent:
            state = "absent"
        elif not m.readable:
            state = "unreadable"
        elif m.nan_stop or len(finite) < len(returns):
            state = "failed"
        elif m.finished is not None and steps is not None and m.finished >= steps:
            state = "finished"
        else:
            state = "unfinished"
        reached = returns.index[returns.index <= steps] if steps is not None else returns.index[:0]
        rows.append({"experiment": experiment, "task": task, "suite": suite_of(task), "seed": int(seed), "state": state,
                     "steps": steps if steps is not None else -1, "rule": rule,
                     "last_step": int(returns.index.max()) if len(returns) else -1, "grid": grid(list(returns.index)),
                     "own_final": int(reached.max()) if state == "finished" and len(reached) else -1,
                     "initial": finite.get(0, math.nan), "returns": finite, "problems": m.problems,
                     "finished_marker": m.finished if m.finished is not None else math.nan, "time": run_time(m)})
    runs = pd.DataFrame(rows, columns=["experiment", "task", "suite", "seed", "state", "steps", "rule", "last_step",
                                       "grid", "own_final", "initial", "returns", "problems", "finished_marker", "time"])
    runs["final_step"] = runs.groupby(["experiment", "task"]).own_final.transform("max").astype(int)
    finals, used, notes = [], [], []
    for r in runs.itertuples():
        final = (float(r.returns.get(r.final_step, math.nan)) if r.state == "finished" else
                 float(np.fmin(r.returns.iloc[-1], r.initial)) if r.state == "failed" and len(r.returns) else math.nan)
        why = ("planned by the protocol, no run" if r.state == "absent" else
               "no readable record" if r.state == "unreadable" else
               "no eval/return logged" if r.last_step < 0 else
               f"unfinished at step {r.last_step} of {r.steps if r.steps >= 0 else '?'} (steps from {r.rule}; "
               + (f"finished.json says {r.finished_marker:.0f})" if np.isfinite(r.finished_marker) else "no finished.json)")
               if r.state == "unfinished" else
               "no step-0 evaluation (no random-initialization return)" if not np.isfinite(r.initial) else
               f"no evaluation at step {r.final_step} (its last: {r.last_step})" if not np.isfinite(final) else "")
        finals.append(final)
        used.append(not why)
        notes.append("; ".join(filter(None, [why, *r.problems])))
    runs["final"], runs["used"], runs["note"] = finals, used, notes
    columns = ["experiment", "task", "suite", "seed", "state", "steps", "rule", "last_step", "grid", "final_step",
               "initial", "final", "used", "note", "time"]
    return runs[columns].sort_values(["experiment", "task", "seed"], ignore_index=True)


def grid(steps: list[int]) -> str:
    """Where a run evaluated, when not at one interval (a resume with another --eval-interval): 'every 500 to 1500,
    then 2250, 3000'; '' when at one interval."""
    gaps = np.diff(steps)
    if not len(gaps) or (gaps == gaps[0]).all():
        return ""
    regular = 1 + int(np.argmax(gaps != gaps[0]))  # the evaluations up to the first other gap
    return f"every {gaps[0]} to {steps[regular - 1]}, then {', '.join(map(str, steps[regular:]))}"


def run_time(m: Marker) -> str:
    """The wall time its event files span ('-' when unknown: no event file read), with its number of attempts when
    more than one."""
    if m.wall_s is None:
        return "-"
    return f"{m.wall_s / 60:.1f} min" + (f" ({m.attempts} attempts)" if m.attempts > 1 else "")


def scored(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs verdicts and aggregates use: finished or failed, with a finite step-0 and final return."""
    return runs[runs.used]


def random_returns(runs: pd.DataFrame) -> pd.Series:
    """Per task, the mean step-0 return of every run of it that has one (a randomly initialized policy)."""
    return runs[np.isfinite(runs.initial)].groupby("task").initial.mean()


def task_range(runs: pd.DataFrame) -> pd.Series:
    """Per task, reference - random: the normalized scale that effect sizes are fractions of."""
    random = random_returns(runs)
    return pd.Series({t: reference_return(t) - random.get(t, math.nan) for t in runs.task.unique()}, dtype=float)


def improvement(runs: pd.DataFrame) -> pd.DataFrame:
    """Per experiment and task, over its used runs: mean step-0 and final return, the mean paired difference and its
    one-sided 95 % lower confidence bound, both also as `effect` and `effect_low`, fractions of the task's range
    (reference - random); a one-sided paired t-test's p (scipy's result as it is: NaN when every difference is 0). It
    improved when p < ALPHA and the effect is at least MIN_EFFECT (None with fewer than 2 runs). `q`: the
    Benjamini-Hochberg adjusted p over the tasks of the same suite and experiment (a NaN p counts as 1), `improved_bh`
    q < ALPHA with the same minimum effect. `runs` counts every run of the cell (unreadable ones too), `seeds` the used
    ones; `not_used` lists the others with their reasons."""
    ranges = task_range(runs)
    rows = []
    for (experiment, task), g in runs.groupby(["experiment", "task"]):
        used = scored(g)
        p = low = math.nan
        improved = None
        difference = (used.final - used.initial).mean()
        if len(used) >= 2:
            with warnings.catch_warnings():  # "catastrophic cancellation" when the differences are (nearly) equal
                warnings.simplefilter("ignore", RuntimeWarning)
                test = stats.ttest_rel(used.final, used.initial, alternative="greater")
                p, low = float(test.pvalue), float(test.confidence_interval(1 - ALPHA).low)
            improved = bool(p < ALPHA and difference >= MIN_EFFECT * ranges[task])
        rows.append({"experiment": experiment, "task": task, "suite": suite_of(task), "runs": len(g),
                     "seeds": len(used), "final_step": int(g.final_step.iloc[0]), "initial": used.initial.mean(),
                     "final": used.final.mean(), "difference": difference, "low": low,
                     "effect": difference / ranges[task], "effect_low": low / ranges[task], "p": p, "improved": improved,
                     "failed": list(g.seed[g.state == "failed"]),
                     "not_used": [(r.seed, r.state, r.note) for r in g[~g.used].itertuples()]})
    table = pd.DataFrame(rows, columns=["experiment", "task", "suite", "runs", "seeds", "final_step", "initial", "final",
                                        "difference", "low", "effect", "effect_low", "p", "improved", "failed",
                                        "not_used"])
    table["improved"] = table.improved.astype(object)  # True, False or None (no verdict), also when none is None
    table["q"], table["improved_bh"] = math.nan, None
    for _, g in table[table.improved.notna()].groupby(["suite", "experiment"]):
        q = stats.false_discovery_control(g.p.fillna(1.0))
        table.loc[g.index, "q"] = q
        table.loc[g.index, "improved_bh"] = pd.Series([bool(x < ALPHA and e >= MIN_EFFECT) for x, e in zip(q, g.effect)],
                                                      index=g.index, dtype=object)
    return table


def improvement_counts(table: pd.DataFrame) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(suite, experiment) -> (k tasks improved, k after Benjamini-Hochberg, N tasks with a verdict)."""
    tested = table[table.improved.notna()]
    return {key: (int(g.improved.astype(bool).sum()), int(g.improved_bh.astype(bool).sum()), len(g))
            for key, g in tested.groupby(["suite", "experiment"])}


def reference_return(task: str) -> float:
    return 1000.0 if suite_of(task) == "dmc" else GYM_REFERENCE.get(task, math.nan)


def returns_at(df: pd.DataFrame, experiment: str, task: str, step: int) -> pd.Series:
    """Per seed, the evaluation return of `experiment` on `task` at `step` (finite ones only)."""
    evals = df[(df.tag == "eval/return") & (df.experiment == experiment) & (df.task == task) & (df.step == step)]
    values = evals.drop_duplicates("seed", keep="last").set_index("seed").value.sort_index()
    return values[np.isfinite(values)]


PAIRS = PAPER.pairs()  # the comparisons without --protocol: the paper's


def compare(x: pd.Series, y: pd.Series, scale: float) -> dict:
    """X against Y (returns by seed): paired by seed when both have the same seeds (at least 2), else Welch's t-test;
    the mean difference X - Y with its two-sided 95 % CI and the same test's two-sided p, as `effect` also a fraction
    of `scale`, and a verdict that agrees with the CI: 'better' when p < ALPHA (the CI above 0) and X is higher by at
    least MIN_EFFECT of the scale, 'worse' the other way round, else 'not shown' ('-' when a side has fewer than 2
    seeds)."""
    paired = len(x) >= 2 and list(x.index) == list(y.index)
    difference = float((x - y).mean()) if paired else float(x.mean() - y.mean())
    result = {"test": "paired" if paired else "Welch", "n": f"{len(x)} / {len(y)}", "difference": difference,
              "low": math.nan, "high": math.nan, "effect": difference / scale, "p": math.nan, "verdict": "-"}
    if min(len(x), len(y)) < 2:
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        test = (stats.ttest_rel(x, y) if paired else stats.ttest_ind(x, y, equal_var=False))
        ci = test.confidence_interval(1 - ALPHA)
    p = float(test.pvalue)
    shown = p < ALPHA  # NaN (no spread on either side) is not shown
    result.update(low=float(ci.low), high=float(ci.high), p=p,
                  verdict="better" if shown and difference >= MIN_EFFECT * scale else
                  "worse" if shown and difference <= -MIN_EFFECT * scale else "not shown")
    return result


def versus_baseline(df: pd.DataFrame, runs: pd.DataFrame, steps: list[int] | None = None,
                    pairs: list[tuple[str, str]] | None = None) -> pd.DataFrame:
    """Each experiment X against Y for every (X, Y) of `pairs` (default: each experiment against its baseline, e.g.
    MBPO's SAC) per task that both ran: at X's final step F (its used runs' finals against Y's evaluations at F,
    whether or not Y's runs have finished) and at each of `steps` (both sides' evaluations there). A side with no
    evaluation there gives a row too, verdict 'not reached' (or 'not evaluated': it evaluated past the step, not at it);
    `missing` says, per side, why it has no value there, or which of its seeds lack one there (X at F: the verdicts
    say why a run is not used)."""
    ranges = task_range(runs)
    evals = df[df.tag == "eval/return"]
    last_step = evals.groupby(["experiment", "task", "seed"]).step.max()
    rows = []
    for experiment, baseline in pairs if pairs is not None else PAIRS:
        for task, g in runs[runs.experiment == experiment].groupby("task"):
            if not ((runs.experiment == baseline) & (runs.task == task)).any():
                continue  # Y has no run on this task
            final = [("final", int(g.final_step.iloc[0]))] if g.final_step.iloc[0] >= 0 else []
            points = final + [("at", s) for s in steps or [] if ("final", s) not in final]  # a step that is F: one row
            for kind, step in points:
                x = (scored(g).set_index("seed").final.sort_index() if kind == "final" else
                     returns_at(df, experiment, task, step))
                y = returns_at(df, baseline, task, step)
                if kind == "final" and not len(x):
                    continue  # no used run: the verdicts say why
                missing = []
                for e, values, named in ((experiment, x, kind == "at"), (baseline, y, True)):
                    last = {seed: int(last_step.get((e, task, seed), -1))
                            for seed in runs.seed[(runs.experiment == e) & (runs.task == task)]}
                    missing.append(absence(max(last.values(), default=-1), step) if not len(values) else
                                   "; ".join(f"seed {seed} {absence(at, step)}" for seed, at in sorted(last.items())
                                             if seed not in values.index) if named else "")
                empty = [m for m, values in zip(missing, (x, y)) if not len(values)]
                row = {"experiment": experiment, "baseline": baseline, "task": task, "step": step, "kind": kind, "x": x,
                       "y": y, "missing": tuple(missing)}
                rows.append({**row, **(compare(x, y, ranges[task]) if not empty else {
                    "test": "-", "n": f"{len(x)} / {len(y)}", "difference": math.nan, "low": math.nan, "high": math.nan,
                    "effect": math.nan, "p": math.nan,
                    "verdict": "not reached" if any(m.startswith("not reached") for m in empty) else "not evaluated"})})
    return pd.DataFrame(rows, columns=["experiment", "baseline", "task", "step", "kind", "x", "y", "missing", "test",
                                       "n", "difference", "low", "high", "effect", "p", "verdict"])


def absence(last: int, step: int) -> str:
    """Why a run (or every run of a cell) whose last evaluation is at `last` has none at `step`."""
    return (f"not reached (last evaluation: {last if last >= 0 else 'none'})" if last < step else
            f"not evaluated at {step} (evaluated past it, to {last})")


def normalized(values: np.ndarray, task: str, random: pd.Series) -> np.ndarray:
    """(value - random) / (reference - random) of `task`."""
    return (values - random[task]) / (reference_return(task) - random[task])


def normalized_finals(runs: pd.DataFrame, suite: str) -> tuple[dict[str, tuple[list[str], np.ndarray, list[str]]], list[str]]:
    """Per experiment of `suite` with used runs: the tasks it has used runs on, its (runs x tasks) normalized final
    returns (the first n seeds of each task, n = its fewest used runs on them) and the tasks whose seeds were cut to n,
    as phrases; and the experiments left out, one phrase each. random: the mean step-0 return of every run of the
    task."""
    part = runs[runs.suite == suite]
    random, used = random_returns(part), scored(part)
    left_out = [f"{e} (no used run)" for e in sorted(set(part.experiment) - set(used.experiment))]
    matrices = {}
    for experiment, g in used.groupby("experiment"):
        tasks = sorted(g.task.unique())
        finals = {t: g[g.task == t].sort_values("seed").final.to_numpy() for t in tasks}
        n = min(len(f) for f in finals.values())
        cut = [f"{t} ({len(finals[t])} -> {n} seeds)" for t in tasks if len(finals[t]) > n]
        matrices[experiment] = tasks, np.stack([normalized(finals[t][:n], t, random) for t in tasks], axis=1), cut
    return matrices, left_out


def baseline_pairs(df: pd.DataFrame, runs: pd.DataFrame, suite: str, pairs: list[tuple[str, str]] | None = None
                   ) -> dict[str, tuple[np.ndarray, np.ndarray, list[str], int]]:
    """'X > Y' -> X's and Y's (seeds x tasks) normalized returns at X's final step, for each (X, Y) of `pairs` (as in
    versus_baseline), on the tasks where both have returns there, paired by seed (the first n shared seeds of each,
    n = the fewest shared), with those tasks and n."""
    part = runs[runs.suite == suite]
    random = random_returns(part)
    table = versus_baseline(df, part, pairs=pairs)
    pairs = {}
    for (experiment, baseline), g in table[table.kind == "final"].groupby(["experiment", "baseline"]):
        shared = {r.task: (r, sorted(set(r.x.index) & set(r.y.index))) for r in g.itertuples()}
        shared = {t: (r, seeds) for t, (r, seeds) in shared.items() if seeds}
        if not shared:
            continue
        tasks, n = sorted(shared), min(len(seeds) for _, seeds in shared.values())
        x, y = ([normalized(getattr(shared[t][0], side)[shared[t][1][:n]].to_numpy(), t, random) for t in tasks]
                for side in ("x", "y"))
        pairs[f"{experiment} > {baseline}"] = np.stack(x, axis=1), np.stack(y, axis=1), tasks, n
    return pairs


def bootstrap_ci(func, *scores: np.ndarray, reps: int) -> np.ndarray:
    """The 95 % percentile interval of func(*scores) over `reps` stratified bootstrap resamples, each array's runs
    (rows) resampled within each task (column): rliable's StratifiedBootstrap and, for two arrays, its
    StratifiedIndependentBootstrap, drawn here from a generator seeded with 0: rliable 1.2's bootstraps draw from
    numpy's global state whatever their random_state says (and arch has deprecated random_state)."""
    rng = np.random.default_rng(0)
    draws = [func(*(s[rng.integers(len(s), size=s.shape), np.arange(s.shape[1])] for s in scores)) for _ in range(reps)]
    return np.percentile(draws, [2.5, 97.5], axis=0)


def aggregates(matrices: dict[str, np.ndarray], pairs: dict[str, tuple[np.ndarray, np.ndarray]],
               reps: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """IQM and optimality gap per experiment, and the probability of improvement of each pair (rliable's metrics), with
    95 % stratified bootstrap CIs (bootstrap_ci); `runs` is the runs per task behind each (for a pair, the fewer)."""
    from rliable import metrics  # imports arch, which is slow to load

    def iqm_and_gap(scores):
        return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_optimality_gap(scores)])

    summary = pd.DataFrame([{"experiment": e, "runs": len(m), "iqm": point[0], "iqm_low": ci[0, 0], "iqm_high": ci[1, 0],
                             "gap": point[1], "gap_low": ci[0, 1], "gap_high": ci[1, 1]}
                            for e, m in matrices.items()
                            for point, ci in [(iqm_and_gap(m), bootstrap_ci(iqm_and_gap, m, reps=reps))]])
    improvements = pd.DataFrame([{"pair": pair, "runs": min(len(x), len(y)),
                                  "p": float(metrics.probability_of_improvement(x, y)), "low": ci[0], "high": ci[1]}
                                 for pair, (x, y) in pairs.items()
                                 for ci in [bootstrap_ci(metrics.probability_of_improvement, x, y, reps=reps)]],
                                columns=["pair", "runs", "p", "low", "high"])
    return summary, improvements


def with_ci(point: float, low: float, high: float, runs: int) -> str:
    if runs < MIN_RUNS_FOR_CI:
        return f"{point:.3f} (no CI: {runs} run{'s' * (runs != 1)} per task)"
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def curve_figure(df: pd.DataFrame, tasks: list[str], lines: list[tuple[str, str]], title: str,
                 log: bool = False, published: pd.DataFrame | None = None) -> plt.Figure | None:
    """One panel per task: per experiment and tag in `lines` (tag, line style) the mean over seeds at the steps every
    seed reached; below MIN_SEEDS_FOR_BAND seeds each seed as a thin line, from it a 95 % t-interval; `published`
    numbers of the task as black points with their spread. None when no task has these tags."""
    data = df[df.tag.isin([tag for tag, _ in lines]) & df.task.isin(tasks)]
    data = data.assign(value=data.value.where(np.isfinite(data.value)))  # a NaN stop's inf would break the axes
    tasks = [t for t in tasks if t in set(data.task)]
    if not tasks:
        return None
    columns = min(len(tasks), 4)
    rows = math.ceil(len(tasks) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(max(4 * columns, 7), 3 * rows + 0.5), squeeze=False)
    colors = {e: f"C{i}" for i, e in enumerate(sorted(df.experiment.unique()))}
    styles = dict(lines)
    for ax, task in zip(axes.flat, tasks):
        for (experiment, tag), g in data[data.task == task].groupby(["experiment", "tag"]):
            curves = g.drop_duplicates(["seed", "step"], keep="last").pivot(index="step", columns="seed", values="value")
            complete = curves.dropna()
            mean, seeds = complete.mean(axis=1), curves.shape[1]
            label = experiment if len(lines) == 1 else f"{experiment} {tag.split('/')[-1]}"
            if seeds < MIN_SEEDS_FOR_BAND:
                for seed in curves:
                    ax.plot(curves[seed].dropna(), styles[tag], color=colors[experiment], linewidth=0.7, alpha=0.4)
            else:
                half = stats.t.ppf(0.975, seeds - 1) * complete.std(axis=1) / math.sqrt(seeds)
                ax.fill_between(mean.index, mean - half, mean + half, color=colors[experiment], alpha=0.2)
            ax.plot(mean.index, mean, styles[tag], color=colors[experiment], label=label)
        for p in published[published.task == task].itertuples() if published is not None else []:
            spread = [[p.value - p.low], [p.high - p.value]] if np.isfinite(p.low) and np.isfinite(p.high) else None
            ax.errorbar([p.step], [p.value], yerr=spread, fmt="D", color=colors.get(p.experiment, "black"),
                        markeredgecolor="black", capsize=3, label=f"published {p.experiment}")
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("env steps", fontsize=8)
        if log and (data[data.task == task].value > 0).all():
            ax.set_yscale("log")
    for ax in axes.flat[len(tasks):]:
        ax.axis("off")
    handles = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(len(handles), 4), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(handles) / 4), 1, 1))
    return fig


def aggregate_figure(summary: pd.DataFrame, improvements: pd.DataFrame, title: str, path: Path) -> None:
    """IQM, optimality gap and probability of improvement as points with 95 % CI bars (none below MIN_RUNS_FOR_CI)."""
    panels = [("IQM (normalized)", summary, "iqm", "iqm_low", "iqm_high", summary.experiment),
              ("optimality gap", summary, "gap", "gap_low", "gap_high", summary.experiment)]
    if len(improvements):
        panels.append(("P(X > baseline)", improvements, "p", "low", "high", improvements.pair))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 0.5 * max(len(summary), len(improvements)) + 1.5),
                             squeeze=False)
    axes = axes[0]
    for ax, (name, frame, point, low, high, labels) in zip(axes, panels):
        shown = (frame.runs >= MIN_RUNS_FOR_CI).to_numpy()
        point, y = frame[point].to_numpy(), np.arange(len(frame))
        errors = np.where(shown, [point - frame[low].to_numpy(), frame[high].to_numpy() - point], 0)
        ax.errorbar(point, y, xerr=errors, fmt="o", capsize=3)
        ax.set_yticks(y, list(labels), fontsize=8)
        ax.set_title(name + ("" if shown.all() else f" (no CI below {MIN_RUNS_FOR_CI} runs/task)"), fontsize=9)
    if len(improvements):
        axes[-1].set_xlim(0, 1)
        axes[-1].axvline(0.5, color="grey", linestyle=":")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def model_error_table(df: pd.DataFrame, experiment: str, count: bool = False) -> pd.DataFrame:
    """The model error by task of `experiment` and, where it ran, its FTFL partner (experiment + FTFL): one row per
    task `experiment` ran, Gym then DMC, within a suite by the recent error at the last retrain (missing last);
    columns (experiment, tag, step): the mean over seeds of each MODEL_TAGS tag at each retrain (NaN and missing values
    left out; with `count`, instead the number of seeds each mean rests on)."""
    tasks = set(df.task[df.experiment == experiment])
    data = df[df.experiment.isin([experiment, experiment + FTFL]) & df.tag.isin(MODEL_TAGS) & df.task.isin(tasks)]
    data = data[np.isfinite(data.value)].drop_duplicates(["task", "experiment", "tag", "step", "seed"], keep="last")
    values = data.groupby(["task", "experiment", "tag", "step"]).value
    table = (values.count() if count else values.mean()).unstack(["experiment", "tag", "step"]).sort_index(axis=1)
    if count:
        return table.fillna(0).astype(int)
    last = recent_at_last_retrain(table, experiment)
    order = sorted(table.index, key=lambda t: (suite_of(t) != "gym", np.nan_to_num(last.get(t, math.nan), nan=math.inf), t))
    return table.loc[order]


def last_retrain(table: pd.DataFrame, experiment: str) -> int | None:
    steps = [step for e, _, step in table.columns if e == experiment]
    return max(steps) if steps else None


def recent_at(table: pd.DataFrame, model: str, step: int | None) -> pd.Series:
    """Per task, the recent error (never trained on) of `model` at the retrain at `step` (NaN: not there; a column
    that is there has a finite value, since the table is built from finite values only)."""
    key = (model, RECENT, step)
    return table[key] if key in table.columns else pd.Series(math.nan, index=table.index)


def recent_at_last_retrain(table: pd.DataFrame, experiment: str) -> pd.Series:
    """Per task, the recent error of `experiment`'s model at its last retrain (NaN: not there)."""
    return recent_at(table, experiment, last_retrain(table, experiment))


def model_error_figure(table: pd.DataFrame, experiment: str) -> plt.Figure:
    """Horizontal bars, one per task in the table's order: the recent error at the last retrain, coloured by suite;
    the FTFL model's hatched beside it where it ran."""
    step = last_retrain(table, experiment)
    recents = {name: recent_at(table, name, step).to_numpy() for name in (experiment, experiment + FTFL)}
    bars = [(name, values) for name, values in recents.items() if np.isfinite(values).any()]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(table) + 1.6))
    y, height = np.arange(len(table)), 0.8 / max(len(bars), 1)
    for i, (name, values) in enumerate(bars):
        drawn = np.isfinite(values)
        ax.barh(y[drawn] + (i - (len(bars) - 1) / 2) * height, values[drawn], height, hatch="//" if i else None,
                edgecolor="white", label=name, color=[SUITE_COLORS[suite_of(t)] for t in table.index[drawn]])
    positive = np.concatenate([values[np.isfinite(values) & (values > 0)] for _, values in bars] or [[]])
    if len(positive) and positive.max() / positive.min() > 30:
        ax.set_xscale("log")
        ax.set_xlim(left=10 ** math.floor(math.log10(positive.min())))  # bars start at a power of ten, not at 0
    for x in (25, 100):  # the paper's reference numbers (secondary summary): below ~25 % on Gym, above 100 % on DMC hopper
        ax.axvline(x, color="grey", linestyle=":", linewidth=1)
    ax.set_yticks(y, table.index, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"model error % on the transitions not yet trained on, at the retrain at step {step}", fontsize=8)
    handles = [Patch(color=SUITE_COLORS[s], label=SUITE_NAMES[s]) for s in ("gym", "dmc")]
    if len(bars) == 2:
        handles.append(Patch(facecolor="lightgrey", hatch="//", edgecolor="white", label="FTFL model"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(f"{experiment}: model error by task (dotted: 25 % and 100 %)", fontsize=10)
    fig.tight_layout()
    return fig


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(row) + " |" for row in rows])


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def runs_section(runs: pd.DataFrame, from_csv: bool) -> list[str]:
    """Every run with its state, steps, final evaluation step and, where verdicts and aggregates do not use it, why."""
    lines = ["## Runs", "",
             ("Rebuilt from a CSV, without the runs' finished.json and stdout.log. " if from_csv else "")
             + "Every seed directory of the sweep, readable or not. **finished**: " + (
                 "it evaluated at the last evaluation step of its experiment and task within the steps it was asked "
                 "for" if from_csv else
                 "a readable finished.json for at least the steps it was asked for") + "; **failed**: "
             + ("a non-finite evaluation return" if from_csv else "a NaN/inf stop or a non-finite evaluation return")
             + " (counts as not improved: final = its last finite evaluation return or its step-0 one, whichever is "
             "lower); **unfinished**: neither (running, stopped, or crashed otherwise); **unreadable**: no record of "
             "its event files could be read; **absent**: --protocol plans it, but " + (
                 "the CSV has no row of it" if from_csv else "there is no seed directory of it") + ". *steps*: what it "
             "was asked for, and the rule that says so (--protocol or --protocol-steps when given, else the last "
             "command its stdout.log records, else its finished.json). *last evaluation*: with the steps it evaluated "
             "at when they are not at one interval (a resume with another --eval-interval). *F*: the final evaluation "
             "step of its experiment and task, the furthest a finished run of it evaluated at within its steps. A run the "
             "verdicts do not use says why; damage to its event files (read past, never silently) is named with the "
             "last step read before it, and so are steps logged again without a purge (the later value kept, as "
             "TensorBoard shows it) and run directories not read (a run directory's seed is the one its name says; of "
             "several of one seed, the newest by its name's time is read). *wall time*: the span of its event files' "
             "records, summed over its attempts (the start and each resume)"
             + (": not in a CSV (-)." if from_csv else "."), ""]
    counts = runs.groupby(["task", "experiment"]).state.value_counts().unstack(fill_value=0)
    experiments = sorted(runs.experiment.unique())

    def cell(task, experiment):
        if (task, experiment) not in counts.index:
            return "-"
        c = counts.loc[(task, experiment)]
        used = int(runs.used[(runs.task == task) & (runs.experiment == experiment)].sum())
        return f"{used} used of {int(c.sum())}" + "".join(f"; {int(c[s])} {s}" for s in STATES if c.get(s, 0)
                                                           and s != "finished")
    lines += [markdown_table(["task", *experiments], [[task, *(cell(task, e) for e in experiments)]
                                                       for task in sorted(runs.task.unique())]), ""]
    lines += [markdown_table(["experiment", "task", "seed", "state", "steps (rule)", "last evaluation", "F", "used",
                              "why not used; damage", "wall time (event files)"], [
        [r.experiment, r.task, str(r.seed), r.state, f"{r.steps if r.steps >= 0 else '?'} ({r.rule})",
         (str(r.last_step) if r.last_step >= 0 else "none") + (f" (evaluations {r.grid})" if r.grid else ""),
         str(r.final_step) if r.final_step >= 0 else "-",
         "yes" if r.used else "no", r.note, r.time] for r in runs.itertuples()]), ""]
    return lines


def false_yes_risk(tests: int) -> str:
    """What `tests` uncorrected tests at ALPHA risk when nothing improved: P(2 or more false yes), the tests independent."""
    if tests < 2:
        return f"this report runs {plural(tests, 'test')}, so it cannot give 2 false **yes**."
    p = 1 - (1 - ALPHA) ** tests - tests * ALPHA * (1 - ALPHA) ** (tests - 1)
    return (f"the {tests} uncorrected tests of this report at {ALPHA} give 2 or more false **yes** with probability "
            f"~{p:.2g} when nothing improved (independent tests).")


def verdict_section(table: pd.DataFrame, protocol: Protocol | None = None) -> list[str]:
    """Per suite, each experiment and task's verdict, and k of N per experiment (with the tasks `protocol` plans for
    it where they differ from N)."""
    counts = improvement_counts(table)
    planned = protocol.budgets() if protocol else {}
    lines = ["## Improvement beyond random initialization (the paper's headline)", "",
             f"A row says **yes** when the final evaluation return (the mean over the evaluation episodes at its "
             f"experiment and task's final step F) is higher than the step-0 return (the random initialization) by a "
             f"one-sided paired t-test over seeds at alpha = {ALPHA} **and** the mean gain is at least "
             f"{MIN_EFFECT:.0%} of the task's range (reference - random: 1000 - random on DMC, see the aggregates for "
             f"Gym), so that a tiny gain repeated on every seed (+2 of 1000 on each is p = 0) is not counted as "
             f"learning. Columns: the mean step-0 and final return; the mean paired gain (final - step 0) with its "
             f"one-sided 95 % lower confidence bound; the same as an effect, a fraction of the task's range, with its "
             f"bound; p; the BH column; n, the runs used of the cell's runs (unreadable ones included): finished, "
             f"and failed ones counted as not improved. p = nan is scipy's result when every difference is 0 (no). "
             f"With fewer than 2 runs there is no verdict (-; one run: its gain, untested); with n = 2 the test has "
             f"one degree of freedom and rewards consistency, not size, so those verdicts are marked *indicative*. "
             f"With 2-3 seeds **no** means improvement was not shown, not that there was none.", "",
             f"Many tasks, many tests: {false_yes_risk(int(table.improved.notna().sum()))} The BH column corrects for it (Benjamini-Hochberg false discovery rate over "
             f"the tasks of each suite and experiment, `scipy.stats.false_discovery_control`; a nan p counts as 1; the "
             f"same minimum gain). The paper reports k of 15 DMC tasks: SAC 14, MBPO 2 (its test and threshold are not "
             f"stated in any source we can read, so k here is like-for-like with them only roughly).", ""]
    for suite in SUITES:
        part = table[table.suite == suite].sort_values(["task", "experiment"])
        if part.empty:
            continue
        rows = []
        for r in part.itertuples():
            n, change = f"{r.seeds} of {r.runs}", f"{r.initial:.1f} -> {r.final:.1f}"
            if r.seeds == 0:
                verdict = ["- (0 runs used)", "", "", "", "", "", n]
            elif r.improved is None:  # one run: its gain, untested
                verdict = ["- (1 run used)", change, f"{r.difference:+.1f}", f"{r.effect:+.3f}", "", "", n]
            else:
                verdict = [("**yes**" if r.improved else "no") + (" *indicative*" if r.seeds == 2 else ""),
                           change, f"{r.difference:+.1f} [{r.low:.1f}, inf)",
                           f"{r.effect:+.3f} [{r.effect_low:.3f}, inf)", f"{r.p:.3g}",
                           f"{'**yes**' if r.improved_bh else 'no'} (q={r.q:.3g})", n]
            rows.append([r.task, r.experiment, str(r.final_step) if r.final_step >= 0 else "-", *verdict,
                         "; ".join(f"seed {s}: {note}" for s, _, note in r.not_used)])
        for e in sorted(part.experiment.unique()):
            k, k_bh, n = counts.get((suite, e), (0, 0, 0))
            total = sum(e == x and suite_of(t) == suite for x, t in planned) if protocol else n
            rows.append(["**improved, k of N**", e, "", f"**{k} of {n}**" + (f" (protocol: {total} tasks)" if n != total else ""),
                         "", "", "", "", f"**{k_bh} of {n}**", "", ""] if n else
                        ["**improved, k of N**", e, "", "no verdict", *[""] * 7])
        lines += [f"### {SUITE_NAMES[suite]}", "", markdown_table(
            ["task", "experiment", "F", "improved", "step 0 -> final", "gain [95 % bound]", "effect [95 % bound]", "p",
             "BH", "n", "not used"], rows), ""]
    return lines


def comparison_rows(table: pd.DataFrame) -> list[list[str]]:
    """A Markdown row per comparison of versus_baseline: each seed of both sides, the difference and the verdict."""
    def seeds(values: pd.Series, missing: str) -> str:
        if not len(values):
            return missing
        return ", ".join(f"{v:.1f}" for v in values) + f" (mean {values.mean():.1f})" + (f"; {missing}" if missing else "")
    return [[r.task, str(r.step), f"{r.experiment} vs {r.baseline}", seeds(r.x, r.missing[0]), seeds(r.y, r.missing[1]),
             "-" if not np.isfinite(r.difference) else
             f"{r.difference:+.1f} [{r.low:.1f}, {r.high:.1f}]" if np.isfinite(r.low) else f"{r.difference:+.1f}",
             f"{r.effect:+.3f}" if np.isfinite(r.effect) else "-", f"{r.test}, n {r.n}",
             f"{r.p:.3g}" if np.isfinite(r.p) else "-",
             {"better": "**better**", "worse": "**worse**"}.get(r.verdict, r.verdict)] for r in table.itertuples()]


COMPARISON_HEADER = ["task", "step", "X vs Y", "X by seed", "Y by seed", "X - Y [95 % CI]", "effect", "test",
                     "p", "verdict"]


def baseline_section(df: pd.DataFrame, runs: pd.DataFrame, steps: list[int],
                     pairs: list[tuple[str, str]] | None = None) -> list[str]:
    """Each experiment against its baseline (and each of `pairs`) per task, at its final step and at `steps`, with the
    critic's gauge."""
    table = versus_baseline(df, runs, steps, pairs)
    if table.empty:
        return []
    lines = ["## Against the baseline, per task", "",
             f"Each experiment X against Y, the one it is measured against (MBPO and its variants: SAC) and any other "
             f"that its protocol names (--protocol's comparisons), on each task at the same env step: at X's final "
             f"step F (its used runs against Y's evaluations at F, finished or not)"
             + (f" and at steps {', '.join(map(str, steps))} (--steps: every evaluation there; not reached: a side's "
                f"runs stopped before it; not evaluated: they evaluated past it, not at it)" if steps else "")
             + f". A seed of a side without an evaluation there is named beside its values (and the test is then "
             f"Welch's on the seeds there are). Paired by seed when both sides have the same seeds, else Welch's "
             f"t-test; the difference's two-sided 95 % CI and the test's two-sided p; effect = the difference "
             f"as a fraction of the task's range; **better** when p < {ALPHA} (the CI above 0) and the effect is at "
             f"least +{MIN_EFFECT:.2f}, **worse** the other way round, else not shown (- below 2 seeds a side). The "
             f"probability of improvement in the aggregates pools these tasks.", "",
             markdown_table(COMPARISON_HEADER, comparison_rows(table.sort_values(["task", "experiment", "baseline",
                                                                                  "step"]))), ""]
    gauge = df[df.tag.isin([Q_TAG, MC_TAG])]
    if steps and len(gauge):
        cell_runs = runs.groupby(["task", "experiment"]).size()
        rows = []
        for (task, experiment), g in gauge.groupby(["task", "experiment"]):
            values = g.drop_duplicates(["seed", "step", "tag"], keep="last").pivot(index=["step", "seed"], columns="tag",
                                                                                   values="value")
            values = values.reindex(columns=[Q_TAG, MC_TAG]).dropna()  # the seeds that logged both at a step
            of = int(cell_runs.get((task, experiment), 0))
            for step in steps:
                if step not in values.index.get_level_values("step"):
                    rows.append([task, experiment, str(step), absence(int(g.step.max()), step), "", ""])
                    continue
                both = values.xs(step, level="step")
                n = f" ({len(both)} of {of} seeds)" if len(both) < of else ""
                rows.append([task, experiment, f"{step}{n}", f"{both[Q_TAG].mean():.1f}", f"{both[MC_TAG].mean():.1f}",
                             f"{(both[Q_TAG] - both[MC_TAG]).mean():+.1f}"])
        lines += ["The critic's gauge at those steps, as the scripts log it: the critic's Q(s0, mu(s0)) "
                  "at the first states of the evaluation episodes beside a Monte-Carlo estimate of the same soft Q "
                  "(episodes that take mu(s0), then follow the stochastic policy; discounted rewards minus alpha log pi "
                  "of every later action, as the critic's target counts them; so with the initial temperature 1 it is "
                  "far below 0 before learning starts). A Q far above it is the overestimation that synthetic data can "
                  "feed. Each number is a mean over the seeds that logged both at that step, Q - MC the mean of each "
                  "seed's own difference; (k of n seeds) where they are fewer than the task's runs.", "",
                  markdown_table(["task", "experiment", "step", "Q estimate", "MC return", "Q - MC"], rows), ""]
    return lines


def published_section(df: pd.DataFrame, published: pd.DataFrame) -> list[str]:
    """Our evaluations at each published number's step: each seed, the mean, and where the mean falls."""
    rows = []
    for p in published.itertuples():
        ours = returns_at(df, p.experiment, p.task, int(p.step))
        if not len(ours):
            rows.append([p.task, p.experiment, str(p.step), "not reached", f"{p.value:g}", spread(p), "-", p.source])
            continue
        mean = ours.mean()
        low, high = (p.low, p.high) if np.isfinite(p.low) and np.isfinite(p.high) else (p.value, p.value)

        def place(value: float) -> str:
            return "within" if low <= value <= high else "below" if value < low else "above"
        where = "within the published spread" if place(mean) == "within" else place(mean)
        if not (np.isfinite(p.low) and np.isfinite(p.high)):
            where = f"{'below' if mean < p.value else 'above'} (no published spread)"
        seeds = [place(v) for v in ours]
        rows.append([p.task, p.experiment, str(p.step), ", ".join(f"{v:.1f}" for v in ours) + f" (mean {mean:.1f})",
                     f"{p.value:g}", spread(p), f"**{where}**" + (f" (by seed: {', '.join(seeds)})"
                                                                  if set(seeds) != {place(mean)} else ""), p.source])
    return ["## Against published numbers", "",
            "Our evaluation returns (10 deterministic episodes per evaluation) at the step of each published number; "
            "the verdict places our mean against the published spread, and each seed where they do not all fall "
            "where the mean does.", "",
            markdown_table(["task", "experiment", "step", "ours by seed", "published", "published spread", "ours is",
                            "source"], rows), ""]


def spread(p) -> str:
    return f"[{p.low:g}, {p.high:g}]" + (f" ({p.spread_kind})" if isinstance(p.spread_kind, str) and p.spread_kind else "") \
        if np.isfinite(p.low) and np.isfinite(p.high) else "-"


def aggregate_section(df: pd.DataFrame, runs: pd.DataFrame, reps: int, out: Path,
                      pairs: list[tuple[str, str]] | None = None) -> list[str]:
    random = random_returns(runs)
    lines = ["## Aggregate normalized returns (rliable)", "",
             f"Final returns normalized as (score - random) / (reference - random) per task. random: the mean step-0 "
             f"evaluation return of every run of the task, measured here (a randomly initialized deterministic policy, "
             f"not a uniform random one); reference: 1000 on DMC (the maximum) and on Gym "
             f"{', '.join(f'{t.split(chr(45))[0]} {v}' for t, v in GYM_REFERENCE.items())} (round numbers near SAC's "
             f"return after ~1M steps; InvertedPendulum's maximum). Runs as in the verdicts: the used ones. IQM "
             f"(interquartile mean over runs x tasks) and optimality gap (mean shortfall below 1) with 95 % stratified "
             f"bootstrap CIs ({reps} resamples), not shown below {MIN_RUNS_FOR_CI} runs per task (a bootstrap over 2 "
             f"runs says little), each experiment on the tasks it has used runs on, at its own final steps (so two "
             f"experiments' IQMs compare only where their tasks and steps match: the coverage line says). Probability "
             f"of improvement P(X > Y): the chance that a run of X on a random task beats one of its baseline Y, at X's "
             f"final step, on the tasks and seeds both have there.", "",
             "Random (step-0) returns: " + ", ".join(f"{t} {v:.1f}" for t, v in random.items()) + ".", ""]
    for suite in SUITES:
        if not (runs.suite == suite).any():
            continue
        matrices, left_out = normalized_finals(runs, suite)
        compared = baseline_pairs(df, runs, suite, pairs)
        failed = runs[(runs.suite == suite) & (runs.state == "failed")]
        notes = [f"Left out: {'; '.join(left_out)}."] if left_out else []
        if len(failed):
            notes.append("Failed runs, included at the failed rule's final return: " + ", ".join(
                f"{r.experiment} {r.task} seed {r.seed}" + ("" if r.used else f" (not used: {r.note})")
                for r in failed.itertuples()) + ".")
        if not matrices:
            lines += [f"{SUITE_NAMES[suite]}: no used run; no aggregate.", "", *(f"{note}\n" for note in notes)]
            continue
        summary, improvements = aggregates({e: m for e, (_, m, _) in matrices.items()},
                                           {pair: (x, y) for pair, (x, y, _, _) in compared.items()}, reps)
        steps = runs[runs.used].groupby(["experiment", "task"]).final_step.first()
        coverage = [f"{e}: {plural(len(tasks), 'task')} ({', '.join(f'{t} at {steps[e, t]}' for t in tasks)}), "
                    f"{plural(len(m), 'seed')} per task" + (f"; seeds cut to the fewest: {', '.join(cut)}" if cut else "")
                    for e, (tasks, m, cut) in matrices.items()]
        coverage += [f"{pair}: {plural(len(tasks), 'task')} ({', '.join(tasks)}), {plural(n, 'seed')} per task, paired "
                     f"by seed" for pair, (_, _, tasks, n) in compared.items()]
        lines += [f"### {SUITE_NAMES[suite]}", "", "Coverage:", "", *(f"- {c}" for c in coverage), "",
                  *(f"{note}\n" for note in notes),
                  markdown_table(["experiment", "runs per task", "IQM [95 % CI]", "optimality gap [95 % CI]"], [
                      [r.experiment, str(r.runs), with_ci(r.iqm, r.iqm_low, r.iqm_high, r.runs),
                       with_ci(r.gap, r.gap_low, r.gap_high, r.runs)] for r in summary.itertuples()]), ""]
        if len(improvements):
            lines += [markdown_table(["P(X > Y)", "point [95 % CI]"], [
                [r.pair, with_ci(r.p, r.low, r.high, r.runs)] for r in improvements.itertuples()]), ""]
        aggregate_figure(summary, improvements, f"{SUITE_NAMES[suite]}: final normalized return", out / f"aggregate_{suite}.png")
        lines += [f"![aggregates {suite}](aggregate_{suite}.png)", ""]
    return lines


def model_error_section(df: pd.DataFrame, out: Path) -> list[str]:
    """One table and figure per experiment that logged the model's error (its FTFL partner beside it)."""
    logged = set(df.experiment[df.tag == "model/error_pct"])
    plain = sorted(e for e in logged if not (e.endswith(FTFL) and e[:-len(FTFL)] in logged))
    if not plain:
        return []
    lines = ["## Model error by task", "",
             "The learned model's error at every retrain (the step it happened at), mean over seeds, as mbpo.py logs it: "
             "100 |predicted ds - true ds| / |true ds| per transition, averaged over the elites and the transitions. "
             "**train**: a sample of the training split. **holdout**: the holdout split; mbpo.py, like the paper's code, "
             "draws a fresh 80/20 split at every retrain (the paper's code retrains in 25 chunks, each with a fresh "
             "split), so from the second retrain on this holdout was trained on before. **recent**: measured before the "
             "retrain on the transitions collected since the previous one, never trained on: the clean generalization "
             "number (none at the first retrain). At the first retrain after the random phase it measures a shift as "
             "well, from random-action data to the policy's, and so depends on how far the policy has moved (Gym "
             "Hopper learns to hop by 10k steps, DMC hopper does not); a later retrain's recent error, where the "
             "protocol has one, is the steadier number. The mean of per-transition ratios is heavy-tailed (near-static "
             "transitions dominate it) and dominated by the large-scale dimensions; where logged, **pooled** "
             "(100 sum |pred ds - ds| / sum |ds|) and **median** (the median ratio) sit beside it. **reward error**: "
             "mean |predicted r - r| on the holdout and on the recent transitions; where logged, **reward rel %** puts "
             "it on the task's reward scale, 100 mean |pred r - r| / mean |r - mean r| (100 %: no better than "
             "predicting the mean reward; DMC rewards live in [0, 1] and some tasks' are near 0). Each number is a mean "
             "over the seeds that logged it: (k of n) marks one resting on fewer seeds than the task's runs. "
             "**STFL**: the paper code's own definition (all members, its last training "
             "minibatch). The FTFL columns are the \"Fixing That Free Lunch\" model (arXiv 2510.01457: "
             "--normalize-targets --predict-next-state) on the tasks it ran. Rows: Gym, then DMC, each sorted by the "
             "recent error at the last retrain; a median row is over the suite's tasks with a value (in the FTFL "
             "columns, the tasks FTFL ran).", "",
             "The paper's reference numbers, from a secondary summary of its model-error figure (arXiv 2412.14312), not "
             "checked against the figure itself: model error below ~25 % on Gym, above 100 % on DMC hopper.", ""]
    for experiment in plain:
        lines += model_error_subsection(df, experiment, out)
    return lines


def model_error_subsection(df: pd.DataFrame, experiment: str, out: Path) -> list[str]:
    """The table, the suite medians, where FTFL is lower, and the figure of one experiment."""
    table, counts = model_error_table(df, experiment), model_error_table(df, experiment, count=True)
    models = [m for m in (experiment, experiment + FTFL) if m in table.columns.get_level_values(0)]
    steps = sorted({step for _, _, step in table.columns})
    retrains = len(steps)
    steps = steps if retrains <= 4 else [steps[0], steps[-1]]  # more would not fit a cell
    seeds = df[df.experiment.isin(models) & df.tag.isin(MODEL_TAGS)].groupby(["experiment", "task"]).seed.nunique()
    tags = [t for t in MODEL_TAGS if t in table.columns.get_level_values(1)]

    def cells(values: pd.Series, model: str, counted: pd.Series, of: int, unit: str = "") -> list[str]:
        """One cell per tag: its values at the retrains, '-' where missing, (k of n) where it rests on k < `of`."""
        def number(tag, step):
            value, k = values.get((model, tag, step), math.nan), int(counted.get((model, tag, step), 0))
            text = "-" if not np.isfinite(value) else f"{value:.1f}" if "%" in MODEL_TAGS[tag] else f"{value:.3g}"
            return text + (f" ({k} of {of}{unit})" if np.isfinite(value) and k < of else "")
        return [" / ".join(number(tag, step) for step in steps) for tag in tags]

    header = ["suite", "task"] + [f"{prefix}{name}" for m, prefix in zip(models, ("", "FTFL ")) for name in
                                  ["runs", *(MODEL_TAGS[t] for t in tags)]]
    rows = []
    for suite in ("gym", "dmc"):
        part = table[[suite_of(t) == suite for t in table.index]]
        for task, values in part.iterrows():
            rows.append([SUITE_NAMES[suite], task] + [c for m in models for c in (
                [str(seeds[m, task]), *cells(values, m, counts.loc[task], seeds[m, task])] if (m, task) in seeds.index
                else [""] * (len(tags) + 1))])
        if len(part):
            ran = {m: sum((m, t) in seeds.index for t in part.index) for m in models}
            rows.append([SUITE_NAMES[suite], f"**median ({plural(len(part), 'task')})**"]
                        + [c for m in models for c in ["", *cells(part.median(), m, part.notna().sum(), ran[m], " tasks")]])
    lines = [f"### {experiment}" + (f" and {experiment + FTFL}" if len(models) == 2 else ""), "",
             f"Each cell: the values at the retrains at steps {' / '.join(map(str, steps))}"
             + ("." if retrains == len(steps) else f" (the first and last of {retrains} retrains)."), "",
             markdown_table(header, rows), ""]

    last, recent = last_retrain(table, experiment), recent_at_last_retrain(table, experiment)
    by_suite = {s: recent[[suite_of(t) == s for t in recent.index]].dropna() for s in ("gym", "dmc")}
    medians = {s: float(values.median()) if len(values) else math.nan for s, values in by_suite.items()}
    drawn = any(np.isfinite(recent_at(table, model, last)).any() for model in models)
    summary = ", ".join(f"{SUITE_NAMES[s]} {m:.1f} % ({plural(len(by_suite[s]), 'task')})" for s, m in medians.items()
                        if np.isfinite(m)) or "none logged" + ("" if drawn else ", so no figure")
    if medians["gym"] > 0 and np.isfinite(medians["dmc"]):
        summary += f" ({medians['dmc'] / medians['gym']:.1f} times the Gym median)"
    lines += [f"Median recent error at the last retrain (step {last}): {summary}.", ""]
    if len(by_suite["gym"]) >= 2 and len(by_suite["dmc"]) >= 2:
        difference, low, high, p = median_difference(by_suite["dmc"].to_numpy(), by_suite["gym"].to_numpy())
        verdict = ("not shown either way at this budget" if low <= 0 <= high else
                   "DMC's is higher" if low > 0 else "DMC's is lower")
        lines += [f"DMC minus Gym median recent error: {difference:+.1f} points, 95 % bootstrap interval "
                  f"[{low:+.1f}, {high:+.1f}] (tasks resampled within each suite, {MEDIAN_REPS} resamples); "
                  f"Mann-Whitney U two-sided p = {p:.2g} ({len(by_suite['dmc'])} DMC vs {len(by_suite['gym'])} Gym "
                  f"tasks, each the mean over its seeds): **{verdict}**.", ""]
    if len(models) == 2:
        ftfl = recent_at(table, experiment + FTFL, last)
        both = [t for t in table.index if np.isfinite(ftfl[t]) and np.isfinite(recent[t])]
        lower = [f"{t} ({recent[t]:.1f} -> {ftfl[t]:.1f} %)" for t in both if ftfl[t] < recent[t]]
        lines += [f"FTFL: no task has both models' recent error at step {last}." if not both else
                  f"FTFL on {plural(len(both), 'task')} with both at step {last}: median recent error "
                  f"{recent[both].median():.1f} % plain, {ftfl[both].median():.1f} % FTFL; lower with FTFL on "
                  f"{len(lower)} of {len(both)}" + (f": {', '.join(lower)}." if lower else "."), ""]
    if not drawn:
        return lines  # nothing to draw (e.g. a perfect model: no held-out error)
    name = f"model_error_{experiment}.png"
    fig = model_error_figure(table, experiment)
    fig.savefig(out / name, dpi=90)
    plt.close(fig)
    return lines + [f"![model error by task {experiment}]({name})", ""]


MEDIAN_REPS = 10_000


def median_difference(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """median(x) - median(y), its 95 % percentile bootstrap interval (x and y resampled separately, MEDIAN_REPS times,
    seeded) and the two-sided Mann-Whitney U p."""
    rng = np.random.default_rng(0)
    boot = (np.median(rng.choice(x, (MEDIAN_REPS, len(x))), axis=1)
            - np.median(rng.choice(y, (MEDIAN_REPS, len(y))), axis=1))
    low, high = np.percentile(boot, [2.5, 97.5])
    return (float(np.median(x) - np.median(y)), float(low), float(high),
            float(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue))


def curves_section(df: pd.DataFrame, out: Path, published: pd.DataFrame | None = None) -> list[str]:
    note = [f"In every curve figure a thick line is the mean over an experiment's seeds at the steps all of them reached; "
            f"with fewer than {MIN_SEEDS_FOR_BAND} seeds each seed is drawn as a thin line (a t-interval over 2 seeds "
            f"is +-12.7 standard errors), from {MIN_SEEDS_FOR_BAND} a band shows the 95 % t-interval.", ""]
    figures = [("Learning curves", "eval/return", [("eval/return", "-")], "evaluation return", False),
               ("Model error", "model/error_pct", [("model/error_pct", "-")], "model error % (100 |pred ds - ds| / |ds|)", True),
               ("Q estimate vs Monte-Carlo return", "diagnostics/q_estimate",
                [("diagnostics/q_estimate", "-"), ("diagnostics/mc_return", "--")],
                "Q(s0, pi(s0)) (solid) vs discounted MC return (dashed)", False)]
    lines = []
    for heading, tag, tag_lines, title, log in figures:
        lines += [f"## {heading}", "", *(note if not lines else [])]
        drawn = []
        for suite in SUITES:
            tasks = sorted(df[df.suite == suite].task.unique())
            name = f"{tag.split('/')[-1]}_{suite}.png"
            fig = curve_figure(df, tasks, tag_lines, f"{SUITE_NAMES[suite]}: {title}", log,
                               published if tag == "eval/return" else None)
            if fig is not None:
                fig.savefig(out / name, dpi=90)
                plt.close(fig)
                drawn.append(f"![{heading} {suite}]({name})")
        lines += (drawn or [f"No run logged `{tag}`."]) + [""]
    return lines


def identical_returns(df: pd.DataFrame) -> list[str]:
    """One phrase per FTFL experiment whose every run's evaluation returns equal, to the bit, the plain experiment's on
    the same task and seed (true when the model does not act on the policy: no synthetic rollouts)."""
    evals = df[df.tag == "eval/return"]
    phrases = []
    for experiment in sorted(e for e in evals.experiment.unique() if e.endswith(FTFL)):
        plain = experiment[:-len(FTFL)]
        keys = evals[evals.experiment == experiment][["task", "seed"]].drop_duplicates().itertuples(index=False)
        same = [all(series(evals, e, task, seed) is not None for e in (experiment, plain))
                and series(evals, experiment, task, seed).equals(series(evals, plain, task, seed)) for task, seed in keys]
        if same and all(same):
            phrases.append(f"{experiment} and {plain} evaluated identically on all {plural(len(same), 'run')} (equal to "
                           f"the bit): they saw the same data, so {experiment}'s returns are not listed separately")
    return phrases


def series(evals: pd.DataFrame, experiment: str, task: str, seed: int) -> pd.Series | None:
    values = evals[(evals.experiment == experiment) & (evals.task == task) & (evals.seed == seed)]
    return values.set_index("step").value.sort_index() if len(values) else None


def render(df: pd.DataFrame, markers: dict[str, Marker], source: str, out: Path, reps: int,
           protocol_steps: int | None = None, from_csv: bool = False, steps: list[int] = (),
           published: pd.DataFrame | None = None, returns: bool = True, protocol: Protocol | None = None) -> str:
    """The report's Markdown; writes its figures into `out`. Without `returns` (a protocol that measures the model,
    not the policy: the atlas) no verdicts, comparisons or aggregates of returns. `protocol`: the one the runs belong
    to (its task counts beside k of N; its comparisons)."""
    pairs = protocol.pairs() if protocol else None
    df = with_experiment(df)
    runs = run_table(df, markers, protocol_steps)
    lines = [f"# Sweep report: `{source}`", "",
             f"{plural(len(runs), 'run')}, {len(df)} rows in [runs.csv](runs.csv) (columns {', '.join(COLUMNS)}).", ""]
    lines += runs_section(runs, from_csv)
    duplicates = identical_returns(df)
    if duplicates:
        lines += [f"Identical returns: {phrase}." for phrase in duplicates] + [""]
        df_returns = df[~df.experiment.isin([p.split(" ")[0] for p in duplicates]) | (df.tag != "eval/return")]
        runs = runs[~runs.experiment.isin([p.split(" ")[0] for p in duplicates])]
    else:
        df_returns = df
    if returns:
        lines += verdict_section(improvement(runs), protocol)
        lines += baseline_section(df_returns, runs, list(steps), pairs)
        if published is not None:
            lines += published_section(df_returns, published)
        lines += aggregate_section(df_returns, runs, reps, out, pairs)
    else:
        lines += ["This protocol measures the model, not the policy: no verdicts on returns, no comparisons and no "
                  "aggregates (its evaluations are in the curves only).", ""]
    lines += model_error_section(df, out)
    lines += curves_section(df_returns, out, published)
    return "\n".join(lines)


KINDS = {"text": "a non-empty text", "text or empty": "a text or empty", "int": "a whole number >= 0",
         "number": "a number (empty: NaN)", "finite": "a finite number", "finite or empty": "a finite number or empty"}


def cell(text: str, kind: str) -> str | int | float | None:
    """A CSV cell's text as the KINDS entry `kind` wants it; None when it is not one."""
    if kind.startswith("text"):
        return text if text or kind == "text or empty" else None
    if not text and kind in ("number", "finite or empty"):
        return math.nan
    try:
        number = float(text)
    except ValueError:
        return None
    if kind == "int":
        return int(number) if math.isfinite(number) and number == int(number) and number >= 0 else None
    return number if kind == "number" or math.isfinite(number) else None


def read_table(path: Path, flag: str, columns: dict[str, str]) -> pd.DataFrame:
    """The CSV given to `flag`, with exactly `columns` (name -> a KINDS entry) and at least one row, each cell of its
    kind; exits with one line naming the first bad cell otherwise."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)  # every cell as written: checked, then converted
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        sys.exit(f"error: cannot read {flag} {path}: {e}")
    if list(table.columns) != list(columns):
        sys.exit(f"error: {flag} {path} has columns {list(table.columns)}, expected {list(columns)}")
    if table.empty:
        sys.exit(f"error: {flag} {path} has no rows, only its header")
    for column, kind in columns.items():
        values = [cell(text, kind) for text in table[column]]
        bad = next((i for i, value in enumerate(values) if value is None), None)
        if bad is not None:
            sys.exit(f"error: {flag} {path}: {column} {table[column][bad]!r} on line {bad + 2} is not {KINDS[kind]}")
        if not kind.startswith("text"):
            table[column] = pd.Series(values, index=table.index, dtype=int if kind == "int" else float)
    return table


def read_csv(path: Path, tags: tuple[str, ...]) -> pd.DataFrame:
    """A runs.csv this script wrote, its rows with `tags`."""
    df = read_table(path, "--from-csv", RUNS_COLUMNS)
    return df[df.tag.str.startswith(tags)].reset_index(drop=True)


PUBLISHED = {"experiment": "text", "task": "text", "step": "int", "value": "finite", "low": "finite or empty",
             "high": "finite or empty", "spread_kind": "text or empty", "source": "text"}


def read_published(path: Path) -> pd.DataFrame:
    """A CSV of published numbers (the PUBLISHED columns; low, high and spread_kind may be empty)."""
    return read_table(path, "--published", PUBLISHED)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, nargs="?", help="the sweep's log root (runs/sweep, runs/sweep_quick)")
    parser.add_argument("--from-csv", type=Path, help="rebuild the report from this runs.csv instead of a root (the runs "
                        "are gone): a run counts as finished when it evaluated at the last evaluation step of its "
                        "experiment and task within the protocol's steps")
    parser.add_argument("--out", type=Path, help="where report.md, runs.csv and the figures go (default <root>/report, "
                        "or the CSV's folder)")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), help="the sweep.py protocol the runs belong to: the "
                        "steps each experiment and task was asked for come from it (default: each run's own record)")
    parser.add_argument("--protocol-steps", type=int, help="env steps of every run, overriding --protocol and the runs' "
                        "own records (default: --protocol's, else each run's stdout.log or finished.json; from a CSV, "
                        "the furthest evaluation of each experiment and task)")
    parser.add_argument("--steps", type=int, nargs="+", default=[], help="also compare each experiment with its "
                        "baseline at these env steps (e.g. 10000 20000 30000), with the critic's gauge")
    parser.add_argument("--published", type=Path, help=f"a CSV of published numbers ({', '.join(PUBLISHED)}) "
                        "to compare with and mark on the learning curves")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples for the CIs (default 2000)")
    parser.add_argument("--tags", nargs="*", default=list(TAGS), help=f"tag prefixes kept in runs.csv (default {' '.join(TAGS)}; '' = all)")
    args = parser.parse_args(argv)
    if (args.root is None) == (args.from_csv is None):
        parser.error("give a sweep root or --from-csv runs.csv (one of them)")
    if args.root is not None and not args.root.is_dir():
        parser.error(f"{args.root} is not a directory")
    if args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    if args.protocol_steps is not None and args.protocol_steps < 1:
        parser.error(f"--protocol-steps must be >= 1, got {args.protocol_steps}")
    if any(step < 0 for step in args.steps):
        parser.error(f"--steps must be >= 0, got {args.steps}")
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    tags = tuple(args.tags) + ("eval/return",)
    protocol = PROTOCOLS[args.protocol] if args.protocol else None
    planned = protocol.budgets() if protocol else None
    published = read_published(args.published) if args.published else None
    if args.from_csv:
        df = read_csv(args.from_csv, tags)
        markers = markers_from_csv(with_experiment(df), args.protocol_steps, planned)
        source, out = args.from_csv, args.out or args.from_csv.parent
    else:
        df, markers = read_sweep(args.root, tags, planned)
        source, out = args.root, args.out or args.root / "report"
    if df.empty and not markers:
        sys.exit(f"error: no runs in {source} (expected <root>/<experiment>/<task>/seed_<k>/<run>/events.out.tfevents.*, "
                 f"or a runs.csv with rows)")
    if protocol:
        markers |= absent_markers(markers, protocol)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "runs.csv", index=False)
    text = render(df, markers, str(source), out, args.reps, args.protocol_steps, bool(args.from_csv), args.steps,
                  published, protocol.returns if protocol else True, protocol)
    (out / "report.md").write_text(text + "\n")
    print(f"wrote {out / 'report.md'}, {out / 'runs.csv'} ({len(df)} rows) and {len(list(out.glob('*.png')))} figures")


if __name__ == "__main__":
    main(sys.argv[1:])
