"""DMC-to-Gymnasium wrappers shared by the algorithm scripts (nothing else lives here)."""
from utils.envs import get_env_state, get_physics_state, make_env, set_env_state, set_physics_state

__all__ = ["make_env", "get_physics_state", "set_physics_state", "get_env_state", "set_env_state"]
