"""The Ray executor: each trial a Ray task on a node with a free slot; its files travel back as text."""

from __future__ import annotations

import collections
import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.sweep.errors import SweepError
from benchmarks.sweep.grid import Trial
from benchmarks.sweep.index import TRIALS_DIR
from benchmarks.sweep.local_executor import OnFinished
from benchmarks.sweep.trial import STOP_GRACE_S, TrialOutcome, run_trial
from common.atomic import write_text_atomic
from common.job import Job
from common.results import RESULTS_FILE

# Past its own timeout plus this, a Ray trial whose node stopped answering is cancelled from here.
RAY_UNRESPONSIVE_S = 120.0


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
