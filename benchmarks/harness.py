"""`mnist-bench run`: every (backend, seed) in its own child process, results gathered and reported."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from backends.registry import backend_spec
from benchmarks.environment import collect_environment
from benchmarks.info import DEVICE_PROBES, framework_devices
from benchmarks.roofline import training_floor_s
from benchmarks.worker import EVENT_PREFIX
from common.atomic import prepare_output_directory
from common.config import ExperimentConfig
from common.mnist import load_mnist
from common.results import RESULTS_FILE, Results, RunResult, save_results

INTERRUPT_GRACE_S = 20  # how long an interrupted child may take to write its partial result
WORKER_COMMAND = (sys.executable, "-m", "benchmarks.worker")  # + JOB.json RESULT.json


class HarnessError(RuntimeError):
    """The run cannot start as asked (exit code 2); nothing has been written."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; carries the results saved so far."""

    def __init__(self, results: Results, run_dir: Path):
        super().__init__()
        self.results, self.run_dir = results, run_dir


class _ChildInterrupted(KeyboardInterrupt):
    """Ctrl-C while one child trained; carries that child's runs, marked interrupted."""

    def __init__(self, runs: list[RunResult]):
        super().__init__()
        self.runs = runs


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Everything `mnist-bench run` was asked to do."""

    config: ExperimentConfig
    backends: tuple[str, ...]
    seeds: tuple[int, ...]
    device: str = "cpu"
    data_dir: str | None = None
    out_dir: Path | None = None
    quiet: bool = False
    target_accuracy: float = 0.97


def default_run_dir(prefix: str = "", root: str | os.PathLike = "runs") -> Path:
    """runs/<prefix><UTC timestamp>, e.g. runs/20261124T130501Z or runs/suite-20261124T130501Z."""
    return Path(root) / (prefix + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"))


def check_gpu_visible(backends: Sequence[str]) -> None:
    """Fail before anything is written when `--device gpu` has no GPU to use."""
    if not (shutil.which("nvidia-smi") or Path("/dev/nvidia0").exists()):
        raise HarnessError("--device gpu: no NVIDIA GPU is visible on this machine (no /dev/nvidia0, no "
                           "nvidia-smi); use --device cpu")
    needed = {framework for name in backends for framework in backend_spec(name).frameworks} & set(DEVICE_PROBES)
    for framework in sorted(needed):
        # The same per-framework child-process probe that `mnist-bench info` prints.
        devices = framework_devices(framework)
        if devices.startswith("(") or "gpu:" not in devices.lower():
            raise HarnessError(f"--device gpu: {framework} sees no GPU; install the GPU extra "
                               "(README 'GPU') or use --device cpu")


def run_benchmark(plan: RunPlan) -> tuple[Results, Path]:
    """Train every (backend, seed) in its own process; save results.json after each; return them."""
    for name in plan.backends:
        backend_spec(name)  # unknown names fail before anything starts
    if plan.device == "gpu":
        check_gpu_visible(plan.backends)
    data = load_mnist(plan.data_dir)  # verify (or download) once, before any child starts
    run_dir = plan.out_dir or default_run_dir()
    if (run_dir / RESULTS_FILE).exists():
        raise HarnessError(f"{run_dir} already holds a run; choose another --out (runs are never overwritten)")
    prepare_output_directory(run_dir)
    environment = collect_environment(data.source, data.canonical)
    environment["roofline"] = measure_roofline(plan.device, run_dir)
    results = Results(
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        environment=environment,
        config={**plan.config.to_dict(), "seeds": list(plan.seeds), "target_accuracy": plan.target_accuracy},
        runs=[])
    for backend, seeds in child_jobs(plan.backends, plan.seeds):
        try:
            runs = run_child(plan, backend, seeds, run_dir)
        except _ChildInterrupted as interrupted:
            results.runs.extend(interrupted.runs)
            save_results(results, run_dir)
            raise Interrupted(results, run_dir) from None
        for run in runs:
            add_floor_ratio(run, environment["roofline"], plan.config)
        results.runs.extend(runs)
        save_results(results, run_dir)
    return results, run_dir


def child_jobs(backends: Sequence[str], seeds: Sequence[int]) -> list[tuple[str, tuple[int, ...]]]:
    """(backend, seeds) per child process: seed by seed, backends side by side; a multi-seed backend
    trains all seeds in one child."""
    jobs = []
    for position, seed in enumerate(seeds):
        for backend in backends:
            if not backend_spec(backend).multi_seed:
                jobs.append((backend, (seed,)))
            elif position == 0:
                jobs.append((backend, tuple(seeds)))
    return jobs


def measure_roofline(device: str, run_dir: Path) -> dict | None:
    """GEMM peak and bandwidth, measured in a child process before any training starts."""
    probe = subprocess.run([sys.executable, "-m", "benchmarks.roofline", "--json", "--device", device],
                           capture_output=True, text=True)
    if probe.returncode:
        (run_dir / "logs").mkdir(exist_ok=True)
        (run_dir / "logs" / "roofline.log").write_text(probe.stderr)
        print("warning: could not measure the roofline; see logs/roofline.log", file=sys.stderr)
        return None
    return json.loads(probe.stdout.strip().splitlines()[-1])


def add_floor_ratio(run: RunResult, roofline: dict | None, config: ExperimentConfig) -> None:
    """Steady-state epoch time over the epoch's compute floor at the measured GEMM peak."""
    epoch_s = run.timing.get("epoch_s_median") if run.timing else None
    if not roofline or not epoch_s:
        return
    train_samples = run.timing["samples_per_s"] * epoch_s
    floor = training_floor_s(config, round(train_samples), roofline["gemm_peak_gflops"])
    run.timing["floor_epoch_s"] = floor
    run.timing["floor_ratio"] = epoch_s / floor


def run_child(plan: RunPlan, backend: str, seeds: tuple[int, ...], run_dir: Path) -> list[RunResult]:
    """One worker process; its crash, divergence or interruption becomes recorded runs, one per seed."""
    config = plan.config.replace(seed=seeds[0])
    log_dir = run_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    log_name = f"{backend}-seed{'-'.join(map(str, seeds))}.log"
    with tempfile.TemporaryDirectory(prefix="mnist-bench-") as scratch:
        job_path, result_path = Path(scratch) / "job.json", Path(scratch) / "result.json"
        job_path.write_text(json.dumps({"config": config.to_dict(), "backend": backend, "device": plan.device,
                                        "seeds": list(seeds), "data_dir": plan.data_dir,
                                        "target_accuracy": plan.target_accuracy}))
        progress = _Progress(backend, seeds, config, plan.quiet)
        with open(log_dir / log_name, "w", encoding="utf-8") as log:
            child = subprocess.Popen([*WORKER_COMMAND, str(job_path), str(result_path)],
                                     stdout=subprocess.PIPE, stderr=log, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
            try:
                for line in child.stdout:
                    if line.startswith(EVENT_PREFIX):
                        event = json.loads(line[len(EVENT_PREFIX):])
                        progress.update(event)
                        if event["event"] == "epoch":
                            # The log tells how far a run got, even one that later crashed.
                            log.write(format_epoch_line(event) + "\n")
                            log.flush()
                    else:
                        log.write(line)
                returncode = child.wait()
            except KeyboardInterrupt:
                _stop(child)
                progress.close()
                runs = _read_results(result_path) or [RunResult(backend, seed, plan.device) for seed in seeds]
                for run in runs:
                    run.status, run.error = "interrupted", "interrupted by the user (Ctrl-C)"
                raise _ChildInterrupted(runs) from None
            finally:
                progress.close()
        runs = _read_results(result_path)
    if runs is None:
        cause = (f"killed by signal {signal.Signals(-returncode).name}" if returncode < 0
                 else f"exited with code {returncode}")
        if returncode == -signal.SIGKILL:
            cause += " (out of memory?)"
        error = f"worker {cause}; see logs/{log_name}: {_tail(log_dir / log_name)}"
        runs = [RunResult(backend, seed, plan.device, status="failed", error=error) for seed in seeds]
    for run in runs:
        if not plan.quiet and run.status != "ok":
            print(f"  {backend} seed {run.seed}: {run.status}: {run.error}", file=sys.stderr)
    return runs


def format_epoch_line(event: dict) -> str:
    """One log line per finished epoch: 'epoch 3/10 seed 0: loss 0.1234 ...'."""
    return (f"epoch {event['epoch']}/{event['epochs']} seed {event['seed']}: loss {event['loss']:.4f} "
            f"accuracy {event['accuracy']:.4f} val_loss {event['val_loss']:.4f} "
            f"val_accuracy {event['val_accuracy']:.4f} ({event['epoch_s']:.3f} s)")


def _stop(child: subprocess.Popen) -> None:
    # The child got the same SIGINT from the terminal; give it time to save, then insist.
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

    def __init__(self, backend: str, seeds: tuple[int, ...], config: ExperimentConfig, quiet: bool):
        self.bar = None
        if quiet:
            return
        from tqdm import tqdm

        label = "seed" if len(seeds) == 1 else "seeds"
        self.bar = tqdm(total=config.epochs, desc=f"{backend:<11} {label} {','.join(map(str, seeds))}", unit="epoch", file=sys.stderr,
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
            self.bar.set_postfix_str(f"epoch {event['epoch']} loss {event['loss']:.4f} "
                                     f"val_acc {event['val_accuracy']:.4f} ({event['epoch_s']:.2f} s)", refresh=True)

    def close(self) -> None:
        """Finish the bar (idempotent)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
