"""The CUDA-graph path (`--cuda-graph`, the default on a GPU) computes what the eager path computes. On a CPU the
scripts' `as_cuda_graph` runs the stand-in of tests/graph_stand_in.py (FREELUNCH_GRAPH_STAND_IN=tests.graph_stand_in): the graph's contract without CUDA, its
outputs overwritten by every replay and its Python values frozen at the capture; on a CUDA machine the same tests run
the real CUDA graphs. Each script's real loop runs both ways from the same seed and the checkpoints must be equal bit
for bit. benchmark/gpu_check.py runs this file first on a GPU."""
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from conftest import ROOT, TINY, script_env, state_differences

CUDA = torch.cuda.is_available()
GRAPHED, EAGER = script_env(FREELUNCH_GRAPH_STAND_IN="tests.graph_stand_in"), script_env(FREELUNCH_GRAPH_STAND_IN="")
STEPS = ["--env", "Hopper-v5", "--total-timesteps", "170", "--checkpoint-interval", "170", "--eval-interval", "100"]
ROLLOUTS = ["--rollout-length", "3"]  # rollouts longer than one step: each step's input is the last step's output

CASES = {  # what each run must take through the graph, beside the update's warm-up, capture and replays
    "sac.py, a reset inside the window": ("sac.py", ["--reset-interval", "140"]),
    "td3.py, across its policy delay": ("td3.py", []),
    "mbpo.py, rollouts of 3 steps": ("mbpo.py", ROLLOUTS),
    "mbpo.py, official MBPO's bootstrap": ("mbpo.py", [*ROLLOUTS, "--model-bootstrap", "--model-batch-size", "48"]),
    "mbpo.py, early stopping": ("mbpo.py", ["--model-early-stopping", "--model-batch-size", "48", "--model-train-steps", "40"]),
    "mbpo.py, 2 seeds and the rollout schedule": ("mbpo.py", ["--num-seeds", "2", "--rollout-schedule", "0,1,2,4"]),
    "mbpo_perfect_model.py, rollouts of 3 steps": ("mbpo_perfect_model.py", ROLLOUTS),
    "alm.py, with its measuring updates": ("alm.py", []),
    # its graphs captured anew after the resume
    "mbpo.py, stopped at a checkpoint and resumed": ("mbpo.py", ROLLOUTS, 130),
}


def run_pair(script: str, args: list[str], tmp_path, resume_at: int | None = None) -> tuple[dict, dict]:
    """`script` run with its graphs (the stand-in on a CPU, CUDA graphs on a GPU) and eagerly, at once; their final
    checkpoints. With `resume_at`, the graphed run stops there and is resumed to the end."""
    def start(name: str, env: dict, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(ROOT / script), *TINY[script], *STEPS, *args, *extra, "--log-dir",
                                 str(tmp_path / name)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    stop = ["--total-timesteps", str(resume_at), "--checkpoint-interval", str(resume_at)] if resume_at else []
    graphed, eager = start("graphed", GRAPHED, *stop), start("eager", EAGER, "--no-cuda-graph")
    for process in (graphed, eager):
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
        assert "without a CUDA graph" not in stderr, stderr  # a failed capture would compare eager with eager
    if resume_at:
        (run_dir,) = (tmp_path / "graphed").iterdir()
        resumed = subprocess.run([sys.executable, str(ROOT / script), "--resume", str(run_dir), *STEPS[2:6]],
                                 cwd=ROOT, env=GRAPHED, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    return tuple(torch.load(next((tmp_path / name).glob("*/checkpoint.pt")), weights_only=False) for name in ("graphed", "eager"))


def assert_equal_runs(graphed: dict, eager: dict) -> None:
    assert graphed["next_step"] == eager["next_step"] == 170
    differ, total = state_differences({k: v for k, v in graphed.items() if k not in ("args", "run_dirs")},
                                      {k: v for k, v in eager.items() if k not in ("args", "run_dirs")})
    assert not differ, f"{len(differ)} of {total} checkpoint entries differ from the eager run's: {differ[:8]}"


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory) -> dict:
    """The selected cases' pairs, started at once and run as many at a time as half the cores allow (a GPU machine's
    16 cores run them all in about the time of two); each test waits for its own."""
    selected = [item.callspec.params["case"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_graphed_loop_equals_eager_loop"]
    pool = ThreadPoolExecutor(max(1, (os.cpu_count() or 2) // 2))
    yield {case: pool.submit(run_pair, *CASES[case][:2], tmp_path_factory.mktemp("graphs"), *CASES[case][2:]) for case in selected}
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("case", CASES)
def test_graphed_loop_equals_eager_loop(case, runs):
    assert_equal_runs(*runs[case].result())


# the wrapper's contract, on as_cuda_graph itself (the same text in every script)
sys.path.insert(0, str(ROOT))
from graph_stand_in import capture  # noqa: E402
from sac import as_cuda_graph  # noqa: E402


def graphed(fn, **kwargs):
    return as_cuda_graph(fn, stand_in=None if CUDA else capture, **kwargs)


def device() -> torch.device:
    return torch.device("cuda" if CUDA else "cpu")


def test_outputs_are_the_graphs_own_tensors_overwritten_by_the_next_call():
    step = graphed(lambda x: x + 1, warmup=1)
    step(torch.zeros(3, device=device()))  # the warm-up call
    first = step(torch.zeros(3, device=device()))  # captured and replayed
    assert first.tolist() == [1.0, 1.0, 1.0]
    second = step(torch.full((3,), 5.0, device=device()))
    assert second is first and first.tolist() == [6.0, 6.0, 6.0]  # a caller that keeps `first` must clone it


def test_python_values_are_frozen_at_the_capture_and_state_tensors_are_read_live():
    scale, weight = [2.0], torch.ones(3, device=device())
    step = graphed(lambda x: x * scale[0] * weight, warmup=1)
    x = torch.ones(3, device=device())
    step(x)
    step(x)  # captured with scale 2
    scale[0] = 10.0
    weight.fill_(3.0)  # changed in place: the graph reads it
    assert step(x).tolist() == [6.0, 6.0, 6.0]  # 2 (frozen) * 3 (read at the replay), not 10 * 3


def test_other_shapes_run_as_they_are_without_a_graph_of_their_own():
    calls = []

    def fn(x):
        calls.append(x.shape[0])  # Python runs only when fn runs as it is (warm-up, capture, other shapes)
        return x * 2

    step = graphed(fn, warmup=1)
    for n in (4, 4, 4, 3, 4, 2, 4):
        assert step(torch.ones(n, device=device())).tolist() == [2.0] * n
    assert calls == [4, 4, 3, 2]  # the warm-up, the capture (which runs fn's Python once), the other shapes


def test_a_failed_capture_says_its_cause_once_and_runs_as_it_is(capfd):
    def fn(x):
        return x * float(x.sum())  # a host sync: no capture allows it

    step = graphed(fn, warmup=1)
    x = torch.ones(2, device=device())
    stream = torch.cuda.current_stream() if CUDA else None
    results = [step(x).tolist() for _ in range(4)]
    assert results == [[2.0, 2.0]] * 4
    if CUDA:  # torch.cuda.graph leaves its capture stream current after a failure; the wrapper restores the caller's
        assert torch.cuda.current_stream() == stream
    warnings = [line for line in capfd.readouterr().err.splitlines() if "without a CUDA graph" in line]
    assert len(warnings) == 1, warnings
    assert "a previous error during capture" not in warnings[0]  # the root cause, not the capture's own error
