"""The paper's protocol as one command: every (experiment, task, seed) run as a subprocess on Ray, resumable.

Each run is exactly what a user types, e.g. `python mbpo.py --env dmc:walker-run --seed 3 --total-timesteps 500000
--log-dir <root>/mbpo/dmc_walker-run/seed_3`, so the script writes its run directory (event files, checkpoint.pt) under
that fixed seed directory, beside `stdout.log` (the run's stdout and stderr, appended on every attempt) and, after it
exits 0, `finished.json`. Invoking the sweep again
- skips finished runs (a `finished.json` for at least the requested steps),
- resumes interrupted ones (`python <script> --resume <run dir>` when a checkpoint.pt is there; a run killed before
  its first checkpoint starts over, its partial run directory removed),
- starts the rest, and lists the failed runs with their `stdout.log` at the end (they are retried on the next call).
Ctrl-C or SIGTERM on the sweep stops every run at a checkpoint (the scripts' own SIGTERM handling) before it exits.
A run's script also gets SIGTERM when its Ray worker dies, as it does when the sweep is killed (`kill -9` included):
it saves a checkpoint and exits rather than run on unwatched (Linux; elsewhere it may outlive its worker).
While it runs, its worker and the script hold a lock on `<seed dir>/lock`, and a second sweep on the same root leaves
the run to them (listed as running in another sweep, exit status 1).
Runs are submitted seed by seed, so an early report already covers every task and experiment.

`--seeds-per-run S` runs up to S consecutive seeds of an experiment and task in one process (for GPU sweeps: the
process's kernels carry all S seeds at once), `python sac.py ... --seed 3 --num-seeds 2 --log-dir
<root>/sac/dmc_walker-run/seed_{seed}`: the script replaces `{seed}` by each seed, so every seed keeps its seed
directory and run directory. The first seed's directory holds the process's checkpoint (of all its seeds), its
stdout.log (the other seeds' stdout.log get the command and point there) and the STOP file; the worker and the script
lock every seed's directory, and every seed gets FINISHED when the process exits 0. `process.json` in a seed directory
names the seeds of the process last started for it. A process keeps its seeds until it finishes: a seed whose process
has a checkpoint is resumed in that process whatever --seeds-per-run says now (a checkpoint of a sweep without it is a
process of one seed); only the other seeds are grouped anew, in runs of consecutive seeds (seeds 1-5 and 7 by 2: 1-2,
3-4, 5, 7). Asking for some seeds of such a process but not all is refused with one line. `--cpus-per-run` and
`--gpus-per-run` are per process.

    python benchmark/sweep.py --quick                       # the quick protocol on a local Ray instance (~1.3 h here)
    python benchmark/sweep.py --address auto --gpus-per-run 0.25 --extra-flags=--cuda   # the paper's, on a cluster
    python benchmark/sweep.py --experiments sac mbpo --tasks dmc:walker-run --seeds 1 2 --dry-run
    python benchmark/sweep.py --address auto --experiments sac --seeds-per-run 6 --gpus-per-run 0.5 --extra-flags=--cuda

With no `--address` Ray starts a local instance using this machine's cores (`--num-cpus` caps it); `--address` joins
an existing cluster, whose nodes must see this repository and the log root at the same paths (a shared filesystem).
Runs get OMP_NUM_THREADS=1 unless it is set: these small networks gain little from intra-op threads, and parallel
runs would oversubscribe the cores.

The protocols themselves (paper, quick, atlas, evidence) are data in benchmark/protocol.py; what they cost on the
project's 2-core machine, and the speeds behind `--dry-run`'s estimate, are in benchmark/results/timings.md (a process
of several seeds: benchmark/results/seeds.md); the estimate assumes a free core per process.
"""
import argparse
import ctypes
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from protocol import CHECKPOINT, FINISHED, LOG, PROCESS, PROTOCOLS, Experiment, Protocol, task_dir

ROOT = Path(__file__).resolve().parents[1]
STOP = "stop"  # written into a seed directory by a stopping sweep: its run saves a checkpoint and exits
LOCK = "lock"  # a seed directory's lock file, flock-ed by the worker running it and by its script until both end
BUSY = "running in another sweep"  # a run's status when another sweep holds its lock
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies

# learning-phase env steps/s of one run on one CPU core, measured here (benchmark/results/timings.md): sac and td3 60-100;
# mbpo_perfect_model ~2 (460 ms of SAC updates per step, loaded); alm ~1.2 (0.6-0.9 s per update, one per step).
CPU_SPEED = {"sac": 60, "td3": 60, "mbpo_perfect_model": 2.0, "alm": 1.2}
# mbpo's learning step is sac's (an env step and one SAC update) plus its further updates and its share of model
# training, timed here on one core: a SAC update (batch 256) ~11 ms, a model gradient step (7 members, batch 256) ~23 ms.
# At the paper's defaults that is 1/60 + 19 x 11 ms + 5000 / 250 x 23 ms = 686 ms per env step, 1.46 steps/s (measured
# alone on a quiet core: 1.48).
SAC_UPDATE_S, MODEL_STEP_S = 0.011, 0.023
# a model gradient step where the task's dimensions make it far slower: Humanoid-v5 (348-dimensional observations), the
# atlas's retrain of 5000 steps in 2353 s on the shared 2 cores (benchmark/results/atlas/README.md)
TASK_MODEL_STEP_S = {"Humanoid-v5": 0.47}
RANDOM_SPEED, EVAL_EPISODE_S, START_S = 500, 1.0, 5  # random-action steps/s; seconds per evaluation episode; start-up
# seed-steps/s of a process of S seeds over one of 1 seed, learning on one CPU thread (benchmark/results/seeds.md);
# an S between two measured ones gets the lower one's, a script not measured 1 (S seeds take S times one seed's time)
SEEDS_SPEEDUP = {"sac": {1: 1.0, 2: 1.08, 4: 1.24}, "mbpo": {1: 1.0, 2: 1.0, 4: 1.04}}


@dataclass(frozen=True)
class Run:
    experiment: Experiment
    task: str
    seed: int
    total_timesteps: int
    flags: tuple[str, ...]  # the protocol's, the experiment's, then --extra-flags
    log_dir: Path  # <root>/<experiment>/<task>/seed_<k>: the script's --log-dir

    def finished(self) -> bool:
        """A FINISHED marker for at least the requested steps. An unreadable one (truncated by a kill mid-write, before
        sweeps wrote it atomically) counts as none: the run is resumed or started again."""
        try:
            marker = json.loads((self.log_dir / FINISHED).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(marker, dict) and marker.get("total_timesteps", 0) >= self.total_timesteps

    def running(self) -> bool:
        """Whether a sweep's worker or the script it started holds the run's LOCK now."""
        try:
            with open(self.log_dir / LOCK) as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released again on close
        except FileNotFoundError:
            return False
        except BlockingIOError:
            return True
        return False


def newest_checkpoint(seed_dir: Path) -> Path | None:
    """The run directory holding the newest checkpoint in `seed_dir` (None: none there)."""
    checkpoints = sorted(seed_dir.glob(f"*/{CHECKPOINT}"), key=lambda p: p.stat().st_mtime)
    return checkpoints[-1].parent if checkpoints else None


def process_seeds(seed_dir: Path) -> tuple[int, ...]:
    """The seeds of the process last started for `seed_dir` (its PROCESS file; without a readable one, as sweeps wrote
    before --seeds-per-run: its own seed alone)."""
    try:
        seeds = json.loads((seed_dir / PROCESS).read_text())["seeds"]
        if isinstance(seeds, list) and seeds and all(isinstance(seed, int) for seed in seeds):
            return tuple(seeds)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return (int(seed_dir.name.removeprefix("seed_")),)


@dataclass(frozen=True)
class Group:
    """Consecutive seeds of one experiment and task that one process runs (`--seed <first> --num-seeds <n>`). The first
    seed's directory holds what is the process's: its checkpoint (of every seed), stdout.log and the STOP file."""
    runs: tuple[Run, ...]

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(run.seed for run in self.runs)

    def command(self) -> list[str]:
        """The command line of a fresh process (without the python executable); the script puts each seed's run
        directory under the --log-dir it gets with `{seed}` replaced by that seed."""
        run, many = self.first, len(self.runs) > 1
        return [f"{run.experiment.algorithm}.py", "--env", run.task, "--seed", str(run.seed),
                *(("--num-seeds", str(len(self.runs))) if many else ()), "--total-timesteps", str(run.total_timesteps),
                "--log-dir", str(run.log_dir.parent / "seed_{seed}" if many else run.log_dir), *run.flags]

    def resume_command(self, run_dir: Path, extra_flags: tuple[str, ...]) -> list[str]:
        """Continue `run_dir` (the first seed's); its checkpoint holds every other setting, the other seeds' included."""
        return [f"{self.first.experiment.algorithm}.py", "--resume", str(run_dir),
                "--total-timesteps", str(self.first.total_timesteps), *extra_flags]

    def state(self) -> tuple[str, Path | None]:
        """('finished', None) when every seed is, ('resume', run dir holding the newest checkpoint) when the first seed's
        directory has one written by a process of exactly these seeds, else ('start', None)."""
        if all(run.finished() for run in self.runs):
            return "finished", None
        run_dir = newest_checkpoint(self.first.log_dir)
        return ("resume", run_dir) if run_dir and process_seeds(self.first.log_dir) == self.seeds else ("start", None)

    def next_command(self, extra_flags: tuple[str, ...]) -> tuple[str, list[str]]:
        """The process's state and the command that continues it (resumes its newest checkpoint, or starts it)."""
        state, run_dir = self.state()
        return state, self.resume_command(run_dir, extra_flags) if state == "resume" else self.command()

    def running(self) -> bool:
        """Whether another sweep runs one of its seeds now."""
        return any(run.running() for run in self.runs)

    def label(self) -> str:
        seeds = f"seed {self.seeds[0]}" if len(self.runs) == 1 else f"seeds {self.seeds[0]}-{self.seeds[-1]}"
        return f"{self.first.experiment.name} {self.first.task} {seeds}"


def plan(protocol: Protocol, root: Path, experiments: list[str] | None = None, tasks: list[str] | None = None,
         seeds: list[int] | None = None, total_timesteps: int | None = None,
         extra_flags: tuple[str, ...] = (), track: bool = False) -> list[Run]:
    """The protocol's runs (optionally narrowed), ordered seed by seed, then task, then experiment; with `track`, each
    logs to Weights & Biases in a group per experiment and task."""
    runs = []
    for seed in seeds or protocol.seeds:
        for suite, suite_tasks in protocol.tasks.items():
            for task in suite_tasks:
                if tasks and task not in tasks:
                    continue
                for e in protocol.experiments:
                    if (suite in e.suites and (e.tasks is None or task in e.tasks)
                            and (not experiments or e.name in experiments)):
                        wandb = ("--track", "--wandb-group", f"{e.name}/{task}") if track else ()
                        runs.append(Run(e, task, seed, total_timesteps or protocol.steps(e, task),
                                        (*protocol.flags, *e.flags, *wandb, *extra_flags),
                                        root / e.name / task_dir(task) / f"seed_{seed}"))
    return runs


def consecutive(runs: list[Run], size: int) -> list[Group]:
    """`runs` (one experiment and task, by seed) in groups of up to `size` consecutive seeds (--num-seeds takes a range)."""
    groups = []
    for run in runs:
        last = groups[-1] if groups else None
        if last and len(last) < size and run.seed == last[-1].seed + 1:
            last.append(run)
        else:
            groups.append([run])
    return [Group(tuple(group)) for group in groups]


def group(runs: list[Run], seeds_per_run: int) -> list[Group]:
    """The processes that run `runs`, per experiment and task: seeds that a started process holds in its checkpoint stay
    in it (resumed as started, whatever --seeds-per-run says now); the seeds still to do, and apart from them the
    finished ones, go in groups of up to `seeds_per_run` consecutive seeds. Ordered by first seed, then as `plan` orders
    runs. Exits with one line when a process to resume holds a seed not asked for (it would run that seed too)."""
    cells, order = {}, {run: i for i, run in enumerate(runs)}
    for run in runs:
        cells.setdefault((run.experiment, run.task), {})[run.seed] = run
    groups = []
    for by_seed in cells.values():
        kept = []  # the started processes with a checkpoint
        for seed, run in sorted(by_seed.items()):
            if run.finished() or any(seed in g.seeds for g in kept):
                continue
            seeds = process_seeds(run.log_dir)
            first = run.log_dir.parent / f"seed_{seeds[0]}"
            if process_seeds(first) != seeds or newest_checkpoint(first) is None:  # not started, or restarted since
                continue
            if missing := [s for s in seeds if s not in by_seed]:
                sys.exit(f"error: {run.experiment.name} {run.task}: seeds {seeds[0]}-{seeds[-1]} run in one process (its "
                         f"checkpoint is in {first}), but seeds {missing} are not asked for; ask for all of them "
                         "(--seeds), or remove their seed directories to start them afresh")
            kept.append(Group(tuple(by_seed[s] for s in seeds)))
        rest = [run for seed, run in sorted(by_seed.items()) if not any(seed in g.seeds for g in kept)]
        groups += (kept + consecutive([run for run in rest if run.finished()], seeds_per_run)
                   + consecutive([run for run in rest if not run.finished()], seeds_per_run))
    return sorted(groups, key=lambda g: (g.first.seed, order[g.first]))


def flag_value(flags: tuple[str, ...], name: str, default: int) -> int:
    """The last value given to `name` in `flags` (as `--name V` or `--name=V`), else `default`."""
    value = default
    for i, flag in enumerate(flags):
        if flag == name and i + 1 < len(flags):
            value = int(flags[i + 1])
        elif flag.startswith(name + "="):
            value = int(flag.split("=", 1)[1])
    return value


def cpu_seconds(run: Run) -> tuple[float, float] | None:
    """Estimated seconds of `run` on one free CPU core here, as (random phase and evaluations, learning steps); None when
    no speed is measured for its script."""
    algorithm = run.experiment.algorithm
    if algorithm not in CPU_SPEED and algorithm != "mbpo":
        return None
    random_steps = min(flag_value(run.flags, "--learning-starts", 10_000), run.total_timesteps)
    learning_steps = run.total_timesteps - random_steps
    if algorithm in ("sac", "td3", "mbpo"):  # sac's speed is at replay ratio 1; each further update adds one's time
        replay_ratio = flag_value(run.flags, "--replay-ratio", 20 if algorithm == "mbpo" else 1)
        step_s = 1 / CPU_SPEED["sac" if algorithm == "mbpo" else algorithm] + (replay_ratio - 1) * SAC_UPDATE_S
    else:
        step_s = 1 / CPU_SPEED[algorithm]
    learning_s = learning_steps * step_s
    if algorithm == "mbpo":  # retrained at learning start and every --model-train-freq steps after it
        model_steps = 0 if "--model-early-stopping" in run.flags else flag_value(run.flags, "--model-train-steps", 5000)
        retrains = -(-learning_steps // flag_value(run.flags, "--model-train-freq", 250))  # early stopping: a lower bound
        learning_s += retrains * model_steps * TASK_MODEL_STEP_S.get(run.task, MODEL_STEP_S)
    evals = run.total_timesteps // flag_value(run.flags, "--eval-interval", 5000) + 1
    return random_steps / RANDOM_SPEED + evals * flag_value(run.flags, "--eval-episodes", 10) * EVAL_EPISODE_S, learning_s


def process_seconds(group: Group) -> float | None:
    """Estimated seconds of a process of `group`'s seeds on one free CPU core: its start-up, each seed's random phase and
    evaluations, and their learning steps at the seed-steps/s measured for that many seeds (SEEDS_SPEEDUP)."""
    parts = [cpu_seconds(run) for run in group.runs]
    if None in parts:
        return None
    measured = SEEDS_SPEEDUP.get(group.first.experiment.algorithm, {1: 1.0})
    speedup = measured[max(s for s in measured if s <= len(group.runs))]
    return START_S + sum(fixed for fixed, _ in parts) + sum(learning for _, learning in parts) / speedup


def estimate(groups: list[Group], slots: int) -> str:
    """Total CPU time and the wall time on `slots` parallel processes (longest first to the least loaded slot), and
    what the estimate assumes."""
    unknown = sorted({run.experiment.algorithm for g in groups for run in g.runs if cpu_seconds(run) is None})
    known = sorted((s for g in groups if (s := process_seconds(g)) is not None), reverse=True)
    loads = [0.0] * slots
    for s in known:
        loads[loads.index(min(loads))] += s
    text = (f"estimated CPU time {sum(known) / 3600:.1f} h, wall time on {slots} parallel process(es) "
            f"{max(loads) / 3600:.1f} h (each on a free core at the speeds measured on the project's 2-core machine, "
            f"benchmark/results/timings.md; a process of several seeds at the seed-steps/s measured for them, seeds.md; "
            f"cores shared with other work take longer)")
    return text + (f"; no CPU speed known for {', '.join(unknown)}: not counted" if unknown else "")


def execute(root: str, group: Group, extra_flags: tuple[str, ...]) -> int | str | None:
    """Run one script to its end on a Ray worker: its exit status (None: stopped before it started; BUSY: another
    sweep holds one of its seeds). This worker and the script hold every seed's LOCK until both have ended. A STOP file
    from the sweep in the first seed's directory, or this worker's death (Linux), SIGTERMs the script, which saves a
    checkpoint and exits. Writes FINISHED into every seed's directory after exit 0."""
    log_dir = group.first.log_dir
    with ExitStack() as held:
        locks = [held.enter_context(open(run.log_dir / LOCK, "a")) for run in group.runs]
        try:
            for lock in locks:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return BUSY
        if (log_dir / STOP).exists():
            return None
        state, command = group.next_command(extra_flags)  # again under the locks: another sweep may have advanced it
        if state == "finished":
            return 0
        for run in group.runs:
            (run.log_dir / FINISHED).unlink(missing_ok=True)
            if state == "start":  # killed before its first checkpoint: nothing to resume, its partial logs would count twice
                for stale in run.log_dir.iterdir():
                    if stale.is_dir():
                        shutil.rmtree(stale)
                (run.log_dir / f"{PROCESS}.tmp").write_text(json.dumps({"seeds": list(group.seeds)}) + "\n")
                os.replace(run.log_dir / f"{PROCESS}.tmp", run.log_dir / PROCESS)
        env = {**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        command = [sys.executable, *command]
        # resolved here, not in the forked child, where loading a library could deadlock on another thread's lock
        prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
        start = time.time()
        header = f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}"
        for run in group.runs[1:]:  # the process's output goes to the first seed's log only
            with open(run.log_dir / LOG, "a") as log:
                log.write(f"{header}  # {group.label()} in one process, its output in {log_dir / LOG}\n")
        with open(log_dir / LOG, "a") as log:
            log.write(header + "\n")
            log.flush()
            process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       pass_fds=[lock.fileno() for lock in locks],  # the script holds them until it ends
                                       preexec_fn=(lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)) if prctl else None)
            try:
                while process.poll() is None:
                    time.sleep(1)
                    if (log_dir / STOP).exists():
                        process.terminate()
                        process.wait()
            except BaseException:  # the worker is being shut down: let the script save a checkpoint first
                process.terminate()
                process.wait()
                raise
        if process.returncode != 0 and len(group.runs) > 1:  # the process's last line ends every seed's log too:
            lines = [line for line in (log_dir / LOG).read_text(errors="replace").splitlines() if line.strip()]
            for run in group.runs[1:]:  # a NaN stop (naming its seed) stopped them all, and report.py reads it there
                with open(run.log_dir / LOG, "a") as log:
                    log.write((lines[-1] if lines else f"exit {process.returncode}") + "\n")
        if process.returncode == 0:  # written whole or not at all: a kill mid-write leaves no truncated marker
            marker = {"total_timesteps": group.first.total_timesteps, "seeds": list(group.seeds), "command": command,
                      "wall_s": round(time.time() - start, 1)}
            for run in group.runs:
                (run.log_dir / f"{FINISHED}.tmp").write_text(json.dumps(marker) + "\n")
                os.replace(run.log_dir / f"{FINISHED}.tmp", run.log_dir / FINISHED)
        return process.returncode


def processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, start time, state) of every process, from /proc (Linux)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # the fields after the command name, which may hold ')'
        except OSError:  # it ended meanwhile
            continue
        found[int(stat.parent.name)] = int(fields[1]), fields[19], fields[0]
    return found


def descendants(pid: int) -> dict[int, str]:
    """pid -> start time of every process below `pid` (a pid with its start time names one process: pids are reused)."""
    table, found, parents = processes(), {}, [pid]
    while parents:
        parent = parents.pop()
        children = [child for child, (ppid, _, _) in table.items() if ppid == parent]
        found.update({child: table[child][1] for child in children})
        parents += children
    return found


def watch_local_ray(driver: int, started: int) -> None:
    """Forked from the driver before Ray starts: once the driver is gone (kill -9 too), SIGKILL what is left of the
    local Ray instance it started. Ray ends its processes with the driver, all but the raylet's DashboardAgent and
    RuntimeEnvAgent, which linger about a minute reporting the raylet's death to the dead GCS (Ray 2.60)."""
    os.setsid()  # out of the terminal's process group: Ctrl-C and a hang-up are the driver's to handle
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # holding no pipe of the driver's caller open
        os.dup2(devnull, fd)
    with os.fdopen(started, "rb") as pipe:
        if not pipe.readline():  # the driver ended before Ray started
            return
        instance = descendants(driver)
        pipe.read()  # until EOF: the driver has exited, one way or another
    for pid, (_, start, _) in processes().items():
        if instance.get(pid) == start and pid != os.getpid():
            os.kill(pid, signal.SIGKILL)


def sweep(groups: list[Group], args: argparse.Namespace) -> int:
    """Start or resume every unfinished process on Ray; 0 when all runs are finished. Ctrl-C or SIGTERM stops the
    processes at a checkpoint (a second one quits at once): STOP files tell each one's task to SIGTERM it. Processes
    another sweep is running (one of their LOCKs is held) are left to it."""
    states = {g: g.state() for g in groups}
    busy = [g for g in groups if states[g][0] != "finished" and g.running()]
    todo = [g for g in groups if states[g][0] != "finished" and g not in busy]
    runs = {state: sum(len(g.runs) for g in groups if states[g][0] == state and g not in busy)
            for state in ("finished", "resume", "start")}
    print(f"{sum(len(g.runs) for g in groups)} runs: {runs['finished']} finished (skipped), "
          + (f"{sum(len(g.runs) for g in busy)} {BUSY} (skipped), " if busy else "")
          + f"{runs['resume']} to resume, {runs['start']} to start"
          + (f", in {len(todo)} process(es)" if any(len(g.runs) > 1 for g in todo) else ""), flush=True)
    failed, stopped, signals = [], [], []  # signals: SIGINT/SIGTERM received
    if todo:
        started = None  # the write end of a pipe to watch_local_ray
        if not args.address and sys.platform == "linux":
            read_end, started = os.pipe()
            sys.stdout.flush()
            sys.stderr.flush()
            if os.fork() == 0:  # before Ray's threads exist
                try:
                    os.close(started)
                    watch_local_ray(os.getppid(), read_end)
                finally:
                    os._exit(0)
            os.close(read_end)
        import ray  # only a sweep with work to do pays for Ray's start-up

        if args.address and args.address != "auto" and "://" not in args.address:  # Ray would retry for minutes
            host, _, port = args.address.rpartition(":")
            try:
                socket.create_connection((host, int(port)), timeout=10).close()
            except (OSError, ValueError):
                sys.exit(f"error: no Ray cluster answers at --address {args.address} (give host:port of its head, or auto)")
        try:
            ray.init(address=args.address, num_cpus=None if args.address else args.num_cpus,
                     include_dashboard=False, log_to_driver=False,
                     object_store_memory=None if args.address else 100 * 1024 ** 2)
        except Exception as e:
            sys.exit(f"error: cannot start or reach Ray at {args.address or 'a local instance'}: {e}")
        if started is not None:
            os.write(started, b"started\n")
        # Ray SIGKILLs a worker's child processes when the worker exits; the script's own SIGTERM saves a checkpoint
        task = ray.remote(execute).options(num_cpus=args.cpus_per_run, num_gpus=args.gpus_per_run, max_retries=0,
                                           runtime_env={"env_vars": {"RAY_kill_child_processes_on_worker_exit": "0"}})
        pending = {}
        for g in todo:
            for run in g.runs:
                run.log_dir.mkdir(parents=True, exist_ok=True)
            (g.first.log_dir / STOP).unlink(missing_ok=True)
            pending[task.remote(str(ROOT), g, tuple(args.extra_flags))] = g
        # a flag, not an exception: Ray's cancel stops working once a signal interrupted the driver (seen with 2.60)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: signals.append(signum))
        stopping = False
        try:
            while pending:
                left = sum(len(g.runs) for g in pending.values())
                if len(signals) > 1:
                    sys.exit(f"quit: {left} runs killed; the same command resumes them from their last checkpoint")
                if signals and not stopping:
                    stopping = True
                    for g in pending.values():
                        (g.first.log_dir / STOP).touch()
                    print(f"stopping {left} runs at a checkpoint (signal again to quit at once)", flush=True)
                for ref in ray.wait(list(pending), num_returns=1, timeout=1.0)[0]:
                    g = pending.pop(ref)
                    try:
                        status = ray.get(ref)
                    except ray.exceptions.RayError as e:
                        status = type(e).__name__
                    if status == BUSY:  # another sweep took it since the check above
                        busy.append(g)
                    else:
                        (stopped if signals and status != 0 else failed if status != 0 else []).append(g)
                    outcome = ("finished" if status == 0 else f"{BUSY} (skipped)" if status == BUSY
                               else "stopped" if signals else f"FAILED (exit {status})")
                    print(f"[{len(todo) - len(pending)}/{len(todo)}] {g.label()}: {outcome}", flush=True)
        finally:
            ray.shutdown()
    for g in failed:
        print(f"failed: {g.label()}: {g.first.log_dir / LOG}")
    for g in busy:
        print(f"{BUSY}: {g.label()}: {g.first.log_dir / LOG}")
    if signals:
        sys.exit(f"interrupted: {sum(len(g.runs) for g in stopped)} runs stopped; the same command resumes them")
    return 1 if failed or busy else 0


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        sys.exit(f"error: {message}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="paper",
                        help="paper: the paper's runs; quick: a reduced one sized for a 2-core CPU machine; "
                             "atlas: the model error on all 21 tasks (see ATLAS); evidence: SAC to 100k on 3 DMC tasks, MBPO "
                             "beside SAC to 30k on Hopper-v5 and dmc:cheetah-run (see EVIDENCE)")
    parser.add_argument("--quick", action="store_true", help="same as --protocol quick")
    parser.add_argument("--root", type=Path, default=None,
                        help="log root, runs go to <root>/<experiment>/<task>/seed_<k> (default runs/sweep, "
                             "runs/sweep_<protocol> for the others)")
    parser.add_argument("--experiments", nargs="+", help="only these experiments of the protocol")
    parser.add_argument("--tasks", nargs="+", help="only these tasks of the protocol (Hopper-v5, dmc:walker-run)")
    parser.add_argument("--seeds", type=int, nargs="+", help="these seeds instead of the protocol's")
    parser.add_argument("--total-timesteps", type=int, help="env steps per run instead of the protocol's")
    parser.add_argument("--extra-flags", type=shlex.split, default=[],
                        help="flags appended to every run's command, as one string: --extra-flags='--cuda'")
    parser.add_argument("--track", action="store_true",
                        help="every run logs to Weights & Biases too (--track), in a group per experiment and task")
    parser.add_argument("--address", help="an existing Ray cluster (`auto`, or host:port); default: start a local one")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all of this machine's)")
    parser.add_argument("--seeds-per-run", type=int, default=1,
                        help="up to this many consecutive seeds of an experiment and task in one process (the script's "
                             "--num-seeds; default 1). For GPU sweeps; on CPUs keep 1, one single-seed process per core")
    parser.add_argument("--cpus-per-run", type=float, default=1, help="Ray CPUs reserved per process (default 1)")
    parser.add_argument("--gpus-per-run", type=float, default=0,
                        help="Ray GPUs reserved per process (default 0: CPU only; 0.25 shares a GPU by 4)")
    parser.add_argument("--dry-run", action="store_true", help="print the processes, their seeds and count, start nothing")
    args = parser.parse_args(argv)
    if args.quick:
        args.protocol = "quick"
    protocol_name, protocol = args.protocol, PROTOCOLS[args.protocol]
    names = [e.name for e in protocol.experiments]
    tasks = [t for suite_tasks in protocol.tasks.values() for t in suite_tasks]
    checks = [
        (args.experiments and set(args.experiments) - set(names), f"--experiments: unknown {sorted(set(args.experiments or []) - set(names))}; the protocol has {', '.join(names)}"),
        (args.tasks and set(args.tasks) - set(tasks), f"--tasks: unknown {sorted(set(args.tasks or []) - set(tasks))}; the protocol has {', '.join(tasks)}"),
        (args.seeds and min(args.seeds) < 0, f"--seeds must be >= 0, got {args.seeds}"),
        (args.total_timesteps is not None and args.total_timesteps < 1, f"--total-timesteps must be >= 1, got {args.total_timesteps}"),
        (args.num_cpus is not None and args.num_cpus < 1, f"--num-cpus must be >= 1, got {args.num_cpus}"),
        (args.cpus_per_run <= 0, f"--cpus-per-run must be > 0, got {args.cpus_per_run}"),
        (args.gpus_per_run < 0, f"--gpus-per-run must be >= 0, got {args.gpus_per_run}"),
        (args.seeds_per_run < 1, f"--seeds-per-run must be >= 1, got {args.seeds_per_run}"),
        (args.seeds_per_run > 1 and args.track, "--track takes one seed per process (the scripts refuse --num-seeds with "
         "it); leave --seeds-per-run at 1"),
        (args.address and args.num_cpus, "--num-cpus sizes a local Ray instance; a cluster given by --address has its own"),
    ]
    for bad, message in checks:
        if bad:
            parser.error(message)
    args.protocol = protocol
    args.seeds = list(dict.fromkeys(args.seeds)) if args.seeds else None  # a seed given twice is one run
    args.root = args.root or ROOT / "runs" / ("sweep" if protocol_name == "paper" else f"sweep_{protocol_name}")
    return args


if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    runs = plan(args.protocol, args.root.resolve(), args.experiments, args.tasks, args.seeds, args.total_timesteps,
                tuple(args.extra_flags), args.track)
    groups = group(runs, args.seeds_per_run)
    if args.dry_run:
        for g in groups:
            state, command = g.next_command(tuple(args.extra_flags))
            print(f"{'running' if state != 'finished' and g.running() else state:8} python {shlex.join(command)}"
                  + (f"  # seeds {g.seeds[0]}-{g.seeds[-1]}" if len(g.runs) > 1 else ""))
        slots = max(1, int((args.num_cpus or os.cpu_count()) // args.cpus_per_run))
        print(f"{len(runs)} runs ({sum(run.finished() for run in runs)} finished)"
              + (f" in {len(groups)} process(es)" if any(len(g.runs) > 1 for g in groups) else "")
              + f"; {estimate(groups, slots)}")
        sys.exit(0)
    sys.exit(sweep(groups, args))
