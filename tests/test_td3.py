
import pytest
import torch

from conftest import smoke_run, assert_one_line_error, read_scalars, run_in_process, run_script

SCRIPT = "td3.py"
TAGS = [
    "charts/episodic_return", "charts/SPS", "losses/qf_loss", "losses/qf_values", "losses/actor_loss",
    "eval/return", "diagnostics/q_estimate", "diagnostics/mc_return",
]
TINY = ["--learning-starts", "100", "--batch-size", "32", "--eval-episodes", "1", "--log-interval", "10"]


@pytest.mark.parametrize("env_id,steps", [("Hopper-v5", 400), ("dmc:walker-walk", 1000)])
def test_smoke_run_logs_finite_scalars(env_id, steps, log_dir):
    scalars = smoke_run(SCRIPT, steps, TAGS, "--env", env_id, "--eval-interval", "500", *TINY, log_dir=log_dir)
    assert [step for step, _ in scalars["eval/return"]] == list(range(0, steps + 1, 500))


def test_policy_delay_counts_gradient_updates(log_dir):
    run = run_in_process(SCRIPT, "--env", "Hopper-v5", "--total-timesteps", "150", "--replay-ratio", "3", *TINY,
                         log_dir=log_dir)
    updates = 3 * (150 - 100)
    for optimizer, expected in ((run["q_optimizer"], updates), (run["actor_optimizer"], updates // 2)):
        assert {int(state["step"]) for state in optimizer.state.values()} == {expected}


def test_reset_reinitializes_agent_and_keeps_buffer(log_dir):
    common = ["--env", "Hopper-v5", "--total-timesteps", "200", *TINY]
    trained = run_in_process(SCRIPT, *common, log_dir=log_dir / "a")
    reset = run_in_process(SCRIPT, *common, "--reset-interval", "200", log_dir=log_dir / "b")  # reset after step 200
    assert reset["rb"].size == trained["rb"].size == 200
    torch.testing.assert_close(reset["rb"].obs[:200], trained["rb"].obs[:200])  # same data, buffer kept
    for name in ("actor", "actor_target", "qf", "qf_target"):
        for new, old in zip(reset[name].parameters(), trained[name].parameters()):
            assert not torch.equal(new, old), name
    for net, target in (("actor", "actor_target"), ("qf", "qf_target")):
        for new, copy in zip(reset[net].parameters(), reset[target].parameters()):
            assert torch.equal(new, copy), target  # targets re-initialized as copies of the fresh networks
    assert all(not opt.state for opt in (reset["q_optimizer"], reset["actor_optimizer"]))
    assert read_scalars(log_dir / "b")["charts/resets"] == [(199, 1.0)]


def test_layer_norm_adds_layer_norm_to_critics_only(log_dir):
    args = ["--env", "Hopper-v5", "--total-timesteps", "120", *TINY]
    plain = run_in_process(SCRIPT, *args, log_dir=log_dir / "a")
    normed = run_in_process(SCRIPT, *args, "--layer-norm", log_dir=log_dir / "b")
    norm_type = normed["VectorizedLayerNorm"]
    assert not any(isinstance(m, norm_type) for m in plain["qf"].modules())
    for name in ("qf", "qf_target"):
        assert sum(isinstance(m, norm_type) for m in normed[name].modules()) == 2  # after each hidden layer
    for name in ("actor", "actor_target"):
        assert not any(isinstance(m, norm_type) for m in normed[name].modules())


@pytest.mark.parametrize("args,fragment", [
    (["--env", "NoSuchEnv-v0"], "unknown env 'NoSuchEnv-v0'"),
    (["--env", "dmc:walker-fly"], "valid tasks for walker"),
    (["--total-timesteps", "0"], "--total-timesteps must be >= 1, got 0"),
    (["--learning-starts", "-1"], "--learning-starts must be >= 0"),
    (["--replay-ratio", "0"], "--replay-ratio must be >= 1, got 0"),
    (["--reset-interval", "-3"], "--reset-interval must be >= 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--exploration-noise", "-0.1"], "--exploration-noise must be finite and >= 0, got -0.1"),
    (["--policy-noise", "-0.2"], "--policy-noise must be finite and >= 0, got -0.2"),
    (["--noise-clip", "-0.5"], "--noise-clip must be finite and >= 0, got -0.5"),
    (["--policy-frequency", "0"], "--policy-frequency must be >= 1, got 0"),
])
def test_bad_input_exits_with_one_line(args, fragment, log_dir):
    assert_one_line_error(run_script(SCRIPT, *args, log_dir=log_dir, timeout=60), fragment)
