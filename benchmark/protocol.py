"""The protocols benchmark/sweep.py runs and benchmark/report.py reads, as data: which scripts with which flags, on which
tasks, for how many steps and seeds; and the layout of a sweep's log root. Measured times: benchmark/results/timings.md.

- paper (log root runs/sweep): the paper's runs. MBPO against SAC and ALM against TD3 on Gym (InvertedPendulum,
  Hopper, HalfCheetah, Walker2d, Ant, Humanoid `-v5`, 300k steps) and DMC15 (500k steps), 6 seeds, evaluation every
  5k steps; on DMC also its diagnoses: ALM without rollouts, MBPO with resets every 128k steps or LayerNorm, SAC at
  replay ratio 20 and MBPO with a perfect model. 1080 runs: a GPU-cluster job.
- quick (runs/sweep_quick): sac, mbpo and mbpo without synthetic rollouts on InvertedPendulum-v5, dmc:walker-run and
  dmc:cheetah-run, seeds 1 and 2, 3000 steps with 1000 random ones (paper: 10k), evaluated every 500 steps (10
  episodes); both MBPOs train the model 1000 gradient steps per retrain (`--model-train-steps 1000`), a fifth of the
  paper code's 5000. It exercises the pipeline end to end and may show a first trend; it cannot settle the paper's
  300k/500k-step question. InvertedPendulum is the Gym task where MBPO reaches 1000 within 3k steps
  (benchmark/results/mbpo.md); walker-run and cheetah-run are dense-reward DMC15 tasks. Official MBPO's early stopping
  (`--model-early-stopping`) would be cheaper but leaves walker-run's first model untrained (timings.md).
- atlas (runs/sweep_atlas): the paper's mechanism instead of its returns, how wrong the learned model is on each of
  the 21 tasks. mbpo.py without synthetic rollouts at replay ratio 1 (SAC collects the data) trains and measures the
  model exactly as MBPO does (the paper code's 5000 steps per retrain), retraining at steps 5000 (after 5000 random
  ones) and 10000, for 10001 steps, seed 1; beside it the "Fixing That Free Lunch" model (--normalize-targets
  --predict-next-state) on the 6 DMC tasks where MBPO reportedly fails and on Hopper-v5 and Walker2d-v5: 29 runs.
  Its returns mean nothing (`returns=False`: the report gives no verdicts on them). Result: benchmark/results/atlas/.
- evidence (runs/sweep_evidence): what a CPU machine can run at budgets papers report, at the paper's settings (10k
  random steps, evaluation every 5k steps with 10 episodes), seeds 1 and 2 on every task so comparisons pair: sac
  (replay ratio 1) to 100k on dmc:cheetah-run, dmc:walker-run and dmc:reacher-hard (published SAC learns these by
  100k); sac and mbpo to 30k on Hopper-v5 (the MBPO paper's Hopper curve); mbpo, sac at replay ratio 20 and
  mbpo_perfect_model to 30k on dmc:cheetah-run (the paper's DMC side at a CPU budget, against sac's evaluations at the
  same steps of its 100k runs). 16 runs, ~20-25 core-hours. Besides each experiment against SAC, its report compares
  mbpo and mbpo_perfect_model with sac_rr20 (the same replay ratio without a model) and mbpo_perfect_model with mbpo.
  Result: benchmark/results/evidence/.
"""
from dataclasses import dataclass

# a sweep's log root: <root>/<experiment>/<task_dir(task)>/seed_<k>/ holds the script's run directory and these
FINISHED = "finished.json"  # written into a seed directory after its run exits 0
LOG = "stdout.log"  # the run's stdout and stderr, every attempt's, each after a '# <date> <command>' line
CHECKPOINT = "checkpoint.pt"  # what every algorithm script saves in its run directory
PROCESS = "process.json"  # the seeds of the process last started for a seed directory (sweep.py --seeds-per-run)

GYM = [f"{name}-v5" for name in ("InvertedPendulum", "Hopper", "HalfCheetah", "Walker2d", "Ant", "Humanoid")]
DMC15 = [f"dmc:{task}" for task in (
    "acrobot-swingup", "cheetah-run", "finger-turn_hard", "fish-swim", "hopper-hop", "hopper-stand", "humanoid-run",
    "humanoid-stand", "humanoid-walk", "pendulum-swingup", "quadruped-run", "quadruped-walk", "reacher-hard",
    "swimmer-swimmer6", "walker-run")]


@dataclass(frozen=True)
class Experiment:
    """An algorithm script with fixed flags: a method or one of the paper's variants of it."""
    algorithm: str  # the script's stem: runs `python {algorithm}.py`
    variant: str = "default"
    flags: tuple[str, ...] = ()
    suites: tuple[str, ...] = ("gym", "dmc")
    baseline: str | None = None  # the experiment it is measured against (probability of improvement)
    tasks: tuple[str, ...] | None = None  # only these tasks of its suites (None: all)
    total_timesteps: int | None = None  # env steps per run instead of the protocol's for its suite

    @property
    def name(self) -> str:
        return self.algorithm if self.variant == "default" else f"{self.algorithm}_{self.variant}"


@dataclass(frozen=True)
class Protocol:
    tasks: dict[str, list[str]]  # suite -> env ids
    total_timesteps: dict[str, int]  # suite -> env steps per run
    seeds: tuple[int, ...]
    experiments: tuple[Experiment, ...]
    flags: tuple[str, ...] = ()  # passed to every run (before the experiment's own flags)
    returns: bool = True  # whether its runs' returns mean something (the atlas's policy is only its data collector)
    comparisons: tuple[tuple[str, str], ...] = ()  # (X, Y): experiment X against experiment Y, besides the baselines

    def pairs(self) -> list[tuple[str, str]]:
        """(X, Y) of every comparison its report makes, paired by seed: each experiment against its baseline, then
        `comparisons`."""
        return [(e.name, e.baseline) for e in self.experiments if e.baseline] + list(self.comparisons)

    def steps(self, experiment: Experiment, task: str) -> int:
        """The env steps of `experiment`'s runs on `task`: its own budget, else its suite's."""
        return experiment.total_timesteps or self.total_timesteps[suite_of(task)]

    def budgets(self) -> dict[tuple[str, str], int]:
        """(experiment name, task) -> env steps, for every task each experiment runs on."""
        return {(e.name, task): self.steps(e, task) for suite, tasks in self.tasks.items() for task in tasks
                for e in self.experiments if suite in e.suites and (e.tasks is None or task in e.tasks)}


RESET = ("--reset-interval", "128000")  # paper Sec. 5: resets every 128k env steps
# the paper's runs: MBPO vs SAC and ALM vs TD3 on both suites; its diagnoses of the DMC failure on DMC15
PAPER = Protocol(
    tasks={"gym": GYM, "dmc": DMC15},
    total_timesteps={"gym": 300_000, "dmc": 500_000},
    seeds=(1, 2, 3, 4, 5, 6),
    experiments=(
        Experiment("sac"),
        Experiment("mbpo", baseline="sac"),
        Experiment("mbpo", "no_rollouts", ("--no-synthetic-rollouts",), baseline="sac"),
        Experiment("td3"),
        Experiment("alm", baseline="td3"),
        Experiment("alm", "no_rollouts", ("--no-synthetic-rollouts",), ("dmc",), baseline="td3"),
        Experiment("mbpo", "resets", RESET, ("dmc",), baseline="sac"),
        Experiment("mbpo", "layer_norm", ("--layer-norm",), ("dmc",), baseline="sac"),
        Experiment("sac", "rr20", ("--replay-ratio", "20"), ("dmc",), baseline="sac"),
        Experiment("mbpo_perfect_model", suites=("dmc",), baseline="sac"),
    ),
)
QUICK_MODEL = ("--model-train-steps", "1000")  # a fifth of the paper code's model steps per retrain
QUICK = Protocol(
    tasks={"gym": ["InvertedPendulum-v5"], "dmc": ["dmc:walker-run", "dmc:cheetah-run"]},
    total_timesteps={"gym": 3000, "dmc": 3000},
    seeds=(1, 2),
    experiments=(
        Experiment("sac"),
        Experiment("mbpo", flags=QUICK_MODEL, baseline="sac"),
        Experiment("mbpo", "no_rollouts", ("--no-synthetic-rollouts", *QUICK_MODEL), baseline="sac"),
    ),
    flags=("--learning-starts", "1000", "--eval-interval", "500"),
)
# The model-error atlas: the model trained and measured as in MBPO while SAC at replay ratio 1
# collects the data; the return is not the point (2 evaluation episodes).
ATLAS_FAILING = ("dmc:hopper-hop", "dmc:hopper-stand", "dmc:humanoid-stand", "dmc:humanoid-walk", "dmc:quadruped-run",
                 "dmc:quadruped-walk", "Hopper-v5", "Walker2d-v5")
ATLAS_MODEL = ("--no-synthetic-rollouts", "--replay-ratio", "1", "--model-train-freq", "5000")
ATLAS = Protocol(
    tasks={"dmc": DMC15, "gym": GYM},
    total_timesteps={"gym": 10_001, "dmc": 10_001},  # ends right after the retrain at 10000
    seeds=(1,),
    experiments=(
        Experiment("mbpo", "atlas", ATLAS_MODEL),
        Experiment("mbpo", "atlas_ftfl", (*ATLAS_MODEL, "--normalize-targets", "--predict-next-state"),
                   tasks=ATLAS_FAILING),
    ),
    flags=("--learning-starts", "5000", "--eval-interval", "5000", "--eval-episodes", "2"),
    returns=False,
)
# Evidence at budgets that mean something: SAC to 100k on three DMC tasks where published SAC
# learns by then, MBPO to 30k beside SAC on Hopper-v5 (Gym) and dmc:cheetah-run (DMC), the paper's defaults otherwise.
EVIDENCE_DMC = ("dmc:cheetah-run",)  # the DMC task of the MBPO comparison
EVIDENCE = Protocol(
    tasks={"dmc": ["dmc:cheetah-run", "dmc:walker-run", "dmc:reacher-hard"], "gym": ["Hopper-v5"]},
    total_timesteps={"gym": 30_000, "dmc": 100_000},
    seeds=(1, 2),
    experiments=(
        Experiment("sac"),
        Experiment("mbpo", baseline="sac", tasks=(*EVIDENCE_DMC, "Hopper-v5"), total_timesteps=30_000),
        Experiment("sac", "rr20", ("--replay-ratio", "20"), ("dmc",), "sac", EVIDENCE_DMC, 30_000),
        Experiment("mbpo_perfect_model", suites=("dmc",), baseline="sac", tasks=EVIDENCE_DMC, total_timesteps=30_000),
    ),
    # the replay ratio held at 20 (is it the model or the updates?) and the learned model against an exact one
    comparisons=(("mbpo", "sac_rr20"), ("mbpo_perfect_model", "sac_rr20"), ("mbpo_perfect_model", "mbpo")),
)
PROTOCOLS = {"paper": PAPER, "quick": QUICK, "atlas": ATLAS, "evidence": EVIDENCE}
EXPERIMENTS = {e.name: e for e in PAPER.experiments}

def suite_of(task: str) -> str:
    return "dmc" if task.startswith("dmc:") else "gym"


def task_dir(task: str) -> str:
    """The directory name of a task, as the scripts spell env ids in run names (':' -> '_')."""
    return task.replace(":", "_")
