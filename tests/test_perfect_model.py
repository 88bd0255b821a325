
import numpy as np
import pytest
import torch

import mbpo_perfect_model
from conftest import TINY, read_scalars, rows_in, run_in_process, smoke_run
from utils import get_physics_state, make_env

SCRIPT = "mbpo_perfect_model.py"
TAGS = ["model/error_pct", "model/reward_error", "eval/return", "diagnostics/q_estimate", "diagnostics/mc_return",
        "losses/qf_loss", "losses/actor_loss", "time/env_frac", "time/model_error_frac", "time/rollouts_frac",
        "time/sac_updates_frac"]


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5", "dmc:walker-walk",
                                    "dmc:reacher-hard", "dmc:fish-swim"])  # Ant, Humanoid: lagging body positions
def test_perfect_model_step_is_exact(env_id):
    """From the stored states of >= 1200 real transitions (random actions; episodes cut by terminations, by DMC's time
    limit at 1000 steps and by an early reset), the script's simulator step gives the real next observation, reward
    and termination bit for bit, and its next state is the real one (so longer rollouts stay exact)."""
    env, sim = make_env(env_id, 0), mbpo_perfect_model.make_simulator(env_id, 1)
    states, actions, next_obs, rewards, terminations, after_reset = [], [], [], [], [], [True]
    for step in range(1200):
        states.append(get_physics_state(env))
        actions.append(env.action_space.sample())
        obs, reward, terminated, truncated, _ = env.step(actions[-1])
        next_obs.append(obs)
        rewards.append(reward)
        terminations.append(terminated)
        after_reset.append(terminated or truncated or step == 100)
        if after_reset[-1]:
            env.reset()
    predicted = mbpo_perfect_model.simulator_step(sim, np.stack(states), np.stack(actions))
    np.testing.assert_array_equal(predicted[0], np.stack(next_obs))
    np.testing.assert_array_equal(predicted[1], np.array(rewards))
    np.testing.assert_array_equal(predicted[2], np.array(terminations))
    continued = ~np.array(after_reset[1:-1])
    np.testing.assert_array_equal(predicted[3][:-1][continued], np.stack(states[1:])[continued])
    assert sum(after_reset) >= 3  # DMC: the early reset and the time limit at step 1100
    terminal = np.flatnonzero(terminations).tolist()
    assert terminal == [] if env_id.startswith("dmc:") else len(terminal) >= 3, terminal  # DMC tasks never terminate


@pytest.mark.parametrize("env_id", ["InvertedPendulum-v5", "dmc:walker-walk"])
def test_smoke_run_logs_finite_scalars(env_id, log_dir):
    scalars = smoke_run(SCRIPT, 220, TAGS, "--env", env_id, *TINY[SCRIPT], log_dir=log_dir)
    assert [step for step, _ in scalars["model/error_pct"]] == [100, 150, 200]  # every --model-train-freq
    # 0 up to float32 rounding of DMC's float64 random actions in the buffer
    assert all(value < 1e-4 for _, value in scalars["model/error_pct"] + scalars["model/reward_error"])


def test_model_error_is_zero_on_stored_transitions(log_dir):
    """The state buffer follows the real buffer's FIFO slots (here wrapped around), each seed's its own transitions':
    every stored transition is reproduced exactly, and 3-step rollouts add more synthetic transitions than 1-step ones
    would."""
    run = run_in_process(SCRIPT, "--env", "InvertedPendulum-v5", "--total-timesteps", "220", *TINY[SCRIPT],
                         "--buffer-size", "150", "--rollout-length", "3", "--num-seeds", "2", log_dir=log_dir)
    rb = run["rb"]
    assert rb.size == 150 and rb.pos == 70
    error_pct, reward_error = run["model_errors"](torch.arange(rb.size).expand(2, -1))
    assert error_pct.tolist() == [0.0, 0.0] and reward_error.tolist() == [0.0, 0.0]
    assert all(120 * 16 < size <= 3 * 120 * 16 for size in run["synthetic_rb"].size.tolist())


def test_no_synthetic_rollouts_means_real_batches_only(log_dir):
    run = run_in_process(SCRIPT, "--env", "InvertedPendulum-v5", "--total-timesteps", "160", *TINY[SCRIPT],
                         "--no-synthetic-rollouts", log_dir=log_dir)
    assert run["synthetic_rb"].size.tolist() == [0]
    rb = run["rb"]
    _, _, _, next_obs, _ = run["sample_batch"]()
    assert next_obs.shape[:2] == (1, 32) and rows_in(next_obs[0], rb.next_obs[0, : rb.size]).all()
    assert read_scalars(log_dir).get("model/error_pct")  # the simulator is still measured
