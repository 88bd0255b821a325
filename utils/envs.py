"""`make_env("Hopper-v5", seed)` or `make_env("dmc:walker-walk", seed)`: one Gymnasium env either way.

DMC tasks come through Farama's Shimmy (`DmControlCompatibilityV0`) with the observation dict flattened in a fixed
(sorted) key order and cast to float32. Every env's Box action space is rescaled to [-1, 1] (as the paper's code
wraps every env in `RescaleAction(-1, 1)`), so policies, entropies and noise scales live in the same units on every
task. Shimmy already gives what the paper's protocol needs: `terminated` stays False on the suite's tasks and `truncated` is True at the 1000th step (time
limits are bootstrapped), `reset(seed=...)` reproduces, and `render_mode="rgb_array"` renders.

`get_physics_state` / `set_physics_state` read and write everything MuJoCo needs to reproduce the next step exactly
(the full integration state, warm start and time included, plus the per-episode task randomization that DMC keeps in
the model, and for Gym the lagging body positions that Ant's and Humanoid's rewards read), for mbpo_perfect_model.py.
`get_env_state` / `set_env_state` add the step counters and random generators, so a checkpointed run continues
mid-episode exactly as if it had never stopped.
"""
import ctypes.util
import os


def egl_problem() -> str | None:
    """Why MuJoCo cannot render headless through EGL here, or None if it can: an EGL display initializes on a device,
    as dm_control makes one. GPU machines often lack libEGL, and then MUJOCO_GL=egl breaks `import mujoco` itself; or
    have libEGL (libglvnd) without an EGL vendor behind it (NVIDIA's or Mesa's), and then `from dm_control import
    suite` fails at import ("Cannot initialize a headless EGL display")."""
    try:
        egl = ctypes.CDLL(ctypes.util.find_library("EGL") or "libEGL.so.1")
    except OSError:
        return "libEGL does not load here"
    egl.eglGetProcAddress.restype, egl.eglGetProcAddress.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    egl.eglInitialize.restype, egl.eglInitialize.argtypes = ctypes.c_uint, [ctypes.c_void_p] * 3
    egl.eglTerminate.argtypes = [ctypes.c_void_p]
    query_devices, get_display = (egl.eglGetProcAddress(name) for name in (b"eglQueryDevicesEXT", b"eglGetPlatformDisplayEXT"))
    devices, count = (ctypes.c_void_p * 16)(), ctypes.c_int(0)
    if query_devices and get_display:
        query_devices = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(query_devices)
        get_display = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p)(get_display)
        if not query_devices(len(devices), devices, ctypes.byref(count)):
            count.value = 0
    for device in devices[: count.value]:
        display = get_display(0x313F, device, None)  # EGL_PLATFORM_DEVICE_EXT
        if display and egl.eglInitialize(display, None, None):
            egl.eglTerminate(display)
            return None
    return "libEGL loads but initializes no EGL display: no vendor library (NVIDIA's or Mesa's) behind it"


# headless rendering through EGL (which also avoids dm_control's GLFW warning without a display) where an EGL display
# initializes; elsewhere no renderer at all, so that everything but rendering (--capture-video) works
EGL_PROBLEM = None  # unlooked-for where MUJOCO_GL is the user's
if "MUJOCO_GL" not in os.environ:
    EGL_PROBLEM = egl_problem()
    os.environ["MUJOCO_GL"] = "disable" if EGL_PROBLEM else "egl"

import gymnasium as gym  # noqa: E402  (after MUJOCO_GL, which mujoco and dm_control read on import)
import mujoco
import numpy as np
import torch
from gymnasium.envs.mujoco import MujocoEnv

DMC_PREFIX = "dmc:"
# DMC tasks randomize targets per episode by editing these model arrays (reacher, fish, finger, swimmer)
DMC_TASK_MODEL_FIELDS = ("geom_pos", "site_pos", "light_pos")


def dmc_tasks() -> dict[str, list[str]]:
    """Domain -> its task names, as the dm_control suite lists them."""
    from dm_control import suite

    tasks: dict[str, list[str]] = {}
    for domain, task in suite.ALL_TASKS:
        tasks.setdefault(domain, []).append(task)
    return tasks


def check_env_id(env_id: str) -> None:
    """Raise ValueError (one line, listing what is valid) for an id `make_env` cannot build."""
    if env_id.startswith(DMC_PREFIX):
        name = env_id[len(DMC_PREFIX):]
        tasks = dmc_tasks()
        domain, _, task = name.partition("-")
        if domain not in tasks:
            raise ValueError(f"unknown DMC domain in {env_id!r}; valid domains: {', '.join(sorted(tasks))}")
        if task not in tasks[domain]:
            raise ValueError(f"unknown DMC task in {env_id!r}; valid tasks for {domain}: {', '.join(tasks[domain])}")
        return
    try:
        gym.spec(env_id)
    except gym.error.Error as e:
        raise ValueError(f"unknown env {env_id!r} ({e}); use a Gymnasium id like Hopper-v5 or dmc:<domain>-<task>") from None


def is_dmc(env_id: str) -> bool:
    return env_id.startswith(DMC_PREFIX)


def make_env(env_id: str, seed: int, render_mode: str | None = None) -> gym.Env:
    """A Gymnasium id goes to `gym.make`; `dmc:<domain>-<task>` becomes a flat-float32-observation Gymnasium env;
    either way a Box action space becomes [-1, 1]."""
    check_env_id(env_id)
    if render_mode and os.environ["MUJOCO_GL"].lower() in ("disable", "disabled", "off", "false", "0"):
        raise ValueError(f"rendering needs an OpenGL backend for MuJoCo and MUJOCO_GL is {os.environ['MUJOCO_GL']!r}"
                         + (f" ({EGL_PROBLEM})" if EGL_PROBLEM else "") + "; install libEGL with a vendor (Debian/Ubuntu: "
                         "apt-get install libegl1 libegl-mesa0; NVIDIA: its driver's EGL library) or OSMesa (libosmesa6, "
                         "then MUJOCO_GL=osmesa)")
    if not is_dmc(env_id):
        env = gym.make(env_id, render_mode=render_mode)
    else:
        import shimmy

        gym.register_envs(shimmy)
        domain, _, task = env_id[len(DMC_PREFIX):].partition("-")
        env = gym.make(f"dm_control/{domain}-{task}-v0", task_kwargs={"random": seed}, render_mode=render_mode)
        env = gym.wrappers.FlattenObservation(env)
        space = env.observation_space
        env = gym.wrappers.TransformObservation(
            env,
            lambda obs: obs.astype(np.float32),
            gym.spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32), dtype=np.float32),
        )
    space = env.action_space
    if isinstance(space, gym.spaces.Box):  # the paper's code: RescaleAction(-1, 1) on every env
        if not is_dmc(env_id) and not isinstance(env.unwrapped, MujocoEnv):  # (a Discrete one the scripts refuse)
            raise ValueError(f"{env_id!r} is not a MuJoCo env: checkpoints keep the simulator's state, which these scripts read "
                             f"from MuJoCo; use a Gymnasium MuJoCo id (Hopper-v5) or dmc:<domain>-<task>")
        env = gym.wrappers.RescaleAction(env, np.full(space.shape, -1, space.dtype), np.full(space.shape, 1, space.dtype))
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def dm_control_env(env: gym.Env):
    """The dm_control Environment inside a `make_env("dmc:...")` env, or None for a Gymnasium MuJoCo env."""
    return getattr(env.unwrapped, "_env", None)  # shimmy's DmControlCompatibilityV0 keeps it there


def mujoco_model_data(env: gym.Env) -> tuple[mujoco.MjModel, mujoco.MjData]:
    """The raw MuJoCo model and data behind a Gymnasium MuJoCo env or a wrapped DMC env."""
    dmc_env = dm_control_env(env)
    if dmc_env is not None:
        return dmc_env.physics.model.ptr, dmc_env.physics.data.ptr
    return env.unwrapped.model, env.unwrapped.data


_INTEGRATION = mujoco.mjtState.mjSTATE_INTEGRATION


def _state_extras(env: gym.Env) -> list[np.ndarray]:
    """Arrays outside MuJoCo's integration state that the next step reads: for DMC the task's per-episode model edits;
    for Gym the body positions Ant's and Humanoid's x-velocity reward reads before stepping, which lag one substep
    behind qpos (mj_step computes them before it integrates), so mj_forward on the restored qpos would not match."""
    model, data = mujoco_model_data(env)
    if dm_control_env(env) is not None:
        return [getattr(model, f) for f in DMC_TASK_MODEL_FIELDS]
    return [data.xpos, data.xipos]


def get_physics_state(env: gym.Env) -> np.ndarray:
    """Flat float64 copy of the full simulator state: MuJoCo's integration state (qpos, qvel, act, warm start, time,
    ...) followed by `_state_extras` (DMC: target positions; Gym: the lagging body positions)."""
    model, data = mujoco_model_data(env)
    state = np.empty(mujoco.mj_stateSize(model, _INTEGRATION))
    mujoco.mj_getState(model, data, state, _INTEGRATION)
    return np.concatenate([state] + [array.ravel() for array in _state_extras(env)])


def set_physics_state(env: gym.Env, state: np.ndarray) -> None:
    """Restore a state from `get_physics_state` so the next `step` is bit-identical to the original's."""
    model, data = mujoco_model_data(env)
    size = mujoco.mj_stateSize(model, _INTEGRATION)

    def restore_extras():
        offset = size
        for array in _state_extras(env):
            array[:] = state[offset:offset + array.size].reshape(array.shape)
            offset += array.size

    restore_extras()  # DMC's model edits must be in place before mj_forward
    mujoco.mj_setState(model, data, state[:size], _INTEGRATION)
    mujoco.mj_forward(model, data)  # recompute derived quantities (sensors, positions) the observation reads
    mujoco.mj_setState(model, data, state[:size], _INTEGRATION)  # forward overwrote the warm start; put it back
    restore_extras()  # Gym's lagging body positions: forward recomputed them from qpos


def _layers(env: gym.Env) -> list:
    """The wrapper chain, the unwrapped env and (for DMC) the dm_control Environment inside it."""
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers + ([dm_control_env(env)] if dm_control_env(env) is not None else [])


def _rng_state(rng):
    return rng.get_state() if isinstance(rng, np.random.RandomState) else rng.bit_generator.state


def _set_rng_state(rng, state) -> None:
    if isinstance(rng, np.random.RandomState):
        rng.set_state(state)
    else:
        rng.bit_generator.state = state


def get_env_state(env: gym.Env) -> dict:
    """Everything the env's future depends on: physics, each layer's step counters and flags (TimeLimit's elapsed
    steps, DMC's step count, ...), and its random generators (resets, random actions, DMC's task randomness)."""
    dmc_env = dm_control_env(env)
    return {
        "physics": get_physics_state(env),
        "counters": [{k: v for k, v in vars(layer).items() if type(v) in (bool, int, float)} for layer in _layers(env)],
        "np_random": _rng_state(env.unwrapped.np_random),
        "action_space": _rng_state(env.action_space.np_random),
        "task_random": _rng_state(dmc_env.task.random) if dmc_env is not None else None,
    }


def set_env_state(env: gym.Env, state: dict) -> None:
    """Restore a `get_env_state` snapshot into an env built by the same `make_env` call."""
    for layer, counters in zip(_layers(env), state["counters"], strict=True):
        vars(layer).update(counters)
    _set_rng_state(env.unwrapped.np_random, state["np_random"])
    _set_rng_state(env.action_space.np_random, state["action_space"])
    if state["task_random"] is not None:
        _set_rng_state(dm_control_env(env).task.random, state["task_random"])
    set_physics_state(env, state["physics"])


# Termination rules for model rollouts (mbpo.py): each Gym env's own health rule, read off its next observation (..., obs)
# (Gymnasium v5 observations exclude the x (and y) position, so obs[0] is the torso height); DMC tasks never terminate.
TERMINATION_FNS = {
    "Hopper": lambda s: ~((s[..., 0] > 0.7) & (s[..., 1].abs() < 0.2) & (s[..., 1:].abs() < 100).all(-1)),
    "Walker2d": lambda s: ~((s[..., 0] > 0.8) & (s[..., 0] < 2.0) & (s[..., 1].abs() < 1.0)),
    "Ant": lambda s: ~(torch.isfinite(s[..., :27]).all(-1) & (s[..., 0] >= 0.2) & (s[..., 0] <= 1.0)),  # 27 = qpos[2:] + qvel
    "Humanoid": lambda s: ~((s[..., 0] > 1.0) & (s[..., 0] < 2.0)),
    "InvertedPendulum": lambda s: ~(torch.isfinite(s).all(-1) & (s[..., 1].abs() <= 0.2)),
    "HalfCheetah": lambda s: torch.zeros(s.shape[:-1], dtype=torch.bool, device=s.device),
}


def termination_fn(env_id: str):
    """The rollout termination rule of `env_id` (next observations (..., obs) -> terminated (...)), or None if it has none."""
    return TERMINATION_FNS.get("HalfCheetah" if is_dmc(env_id) else env_id.split("-v")[0])
