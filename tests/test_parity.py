"""Where freelunch follows the paper's own code (STFL) rather than official MBPO or CleanRL: each test fails on the
choice it replaced. And the paper's two mitigations, resets and LayerNorm, as every script applies them."""
import math
import runpy

import numpy as np
import pytest
import torch

import mbpo
from conftest import ROOT, TINY, assert_same_weights, read_scalars, run_in_process
from utils import make_env
from utils.envs import mujoco_model_data

MBPO_TINY = TINY["mbpo.py"]
# what each script's reset returns to its initial weights (MBPO's learned model is kept, with its optimizer)
RESET_NETWORKS = {
    "sac.py": ("actor", "qf", "qf_target"),
    "td3.py": ("actor", "actor_target", "qf", "qf_target"),
    "mbpo.py": ("actor", "qf", "qf_target"),
    "mbpo_perfect_model.py": ("actor", "qf", "qf_target"),
    "alm.py": ("encoder", "encoder_target", "model", "reward_net", "classifier", "actor", "qf", "qf_target"),
}
KEPT_OPTIMIZERS = {"mbpo.py": ("model_optimizer",)}
SOFT = ("sac.py", "mbpo.py", "mbpo_perfect_model.py")  # the scripts with a temperature, reset too


@pytest.mark.parametrize("env_id", ["InvertedPendulum-v5", "Humanoid-v5", "dmc:quadruped-run"])
def test_every_action_space_is_unit_box_and_its_ends_drive_the_raw_env_to_its_bounds(env_id):
    env = make_env(env_id, 0)
    raw_space = env.env.action_space  # below make_env's RescaleAction
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    assert not ((raw_space.low == -1).all() and (raw_space.high == 1).all())  # these tasks have other bounds
    for end, raw_end in ((1.0, raw_space.high), (-1.0, raw_space.low)):
        env.step(np.full(env.action_space.shape, end, dtype=env.action_space.dtype))
        np.testing.assert_allclose(mujoco_model_data(env)[1].ctrl, raw_end, rtol=1e-6)


@pytest.mark.parametrize("script", sorted(RESET_NETWORKS))
def test_reset_returns_to_the_initial_weights_and_fresh_optimizers_keeping_the_buffer(script, log_dir):
    """As the paper's code re-runs its `init_models(seeds)`: a reset after training gives the weights the run
    started from, bit for bit (a run that never trained holds them), not new random ones; the replay buffer and
    MBPO's learned model stay."""
    common = ["--env", "Hopper-v5", *TINY[script]]
    initial = run_in_process(script, *common, "--total-timesteps", "100", log_dir=log_dir / "a")  # no update yet
    reset = run_in_process(script, *common, "--total-timesteps", "150", "--reset-interval", "150", log_dir=log_dir / "b")
    assert read_scalars(log_dir / "b")["charts/resets"] == [(149, 1.0)]
    assert_same_weights(reset, initial, RESET_NETWORKS[script])
    for name, optimizer in reset.items():
        if name.endswith("_optimizer"):  # a fresh optimizer: no step taken, no moment estimate
            trained = optimizer.step_count.item() > 0 and any(m.any() for m in optimizer.exp_avg)
            assert trained == (name in KEPT_OPTIMIZERS.get(script, ())), name
    if script in SOFT:
        assert reset["log_alpha"].item() == initial["log_alpha"].item() == 0.0
    assert reset["rb"].size == 150
    torch.testing.assert_close(reset["rb"].obs[0, :100], initial["rb"].obs[0, :100])  # the same data, kept


@pytest.mark.parametrize("script", sorted(RESET_NETWORKS))
def test_layer_norm_adds_one_after_each_critic_hidden_layer_and_nothing_else(script, log_dir):
    common = ["--env", "Hopper-v5", *TINY[script], "--total-timesteps", "1"]
    plain = run_in_process(script, *common, log_dir=log_dir / "a")
    normed = run_in_process(script, *common, "--layer-norm", log_dir=log_dir / "b")
    layers = lambda net: [type(m).__name__ for m in net.modules()]  # noqa: E731
    for name, net in normed.items():
        if name in ("qf", "qf_target"):  # ALM's critics always have one after the first hidden layer
            assert layers(plain[name]).count("VectorizedLayerNorm") == (1 if script == "alm.py" else 0), name
            assert layers(net).count("VectorizedLayerNorm") == 2, name
            # flax's epsilon for the paper's mitigation; ALM's own first one keeps official ALM's (torch's)
            epsilons = [m.eps for m in net.modules() if type(m).__name__ == "VectorizedLayerNorm"]
            assert epsilons == ([1e-5, 1e-6] if script == "alm.py" else [1e-6, 1e-6]), name
        elif isinstance(net, torch.nn.Module):
            assert layers(net) == layers(plain[name]), name


@pytest.mark.parametrize("ensemble_size,num_seeds", [(7, 1), (3, 1), (7, 4)])
def test_model_init_is_lecun_normal_truncated_at_2_std_with_the_members_in_the_fan_in(ensemble_size, num_seeds):
    """STFL's EnsembleDense: flax's lecun_normal on a (members, in, out) kernel, whose fan-in JAX counts as members *
    in, so every layer's std is 1/sqrt(members * in) (the truncated normal rescaled to it), values within 2 std of the
    untruncated normal, zero biases. The members are --ensemble-size's, never the seeds' (STFL vmaps its seeds apart)."""
    torch.manual_seed(0)
    model = mbpo.EnsembleDynamicsModel(11, 3, 200, ensemble_size, learned_logvar_bounds=False, num_seeds=num_seeds)
    for layer in (*model.layers, model.head):
        weight = layer.weight.detach()
        std = 1 / math.sqrt(ensemble_size * weight.shape[-2])
        # 4 standard errors of a sample std (a kurtosis of at most 3's: a truncated normal has less)
        assert weight.std().item() == pytest.approx(std, rel=4 / math.sqrt(2 * weight.numel())), tuple(weight.shape)
        bound = 2 * std / 0.87962566103423978  # 2 std of the normal before truncation
        assert bound * 0.99 < weight.abs().max().item() <= bound
        assert (layer.bias == 0).all()


def test_logvar_bounds_stay_fixed_by_default_and_learn_with_the_flag(log_dir):
    runs = {flags: run_in_process("mbpo.py", "--env", "InvertedPendulum-v5", "--total-timesteps", "160", *MBPO_TINY,
                                  *flags, log_dir=log_dir / str(len(flags)))["model"]
            for flags in ((), ("--learned-logvar-bounds",))}
    fixed, learned = runs[()], runs[("--learned-logvar-bounds",)]
    assert (fixed.max_logvar == 0.5).all() and (fixed.min_logvar == -10).all()
    assert not ((learned.max_logvar == 0.5).all() and (learned.min_logvar == -10).all())


def rebind(function, name: str, value):
    """`name`, a local of the script's main that `function` (defined in main) reads, rebound for every function of main
    (they share one cell)."""
    function.__closure__[function.__code__.co_freevars.index(name)].cell_contents = value


@pytest.mark.parametrize("flags,rows", [((), (1, 1)), (("--model-bootstrap",), (1, 7))])
def test_members_share_minibatches_by_default_and_draw_their_own_with_bootstrap(flags, rows, log_dir):
    """The paper's code feeds every member the same minibatch (drawn with replacement from the training split);
    official MBPO gives each member its own bootstrap: one row of indices per member."""
    run = run_in_process("mbpo.py", "--env", "InvertedPendulum-v5", "--total-timesteps", "100", *MBPO_TINY,
                         "--model-batch-size", "32", *flags, log_dir=log_dir)  # only the setup runs
    batches, model_step = [], run["model_step"]
    rebind(run["train_model"], "model_step", lambda obs, *rest: (batches.append(obs), model_step(obs, *rest)))
    run["train_model"]()
    # (seeds, 1, B, .) for all members, or (seeds, members, B, .)
    assert len(batches) == 20 and all(batch.shape[:-2] == rows for batch in batches)
    if not flags:  # drawn with replacement: 32 draws from 80 training rows repeat one with probability 0.998
        assert any(len(batch[0, 0].unique(dim=0)) < 32 for batch in batches)


@pytest.mark.parametrize("env_id,ranked", [("Humanoid-v5", 5000), ("Hopper-v5", 6000)])
def test_elites_ranked_on_5000_holdout_draws_on_humanoid_else_on_a_smaller_whole_holdout(env_id, ranked, log_dir):
    """The paper's code ranks on 5,000 draws from the holdout for Humanoid, 50,000 elsewhere
    (train_parallel.py:210-212); 30,000 transitions hold out 6,000."""
    run = run_in_process("mbpo.py", "--env", env_id, "--total-timesteps", "100", *MBPO_TINY, "--buffer-size", "30000",
                         "--ensemble-size", "2", "--num-elites", "1", "--model-hidden-dim", "8", log_dir=log_dir)
    rb, rng = run["rb"], np.random.default_rng(0)
    obs = rng.normal(size=(1, 30_000, rb.obs.shape[-1]))  # the one seed's
    rb.add(obs, rng.uniform(-1, 1, size=(1, 30_000, rb.actions.shape[-1])), np.zeros((1, 30_000)), obs, np.zeros((1, 30_000)))
    ranked_on, holdout_losses = [], run["holdout_losses"]
    rebind(run["train_model"], "holdout_losses", lambda idx, targets: (ranked_on.append(idx.shape[-1]), holdout_losses(idx, targets))[1])
    run["train_model"]()
    assert ranked_on == [ranked]


def test_model_error_uses_the_new_elites(log_dir):
    """The error logged at a retrain is measured with the elites that retrain picked, not the previous ones (at the
    first retrain these were members 0..num_elites-1)."""
    run = run_in_process("mbpo.py", "--env", "InvertedPendulum-v5", "--total-timesteps", "100", *MBPO_TINY,
                         "--ensemble-size", "2", "--num-elites", "1", "--model-lr", "1e-12", "--model-train-steps", "1",
                         log_dir=log_dir)  # only the setup runs; lr 1e-12: the retrain leaves the weights as they are
    model, rb = run["model"], run["rb"]
    with torch.no_grad():
        model.head.weight[0] *= 1000  # member 0 far off: the retrain must rank member 1 the elite
    elites, stats = run["train_model"]()
    assert elites.tolist() == [[1]]  # the one seed's
    obs, next_obs = rb.obs[:, : rb.size], rb.next_obs[:, : rb.size]
    with torch.no_grad():
        (predicted,), _ = run["predict"](obs[:, None], rb.actions[:, None, : rb.size], sample=False)
    member_errors = (100 * (predicted - next_obs).norm(dim=-1) / (next_obs - obs).norm(dim=-1)).mean(1).tolist()
    assert member_errors[0] > 10 * member_errors[1]
    assert stats["error_pct_holdout"].item() < 2 * member_errors[1]


@pytest.mark.parametrize("script", ["sac.py", "mbpo.py"])
def test_scripts_adam_is_torch_adam_to_float_rounding(script):
    """Each script's own Adam (tensor ops, step count on the device: one graph, one CUDA graph) takes the steps
    torch.optim.Adam takes, with its defaults and its L2 weight decay, on the same gradients."""
    adam = runpy.run_path(str(ROOT / script))["Adam"]
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(5, 3, generator=generator), torch.randn(3, generator=generator)]
    ours, theirs = [p.clone().requires_grad_() for p in params], [p.clone().requires_grad_() for p in params]
    optimizer = adam(ours, lr=3e-4, weight_decay=[1e-4, 0.0])
    reference = torch.optim.Adam([{"params": [theirs[0]], "weight_decay": 1e-4}, {"params": [theirs[1]]}], lr=3e-4)
    for _ in range(200):
        grads = [torch.randn(p.shape, generator=generator) for p in params]
        optimizer.step(grads)
        for p, g in zip(theirs, grads):
            p.grad = g.clone()
        reference.step()
    for mine, torch_adam in zip(ours, theirs):
        torch.testing.assert_close(mine.detach(), torch_adam.detach(), rtol=1e-5, atol=1e-6)
        assert not torch.equal(mine, params[0] if mine.dim() == 2 else params[1])  # it moved
    assert optimizer.step_count.item() == 200
