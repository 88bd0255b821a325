import numpy as np
import pytest

from utils import get_env_state, get_physics_state, make_env, set_env_state, set_physics_state
from utils.envs import check_env_id


@pytest.mark.parametrize("domain,task", [("walker", "walk"), ("cheetah", "run"), ("reacher", "hard")])
def test_wrapper_matches_raw_dm_control(domain, task):
    from dm_control import suite

    seed = 7
    env = make_env(f"dmc:{domain}-{task}", seed)
    raw = suite.load(domain, task, task_kwargs={"random": seed})
    obs, _ = env.reset(seed=seed)
    timestep = raw.reset()
    keys = sorted(timestep.observation)  # the wrapper's fixed key order

    def flat(observation):
        return np.concatenate([np.asarray(observation[k]).ravel() for k in keys]).astype(np.float32)

    np.testing.assert_array_equal(obs, flat(timestep.observation))
    actions = np.random.default_rng(0).uniform(-1, 1, size=(1000,) + env.action_space.shape)
    for step, action in enumerate(actions, start=1):
        obs, reward, terminated, truncated, _ = env.step(action)
        timestep = raw.step(action)
        np.testing.assert_array_equal(obs, flat(timestep.observation))
        assert reward == timestep.reward
        assert terminated is False
        assert truncated == (step == 1000)  # the 1000th step is a time limit, bootstrapped through
    assert timestep.last()


def test_dmc_spaces_dtype_shape_and_bounds():
    from dm_control import suite

    env = make_env("dmc:walker-walk", 0)
    spec = suite.load("walker", "walk").action_spec()
    assert env.observation_space.dtype == np.float32 and env.observation_space.shape == (24,)
    np.testing.assert_array_equal(env.action_space.low, spec.minimum)
    np.testing.assert_array_equal(env.action_space.high, spec.maximum)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (24,) and env.observation_space.contains(obs)


def test_seeding_reproduces():
    first = [make_env("dmc:reacher-hard", 3).reset(seed=3)[0] for _ in range(2)]
    np.testing.assert_array_equal(*first)
    other = make_env("dmc:reacher-hard", 4).reset(seed=4)[0]
    assert not np.array_equal(first[0], other)


def test_rgb_array_rendering():
    env = make_env("dmc:cartpole-balance", 0, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8 and frame.std() > 0


@pytest.mark.parametrize("env_id", ["Hopper-v5", "dmc:walker-walk", "dmc:reacher-hard"])
def test_physics_state_get_set_reproduces_next_step(env_id):
    """Restoring a stored state into a second instance gives bit-identical next observation and reward."""
    env, copy = make_env(env_id, 0), make_env(env_id, 1)
    env.reset(seed=0)
    copy.reset(seed=1)  # different episode (and, for reacher, a different target) until the state is set
    for _ in range(50):
        state, action = get_physics_state(env), env.action_space.sample()
        set_physics_state(copy, state)
        np.testing.assert_array_equal(get_physics_state(copy), state)
        obs, reward, terminated, _, _ = env.step(action)
        copy_obs, copy_reward, _, _, _ = copy.step(action)
        np.testing.assert_array_equal(obs, copy_obs)
        assert reward == copy_reward
        if terminated:
            env.reset()


@pytest.mark.parametrize("env_id", ["Hopper-v5", "InvertedPendulum-v5", "dmc:walker-walk", "dmc:reacher-hard"])
def test_env_state_continues_mid_episode_exactly(env_id):
    """A fresh env given a snapshot behaves like the original: steps, time limits, resets and random actions."""
    env = make_env(env_id, seed=1)
    for _ in range(37):
        env.step(env.action_space.sample())
    copy = make_env(env_id, seed=2)
    set_env_state(copy, get_env_state(env))

    def trajectory(e):
        out = []
        for _ in range(1100):  # past DMC's 1000-step limit and through Gym's terminations and resets
            action = e.action_space.sample()
            obs, reward, terminated, truncated, _ = e.step(action)
            out += [action, obs, reward, terminated, truncated]
            if terminated or truncated:
                out.append(e.reset()[0])
        return out

    for x, y in zip(trajectory(env), trajectory(copy), strict=True):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("env_id,expected", [
    ("dmc:walker-fly", "valid tasks for walker: stand, walk, run"),
    ("dmc:nosuch-task", "valid domains: acrobot"),
    ("NoSuchEnv-v0", "unknown env 'NoSuchEnv-v0'"),
])
def test_unknown_id_fails_with_one_line(env_id, expected):
    with pytest.raises(ValueError) as error:
        check_env_id(env_id)
    assert expected in str(error.value) and "\n" not in str(error.value)
