"""Bad input as the command line meets it: one line on stderr, a non-zero exit status, no traceback. For each
algorithm script a parse error, a value its check_args refuses and (where it has one) a refusal of the env; for
benchmark/report.py and benchmark/sweep.py a parse error and one of their own checks. The message of every check is
tested elsewhere (test_resume.py in-process, test_benchmark.py, test_report.py); here each case is its own python
process (an import of torch each), all started together."""
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import assert_one_line_error, benchmark, run_script

CASES = [  # (program, arguments, what its one line says)
    ("sac.py", ["--seed", "abc"], "Error parsing --seed"),
    ("sac.py", ["--gamma", "1.5"], "--gamma must be in [0, 1], got 1.5"),
    ("sac.py", ["--env", "CartPole-v1"], "CartPole-v1 has a Discrete action space"),
    ("sac.py", ["--env", "Pendulum-v1"], "'Pendulum-v1' is not a MuJoCo env: checkpoints keep the simulator's state"),
    ("td3.py", ["--no-such-flag", "1"], "Unrecognized options: --no-such-flag"),
    ("td3.py", ["--policy-frequency", "0"], "--policy-frequency must be >= 1, got 0"),
    ("mbpo.py", ["--real-ratio", "half"], "Error parsing --real-ratio"),
    ("mbpo.py", ["--real-ratio", "1.5"], "--real-ratio must be in [0, 1], got 1.5"),
    ("mbpo.py", ["--env", "Swimmer-v5"], "no termination function for 'Swimmer-v5'"),
    ("mbpo_perfect_model.py", ["--no-such-flag"], "Unrecognized options: --no-such-flag"),
    ("mbpo_perfect_model.py", ["--rollouts-per-step", "0"], "--rollouts-per-step must be >= 1, got 0"),
    ("mbpo_perfect_model.py", ["--env", "Pendulum-v1"], "'Pendulum-v1' is not a MuJoCo env"),
    ("alm.py", ["--horizon", "two"], "Error parsing --horizon"),
    ("alm.py", ["--horizon", "0"], "--horizon must be >= 1, got 0"),
    ("benchmark/report.py", ["--reps", "two"], "argument --reps: invalid int value: 'two'"),
    ("benchmark/report.py", ["{tmp}", "--reps", "0"], "--reps must be >= 1, got 0"),
    ("benchmark/sweep.py", ["--seeds", "one", "--dry-run"], "argument --seeds: invalid int value: 'one'"),
    ("benchmark/sweep.py", ["--no-such-flag", "--dry-run"], "unrecognized arguments: --no-such-flag"),
]


@pytest.fixture(scope="module")
def finished(request, tmp_path_factory) -> dict:
    """The finished process of every case selected in this session (all started at once), by its index in CASES."""
    tmp = tmp_path_factory.mktemp("refusals")
    selected = sorted({item.callspec.params["case"] for item in request.session.items
                       if getattr(item, "originalname", None) == "test_bad_input_is_one_line_on_stderr_and_a_nonzero_exit"})

    def run(case: int):
        program, args, _ = CASES[case]
        args = [arg.replace("{tmp}", str(tmp)) for arg in args]
        if program.startswith("benchmark/"):
            return benchmark(program.removeprefix("benchmark/"), *args, timeout=120)
        return run_script(program, *args, log_dir=tmp / f"runs_{case}", timeout=120)

    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1)) as pool:  # mostly imports: overlap them
        return dict(zip(selected, pool.map(run, selected)))


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{program}{' '.join(['', *args])}" for program, args, _ in CASES])
def test_bad_input_is_one_line_on_stderr_and_a_nonzero_exit(case, finished):
    assert_one_line_error(finished[case], CASES[case][2])
