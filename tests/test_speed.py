"""The speed benchmark's analytic FLOP count is what the scripts' updates actually execute (torch's own counter)."""
import sys

import pytest
from torch.utils.flop_counter import FlopCounterMode

from conftest import ROOT, run_in_process

sys.path.insert(0, str(ROOT / "benchmark"))
import speed  # noqa: E402

TINY = ["--env", "Hopper-v5", "--batch-size", "64", "--learning-starts", "64", "--total-timesteps", "65",
        "--eval-episodes", "1", "--checkpoint-interval", "0"]


@pytest.mark.parametrize("script,extra", [("sac.py", []), ("mbpo.py", ["--model-train-steps", "1", "--rollouts-per-step", "1"])])
def test_analytic_flops_match_the_executed_update(script, extra, log_dir):
    run = run_in_process(script, *TINY, *extra, log_dir=log_dir)
    with FlopCounterMode(display=False) as counter:
        run["update"](run["rb"].sample(64))
    obs_dim, act_dim = run["obs_dim"], run["act_dim"]
    assert counter.get_total_flops() == speed.sac_update_flops(obs_dim, act_dim, 256, 64)


def test_td3_executes_only_its_count_plus_the_unused_second_critic(log_dir):
    """TD3's actor ascends Q1 alone; the twin module also runs Q2 (forward and input gradient) in that pass."""
    run = run_in_process("td3.py", *TINY, log_dir=log_dir)
    with FlopCounterMode(display=False) as counter:
        for update_policy in (False, True):
            run["update"](run["rb"].sample(64), update_policy)
    critic = [run["obs_dim"] + run["act_dim"], 256, 256, 1]
    unused_q2 = 64 * (speed.forward_flops(critic) + speed.backward_flops(critic, weights=False, first_input=True))
    assert counter.get_total_flops() == 2 * speed.td3_update_flops(run["obs_dim"], run["act_dim"], 256, 64) + unused_q2


def test_alm_analytic_flops_match_the_executed_update(log_dir):
    sizes = {"latent": 16, "hidden": 32, "model_hidden": 48, "horizon": 3}
    run = run_in_process("alm.py", *TINY, "--latent-dim", "16", "--hidden-dim", "32", "--model-hidden-dim", "48",
                         "--horizon", "3", log_dir=log_dir)
    rb = run["rb"]
    with FlopCounterMode(display=False) as counter:
        run["update"]((rb.sample_sequences(64, 3), rb.sample(64)), 0.1)
    assert counter.get_total_flops() == speed.alm_update_flops(run["obs_dim"], run["act_dim"], 64, **sizes)
