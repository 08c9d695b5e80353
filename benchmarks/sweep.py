"""`mnist-bench sweep`: a grid of runs, one after another on this machine or spread over a Ray cluster.

A trial is one backend x batch size x seed x device count x learning rate x precision, trained exactly as
`mnist-bench run` trains it: the harness in its own process (`python -m benchmarks.sweep JOB OUT`), which
starts the usual worker process, into the trial's own run folder. The sweep folder holds those run folders
(`trials/<id>/results.json`, the ordinary schema), a `sweep.json` index rewritten atomically as each trial
ends, and the summary table and plots. The local executor needs nothing installed; the Ray executor
(the `cluster` extra) runs each trial as a Ray task on some node, at most `trials_per_node` at once per
node, and ships the trial's files back to this machine.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

from common.errors import MnistBenchError
from common.atomic import prepare_output_directory, write_text_atomic
from common.config import ConfigError, ExperimentConfig
from common.job import Job
from common.results import RESULTS_FILE, Results, load_results

SWEEP_FILE = "sweep.json"
SWEEP_SCHEMA_VERSION = 1
TRIALS_DIR = "trials"
EXECUTORS = ("local", "ray")
TRIAL_STATUSES = ("pending", "ok", "failed", "diverged", "interrupted")
DEFAULT_TRIAL_TIMEOUT_S = 6 * 3600.0
# A trial asked to stop gets this long to save what it has before it is killed.
STOP_GRACE_S = 60.0
# Past its own timeout plus this, a Ray trial whose node stopped answering is cancelled from here.
RAY_UNRESPONSIVE_S = 120.0
# Grid axes: the sweep's name, the Job or ExperimentConfig field each value goes to, and its TOML key.
AXES = (("backends", "backend"), ("batch_sizes", "batch_size"), ("seeds", "seed"), ("devices", "devices"),
        ("learning_rates", "learning_rate"), ("precisions", "precision"))
# Settings shared by every trial that a TOML grid may set under [settings].
SHARED_SETTINGS = ("model", "dropout", "epochs", "train_limit", "test_limit", "device", "target_accuracy", "data_dir")


class SweepError(MnistBenchError, RuntimeError):
    """The sweep cannot start as asked (exit code 2); nothing has been written."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; the finished trials are saved in `sweep_dir`."""

    def __init__(self, sweep_dir: Path):
        super().__init__(str(sweep_dir))
        self.sweep_dir = sweep_dir


@dataclasses.dataclass(frozen=True)
class Grid:
    """Every combination of the axes is one trial; `base` holds the settings the trials share."""

    backends: tuple[str, ...]
    batch_sizes: tuple[int, ...] | None = None  # None: the model's default batch size
    seeds: tuple[int, ...] = (0,)
    devices: tuple[int, ...] = (1,)
    learning_rates: tuple[float, ...] = (ExperimentConfig().learning_rate,)
    precisions: tuple[str, ...] = ("highest",)
    base: Job = dataclasses.field(default_factory=lambda: Job(backends=("flax",)))

    def __post_init__(self):
        if self.batch_sizes is None:
            object.__setattr__(self, "batch_sizes", (self.base.config.batch_size,))
        for axis, _ in AXES:
            values = tuple(getattr(self, axis))
            if not values or len(set(values)) != len(values):
                raise SweepError(f"grid axis {axis}: {list(values)}; expected a non-empty list of distinct values")
            object.__setattr__(self, axis, values)

    def trials(self) -> list[Trial]:
        """One Trial per combination, backends varying slowest; an impossible combination is a SweepError."""
        trials = []
        for backend, batch_size, seed, devices, learning_rate, precision in itertools.product(
                *(getattr(self, axis) for axis, _ in AXES)):
            try:
                job = self.base.replace(backends=(backend,), seeds=(seed,), devices=devices, precision=precision,
                                        config=self.base.config.replace(batch_size=batch_size,
                                                                        learning_rate=learning_rate))
            except ConfigError as error:
                raise SweepError(f"trial {backend} batch {batch_size} devices {devices} lr {learning_rate:g} "
                                 f"{precision} seed {seed}: {error}") from None
            trials.append(Trial(trial_id(job), job))
        return trials

    def to_dict(self) -> dict:
        """Plain-JSON form, stored in sweep.json."""
        return {**{axis: list(getattr(self, axis)) for axis, _ in AXES}, "base": self.base.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> Grid:
        """Inverse of `to_dict`."""
        return cls(**{axis: tuple(data[axis]) for axis, _ in AXES}, base=Job.from_dict(data["base"]))


@dataclasses.dataclass(frozen=True)
class Trial:
    """One run of the grid: a one-backend, one-seed job and its folder name."""

    id: str
    job: Job


def trial_id(job: Job) -> str:
    """A readable, file-name-safe name that tells the trial's grid point."""
    # Ids from before models existed name no model: the default model keeps them.
    model = "" if job.config.model == ExperimentConfig.model else f"{job.config.model}-"
    return (f"{model}{job.backend}-b{job.config.batch_size}-d{job.devices}-lr{job.config.learning_rate:g}-"
            f"{job.precision}-s{job.seeds[0]}")


def grid_from_toml(path: Path) -> dict:
    """The axes and [settings] of a TOML grid file, as keyword arguments of `Grid` (base settings separate)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise SweepError(f"--grid: cannot read {path} ({error}); pass a TOML file") from None
    except tomllib.TOMLDecodeError as error:
        raise SweepError(f"--grid: {path} is not valid TOML ({error})") from None
    axes = {axis for axis, _ in AXES}
    unknown = sorted(set(data) - axes - {"settings"})
    settings = data.get("settings", {})
    unknown += [f"settings.{key}" for key in sorted(set(settings) - set(SHARED_SETTINGS))]
    if unknown:
        raise SweepError(f"--grid: {path}: unknown keys {', '.join(unknown)}; axes: {', '.join(sorted(axes))}; "
                         f"[settings]: {', '.join(SHARED_SETTINGS)}")
    grid = {axis: data[axis] if isinstance(data[axis], list) else [data[axis]] for axis in axes if axis in data}
    return {**grid, "settings": settings}


def base_job(settings: dict) -> Job:
    """The settings every trial shares, as a Job (the axes are filled in per trial)."""
    config_fields = {field.name for field in dataclasses.fields(ExperimentConfig)}
    config = ExperimentConfig(**{k: v for k, v in settings.items() if k in config_fields})
    return Job(backends=("flax",), config=config, **{k: v for k, v in settings.items() if k not in config_fields})


# --- the sweep index (sweep.json) -------------------------------------------------------------------------


@dataclasses.dataclass
class TrialRecord:
    """What sweep.json says about one trial."""

    id: str
    job: dict
    status: str = "pending"
    error: str | None = None
    node: str | None = None
    attempts: int = 0
    started: str | None = None
    seconds: float | None = None


@dataclasses.dataclass
class SweepIndex:
    """sweep.json: the grid, the executor and every trial's state."""

    created: str
    executor: str
    grid: Grid
    trials: list[TrialRecord]

    def save(self, sweep_dir: Path) -> None:
        """Rewrite sweep.json atomically."""
        data = {"schema_version": SWEEP_SCHEMA_VERSION, "created": self.created, "executor": self.executor,
                "grid": self.grid.to_dict(), "trials": [dataclasses.asdict(t) for t in self.trials]}
        write_text_atomic(sweep_dir / SWEEP_FILE, json.dumps(data, indent=1) + "\n")

    def record(self, trial_id: str) -> TrialRecord:
        """The record of `trial_id`."""
        return next(record for record in self.trials if record.id == trial_id)


def is_sweep(path: str | os.PathLike) -> bool:
    """Whether `path` is a sweep folder (it holds a sweep.json)."""
    return (Path(path) / SWEEP_FILE).is_file()


def load_sweep(sweep_dir: str | os.PathLike) -> SweepIndex:
    """Read and validate a sweep folder's sweep.json."""
    path = Path(sweep_dir) / SWEEP_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema_version") != SWEEP_SCHEMA_VERSION:
            raise ValueError(f"schema_version {data.get('schema_version')!r}, expected {SWEEP_SCHEMA_VERSION}")
        return SweepIndex(data["created"], data["executor"], Grid.from_dict(data["grid"]),
                          [TrialRecord(**record) for record in data["trials"]])
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as error:
        raise SweepError(f"{path}: not a readable sweep index ({error}); pass a folder made by `mnist-bench sweep`") \
            from None


def load_trials(sweep_dir: str | os.PathLike) -> tuple[SweepIndex, dict[str, Results]]:
    """The index and every trial's saved results by trial id (trials that never wrote one are left out)."""
    index = load_sweep(sweep_dir)
    folders = {record.id: Path(sweep_dir) / TRIALS_DIR / record.id for record in index.trials}
    return index, {trial: load_results(folder) for trial, folder in folders.items()
                   if (folder / RESULTS_FILE).is_file()}


def sweep_results(sweep_dir: str | os.PathLike) -> list[Results]:
    """Every trial's saved results (trials that never wrote one are skipped)."""
    return list(load_trials(sweep_dir)[1].values())


# --- running one trial --------------------------------------------------------------------------------------


@dataclasses.dataclass
class TrialOutcome:
    """How one trial ended, and on which machine."""

    status: str
    error: str | None
    node: str
    seconds: float


def run_trial(job: Job, out_dir: Path, timeout_s: float, roofline: dict | None = None) -> TrialOutcome:
    """Train `job` into run folder `out_dir` in a child process (resuming the folder's earlier attempt).

    The child runs in its own session: on timeout or Ctrl-C it gets SIGINT (it saves completed epochs,
    as `run` does), then SIGKILL if it has not ended after STOP_GRACE_S. It also gets SIGINT if this
    process dies first (Linux), so a killed executor leaves no trial running.
    """
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    job_file = out_dir / "trial-job.json"
    write_text_atomic(job_file, json.dumps({"job": job.to_dict(), "roofline": roofline}))
    (out_dir / "logs").mkdir(exist_ok=True)
    with open(out_dir / "logs" / "trial.log", "a", encoding="utf-8") as log:
        child = subprocess.Popen([sys.executable, "-m", "benchmarks.sweep", str(job_file), str(out_dir)],
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                 preexec_fn=_stop_with_parent)
        timed_out = False
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop_group(child)
        except KeyboardInterrupt:
            _stop_group(child)
            raise
    job_file.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    status, error = _outcome_of(out_dir, child.returncode)
    if timed_out:
        status, error = "failed", f"timed out after {timeout_s:g} s (--trial-timeout)"
    return TrialOutcome(status, error, socket.gethostname(), seconds)


def _outcome_of(out_dir: Path, returncode: int) -> tuple[str, str | None]:
    """The trial's status from its saved runs, or from its exit when it saved none."""
    try:
        runs = load_results(out_dir).runs
    except Exception:  # noqa: BLE001 - no results: the trial failed before training; say how it exited
        runs = []
    if runs and all(run.status == "ok" for run in runs):
        return "ok", None
    for run in runs:
        if run.status != "ok":
            return run.status, run.error
    log = (out_dir / "logs" / "trial.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
    reason = next((line for line in reversed(log) if line.startswith("mnist-bench: error:")), log[-1] if log else "")
    return "failed", f"trial exited with code {returncode}: {reason.removeprefix('mnist-bench: error: ')}"


def _stop_with_parent() -> None:
    """In the child, before exec: SIGINT deliverable, and sent by the kernel when the parent dies (Linux only).

    A Ray worker blocks SIGINT in the thread that runs tasks, and a blocked signal stays blocked across
    fork and exec: unblocked here, or neither this nor a stop request would ever reach the trial.
    """
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop_group(child: subprocess.Popen) -> None:
    """SIGINT to the trial's process group, then SIGKILL if it outlives the grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGINT)
    try:
        child.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def trial_main(job_file: str, out_dir: str) -> int:
    """The trial process: `run` (or, for a folder with an earlier attempt, `run --resume`) without the report."""
    from benchmarks import harness
    from benchmarks.cli import guarded
    from benchmarks.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, first_interrupt_only

    spec = json.loads(Path(job_file).read_text(encoding="utf-8"))

    def run() -> int:
        with first_interrupt_only():
            try:
                if (Path(out_dir) / RESULTS_FILE).is_file():
                    results, _ = harness.resume_benchmark(Path(out_dir), quiet=True)
                else:
                    results, _ = harness.run_benchmark(Job.from_dict(spec["job"]), Path(out_dir), quiet=True,
                                                       roofline=spec.get("roofline"))
            except harness.Interrupted:
                return EXIT_INTERRUPTED  # the completed epochs are saved in out_dir
        return EXIT_OK if all(run.status == "ok" for run in results.runs) else EXIT_FAILED

    return guarded(run)


# --- executors -----------------------------------------------------------------------------------------------


OnFinished = Callable[[Trial, TrialOutcome], None]


def run_local(trials: Sequence[Trial], sweep_dir: Path, timeout_s: float, on_finished: OnFinished,
              on_started: Callable[[Trial], None]) -> None:
    """The trials one after another on this machine, each as `run` would train it."""
    floors: dict[tuple[str, str, int, int], dict | None] = {}
    for trial in trials:
        on_started(trial)
        key = (trial.job.config.model, trial.job.device, trial.job.config.batch_size, trial.job.devices)
        if key not in floors:
            # The machine does not change between trials: measure each floor once.
            from benchmarks.harness import measure_roofline

            floors[key] = measure_roofline(trial.job, sweep_dir)
        on_finished(trial, run_trial(trial.job, sweep_dir / TRIALS_DIR / trial.id, timeout_s, floors[key]))


def ray_trial(job_dict: dict, timeout_s: float, previous: dict[str, str]) -> dict:
    """A Ray task: train one trial in node-local scratch, return its files (as text) and where it ran."""
    with tempfile.TemporaryDirectory(prefix="mnist-bench-trial-") as scratch:
        out_dir = Path(scratch) / "trial"
        for name, text in previous.items():  # an earlier attempt, so the trial resumes it
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (out_dir / name).write_text(text, encoding="utf-8")
        outcome = run_trial(Job.from_dict(job_dict), out_dir, timeout_s)
        files = _text_files(out_dir)
    return {"outcome": dataclasses.asdict(outcome), "files": files}


def import_ray():
    """Ray, or a one-line SweepError naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise SweepError("--executor ray needs Ray: pip install -e \".[cluster]\" (or pip install ray), "
                         "or use --executor local") from None
    return ray


def run_ray(trials: Sequence[Trial], sweep_dir: Path, timeout_s: float, on_finished: OnFinished,
            on_started: Callable[[Trial], None], address: str | None, trials_per_node: int) -> None:
    """Each trial as a Ray task pinned to a node with a free slot (at most `trials_per_node` per node)."""
    ray = import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    remote_trial = ray.remote(max_retries=0)(ray_trial)
    pending = collections.deque(trials)
    running: dict = {}  # ObjectRef -> (trial, node id, start time)
    try:
        while pending or running:
            nodes = _usable_nodes(ray)
            busy = collections.Counter(node for _, node, _ in running.values())
            for trial in list(pending):
                node = next((node_id for node_id, resources in nodes.items()
                             if busy[node_id] < trials_per_node and _fits(trial.job, resources)), None)
                if node is None:
                    if not any(_fits(trial.job, resources) for resources in nodes.values()):
                        pending.remove(trial)
                        on_finished(trial, TrialOutcome("failed", _no_node_error(trial.job), "-", 0.0))
                    continue
                pending.remove(trial)
                on_started(trial)
                previous = _trial_files(sweep_dir / TRIALS_DIR / trial.id)
                ref = remote_trial.options(
                    num_cpus=trial.job.devices if trial.job.device == "cpu" else 1,
                    num_gpus=trial.job.devices if trial.job.device == "gpu" else 0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
                ).remote(trial.job.to_dict(), timeout_s, previous)
                running[ref] = (trial, node, time.monotonic())
                busy[node] += 1
            if not running:
                continue
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in ready:
                trial, node, start = running.pop(ref)
                on_finished(trial, _collect(ray, ref, sweep_dir / TRIALS_DIR / trial.id, nodes.get(node), start))
            for ref, (trial, node, start) in list(running.items()):
                if time.monotonic() - start > timeout_s + RAY_UNRESPONSIVE_S:
                    ray.cancel(ref, force=True)
                    running.pop(ref)
                    on_finished(trial, TrialOutcome("failed", f"no answer from node {node} within --trial-timeout "
                                                    f"{timeout_s:g} s + {RAY_UNRESPONSIVE_S:g} s; cancelled",
                                                    node, time.monotonic() - start))
    except KeyboardInterrupt:
        for ref in running:
            ray.cancel(ref)  # KeyboardInterrupt in the task: it stops its trial process
        ray.wait(list(running), num_returns=len(running), timeout=STOP_GRACE_S)
        for trial, node, start in running.values():
            on_finished(trial, TrialOutcome("interrupted", "interrupted by the user (Ctrl-C)", node,
                                            time.monotonic() - start))
        raise
    finally:
        if started_here:
            ray.shutdown()


def _usable_nodes(ray) -> dict[str, dict]:
    """Alive nodes by id: {"CPU", "GPU", "hostname"}."""
    return {node["NodeID"]: {"CPU": node["Resources"].get("CPU", 0), "GPU": node["Resources"].get("GPU", 0),
                             "hostname": node.get("NodeManagerHostname", node["NodeID"][:8])}
            for node in ray.nodes() if node.get("Alive")}


def _fits(job: Job, resources: dict) -> bool:
    if job.device == "gpu":
        return resources["GPU"] >= job.devices
    return resources["CPU"] >= job.devices


def _no_node_error(job: Job) -> str:
    kind = "GPUs" if job.device == "gpu" else "CPUs"
    return f"no alive node of the Ray cluster has {job.devices} {kind} for --devices {job.devices}"


def _trial_files(folder: Path) -> dict[str, str]:
    """An earlier attempt's results.json and logs, to send with a resumed trial."""
    return _text_files(folder) if (folder / RESULTS_FILE).is_file() else {}


def _text_files(folder: Path) -> dict[str, str]:
    """{relative path: text} of a trial folder's results and logs: what travels between node and driver."""
    return {str(path.relative_to(folder)): path.read_text(encoding="utf-8", errors="replace")
            for path in sorted(folder.rglob("*")) if path.is_file() and path.suffix in (".json", ".log")}


def _collect(ray, ref, folder: Path, node: dict | None, start: float) -> TrialOutcome:
    """Write a finished Ray task's files into the trial folder; a lost task becomes a failed outcome."""
    hostname = (node or {}).get("hostname", "?")
    try:
        answer = ray.get(ref)
    except ray.exceptions.RayError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return TrialOutcome("failed", f"Ray task failed on {hostname}: {type(error).__name__}: {first_line}",
                            hostname, time.monotonic() - start)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in answer["files"].items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / name, text)
    return TrialOutcome(**answer["outcome"])


# --- the sweep -------------------------------------------------------------------------------------------------


def run_sweep(grid: Grid | None, sweep_dir: Path, executor: str = "local", *, resume: bool = False,
              ray_address: str | None = None, trials_per_node: int = 1,
              timeout_s: float = DEFAULT_TRIAL_TIMEOUT_S, quiet: bool = False) -> SweepIndex:
    """Run every trial of `grid` (or, with `resume`, every trial of the saved sweep that is not ok)."""
    if executor not in EXECUTORS:
        raise SweepError(f"--executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if executor == "ray":
        import_ray()
    if resume:
        index = load_sweep(sweep_dir)
        grid = index.grid
        index.executor = executor
    else:
        if is_sweep(sweep_dir) or (sweep_dir.exists() and any(sweep_dir.iterdir())):
            raise SweepError(f"{sweep_dir} is not empty; choose another --out, or finish a sweep there with --resume")
        index = None
    trials = grid.trials()
    check_trials_can_start(trials)
    from common.mnist import load_mnist

    load_mnist(grid.base.data_dir)  # verify (or download) once, before any trial starts
    if index is None:
        prepare_output_directory(sweep_dir)
        index = SweepIndex(_utc_now(), executor, grid, [TrialRecord(t.id, t.job.to_dict()) for t in trials])
        index.save(sweep_dir)
    todo = [trial for trial in trials if index.record(trial.id).status != "ok"]
    say = (lambda text: None) if quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    say(f"sweep: {len(todo)} of {len(trials)} trials to run ({executor} executor) -> {sweep_dir}")

    def on_started(trial: Trial) -> None:
        record = index.record(trial.id)
        record.attempts += 1
        record.started = _utc_now()
        say(f"  {trial.id}: started")

    def on_finished(trial: Trial, outcome: TrialOutcome) -> None:
        record = index.record(trial.id)
        record.status, record.error, record.node, record.seconds = (outcome.status, outcome.error, outcome.node,
                                                                    round(outcome.seconds, 1))
        index.save(sweep_dir)
        say(f"  {trial.id}: {outcome.status} on {outcome.node} in {outcome.seconds:.0f} s"
            + (f": {outcome.error}" if outcome.error else ""))

    try:
        if executor == "local":
            run_local(todo, sweep_dir, timeout_s, on_finished, on_started)
        else:
            run_ray(todo, sweep_dir, timeout_s, on_finished, on_started, ray_address, trials_per_node)
    except KeyboardInterrupt:
        for record in index.trials:
            if record.status == "pending" and record.started:
                record.status, record.error = "interrupted", "interrupted by the user (Ctrl-C)"
        index.save(sweep_dir)
        raise SweepInterrupted(sweep_dir) from None
    return index


def check_trials_can_start(trials: Sequence[Trial]) -> None:
    """What no node could do is refused before anything starts: unknown backends, devices a backend cannot use.

    Whether a node has the devices a trial asks for is for that node to say (this machine, for the local
    executor): such a trial fails with the harness' error and the others go on, with either executor.
    """
    from backends.base import BackendError
    from backends.registry import check_can_run

    for trial in trials:
        try:
            check_can_run(trial.job)
        except BackendError as error:
            raise SweepError(f"trial {trial.id}: {error}") from None


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# --- what a person reads ---------------------------------------------------------------------------------------

SUMMARY_COLUMNS = ("trial", "backend", "batch", "devices", "lr", "precision", "seed", "status", "node",
                   "test acc %", "epoch s", "samples/s", "speed vs 1 device", "time to target s")


def summary_rows(sweep_dir: Path) -> list[dict[str, str]]:
    """One row per trial, in grid order; a trial without results shows its status and error only."""
    return _summary_rows(*load_trials(sweep_dir))


def _summary_rows(index: SweepIndex, results: dict[str, Results]) -> list[dict[str, str]]:
    runs = {trial: saved.runs[0] for trial, saved in results.items()}
    one_device = {}
    for record in index.trials:
        run = runs.get(record.id)
        job = Job.from_dict(record.job)
        if run and run.status == "ok" and job.devices == 1:
            one_device[_scaling_key(job)] = run.timing.get("epoch_s_median")
    rows = []
    for record in index.trials:
        job, run = Job.from_dict(record.job), runs.get(record.id)
        ok = run is not None and run.status == "ok"
        timing = run.timing if ok else {}
        single = one_device.get(_scaling_key(job))
        epoch_s = timing.get("epoch_s_median")
        tta = timing.get("time_to_target_s")
        rows.append({
            "trial": record.id, "backend": job.backend, "batch": str(job.config.batch_size),
            "devices": f"{job.device}×{job.devices}", "lr": f"{job.config.learning_rate:g}",
            "precision": job.precision, "seed": str(job.seeds[0]),
            "status": record.status + (f" ({record.error})" if record.error else ""),
            "node": record.node or "—",
            "test acc %": f"{100 * run.test['accuracy']:.2f}" if ok and run.test else "—",
            "epoch s": f"{epoch_s:.3f}" if epoch_s else "—",
            "samples/s": f"{timing['samples_per_s']:.0f}" if timing.get("samples_per_s") else "—",
            "speed vs 1 device": f"{single / epoch_s:.2f}x" if single and epoch_s and job.devices > 1 else "—",
            "time to target s": f"{tta:.2f}" if tta is not None else ("not reached" if ok else "—"),
        })
    return rows


def _scaling_key(job: Job) -> tuple:
    return (job.backend, job.device, job.config.batch_size, job.config.learning_rate, job.precision, job.seeds[0])


def format_summary(rows: Sequence[dict[str, str]], markdown: bool = False) -> str:
    """The summary table, aligned for the terminal (the trial id left out: its columns say it) or as Markdown."""
    from benchmarks.report import format_markdown_table, format_text_table

    if markdown:
        return format_markdown_table(rows, SUMMARY_COLUMNS)
    return format_text_table(rows, [column for column in SUMMARY_COLUMNS if column != "trial"])


def write_sweep_report(sweep_dir: Path) -> list[dict[str, str]]:
    """summary.md and the plots, from the saved trials only; returns the table's rows."""
    from common.plots import plot_sweep

    index, results = load_trials(sweep_dir)
    rows = _summary_rows(index, results)
    plots = plot_sweep(list(results.values()), sweep_dir / "plots", index.grid.base.target_accuracy)
    counts = collections.Counter(record.status for record in index.trials)
    lines = [f"# mnist-bench sweep ({index.executor} executor)", "",
             f"Created {index.created}; {len(index.trials)} trials: "
             + ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) + ".", "",
             format_summary(rows, markdown=True), "",
             "epoch s: median steady-state epoch (after the first, compiling one); speed vs 1 device: the same "
             "grid point's one-device epoch time over this one's; each trial's full report: "
             f"`mnist-bench show {TRIALS_DIR}/<trial>`.", ""]
    lines += [f"![{path.stem}](plots/{path.name})" for path in plots]
    write_text_atomic(sweep_dir / "summary.md", "\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    sys.exit(trial_main(*sys.argv[1:]))
