"""Watching a run: videos of the policy, Weights & Biases tracking (offline), an ETA from the current phase, and a full
disk while checkpointing."""
import errno
import glob
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, TINY, assert_one_line_error, assert_same_weights, read_scalars, run_in_process, run_script

PARAMETERS = {"sac.py": ("actor", "qf"), "td3.py": ("actor", "qf"), "mbpo.py": ("actor", "qf", "model"),
              "mbpo_perfect_model.py": ("actor", "qf"), "alm.py": ("encoder", "model", "actor", "qf")}


@pytest.mark.parametrize("script", ["sac.py", "td3.py", "alm.py"])  # the three ways of choosing the mean action
def test_recording_videos_changes_nothing_the_run_computes(script, log_dir):
    """The video episode runs on an env of its own with the mean action (no random draw): a run with
    --capture-video ends with the same parameters and evaluation returns as one without, and writes its mp4s."""
    common = ["--env", "InvertedPendulum-v5", "--total-timesteps", "150", "--eval-interval", "50", *TINY[script]]
    plain = run_in_process(script, *common, log_dir=log_dir / "plain")
    video = run_in_process(script, *common, "--capture-video", "--video-interval", "2", log_dir=log_dir / "video")
    assert_same_weights(video, plain, PARAMETERS[script])
    assert read_scalars(log_dir / "plain")["eval/return"] == read_scalars(log_dir / "video")["eval/return"]
    mp4s = sorted(Path(p).name for p in glob.glob(str(log_dir / "video" / "*" / "videos" / "*.mp4")))
    assert mp4s == ["step_0.mp4", "step_100.mp4", "step_150.mp4"]  # step 0, every 2nd evaluation, the last one


def wandb_records(offline_run: str):
    """The records of an offline W&B run's file (LevelDB-style log blocks of protobuf `Record`s)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = glob.glob(f"{offline_run}/run-*.wandb")
    raw, pos, pending, block = Path(path).read_bytes(), 7, b"", 32768  # 7: the file header
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a record header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        pending, pos = pending + raw[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def test_track_offline_logs_scalars_config_and_videos_to_one_run_that_resume_continues(log_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    common = ["--env", "InvertedPendulum-v5", "--eval-interval", "100", *TINY["sac.py"], "--track",
              "--wandb-group", "sac/InvertedPendulum-v5", "--capture-video", "--video-interval", "1"]
    first = run_script("sac.py", *common, "--total-timesteps", "150", "--checkpoint-interval", "100", log_dir=log_dir)
    assert first.returncode == 0, first.stderr
    (run_dir,) = [p for p in log_dir.iterdir() if p.is_dir()]
    resumed = run_script("sac.py", "--resume", str(run_dir), "--total-timesteps", "200", log_dir=log_dir)
    assert resumed.returncode == 0, resumed.stderr
    runs = sorted(glob.glob(str(run_dir / "wandb" / "offline-run-*")))
    assert len(runs) == 2 and len({r.rsplit("-", 1)[1] for r in runs}) == 1  # the resumed run kept the W&B id
    keys, config, groups = set(), {}, set()
    for record in (record for run in runs for record in wandb_records(run)):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            keys |= {item.key or "/".join(item.nested_key) for item in record.history.item}
        elif kind == "run":
            groups.add(record.run.run_group)
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
    assert {"eval/return", "losses/qf_loss", "charts/episodic_return"} <= keys
    assert any(key.startswith("videos/") for key in keys)
    assert config["env"] == "InvertedPendulum-v5" and config["seed"] == 1 and groups == {"sac/InvertedPendulum-v5"}


def test_track_without_a_login_is_one_line(log_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a key
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    result = run_script("sac.py", "--env", "InvertedPendulum-v5", "--total-timesteps", "10", "--track", log_dir=log_dir)
    assert_one_line_error(result, "--track", "wandb login")
    assert not [p for p in log_dir.iterdir() if p.is_dir()]  # a failed start leaves no run directory


def test_the_expected_duration_comes_from_an_earlier_run_of_the_same_settings(log_dir):
    """Before the run starts, one line: not timed yet on a fresh --log-dir; then what the first run timed, naming it,
    for the same settings only (--total-timesteps may differ: the estimate is for this run's steps)."""
    common = ["--env", "InvertedPendulum-v5", "--eval-interval", "100", *TINY["sac.py"]]
    first = run_script("sac.py", *common, "--total-timesteps", "200", log_dir=log_dir)
    assert first.returncode == 0 and first.stdout.splitlines()[1].startswith("expected duration: not timed on this machine yet"), first.stdout
    record = next(log_dir.glob("*/timed.json"))
    timed = json.loads(record.read_text())
    assert timed["paces"]["learning"] > 0 and timed["means"]["eval"] > 0
    again = run_script("sac.py", *common, "--total-timesteps", "400", log_dir=log_dir)
    line = again.stdout.splitlines()[1]
    assert line.startswith("expected duration on this machine: ") and record.parent.name in line, line
    minutes = float(line.split(": ")[1].split(" min")[0])
    expected = ((400 - 100) * timed["paces"]["learning"] + 100 * timed["paces"]["random"] + 5 * timed["means"]["eval"]) / 60
    assert minutes == pytest.approx(expected, abs=0.051), (line, expected)  # 4 evaluations and the final one
    other = run_script("sac.py", *common, "--total-timesteps", "200", "--batch-size", "8", log_dir=log_dir)
    assert other.stdout.splitlines()[1].startswith("expected duration: not timed"), other.stdout


@pytest.mark.parametrize("case", ["unknown env", "a buffer beyond memory", "--num-seeds beyond memory"])
def test_a_failed_start_is_one_line_and_leaves_no_run_directory(case, log_dir):
    """Nothing is left behind by a run that cannot start; what too many seeds or too large a buffer would need is said
    (one line, in GB) before any run directory or most envs exist."""
    flags = {"unknown env": ["--env", "NoSuchEnv-v0"], "a buffer beyond memory": ["--env", "InvertedPendulum-v5", "--buffer-size", str(10**11)],
             "--num-seeds beyond memory": ["--env", "InvertedPendulum-v5", "--num-seeds", "100000", "--buffer-size", "1000000"]}[case]
    result = run_script("mbpo.py", *flags, log_dir=log_dir)
    assert_one_line_error(result, *(["NoSuchEnv-v0"] if case == "unknown env" else ["GB", "available", "--num-seeds or --buffer-size"]))
    assert not log_dir.exists() or not [p for p in log_dir.iterdir() if p.is_dir()]


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_eta_counts_the_long_work_to_come(monkeypatch, capsys):
    """MBPO on a CPU: a fast random phase, then learning steps of 0.2 s with a 115 s retrain every 250 steps and a 20 s
    evaluation every 5000. During the random phase the ETA says learning is not timed yet; from the first learning line
    on, it is within 1.1x of the truth (the retrains and evaluations to come, at their measured means, plus the steps);
    a retrain under way leaves it as it was (its minutes are not the steps' pace)."""
    import sac as module  # ProgressLine is the same in every script
    clock = FakeClock()
    monkeypatch.setattr(module.time, "time", clock)
    total, starts = 20_000, 10_000
    progress = module.ProgressLine(total, starts, {"eval": (0, 5000), "model_training": (starts, 250)}, 0, every=0)
    clock.now += 20
    progress.timed("eval", 20)  # the step-0 evaluation
    for step in range(1, starts + 1):  # 500 random steps/s
        clock.now += 1 / 500 + (20 if step == 5000 else 0)
        progress.timed("eval", 20) if step == 5000 else None
        progress(step, np.zeros(1))
    lines = capsys.readouterr().out.strip().splitlines()
    assert "learning not timed yet" in lines[-2]  # the random phase's last step
    assert "ETA estimating until the first model training is timed" in lines[-1]  # its end: a retrain begins
    for step in range(starts + 1, starts + 301):
        work = {"model_training": 115 if (step - 1 - starts) % 250 == 0 else 0, "eval": 20 if (step - 1) % 5000 == 0 else 0}
        for name, seconds in work.items():
            if seconds:
                progress.timed(name, seconds)
        clock.now += 0.2 + sum(work.values())
        progress(step, np.zeros(1))
        line = capsys.readouterr().out.strip().splitlines()[-1]
        if step == starts + 1:  # the first learning step (a retrain, a compilation) sets no pace
            assert "ETA estimating" in line, line
            continue
        eta_min = float(line.split("ETA ")[1].split(" min")[0]) if " min" in line else 60 * float(line.split("ETA ")[1].split(" h")[0])
        retrains_left = len(range(starts + 250 * ((step - starts + 249) // 250), total, 250))
        true_min = ((total - step) * 0.2 + retrains_left * 115 + 2 * 20) / 60  # the evaluations at 15000 and 20000
        assert "learning" in line and true_min / 1.1 <= eta_min <= 1.1 * true_min, (step, line, true_min)
    progress.busy = clock.now  # a retrain under way, as Run.working marks it: its minutes are not the steps' pace
    for done in range(0, 5000, 500):
        clock.now += 10
        progress(step, np.zeros(1), doing=f"retraining the model: {done}/5000 gradient steps")
    during = capsys.readouterr().out.strip().splitlines()[-1]
    assert "retraining the model: 4500/5000" in during and during.split("ETA ")[1].split(" |")[0] == line.split("ETA ")[1].split(" |")[0], during


@pytest.mark.parametrize("script", sorted(TINY))
def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(script, log_dir, monkeypatch):
    """The first checkpoint is written; the second meets a full disk: the run stops with one line naming the run
    directory and the kept checkpoint, leaves no partial file, and the kept checkpoint still resumes."""
    writes, save = [], torch.save

    def save_until_full(obj, path, *args, **kwargs):
        if isinstance(path, (str, os.PathLike)):  # a file (not a checkpoint kept in memory during long work)
            writes.append(path)
            if len(writes) > 1:
                Path(path).write_bytes(b"partial")  # what a writer leaves when the disk fills mid-write
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_full)
    with pytest.raises(SystemExit) as stop:
        run_in_process(script, "--env", "InvertedPendulum-v5", "--total-timesteps", "300", "--checkpoint-interval",
                       "120", *TINY[script], log_dir=log_dir)
    message = str(stop.value.code)
    (run_dir,) = [p for p in log_dir.iterdir() if p.is_dir()]
    assert message.startswith("error: ") and "\n" not in message and "disk is full" in message and str(run_dir) in message
    assert not list(run_dir.glob("*.tmp"))
    monkeypatch.setattr(torch, "save", save)
    kept = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert kept["next_step"] == 120
    resumed = run_in_process(script, "--resume", str(run_dir), "--total-timesteps", "121", log_dir=log_dir)
    assert resumed["run"].start_step == 120 and resumed["global_step"] == 120  # one step on from the kept checkpoint
    assert resumed["rb"].size == 121 and torch.equal(resumed["rb"].obs[:, :120], kept["rb"]["obs"])


# hide libraries in a private mount namespace (bind-mounting /dev/null over them), then run the command
HIDE = 'for f in $(ldconfig -p | grep -o "/[^ ]*{}[^ ]*"); do mount --bind /dev/null "$f"; done; exec "$@"'
GPU_MACHINES = {  # what GPU machines often have: no libEGL at all; libEGL (libglvnd) with no EGL vendor behind it
    "no libEGL": ("libEGL", "libEGL does not load here"),
    "no EGL vendor": ("libEGL_", "libEGL loads but initializes no EGL display"),
}


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="hiding libEGL needs root's unshare -m")
@pytest.mark.parametrize("machine", GPU_MACHINES)
def test_without_egl_the_scripts_run_and_only_video_fails_in_one_line(machine, log_dir):
    """A GPU machine without a working EGL (its libraries hidden): importing mujoco and dm_control must not die, a DMC
    run completes, and --capture-video stops at once with one line saying what is missing and what to install."""
    hidden, reason = GPU_MACHINES[machine]
    if machine == "no EGL vendor" and "libEGL.so.1" not in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout:
        pytest.skip("no libEGL here to keep")

    def run(*args):
        env = {key: value for key, value in os.environ.items() if key != "MUJOCO_GL"}
        return subprocess.run(["unshare", "-m", "sh", "-c", HIDE.format(hidden), "sh", sys.executable, str(ROOT / "sac.py"),
                               "--env", "dmc:walker-walk", "--log-dir", str(log_dir), *args],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    plain = run("--total-timesteps", "20", "--learning-starts", "10", "--batch-size", "8", "--hidden-dim", "16",
                "--eval-interval", "1000", "--eval-episodes", "1")  # evaluated at step 0 only
    assert plain.returncode == 0, plain.stderr
    assert "step 20/20" in plain.stdout
    video = run("--total-timesteps", "20", "--capture-video")
    assert_one_line_error(video, "--capture-video", reason, "apt-get install libegl1")
    assert len([p for p in log_dir.iterdir() if p.is_dir()]) == 1  # the plain run's: the failed start left none
