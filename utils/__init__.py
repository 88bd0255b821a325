"""What the algorithm scripts share about envs, and nothing else: `make_env` (a Gymnasium id, or a DMC task through
Shimmy, actions rescaled to [-1, 1]) and simulator-state save/restore (`get/set_physics_state` for
mbpo_perfect_model.py's rollouts, `get/set_env_state` for checkpoints), and each Gym env's termination rule for
mbpo.py's model rollouts (`termination_fn`)."""
from utils.envs import get_env_state, get_physics_state, make_env, set_env_state, set_physics_state, termination_fn

__all__ = ["make_env", "get_physics_state", "set_physics_state", "get_env_state", "set_env_state", "termination_fn"]
