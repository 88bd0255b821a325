import pytest
import torch

from alm import Args, ReplayBuffer, check_args
from conftest import smoke_run, assert_one_line_error, read_scalars, run_in_process, run_script

SCRIPT = "alm.py"
TAGS = [
    "charts/episodic_return", "charts/SPS", "charts/exploration_noise", "losses/alm_loss", "losses/kl",
    "losses/reward_loss", "losses/classifier_loss", "losses/qf_loss", "losses/qf_values", "losses/actor_loss",
    "model/latent_error", "eval/return", "diagnostics/q_estimate", "diagnostics/mc_return",
]
# small networks and batches: these tests check wiring, not learning
TINY = ["--learning-starts", "100", "--batch-size", "16", "--eval-episodes", "1", "--log-interval", "10",
        "--latent-dim", "16", "--hidden-dim", "32", "--model-hidden-dim", "32"]
NETWORKS = ("encoder", "encoder_target", "model", "reward_net", "classifier", "actor", "qf", "qf_target")
OPTIMIZERS = ("model_optimizer", "reward_optimizer", "q_optimizer", "actor_optimizer")


@pytest.mark.parametrize("env_id,steps,learning_starts", [("Hopper-v5", 400, 250), ("dmc:walker-walk", 1000, 800)])
def test_smoke_run_logs_finite_scalars(env_id, steps, learning_starts, log_dir):
    scalars = smoke_run(SCRIPT, steps, TAGS, "--env", env_id, "--eval-interval", "500", *TINY,
                        "--learning-starts", str(learning_starts), log_dir=log_dir)
    assert [step for step, _ in scalars["eval/return"]] == list(range(0, steps + 1, 500))
    assert all(0 < error for _, error in scalars["model/latent_error"])


def test_sequences_stay_inside_one_episode():
    rb = ReplayBuffer(10, 1, 1, torch.device("cpu"))
    for step in range(14):  # wraps around: holds steps 4..13, episodes end at steps 5, 8 and 12
        rb.add([[step]], [[0.0]], [0.0], [[step + 1]], [0.0], [float(step in (5, 8, 12))])
    obs, actions, next_obs = rb.sample_sequences(500, 3)
    assert obs.shape == (3, 500, 1)
    starts = {int(s) for s in obs[0, :, 0]}
    assert starts == {6, 9, 10}  # 4, 5 cross the end at 5; 7, 8 the one at 8; 11 the one at 12; 12, 13 run out of data
    torch.testing.assert_close(obs[1:], obs[:-1] + 1)  # consecutive
    torch.testing.assert_close(next_obs, obs + 1)


def count_model_calls(*args: str, log_dir) -> int:
    """Forward calls of the latent model during an in-process run (its input is latent + action: 16 + 3 = 19 wide)."""
    calls = []

    def hook(module, inputs, output):
        if type(module).__name__ == "GaussianMLP" and module.net[0].in_features == 19:
            calls.append(inputs[0].shape)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        run_in_process(SCRIPT, "--env", "Hopper-v5", "--total-timesteps", "130", "--horizon", "3", *TINY, *args,
                       log_dir=log_dir)
    finally:
        handle.remove()
    return len(calls)


def test_no_synthetic_rollouts_means_the_actor_never_calls_the_model(log_dir):
    updates, logs, horizon = 30, 3, 3  # steps 100..129, logged at 100, 110, 120
    with_rollouts = count_model_calls(log_dir=log_dir / "a")
    without = count_model_calls("--no-synthetic-rollouts", log_dir=log_dir / "b")
    # per update: horizon steps in the model objective, 1 for the classifier's fake latents, horizon in the actor's rollout
    assert with_rollouts == updates * (2 * horizon + 1) + logs
    assert without == updates * (horizon + 1) + logs


def test_reset_reinitializes_every_network_and_keeps_buffer(log_dir):
    common = ["--env", "Hopper-v5", "--total-timesteps", "150", *TINY]
    trained = run_in_process(SCRIPT, *common, log_dir=log_dir / "a")
    reset = run_in_process(SCRIPT, *common, "--reset-interval", "150", log_dir=log_dir / "b")  # reset after step 150
    assert reset["rb"].size == trained["rb"].size == 150
    torch.testing.assert_close(reset["rb"].obs[:150], trained["rb"].obs[:150])  # same data, buffer kept
    for name in NETWORKS:
        for new, old in zip(reset[name].parameters(), trained[name].parameters()):
            assert not torch.equal(new, old), name
    for net, target in (("encoder", "encoder_target"), ("qf", "qf_target")):
        for new, copy in zip(reset[net].parameters(), reset[target].parameters()):
            assert torch.equal(new, copy), target  # targets re-initialized as copies of the fresh networks
    assert all(not reset[name].state for name in OPTIMIZERS)
    assert read_scalars(log_dir / "b")["charts/resets"] == [(149, 1.0)]


def test_layer_norm_adds_a_second_layer_norm_to_critics_only(log_dir):
    args = ["--env", "Hopper-v5", "--total-timesteps", "110", *TINY]
    plain = run_in_process(SCRIPT, *args, log_dir=log_dir / "a")
    normed = run_in_process(SCRIPT, *args, "--layer-norm", log_dir=log_dir / "b")
    count = lambda net: sum(type(m).__name__ == "VectorizedLayerNorm" for m in net.modules())  # noqa: E731
    for name in ("qf", "qf_target"):
        assert count(plain[name]) == 1  # ALM's own, after the first hidden layer
        assert count(normed[name]) == 2  # after each hidden layer
    for name in NETWORKS:
        if name not in ("qf", "qf_target"):
            assert [type(m).__name__ for m in plain[name].modules()] == [type(m).__name__ for m in normed[name].modules()], name


@pytest.mark.parametrize("args,fragment", [
    (["--env", "NoSuchEnv-v0"], "unknown env 'NoSuchEnv-v0'"),
    (["--horizon", "two"], "--horizon"),
    (["--learning-starts", "2", "--horizon", "3"], "--learning-starts must be >= --horizon (3)"),
])
def test_bad_input_exits_with_one_line(args, fragment, log_dir):
    assert_one_line_error(run_script(SCRIPT, *args, log_dir=log_dir, timeout=60), fragment)


@pytest.mark.parametrize("flags,fragment", [
    ({"total_timesteps": 0}, "--total-timesteps must be >= 1, got 0"),
    ({"replay_ratio": 0}, "--replay-ratio must be >= 1, got 0"),
    ({"reset_interval": -3}, "--reset-interval must be >= 0"),
    ({"horizon": 0}, "--horizon must be >= 1, got 0"),
    ({"return_lambda": 1.5}, "--return-lambda must be in [0, 1], got 1.5"),
    ({"lambda_cost": -0.1}, "--lambda-cost must be finite and >= 0, got -0.1"),
    ({"exploration_noise_steps": 0}, "--exploration-noise-steps must be >= 1, got 0"),
    ({"noise_clip": -0.3}, "--noise-clip must be finite and >= 0, got -0.3"),
    ({"max_grad_norm": 0.0}, "--max-grad-norm must be finite and > 0, got 0.0"),
    ({"latent_dim": 0}, "--latent-dim must be >= 1, got 0"),
    ({"model_lr": 0.0}, "learning rates must be finite and > 0"),
])
def test_bad_flag_values_exit_with_one_line(flags, fragment):
    """check_args in-process (the subprocess test above shows its message reaches stderr as one line)."""
    with pytest.raises(SystemExit) as exit_:
        check_args(Args(**flags))
    assert isinstance(exit_.value.code, str) and "\n" not in exit_.value.code  # sys.exit(str): exit status 1
    assert exit_.value.code.startswith("error: ") and fragment in exit_.value.code
