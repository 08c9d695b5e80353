"""`mnist-bench run`: every (backend, seeds) part of a job in its own child process, results gathered.

The parent never imports a framework. It writes results.json atomically after every child, so a
crash, a Ctrl-C or a power cut loses at most the run in progress, and `--resume` finishes the rest.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from common.errors import MnistBenchError
from backends.frameworks import DEVICE_PROBES
from backends.registry import backend_spec, check_can_run, check_installed, process_settings
from benchmarks.harness import children, stacks
from benchmarks.harness.children import python_module
from benchmarks.harness.costs import SPAWNED_AT_ENV
from benchmarks.measure.calibration import cached_limits, floors_key, keep_limits, noise_threshold
from benchmarks.measure.environment import collect_environment, framework_devices, git_commit, usable_cores
from benchmarks.measure.roofline import blas_forcing, floor_key, measuring_environment, training_floor_s
from benchmarks.harness.worker import EVENT_PREFIX
from common.atomic import DISK_FULL_ERRNOS, claim_output_directory, disk_full_error, new_output_directory
from common.data import steps_per_epoch
from common.job import TIMING_EPOCHS, TIMING_WARMUP_EPOCHS, Job, stack_of
from common.mnist import load_mnist
from common.results import RESULTS_FILE, Results, RunResult, load_results, save_results

INTERRUPT_GRACE_S = 20  # how long an interrupted child may take to write its partial result
WORKER_COMMAND = python_module("benchmarks.harness.worker")  # + JOB.json RESULT.json [PROFILE_DIR]
ROOFLINE_COMMAND = python_module("benchmarks.measure.roofline")  # + JOB.json LIMITS.json
# Below this many full batches per epoch, fixed per-epoch costs (the validation call, Python, fit's
# set-up) dominate the epoch time, and a ratio to the compute floor would measure them, not training.
MIN_FLOOR_BATCHES = 10
# The step floor has converged when, of at least FLOOR_MIN_PROCESSES measuring processes, the two lowest put it this
# close together (at most FLOOR_PROCESSES). A measuring process is fast or ~20% slow for its whole life, about as
# often, so two slow ones agree too often to stop at two (docs/results/2026-12-08-timing-rounds.md).
FLOOR_AGREEMENT = 0.05
FLOOR_MIN_PROCESSES = 4
FLOOR_PROCESSES = 6
# A run that trains longer than this measures the machine's limits again afterwards and keeps the best: this
# shared machine's speed drifts over minutes, while a shorter run shares the minute of its first measurement.
REMEASURE_AFTER_S = 60.0


class HarnessError(MnistBenchError, RuntimeError):
    """The run cannot start as asked (exit code 2); nothing has been written."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM (`signum`) during a run; carries the results saved so far."""

    def __init__(self, results: Results, run_dir: Path, signum: int = signal.SIGINT):
        super().__init__()
        self.results, self.run_dir, self.signum = results, run_dir, signum


class _ChildInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM (`signum`) while one child trained; carries that child's runs, marked interrupted."""

    def __init__(self, runs: list[RunResult], signum: int):
        super().__init__()
        self.runs, self.signum = runs, signum


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def check_gpu_visible(backends, devices: int) -> None:
    """Fail before anything is written when `--device gpu` has no GPU, or fewer than `devices`, to use."""
    if not (shutil.which("nvidia-smi") or Path("/dev/nvidia0").exists()):
        raise HarnessError("--device gpu: no NVIDIA GPU is visible on this machine (no /dev/nvidia0, no "
                           "nvidia-smi); use --device cpu")
    needed = {framework for name in backends for framework in backend_spec(name).frameworks} & set(DEVICE_PROBES)
    for framework in sorted(needed):
        # The same per-framework child-process probe that `mnist-bench info` prints.
        seen = framework_devices(framework)
        if seen.startswith("(") or "gpu:" not in seen.lower():
            raise HarnessError(f"--device gpu: {framework} sees no GPU; install the GPU extra "
                               "(docs/gpu.md) or use --device cpu")
        count = seen.lower().count("gpu:")
        if count < devices:
            raise HarnessError(f"--devices {devices}: {framework} sees only {count} GPU(s) on this machine; "
                               f"use --devices {count} or fewer")


def check_job_can_start(job: Job) -> None:
    """Everything that can be checked before a run folder exists: backend names, frameworks, the device."""
    check_can_run(job)
    check_installed(job)
    if job.device == "gpu":
        check_gpu_visible(job.backends, job.devices)
    elif job.devices > usable_cores():
        # Virtual CPU devices beyond the cores would only take turns on them: not a parallel run.
        raise HarnessError(f"--devices {job.devices}: this machine has {usable_cores()} usable CPU cores, so at "
                           f"most {usable_cores()} CPU devices; use --devices {usable_cores()} or fewer")
    if job.xla_flags and any("jax" in backend_spec(name).frameworks for name in job.backends):
        check_xla_flags(job.xla_flags)


def check_xla_flags(flags: str) -> None:
    """Refuse XLA flags this jaxlib does not know, in one line, before anything trains (XLA aborts a process
    whose XLA_FLAGS it cannot parse, at its first use of a backend)."""
    probe = children.run((sys.executable, "-c", "import jax; jax.devices('cpu')"),
                         env=children.child_environment(XLA_FLAGS=flags, JAX_PLATFORMS="cpu"))
    if probe.returncode != 0:
        unknown = [line.split("] ", 1)[-1] for line in probe.stderr.splitlines() if "XLA_FLAGS" in line]
        raise HarnessError(f"--xla-flags {flags!r}: {unknown[-1] if unknown else 'JAX fails to start with them'}; "
                           "pass flags this jaxlib knows (docs/performance.md lists the kernel routes)")


def run_benchmark(job: Job, out_dir: Path | None = None, quiet: bool = False, roofline: dict | None = None,
                  measure_floor: bool = True, worker_command: Sequence[str] | None = None) -> tuple[Results, Path]:
    """Train every (backend, seeds) part of `job` in its own process; save results.json after each.

    `roofline`: this machine's floors at the job's device and batch size, when the caller measured them
    already (a sweep, once per batch size); measured here otherwise, unless `measure_floor` is False (`--no-floor`:
    no limits, no floor columns, the measuring child's seconds saved). `worker_command`: the child each part
    trains in, WORKER_COMMAND unless given (a study's own worker, say, that registers a backend of its own before
    the real worker runs).
    """
    check_job_can_start(job)
    data = load_mnist(job.data_dir)  # verify (or download) once, before any child starts
    # Claimed before anything is written: of two runs given one --out, one trains and the other stops here.
    run_dir = claim_output_directory(out_dir or new_output_directory())
    if (run_dir / RESULTS_FILE).exists():
        raise HarnessError(f"{run_dir} already holds a run; choose another --out, or finish it with --resume "
                           f"{run_dir} (runs are never overwritten)")
    environment = collect_environment(data.source, data.canonical)
    environment["roofline"] = roofline or (measure_roofline(job, run_dir) if measure_floor else None)
    if not measure_floor:
        environment["roofline_skipped"] = "not measured (--no-floor)"
    environment["framework_settings"] = process_settings(job)
    threshold, source = noise_threshold()
    environment["noise_threshold"] = {"threshold": threshold, "source": source}
    results = Results(created=_utc_now().isoformat(timespec="seconds"), environment=environment, job=job, runs=[])
    training_started = time.monotonic()
    results = train_missing(results, run_dir, quiet, worker_command)
    if roofline is None and measure_floor and time.monotonic() - training_started >= REMEASURE_AFTER_S:
        remeasure_floors(results, run_dir)
    return results, run_dir


def resume_benchmark(run_dir: Path, quiet: bool = False,
                     worker_command: Sequence[str] | None = None) -> tuple[Results, Path]:
    """Finish a saved run: keep its `ok` runs, train the missing, interrupted, failed or diverged ones."""
    if (Path(run_dir) / RESULTS_FILE).is_file():
        claim_output_directory(run_dir)  # a run another live process is writing is refused here
    results = load_results(run_dir)
    if results.schema_version == 1:
        raise HarnessError(f"{run_dir} was written by an older mnist-bench (schema 1) that did not record its "
                           "backends and device; start a new run instead")
    check_job_can_start(results.job)
    load_mnist(results.job.data_dir)
    results.environment.setdefault("resumed", []).append(
        {"at": _utc_now().isoformat(timespec="seconds"), "hostname": socket.gethostname(),
         "git_commit": git_commit()})
    return train_missing(results, run_dir, quiet, worker_command), run_dir


def train_missing(results: Results, run_dir: Path, quiet: bool,
                  worker_command: Sequence[str] | None = None) -> Results:
    """Run every child job whose runs are not all `ok` yet; results.json is rewritten after each."""
    done = {run_key(run) for run in results.runs if run.status == "ok"}
    for child in child_jobs(results.job):
        if all((child.job.backend, seed, child.round) in done for seed in child.job.seeds):
            continue
        try:
            several = results.job.rounds + results.job.timing_rounds > 1
            # Logs and progress count the timing rounds from 1 too: `-timing1`, `timing 1`.
            shown = child.round - results.job.rounds if child.job.timing_only else child.round
            runs = run_child(child.job, run_dir, quiet, shown if several else None, worker_command)
        except _ChildInterrupted as interrupted:
            _merge_runs(results, _in_round(interrupted.runs, child.round))
            save_results(results, run_dir)
            raise Interrupted(results, run_dir, interrupted.signum) from None
        for run in _in_round(runs, child.round):
            add_floor_ratio(run, results.environment.get("roofline"), results.job)
        _merge_runs(results, runs)
        save_results(results, run_dir)
    return results


def run_key(run: RunResult) -> tuple[str, int, int]:
    """What identifies a run within its job: (backend label, seed, round)."""
    return run.backend, run.seed, run.round


def _in_round(runs: list[RunResult], round_index: int) -> list[RunResult]:
    for run in runs:
        run.round = round_index
    return runs


def _merge_runs(results: Results, new_runs: list[RunResult]) -> None:
    """Put `new_runs` in place of any earlier attempt of the same (backend, seed, round), in the job's order."""
    replaced = {run_key(run) for run in new_runs}
    runs = [run for run in results.runs if run_key(run) not in replaced] + new_runs
    order = {(child.job.backend, seed, child.round): position
             for position, child in enumerate(child_jobs(results.job)) for seed in child.job.seeds}
    results.runs = sorted(runs, key=lambda run: (order.get(run_key(run), len(order)), run.seed))


@dataclasses.dataclass(frozen=True)
class ChildJob:
    """One worker process' part of a job: a one-backend job and the round it belongs to (the timing rounds come
    after the full ones; their jobs are `timing_only`)."""

    round: int
    job: Job


def round_order(backends: tuple[str, ...], round_index: int) -> tuple[str, ...]:
    """The backends in the order round `round_index` trains them: a Williams design (Williams 1949), balanced for
    carry-over. Over each period (n rounds for an even number n of backends, 2n for an odd one: the rows and then
    their mirror images) every backend goes first, second, ... equally often and follows every other backend
    equally often, so neither the machine's drift nor what the previous process left behind favours one. With one
    to three backends its first n rounds are the plain rotations."""
    count = len(backends)
    base = [0]
    for step in range(1, count):  # 0, 1, n-1, 2, n-2, ...
        base.append((step + 1) // 2 if step % 2 else count - step // 2)
    index = round_index % (count if count % 2 == 0 else 2 * count)
    order = [backends[(position + index % count) % count] for position in base]
    return tuple(order if index < count else order[::-1])


def child_jobs(job: Job) -> list[ChildJob]:
    """The job's parts, one per worker process: round by round (the full rounds, then the timing rounds), and in
    each round seed by seed with the backends side by side (in the round's order, `round_order`); a backend that trains
    several seeds per process gets them together, at the position of the first."""
    children = []
    for round_index in range(job.rounds + job.timing_rounds):
        timing_only = round_index >= job.rounds
        for position, seed in enumerate(job.seeds):
            for backend in round_order(job.backends, round_index):
                per_process = backend_spec(backend).seeds_per_process or len(job.seeds)
                if position % per_process == 0:
                    seeds = job.seeds[position:position + per_process]
                    children.append(ChildJob(round_index, job.for_backend(backend, seeds, timing_only)))
    return children


def measure_roofline(job: Job, run_dir: Path | None) -> dict | None:
    """GEMM peak, bandwidth and the step floor of the job's model and batch size (and, on several devices, the
    gradient all-reduce): this machine's kept measurement for the job's floor key where there is one, else measured
    in child processes before training until it converges, and kept; None (and a log in `run_dir`) if it fails."""
    key = floors_key(floor_key(job))
    cached = cached_limits(key)
    if cached is not None:
        return {**cached, "cached": True}
    limits, log = measure_converged_limits(job)
    if limits is None and run_dir is not None:
        (run_dir / "logs").mkdir(exist_ok=True)
        (run_dir / "logs" / "roofline.log").write_text(log)
        print("warning: could not measure the roofline; see logs/roofline.log", file=sys.stderr)
    elif limits is not None:
        keep_limits(key, limits)
    return limits


def measure_converged_limits(job: Job) -> tuple[dict | None, str]:
    """(limits, the children's stderr): measured in fresh processes until, of at least FLOOR_MIN_PROCESSES, the two
    lowest step floors lie within FLOOR_AGREEMENT (at most FLOOR_PROCESSES), as the best of them: a process can be
    slow for its whole life on these machines, and no number of repeats inside it finds the floor then."""
    best, log, floors = None, "", []
    for _ in range(FLOOR_PROCESSES):
        limits, child_log = measure_limits_in_child(job)
        log += child_log
        if limits is None:
            break
        best = best_roofline(best, limits)
        if not limits.get("step_floor"):
            break  # nothing to converge (no CPU step floor on this machine)
        floors = sorted([*floors, limits["step_floor"]["step_floor_s"]])
        if len(floors) >= FLOOR_MIN_PROCESSES and floors[1] <= floors[0] * (1 + FLOOR_AGREEMENT):
            break
    if best is not None:
        best["floor_processes"] = len(floors) or 1
    return best, log


def measure_limits_in_child(job: Job, other_batch_sizes: tuple[int, ...] = ()) -> tuple[dict | None, str]:
    """(limits, the child's stderr): measured with the fastest BLAS kernel the CPU has, in a child whose
    environment alone lacks what forces OpenBLAS onto older kernels; if that child fails, measured again
    with the environment as set (the limits then say so in `step_floor.blas_forced`)."""
    with tempfile.TemporaryDirectory(prefix="mnist-bench-roofline-") as scratch:
        job_path, limits_path = Path(scratch) / "job.json", Path(scratch) / "limits.json"
        job_path.write_text(json.dumps(job.to_dict()))
        # The whole job travels, its precision too: a --precision default run is set against default-precision floors.
        extra = [",".join(map(str, other_batch_sizes))] if other_batch_sizes else []
        environments = [measuring_environment(children.child_environment())]
        if blas_forcing():
            environments.append(children.child_environment())
        log = ""
        for environment in environments:
            probe = children.run(ROOFLINE_COMMAND, job_path, limits_path, *extra, env=environment)
            log += probe.stderr
            if probe.returncode == 0:
                return json.loads(limits_path.read_text(encoding="utf-8")), log
        return None, log


def best_roofline(first: dict | None, second: dict | None) -> dict | None:
    """Two measurements of one machine's limits as the more demanding one: the higher GEMM peak and bandwidth,
    the lower step floor. On a shared machine a floor measured in a slow minute is no floor."""
    if not first or not second:
        return first or second
    merged = {**first, "gemm_peak_gflops": max(first["gemm_peak_gflops"], second["gemm_peak_gflops"]),
              "bandwidth_gb_s": max(first["bandwidth_gb_s"], second["bandwidth_gb_s"]),
              "measurements": first.get("measurements", 1) + second.get("measurements", 1)}
    floors = [limits["step_floor"] for limits in (first, second) if limits.get("step_floor")]
    if floors:
        merged["step_floor"] = min(floors, key=lambda floor: floor["step_floor_s"])
    return merged


def remeasure_floors(results: Results, run_dir: Path) -> None:
    """Measure the limits again after training, keep the best of both, and recompute every run's floor ratios."""
    if (results.environment.get("roofline") or {}).get("cached"):
        return  # kept from earlier runs' measurements, each converged
    roofline = best_roofline(results.environment.get("roofline"), measure_converged_limits(results.job)[0])
    if roofline is None:
        return
    keep_limits(floors_key(floor_key(results.job)), roofline)
    results.environment["roofline"] = roofline
    for run in results.runs:
        add_floor_ratio(run, roofline, results.job)
    save_results(results, run_dir)


def add_floor_ratio(run: RunResult, roofline: dict | None, job: Job) -> None:
    """Steady-state epoch time over two floors: the step floor (this batch size's own GEMMs and Adam traffic,
    `floor_ratio`'s honest sibling `step_floor_ratio`) and the large-GEMM floor (`floor_ratio`).

    Both are left out (None, shown as "—") for epochs of fewer than MIN_FLOOR_BATCHES full batches.
    """
    epoch_s = run.timing.get("epoch_s_median") if run.timing else None
    train_samples = run.timing.get("train_samples") if run.timing else None
    if not roofline or not epoch_s or not train_samples:
        return
    seeds = run.timing.get("seeds_in_program", 1)
    meaningful = train_samples // job.config.batch_size >= MIN_FLOOR_BATCHES
    run.timing["floor_epoch_s"] = training_floor_s(job.config, train_samples, roofline["gemm_peak_gflops"])
    run.timing["floor_ratio"] = epoch_s / (run.timing["floor_epoch_s"] * seeds) if meaningful else None
    step_floor = roofline.get("step_floor")
    if step_floor and step_floor["batch_size"] == job.config.batch_size:
        run.timing["step_floor_epoch_s"] = steps_per_epoch(train_samples, job.config.batch_size) * step_floor["step_floor_s"]
        run.timing["step_floor_ratio"] = (epoch_s / (run.timing["step_floor_epoch_s"] * seeds)
                                          if meaningful else None)


def run_child(job: Job, run_dir: Path, quiet: bool = False, round_index: int | None = None,
              worker_command: Sequence[str] | None = None) -> list[RunResult]:
    """One worker process for a one-backend job (of round `round_index`, when the run has several: its index among
    the full rounds, or among the timing rounds for a timing job, for its log's name and progress bar); its crash,
    divergence or interruption becomes recorded runs."""
    log_dir = run_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    in_round = f"-{'timing' if job.timing_only else 'round'}{round_index + 1}" if round_index is not None else ""
    log_name = f"{job.backend}-seed{'-'.join(map(str, job.seeds))}{in_round}.log"
    stack = stack_of(job.backend)
    if job.compile_cache and stack in job.stacks:
        # A compile cache per stack: programs compiled by one JAX version are no use to another.
        job = job.replace(compile_cache=str(Path(job.compile_cache) / f"stack-{stack}"))
    with tempfile.TemporaryDirectory(prefix="mnist-bench-") as scratch:
        job_path, result_path = Path(scratch) / "job.json", Path(scratch) / "result.json"
        job_path.write_text(json.dumps(job.to_dict()))
        progress = _Progress(job, quiet, round_index)
        # Every finished epoch as the worker announced it: a worker that dies or is stopped before writing its
        # result still leaves its completed epochs in results.json.
        announced: dict[int, list[dict]] = {seed: [] for seed in job.seeds}
        returncode, process_s = _run_worker(job, run_dir, log_dir / log_name, job_path, result_path, progress,
                                            announced, worker_command)
        runs = _read_results(result_path)
    if runs is None:
        cause = (f"killed by signal {signal.Signals(-returncode).name}" if returncode < 0
                 else f"exited with code {returncode}")
        if returncode == -signal.SIGKILL:
            cause += " (out of memory?)"
        error = f"worker {cause}; see logs/{log_name}: {_tail(log_dir / log_name)}"
        runs = [RunResult(job.backend, seed, job.device, devices=job.devices, status="failed", error=error,
                          history=announced[seed]) for seed in job.seeds]
    for run in runs:
        run.timing_only = job.timing_only
        run.costs["process_s"] = process_s  # the worker's whole life, as the parent saw it
        if not quiet and run.status != "ok":
            print(f"  {job.backend} seed {run.seed}: {run.status}: {run.error}", file=sys.stderr)
    return runs


def _run_worker(job: Job, run_dir: Path, log_path: Path, job_path: Path, result_path: Path, progress: _Progress,
                announced: dict[int, list[dict]], worker_command: Sequence[str] | None) -> tuple[int, float]:
    """Start the worker, relay its events to the progress bar, the log and `announced`; (exit code, seconds).

    A full disk under the log stops the worker and is one DiskFullError naming the log (the results.json
    saved before this worker is untouched).
    """
    child = None
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            spawned_at = time.monotonic()
            profile = [str(run_dir / "profiles" / log_path.stem)] if job.profile else []
            command, environment = worker_command or WORKER_COMMAND, children.child_environment(
                **{SPAWNED_AT_ENV: repr(spawned_at)})
            stack = stack_of(job.backend)
            if stack in job.stacks and worker_command is None:
                # Another stack's label: its own interpreter and environment, nothing of this one's leaking in.
                command = stacks.python_module(job.stacks[stack], WORKER_COMMAND[-1])
                environment = stacks.worker_environment(job.stacks[stack], **{SPAWNED_AT_ENV: repr(spawned_at)})
            child = children.spawn(command, job_path, result_path, *profile, stdout=subprocess.PIPE, stderr=log,
                                   text=True, env=environment)
            try:
                for line in child.stdout:
                    if line.startswith(EVENT_PREFIX):
                        event = json.loads(line[len(EVENT_PREFIX):])
                        progress.update(event)
                        if event["event"] == "epoch":
                            announced[event["seed"]].append(
                                {key: value for key, value in event.items() if key not in ("event", "seed", "epochs")})
                            # The log tells how far a run got, even one that later crashed.
                            log.write(format_epoch_line(event) + "\n")
                            log.flush()
                    else:
                        log.write(line)
                returncode = child.wait()
                process_s = time.monotonic() - spawned_at
            except KeyboardInterrupt as stop:
                _stop(child)
                progress.close()
                runs = _read_results(result_path) or [RunResult(job.backend, seed, job.device, devices=job.devices,
                                                                history=announced[seed]) for seed in job.seeds]
                for run in runs:
                    run.status, run.error = "interrupted", children.stop_reason(stop)
                raise _ChildInterrupted(runs, children.stop_signal(stop)) from None
            finally:
                progress.close()
    except OSError as error:
        if error.errno not in DISK_FULL_ERRNOS:
            raise
        if child is not None:
            _stop(child)
        raise disk_full_error(log_path, None) from None
    return returncode, process_s


def format_epoch_line(event: dict) -> str:
    """One log line per finished epoch: 'epoch 3/10 seed 0: loss 0.1234 ...'."""
    return (f"epoch {event['epoch']}/{event['epochs']} seed {event['seed']}: loss {event['loss']:.4f} "
            f"accuracy {event['accuracy']:.4f} val_loss {event['val_loss']:.4f} "
            f"val_accuracy {event['val_accuracy']:.4f} ({event['epoch_s']:.3f} s)")


def _stop(child: subprocess.Popen) -> None:
    # The child may have got the same signal (a terminal's Ctrl-C, `timeout`'s SIGTERM to the group); either way it
    # saves on SIGINT: give it time to, then insist.
    try:
        child.send_signal(signal.SIGINT)
        child.wait(INTERRUPT_GRACE_S)
    except (subprocess.TimeoutExpired, OSError):
        child.kill()
        child.wait()


def _read_results(path: Path) -> list[RunResult] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return [RunResult(**run) for run in data]


def _tail(path: Path, limit: int = 300) -> str:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][-limit:] if lines else "(no output)"


class _Progress:
    """A tqdm bar per run: epoch, step, loss and accuracy as the child reports them."""

    def __init__(self, job: Job, quiet: bool, round_index: int | None = None):
        self.bar = None
        if quiet:
            return
        from tqdm import tqdm

        label = "seed" if len(job.seeds) == 1 else "seeds"
        in_round = (f" {'timing' if job.timing_only else 'round'} {round_index + 1}"
                    if round_index is not None else "")
        self.bar = tqdm(total=TIMING_WARMUP_EPOCHS + TIMING_EPOCHS if job.timing_only else job.config.epochs,
                        desc=f"{job.backend:<11} {label} {','.join(map(str, job.seeds))}{in_round}",
                        unit="epoch", file=sys.stderr,
                        bar_format="{desc} {percentage:3.0f}%|{bar:20}| {n:.2f}/{total_fmt} epochs "
                                   "[{elapsed}<{remaining}{postfix}]", dynamic_ncols=True)

    def update(self, event: dict) -> None:
        """Advance the bar to the event's position and show its metrics."""
        if self.bar is None:
            return
        if event["event"] == "step":
            self.bar.n = event["epoch"] - 1 + event["step"] / event["steps"]
            self.bar.set_postfix_str(f"epoch {event['epoch']} step {event['step']}/{event['steps']} "
                                     f"loss {event['loss']:.4f} acc {event['accuracy']:.4f}", refresh=True)
        elif event["event"] == "epoch":
            self.bar.n = event["epoch"]
            validated = math.isfinite(event["val_accuracy"])  # a timing process validates nothing
            self.bar.set_postfix_str(f"epoch {event['epoch']} loss {event['loss']:.4f} "
                                     + (f"val_acc {event['val_accuracy']:.4f} " if validated else "")
                                     + f"({event['epoch_s']:.2f} s)", refresh=True)

    def close(self) -> None:
        """Finish the bar (idempotent)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
