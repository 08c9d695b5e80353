"""The Ray executor: each trial a Ray task on a node with a free slot; its files travel back as text."""

from __future__ import annotations

import collections
import dataclasses
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.harness.children import report_error, stop_reason
from benchmarks.sweep.errors import ClusterLost, SweepError
from benchmarks.sweep.grid import Trial
from benchmarks.sweep.index import TRIALS_DIR
from benchmarks.sweep.local_executor import OnFinished
from benchmarks.sweep.trial import STOP_GRACE_S, TrialOutcome, run_trial
from common.atomic import write_text_atomic
from common.job import Job
from common.results import RESULTS_FILE

# Past its own timeout plus this, a Ray trial whose node stopped answering is cancelled from here.
RAY_UNRESPONSIVE_S = 120.0
# The head counts as gone once its GCS port has answered no probe for this long: past a network blip, and well
# inside the 60 s after which Ray's driver gives up on a silent GCS and ends the whole process itself.
HEAD_LOST_AFTER_S = 10.0
PROBE_INTERVAL_S = 1.0


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
        raise SweepError("--executor ray needs Ray, which the `cluster` extra installs (docs/install.md); "
                         "or use --executor local") from None
    return ray


def check_head_answers(address: str | None) -> None:
    """A --ray-address whose port accepts no connection is refused in one line, before anything is written
    (Ray itself retries such an address for minutes). None and "auto" are Ray's to find."""
    if address in (None, "auto"):
        return
    endpoint = host_and_port(address.removeprefix("ray://"))
    if endpoint is None:
        raise SweepError(f"--ray-address {address}: expected HOST:PORT (or auto)")
    if not any(head_answers(endpoint) for _ in range(3)):
        raise SweepError(f"--ray-address {address}: nothing answers there; start the cluster (`ray start --head`) "
                         "or give the address of a running one")


def run_ray(trials: Sequence[Trial], sweep_dir: Path, timeout_s: float, on_finished: OnFinished,
            on_started: Callable[[Trial], None], address: str | None, trials_per_node: int) -> None:
    """Each trial as a Ray task pinned to a node with a free slot (at most `trials_per_node` per node)."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except ConnectionError as error:
            raise SweepError(f"--ray-address {address}: {str(error).splitlines()[0]}; start the cluster "
                             "(`ray start --head`) or give the address of a running one") from None
    trials_on_ray = RayTrials(ray, trials, sweep_dir, timeout_s, on_finished, on_started, trials_per_node)
    watch = HeadWatch(trials_on_ray.gcs_address, trials_on_ray.head_lost)
    watch.start()
    try:
        while trials_on_ray.pending or trials_on_ray.running:
            trials_on_ray.launch()
            if trials_on_ray.running:
                trials_on_ray.collect()
    except KeyboardInterrupt as stop:
        trials_on_ray.stop(stop_reason(stop))
        raise
    finally:
        watch.stopped.set()
        if started_here:
            ray.shutdown()


class RayTrials:
    """A sweep's trials on a Ray cluster: pending ones launched where a node has a free slot, running ones
    collected, each outcome recorded once (by this loop, or by the head watch when the head is lost)."""

    def __init__(self, ray, trials: Sequence[Trial], sweep_dir: Path, timeout_s: float, on_finished: OnFinished,
                 on_started: Callable[[Trial], None], trials_per_node: int):
        self.ray, self.sweep_dir, self.timeout_s, self.trials_per_node = ray, sweep_dir, timeout_s, trials_per_node
        self.on_finished, self.on_started = on_finished, on_started
        self.gcs_address = ray.get_runtime_context().gcs_address
        self.remote_trial = ray.remote(max_retries=0)(ray_trial)
        self.pending = collections.deque(trials)
        self.running: dict = {}  # ObjectRef -> (trial, node id, start time)
        self.hostnames: dict[str, str] = {}  # node id -> hostname, for the record
        self.recording = threading.Lock()  # one writer of the index at a time: this loop or the head watch

    def finished(self, ref, outcome: TrialOutcome) -> None:
        """Record a running trial's outcome, unless it was recorded already (as lost with the head)."""
        with self.recording:
            if ref in self.running:
                self.on_finished(self.running.pop(ref)[0], outcome)

    def head_lost(self, silent_s: float) -> None:
        """From the watch's thread. Any Ray call of this process now blocks on the dead GCS until Ray kills the
        process without running Python's clean-up, so record, say why and exit before it does."""
        self.recording.acquire(timeout=HEAD_LOST_AFTER_S)
        for trial, node, start in self.running.values():
            self.on_finished(trial, TrialOutcome("failed", f"the Ray head at {self.gcs_address} stopped answering "
                                                 "while this trial ran", self.hostnames.get(node, node),
                                                 time.monotonic() - start))
        os._exit(report_error(ClusterLost(
            f"the Ray head at {self.gcs_address} has not answered for {silent_s:.0f} s; {len(self.running)} running "
            f"trial(s) recorded as failed in {self.sweep_dir / 'sweep.json'}. Start a head and finish the grid with "
            f"`mnist-bench sweep --resume {self.sweep_dir} --executor ray --ray-address HOST:PORT`")))

    def launch(self) -> None:
        """Start each pending trial on a node with a free slot that fits it; one that no node fits fails."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = _usable_nodes(self.ray) if self.pending else {}
        self.hostnames.update((node_id, resources["hostname"]) for node_id, resources in nodes.items())
        busy = collections.Counter(node for _, node, _ in self.running.values())
        for trial in list(self.pending):
            node = next((node_id for node_id, resources in nodes.items()
                         if busy[node_id] < self.trials_per_node and _fits(trial.job, resources)), None)
            if node is None:
                if not any(_fits(trial.job, resources) for resources in nodes.values()):
                    self.pending.remove(trial)
                    self.on_finished(trial, TrialOutcome("failed", _no_node_error(trial.job), "-", 0.0))
                continue
            self.pending.remove(trial)
            self.on_started(trial)
            previous = _trial_files(self.sweep_dir / TRIALS_DIR / trial.id)
            ref = self.remote_trial.options(
                num_cpus=trial.job.devices if trial.job.device == "cpu" else 1,
                num_gpus=trial.job.devices if trial.job.device == "gpu" else 0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            ).remote(trial.job.to_dict(), self.timeout_s, previous)
            self.running[ref] = (trial, node, time.monotonic())
            busy[node] += 1

    def collect(self) -> None:
        """Record the trials that finished within a second, and cancel those whose node stopped answering."""
        ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=1.0)
        for ref in ready:
            trial, node, start = self.running[ref]
            self.finished(ref, _collect(self.ray, ref, self.sweep_dir / TRIALS_DIR / trial.id,
                                        self.hostnames.get(node), start))
        for ref, (trial, node, start) in list(self.running.items()):
            if time.monotonic() - start > self.timeout_s + RAY_UNRESPONSIVE_S:
                self.ray.cancel(ref, force=True)
                self.finished(ref, TrialOutcome("failed", f"no answer from node {node} within --trial-timeout "
                                                f"{self.timeout_s:g} s + {RAY_UNRESPONSIVE_S:g} s; cancelled",
                                                self.hostnames.get(node, node), time.monotonic() - start))

    def stop(self, reason: str) -> None:
        """Stop every running trial (each saves its completed epochs) and record it interrupted."""
        for ref in self.running:
            self.ray.cancel(ref)  # KeyboardInterrupt in the task: it stops its trial process
        self.ray.wait(list(self.running), num_returns=len(self.running), timeout=STOP_GRACE_S)
        for ref, (trial, node, start) in list(self.running.items()):
            self.finished(ref, TrialOutcome("interrupted", reason, self.hostnames.get(node, node),
                                            time.monotonic() - start))


class HeadWatch(threading.Thread):
    """Probes the Ray head's GCS port from a thread; once it has answered no probe for HEAD_LOST_AFTER_S,
    calls `on_lost(seconds silent)`. Ray's own calls cannot tell us: they block while the GCS is gone."""

    def __init__(self, gcs_address: str, on_lost: Callable[[float], None]):
        super().__init__(name="mnist-bench-head-watch", daemon=True)
        self.endpoint = host_and_port(gcs_address)
        self.on_lost = on_lost
        self.stopped = threading.Event()

    def run(self) -> None:
        """Probe every PROBE_INTERVAL_S until stopped or the head is lost."""
        last_answer = time.monotonic()
        while not self.stopped.wait(PROBE_INTERVAL_S):
            if head_answers(self.endpoint):
                last_answer = time.monotonic()
            elif time.monotonic() - last_answer >= HEAD_LOST_AFTER_S:
                self.on_lost(time.monotonic() - last_answer)
                return


def host_and_port(address: str) -> tuple[str, int] | None:
    """("host", port) of "HOST:PORT" (an IPv6 host in brackets), or None when it is not of that form."""
    host, _, port = address.rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def head_answers(endpoint: tuple[str, int]) -> bool:
    """Whether the GCS accepts a TCP connection within PROBE_INTERVAL_S."""
    try:
        with socket.create_connection(endpoint, timeout=PROBE_INTERVAL_S):
            return True
    except OSError:
        return False


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


def _collect(ray, ref, folder: Path, hostname: str | None, start: float) -> TrialOutcome:
    """Write a finished Ray task's files into the trial folder; a lost task becomes a failed outcome."""
    hostname = hostname or "?"
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
