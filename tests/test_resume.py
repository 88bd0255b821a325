"""Long runs survive: a run killed and resumed equals one that never stopped; SIGTERM leaves a resumable checkpoint;
divergence to NaN stops the run with one line; bad input of every kind gets one line and a non-zero exit (checked
in-process; test_refusals.py shows such lines reach stderr alone)."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, assert_one_line_error, read_scalars, refusal, run_in_process, run_script, script_env, state_differences

COMMON = ["--env", "InvertedPendulum-v5", "--learning-starts", "100", "--batch-size", "32", "--eval-interval", "200",
          "--eval-episodes", "2", "--log-interval", "20"]
DYNA = ["--replay-ratio", "2", "--model-train-freq", "100", "--rollouts-per-step", "16"]
TINY = {
    "sac.py": COMMON,
    "td3.py": COMMON,
    "mbpo.py": COMMON + DYNA + ["--model-train-steps", "20"],
    "mbpo_perfect_model.py": COMMON + DYNA,
    "alm.py": COMMON + ["--latent-dim", "16", "--hidden-dim", "32", "--model-hidden-dim", "32"],
}
SCRIPTS = list(TINY)
NONDETERMINISTIC_TAGS = ("charts/SPS", "time/")  # wall-clock measurements


def start(script: str, *args: str, log_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / script), *args, "--log-dir", str(log_dir)], cwd=ROOT,
                            env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def run_dir(log_dir: Path) -> Path:
    (path,) = [p for p in log_dir.iterdir() if p.is_dir()]
    return path


def wait_for(condition, process: subprocess.Popen, timeout: float = 120):
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def assert_same_state(a: dict, b: dict) -> None:
    """Two checkpoints hold the same entries with the same values, bit for bit; a failure names the entries."""
    differ, _ = state_differences(a, b)
    assert not differ, differ


@pytest.mark.parametrize("script", SCRIPTS)
def test_killed_and_resumed_run_equals_uninterrupted_run(script, tmp_path):
    args = [*TINY[script], "--total-timesteps", "600", "--checkpoint-interval", "200"]
    assert run_script(script, *args, log_dir=tmp_path / "a").returncode == 0

    killed = start(script, *args, log_dir=tmp_path / "b")
    checkpoint = lambda: (tmp_path / "b").exists() and any((tmp_path / "b").glob("*/checkpoint.pt"))  # noqa: E731
    wait_for(checkpoint, killed)
    time.sleep(0.5)  # let it log past the checkpoint, so the resumed run must drop those events
    assert killed.poll() is None, "finished before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    saved_at = torch.load(run_dir(tmp_path / "b") / "checkpoint.pt", weights_only=False)["next_step"]
    assert saved_at in (200, 400)  # a fast machine may pass the second checkpoint before the kill lands
    resumed = run_script(script, "--resume", str(run_dir(tmp_path / "b")), log_dir=tmp_path / "b")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed at step {saved_at}" in resumed.stdout

    a, b = (torch.load(run_dir(tmp_path / d) / "checkpoint.pt", weights_only=False) for d in "ab")
    assert a["next_step"] == b["next_step"] == 600
    assert_same_state({k: v for k, v in a.items() if k not in ("args", "run_dirs")},
                      {k: v for k, v in b.items() if k not in ("args", "run_dirs")})
    scalars_a, scalars_b = read_scalars(tmp_path / "a"), read_scalars(tmp_path / "b")
    assert [v for _, v in scalars_a["eval/return"]] == [v for _, v in scalars_b["eval/return"]]
    for tag in scalars_a:  # same steps (none duplicated by the resume), same values
        if not tag.startswith(NONDETERMINISTIC_TAGS):
            assert scalars_a[tag] == scalars_b[tag], tag


@pytest.mark.parametrize("script", SCRIPTS)
def test_restore_puts_back_every_entry_of_the_checkpoint(script, log_dir):
    """A run at step 200 restores its checkpoint of step 120 and saves again: networks, optimizers, log_alpha, buffers,
    envs and random generators come back as saved, each checked on its own (the loop's state is the caller's)."""
    run = run_in_process(script, *TINY[script], "--total-timesteps", "200", "--checkpoint-interval", "120",
                         log_dir=log_dir)
    path = run_dir(log_dir) / "checkpoint.pt"
    saved = torch.load(path, weights_only=False)
    assert saved["next_step"] == 120
    run["run"].checkpoint = saved
    run["run"].restore(run["checkpointed"])  # the script's own entries (networks, optimizers, buffers)
    run["run"].save_checkpoint(120, run["checkpointed"], saved["loop"])
    again = torch.load(path, weights_only=False)
    assert_same_state(*({k: v for k, v in c.items() if k not in ("args", "run_dirs", "loop")} for c in (saved, again)))


@pytest.mark.parametrize("script", SCRIPTS)
def test_sigterm_saves_a_checkpoint_and_the_run_resumes(script, log_dir):
    process = start(script, *TINY[script], "--total-timesteps", "100000", "--checkpoint-interval", "0", log_dir=log_dir)
    assert process.stdout.readline().startswith("run ")
    assert process.stdout.readline().startswith("expected duration")  # before the run starts
    assert process.stdout.readline().startswith("step ")  # in the training loop
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "SIGTERM at step" in stderr and "checkpoint saved" in stderr and "--resume" in stderr, stderr
    stopped_at = torch.load(run_dir(log_dir) / "checkpoint.pt", weights_only=False)["next_step"]
    resumed = run_script(script, "--resume", str(run_dir(log_dir)), "--total-timesteps", str(stopped_at + 30),
                         log_dir=log_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed at step {stopped_at}" in resumed.stdout
    assert f"step {stopped_at + 30}/{stopped_at + 30}" in resumed.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_divergence_to_nan_stops_the_run_with_one_line(script, log_dir):
    result = run_script(script, *TINY[script], "--total-timesteps", "400", "--q-lr", "1e30", "--log-interval", "5",
                        log_dir=log_dir)
    assert_one_line_error(result, "is NaN or inf at step", "last good checkpoint")


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory) -> Path:
    """A finished tiny sac.py run with its checkpoint at step 200."""
    log_dir = tmp_path_factory.mktemp("sac_run")
    run_in_process("sac.py", *COMMON, "--total-timesteps", "200", "--checkpoint-interval", "200", log_dir=log_dir)
    return run_dir(log_dir)


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("args,fragment", [
    (["--seed", "abc"], "Error parsing --seed"),
    (["--no-such-flag", "1"], "Unrecognized options: --no-such-flag"),
    (["--env", "NoSuchEnv-v0"], "unknown env 'NoSuchEnv-v0'"),
    (["--env", "CartPole-v1"], "CartPole-v1 has a Discrete action space"),
    (["--seed", "-1"], "--seed must be in [0, "),
    (["--num-seeds", "0"], "--num-seeds must be >= 1, got 0"),
    (["--seed", str(2**32 - 20_001), "--num-seeds", "2"], "--seed must be in [0, 4294947294] with --num-seeds 2"),
    (["--track", "--num-seeds", "2"], "--track takes one seed per process"),
    (["--total-timesteps", "0"], "--total-timesteps must be >= 1, got 0"),
    (["--total-timesteps", "-5"], "--total-timesteps must be >= 1, got -5"),
    (["--learning-starts", "-1"], "--learning-starts must be >= 0"),
    (["--buffer-size", str(10**12)], "lower --num-seeds or --buffer-size"),  # before the buffer is allocated
    (["--gamma", "1.5"], "--gamma must be in [0, 1], got 1.5"),
    (["--tau", "0"], "--tau must be in (0, 1], got 0.0"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--policy-lr", "nan"], "learning rates must be finite and > 0, got "),
    (["--replay-ratio", "0"], "--replay-ratio must be >= 1, got 0"),
    (["--reset-interval", "-3"], "--reset-interval must be >= 0"),
    (["--eval-episodes", "0"], "--eval-episodes must be >= 1"),
    (["--torch-threads", "0"], "--torch-threads must be >= 1"),
    (["--checkpoint-interval", "-1"], "--checkpoint-interval must be >= 0"),
    (["--resume", "/no/such/run"], "cannot read checkpoint '/no/such/run'"),
    (["--resume", "README.md"], "cannot read checkpoint 'README.md'"),
])
def test_every_script_refuses_bad_shared_input_with_one_line(script, args, fragment, log_dir):
    assert fragment in refusal(script, *args, log_dir=log_dir)


@pytest.mark.parametrize("script,args,fragment", [
    ("td3.py", ["--exploration-noise", "-0.1"], "--exploration-noise must be finite and >= 0, got -0.1"),
    ("td3.py", ["--exploration-noise", "inf"], "--exploration-noise must be finite and >= 0, got inf"),
    ("td3.py", ["--policy-noise", "-0.2"], "--policy-noise must be finite and >= 0, got -0.2"),
    ("td3.py", ["--noise-clip", "-0.5"], "--noise-clip must be finite and >= 0, got -0.5"),
    ("td3.py", ["--policy-frequency", "0"], "--policy-frequency must be >= 1, got 0"),
    ("mbpo.py", ["--real-ratio", "1.5"], "--real-ratio must be in [0, 1], got 1.5"),
    ("mbpo.py", ["--real-ratio", "-0.1"], "--real-ratio must be in [0, 1], got -0.1"),
    ("mbpo.py", ["--rollout-schedule", "20,150,1"], "--rollout-schedule must be four integers"),
    ("mbpo.py", ["--rollout-schedule", "a,b,c,d"], "--rollout-schedule must be four integers"),
    ("mbpo.py", ["--rollout-schedule", "150,20,1,15"], "--rollout-schedule needs 0 <= a < b"),
    ("mbpo.py", ["--num-elites", "8"], "--num-elites must be in [1, --ensemble-size=7], got 8"),
    ("mbpo.py", ["--ensemble-size", "3", "--num-elites", "5"], "--num-elites must be in [1, --ensemble-size=3], got 5"),
    ("mbpo.py", ["--model-lr", "-1"], "--model-lr must be finite and > 0, got -1.0"),
    ("mbpo.py", ["--learning-starts", "5"], "--learning-starts must be >= 10 (the model needs data to fit), got 5"),
    ("mbpo.py", ["--env", "Swimmer-v5"], "no termination function for 'Swimmer-v5'"),
    ("mbpo.py", ["--model-early-stopping", "--num-seeds", "2"], "--model-early-stopping takes one seed per process"),
    ("mbpo_perfect_model.py", ["--real-ratio", "1.5"], "--real-ratio must be in [0, 1], got 1.5"),
    ("mbpo_perfect_model.py", ["--rollout-schedule", "20,150,1"], "--rollout-schedule must be four integers"),
    ("mbpo_perfect_model.py", ["--rollouts-per-step", "0"], "--rollouts-per-step must be >= 1, got 0"),
    ("mbpo_perfect_model.py", ["--env", "Pendulum-v1"], "'Pendulum-v1' is not a MuJoCo env"),
    ("alm.py", ["--horizon", "0"], "--horizon must be >= 1, got 0"),
    ("alm.py", ["--learning-starts", "2", "--horizon", "3"], "--learning-starts must be >= --horizon (3)"),
    ("alm.py", ["--return-lambda", "1.5"], "--return-lambda must be in [0, 1], got 1.5"),
    ("alm.py", ["--lambda-cost", "-0.1"], "--lambda-cost must be finite and >= 0, got -0.1"),
    ("alm.py", ["--exploration-noise-start", "-1"], "exploration noise must be finite and >= 0, got -1.0 and 0.1"),
    ("alm.py", ["--exploration-noise-steps", "0"], "--exploration-noise-steps must be >= 1, got 0"),
    ("alm.py", ["--noise-clip", "-0.3"], "--noise-clip must be finite and >= 0, got -0.3"),
    ("alm.py", ["--max-grad-norm", "0"], "--max-grad-norm must be finite and > 0, got 0.0"),
    ("alm.py", ["--latent-dim", "0"], "--latent-dim must be >= 1, got 0"),
    ("alm.py", ["--model-hidden-dim", "0"], "--model-hidden-dim must be >= 1, got 0"),
    ("alm.py", ["--model-lr", "0"], "learning rates must be finite and > 0"),
    ("sac.py", ["--resume", "{run}", "--env", "Hopper-v5"], "--env Hopper-v5 differs from the resumed run's InvertedPendulum-v5"),
    ("sac.py", ["--resume", "{run}", "--total-timesteps", "50"], "--total-timesteps 50 is below the checkpoint's step 200"),
    ("td3.py", ["--resume", "{run}"], "is not a td3.py checkpoint (written by sac.py)"),
    ("mbpo.py", ["--resume", "{run}/checkpoint.pt"], "is not a mbpo.py checkpoint (written by sac.py)"),
    ("mbpo_perfect_model.py", ["--resume", "{run}"], "is not a mbpo_perfect_model.py checkpoint (written by sac.py)"),
    ("alm.py", ["--resume", "{run}"], "is not a alm.py checkpoint (written by sac.py)"),
])
def test_each_script_refuses_its_own_bad_input_with_one_line(script, args, fragment, sac_run, log_dir):
    args = [arg.replace("{run}", str(sac_run)) for arg in args]
    assert fragment in refusal(script, *args, log_dir=log_dir)


def test_unwritable_log_dir_is_refused_with_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert "cannot create the run directory" in refusal("sac.py", log_dir=blocker)


RETRAIN = ["--env", "Hopper-v5", "--total-timesteps", "160", "--learning-starts", "100", "--model-train-freq", "50",
           "--model-train-steps", "3000", "--rollouts-per-step", "16", "--batch-size", "32", "--eval-episodes", "1",
           "--checkpoint-interval", "160"]


def stop_while(process: subprocess.Popen, text: str) -> tuple[str, float]:
    """Read `process`'s progress lines until one says `text`, send SIGINT; its stderr, and the seconds from the signal
    to its exit."""
    for line in process.stdout:
        if text in line:
            break
    time.sleep(0.5)  # into the work
    sent = time.time()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    return stderr, time.time() - sent


def test_ctrl_c_during_a_retrain_saves_the_steps_start_and_the_resumed_run_is_exact(log_dir):
    """Ctrl-C in the middle of a model retrain (long work): the run says at once what it waits for, stops at the next
    gradient step with the checkpoint of the step's start (kept in memory), and the resumed run, which redoes the step,
    ends equal to a run that never stopped."""
    whole = start("mbpo.py", *RETRAIN, log_dir=log_dir / "whole")
    stopped = start("mbpo.py", *RETRAIN, log_dir=log_dir / "stopped")
    stderr, seconds = stop_while(stopped, "step 150/160 (93.8%) | retraining the model")
    assert stopped.returncode != 0 and seconds < 10, (seconds, stderr)
    assert "SIGINT: a checkpoint after retraining the model" in stderr and "SIGINT at step 150: checkpoint saved" in stderr
    assert "--resume" in stderr, stderr
    assert torch.load(run_dir(log_dir / "stopped") / "checkpoint.pt", weights_only=False)["next_step"] == 150
    resumed = run_script("mbpo.py", "--resume", str(run_dir(log_dir / "stopped")), log_dir=log_dir / "stopped")
    assert resumed.returncode == 0, resumed.stderr
    assert "step 150/160 (93.8%) | retraining the model" in resumed.stdout and "nan" not in resumed.stdout  # its last eval
    whole.communicate(timeout=600)
    assert_same_state(*({k: v for k, v in torch.load(run_dir(log_dir / name) / "checkpoint.pt", weights_only=False).items()
                         if k not in ("args", "run_dirs")} for name in ("whole", "stopped")))


def test_a_second_ctrl_c_exits_at_once_naming_the_last_good_checkpoint(log_dir, capsys):
    """The first signal says what the run waits for (here: an env step); the second exits at once, naming the last
    good checkpoint (a first that waits long: a --compile compiling, a step of minutes)."""
    run = run_in_process("sac.py", "--env", "InvertedPendulum-v5", "--total-timesteps", "120", "--checkpoint-interval", "100",
                         log_dir=log_dir)["run"]
    run.on_signal(signal.SIGINT, None)
    assert "SIGINT: a checkpoint after this env step" in capsys.readouterr().err
    run.on_signal(signal.SIGTERM, None)  # a supervisor's repeated SIGTERM (to a process tree) waits for the checkpoint
    with pytest.raises(SystemExit) as stop:
        run.on_signal(signal.SIGINT, None)
    assert str(stop.value.code) == f"SIGINT again: stopped at once (last good checkpoint: {run_dir(log_dir)}/checkpoint.pt)"
