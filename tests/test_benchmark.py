"""benchmark/sweep.py: the protocol's run count, skip/resume decisions, a real two-run sweep on local Ray, a run locked
by another sweep, and a sweep killed mid-run, then run again (the report's tests are in test_report.py)."""
import fcntl
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, assert_one_line_error, benchmark, read_scalars

sys.path.insert(0, str(ROOT / "benchmark"))
import protocol  # noqa: E402
import sweep  # noqa: E402

TINY = "--learning-starts 100 --eval-interval 100 --eval-episodes 1"


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


def test_evidence_protocol_budgets_per_experiment(tmp_path):
    """SAC runs 100k on DMC, every MBPO-side experiment 30k, Hopper-v5 30k; both seeds on every task."""
    runs = sweep.plan(protocol.EVIDENCE, tmp_path)
    steps = {(r.experiment.name, r.task, r.seed): r.total_timesteps for r in runs}
    assert len(runs) == 16
    for seed in (1, 2):
        for task in ("dmc:cheetah-run", "dmc:walker-run", "dmc:reacher-hard"):
            assert steps["sac", task, seed] == 100_000
        for name in ("mbpo", "sac_rr20", "mbpo_perfect_model"):
            assert steps[name, "dmc:cheetah-run", seed] == 30_000
        assert steps["sac", "Hopper-v5", seed] == steps["mbpo", "Hopper-v5", seed] == 30_000
    assert sweep.plan(protocol.EVIDENCE, tmp_path, total_timesteps=5)[0].total_timesteps == 5  # the flag still wins


def test_the_protocols_are_data_the_report_reads_without_the_runner():
    source = (ROOT / "benchmark" / "report.py").read_text()
    assert "import sweep" not in source and "from sweep" not in source  # the report does not load Ray's runner
    budgets = protocol.EVIDENCE.budgets()
    assert budgets["sac", "dmc:walker-run"] == 100_000 and budgets["mbpo_perfect_model", "dmc:cheetah-run"] == 30_000
    assert ("mbpo", "dmc:walker-run") not in budgets and len(budgets) == 8  # 16 runs over 2 seeds
    assert not protocol.ATLAS.returns and protocol.PAPER.returns


def test_every_experiment_flag_is_a_field_of_its_script():
    for each in protocol.PROTOCOLS.values():
        for e in each.experiments:
            source = (ROOT / f"{e.algorithm}.py").read_text()
            for flag in (*each.flags, *e.flags):
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


def test_dry_run_takes_a_truncated_finished_marker_for_none(tmp_path):
    # what a sweep killed while writing finished.json left behind before it wrote the marker atomically
    interrupted = tmp_path / "sac" / "Hopper-v5" / "seed_1" / "Hopper-v5__sac__1__100"
    interrupted.mkdir(parents=True)
    (interrupted / "checkpoint.pt").write_bytes(b"")
    (tmp_path / "sac" / "Hopper-v5" / "seed_2").mkdir(parents=True)
    for seed in (1, 2):
        (tmp_path / "sac" / "Hopper-v5" / f"seed_{seed}" / "finished.json").write_text('{"total_timesteps": 30')
    result = benchmark("sweep.py", "--experiments", "sac", "--tasks", "Hopper-v5", "--seeds", "1", "2",
                       "--root", str(tmp_path), "--dry-run")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"resume   python sac.py --resume {interrupted} --total-timesteps 300000"
    assert lines[1].startswith("start    python sac.py --env Hopper-v5 --seed 2 ")
    assert lines[2].startswith("2 runs (0 finished)")


def test_dry_run_groups_consecutive_seeds_into_one_process_each(tmp_path):
    cell = tmp_path / "sac" / "Hopper-v5"
    (cell / "seed_4").mkdir(parents=True)
    with open(cell / "seed_4" / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another sweep runs seed 4: its process is the one of seeds 3-4
        result = benchmark("sweep.py", "--experiments", "sac", "--tasks", "Hopper-v5", "--seeds", "1", "2", "3", "4", "5",
                           "7", "--seeds-per-run", "2", "--root", str(tmp_path), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"start    python sac.py --env Hopper-v5 --seed 1 --num-seeds 2 --total-timesteps 300000 "
                               f"--log-dir '{cell}/seed_{{seed}}' ") and lines[0].endswith("  # seeds 1-2")
    assert lines[1].startswith("running  python sac.py --env Hopper-v5 --seed 3 --num-seeds 2 ") and lines[1].endswith("# seeds 3-4")
    # 7 is no neighbour of 5: --num-seeds takes a range
    assert lines[2] == f"start    python sac.py --env Hopper-v5 --seed 5 --total-timesteps 300000 --log-dir {cell}/seed_5"
    assert lines[3] == f"start    python sac.py --env Hopper-v5 --seed 7 --total-timesteps 300000 --log-dir {cell}/seed_7"
    assert lines[4].startswith("6 runs (0 finished) in 4 process(es)") and len(lines) == 5


def test_dry_run_resumes_a_process_of_seeds_as_it_was_started(tmp_path):
    """Seeds 1-2 ran in one process (its checkpoint in seed 1's run dir), 3-4 finished in another, 6 alone has a
    checkpoint of its own (a sweep without --seeds-per-run): --seeds-per-run 3 keeps those and groups the rest."""
    cell = tmp_path / "sac" / "Hopper-v5"
    for seed in range(1, 7):
        (cell / f"seed_{seed}").mkdir(parents=True)
    for seeds in ([1, 2], [3, 4]):
        for seed in seeds:
            (cell / f"seed_{seed}" / "process.json").write_text(json.dumps({"seeds": seeds}))
            (cell / f"seed_{seed}" / f"Hopper-v5__sac__{seed}__100").mkdir()
    (cell / "seed_1" / "Hopper-v5__sac__1__100" / "checkpoint.pt").write_bytes(b"")
    for seed in (3, 4):
        (cell / f"seed_{seed}" / "finished.json").write_text(json.dumps({"total_timesteps": 300_000}))
    (cell / "seed_6" / "Hopper-v5__sac__6__100").mkdir()
    (cell / "seed_6" / "Hopper-v5__sac__6__100" / "checkpoint.pt").write_bytes(b"")
    args = ("--experiments", "sac", "--tasks", "Hopper-v5", "--root", str(tmp_path), "--seeds-per-run", "3", "--dry-run")
    result = benchmark("sweep.py", *args, "--seeds", *map(str, range(1, 9)))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"resume   python sac.py --resume {cell}/seed_1/Hopper-v5__sac__1__100 --total-timesteps 300000  # seeds 1-2"
    assert lines[1].startswith("finished python sac.py --env Hopper-v5 --seed 3 --num-seeds 2 ")
    assert lines[2].startswith("start    python sac.py --env Hopper-v5 --seed 5 --total-timesteps 300000 ")  # 6 is taken
    assert lines[3] == f"resume   python sac.py --resume {cell}/seed_6/Hopper-v5__sac__6__100 --total-timesteps 300000"
    assert lines[4].startswith("start    python sac.py --env Hopper-v5 --seed 7 --num-seeds 2 ") and lines[4].endswith("# seeds 7-8")
    assert lines[5].startswith("8 runs (2 finished) in 5 process(es)")
    # seed 2 alone would be a new process while seed 1's checkpoint holds it too
    assert_one_line_error(benchmark("sweep.py", *args, "--seeds", "2"),
                          "seeds 1-2 run in one process (its checkpoint is in")


def test_atlas_dry_run_lists_every_task_and_ftfl_on_the_failing_ones(tmp_path):
    result = benchmark("sweep.py", "--protocol", "atlas", "--dry-run", "--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    runs = [line for line in result.stdout.splitlines() if line.startswith("start")]
    plain = {line.split("/mbpo_atlas/")[1].split("/")[0] for line in runs if "/mbpo_atlas/" in line}
    ftfl = {line.split("/mbpo_atlas_ftfl/")[1].split("/")[0] for line in runs if "/mbpo_atlas_ftfl/" in line}
    assert plain == {protocol.task_dir(task) for task in protocol.GYM + protocol.DMC15}
    assert ftfl == {protocol.task_dir(task) for task in protocol.ATLAS_FAILING} and len(runs) == 21 + 8
    assert all("--normalize-targets --predict-next-state" in line for line in runs if "/mbpo_atlas_ftfl/" in line)


def test_track_gives_every_run_a_wandb_group_of_its_experiment_and_task(tmp_path):
    result = benchmark("sweep.py", "--quick", "--track", "--dry-run", "--root", str(tmp_path))
    runs = [line for line in result.stdout.splitlines() if line.startswith("start")]
    assert len(runs) == 18 and all("--track --wandb-group" in line for line in runs)
    assert any("--wandb-group mbpo_no_rollouts/dmc:walker-run" in line for line in runs)


def test_quick_dry_run_estimates_its_wall_time_from_the_measured_speeds():
    result = benchmark("sweep.py", "--quick", "--dry-run", "--num-cpus", "2")
    assert result.returncode == 0, result.stderr
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith("18 runs"), summary
    hours = float(summary.split("wall time on 2 parallel process(es) ")[1].split(" h")[0])
    assert 1.0 <= hours <= 2.0, summary


def estimated_hours(*args: str) -> tuple[float, float, str]:
    """The CPU and wall hours of a sweep's --dry-run estimate, and its summary line."""
    summary = benchmark("sweep.py", *args, "--dry-run", "--num-cpus", "2").stdout.splitlines()[-1]
    cpu, wall = (float(summary.split(key)[1].split(" h")[0]) for key in ("CPU time ", "parallel process(es) "))
    return cpu, wall, summary


def test_dry_run_estimates_a_process_of_several_seeds_at_their_measured_speed(tmp_path):
    """Issue 44 item 6: 4 sac seeds in one process learn at 1.24 times the seed-steps/s of one (seeds.md), not at 1."""
    args = ("--experiments", "sac", "--tasks", "Hopper-v5", "--seeds", "1", "2", "3", "4", "--root", str(tmp_path))
    alone, packed = estimated_hours(*args)[0], estimated_hours(*args, "--seeds-per-run", "4")[0]
    random_and_evals, learning = 10_000 / 500 + 61 * 10, 290_000 / 60  # per seed: 300k steps, 10k random
    assert alone == pytest.approx(4 * (5 + random_and_evals + learning) / 3600, abs=0.05)
    assert packed == pytest.approx((5 + 4 * random_and_evals + 4 * learning / 1.24) / 3600, abs=0.05)


def test_atlas_estimate_agrees_with_its_measured_runs(tmp_path):
    """Issue 44 item 6: an atlas run took 5-6 min alone on a core, Humanoid-v5's retrain 39 min (atlas/README.md), and
    seed 1's 29 runs ~3 h 45 min on the 2 shared cores; the estimate was 1.5 h of CPU."""
    runs = {run.task: run for run in sweep.plan(protocol.ATLAS, tmp_path) if run.experiment.variant == "atlas"}
    assert 5 * 60 <= sweep.process_seconds(sweep.Group((runs["Hopper-v5"],))) <= 6 * 60
    assert sweep.process_seconds(sweep.Group((runs["Humanoid-v5"],))) >= 2 * 39 * 60  # retrained at 5000 and 10000
    cpu, wall, summary = estimated_hours("--protocol", "atlas", "--root", str(tmp_path))
    assert 3.0 <= cpu <= 4.5 and wall <= 3.75 and "free core" in summary, summary


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


def test_a_process_of_two_seeds_logs_each_and_resumes_from_the_first_seeds_checkpoint(tmp_path):
    args = ("--experiments", "sac", "--tasks", "InvertedPendulum-v5", "--seeds", "1", "2", "--seeds-per-run", "2",
            "--root", str(tmp_path), "--num-cpus", "1", f"--extra-flags={TINY} --batch-size 32 --checkpoint-interval 100")
    result = benchmark("sweep.py", *args, "--total-timesteps", "300")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "2 runs: 0 finished (skipped), 0 to resume, 2 to start, in 1 process(es)"
    seed_dirs = [tmp_path / "sac" / "InvertedPendulum-v5" / f"seed_{seed}" for seed in (1, 2)]
    assert "seeds 1-2 in one process" in (seed_dirs[0] / "stdout.log").read_text()
    assert f"in one process, its output in {seed_dirs[0] / 'stdout.log'}" in (seed_dirs[1] / "stdout.log").read_text()
    [checkpoint] = [p.relative_to(tmp_path) for p in tmp_path.rglob("checkpoint.pt")]  # the first seed's, of both
    assert checkpoint.parts[2] == "seed_1"
    result = benchmark("sweep.py", *args, "--total-timesteps", "400")  # both markers are for fewer steps: resumed
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "2 runs: 0 finished (skipped), 2 to resume, 0 to start, in 1 process(es)"
    assert f"{sys.executable} sac.py --resume {tmp_path / checkpoint.parent} " in (seed_dirs[0] / "stdout.log").read_text()
    for seed, seed_dir in zip((1, 2), seed_dirs):
        marker = json.loads((seed_dir / "finished.json").read_text())
        assert marker["total_timesteps"] == 400 and marker["seeds"] == [1, 2]
        [run_dir] = {events.parent for events in seed_dir.glob("*/events.out.tfevents.*")}  # the resume wrote on in it
        assert run_dir.name.startswith(f"InvertedPendulum-v5__sac__{seed}__")
        assert sorted(step for step, _ in read_scalars(seed_dir)["eval/return"]) == list(range(0, 401, 100))


def test_a_process_of_two_seeds_stopped_by_nan_in_one_ends_both_seeds_logs_with_its_line(tmp_path):
    args = ("--experiments", "sac", "--tasks", "InvertedPendulum-v5", "--seeds", "1", "2", "--seeds-per-run", "2",
            "--root", str(tmp_path), "--num-cpus", "1", "--total-timesteps", "400",
            f"--extra-flags={TINY} --batch-size 32 --q-lr 1e30 --log-interval 5")
    result = benchmark("sweep.py", *args)
    assert result.returncode != 0
    lines = [(tmp_path / "sac" / "InvertedPendulum-v5" / f"seed_{seed}" / "stdout.log").read_text().splitlines()[-1]
             for seed in (1, 2)]
    assert lines[0] == lines[1] and "is NaN or inf at step" in lines[0] and " in seed " in lines[0], lines


def test_a_run_locked_by_another_sweep_is_left_to_it(tmp_path):
    seed_dir = tmp_path / "sac" / "Hopper-v5" / "seed_1"
    seed_dir.mkdir(parents=True)
    args = ("--experiments", "sac", "--tasks", "Hopper-v5", "--seeds", "1", "--total-timesteps", "1",
            "--root", str(tmp_path))
    with open(seed_dir / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as the worker of a live sweep holds it while the run's script runs
        dry_run = benchmark("sweep.py", *args, "--dry-run")
        result = benchmark("sweep.py", *args)
    assert dry_run.stdout.startswith("running  python sac.py --env Hopper-v5 --seed 1 "), dry_run.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "1 runs: 0 finished (skipped), 1 running in another sweep (skipped), 0 to resume, 0 to start",
        f"running in another sweep: sac Hopper-v5 seed 1: {seed_dir / 'stdout.log'}"]
    assert not (seed_dir / "stdout.log").exists()  # not started a second time


def cmdline(pid: int) -> str:
    """A process's command line ('' once it has ended)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def test_killed_sweep_leaves_no_process_behind_and_its_rerun_logs_each_evaluation_once(tmp_path):
    args = ("--experiments", "sac", "--tasks", "InvertedPendulum-v5", "--seeds", "1", "--total-timesteps", "600",
            "--root", str(tmp_path), "--num-cpus", "1", f"--extra-flags={TINY} --checkpoint-interval 100")
    seed_dir = tmp_path / "sac" / "InvertedPendulum-v5" / "seed_1"
    with open(tmp_path / "driver.log", "w") as log:  # a file, not a pipe that the killed sweep's processes may hold
        driver = subprocess.Popen([sys.executable, str(ROOT / "benchmark" / "sweep.py"), *args], cwd=ROOT, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while not list(seed_dir.glob("*/checkpoint.pt")):  # mid-run: past its first checkpoint, 500 steps to go
            assert driver.poll() is None and time.time() < deadline, (tmp_path / "driver.log").read_text()
            time.sleep(0.2)
        tree = sweep.descendants(driver.pid)  # its local Ray instance, the worker and its script, the watcher
        assert any("sac.py" in cmdline(pid) for pid in tree)
    finally:
        driver.kill()
        driver.wait()

    def left() -> list[str]:
        """The killed sweep's processes still running, and any script of this root."""
        return [cmdline(pid) for pid, (_, start, state) in sweep.processes().items() if state != "Z" and (
            tree.get(pid) == start or "sac.py" in cmdline(pid) and str(tmp_path) in cmdline(pid))]

    deadline = time.time() + 30
    while left() and time.time() < deadline:
        time.sleep(0.5)
    assert not left(), left()  # Ray's DashboardAgent and RuntimeEnvAgent included
    assert "SIGTERM at step" in (seed_dir / "stdout.log").read_text()  # its script saved a checkpoint as it ended

    rerun = benchmark("sweep.py", *args)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert rerun.stdout.startswith("1 runs: 0 finished (skipped), 1 to resume, 0 to start"), rerun.stdout
    assert sorted(step for step, _ in read_scalars(seed_dir)["eval/return"]) == list(range(0, 601, 100))


@pytest.mark.parametrize("args, fragment", [
    (("--experiments", "ppo"), "--experiments: unknown ['ppo']"),
    (("--tasks", "Hopper-v4"), "--tasks: unknown ['Hopper-v4']"),
    (("--cpus-per-run", "0"), "--cpus-per-run must be > 0"),
    (("--seeds-per-run", "0"), "--seeds-per-run must be >= 1"),
    (("--experiments", "sac", "--seeds-per-run", "2", "--track"), "--track takes one seed per process"),
])
def test_sweep_bad_input_is_one_line(args, fragment):
    assert_one_line_error(benchmark("sweep.py", *args, "--dry-run"), fragment)


def test_sweep_unreachable_cluster_is_one_line(tmp_path):
    result = benchmark("sweep.py", "--address", "127.0.0.1:1", "--experiments", "sac", "--tasks", "Hopper-v5",
                       "--seeds", "1", "--root", str(tmp_path))
    assert_one_line_error(result, "no Ray cluster answers at --address 127.0.0.1:1")

