"""Report of a sweep: one tidy CSV, a Markdown report and PNG figures, read from the runs' TensorBoard event files.

    python benchmark/report.py runs/sweep_quick          # -> runs/sweep_quick/report/{report.md, runs.csv, *.png}
    python benchmark/report.py --from-csv benchmark/results/quick/runs.csv --out benchmark/results/quick --protocol-steps 3000
    python benchmark/report.py runs/sweep_atlas --out benchmark/results/atlas   # sweep.py --protocol atlas's runs

It reads every run under <root>/<experiment>/<task>/seed_<k>/ (benchmark/sweep.py's layout) with TensorBoard's
EventAccumulator, or, with --from-csv, the runs.csv of an earlier report (when the runs themselves are gone), and writes
- runs.csv, tidy: run, algorithm, variant, task, seed, step, tag, value (tags starting with --tags; default the
  evaluations, the diagnostics, the model's errors and training returns; --tags '' keeps all),
- report.md: every run's state per experiment and task; per task and experiment, whether the final evaluation return
  improves beyond the step-0 (random initialization) return, by a one-sided paired t-test over seeds (the paper's
  headline, "k of N" tasks), with the paired difference, its confidence bound and a Benjamini-Hochberg column;
  aggregate normalized returns with rliable (IQM and optimality gap with 95 % stratified bootstrap CIs, probability
  of improvement of each experiment over its baseline, e.g. MBPO over SAC); the model's error by task (train,
  holdout and not-yet-trained-on transitions at each retrain, the "Fixing That Free Lunch" model beside it); links to
  the figures:
- learning curves of eval/return, model/error_pct, and the critic's diagnostics/q_estimate beside
  diagnostics/mc_return, one panel per task, one figure per suite; bars of the model error per task.
A run is
- finished: its seed directory holds a readable finished.json for at least the protocol's steps (--protocol-steps;
  default per suite the most any finished.json says) and it evaluated at the protocol's last evaluation step, F. Its
  final return is that evaluation. From a CSV (no markers): it evaluated at step F.
- failed: it stopped on NaN/inf (its stdout.log ends with the scripts' "... is NaN or inf ..." line) or it logged a
  non-finite evaluation return. It counts as not improved: its final return is its last finite evaluation return or
  its step-0 one, whichever is lower. From a CSV only the second sign is there.
- unfinished: neither (still running, stopped, or crashed otherwise; the sweep retries it): listed, left out of the
  verdicts and aggregates.
Whatever is missing (an experiment, a suite, a tag) is left out with a line saying so.
"""
import argparse
import json
import math
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch
from scipy import stats
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import EXPERIMENTS, FINISHED, LOG, PAPER, Parser, suite_of  # noqa: E402

COLUMNS = ["run", "algorithm", "variant", "task", "seed", "step", "tag", "value"]
TAGS = ("eval/", "diagnostics/", "model/", "charts/episodic_return")
ALPHA = 0.05  # one-sided paired t-test, final > step 0
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
              "model/error_pct_recent": "recent %", "model/reward_error": "reward error (holdout)",
              "model/reward_error_recent": "reward error (recent)", "model/error_pct_stfl": "STFL %"}
RECENT = "model/error_pct_recent"
FTFL = "_ftfl"  # suffix of an experiment running the "Fixing That Free Lunch" model beside the plain one


def read_runs(root: Path, tags: tuple[str, ...] = TAGS) -> pd.DataFrame:
    """The tidy table of every run under root/<experiment>/<task>/seed_<k>/<run dir> (the newest run dir per seed)."""
    rows = []
    for seed_dir in sorted(root.glob("*/*/seed_*")):
        run_dirs = sorted({p.parent for p in seed_dir.glob("*/events.out.tfevents.*")}, key=lambda p: p.stat().st_mtime)
        if not run_dirs or not seed_dir.name[5:].isdigit():
            continue
        run_dir, experiment, task = run_dirs[-1], seed_dir.parent.parent.name, seed_dir.parent.name
        algorithm = run_dir.name.split("__")[1] if run_dir.name.count("__") >= 3 else experiment  # env__script__seed__time
        variant = ("default" if experiment == algorithm else
                   experiment[len(algorithm) + 1:] if experiment.startswith(algorithm + "_") else experiment)
        task = "dmc:" + task[4:] if task.startswith("dmc_") else task
        events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            if tag.startswith(tags):
                rows += [(str(run_dir.relative_to(root)), algorithm, variant, task, int(seed_dir.name[5:]), e.step, tag,
                          e.value) for e in events.Scalars(tag)]
    return pd.DataFrame(rows, columns=COLUMNS)


def read_markers(root: Path) -> dict[str, tuple[int | None, bool]]:
    """Seed directory (relative to root) -> (the steps its finished.json says, None when absent or unreadable;
    whether its stdout.log ends with a NaN/inf stop)."""
    markers = {}
    for seed_dir in sorted(root.glob("*/*/seed_*")):
        try:
            steps = int(json.loads((seed_dir / FINISHED).read_text())["total_timesteps"])
        except (OSError, ValueError, KeyError, TypeError):  # absent, truncated or not a marker: unfinished
            steps = None
        log = seed_dir / LOG
        lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
        last = next((line for line in reversed(lines) if line.strip()), "")
        markers[str(seed_dir.relative_to(root))] = (steps, NAN_STOP in last)
    return markers


def with_experiment(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `experiment` (sweep.py's name: algorithm, or algorithm_variant), `suite` and `seed_dir` (the run's
    <experiment>/<task>/seed_<k>)."""
    df = df.copy()
    df["experiment"] = [a if v == "default" else f"{a}_{v}" for a, v in zip(df.algorithm, df.variant)]
    df["suite"] = df.task.map(suite_of)
    df["seed_dir"] = df.run.str.rsplit("/", n=1).str[0]
    return df


def markers_from_csv(df: pd.DataFrame, protocol_steps: int | None) -> dict[str, tuple[int | None, bool]]:
    """The markers a CSV implies (it has no finished.json or stdout.log): a run finished the protocol's steps
    (--protocol-steps; default its suite's last evaluation step) when it evaluated at its suite's last evaluation step
    within them."""
    evals = df[df.tag == "eval/return"]
    markers = {seed_dir: (None, False) for seed_dir in df.seed_dir.unique()}
    for suite, g in evals.groupby("suite"):
        steps = protocol_steps or int(g.step.max())
        last = g.step[g.step <= steps].max()
        for seed_dir in g.seed_dir[g.step == last].unique():
            markers[seed_dir] = (steps, False)
    return markers


def run_table(df: pd.DataFrame, markers: dict[str, tuple[int | None, bool]],
              protocol_steps: int | None = None) -> pd.DataFrame:
    """One row per run: experiment, task, suite, seed, state (finished, failed or unfinished, see the docstring),
    last_step (its last evaluation, -1 for none), final_step (its suite's protocol's last evaluation step F, -1 when no
    run of the suite finished), initial (step-0 return) and final (the return verdicts and aggregates use: at F when
    finished, the failed rule's when failed, NaN when unfinished)."""
    runs = df.groupby("seed_dir")[["experiment", "task", "suite", "seed"]].first()
    runs["marker"] = pd.Series([markers.get(d, (None, False))[0] for d in runs.index], index=runs.index, dtype=float)
    runs["nan_stop"] = [markers.get(d, (None, False))[1] for d in runs.index]
    evals = df[df.tag == "eval/return"].drop_duplicates(["seed_dir", "step"], keep="last")
    protocol = {}  # suite -> (its runs' steps, their last evaluation step F)
    for suite, part in runs.groupby("suite"):
        steps = protocol_steps or part.marker.max()  # NaN when no run of the suite has a readable marker
        done = part.index[part.marker >= steps]
        reached = evals.step[evals.seed_dir.isin(done) & (evals.step <= steps)]
        protocol[suite] = steps, int(reached.max()) if len(reached) else -1
    rows = []
    for seed_dir, run in runs.iterrows():
        returns = evals[evals.seed_dir == seed_dir].set_index("step").value.sort_index()
        finite = returns[np.isfinite(returns)]
        initial = finite.get(0, math.nan)
        steps, final_step = protocol[run.suite]
        if run.nan_stop or len(finite) < len(returns):
            state, final = "failed", float(np.fmin(finite.iloc[-1], initial)) if len(finite) else math.nan
        elif run.marker >= steps and final_step in finite.index:
            state, final = "finished", float(finite[final_step])
        else:
            state, final = "unfinished", math.nan
        rows.append({"experiment": run.experiment, "task": run.task, "suite": run.suite, "seed": int(run.seed),
                     "state": state, "last_step": int(returns.index.max()) if len(returns) else -1,
                     "final_step": final_step, "initial": initial, "final": final})
    columns = ["experiment", "task", "suite", "seed", "state", "last_step", "final_step", "initial", "final"]
    return pd.DataFrame(rows, columns=columns).sort_values(["experiment", "task", "seed"], ignore_index=True)


def scored(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs verdicts and aggregates use: finished or failed, with a finite step-0 and final return."""
    return runs[runs.state.isin(["finished", "failed"]) & np.isfinite(runs.initial) & np.isfinite(runs.final)]


def improvement(runs: pd.DataFrame) -> pd.DataFrame:
    """Per experiment and task, over its scored runs: mean step-0 and final return, the mean paired difference and its
    one-sided 95 % lower confidence bound, and whether the final return is higher by a one-sided paired t-test at
    ALPHA (scipy's result as it is: p is NaN when every difference is 0; None with fewer than 2 runs). `q`: the
    Benjamini-Hochberg adjusted p over the tasks of the same suite and experiment (a NaN p counts as 1), `improved_bh`
    whether q < ALPHA. `failed` and `unfinished` list those seeds, the latter with its last evaluation step."""
    rows = []
    for (experiment, task), g in runs.groupby(["experiment", "task"]):
        used = scored(g)
        p = low = math.nan
        improved = None
        if len(used) >= 2:
            with warnings.catch_warnings():  # "catastrophic cancellation" when the differences are (nearly) equal
                warnings.simplefilter("ignore", RuntimeWarning)
                test = stats.ttest_rel(used.final, used.initial, alternative="greater")
                p, low = float(test.pvalue), float(test.confidence_interval(1 - ALPHA).low)
            improved = bool(p < ALPHA)
        rows.append({"experiment": experiment, "task": task, "suite": suite_of(task), "runs": len(g),
                     "seeds": len(used), "final_step": int(g.final_step.iloc[0]), "initial": used.initial.mean(),
                     "final": used.final.mean(), "difference": (used.final - used.initial).mean(), "low": low,
                     "p": p, "improved": improved, "failed": list(g.seed[g.state == "failed"]),
                     "unfinished": list(zip(g.seed[g.state == "unfinished"], g.last_step[g.state == "unfinished"]))})
    table = pd.DataFrame(rows, columns=["experiment", "task", "suite", "runs", "seeds", "final_step", "initial", "final",
                                        "difference", "low", "p", "improved", "failed", "unfinished"])
    table["improved"] = table.improved.astype(object)  # True, False or None (no verdict), also when none is None
    table["q"], table["improved_bh"] = math.nan, None
    for _, g in table[table.improved.notna()].groupby(["suite", "experiment"]):
        q = stats.false_discovery_control(g.p.fillna(1.0))
        table.loc[g.index, "q"] = q
        table.loc[g.index, "improved_bh"] = pd.Series([bool(x < ALPHA) for x in q], index=g.index, dtype=object)
    return table


def improvement_counts(table: pd.DataFrame) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(suite, experiment) -> (k tasks improved, k after Benjamini-Hochberg, N tasks with a verdict)."""
    tested = table[table.improved.notna()]
    return {key: (int(g.improved.astype(bool).sum()), int(g.improved_bh.astype(bool).sum()), len(g))
            for key, g in tested.groupby(["suite", "experiment"])}


def reference_return(task: str) -> float:
    return 1000.0 if suite_of(task) == "dmc" else GYM_REFERENCE.get(task, math.nan)


def normalized_finals(runs: pd.DataFrame, suite: str) -> tuple[list[str], dict[str, np.ndarray], list[str]]:
    """Tasks that every experiment of `suite` with scored runs has scored runs on; per such experiment its (runs x
    tasks) normalized final returns, (final - random) / (reference - random), with random the mean step-0 return of
    every run of the task (the first n seeds of each task, n = its fewest scored runs on those tasks); and what was
    left out, one phrase each."""
    part = runs[runs.suite == suite]
    random = part[np.isfinite(part.initial)].groupby("task").initial.mean()
    used = scored(part)
    experiments = sorted(used.experiment.unique())
    left_out = [f"{e} (no finished or failed run)" for e in sorted(set(part.experiment) - set(experiments))]
    tasks = []
    for task in sorted(part.task.unique()):
        missing = sorted(set(experiments) - set(used.experiment[used.task == task]))
        if missing:
            left_out.append(f"{task} (no finished or failed run of {', '.join(missing)})")
        else:
            tasks.append(task)
    matrices = {}
    for e in experiments if tasks else []:
        finals = {t: used[(used.experiment == e) & (used.task == t)].sort_values("seed").final.to_numpy() for t in tasks}
        n = min(len(f) for f in finals.values())
        matrices[e] = np.stack([(finals[t][:n] - random[t]) / (reference_return(t) - random[t]) for t in tasks], axis=1)
    return tasks, matrices, left_out


def aggregates(matrices: dict[str, np.ndarray], reps: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """IQM and optimality gap per experiment, and probability of improvement over its baseline, with 95 % stratified
    bootstrap CIs (rliable); `runs` is the runs per task behind each (for a pair, the fewer)."""
    from rliable import library as rly, metrics  # imports arch, which is slow to load

    def iqm_and_gap(scores):
        return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_optimality_gap(scores)])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        points, cis = rly.get_interval_estimates(matrices, iqm_and_gap, reps=reps, random_state=np.random.RandomState(0))
        pairs = {(e, EXPERIMENTS[e].baseline): (matrices[e], matrices[EXPERIMENTS[e].baseline]) for e in matrices
                 if e in EXPERIMENTS and EXPERIMENTS[e].baseline in matrices}
        poi = {}
        if pairs:
            poi = rly.get_interval_estimates({f"{e} > {b}": xy for (e, b), xy in pairs.items()},
                                             metrics.probability_of_improvement, reps=reps,
                                             random_state=np.random.RandomState(0))
    summary = pd.DataFrame([{"experiment": e, "runs": len(matrices[e]), "iqm": points[e][0], "iqm_low": cis[e][0, 0],
                             "iqm_high": cis[e][1, 0], "gap": points[e][1], "gap_low": cis[e][0, 1],
                             "gap_high": cis[e][1, 1]} for e in matrices])
    runs = {f"{e} > {b}": min(len(x), len(y)) for (e, b), (x, y) in pairs.items()}
    improvements = pd.DataFrame([{"pair": pair, "runs": runs[pair], "p": float(poi[0][pair]),
                                  "low": float(poi[1][pair][0, 0]), "high": float(poi[1][pair][1, 0])}
                                 for pair in (poi[0] if poi else {})], columns=["pair", "runs", "p", "low", "high"])
    return summary, improvements


def with_ci(point: float, low: float, high: float, runs: int) -> str:
    if runs < MIN_RUNS_FOR_CI:
        return f"{point:.3f} (no CI: {runs} run{'s' * (runs != 1)} per task)"
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def curve_figure(df: pd.DataFrame, tasks: list[str], lines: list[tuple[str, str]], title: str,
                 log: bool = False) -> plt.Figure | None:
    """One panel per task: per experiment and tag in `lines` (tag, line style) the mean over seeds at the steps every
    seed reached; below MIN_SEEDS_FOR_BAND seeds each seed as a thin line, from it a 95 % t-interval. None when no task
    has these tags."""
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


def model_error_table(df: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The model error by task of `experiment` and, where it ran, its FTFL partner (experiment + FTFL): one row per
    task `experiment` ran, Gym then DMC, within a suite by the recent error at the last retrain (missing last);
    columns (experiment, tag, step): the mean over seeds of each MODEL_TAGS tag at each retrain."""
    tasks = set(df.task[df.experiment == experiment])
    data = df[df.experiment.isin([experiment, experiment + FTFL]) & df.tag.isin(MODEL_TAGS) & df.task.isin(tasks)]
    table = data.groupby(["task", "experiment", "tag", "step"]).value.mean().unstack(["experiment", "tag", "step"])
    table = table.sort_index(axis=1)
    last = recent_at_last_retrain(table, experiment)
    order = sorted(table.index, key=lambda t: (suite_of(t) != "gym", np.nan_to_num(last.get(t, math.nan), nan=math.inf), t))
    return table.loc[order]


def last_retrain(table: pd.DataFrame, experiment: str) -> int | None:
    steps = [step for e, _, step in table.columns if e == experiment]
    return max(steps) if steps else None


def recent_at_last_retrain(table: pd.DataFrame, experiment: str) -> pd.Series:
    """Per task, the recent error (never trained on) of `experiment`'s model at its last retrain (NaN: not there)."""
    key = (experiment, RECENT, last_retrain(table, experiment))
    return table[key] if key in table.columns else pd.Series(math.nan, index=table.index)


def model_error_figure(table: pd.DataFrame, experiment: str) -> plt.Figure:
    """Horizontal bars, one per task in the table's order: the recent error at the last retrain, coloured by suite;
    the FTFL model's hatched beside it where it ran."""
    step = last_retrain(table, experiment)
    bars = [(name, table[(name, RECENT, step)].to_numpy()) for name in (experiment, experiment + FTFL)
            if (name, RECENT, step) in table.columns]
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


def unscored(row) -> str:
    """The failed and unfinished seeds of a verdict row, as a phrase."""
    parts = [f"failed: seed {', '.join(map(str, row.failed))}"] if row.failed else []
    if row.unfinished:
        parts.append("unfinished: " + ", ".join(f"seed {s} (step {step})" for s, step in row.unfinished))
    return "; ".join(parts)


def runs_section(table: pd.DataFrame, from_csv: bool) -> list[str]:
    """Every run's state per experiment and task, from the verdict table."""
    lines = ["## Runs", "", "Per experiment and task: finished runs, and the failed and unfinished ones (with their last "
             "evaluation step). " + ("Rebuilt from a CSV, without the runs' finished.json and stdout.log: a run counts as "
                                     "finished when it evaluated at the protocol's last evaluation step, as failed only "
                                     "when it logged a non-finite evaluation return." if from_csv else
                                     "Finished: a readable finished.json for the protocol's steps; failed: a NaN/inf stop "
                                     "or a non-finite evaluation return; unfinished: neither (running, stopped or crashed "
                                     "otherwise)."), ""]
    steps = table.groupby("suite").final_step.first()
    lines += ["Final evaluation step (the protocol's last): " + ", ".join(
        f"{SUITE_NAMES[s]} {steps[s] if steps[s] >= 0 else 'none (no run finished)'}" for s in SUITES if s in steps) + ".", ""]
    experiments = sorted(table.experiment.unique())
    cells = {(r.task, r.experiment): "; ".join([f"{r.runs - len(r.failed) - len(r.unfinished)} finished"]
                                               + ([unscored(r)] if unscored(r) else [])) for r in table.itertuples()}
    lines += [markdown_table(["task", *experiments], [[task, *(cells.get((task, e), "-") for e in experiments)]
                                                       for task in sorted(table.task.unique())]), ""]
    return lines


def verdict_section(table: pd.DataFrame) -> list[str]:
    counts = improvement_counts(table)
    lines = ["## Improvement beyond random initialization (the paper's headline)", "",
             f"A row says **yes** when the final evaluation return (the mean over the evaluation episodes at the "
             f"protocol's last evaluation step) is higher than the step-0 return (the random initialization) by a "
             f"one-sided paired t-test over seeds at alpha = {ALPHA}. It shows the mean step-0 and final return, the "
             f"mean paired difference (final - step 0) with its one-sided 95 % confidence bound (yes exactly when the "
             f"bound is above 0), p, and n, the runs used: the finished ones, and the failed ones, which count as not "
             f"improved (final = their last finite evaluation return or their step-0 one, whichever is lower). "
             f"Unfinished runs are left out. p = nan is scipy's result when every difference is 0 (no). With fewer "
             f"than 2 runs there is no verdict (-); with n = 2 the test has one degree of freedom and rewards "
             f"consistency, not size, so those verdicts are marked *indicative*. With 2-3 seeds **no** means improvement "
             f"was not shown, not that there was none.", "",
             f"Many tasks, many tests: 15 uncorrected tests at {ALPHA} give 2 or more false **yes** with probability "
             f"~0.17 when nothing improved. The BH column corrects for it (Benjamini-Hochberg false discovery rate over "
             f"the tasks of each suite and experiment, `scipy.stats.false_discovery_control`; a nan p counts as 1). "
             f"The paper reports k of 15 DMC tasks: SAC 14, MBPO 2.", ""]
    for suite in SUITES:
        part = table[table.suite == suite].sort_values(["task", "experiment"])
        if part.empty:
            continue
        rows = []
        for r in part.itertuples():
            if r.improved is None:
                verdict = [f"- ({plural(r.seeds, 'run')})", "", "", "", "", ""]
            else:
                verdict = [("**yes**" if r.improved else "no") + (" *indicative*" if r.seeds == 2 else ""),
                           f"{r.initial:.1f} -> {r.final:.1f}", f"{r.difference:+.1f} [{r.low:.1f}, inf)", f"{r.p:.3g}",
                           f"{'**yes**' if r.improved_bh else 'no'} (q={r.q:.3g})", str(r.seeds)]
            rows.append([r.task, r.experiment, *verdict, unscored(r)])
        total = len(PAPER.tasks[suite])
        for e in sorted(part.experiment.unique()):
            k, k_bh, n = counts.get((suite, e), (0, 0, 0))
            rows.append(["**improved, k of N**", e, f"**{k} of {n}**" + (f" (protocol: {total} tasks)" if n != total else ""),
                         "", "", "", f"**{k_bh} of {n}**", "", ""] if n else ["**improved, k of N**", e, "no verdict", *[""] * 6])
        lines += [f"### {SUITE_NAMES[suite]}", "", markdown_table(
            ["task", "experiment", "improved", "step 0 -> final", "difference [95 % CI]", "p", "BH", "n",
             "not used"], rows), ""]
    return lines


def aggregate_section(runs: pd.DataFrame, reps: int, out: Path) -> list[str]:
    random = runs[np.isfinite(runs.initial)].groupby("task").initial.mean()
    lines = ["## Aggregate normalized returns (rliable)", "",
             f"Final returns normalized as (score - random) / (reference - random) per task. random: the mean step-0 "
             f"evaluation return of every run of the task, measured here (a randomly initialized deterministic policy, "
             f"not a uniform random one); reference: 1000 on DMC (the maximum) and on Gym "
             f"{', '.join(f'{t.split(chr(45))[0]} {v}' for t, v in GYM_REFERENCE.items())} (round numbers near SAC's "
             f"return after ~1M steps; InvertedPendulum's maximum). Runs as in the verdicts: finished, and failed at "
             f"the failed rule's final return. IQM (interquartile mean over runs x tasks) and optimality gap (mean "
             f"shortfall below 1) with 95 % stratified bootstrap CIs ({reps} resamples), not shown below "
             f"{MIN_RUNS_FOR_CI} runs per task (a bootstrap over 2 runs says little); probability of improvement "
             f"P(X > Y): the chance that a run of X on a random task beats one of Y. Only tasks every experiment of the "
             f"suite has finished or failed runs on are used.", "",
             "Random (step-0) returns: " + ", ".join(f"{t} {v:.1f}" for t, v in random.items()) + ".", ""]
    for suite in SUITES:
        if not (runs.suite == suite).any():
            continue
        tasks, matrices, left_out = normalized_finals(runs, suite)
        failed = runs[(runs.suite == suite) & (runs.state == "failed")]
        notes = [f"Left out: {'; '.join(left_out)}."] if left_out else []
        if len(failed):
            notes.append("Failed runs, included at the failed rule's final return: " + ", ".join(
                f"{r.experiment} {r.task} seed {r.seed}" + ("" if np.isfinite(r.final) else " (no finite return: left out)")
                for r in failed.itertuples()) + ".")
        if not matrices:
            lines += [f"{SUITE_NAMES[suite]}: no task with finished or failed runs of every experiment; no aggregate.",
                      "", *(f"{note}\n" for note in notes)]
            continue
        summary, improvements = aggregates(matrices, reps)
        lines += [f"### {SUITE_NAMES[suite]} ({plural(len(tasks), 'task')}: {', '.join(tasks)})", "",
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
             "number (none at the first retrain). **reward error**: mean |predicted r - r| on the holdout and on the "
             "recent transitions. **STFL**: the paper code's own definition (all members, its last training "
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
    table = model_error_table(df, experiment)
    models = [m for m in (experiment, experiment + FTFL) if m in table.columns.get_level_values(0)]
    steps = sorted({step for _, _, step in table.columns})
    retrains = len(steps)
    steps = steps if retrains <= 4 else [steps[0], steps[-1]]  # more would not fit a cell
    seeds = df[df.experiment.isin(models) & df.tag.isin(MODEL_TAGS)].groupby(["experiment", "task"]).seed.nunique()
    tags = [t for t in MODEL_TAGS if t in table.columns.get_level_values(1)]

    def cells(values: pd.Series, model: str) -> list[str]:
        """One cell per tag: its values at the retrains, '-' where missing."""
        def number(tag, step):
            value = values.get((model, tag, step), math.nan)
            return "-" if not np.isfinite(value) else f"{value:.1f}" if "%" in MODEL_TAGS[tag] else f"{value:.3g}"
        return [" / ".join(number(tag, step) for step in steps) for tag in tags]

    header = ["suite", "task"] + [f"{prefix}{name}" for m, prefix in zip(models, ("", "FTFL ")) for name in
                                  ["runs", *(MODEL_TAGS[t] for t in tags)]]
    rows = []
    for suite in ("gym", "dmc"):
        part = table[[suite_of(t) == suite for t in table.index]]
        for task, values in part.iterrows():
            rows.append([SUITE_NAMES[suite], task] + [c for m in models for c in (
                [str(seeds[m, task]), *cells(values, m)] if (m, task) in seeds.index else [""] * (len(tags) + 1))])
        if len(part):
            rows.append([SUITE_NAMES[suite], f"**median ({plural(len(part), 'task')})**"]
                        + [c for m in models for c in ["", *cells(part.median(), m)]])
    lines = [f"### {experiment}" + (f" and {experiment + FTFL}" if len(models) == 2 else ""), "",
             f"Each cell: the values at the retrains at steps {' / '.join(map(str, steps))}"
             + ("." if retrains == len(steps) else f" (the first and last of {retrains} retrains)."), "",
             markdown_table(header, rows), ""]

    last, recent = last_retrain(table, experiment), recent_at_last_retrain(table, experiment)
    medians = {s: recent[[suite_of(t) == s for t in recent.index]].dropna() for s in ("gym", "dmc")}
    medians = {s: float(values.median()) if len(values) else math.nan for s, values in medians.items()}
    summary = ", ".join(f"{SUITE_NAMES[s]} {m:.1f} %" for s, m in medians.items() if np.isfinite(m)) or "none logged"
    if medians["gym"] > 0 and np.isfinite(medians["dmc"]):
        summary += f" ({medians['dmc'] / medians['gym']:.1f} times the Gym median)"
    lines += [f"Median recent error at the last retrain (step {last}): {summary}.", ""]
    if len(models) == 2:
        key = (experiment + FTFL, RECENT, last)
        ftfl = table[key] if key in table.columns else pd.Series(math.nan, index=table.index)
        both = [t for t in table.index if np.isfinite(ftfl[t]) and np.isfinite(recent[t])]
        lower = [f"{t} ({recent[t]:.1f} -> {ftfl[t]:.1f} %)" for t in both if ftfl[t] < recent[t]]
        lines += [f"FTFL: no task has both models' recent error at step {last}." if not both else
                  f"FTFL on {plural(len(both), 'task')} with both at step {last}: median recent error "
                  f"{recent[both].median():.1f} % plain, {ftfl[both].median():.1f} % FTFL; lower with FTFL on "
                  f"{len(lower)} of {len(both)}" + (f": {', '.join(lower)}." if lower else "."), ""]
    name = f"model_error_{experiment}.png"
    fig = model_error_figure(table, experiment)
    fig.savefig(out / name, dpi=90)
    plt.close(fig)
    return lines + [f"![model error by task {experiment}]({name})", ""]


def curves_section(df: pd.DataFrame, out: Path) -> list[str]:
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
            fig = curve_figure(df, tasks, tag_lines, f"{SUITE_NAMES[suite]}: {title}", log)
            if fig is not None:
                fig.savefig(out / name, dpi=90)
                plt.close(fig)
                drawn.append(f"![{heading} {suite}]({name})")
        lines += (drawn or [f"No run logged `{tag}`."]) + [""]
    return lines


def render(df: pd.DataFrame, markers: dict[str, tuple[int | None, bool]], source: str, out: Path, reps: int,
           protocol_steps: int | None = None, from_csv: bool = False) -> str:
    """The report's Markdown; writes its figures into `out`."""
    df = with_experiment(df)
    runs = run_table(df, markers, protocol_steps)
    evaluated = runs[runs.last_step >= 0]
    lines = [f"# Sweep report: `{source}`", "",
             f"{df.run.nunique()} runs, {len(df)} rows in [runs.csv](runs.csv) (columns {', '.join(COLUMNS)}).", ""]
    table = improvement(evaluated)
    lines += runs_section(table, from_csv)
    no_returns = runs[runs.last_step < 0]
    if len(no_returns):
        lines += ["Left out of the verdicts and aggregates (no eval/return logged): " + ", ".join(
            f"{e} ({plural(len(g), 'run')}: {', '.join(f'{t} seed {s}' for t, s in zip(g.task, g.seed))})"
            for e, g in no_returns.groupby("experiment")) + ".", ""]
    lines += verdict_section(table)
    lines += aggregate_section(evaluated, reps, out)
    lines += model_error_section(df, out)
    lines += curves_section(df, out)
    return "\n".join(lines)


def read_csv(path: Path, tags: tuple[str, ...]) -> pd.DataFrame:
    """A runs.csv this script wrote, its rows with `tags`; exits with one line when it is not one."""
    try:
        df = pd.read_csv(path, float_precision="round_trip")  # written back unchanged
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        sys.exit(f"error: cannot read --from-csv {path}: {e}")
    if list(df.columns) != COLUMNS:
        sys.exit(f"error: --from-csv {path} has columns {list(df.columns)}, expected {COLUMNS}")
    return df[df.tag.str.startswith(tags)].astype({"seed": int, "step": int, "value": float})


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, nargs="?", help="the sweep's log root (runs/sweep, runs/sweep_quick)")
    parser.add_argument("--from-csv", type=Path, help="rebuild the report from this runs.csv instead of a root (the runs "
                        "are gone): a run counts as finished when it evaluated at the protocol's last evaluation step")
    parser.add_argument("--out", type=Path, help="where report.md, runs.csv and the figures go (default <root>/report, "
                        "or the CSV's folder)")
    parser.add_argument("--protocol-steps", type=int, help="env steps of the protocol's runs (default per suite: the "
                        "most any finished.json says; from a CSV, the last evaluation step)")
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
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    tags = tuple(args.tags) + ("eval/return",)
    if args.from_csv:
        df = read_csv(args.from_csv, tags)
        markers = markers_from_csv(with_experiment(df), args.protocol_steps)
        source, out = args.from_csv, args.out or args.from_csv.parent
    else:
        df, markers = read_runs(args.root, tags), read_markers(args.root)
        source, out = args.root, args.out or args.root / "report"
    if df.empty:
        sys.exit(f"error: no runs in {source} (expected <root>/<experiment>/<task>/seed_<k>/<run>/events.out.tfevents.*, "
                 f"or a runs.csv with rows)")
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "runs.csv", index=False)
    text = render(df, markers, str(source), out, args.reps, args.protocol_steps, bool(args.from_csv))
    (out / "report.md").write_text(text + "\n")
    print(f"wrote {out / 'report.md'}, {out / 'runs.csv'} ({len(df)} rows) and {len(list(out.glob('*.png')))} figures")


if __name__ == "__main__":
    main(sys.argv[1:])
