"""verify's run: prove, on this machine and these versions, that the backends compute the same thing.

Every chosen backend trains in its own process from the shared initial weights on the same batches of
real MNIST, one step per call so that its loss and weights are seen after every step; a float64 NumPy
reference (`common.reference`) trains beside them. Each figure is set against its tolerance (one table,
each workload's `tolerances`, shared with the test suite), per backend against float64 and per pair of backends.

Child usage (benchmarks/harness/children.py): python -m benchmarks.harness.verify JOB.json OUTPUT.npz INPUTS.npz
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import itertools
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.harness import children, stacks
from benchmarks.harness.children import python_module
from common.atomic import atomic_path
from common.data import epoch_batches, make_splits, one_hot
from common.job import Job, stack_of
from common.weights import as_layer_list
from common.workloads import EARLY_STEPS, Tolerance, initial_weights, weight_shapes, workload

VERIFY_FILE = "verify.json"
SCHEMA_VERSION = 1
PROBE_IMAGES = 1000  # test images whose probabilities are compared
PARALLEL_PROBES = 2  # probe processes at once: one per core of the CI machine
VERIFY_WORKER = python_module("benchmarks.harness.verify")  # + JOB.json OUTPUT.npz INPUTS.npz


CHECKS = {
    "forward": "forward max |Δp|",
    "step1_weights": "1 step max |Δw|",
    "early_loss_rel": f"first {EARLY_STEPS} steps max rel |Δloss|",
    "early_weights": f"first {EARLY_STEPS} steps max |Δw|",
    "loss_rel": "max rel |Δloss| over the steps",
    "weights_final": "max |Δw| after the last step",
}


def flat_weights(weights, job: Job) -> np.ndarray:
    """Every array of the model, flattened into one vector in its fixed order, for element-wise comparison."""
    return np.concatenate([array.ravel() for array in as_layer_list(weights, weight_shapes(job.config))])


def probe_backend(job: Job, inputs_path: Path, output_path: Path) -> None:
    """In a fresh process: the backend's forward pass, then one step per call, saving loss and weights each step."""
    from backends.frameworks import precision_in_force
    from backends.registry import backend_spec, create_trainer, prepare_process

    prepare_process(job)  # the job's precision too: verify --precision default trains at the default
    inputs = np.load(inputs_path)
    weights = {name[len("w/"):]: inputs[name] for name in inputs.files if name.startswith("w/")}
    trainer = create_trainer(job, {job.seeds[0]: weights})
    model = trainer.seed_model(0)
    x, y, batches = inputs["x"], inputs["y"], inputs["batches"]
    probs = model.predict(inputs["x_probe"])
    losses, snapshots = [], []
    for batch in batches:
        (log,) = trainer.train_epoch(x, y, [[batch]])
        losses.append(log.losses[0])
        snapshots.append(flat_weights(model.get_weights(), job))
    # The precision each framework reports in force, read after training: what verify.json records it ran at.
    precision = json.dumps(precision_in_force(backend_spec(job.backend).frameworks))
    with atomic_path(output_path) as partial, open(partial, "wb") as handle:
        np.savez(handle, probs=probs, losses=np.array(losses), weights=np.stack(snapshots), precision=precision,
                 xla_flags=os.environ.get("XLA_FLAGS", ""))


@dataclasses.dataclass
class Verification:
    """What `verify` found: per backend and per pair, each check's figure, its tolerance and the verdict."""

    created: str
    environment: dict
    job: Job
    steps: int
    tolerances: dict
    backends: dict  # name -> {"checks": {check: {value, tolerance, passed}}, "passed", "loss_rel", "weight_diff"}
    pairs: list  # {"pair": [a, b], "checks": {...}, "passed"}
    reference: dict  # float64 reference losses per step

    @property
    def passed(self) -> bool:
        """Every backend and every pair within every tolerance."""
        return all(entry["passed"] for entry in self.backends.values()) and all(p["passed"] for p in self.pairs)

    def to_json(self) -> str:
        """verify.json, schema-versioned."""
        data = {"schema_version": SCHEMA_VERSION, "created": self.created, "environment": self.environment,
                "job": self.job.to_dict(), "steps": self.steps, "tolerances": self.tolerances,
                "passed": self.passed, "backends": self.backends, "pairs": self.pairs, "reference": self.reference}
        return json.dumps(data, indent=1) + "\n"


def prepare_inputs(job: Job, steps: int, path: Path) -> dict:
    """The shared scenario: initial weights, the first `steps` batches of seed 0's order, probe images."""
    from common.mnist import load_mnist

    config = job.config
    splits = make_splits(load_mnist(job.data_dir, progress=False), config)
    samples = steps * config.batch_size
    if samples > len(splits.x_train):
        raise ValueError(f"--steps {steps} needs {samples} training samples, the split has {len(splits.x_train)}")
    x, y = splits.x_train[:samples], splits.y_train[:samples]
    batches = np.stack(epoch_batches(samples, config.batch_size, job.seeds[0], epoch=0))
    weights = initial_weights(config, job.seeds[0])
    scenario = dict(x=x, y=y, batches=batches, x_probe=splits.x_test[:PROBE_IMAGES])
    np.savez(path, **scenario, **{f"w/{name}": array for name, array in weights.items()})
    return {**scenario, "weights": weights}


def reference_trajectory(scenario: dict, job: Job) -> dict:
    """The float64 reference: forward probabilities, then loss and flattened weights after every step."""
    from common.reference import softmax, train_reference

    model = workload(job.config)
    weights64 = {name: array.astype(np.float64) for name, array in scenario["weights"].items()}
    probs = softmax(model.reference_logits(weights64, scenario["x_probe"].astype(np.float64)))
    losses, snapshots = [], []
    for loss, weights in train_reference(scenario["weights"], scenario["x"], one_hot(scenario["y"]),
                                         scenario["batches"], job.config, model.reference_loss_and_grads):
        losses.append(loss)
        snapshots.append(flat_weights(weights, job))
    return dict(probs=probs, losses=np.array(losses), weights=np.stack(snapshots))


def compare(a: dict, b: dict) -> dict:
    """Every check's figure between two trajectories (backend vs backend, or backend vs float64)."""
    loss_rel = np.abs(a["losses"] - b["losses"]) / np.abs(b["losses"])
    weight_diff = np.abs(a["weights"].astype(np.float64) - b["weights"]).max(axis=1)
    return dict(forward=float(np.abs(a["probs"].astype(np.float64) - b["probs"]).max()),
                step1_weights=float(weight_diff[0]), early_loss_rel=float(loss_rel[:EARLY_STEPS].max()),
                early_weights=float(weight_diff[:EARLY_STEPS].max()), loss_rel=float(loss_rel.max()),
                weights_final=float(weight_diff[-1]), loss_rel_per_step=loss_rel, weight_diff_per_step=weight_diff)


def judge(figures: dict, against: str, tolerances: dict[str, Tolerance]) -> tuple[dict, bool]:
    """Each figure beside its tolerance ('float64' or 'pairwise'), with a verdict; and whether all passed."""
    checks = {}
    for name in CHECKS:
        bound = getattr(tolerances[name], against)
        checks[name] = {"value": figures[name], "tolerance": bound, "passed": bool(figures[name] <= bound)}
    return checks, all(check["passed"] for check in checks.values())


def run_probes(job: Job, inputs_path: Path, work_dir: Path, quiet: bool = True) -> dict[str, dict]:
    """Each backend of `job` in its own process, two at a time (nothing here is timed); {backend: trajectory}."""
    def probe(backend: str) -> dict:
        child = job.for_backend(backend, job.seeds[:1])
        job_path, out_path = work_dir / f"{backend}.job.json", work_dir / f"{backend}.npz"
        job_path.write_text(json.dumps(child.to_dict()))
        stack = stack_of(backend)
        if stack in job.stacks:  # another stack's label: its own interpreter, a clean environment
            completed = children.run(stacks.python_module(job.stacks[stack], VERIFY_WORKER[-1]), job_path,
                                     out_path, inputs_path, env=stacks.worker_environment(job.stacks[stack]))
        else:
            completed = children.run(VERIFY_WORKER, job_path, out_path, inputs_path)
        if completed.returncode:
            lines = [line for line in completed.stderr.strip().splitlines() if line.strip()]
            raise VerifyError(f"{backend}: the probe process failed: {lines[-1] if lines else completed.returncode}")
        if not quiet:
            print(f"verify: {backend} done", file=sys.stderr, flush=True)
        with np.load(out_path) as data:
            return {key: data[key] for key in data.files}

    with concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL_PROBES) as pool:
        return dict(zip(job.backends, pool.map(probe, job.backends)))


class VerifyError(RuntimeError):
    """A backend could not be probed at all (its process failed); exit status 1."""


def verify(job: Job, steps: int, quiet: bool = True) -> Verification:
    """Probe every backend of `job`, train the float64 reference, and judge every figure."""
    from benchmarks.measure.environment import collect_environment

    with tempfile.TemporaryDirectory(prefix="mnist-bench-verify-") as scratch:
        inputs_path = Path(scratch) / "inputs.npz"
        scenario = prepare_inputs(job, steps, inputs_path)
        trajectories = run_probes(job, inputs_path, Path(scratch), quiet)
    reference = reference_trajectory(scenario, job)
    tolerances = workload(job.config).tolerances
    backends = {}
    for name, trajectory in trajectories.items():
        figures = compare(trajectory, reference)
        checks, passed = judge(figures, "float64", tolerances)
        backends[name] = {"checks": checks, "passed": passed,
                          "loss_rel_per_step": figures["loss_rel_per_step"].tolist(),
                          "weight_diff_per_step": figures["weight_diff_per_step"].tolist(),
                          "losses": trajectory["losses"].tolist(),
                          "precision_in_force": json.loads(str(trajectory["precision"])),
                          # The kernel route it was verified under: a route is compared only once verify passes.
                          "xla_flags_in_force": str(trajectory["xla_flags"])}
    pairs = []
    for a, b in itertools.combinations(trajectories, 2):
        checks, passed = judge(compare(trajectories[a], trajectories[b]), "pairwise", tolerances)
        pairs.append({"pair": [a, b], "checks": checks, "passed": passed})
    return Verification(
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        environment=collect_environment(), job=job, steps=steps,
        tolerances={name: dataclasses.asdict(tolerance) for name, tolerance in tolerances.items()},
        backends=backends, pairs=pairs, reference={"losses": reference["losses"].tolist()})


def failures(verification: Verification) -> list[str]:
    """One line per failed check, naming the backend (or pair), the quantity, the figure and the tolerance."""
    lines = []
    for name, entry in verification.backends.items():
        for check, result in entry["checks"].items():
            if not result["passed"]:
                lines.append(f"FAIL {name}: {CHECKS[check]} vs float64 = {result['value']:.3g} "
                             f"> tolerance {result['tolerance']:.0e}")
    for pair in verification.pairs:
        for check, result in pair["checks"].items():
            if not result["passed"]:
                lines.append(f"FAIL {pair['pair'][0]} vs {pair['pair'][1]}: {CHECKS[check]} = "
                             f"{result['value']:.3g} > tolerance {result['tolerance']:.0e}")
    return lines


def main(argv: Sequence[str]) -> int:
    """Child entry point: probe one backend."""
    job_path, output_path, inputs_path = argv
    with open(job_path, encoding="utf-8") as handle:
        job = Job.from_dict(json.load(handle))
    probe_backend(job, Path(inputs_path), Path(output_path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
