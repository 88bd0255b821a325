"""--compile computes what the eager scripts compute: same seed, same minibatches, a few updates of each script."""
import functools

import pytest
import torch

from conftest import assert_same_weights, run_in_process

TINY = {
    "sac.py": ["--hidden-dim", "16"],
    "td3.py": ["--hidden-dim", "16"],
    "mbpo.py": ["--hidden-dim", "16", "--model-hidden-dim", "16", "--model-train-steps", "4", "--model-train-freq", "5",
                "--rollouts-per-step", "8", "--replay-ratio", "2"],
    "mbpo_perfect_model.py": ["--hidden-dim", "16", "--model-train-freq", "5", "--rollouts-per-step", "8"],
    "alm.py": ["--hidden-dim", "16", "--model-hidden-dim", "16", "--latent-dim", "8"],
}
NETWORKS = {"sac.py": ("actor", "qf", "qf_target"), "td3.py": ("actor", "actor_target", "qf", "qf_target"),
            "mbpo.py": ("actor", "qf", "qf_target", "model"), "mbpo_perfect_model.py": ("actor", "qf", "qf_target"),
            "alm.py": ("encoder", "model", "reward_net", "classifier", "actor", "qf", "qf_target")}


@pytest.mark.parametrize("script", sorted(TINY))
def test_compiled_updates_match_eager_ones(script, log_dir, monkeypatch):
    """Dynamo's graphs (through AOT autograd, run eagerly: the "aot_eager" backend, so the test takes seconds rather
    than inductor's minutes of C++ compilation on a CPU) give the eager parameters to float32 rounding after 20
    learning steps."""
    common = ["--env", "InvertedPendulum-v5", "--total-timesteps", "60", "--learning-starts", "40", "--batch-size", "16",
              "--eval-episodes", "1", *TINY[script]]
    eager = run_in_process(script, *common, log_dir=log_dir / "eager")
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    compiled = run_in_process(script, *common, "--compile", log_dir=log_dir / "compiled")
    assert isinstance(compiled["update"], torch._dynamo.eval_frame.OptimizedModule) or hasattr(compiled["update"], "_torchdynamo_orig_callable")
    assert_same_weights(compiled, eager, NETWORKS[script], rtol=1e-4, atol=1e-5)
