"""--num-seeds S: S independent runs in one process, stacked on a leading seed axis. A seed's update reads and writes
its own slice alone and equals the single-seed update; each seed's envs, initial weights, logs and run directory are
its single-seed run's; a 2-seed run killed and resumed equals one that never stopped."""
import copy
import itertools
import signal
import time

import pytest
import torch
import torch.utils._pytree as pytree

import speed
from conftest import TINY, read_scalars, run_in_process, run_script
from test_resume import TINY as RESUME_TINY
from test_resume import assert_same_state, start, wait_for

SCRIPTS = ["sac.py", "td3.py", "mbpo.py", "mbpo_perfect_model.py", "alm.py"]


def snapshot(run: dict) -> list:
    """Copies of the states of everything the update changes (the run's `agent`: modules, optimizers, the temperature
    where there is one), as the script's own state_of takes them: all have a leading, seed-major axis but Adam's step
    count, which the seeds share."""
    return copy.deepcopy(run["state_of"](run["agent"]))


def restore(run: dict, saved: list):
    run["load_state"](run["agent"], saved)


def tensors(saved: list) -> list[torch.Tensor]:
    return [x for x in pytree.tree_leaves(saved) if torch.is_tensor(x) and x.dim() > 0]


def seed_slice(x: torch.Tensor, k: int, num_seeds: int) -> torch.Tensor:
    return x.reshape(num_seeds, -1)[k]


class SharedNoise:
    """Every random draw of the updates (torch.distributions' normal, randn_like, rand), the same for each seed: the
    i-th draw of shape (S, ...) is a fixed (...) tensor repeated over the seed axis, so an S-seed update and a
    single-seed one see the same noise."""

    def __init__(self, monkeypatch):
        self.calls = itertools.count()
        draw = torch.randn, torch.rand
        monkeypatch.setattr(torch.distributions.normal, "_standard_normal", lambda shape, **kw: self.draw(draw[0], shape, **kw))
        monkeypatch.setattr(torch, "randn_like", lambda x, **kw: self.draw(draw[0], x.shape, dtype=x.dtype, device=x.device))
        monkeypatch.setattr(torch, "rand", lambda *shape, **kw: self.draw(draw[1], shape[0] if len(shape) == 1 else shape, **kw))

    def draw(self, sample, shape, dtype=None, device=None, **_):
        shape = tuple(shape)
        base = sample(shape[1:], generator=torch.Generator().manual_seed(next(self.calls)), dtype=dtype)
        return base.to(device).expand(shape).clone()


def updater(script: str, run: dict):
    """The update as the script's loop calls it, fresh (td3.py's first call updates the actor too)."""
    return speed.update_call(script, run)[0]


def tiny(script: str, *args: str) -> list[str]:
    return ["--env", "InvertedPendulum-v5", *TINY[script], *args]


@pytest.fixture(scope="module")
def three_seed_runs(tmp_path_factory):
    """Each script after 130 steps (30 of them learning) with seeds 1-3 in one process."""
    return {script: run_in_process(script, *tiny(script, "--num-seeds", "3", "--total-timesteps", "130"),
                                   log_dir=tmp_path_factory.mktemp(script)) for script in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS)
def test_changing_one_seeds_minibatch_leaves_the_other_seeds_bit_identical(script, three_seed_runs):
    run = three_seed_runs[script]
    _, sample = speed.update_call(script, run)
    before, data, other = snapshot(run), sample(), sample()
    torch.manual_seed(0)
    updater(script, run)(data)
    after = tensors(snapshot(run))
    restore(run, before)
    changed = pytree.tree_map(lambda x, y: torch.cat([x[:1], y[1:2], x[2:]]), data, other)  # seed 2's minibatch alone
    torch.manual_seed(0)
    updater(script, run)(changed)
    after_changed = tensors(snapshot(run))
    restore(run, before)
    moved = False
    for a, b in zip(after, after_changed, strict=True):
        for k in (0, 2):
            assert torch.equal(seed_slice(a, k, 3), seed_slice(b, k, 3))
        moved |= not torch.equal(seed_slice(a, 1, 3), seed_slice(b, 1, 3))
    assert moved, "seed 2's new minibatch changed nothing"


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_seeds_update_equals_the_single_seed_update(script, three_seed_runs, log_dir, monkeypatch):
    """Seed k's slice after a 3-seed update equals a 1-seed run's update from seed k's state on seed k's minibatch, with
    the same noise, to float32 round-off: the stacked matmuls may sum in another order (measured on the CPU: at
    most 2.4e-7 apart, over every script's weights and Adam moments; allowed: 1e-6 + 1e-5 relative)."""
    stacked = three_seed_runs[script]
    single = run_in_process(script, *tiny(script, "--total-timesteps", "130"), log_dir=log_dir)
    _, sample = speed.update_call(script, stacked)
    before, data = snapshot(stacked), sample()
    noise = SharedNoise(monkeypatch)
    updater(script, stacked)(data)
    after = tensors(snapshot(stacked))
    restore(stacked, before)
    single_before = snapshot(single)
    for k in range(3):
        restore(single, pytree.tree_map(lambda x, y: seed_slice(x, k, 3).reshape(y.shape) if y.dim() else x, before, single_before))
        noise.calls = itertools.count()
        updater(script, single)(pytree.tree_map(lambda x: x[k: k + 1], data))
        for x, y in zip(after, tensors(snapshot(single)), strict=True):
            torch.testing.assert_close(seed_slice(x, k, 3), y.flatten(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_seed_is_its_single_seed_run_in_envs_weights_and_logs(script, log_dir):
    """Seeds 3 and 4 in one process: seed 4's transitions (random phase), initial weights, first evaluation and run
    directory are those of `--seed 4` alone."""
    args = tiny(script, "--total-timesteps", "90", "--learning-starts", "90")
    pair = run_in_process(script, *args, "--seed", "3", "--num-seeds", "2", log_dir=log_dir / "pair" / "seed_{seed}")
    alone = run_in_process(script, *args, "--seed", "4", log_dir=log_dir / "alone")
    for field in pair["rb"].fields:
        assert torch.equal(getattr(pair["rb"], field)[1, :90], getattr(alone["rb"], field)[0, :90]), field
    networks = [m for m in (*pair["agent"], pair.get("model")) if isinstance(m, torch.nn.Module)]
    networks_alone = [m for m in (*alone["agent"], alone.get("model")) if isinstance(m, torch.nn.Module)]
    for net, net_alone in zip(networks, networks_alone, strict=True):  # no update ran: the initial weights
        for x, y in zip(net.state_dict().values(), net_alone.state_dict().values(), strict=True):
            assert torch.equal(seed_slice(x, 1, 2), y.flatten())
    (run_dir,) = (log_dir / "pair" / "seed_4").iterdir()  # --log-dir's {seed} is each seed's number
    assert run_dir.name.split("__")[2] == "4"
    assert read_scalars(log_dir / "pair" / "seed_4")["eval/return"] == read_scalars(log_dir / "alone")["eval/return"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_seed_draws_its_own_minibatch_indices(script, three_seed_runs):
    """The paper's code shares one minibatch's indices across its vmapped seeds; here each seed draws its own."""
    run = three_seed_runs[script]
    for rb in (run["rb"], run.get("synthetic_rb", run["rb"])):
        saved = rb.rewards.clone()
        rb.rewards.copy_(torch.arange(rb.rewards.shape[1]).expand_as(rb.rewards))  # each row's reward: its index
        rewards = rb.sample(64)[2]
        rb.rewards.copy_(saved)
        assert rewards.shape == (3, 64)
        assert not torch.equal(rewards[0], rewards[1]) and not torch.equal(rewards[1], rewards[2])


@pytest.mark.parametrize("script", ["sac.py", "mbpo.py"])
def test_two_seed_run_killed_and_resumed_equals_uninterrupted_run(script, tmp_path):
    """As test_resume.py's single-seed check: SIGKILL after a checkpoint, --resume with the first seed's run directory;
    the checkpoint (every seed) and each seed's scalars equal those of a run that never stopped."""
    args = [*RESUME_TINY[script], "--num-seeds", "2", "--total-timesteps", "600", "--checkpoint-interval", "200"]
    assert run_script(script, *args, log_dir=tmp_path / "a" / "seed_{seed}").returncode == 0
    killed = start(script, *args, log_dir=tmp_path / "b" / "seed_{seed}")
    wait_for(lambda: any((tmp_path / "b").glob("seed_1/*/checkpoint.pt")), killed)
    time.sleep(0.5)  # let it log past the checkpoint, so the resumed run must drop those events
    assert killed.poll() is None, "finished before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    (first,) = (tmp_path / "b" / "seed_1").iterdir()
    assert not any((tmp_path / "b" / "seed_2").glob("*/checkpoint.pt"))  # one checkpoint holds both seeds
    resumed = run_script(script, "--resume", str(first), log_dir=tmp_path / "unused")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at step" in resumed.stdout
    a, b = (torch.load(next((tmp_path / d / "seed_1").glob("*/checkpoint.pt")), weights_only=False) for d in "ab")
    assert a["next_step"] == b["next_step"] == 600
    assert_same_state({k: v for k, v in a.items() if k not in ("args", "run_dirs")},
                      {k: v for k, v in b.items() if k not in ("args", "run_dirs")})
    for seed in (1, 2):
        scalars_a, scalars_b = (read_scalars(tmp_path / d / f"seed_{seed}") for d in "ab")
        for tag in scalars_a:  # same steps (none duplicated by the resume), same values
            if not tag.startswith(("charts/SPS", "time/")):
                assert scalars_a[tag] == scalars_b[tag], (seed, tag)
