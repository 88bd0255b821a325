"""benchmark/sweep.py: the protocol's run count, skip/resume decisions and a real two-run sweep on local Ray (the report's
tests are in test_report.py)."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT, assert_one_line_error

sys.path.insert(0, str(ROOT / "benchmark"))

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

