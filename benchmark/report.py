"""Report of a sweep: one tidy CSV, a Markdown report and PNG figures, read from the runs' TensorBoard event files.

    python benchmark/report.py runs/sweep_quick          # -> runs/sweep_quick/report/{report.md, runs.csv, *.png}

It reads every run under <root>/<experiment>/<task>/seed_<k>/ (benchmark/sweep.py's layout; finished or not) with
TensorBoard's EventAccumulator and writes
- runs.csv, tidy: run, algorithm, variant, task, seed, step, tag, value (tags starting with --tags; default the
  evaluations, the diagnostics, model error and training returns; --tags '' keeps all),
- report.md: per task and experiment, whether the final evaluation return improves beyond the step-0 (random
  initialization) return, by a one-sided paired t-test over seeds (the paper's headline, "k of N" tasks); aggregate
  normalized returns with rliable (IQM and optimality gap with 95 % stratified bootstrap CIs, probability of
  improvement of each experiment over its baseline, e.g. MBPO over SAC); links to the figures:
- learning curves of eval/return (mean and 95 % t-interval over seeds), model/error_pct, and the critic's
  diagnostics/q_estimate beside diagnostics/mc_return, one panel per task, one figure per suite.
Whatever is missing (an experiment, a suite, a tag) is left out with a line saying so.
"""
import math
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import EXPERIMENTS, PAPER, Parser, suite_of  # noqa: E402

COLUMNS = ["run", "algorithm", "variant", "task", "seed", "step", "tag", "value"]
TAGS = ("eval/", "diagnostics/", "model/error_pct", "charts/episodic_return")
ALPHA = 0.05  # one-sided paired t-test, final > step 0
# return of 1.0 after normalization: DMC's maximum return; Gym, round numbers near SAC's return after ~1M steps
# (Haarnoja et al. 2018; InvertedPendulum's maximum): a common scale, not a ceiling
GYM_REFERENCE = {"InvertedPendulum-v5": 1000, "Hopper-v5": 3500, "HalfCheetah-v5": 12000, "Walker2d-v5": 5000,
                 "Ant-v5": 6000, "Humanoid-v5": 6000}
SUITE_NAMES = {"dmc": "DMC", "gym": "Gym"}


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


def with_experiment(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `experiment` (sweep.py's name: algorithm, or algorithm_variant) and `suite`."""
    df = df.copy()
    df["experiment"] = [a if v == "default" else f"{a}_{v}" for a, v in zip(df.algorithm, df.variant)]
    df["suite"] = df.task.map(suite_of)
    return df


def improvement(df: pd.DataFrame) -> pd.DataFrame:
    """Per experiment and task: mean step-0 and final eval return over the seeds that have both, and whether the final
    one is higher by a one-sided paired t-test at ALPHA (None with fewer than 2 such seeds). Final = the group's last
    eval step; a run that has not reached it yet is left out."""
    rows = []
    for (experiment, task), g in df[df.tag == "eval/return"].groupby(["experiment", "task"]):
        curves = g.pivot_table(index="seed", columns="step", values="value")
        final_step = curves.columns.max()
        both = curves[[0, final_step]].dropna() if 0 in curves.columns and final_step > 0 else curves.iloc[:0, :0]
        p, improved = math.nan, None
        if len(both) >= 2:
            initial, final = both[0], both[final_step]
            differences = final - initial
            if differences.std() == 0:  # the t statistic is undefined; every seed moved by the same amount
                p = 0.0 if differences.mean() > 0 else 1.0
            else:
                p = stats.ttest_rel(final, initial, alternative="greater").pvalue
            improved = bool(p < ALPHA)
        rows.append({"experiment": experiment, "task": task, "suite": suite_of(task), "runs": len(curves),
                     "seeds": len(both), "final_step": int(final_step),
                     "initial": both[0].mean() if len(both) else math.nan,
                     "final": both[final_step].mean() if len(both) else math.nan, "p": p, "improved": improved})
    return pd.DataFrame(rows, columns=["experiment", "task", "suite", "runs", "seeds", "final_step", "initial", "final",
                                       "p", "improved"])


def improvement_counts(table: pd.DataFrame) -> dict[tuple[str, str], tuple[int, int]]:
    """(suite, experiment) -> (k tasks improved, N tasks with a verdict)."""
    tested = table[table.improved.notna()]
    return {key: (int(g.improved.astype(bool).sum()), len(g)) for key, g in tested.groupby(["suite", "experiment"])}


def normalized_finals(df: pd.DataFrame, table: pd.DataFrame, suite: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """Tasks that every experiment of `suite` has finals on, and per experiment its (runs x tasks) normalized final
    returns (the first n seeds of each task, n = its fewest finished seeds on those tasks)."""
    table = table[(table.suite == suite) & (table.runs > 0)]
    ev = df[(df.tag == "eval/return") & (df.suite == suite)]
    finals = {}
    for row in table.itertuples():
        values = ev[(ev.experiment == row.experiment) & (ev.task == row.task) & (ev.step == row.final_step)]
        scale = 1000 if suite == "dmc" else GYM_REFERENCE.get(row.task, math.nan)
        finals[row.experiment, row.task] = values.sort_values("seed").value.to_numpy() / scale
    experiments = sorted(table.experiment.unique())
    tasks = sorted(set.intersection(*(set(table[table.experiment == e].task) for e in experiments))) if experiments else []
    tasks = [t for t in tasks if all(np.isfinite(finals[e, t]).all() for e in experiments)]
    matrices = {}
    for e in experiments:
        n = min((len(finals[e, t]) for t in tasks), default=0)
        if n:
            matrices[e] = np.stack([finals[e, t][:n] for t in tasks], axis=1)
    return tasks, matrices


def aggregates(matrices: dict[str, np.ndarray], reps: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """IQM and optimality gap per experiment, and probability of improvement over its baseline, with 95 % stratified
    bootstrap CIs (rliable)."""
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
    improvements = pd.DataFrame([{"pair": pair, "p": float(poi[0][pair]), "low": float(poi[1][pair][0, 0]),
                                  "high": float(poi[1][pair][1, 0])}
                                 for pair in (poi[0] if poi else {})], columns=["pair", "p", "low", "high"])
    return summary, improvements


def curve_grid(df: pd.DataFrame, tasks: list[str], lines: list[tuple[str, str]], title: str, path: Path,
               log: bool = False) -> bool:
    """One panel per task: per experiment and tag in `lines` (tag, line style) the mean over seeds and its 95 %
    t-interval. False (nothing drawn) when no task has these tags."""
    data = df[df.tag.isin([tag for tag, _ in lines]) & df.task.isin(tasks)]
    tasks = [t for t in tasks if t in set(data.task)]
    if not tasks:
        return False
    columns = min(len(tasks), 4)
    rows = math.ceil(len(tasks) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(max(4 * columns, 7), 3 * rows + 0.5), squeeze=False)
    colors = {e: f"C{i}" for i, e in enumerate(sorted(df.experiment.unique()))}
    styles = dict(lines)
    for ax, task in zip(axes.flat, tasks):
        for (experiment, tag), g in data[data.task == task].groupby(["experiment", "tag"]):
            curve = g.groupby("step").value.agg(["mean", "std", "count"])
            half = (stats.t.ppf(0.975, np.maximum(curve["count"] - 1, 1)) * curve["std"] / np.sqrt(curve["count"])).fillna(0)
            label = experiment if len(lines) == 1 else f"{experiment} {tag.split('/')[-1]}"
            ax.plot(curve.index, curve["mean"], styles[tag], color=colors[experiment], label=label)
            ax.fill_between(curve.index, curve["mean"] - half, curve["mean"] + half, color=colors[experiment], alpha=0.2)
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
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def aggregate_figure(summary: pd.DataFrame, improvements: pd.DataFrame, title: str, path: Path) -> None:
    """IQM, optimality gap and probability of improvement as points with 95 % CI bars."""
    panels = [("IQM (normalized)", summary.experiment, summary.iqm, summary.iqm_low, summary.iqm_high),
              ("optimality gap", summary.experiment, summary.gap, summary.gap_low, summary.gap_high)]
    if len(improvements):
        panels.append(("P(X > baseline)", improvements.pair, improvements.p, improvements.low, improvements.high))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 0.5 * max(len(summary), len(improvements)) + 1.5),
                             squeeze=False)
    axes = axes[0]
    for ax, (name, labels, point, low, high) in zip(axes, panels):
        point, low, high, y = point.to_numpy(), low.to_numpy(), high.to_numpy(), np.arange(len(labels))
        ax.errorbar(point, y, xerr=[point - low, high - point], fmt="o", capsize=3)
        ax.set_yticks(y, list(labels), fontsize=8)
        ax.set_title(name, fontsize=10)
    if len(improvements):
        axes[-1].set_xlim(0, 1)
        axes[-1].axvline(0.5, color="grey", linestyle=":")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(row) + " |" for row in rows])


def render(df: pd.DataFrame, root: Path, out: Path, reps: int) -> str:
    """The report's Markdown; writes its figures into `out`."""
    df = with_experiment(df)
    table = improvement(df)
    counts = improvement_counts(table)
    lines = [f"# Sweep report: `{root}`", "",
             f"{df.run.nunique()} runs, {len(df)} rows in [runs.csv](runs.csv) (columns {', '.join(COLUMNS)}).", ""]
    lines += ["## Runs", "", "Seeds read per experiment and task, and the last evaluation step they reached.", ""]
    runs = df[df.tag == "eval/return"].groupby(["task", "experiment"]).agg(seeds=("seed", "nunique"), step=("step", "max"))
    experiments = sorted(df.experiment.unique())
    lines += [markdown_table(["task", *experiments], [
        [task, *(f"{runs.loc[(task, e), 'seeds']} (step {runs.loc[(task, e), 'step']})" if (task, e) in runs.index
                 else "-" for e in experiments)] for task in sorted(df.task.unique())]), ""]

    lines += ["## Improvement beyond random initialization (the paper's headline)", "",
              f"A cell says **yes** when the final evaluation return (the mean over the evaluation episodes at the group's "
              f"last evaluation step) is higher than the step-0 return (the random initialization) by a one-sided paired "
              f"t-test over seeds at alpha = {ALPHA}; it shows mean step-0 -> final return, p and the seeds used. Runs "
              f"that have not reached the last step are left out; with fewer than 2 seeds there is no verdict (-). With "
              f"2-3 seeds the test has little power: **no** means improvement was not shown, not that there was none. "
              f"The paper reports k of 15 DMC tasks: SAC 14, MBPO 2.", ""]
    for suite in ("dmc", "gym"):
        part = table[table.suite == suite]
        if part.empty:
            continue
        in_suite = sorted(part.experiment.unique())
        cell = {(r.task, r.experiment): r for r in part.itertuples()}

        def verdict(r):
            if r.improved is None:
                return f"- ({r.seeds} seed{'s' * (r.seeds != 1)})"
            return (f"{'**yes**' if r.improved else 'no'} {r.initial:.1f} -> {r.final:.1f} "
                    f"(p={r.p:.3g}, n={r.seeds})")

        rows = [[task, *(verdict(cell[task, e]) if (task, e) in cell else "" for e in in_suite)]
                for task in sorted(part.task.unique())]
        total = len(PAPER.tasks[suite])
        rows.append(["**improved, k of N**", *(
            f"**{counts[suite, e][0]} of {counts[suite, e][1]}**" + (f" (protocol: {total} tasks)" if counts[suite, e][1] != total else "")
            if (suite, e) in counts else "no verdict" for e in in_suite)])
        lines += [f"### {SUITE_NAMES[suite]}", "", markdown_table(["task", *in_suite], rows), ""]

    lines += ["## Aggregate normalized returns (rliable)", "",
              f"Final evaluation returns normalized by 1000 on DMC (the maximum) and on Gym by "
              f"{', '.join(f'{t.split(chr(45))[0]} {v}' for t, v in GYM_REFERENCE.items())} (round numbers near SAC's "
              f"return after ~1M steps; InvertedPendulum's maximum). IQM (interquartile mean over runs x tasks) and "
              f"optimality gap (mean shortfall below 1) with 95 % stratified bootstrap CIs ({reps} resamples), "
              f"probability of improvement P(X > Y): the chance that a run of X on a random task beats one of Y. Only "
              f"tasks every experiment of the suite has results on are used.", ""]
    for suite in ("dmc", "gym"):
        tasks, matrices = normalized_finals(df, table, suite)
        if not matrices:
            if (df.suite == suite).any():
                lines += [f"{SUITE_NAMES[suite]}: no task with final results for every experiment; no aggregate.", ""]
            continue
        summary, improvements = aggregates(matrices, reps)
        lines += [f"### {SUITE_NAMES[suite]} ({len(tasks)} task{'s' * (len(tasks) != 1)}: {', '.join(tasks)})", "", markdown_table(
            ["experiment", "runs per task", "IQM [95 % CI]", "optimality gap [95 % CI]"],
            [[r.experiment, str(r.runs), f"{r.iqm:.3f} [{r.iqm_low:.3f}, {r.iqm_high:.3f}]",
              f"{r.gap:.3f} [{r.gap_low:.3f}, {r.gap_high:.3f}]"] for r in summary.itertuples()]), ""]
        if len(improvements):
            lines += [markdown_table(["P(X > Y)", "point [95 % CI]"], [
                [r.pair, f"{r.p:.3f} [{r.low:.3f}, {r.high:.3f}]"] for r in improvements.itertuples()]), ""]
        aggregate_figure(summary, improvements, f"{SUITE_NAMES[suite]}: final normalized return", out / f"aggregate_{suite}.png")
        lines += [f"![aggregates {suite}](aggregate_{suite}.png)", ""]

    figures = [("Learning curves", "eval/return", [("eval/return", "-")], "evaluation return", False),
               ("Model error", "model/error_pct", [("model/error_pct", "-")], "model error % (100 |pred ds - ds| / |ds|)", True),
               ("Q estimate vs Monte-Carlo return", "diagnostics/q_estimate",
                [("diagnostics/q_estimate", "-"), ("diagnostics/mc_return", "--")],
                "Q(s0, pi(s0)) (solid) vs discounted MC return (dashed)", False)]
    for heading, tag, tag_lines, title, log in figures:
        lines += [f"## {heading}", ""]
        drawn = []
        for suite in ("dmc", "gym"):
            tasks = sorted(df[df.suite == suite].task.unique())
            name = f"{tag.split('/')[-1]}_{suite}.png"
            if curve_grid(df, tasks, tag_lines, f"{SUITE_NAMES[suite]}: {title} (mean, 95 % CI over seeds)", out / name, log):
                drawn.append(f"![{heading} {suite}]({name})")
        lines += (drawn or [f"No run logged `{tag}`."]) + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the sweep's log root (runs/sweep, runs/sweep_quick)")
    parser.add_argument("--out", type=Path, help="where report.md, runs.csv and the figures go (default <root>/report)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples for the CIs (default 2000)")
    parser.add_argument("--tags", nargs="*", default=list(TAGS), help=f"tag prefixes kept in runs.csv (default {' '.join(TAGS)}; '' = all)")
    args = parser.parse_args()
    if not args.root.is_dir():
        parser.error(f"{args.root} is not a directory")
    if args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    df = read_runs(args.root, tuple(args.tags) + ("eval/return",))
    if df.empty:
        parser.error(f"no runs under {args.root} (expected <root>/<experiment>/<task>/seed_<k>/<run>/events.out.tfevents.*)")
    out = args.out or args.root / "report"
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "runs.csv", index=False)
    (out / "report.md").write_text(render(df, args.root, out, args.reps) + "\n")
    print(f"wrote {out / 'report.md'}, {out / 'runs.csv'} ({len(df)} rows) and {len(list(out.glob('*.png')))} figures")
