import pytest

from conftest import TINY, run_in_process, smoke_run

SCRIPT = "sac.py"
TAGS = [
    "charts/episodic_return", "charts/SPS", "losses/qf_loss", "losses/qf_values", "losses/actor_loss",
    "losses/alpha", "eval/return", "diagnostics/q_estimate", "diagnostics/mc_return",
]


@pytest.mark.parametrize("env_id,steps", [("Hopper-v5", 400), ("dmc:walker-walk", 1000)])
def test_smoke_run_logs_finite_scalars(env_id, steps, log_dir):
    scalars = smoke_run(SCRIPT, steps, TAGS, "--env", env_id, "--eval-interval", "500", *TINY[SCRIPT], log_dir=log_dir)
    assert [step for step, _ in scalars["eval/return"]] == list(range(0, steps + 1, 500))


def test_replay_ratio_is_gradient_updates_per_env_step(log_dir):
    run = run_in_process(SCRIPT, "--env", "Hopper-v5", "--total-timesteps", "150", "--replay-ratio", "3", *TINY[SCRIPT],
                         log_dir=log_dir)
    for optimizer in (run["q_optimizer"], run["actor_optimizer"], run["a_optimizer"]):
        assert optimizer.step_count.item() == 3 * (150 - 100)
