"""benchmark/sweep.py and benchmark/report.py: the protocol's run count, skip/resume decisions, a real two-run sweep on
local Ray, and the report on event files with known values."""
import csv
import json
import subprocess
import sys

import pytest
from torch.utils.tensorboard import SummaryWriter

from conftest import ROOT, assert_one_line_error

sys.path.insert(0, str(ROOT / "benchmark"))
import report  # noqa: E402

TINY = "--learning-starts 100 --eval-interval 100 --eval-episodes 1"


def benchmark(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmark" / script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_dry_run_lists_the_papers_runs():
    result = benchmark("sweep.py", "--dry-run")
    assert result.returncode == 0, result.stderr
    # 6 Gym + 15 DMC tasks x 6 seeds for sac, mbpo, mbpo without rollouts, td3, alm; DMC only for alm without
    # rollouts, mbpo with resets, mbpo with LayerNorm, sac at replay ratio 20, mbpo with the perfect model
    expected = (6 + 15) * 6 * 5 + 15 * 6 * 5
    lines = result.stdout.splitlines()
    assert lines[-1].startswith(f"{expected} runs"), lines[-1]
    commands = lines[:-1]
    assert len(commands) == expected
    assert sum("--total-timesteps 300000" in c for c in commands) == 6 * 6 * 5
    assert sum(" mbpo_perfect_model.py --env dmc:" in c for c in commands) == 15 * 6
    assert sum("mbpo.py" in c and "--reset-interval 128000" in c for c in commands) == 15 * 6
    assert all(c.startswith("start ") for c in commands)


def test_every_experiment_flag_is_a_field_of_its_script():
    import sweep

    for protocol in sweep.PROTOCOLS.values():
        for e in protocol.experiments:
            source = (ROOT / f"{e.algorithm}.py").read_text()
            for flag in (*protocol.flags, *e.flags):
                if flag.startswith("--"):
                    field = flag[2:].removeprefix("no-").replace("-", "_")
                    assert f"\n    {field}: " in source, f"{e.name}: {e.algorithm}.py has no {flag}"


def test_dry_run_resumes_interrupted_runs_and_skips_finished(tmp_path):
    args = ("--experiments", "sac", "--tasks", "Hopper-v5", "--seeds", "1", "2", "3", "--root", str(tmp_path), "--dry-run")
    interrupted = tmp_path / "sac" / "Hopper-v5" / "seed_1" / "Hopper-v5__sac__1__100"
    interrupted.mkdir(parents=True)
    (interrupted / "checkpoint.pt").write_bytes(b"")
    finished = tmp_path / "sac" / "Hopper-v5" / "seed_2"
    finished.mkdir(parents=True)
    (finished / "finished.json").write_text(json.dumps({"total_timesteps": 300_000}))
    killed_early = tmp_path / "sac" / "Hopper-v5" / "seed_3" / "Hopper-v5__sac__3__100"  # no checkpoint yet
    killed_early.mkdir(parents=True)
    result = benchmark("sweep.py", *args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"resume   python sac.py --resume {interrupted} --total-timesteps 300000"
    assert lines[1].startswith("finished python sac.py --env Hopper-v5 --seed 2 ")
    assert lines[2].startswith("start    python sac.py --env Hopper-v5 --seed 3 ")
    assert lines[3].startswith("3 runs (1 finished)")
    # a finished run asked for more steps is unfinished again
    result = benchmark("sweep.py", *args, "--total-timesteps", "400000")
    assert result.stdout.splitlines()[1].startswith("start    python sac.py --env Hopper-v5 --seed 2 ")


def test_quick_dry_run_fits_in_two_hours():
    result = benchmark("sweep.py", "--quick", "--dry-run", "--num-cpus", "2")
    assert result.returncode == 0, result.stderr
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith("18 runs"), summary
    hours = float(summary.split("wall time on 2 parallel run(s) ")[1].split(" h")[0])
    assert 1.0 <= hours <= 2.0, summary


def test_sweep_runs_on_local_ray_then_skips_finished_runs(tmp_path):
    args = ("--experiments", "sac", "--tasks", "InvertedPendulum-v5", "--seeds", "1", "2", "--total-timesteps", "300",
            "--root", str(tmp_path), "--num-cpus", "2", f"--extra-flags={TINY}")
    result = benchmark("sweep.py", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    for seed in (1, 2):
        seed_dir = tmp_path / "sac" / "InvertedPendulum-v5" / f"seed_{seed}"
        assert json.loads((seed_dir / "finished.json").read_text())["total_timesteps"] == 300
        assert "step 300/300" in (seed_dir / "stdout.log").read_text()
        assert len(list(seed_dir.glob("*/events.out.tfevents.*"))) == 1
    again = benchmark("sweep.py", *args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["2 runs: 2 finished (skipped), 0 to resume, 0 to start"]


@pytest.mark.parametrize("args, fragment", [
    (("--experiments", "ppo"), "--experiments: unknown ['ppo']"),
    (("--tasks", "Hopper-v4"), "--tasks: unknown ['Hopper-v4']"),
    (("--cpus-per-run", "0"), "--cpus-per-run must be > 0"),
])
def test_sweep_bad_input_is_one_line(args, fragment):
    assert_one_line_error(benchmark("sweep.py", *args, "--dry-run"), fragment)


def test_sweep_unreachable_cluster_is_one_line(tmp_path):
    result = benchmark("sweep.py", "--address", "127.0.0.1:1", "--experiments", "sac", "--tasks", "Hopper-v5",
                       "--seeds", "1", "--root", str(tmp_path))
    assert_one_line_error(result, "no Ray cluster answers at --address 127.0.0.1:1")


def write_run(root, experiment, task, seed, evals: dict[int, float], extra: dict[str, dict[int, float]] = {}):
    """A run directory in the sweep's layout with `eval/return` (and `extra` tags) at the given steps."""
    script = experiment.split("_no_")[0]
    run_dir = root / experiment / task.replace(":", "_") / f"seed_{seed}" / f"{task.replace(':', '_')}__{script}__{seed}__1"
    writer = SummaryWriter(str(run_dir))
    for tag, values in {"eval/return": evals, **extra}.items():
        for step, value in values.items():
            writer.add_scalar(tag, value, step)
    writer.close()


def test_report_reads_known_runs_into_csv_verdicts_and_counts(tmp_path):
    # dmc:walker-run: sac clearly improves on 3 seeds, mbpo does not; mbpo without rollouts has a single seed
    for seed, (start, end) in enumerate([(20, 300), (25, 340), (22, 310)], start=1):
        write_run(tmp_path, "sac", "dmc:walker-run", seed, {0: start, 100: 100, 200: end})
        write_run(tmp_path, "mbpo", "dmc:walker-run", seed, {0: start, 100: start, 200: start + (seed - 2) * 5},
                  {"model/error_pct": {100: 150.0, 200: 120.0}})
    write_run(tmp_path, "mbpo_no_rollouts", "dmc:walker-run", 1, {0: 20, 200: 400})
    # Hopper-v5: both improve; sac's seed 3 stopped early and is left out of the final comparison
    for seed in (1, 2, 3):
        write_run(tmp_path, "sac", "Hopper-v5", seed, {0: 10 + seed, 200: 1000 + 50 * seed} if seed < 3 else {0: 13, 100: 5})
        write_run(tmp_path, "mbpo", "Hopper-v5", seed, {0: 10 + seed, 200: 2000 + 100 * seed})
    out = tmp_path / "report"
    result = benchmark("report.py", str(tmp_path), "--out", str(out), "--reps", "200")
    assert result.returncode == 0, result.stderr

    with open(out / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == report.COLUMNS
    assert len(rows) == 9 + 15 + 2 + 6 + 6  # walker-run: sac, mbpo (+ model error), no rollouts; Hopper: sac, mbpo
    assert {"run": "mbpo_no_rollouts/dmc_walker-run/seed_1/dmc_walker-run__mbpo__1__1", "algorithm": "mbpo",
            "variant": "no_rollouts", "task": "dmc:walker-run", "seed": "1", "step": "200", "tag": "eval/return",
            "value": "400.0"} in rows

    df = report.with_experiment(report.read_runs(tmp_path))
    table = report.improvement(df).set_index(["experiment", "task"])
    assert table.loc[("sac", "dmc:walker-run"), "improved"] is True
    assert table.loc[("sac", "dmc:walker-run"), "final"] == pytest.approx(950 / 3)
    assert table.loc[("mbpo", "dmc:walker-run"), "improved"] is False  # differences -5, 0, +5
    assert table.loc[("mbpo_no_rollouts", "dmc:walker-run"), "improved"] is None  # one seed: no verdict
    assert table.loc[("sac", "Hopper-v5"), ["seeds", "runs"]].tolist() == [2, 3]
    assert report.improvement_counts(report.improvement(df)) == {
        ("dmc", "mbpo"): (0, 1), ("dmc", "sac"): (1, 1), ("gym", "mbpo"): (1, 1), ("gym", "sac"): (1, 1)}

    markdown = (out / "report.md").read_text()
    assert "**1 of 1** (protocol: 15 tasks)" in markdown
    assert "| mbpo > sac |" in markdown  # probability of improvement on both suites
    for figure in ("return_dmc.png", "return_gym.png", "error_pct_dmc.png", "aggregate_dmc.png", "aggregate_gym.png"):
        assert (out / figure).stat().st_size > 1000, figure
        assert f"({figure})" in markdown
    assert "No run logged `diagnostics/q_estimate`." in markdown


def test_report_of_an_empty_root_is_one_line(tmp_path):
    assert_one_line_error(benchmark("report.py", str(tmp_path)), "no runs under")
