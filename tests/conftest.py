"""Shared helpers: run an algorithm script as a user would (subprocess) or in-process (to inspect its final state)."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.utils._pytree as pytree
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmark"))
import speed  # noqa: E402  (its run_in_process is the tests' too)
from speed import script_env  # noqa: E402  (the scripts' subprocess environment, gpu_check's too)

# flags that make each script's runs tiny: these tests check wiring, not learning
SAC_TINY = ["--learning-starts", "100", "--batch-size", "32", "--eval-episodes", "1", "--log-interval", "10"]
DYNA_TINY = ["--replay-ratio", "2", "--model-train-freq", "50", "--rollouts-per-step", "16"]
TINY = {
    "sac.py": SAC_TINY,
    "td3.py": SAC_TINY,
    "mbpo.py": SAC_TINY + DYNA_TINY + ["--model-train-steps", "20"],
    "mbpo_perfect_model.py": SAC_TINY + DYNA_TINY,
    "alm.py": ["--learning-starts", "100", "--batch-size", "16", "--eval-episodes", "1", "--log-interval", "10",
               "--latent-dim", "16", "--hidden-dim", "32", "--model-hidden-dim", "32"],
}


def run_script(script: str, *args: str, log_dir: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python <script> <args> --log-dir <log_dir>` from the repo root; returns the finished process."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args, "--log-dir", str(log_dir)],
        cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=timeout,
    )


def benchmark(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python benchmark/<script> <args>` from the repo root; returns the finished process."""
    return subprocess.run([sys.executable, str(ROOT / "benchmark" / script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def run_in_process(script: str, *args: str, log_dir: Path, timeout: int = 300) -> dict:
    """Run `script` as `__main__` inside this process and return its globals (networks, buffers, optimizers). A run
    still going after `timeout` seconds raises TimeoutError, so a regression fails the test instead of hanging it."""
    return speed.run_in_process(script, [*args, "--log-dir", str(log_dir)], timeout=timeout, quiet=False)


def assert_same_weights(actual: dict, expected: dict, names, **close) -> None:
    """The networks `names` in two runs' globals hold the same weights: bit for bit, or, given `close` (rtol, atol),
    to torch.testing.assert_close's tolerance, with the same entries (a missing or extra one fails). A failure names the
    network and the parameter."""
    for name in names:
        a_state, e_state = actual[name].state_dict(), expected[name].state_dict()
        assert a_state.keys() == e_state.keys(), f"{name}: entries not in both: {sorted(a_state.keys() ^ e_state.keys())}"
        for key, a in a_state.items():
            e = e_state[key]
            if close:
                torch.testing.assert_close(a, e, **close, msg=f"{name}.{key}")
            else:
                assert torch.equal(a, e), f"{name}.{key}"


def refusal(script: str, *args: str, log_dir: Path) -> str:
    """The one line `script` exits with, run in-process on input it must refuse (sys.exit(str): exit status 1)."""
    with pytest.raises(SystemExit) as exit_:
        run_in_process(script, *args, log_dir=log_dir)
    message = exit_.value.code
    assert isinstance(message, str) and message.startswith("error: ") and "\n" not in message, message
    return message


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] from the single run directory under `log_dir`."""
    (run_dir,) = [p for p in Path(log_dir).iterdir() if p.is_dir()]
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def smoke_run(script: str, steps: int, tags: list[str], *args: str, log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Run `script` for `steps` env steps; it must exit 0, print its final progress line and log finite values under
    every tag in `tags`. Returns the scalars for further checks."""
    result = run_script(script, "--total-timesteps", str(steps), *args, log_dir=log_dir)
    assert result.returncode == 0, result.stderr
    assert f"step {steps}/{steps}" in result.stdout, result.stdout  # the progress line
    scalars = read_scalars(log_dir)
    for tag in tags:
        assert scalars.get(tag), f"{tag} missing"
        assert all(math.isfinite(value) for _, value in scalars[tag]), tag
    return scalars


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A user error: non-zero exit, one line on stderr naming the problem, no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def state_differences(a: dict, b: dict) -> tuple[list[str], int]:
    """The entries (pytree paths) in which two checkpoints differ, bit for bit, and how many entries they hold:
    networks, optimizers, buffers, env states, the loop's state, the random generators. Entries only one holds count."""
    (paths_a, leaves_a), (paths_b, leaves_b) = (zip(*pytree.tree_flatten_with_path(s)[0]) for s in (a, b))
    a_by_path, b_by_path = dict(zip(map(pytree.keystr, paths_a), leaves_a)), dict(zip(map(pytree.keystr, paths_b), leaves_b))
    differ = list(a_by_path.keys() ^ b_by_path.keys())
    for path in a_by_path.keys() & b_by_path.keys():
        x, y = a_by_path[path], b_by_path[path]
        if torch.is_tensor(x):
            same = torch.is_tensor(y) and x.shape == y.shape and torch.equal(x, y)
        elif isinstance(x, np.ndarray):
            same = np.array_equal(x, y)
        else:
            same = x == y or x != x and y != y  # NaN (no evaluation yet) equals NaN
        if not same:
            differ.append(path)
    return sorted(differ), len(a_by_path.keys() | b_by_path.keys())


def rows_in(rows: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """For each row of `rows`, whether it equals some row of `table`."""
    return (rows[:, None, :] == table[None, :, :]).all(-1).any(-1)


@pytest.fixture
def log_dir(tmp_path):
    return tmp_path / "runs"
