"""benchmark/report.py on event files with known values: finished, failed and unfinished runs, verdicts, aggregates,
curves, the rebuild from a CSV and the model error by task."""
import csv
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from torch.utils.tensorboard import SummaryWriter

from conftest import ROOT, assert_one_line_error

sys.path.insert(0, str(ROOT / "benchmark"))
import report  # noqa: E402

NAN_STOP = "error: qf1 is NaN or inf at step 1500; run stopped (last good checkpoint: step 1000)"


def run_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmark" / "report.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def write_run(root, experiment, task, seed, evals: dict[int, float], extra: dict[str, dict[int, float]] = {},
              finished: int | None = None, log: str | None = None, started: int = 1):
    """A seed directory in the sweep's layout with `eval/return` (and `extra` tags) at the given steps, a finished.json
    for `finished` steps and a stdout.log ending with `log`; its run directory's name says it started at `started`."""
    seed_dir = root / experiment / task.replace(":", "_") / f"seed_{seed}"
    writer = SummaryWriter(str(seed_dir / f"{task.replace(':', '_')}__{experiment.split('_')[0]}__{seed}__{started}"))
    for tag, values in {"eval/return": evals, **extra}.items():
        for step, value in values.items():
            writer.add_scalar(tag, value, step)
    writer.close()
    if finished is not None:
        (seed_dir / "finished.json").write_text(json.dumps({"total_timesteps": finished}))
    if log is not None:
        (seed_dir / "stdout.log").write_text(f"# 2026-01-01 00:00:00 python sac.py\nstep 1000/3000\n{log}\n")


def runs_of(root, protocol_steps=None) -> pd.DataFrame:
    df, markers = report.read_sweep(root)
    return report.run_table(report.with_experiment(df), markers, protocol_steps)


def render(root, out, protocol_steps=None, **kwargs) -> str:
    out.mkdir()
    return report.render(*report.read_sweep(root), str(root), out, 50, protocol_steps, **kwargs)


def test_report_reads_known_runs_into_csv_verdicts_and_counts(tmp_path):
    # dmc:walker-run: sac clearly improves on 3 seeds, mbpo does not; mbpo without rollouts has a single seed
    for seed, (start, end) in enumerate([(20, 300), (25, 340), (22, 310)], start=1):
        write_run(tmp_path, "sac", "dmc:walker-run", seed, {0: start, 100: 100, 200: end}, finished=200)
        write_run(tmp_path, "mbpo", "dmc:walker-run", seed, {0: start, 100: start, 200: start + (seed - 2) * 5},
                  {"model/error_pct": {100: 150.0, 200: 120.0}}, finished=200)
    write_run(tmp_path, "mbpo_no_rollouts", "dmc:walker-run", 1, {0: 20, 200: 400}, finished=200)
    # Hopper-v5: both improve; sac's seed 3 stopped early: unfinished, listed, left out of the final comparison
    for seed in (1, 2, 3):
        if seed < 3:
            write_run(tmp_path, "sac", "Hopper-v5", seed, {0: 10 + seed, 200: 1000 + 50 * seed}, finished=200)
        else:
            write_run(tmp_path, "sac", "Hopper-v5", seed, {0: 13, 100: 5})
        write_run(tmp_path, "mbpo", "Hopper-v5", seed, {0: 10 + seed, 200: 2000 + 100 * seed}, finished=200)
    out = tmp_path / "report"
    result = run_report(str(tmp_path), "--out", str(out), "--reps", "200")
    assert result.returncode == 0, result.stderr

    with open(out / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == report.COLUMNS
    assert len(rows) == 9 + 15 + 2 + 6 + 6  # walker-run: sac, mbpo (+ model error), no rollouts; Hopper: sac, mbpo
    assert {"run": "mbpo_no_rollouts/dmc_walker-run/seed_1/dmc_walker-run__mbpo__1__1", "algorithm": "mbpo",
            "variant": "no_rollouts", "task": "dmc:walker-run", "seed": "1", "step": "200", "tag": "eval/return",
            "value": "400.0"} in rows

    table = report.improvement(runs_of(tmp_path)).set_index(["experiment", "task"])
    assert table.loc[("sac", "dmc:walker-run"), "improved"] is True
    assert table.loc[("sac", "dmc:walker-run"), "final"] == pytest.approx(950 / 3)
    assert table.loc[("mbpo", "dmc:walker-run"), "improved"] is False  # differences -5, 0, +5
    assert table.loc[("mbpo_no_rollouts", "dmc:walker-run"), "improved"] is None  # one seed: no verdict
    assert table.loc[("sac", "Hopper-v5"), ["seeds", "runs"]].tolist() == [2, 3]
    assert [(seed, state) for seed, state, _ in table.loc[("sac", "Hopper-v5"), "not_used"]] == [(3, "unfinished")]
    assert report.improvement_counts(report.improvement(runs_of(tmp_path))) == {
        ("dmc", "mbpo"): (0, 0, 1), ("dmc", "sac"): (1, 1, 1), ("gym", "mbpo"): (1, 1, 1), ("gym", "sac"): (1, 1, 1)}

    markdown = (out / "report.md").read_text()
    assert "| **1 of 1** |" in markdown and "(protocol:" not in markdown  # no --protocol: no planned task count
    assert "| dmc:walker-run | mbpo_no_rollouts | 200 | - (1 run used) | 20.0 -> 400.0 | +380.0 | +0.389 |" in markdown  # one seed: no test, the gain shown
    assert "| Hopper-v5 | 3 used of 3 | - | 2 used of 3; 1 unfinished |" in markdown
    assert "| sac | Hopper-v5 | 3 | unfinished | ? (not known) | 100 | 200 | no | unfinished at step 100 of ?" in markdown
    assert "| mbpo > sac |" in markdown  # probability of improvement on both suites
    assert "| mbpo | 3 | 0." in markdown and "| sac | 2 | 0." in markdown
    assert "[" in markdown.split("| mbpo | 3 | ")[1].split("|")[0]  # a CI with 3 runs per task
    assert "(no CI: 2 runs per task)" in markdown.split("| sac | 2 | ")[1].split("\n")[0]
    for figure in ("return_dmc.png", "return_gym.png", "error_pct_dmc.png", "aggregate_dmc.png", "aggregate_gym.png"):
        assert (out / figure).stat().st_size > 1000, figure
        assert f"({figure})" in markdown
    assert "none logged, so no figure" in markdown  # mbpo logged model/error_pct only, no recent error to draw
    assert "No run logged `diagnostics/q_estimate`." in markdown


def test_report_of_an_empty_root_is_one_line(tmp_path):
    assert_one_line_error(run_report(str(tmp_path)), "no runs in")


def test_partial_sweep_judges_finished_runs_at_the_protocols_last_step(tmp_path):
    steps = [0, 1000, 2000, 3000]
    for seed in (1, 2, 3):
        for task in ("dmc:walker-run", "dmc:cheetah-run"):
            write_run(tmp_path, "sac", task, seed, {s: 10 * seed + s / 10 for s in steps}, finished=3000)
        # mbpo stopped early on walker-run; on cheetah-run seed 3 is ahead of the others, none finished
        write_run(tmp_path, "mbpo", "dmc:walker-run", seed, {0: 10 * seed, 1000: 900})
        write_run(tmp_path, "mbpo", "dmc:cheetah-run", seed, {s: 500 if s else 10 * seed for s in steps[:2 + (seed == 3)]})
        # without rollouts: only the step-0 evaluation on walker-run; finished on cheetah-run
        write_run(tmp_path, "mbpo_no_rollouts", "dmc:walker-run", seed, {0: 10 * seed})
        write_run(tmp_path, "mbpo_no_rollouts", "dmc:cheetah-run", seed, {s: 10 * seed + s / 20 for s in steps},
                  finished=3000)
    runs = runs_of(tmp_path)
    final_steps = runs.groupby(["experiment", "task"]).final_step.first().to_dict()
    assert final_steps == {("sac", "dmc:walker-run"): 3000, ("sac", "dmc:cheetah-run"): 3000,
                           ("mbpo", "dmc:walker-run"): -1, ("mbpo", "dmc:cheetah-run"): -1,  # none finished
                           ("mbpo_no_rollouts", "dmc:walker-run"): -1, ("mbpo_no_rollouts", "dmc:cheetah-run"): 3000}
    table = report.improvement(runs).set_index(["experiment", "task"])
    assert table.loc[("sac", "dmc:walker-run"), ["final", "seeds", "improved"]].tolist() == [320, 3, True]
    assert table.loc[("mbpo", "dmc:walker-run"), "improved"] is None

    def not_used(experiment, task):
        return [(seed, state, note.split(" (")[0]) for seed, state, note in table.loc[(experiment, task), "not_used"]]
    assert not_used("mbpo", "dmc:walker-run") == [(s, "unfinished", "unfinished at step 1000 of ?") for s in (1, 2, 3)]
    assert table.loc[("mbpo", "dmc:cheetah-run"), ["seeds", "improved"]].tolist() == [0, None]
    assert [step for _, _, step in not_used("mbpo", "dmc:cheetah-run")] == [
        "unfinished at step 1000 of ?", "unfinished at step 1000 of ?", "unfinished at step 2000 of ?"]
    assert not_used("mbpo_no_rollouts", "dmc:walker-run") == [(s, "unfinished", "unfinished at step 0 of ?") for s in (1, 2, 3)]

    matrices, left_out = report.normalized_finals(runs, "dmc")
    assert sorted(matrices) == ["mbpo_no_rollouts", "sac"]  # each on the tasks it has used runs on
    assert matrices["mbpo_no_rollouts"][0] == ["dmc:cheetah-run"]
    tasks, matrix, cut = matrices["sac"]
    assert tasks == ["dmc:cheetah-run", "dmc:walker-run"] and not cut
    random = runs[runs.task == "dmc:cheetah-run"].initial.mean()  # every run of the task: 20
    assert matrix[:, 0] == pytest.approx((np.array([310, 320, 330]) - random) / (1000 - random))
    assert left_out == ["mbpo (no used run)"]

    # --protocol-steps asks for more than any run did: nothing is finished
    assert set(runs_of(tmp_path, protocol_steps=4000).state) == {"unfinished"}


def test_an_unreadable_finished_marker_is_unfinished(tmp_path):
    write_run(tmp_path, "sac", "Hopper-v5", 1, {0: 1, 1000: 2}, finished=1000)
    write_run(tmp_path, "sac", "Hopper-v5", 2, {0: 1, 1000: 2}, finished=1000)
    (tmp_path / "sac" / "Hopper-v5" / "seed_2" / "finished.json").write_text('{"total_time')  # truncated
    assert runs_of(tmp_path).state.tolist() == ["finished", "unfinished"]


def test_diverged_runs_are_listed_and_count_as_not_improved(tmp_path):
    for seed in (1, 2):
        write_run(tmp_path, "sac", "Hopper-v5", seed, {0: 10, 1000: 500, 2000: 1000 + seed}, finished=2000)
        write_run(tmp_path, "mbpo", "Hopper-v5", seed, {0: 10, 1000: 500, 2000: 900 + seed}, finished=2000)
    write_run(tmp_path, "sac", "Hopper-v5", 3, {0: 10, 1000: 500}, log=NAN_STOP)  # stopped on NaN after a good eval
    write_run(tmp_path, "mbpo", "Hopper-v5", 3, {0: 10, 1000: math.nan}, log="killed")  # a NaN evaluation return
    runs = runs_of(tmp_path).set_index(["experiment", "seed"])
    assert runs.loc[("sac", 3), ["state", "final"]].tolist() == ["failed", 10]  # min(last return 500, step 0)
    assert runs.loc[("mbpo", 3), ["state", "final"]].tolist() == ["failed", 10]
    table = report.improvement(runs.reset_index()).set_index("experiment")
    assert table.loc["sac", ["seeds", "failed"]].tolist() == [3, [3]]
    assert table.loc["sac", "p"] == pytest.approx(
        stats.ttest_rel([1001, 1002, 10], [10, 10, 10], alternative="greater").pvalue)

    matrices, _ = report.normalized_finals(runs.reset_index(), "gym")
    tasks, matrix, _ = matrices["mbpo"]
    assert tasks == ["Hopper-v5"] and matrix[2, 0] == 0  # the task stays, the failed run at step 0
    markdown = render(tmp_path, tmp_path / "report")
    assert "| Hopper-v5 | 3 used of 3; 1 failed | 3 used of 3; 1 failed |" in markdown
    assert "included at the failed rule's final return: mbpo Hopper-v5 seed 3, sac Hopper-v5 seed 3." in markdown


def test_verdicts_show_the_difference_its_bound_and_a_corrected_column():
    differences = {"a": [50, 60, 70], "b": [5, -1, 9], "c": [3, 3, 3], "d": [0, 0, 0], "e": [40, 44]}
    runs = pd.DataFrame([{"experiment": "sac", "task": f"dmc:{task}", "suite": "dmc", "seed": seed, "state": "finished",
                          "last_step": 100, "final_step": 100, "initial": 10.0 * seed, "final": 10.0 * seed + d,
                          "used": True}
                         for task, ds in differences.items() for seed, d in enumerate(ds, start=1)])
    table = report.improvement(runs).set_index("task")
    # scipy's result for zero variance, mean 3: p = 0, yet +3 of a 980-point range is below the minimum effect
    assert table.loc["dmc:c", ["p", "improved"]].tolist() == [0.0, False]
    assert table.loc["dmc:c", "effect"] == pytest.approx(3 / (1000 - 20))
    assert table.loc["dmc:a", "improved"] is True and table.loc["dmc:a", "effect"] == pytest.approx(60 / 980)
    assert math.isnan(table.loc["dmc:d", "p"]) and table.loc["dmc:d", "improved"] is False
    assert table.loc["dmc:a", "difference"] == 60
    assert table.loc["dmc:a", "low"] == pytest.approx(
        stats.ttest_rel([60, 80, 100], [10, 20, 30], alternative="greater").confidence_interval(0.95).low)
    p = table.p.fillna(1.0)
    assert table.q.tolist() == pytest.approx(stats.false_discovery_control(p).tolist())
    assert table.improved_bh.tolist() == [q < report.ALPHA and e >= report.MIN_EFFECT for q, e in zip(table.q, table.effect)]
    assert report.improvement_counts(table.reset_index()) == {("dmc", "sac"): (
        int(table.improved.sum()), int(sum(table.improved_bh)), 5)}

    markdown = "\n".join(report.verdict_section(table.reset_index()))
    assert "the 5 uncorrected tests of this report at 0.05 give 2 or more false **yes** with probability ~0.023" in markdown

    row_e = next(line for line in markdown.splitlines() if line.startswith("| dmc:e |"))
    assert "*indicative*" in row_e and f"+42.0 [{table.loc['dmc:e', 'low']:.1f}, inf)" in row_e
    assert "*indicative*" not in next(line for line in markdown.splitlines() if line.startswith("| dmc:a |"))


@pytest.mark.parametrize("tests, risk", [(15, "~0.17"), (8, "~0.057")])
def test_the_multiple_testing_risk_is_computed_for_the_reports_own_tests(tests, risk):
    """Issue 44 item 3: the risk sentence counts the report's tests (the evidence report runs 8), not a sweep of 15."""
    runs = pd.DataFrame([{"experiment": "sac", "task": f"dmc:t{task}", "suite": "dmc", "seed": seed, "state": "finished",
                          "last_step": 100, "final_step": 100, "initial": 0.0, "final": float(seed), "used": True}
                         for task in range(tests) for seed in (1, 2)])
    markdown = "\n".join(report.verdict_section(report.improvement(runs)))
    assert f"the {tests} uncorrected tests of this report at 0.05 give 2 or more false **yes** with probability {risk} " \
           "when nothing improved" in markdown


def test_normalization_subtracts_the_measured_step0_return(tmp_path):
    for seed in (1, 2):
        write_run(tmp_path, "sac", "HalfCheetah-v5", seed, {0: -280, 1000: 5720 + seed}, finished=1000)
    matrices, _ = report.normalized_finals(runs_of(tmp_path), "gym")
    assert matrices["sac"][1][:, 0] == pytest.approx([(6000 + seed) / (12000 + 280) for seed in (1, 2)])


def test_an_experiment_without_returns_is_in_the_left_out_line(tmp_path):
    write_run(tmp_path, "sac", "Hopper-v5", 1, {0: 1, 1000: 2}, finished=1000)
    write_run(tmp_path, "mbpo", "Hopper-v5", 1, {}, {"model/error_pct": {1000: 3.0}}, finished=1000)
    markdown = render(tmp_path, tmp_path / "report")
    assert "| mbpo | Hopper-v5 | 1 | finished | 1000 (its finished.json) | none | - | no | no eval/return logged |" in markdown


@pytest.mark.parametrize("seeds", [1, 2])
def test_few_seed_curves_stay_inside_the_data(seeds):
    # seed 2 stops at step 200: the mean stops there too, it does not jump to seed 1 alone
    values = {1: {0: 0.0, 100: 900.0, 200: 950.0, 300: 1000.0}, 2: {0: 5.0, 100: 10.0, 200: 20.0}}
    df = pd.DataFrame([{"experiment": "sac", "task": "dmc:walker-run", "seed": seed, "step": step, "tag": "eval/return",
                        "value": v} for seed in range(1, seeds + 1) for step, v in values[seed].items()])
    fig = report.curve_figure(df, ["dmc:walker-run"], [("eval/return", "-")], "t")
    ax = fig.axes[0]
    assert not ax.collections  # no band
    for line in ax.lines:
        assert df.value.min() <= min(line.get_ydata()) and max(line.get_ydata()) <= df.value.max()
    mean = next(line for line in ax.lines if line.get_label() == "sac")
    assert list(mean.get_xdata()) == ([0, 100, 200, 300] if seeds == 1 else [0, 100, 200])


def test_five_seed_curves_get_a_band():
    df = pd.DataFrame([{"experiment": "sac", "task": "Hopper-v5", "seed": seed, "step": step, "tag": "eval/return",
                        "value": seed * step} for seed in range(5) for step in (0, 100)])
    assert report.curve_figure(df, ["Hopper-v5"], [("eval/return", "-")], "t").axes[0].collections


def test_report_rebuilds_from_a_csv(tmp_path):
    for seed in (1, 2):
        write_run(tmp_path / "runs", "sac", "Hopper-v5", seed, {0: 10, 1000: 500, 2000: 1000 + seed})
    write_run(tmp_path / "runs", "sac", "Hopper-v5", 3, {0: 10, 1000: 700})
    write_run(tmp_path / "runs", "sac", "Hopper-v5", 4, {0: 10, 1000: math.inf})
    csv_path = tmp_path / "runs.csv"
    report.read_sweep(tmp_path / "runs")[0].to_csv(csv_path, index=False)
    out = tmp_path / "report"
    report.main(["--from-csv", str(csv_path), "--out", str(out), "--protocol-steps", "2000", "--reps", "50"])
    assert (out / "runs.csv").read_text() == csv_path.read_text()
    markdown = (out / "report.md").read_text()
    assert "Rebuilt from a CSV" in markdown
    assert "| Hopper-v5 | 3 used of 4; 1 failed; 1 unfinished |" in markdown
    assert "*wall time*: the span of its event files' records, summed over its attempts (the start and each resume): " \
           "not in a CSV (-)." in markdown and "| yes |  | - |" in markdown  # unknown, and said so, not a blank


@pytest.mark.parametrize("args, fragment", [
    ([], "give a sweep root or --from-csv"),
    (["--from-csv", "nowhere.csv"], "cannot read --from-csv nowhere.csv"),
    (["--from-csv", "benchmark/results/quick/runs.csv", "--protocol-steps", "0"], "--protocol-steps must be >= 1"),
    (["--from-csv", "{tmp}/runs.csv"], "runs.csv has columns ['step', 'value']"),
    (["--from-csv", "{tmp}/header.csv"], "header.csv has no rows, only its header"),
])
def test_report_bad_input_is_an_error_line(args, fragment, tmp_path):
    (tmp_path / "runs.csv").write_text("step,value\n0,1.0\n")
    (tmp_path / "header.csv").write_text(",".join(report.COLUMNS) + "\n")
    with pytest.raises(SystemExit) as exit:
        report.main([arg.format(tmp=tmp_path) for arg in args])
    assert str(exit.value.code).startswith("error: ") and fragment in str(exit.value.code)


def model_errors(recent_last: float, scale: float = 1.0) -> dict[str, dict[int, float]]:
    """Every model tag at the retrains 5000, 10000, 15000; the recent error at the last one is `recent_last`."""
    tags = {tag: {step: scale * (i + 1) * step / 5000 for step in (5000, 10000, 15000)}
            for i, tag in enumerate(report.MODEL_TAGS)}
    tags[report.RECENT] = {10000: recent_last + 1, 15000: recent_last}
    return tags


def test_model_error_by_task_sorts_suites_and_puts_ftfl_beside(tmp_path):
    recent = {"Hopper-v5": 20.0, "InvertedPendulum-v5": 5.0, "dmc:hopper-hop": 150.0, "dmc:walker-run": 60.0}
    for task, value in recent.items():
        evals = {0: 1.0, 5000: 2.0, 10000: 3.0, 15000: 4.0}
        write_run(tmp_path, "mbpo_atlas", task, 1, evals, model_errors(value), finished=15001)
        if task == "dmc:walker-run":  # a second seed: the table shows the mean
            write_run(tmp_path, "mbpo_atlas", task, 2, evals, model_errors(value + 10, scale=3.0), finished=15001)
    for task, value in {"Hopper-v5": 10.0, "dmc:hopper-hop": 40.0}.items():
        write_run(tmp_path, "mbpo_atlas_ftfl", task, 1, {0: 1.0, 15000: 2.0}, model_errors(value), finished=15001)
    df = report.with_experiment(report.read_sweep(tmp_path)[0])
    table = report.model_error_table(df, "mbpo_atlas")
    assert list(table.index) == ["InvertedPendulum-v5", "Hopper-v5", "dmc:walker-run", "dmc:hopper-hop"]
    assert table.loc["dmc:walker-run", ("mbpo_atlas", report.RECENT, 15000)] == 65
    assert table.loc["dmc:walker-run", ("mbpo_atlas", "model/error_pct", 10000)] == (2 + 6) / 2
    assert table.loc["dmc:hopper-hop", ("mbpo_atlas_ftfl", report.RECENT, 15000)] == 40
    assert math.isnan(table.loc["dmc:walker-run", ("mbpo_atlas_ftfl", report.RECENT, 15000)])

    bars = report.model_error_figure(table, "mbpo_atlas").axes[0].containers
    assert [bar.get_width() for bar in bars[0]] == [5, 20, 65, 150]  # the table's order and numbers
    assert [bar.get_width() for bar in bars[1]] == [10, 40]

    markdown = render(tmp_path, tmp_path / "report")
    section = markdown.split("### mbpo_atlas and mbpo_atlas_ftfl")[1].split("Median recent")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[1] for row in rows[1:]] == ["InvertedPendulum-v5", "Hopper-v5", "**median (2 tasks)**",
                                                         "dmc:walker-run", "dmc:hopper-hop", "**median (2 tasks)**"]
    # plain: runs, train, holdout, recent, ...; then FTFL's
    assert rows[5].startswith("| DMC | dmc:hopper-hop | 1 | 1.0 / 2.0 / 3.0 | 2.0 / 4.0 / 6.0 | - / 151.0 / 150.0 |")
    assert "| 1 | 1.0 / 2.0 / 3.0 | 2.0 / 4.0 / 6.0 | - / 41.0 / 40.0 |" in rows[5]  # FTFL beside
    assert rows[4].startswith("| DMC | dmc:walker-run | 2 | 2.0 / 4.0 / 6.0 | 4.0 / 8.0 / 12.0 | - / 66.0 / 65.0 |")
    assert rows[4].endswith("|  |  |  |  |  |  |  |")  # no FTFL run
    assert "Gym 12.5 % (2 tasks), DMC 107.5 % (2 tasks) (8.6 times the Gym median)" in markdown
    assert "lower with FTFL on 2 of 2: Hopper-v5 (20.0 -> 10.0 %), dmc:hopper-hop (150.0 -> 40.0 %)." in markdown
    assert "secondary summary" in markdown and "(model_error_mbpo_atlas.png)" in markdown
    # issue 25 item 9: where the metric is defined, the report says what the first recent error also measures
    assert "from random-action data to the policy's" in markdown and "**pooled**" in markdown


def event_file(root, experiment, task, seed) -> "Path":
    return next((root / experiment / task.replace(":", "_") / f"seed_{seed}").glob("*/events.out.tfevents.*"))


def record_offsets(path) -> list[int]:
    records, damage = report.read_records(path.read_bytes())
    assert not damage
    return [offset for offset, _ in records]


def test_unreadable_runs_are_listed_and_counted(tmp_path):
    """Issue 25 item 1: finished.json without an event file, and an event file cut at its head."""
    evals = {0: 10.0, 100: 500.0, 200: 900.0}
    for seed in (1, 2, 3, 4):
        write_run(tmp_path, "sac", "Hopper-v5", seed, {s: v + seed for s, v in evals.items()}, finished=200)
    for path in event_file(tmp_path, "sac", "Hopper-v5", 3).parent.iterdir():  # seed 3: only its finished.json is left
        path.unlink()
    head_cut = event_file(tmp_path, "sac", "Hopper-v5", 4)
    data = head_cut.read_bytes()
    head_cut.write_bytes(data[record_offsets(head_cut)[2] + 5:])  # the first records and part of the third gone
    runs = runs_of(tmp_path).set_index("seed")
    assert runs.loc[3, ["state", "used", "note"]].tolist() == ["unreadable", False, "no readable record; no event file"]
    assert runs.loc[4, "state"] == "finished" and "damaged bytes" in runs.loc[4, "note"]
    assert not runs.loc[4, "used"] and "no step-0 evaluation" in runs.loc[4, "note"], runs.loc[4, "note"]  # cut off
    table = report.improvement(runs.reset_index()).set_index("task")
    assert table.loc["Hopper-v5", ["runs", "seeds"]].tolist() == [4, 2]  # seeds 1 and 2
    markdown = render(tmp_path, tmp_path / "report")
    assert "| Hopper-v5 | " in markdown and "used of 4; 1 unreadable |" in markdown
    assert "| sac | Hopper-v5 | 3 | unreadable | 200 (its finished.json) | none | 200 | no | no readable record; no event file |" in markdown


def test_damaged_event_files_are_read_past_and_named(tmp_path):
    """Issue 25 item 2: a tail cut inside the last record, and a damaged record mid-file."""
    evals = {0: 10.0, 100: 500.0, 200: 900.0, 300: 950.0}
    for seed in (1, 2):
        write_run(tmp_path, "sac", "Hopper-v5", seed, evals, {"diagnostics/q_estimate": {s: 1.0 for s in evals}},
                  finished=300)
    tail = event_file(tmp_path, "sac", "Hopper-v5", 1)
    tail.write_bytes(tail.read_bytes()[:-7])  # the last record (step 300's q estimate) cut off
    middle = event_file(tmp_path, "sac", "Hopper-v5", 2)
    data = bytearray(middle.read_bytes())
    offsets = record_offsets(middle)
    data[offsets[4] + 14] ^= 0xFF  # a byte inside the 5th record's data: its CRC fails
    middle.write_bytes(bytes(data))
    df, markers = report.read_sweep(tmp_path)
    values = df.groupby(["seed", "tag"]).step.apply(list)
    assert values[1, "eval/return"] == [0, 100, 200, 300]  # everything before the cut
    assert values[1, "diagnostics/q_estimate"] == [0, 100, 200]
    # written tag by tag: the q estimate at 200 is the last record before the cut
    assert "ends early, in a cut-off record (the last scalar read before it is at step 200)" in markers[
        "sac/Hopper-v5/seed_1"].problems[0]
    assert len(values[2, "eval/return"]) + len(values[2, "diagnostics/q_estimate"]) == 7  # one record lost, not the rest
    assert "damaged bytes at byte" in markers["sac/Hopper-v5/seed_2"].problems[0]
    runs = report.run_table(report.with_experiment(df), markers).set_index("seed")
    assert runs.state.tolist() == ["finished", "finished"]  # not "unfinished": its finished.json stands
    assert all(runs.note.str.contains("events.out.tfevents"))


def test_the_steps_of_each_run_come_from_its_own_record_or_the_protocol(tmp_path):
    """Issue 25 item 4: per experiment budgets (sac 300, mbpo 200 on one suite), a run without a step-0 evaluation, a
    stray finished.json, and the protocol's steps when given."""
    for seed in (1, 2):
        write_run(tmp_path, "sac", "dmc:cheetah-run", seed, {0: 5.0, 100: 50.0, 200: 150.0, 300: 250.0 + seed}, finished=300)
        write_run(tmp_path, "mbpo", "dmc:cheetah-run", seed, {0: 5.0, 100: 10.0, 200: 12.0 + seed}, finished=200)
    write_run(tmp_path, "mbpo", "dmc:cheetah-run", 3, {100: 10.0, 200: 15.0}, finished=200)  # no step-0 evaluation
    write_run(tmp_path, "sac", "dmc:cheetah-run", 3, {0: 5.0, 100: 50.0, 200: 150.0, 300: 260.0}, finished=900)  # stray
    runs = runs_of(tmp_path).set_index(["experiment", "seed"])
    assert runs.loc["mbpo", "final_step"].tolist() == [200, 200, 200]
    assert runs.loc["mbpo", "state"].tolist() == ["finished"] * 3  # the old report: unfinished (the suite's 300)
    assert runs.loc[("mbpo", 3), "note"] == "no step-0 evaluation (no random-initialization return)"
    assert runs.loc["sac", "final_step"].tolist() == [300, 300, 300] and runs.loc["sac", "used"].all()
    assert runs.loc[("sac", 3), ["steps", "rule"]].tolist() == [900, "its finished.json"]
    # the runs' stdout.log records the command the sweep ran: it wins over finished.json
    (tmp_path / "sac" / "dmc_cheetah-run" / "seed_3" / "stdout.log").write_text(
        "# 2026-01-01 00:00:00 python sac.py --env dmc:cheetah-run --seed 3 --total-timesteps 300 --log-dir x\n")
    assert runs_of(tmp_path).set_index(["experiment", "seed"]).loc[("sac", 3), ["steps", "rule"]].tolist() == [
        300, "its stdout.log's last command"]
    # a protocol that asks more of mbpo than it ran: unfinished, with the rule named
    df, markers = report.read_sweep(tmp_path, planned={("mbpo", "dmc:cheetah-run"): 300})
    runs = report.run_table(report.with_experiment(df), markers).set_index(["experiment", "seed"])
    assert runs.loc["mbpo", "state"].tolist() == ["unfinished"] * 3
    assert runs.loc[("mbpo", 1), "note"].startswith("unfinished at step 200 of 300 (steps from the protocol")


def test_aggregates_compare_each_pair_on_what_it_shares(tmp_path):
    """Issue 25 item 5: sac on three tasks keeps all three; mbpo > sac covers the one task and the seeds both have."""
    for task, gain in (("dmc:cheetah-run", 200), ("dmc:walker-run", 300), ("dmc:reacher-hard", 400)):
        for seed in (1, 2, 3):
            write_run(tmp_path, "sac", task, seed, {0: 10.0, 100: gain / 2 + seed, 200: gain + seed}, finished=200)
    for seed in (1, 2):
        write_run(tmp_path, "mbpo", "dmc:cheetah-run", seed, {0: 10.0, 100: 20.0 + seed}, finished=100)
    runs = runs_of(tmp_path)
    matrices, left_out = report.normalized_finals(runs, "dmc")
    assert matrices["sac"][0] == ["dmc:cheetah-run", "dmc:reacher-hard", "dmc:walker-run"] and not left_out
    pairs = report.baseline_pairs(report.with_experiment(report.read_sweep(tmp_path)[0]), runs, "dmc")
    x, y, tasks, n = pairs["mbpo > sac"]
    assert tasks == ["dmc:cheetah-run"] and n == 2
    assert y[:, 0] == pytest.approx((np.array([101, 102]) - 10) / 990)  # sac at mbpo's final step 100, seeds 1 and 2
    markdown = render(tmp_path, tmp_path / "report")
    assert "- sac: 3 tasks (dmc:cheetah-run at 200, dmc:reacher-hard at 200, dmc:walker-run at 200), 3 seeds per task" in markdown
    assert "- mbpo > sac: 1 task (dmc:cheetah-run), 2 seeds per task, paired by seed" in markdown


def test_each_experiment_meets_its_baseline_per_task_with_an_effect(tmp_path):
    """Issue 25 item 7: paired by seed where the seeds match, else Welch, at the experiment's final step."""
    sac = {1: 300.0, 2: 340.0, 3: 320.0}
    mbpo = {1: 20.0, 2: 25.0, 3: 22.0}
    for seed in (1, 2, 3):
        write_run(tmp_path, "sac", "dmc:walker-run", seed, {0: 10.0, 100: sac[seed], 200: 600.0}, finished=200)
        write_run(tmp_path, "mbpo", "dmc:walker-run", seed, {0: 10.0, 100: mbpo[seed]}, finished=100)
    write_run(tmp_path, "mbpo", "Hopper-v5", 1, {0: 10.0, 100: 900.0}, finished=100)
    for seed in (1, 2):
        write_run(tmp_path, "mbpo", "Hopper-v5", seed + 1, {0: 10.0, 100: 800.0 + 50 * seed}, finished=100)
        write_run(tmp_path, "sac", "Hopper-v5", seed + 3, {0: 10.0, 100: 100.0 * seed}, finished=100)
    # the evidence sweep's sac_rr20 against sac at 20k: one-sided p 0.043, two-sided 0.086, a CI across 0
    for seed, x, y in ((1, 117.1, 16.4), (2, 100.7, 24.1)):
        write_run(tmp_path, "mbpo", "dmc:cheetah-run", seed, {0: 10.0, 100: x}, finished=100)
        write_run(tmp_path, "sac", "dmc:cheetah-run", seed, {0: 10.0, 100: y}, finished=100)
    df, markers = report.read_sweep(tmp_path)
    df = report.with_experiment(df)
    table = report.versus_baseline(df, report.run_table(df, markers), steps=[100]).set_index(["task", "kind"])
    walker = table.loc[("dmc:walker-run", "final")]
    assert walker.test == "paired" and walker.step == 100
    assert walker.p == pytest.approx(stats.ttest_rel(list(mbpo.values()), list(sac.values())).pvalue)
    assert walker.high < 0
    assert walker.difference == pytest.approx(-(300 + 340 + 320 - 67) / 3)
    assert walker.verdict == "worse" and walker.effect == pytest.approx(walker.difference / 990)
    hopper = table.loc[("Hopper-v5", "final")]
    assert hopper.test == "Welch" and hopper.verdict == "better"
    assert hopper.p == pytest.approx(stats.ttest_ind([900, 850, 900], [100, 200], equal_var=False).pvalue)
    assert hopper.low > 0
    cheetah = table.loc[("dmc:cheetah-run", "final")]  # the verdict agrees with the CI it prints beside it
    assert cheetah.p == pytest.approx(stats.ttest_rel([117.1, 100.7], [16.4, 24.1]).pvalue) and 0.05 < cheetah.p < 0.1
    assert cheetah.low < 0 < cheetah.high and cheetah.effect >= 0.05 and cheetah.verdict == "not shown"
    markdown = render(tmp_path, tmp_path / "report", steps=[100])
    assert markdown.count("| dmc:walker-run | 100 | mbpo vs sac | 20.0, 25.0, 22.0 (mean 22.3) | 300.0, 340.0, 320.0 (mean 320.0) |") == 1  # --steps 100 is F: one row


def test_model_error_numbers_say_how_many_seeds_they_rest_on(tmp_path):
    """Issue 25 item 3: a NaN and a missing recent error on one seed are not averaged away silently."""
    for seed in (1, 2):
        tags = model_errors(60.0)
        if seed == 2:
            tags[report.RECENT] = {10000: math.nan}  # NaN at 10000, missing at 15000
        write_run(tmp_path, "mbpo_atlas", "dmc:walker-run", seed, {0: 1.0, 15000: 2.0}, tags, finished=15000)
    markdown = render(tmp_path, tmp_path / "report")
    row = next(line for line in markdown.splitlines() if line.startswith("| DMC | dmc:walker-run |"))
    assert "- / 61.0 (1 of 2) / 60.0 (1 of 2)" in row


def test_a_model_with_no_recent_error_gets_no_empty_figure(tmp_path):
    """A perfect model logs its train and reward errors but no held-out one: the section says so and draws nothing."""
    tags = model_errors(0.0)
    del tags[report.RECENT]
    write_run(tmp_path, "mbpo_perfect_model", "dmc:cheetah-run", 1, {0: 1.0, 15000: 2.0}, tags, finished=15000)
    markdown = render(tmp_path, tmp_path / "report")
    assert "Median recent error at the last retrain (step 15000): none logged, so no figure." in markdown
    assert "model_error_mbpo_perfect_model.png" not in markdown
    assert not (tmp_path / "report" / "model_error_mbpo_perfect_model.png").exists()


def test_the_atlas_headline_is_computed_with_its_uncertainty(tmp_path):
    """Issue 25 item 10: the DMC - Gym median difference with a bootstrap interval and Mann-Whitney's p; no verdicts on
    returns for a protocol that does not measure them; FTFL runs with the same returns are said to be the same data."""
    gym, dmc = {"Hopper-v5": 90.0, "Walker2d-v5": 80.0, "HalfCheetah-v5": 20.0}, {
        "dmc:walker-run": 60.0, "dmc:cheetah-run": 30.0, "dmc:hopper-hop": 85.0}
    for task, value in {**gym, **dmc}.items():
        write_run(tmp_path, "mbpo_atlas", task, 1, {0: 1.0, 15000: 2.0}, model_errors(value), finished=15000)
        write_run(tmp_path, "mbpo_atlas_ftfl", task, 1, {0: 1.0, 15000: 2.0}, model_errors(value / 2), finished=15000)
    markdown = render(tmp_path, tmp_path / "report", returns=False)
    difference, low, high, p = report.median_difference(np.array(list(dmc.values())), np.array(list(gym.values())))
    assert difference == 60 - 80 and low < 0 < high
    assert p == pytest.approx(stats.mannwhitneyu(list(dmc.values()), list(gym.values())).pvalue)
    assert (f"DMC minus Gym median recent error: -20.0 points, 95 % bootstrap interval [{low:+.1f}, {high:+.1f}]"
            in markdown) and "**not shown either way at this budget**" in markdown
    assert "## Improvement beyond" not in markdown and "## Aggregate" not in markdown
    assert "mbpo_atlas_ftfl and mbpo_atlas evaluated identically on all 6 runs (equal to the bit)" in markdown


def write_attempt(run_dir, started: int, evals: dict[int, float], purge_step: int | None = None) -> "Path":
    """One attempt's event file in `run_dir`, named as the scripts' SummaryWriter names it when started at `started`."""
    writer = SummaryWriter(str(run_dir / "attempt"), purge_step=purge_step)
    for step, value in evals.items():
        writer.add_scalar("eval/return", value, step)
    writer.close()
    path = next((run_dir / "attempt").glob("events.out.tfevents.*")).rename(run_dir / f"events.out.tfevents.{started}.host.1.0")
    (run_dir / "attempt").rmdir()
    return path


def test_a_resumed_run_is_read_in_name_order_whatever_its_files_times(tmp_path):
    """Issue 34 item 1: after a copy that does not keep times the stopped attempt's file is the newer one; the resume's
    purge still drops what the stopped attempt logged after the checkpoint, and a resume without a purge keeps each
    step once, with the later value, and says so."""
    for seed, purge_step in ((1, 1000), (2, None)):
        run_dir = tmp_path / "sac" / "Hopper-v5" / f"seed_{seed}" / f"Hopper-v5__sac__{seed}__1"
        run_dir.mkdir(parents=True)
        stopped = write_attempt(run_dir, 1700000000, {0: 10.0, 500: 100.0, 1000: 150.0, 1500: 178.0})
        write_attempt(run_dir, 1700000100, {1000: 160.0, 1500: 278.0, 2000: 300.0}, purge_step)
        os.utime(stopped, (2e9, 2e9))  # modified after the resume
    df, markers = report.read_sweep(tmp_path)
    for seed in (1, 2):
        evals = df[df.seed == seed]
        assert dict(zip(evals.step, evals.value)) == {0: 10.0, 500: 100.0, 1000: 160.0, 1500: 278.0, 2000: 300.0}
        assert len(evals) == 5  # each step once in runs.csv
    assert markers["sac/Hopper-v5/seed_1"].problems == ()
    assert markers["sac/Hopper-v5/seed_2"].problems == (
        "events.out.tfevents.1700000100.host.1.0 logs steps 1000-1500 again without a purge (2 steps twice); the "
        "later values kept, as TensorBoard shows them",)
    runs = report.run_table(report.with_experiment(df), markers).set_index("seed")
    assert "again without a purge" in runs.loc[2, "note"]


def gauge_sweep(root):
    """sac and mbpo on Hopper-v5, 3 seeds, evaluated at 0, 100, 200; Q - MC is +5 on every seed; mbpo's seed 3 has no
    Q estimate at 200."""
    for experiment in ("sac", "mbpo"):
        for seed in (1, 2, 3):
            q = {step: 10.0 * seed + step + 5 for step in (100, 200) if (experiment, seed, step) != ("mbpo", 3, 200)}
            mc = {step: 10.0 * seed + step for step in (100, 200)}
            write_run(root, experiment, "Hopper-v5", seed, {0: 1.0, 100: 50.0 * seed, 200: 100.0 * seed},
                      {"diagnostics/q_estimate": q, "diagnostics/mc_return": mc}, finished=200)


def test_the_critic_gauge_is_the_mean_of_each_seeds_own_difference(tmp_path):
    """Issue 34 item 2: where a seed lacks the Q estimate, Q, MC and Q - MC rest on the seeds with both, and say so."""
    gauge_sweep(tmp_path)
    markdown = render(tmp_path, tmp_path / "report", steps=[100, 200])
    assert "| Hopper-v5 | mbpo | 200 (2 of 3 seeds) | 220.0 | 215.0 | +5.0 |" in markdown  # seeds 1 and 2
    assert "| Hopper-v5 | mbpo | 100 | 125.0 | 120.0 | +5.0 |" in markdown


def test_a_step_no_run_reached_gets_a_row_that_says_so(tmp_path):
    """Issue 34 item 3: --steps 5000, past every run's last evaluation (200)."""
    gauge_sweep(tmp_path)
    markdown = render(tmp_path, tmp_path / "report", steps=[100, 5000])
    assert ("| Hopper-v5 | 5000 | mbpo vs sac | not reached (last evaluation: 200) | not reached (last evaluation: 200) "
            "| - | - | -, n 0 / 0 | - | not reached |") in markdown
    assert "| Hopper-v5 | sac | 5000 | not reached (last evaluation: 200) |  |  |" in markdown


@pytest.mark.parametrize("rows, fragment", [
    (["sac,dmc:cheetah-run,ten,213.5,118.5,265.8,,a"], "step 'ten' on line 2 is not a whole number >= 0"),
    (["sac,dmc:cheetah-run,,213.5,118.5,265.8,,a"], "step '' on line 2 is not a whole number >= 0"),
    (["sac,dmc:cheetah-run,100000,213.5,,,,a", "sac,dmc:walker-run,100000,n/a,,,,a"],
     "value 'n/a' on line 3 is not a finite number"),
    ([], "has no rows, only its header"),
])
def test_published_numbers_are_checked_like_every_other_input(rows, fragment, tmp_path):
    """Issue 34 item 4: a non-numeric or empty step, a value that is not a number, a file with only its header."""
    published = tmp_path / "published.csv"
    published.write_text("\n".join(["experiment,task,step,value,low,high,spread_kind,source", *rows]) + "\n")
    with pytest.raises(SystemExit) as exit:  # not a ValueError's traceback, not a report
        report.main(["--from-csv", str(ROOT / "benchmark/results/quick/runs.csv"), "--out", str(tmp_path / "out"),
                     "--published", str(published)])
    message = str(exit.value.code)
    assert message.startswith("error: --published ") and "\n" not in message and fragment in message


def test_a_seed_with_two_run_directories_reads_the_newest_and_names_the_other(tmp_path):
    """Issue 34 item 5: the older run directory (by its name's time) is the newer on disk; it is named, not read."""
    write_run(tmp_path, "sac", "dmc:walker-run", 1, {0: 10.0, 1000: 20.0}, finished=1000, started=1700000100)
    write_run(tmp_path, "sac", "dmc:walker-run", 1, {0: 500.0, 1000: 900.0}, started=1700000000)
    older = tmp_path / "sac" / "dmc_walker-run" / "seed_1" / "dmc_walker-run__sac__1__1700000000"
    os.utime(older, (2e9, 2e9))
    runs = runs_of(tmp_path)
    assert runs[["initial", "final"]].values.tolist() == [[10.0, 20.0]]
    assert runs.note[0] == ("2 run directories of seed 1: read the newest by the name's time, "
                            "dmc_walker-run__sac__1__1700000100; not read: dmc_walker-run__sac__1__1700000000")


def test_a_literal_log_dir_of_two_seeds_is_read_as_the_two_seeds_its_run_directories_name(tmp_path):
    """Issue 44 item 1: `sac.py --num-seeds 2 --log-dir <sweep>/sac/<task>/seed_1` puts both seeds' run directories,
    started at the same second, into seed_1; each is read as the seed its name says, none as an older attempt."""
    for seed, final in ((1, 324.0), (2, 328.0)):
        write_run(tmp_path, "sac", "dmc:walker-run", seed, {0: 10.0, 3000: final}, finished=3000, started=1700000000)
    cell = tmp_path / "sac" / "dmc_walker-run"
    (cell / "seed_2" / "dmc_walker-run__sac__2__1700000000").rename(cell / "seed_1" / "dmc_walker-run__sac__2__1700000000")
    shutil.rmtree(cell / "seed_2")
    df, markers = report.read_sweep(tmp_path)
    assert df.groupby("seed").value.max().to_dict() == {1: 324.0, 2: 328.0}
    runs = report.run_table(report.with_experiment(df), markers).set_index("seed")
    assert runs.final.to_dict() == {1: 324.0, 2: 328.0} and runs.state.tolist() == ["finished", "finished"]
    assert runs.note[1] == ""
    assert runs.note[2] == ("its run directory is in seed_1/ (a --num-seeds process given a literal --log-dir), read as "
                            "seed 2 by its name")


def test_planned_runs_without_a_directory_are_absent_and_tasks_counted_from_the_protocol(tmp_path):
    """Issue 34 item 5: --protocol quick plans 18 runs; 2 are here. sac has 2 DMC tasks in it, not the paper's 15."""
    for seed in (1, 2):
        write_run(tmp_path, "sac", "dmc:walker-run", seed, {0: 10.0, 3000: 100.0 + seed}, finished=3000)
    out = tmp_path / "report"
    report.main([str(tmp_path), "--out", str(out), "--protocol", "quick", "--reps", "20"])
    markdown = (out / "report.md").read_text()
    assert markdown.count("| absent |") == 16
    assert ("| mbpo | dmc:cheetah-run | 1 | absent | 3000 (the protocol) | none | - | no | planned by the protocol, "
            "no run | - |") in markdown
    assert "| dmc:walker-run | 0 used of 2; 2 absent | 0 used of 2; 2 absent | 2 used of 2 |" in markdown
    assert "| **improved, k of N** | sac |  | **1 of 1** (protocol: 2 tasks) |" in markdown


def test_two_reports_of_one_sweep_are_identical(tmp_path):
    """Issue 34 item 6: the bootstrap intervals (3 runs per task: shown) come out the same twice, whatever numpy's
    global random state in between."""
    for seed in (1, 2, 3):
        for experiment, gain in (("sac", 100.0), ("mbpo", 300.0)):
            write_run(tmp_path / "runs", experiment, "Hopper-v5", seed, {0: 10.0, 200: gain * seed}, finished=200)
    texts = []
    for out in ("first", "second"):
        report.main([str(tmp_path / "runs"), "--out", str(tmp_path / out), "--reps", "100"])
        texts.append([(tmp_path / out / name).read_bytes() for name in ("report.md", "runs.csv")])
    assert texts[0] == texts[1]
    assert "| sac | 3 | 0.0" in texts[0][0].decode() and "[" in texts[0][0].decode().split("| sac | 3 | ")[1].split("|")[0]


def test_a_protocols_comparisons_pair_experiments_beside_their_baselines(tmp_path):
    """Issue 33: the evidence protocol also sets mbpo and the perfect model against sac_rr20, and the perfect model
    against mbpo, paired by seed; without a protocol only the baselines."""
    for seed in (1, 2):
        for experiment, final in (("sac", 20.0), ("sac_rr20", 100.0), ("mbpo", 300.0), ("mbpo_perfect_model", 400.0)):
            write_run(tmp_path, experiment, "dmc:cheetah-run", seed, {0: 5.0, 30000: final + seed}, finished=30000)
    df, markers = report.read_sweep(tmp_path)
    runs = report.run_table(report.with_experiment(df), markers)
    compared = report.versus_baseline(report.with_experiment(df), runs, pairs=report.PROTOCOLS["evidence"].pairs())
    assert sorted(zip(compared.experiment, compared.baseline)) == [
        ("mbpo", "sac"), ("mbpo", "sac_rr20"), ("mbpo_perfect_model", "mbpo"), ("mbpo_perfect_model", "sac"),
        ("mbpo_perfect_model", "sac_rr20"), ("sac_rr20", "sac")]
    assert (compared.test == "paired").all() and compared.set_index(["experiment", "baseline"]).loc[
        ("mbpo_perfect_model", "mbpo"), "difference"] == 100
    plain = report.versus_baseline(report.with_experiment(df), runs)
    assert set(plain.baseline) == {"sac"}


def test_an_irregular_evaluation_grid_is_named_not_taken_for_a_step_not_reached(tmp_path):
    """Issue 44 item 2: mbpo's seed 3 was resumed with another --eval-interval (0-1500 every 500, then 2250, 3000); sac
    evaluated every 500 to 3000, past 2250 but not at it."""
    regular = list(range(0, 3001, 500))
    for seed in (1, 2, 3):
        mbpo_steps = regular if seed < 3 else [0, 500, 1000, 1500, 2250, 3000]
        for experiment, steps in (("sac", regular), ("mbpo", mbpo_steps)):
            gauge = {tag: {s: 1.0 for s in steps} for tag in (report.Q_TAG, report.MC_TAG)}
            write_run(tmp_path, experiment, "Hopper-v5", seed, {s: s / 10 + seed for s in steps}, gauge, finished=3000)
    markdown = render(tmp_path, tmp_path / "report", steps=[2000, 2250])
    assert ("| Hopper-v5 | 2250 | mbpo vs sac | 228.0 (mean 228.0); seed 1 not evaluated at 2250 (evaluated past it, to "
            "3000); seed 2 not evaluated at 2250 (evaluated past it, to 3000) | not evaluated at 2250 (evaluated past "
            "it, to 3000) | - | - | -, n 1 / 0 | - | not evaluated |") in markdown
    assert ("| Hopper-v5 | 2000 | mbpo vs sac | 201.0, 202.0 (mean 201.5); seed 3 not evaluated at 2000 (evaluated past "
            "it, to 3000) | 201.0, 202.0, 203.0 (mean 202.0) |") in markdown
    assert "| Hopper-v5 | sac | 2250 | not evaluated at 2250 (evaluated past it, to 3000) |  |  |" in markdown
    assert "| mbpo | Hopper-v5 | 3 | finished | 3000 (its finished.json) | 3000 (evaluations every 500 to 1500, then " \
           "2250, 3000) | 3000 | yes |" in markdown
    assert "| mbpo | Hopper-v5 | 1 | finished | 3000 (its finished.json) | 3000 | 3000 | yes |" in markdown


def test_the_published_verdict_places_each_seed_where_they_disagree_with_the_mean(tmp_path):
    """Issue 44 item 4: cheetah-run at 100k, mean 283.5 within TD-MPC2's [236.9, 362.4], seed 1 below and seed 2 above."""
    for seed, final in ((1, 190.0), (2, 376.9)):
        write_run(tmp_path, "sac", "dmc:cheetah-run", seed, {0: 5.0, 100000: final}, finished=100000)
    published = pd.DataFrame([{"experiment": "sac", "task": "dmc:cheetah-run", "step": 100000, "value": v, "low": lo,
                               "high": hi, "spread_kind": "min-max", "source": "s"}
                              for v, lo, hi in ((310.1, 236.9, 362.4), (213.5, 118.5, 400.0))])
    df = report.with_experiment(report.read_sweep(tmp_path)[0])
    rows = [line for line in "\n".join(report.published_section(df, published)).splitlines()
            if line.startswith("| dmc:cheetah-run")]
    assert "| **within the published spread** (by seed: below, above) |" in rows[0]
    assert rows[1].endswith("| **within the published spread** | s |")  # both seeds within too: nothing to add
