import pytest
import torch

from alm import ReplayBuffer
from conftest import TINY, refusal, run_in_process, smoke_run

SCRIPT = "alm.py"
TAGS = [
    "charts/episodic_return", "charts/SPS", "charts/exploration_noise", "losses/alm_loss", "losses/kl",
    "losses/reward_loss", "losses/classifier_loss", "losses/qf_loss", "losses/qf_values", "losses/actor_loss",
    "model/latent_error", "eval/return", "diagnostics/q_estimate", "diagnostics/mc_return",
]


@pytest.mark.parametrize("env_id,steps,learning_starts", [("Hopper-v5", 400, 250), ("dmc:walker-walk", 1000, 800)])
def test_smoke_run_logs_finite_scalars(env_id, steps, learning_starts, log_dir):
    scalars = smoke_run(SCRIPT, steps, TAGS, "--env", env_id, "--eval-interval", "500", *TINY[SCRIPT],
                        "--learning-starts", str(learning_starts), log_dir=log_dir)
    assert [step for step, _ in scalars["eval/return"]] == list(range(0, steps + 1, 500))
    assert all(0 < error for _, error in scalars["model/latent_error"])


def test_sequences_stay_inside_one_episode_of_each_seed():
    rb = ReplayBuffer(10, 1, 1, torch.device("cpu"), 2)
    for step in range(14):  # wraps around: holds steps 4..13; seed 0's episodes end at steps 5, 8 and 12, seed 1's at 6, 10
        rb.add([[[step]], [[step]]], [[[0.0]]] * 2, [[0.0]] * 2, [[[step + 1]], [[step + 1]]], [[0.0]] * 2,
               [[float(step in (5, 8, 12))], [float(step in (6, 10))]])
    obs, actions, next_obs = rb.sample_sequences(500, 3)
    assert obs.shape == (2, 3, 500, 1)
    starts = [{int(s) for s in obs[seed, 0, :, 0]} for seed in range(2)]
    assert starts[0] == {6, 9, 10}  # 4, 5 cross the end at 5; 7, 8 the one at 8; 11 the one at 12; 12, 13 run out of data
    assert starts[1] == {4, 7, 8, 11}  # 5, 6 cross the end at 6; 9, 10 the one at 10
    torch.testing.assert_close(obs[:, 1:], obs[:, :-1] + 1)  # consecutive
    torch.testing.assert_close(next_obs, obs + 1)


def count_model_calls(*args: str, log_dir) -> int:
    """Forward calls of the latent model during an in-process run (its input is latent + action: 16 + 3 = 19 wide)."""
    calls = []

    def hook(module, inputs, output):
        if type(module).__name__ == "GaussianMLP" and module.net[0].weight.shape[1] == 19:
            calls.append(inputs[0].shape)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        run_in_process(SCRIPT, "--env", "Hopper-v5", "--total-timesteps", "130", "--horizon", "3", *TINY[SCRIPT],
                       *args, log_dir=log_dir)
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


def test_a_checkpoint_with_the_old_loop_state_is_refused_in_one_line(log_dir):
    """alm.py before issue 18 saved an update count in the loop state: such a checkpoint cannot resume exactly."""
    run_in_process(SCRIPT, "--env", "InvertedPendulum-v5", "--total-timesteps", "120", "--checkpoint-interval", "100",
                   *TINY[SCRIPT], log_dir=log_dir)
    path = next(log_dir.glob("*/checkpoint.pt"))
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["loop"] = (*checkpoint["loop"], 7)
    torch.save(checkpoint, path)
    message = refusal(SCRIPT, "--resume", str(path.parent), "--total-timesteps", "200", log_dir=log_dir)
    assert "was written by an older alm.py" in message


def test_each_seed_starts_from_its_single_seed_runs_weights(log_dir):
    common = ["--env", "InvertedPendulum-v5", "--total-timesteps", "1", *TINY[SCRIPT]]
    pair = run_in_process(SCRIPT, *common, "--num-seeds", "2", log_dir=log_dir / "a")
    second = run_in_process(SCRIPT, *common, "--seed", "2", log_dir=log_dir / "b")
    for name in ("encoder", "encoder_target", "model", "reward_net", "classifier", "actor", "qf", "qf_target"):
        for key, tensor in pair[name].state_dict().items():  # seed-major: seed 2's members are the second half
            assert torch.equal(tensor[len(tensor) // 2:], second[name].state_dict()[key]), f"{name}.{key}"


def test_each_seed_clips_its_own_gradient_norm(log_dir):
    """--max-grad-norm bounds each seed's gradient norm on its own: one seed's huge gradient leaves another's as it is."""
    run = run_in_process(SCRIPT, "--env", "InvertedPendulum-v5", "--total-timesteps", "1", "--num-seeds", "2",
                         "--max-grad-norm", "1", *TINY[SCRIPT], log_dir=log_dir)
    actor, optimizer, steps = run["actor"], run["actor_optimizer"], []
    optimizer.step = steps.append  # the gradients the Adam step gets
    z, weights = torch.randn(2, 8, 16), torch.tensor([1e4, 1e-4])
    run["clip_grad_step"](optimizer, actor(z).sum((1, 2)) * weights)
    raw = torch.autograd.grad((actor(z).sum((1, 2)) * weights).sum(), optimizer.params)
    seed = lambda grads, k: torch.cat([g[k].flatten() for g in grads])  # noqa: E731
    assert seed(raw, 0).norm() > 100 and seed(raw, 1).norm() < 0.1
    torch.testing.assert_close(seed(steps[0], 0), seed(raw, 0) / seed(raw, 0).norm())  # clipped to norm 1
    torch.testing.assert_close(seed(steps[0], 1), seed(raw, 1))  # untouched
