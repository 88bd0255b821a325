"""What every script stores at an episode's end: a time limit is bootstrapped (its transition is not terminal), a real
termination is not. Every DMC episode ends by its time limit at step 1000; a Gym Hopper under random actions falls
(terminates) long before its own."""
import pytest
import torch

from conftest import TINY, run_in_process

SCRIPTS = sorted(TINY)


def episode_ends(rb) -> torch.Tensor:
    """Where an episode ended in the buffer: the next stored transition does not start from this one's next_obs (the
    env was reset), in the first seed's buffer. The last stored transition has no successor and is left out."""
    return (rb.next_obs[0, : rb.size - 1] != rb.obs[0, 1: rb.size]).any(1)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_dmc_time_limit_is_stored_as_not_terminal(script, log_dir):
    """1001 steps: the episode truncated at its 1000th step (index 999, stored while learning) and one more."""
    run = run_in_process(script, "--env", "dmc:pendulum-swingup", "--total-timesteps", "1001", *TINY[script],
                         "--learning-starts", "990", "--eval-interval", "5000", log_dir=log_dir)
    rb = run["rb"]
    assert rb.size == 1001
    assert episode_ends(rb).nonzero().flatten().tolist() == [999]  # the time limit, and the only end
    terminal = rb.terminations[0, : rb.size].nonzero().flatten().tolist()
    assert terminal == [], f"stored as terminal at {terminal}"
    if script == "alm.py":  # its sequences still stop at the episode's end
        assert rb.episode_ends[: rb.size].nonzero().flatten().tolist() == [999]


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_gym_termination_is_stored_as_terminal(script, log_dir):
    """300 steps of Hopper-v5 (learning from step 250): several falls, each stored as terminal, nothing else."""
    run = run_in_process(script, "--env", "Hopper-v5", "--total-timesteps", "300", *TINY[script],
                         "--learning-starts", "250", "--eval-interval", "5000", log_dir=log_dir)
    rb = run["rb"]
    ends = episode_ends(rb).nonzero().flatten().tolist()
    assert len(ends) >= 3
    assert rb.terminations[0, : rb.size - 1].nonzero().flatten().tolist() == ends  # terminal exactly where it fell
    if script == "alm.py":
        assert rb.episode_ends[: rb.size - 1].nonzero().flatten().tolist() == ends
