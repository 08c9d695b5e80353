"""How often mnist-bench's verdicts are right on this machine: an A/A check and a known A/B, over many trials.

    python -m benchmarks.studies.aa_ab DATA_DIR OUT_DIR [--rounds 60] [--slowdown 0.15]
        [--epochs 4] [--train-limit 16000] [--analyze RUN]

One `mnist-bench run` job with three backends in interleaved rounds, the order rotated each round: the backend
twice (`flax#1`, `flax#2`: the same code, an A/A pair) and a copy of it slowed down on purpose (`flax-slowed`:
after each epoch it sleeps `slowdown` times the epoch's time, so its epochs take exactly 1 + slowdown as long).
The rounds are then cut into disjoint trials of R consecutive rounds, for several R, and each trial's ratios are
judged as `mnist-bench run` judges them (benchmarks/measure/stats.py, NOISE_THRESHOLD): the A/A pair should be
called `~`, the A/B pair slower. Reports, per R, the false-positive rate (A/A not called `~`), the detection rate
(the slowed copy called slower) and the spread of the A/A ratios, which is what the noise threshold is set from.
Writes OUT_DIR/aa_ab.json and OUT_DIR/aa_ab.md (the run folder is OUT_DIR/run). Slow at its defaults (about 8 s per
process); the tests run it in a tiny mode.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from backends import registry
from benchmarks.measure import stats
from benchmarks.studies.common import study_parser
from common.atomic import write_text_atomic

SLOWED = "flax-slowed"
SLOWDOWN_ENV = "MNIST_BENCH_INJECTED_SLOWDOWN"
TRIAL_ROUNDS = (2, 3, 5)
# Trial lengths judged on trials drawn at random from the run's rounds (without replacement within a trial):
# longer trials than the run has disjoint ones of, at the price of trials that share rounds.
RESAMPLED_ROUNDS = (3, 5, 10, 15, 20)
RESAMPLED_TRIALS = 200
GOALS = {"aa_called_same": 0.95, "ab_called_slower": 0.90}


class SlowedTrainer:
    """A trainer whose every epoch call takes (1 + slowdown) times as long: it sleeps for the difference."""

    def __init__(self, trainer, slowdown: float):
        self._trainer, self._slowdown = trainer, slowdown

    def train_epoch(self, *args, **kwargs):
        """The wrapped trainer's epoch, then a sleep of `slowdown` times its duration."""
        start = time.perf_counter()
        logs = self._trainer.train_epoch(*args, **kwargs)
        time.sleep(self._slowdown * (time.perf_counter() - start))
        return logs

    def __getattr__(self, name):
        return getattr(self._trainer, name)


def create_slowed_trainer(config, initial_weights, placement, *, build, backend, slowdown: float = 0.15):
    """The flax backend's trainer, slowed by `slowdown`."""
    from backends.flax_models import create_trainer

    return SlowedTrainer(create_trainer(config, initial_weights, placement, build=build, backend=backend), slowdown)


def register(slowdown: float) -> None:
    """Add `flax-slowed` to this process' registry: the flax backend, every epoch `slowdown` slower."""
    registry.register_backend(dataclasses.replace(
        registry.backend_spec("flax"), name=SLOWED, factory="benchmarks.studies.aa_ab:create_slowed_trainer",
        description=f"flax, slowed by {slowdown:.0%} on purpose", options=(("slowdown", slowdown),)))


def worker(argv: list[str]) -> int:
    """The run's worker, with `flax-slowed` registered first (the slowdown comes from the environment)."""
    import os

    register(float(os.environ[SLOWDOWN_ENV]))
    from benchmarks.harness import worker as real_worker

    return real_worker.main(argv)


def train(args) -> Path:
    """The interleaved run of A, A' and the slowed B; returns its folder."""
    import os

    from benchmarks.harness import parent
    from common.config import ExperimentConfig
    from common.job import Job

    os.environ[SLOWDOWN_ENV] = str(args.slowdown)
    register(args.slowdown)
    config = ExperimentConfig(epochs=args.epochs, train_limit=args.train_limit, test_limit=1000)
    job = Job(backends=("flax#1", "flax#2", SLOWED), config=config, rounds=args.rounds,
              data_dir=str(args.data_dir))
    _, run_dir = parent.run_benchmark(job, args.out_dir / "run", quiet=True,
                                      worker_command=(sys.executable, "-m", "benchmarks.studies.aa_ab", "--worker"))
    return run_dir


def complete_rounds(results) -> list[dict[str, list[float]]]:
    """Each round in which all three backends finished: backend -> its steady epoch times."""
    from benchmarks.report.tables import steady_epoch_seconds

    by_round: dict[int, dict[str, list[float]]] = {}
    for run in results.runs:
        if run.status == "ok":
            by_round.setdefault(run.round, {})[run.backend] = steady_epoch_seconds(run)
    return [by_round[index] for index in sorted(by_round) if len(by_round[index]) == 3]


def trial_verdicts(results, trial_rounds: int) -> dict:
    """Cut the run's rounds into disjoint trials of `trial_rounds` consecutive rounds and judge each trial's A/A
    and A/B ratio."""
    rounds = complete_rounds(results)
    trials = [rounds[start:start + trial_rounds] for start in range(0, len(rounds) - trial_rounds + 1, trial_rounds)]
    return judged(results, trials, trial_rounds)


def resampled_verdicts(results, trial_rounds: int, trials: int = RESAMPLED_TRIALS) -> dict:
    """Judge `trials` trials of `trial_rounds` rounds drawn at random from the run's rounds."""
    rounds = complete_rounds(results)
    rng = np.random.default_rng(0)
    picks = [rng.choice(len(rounds), trial_rounds, replace=False) for _ in range(trials)] \
        if len(rounds) >= trial_rounds else []
    return judged(results, [[rounds[index] for index in pick] for pick in picks], trial_rounds)


def judged(results, trials: list[list[dict]], trial_rounds: int) -> dict:
    """The A/A and A/B verdicts of each trial, and their rates."""
    a, a_twin = results.job.backends[0], results.job.backends[1]
    aa = [stats.speed_ratio([r[a] for r in trial], [r[a_twin] for r in trial], stats.NOISE_THRESHOLD)
          for trial in trials]
    ab = [stats.speed_ratio([r[a] for r in trial], [r[SLOWED] for r in trial], stats.NOISE_THRESHOLD)
          for trial in trials]
    spread = np.abs(np.log([ratio.estimate for ratio in aa]))
    return {"trial_rounds": trial_rounds, "trials": len(trials),
            "aa_called_same": float(np.mean([r.verdict == stats.SAME for r in aa])) if aa else None,
            "ab_called_slower": float(np.mean([r.verdict == stats.SLOWER for r in ab])) if ab else None,
            "aa_ratio_p95_deviation": float(np.expm1(np.quantile(spread, 0.95))) if aa else None,
            "aa_ci_mean_half_width": float(np.mean([(r.high - r.low) / 2 for r in aa])) if aa else None,
            "ab_estimate_median": float(np.median([r.estimate for r in ab])) if ab else None,
            "aa": [r.to_dict() for r in aa], "ab": [r.to_dict() for r in ab]}


def report(run_dir: Path, out: Path) -> dict:
    """Judge every trial length of TRIAL_ROUNDS on the run in `run_dir`; write aa_ab.json and aa_ab.md."""
    from common.results import load_results

    results = load_results(run_dir)
    rows = [trial_verdicts(results, rounds) for rounds in TRIAL_ROUNDS]
    resampled = [resampled_verdicts(results, rounds) for rounds in RESAMPLED_ROUNDS]
    everything = complete_rounds(results)
    a, a_twin = results.job.backends[:2]
    overall = {"aa": stats.speed_ratio([r[a] for r in everything], [r[a_twin] for r in everything],
                                       stats.NOISE_THRESHOLD).to_dict(),
               "ab": stats.speed_ratio([r[a] for r in everything], [r[SLOWED] for r in everything],
                                       stats.NOISE_THRESHOLD).to_dict()}
    config = results.job.config
    summary = {"run": str(run_dir), "backends": list(results.job.backends), "rounds": results.job.rounds,
               "epochs": config.epochs, "train_limit": config.train_limit,
               "noise_threshold": stats.NOISE_THRESHOLD, "goals": GOALS, "by_trial_rounds": rows,
               "resampled_trials": [{key: value for key, value in row.items() if key not in ("aa", "ab")}
                                    for row in resampled], "all_rounds": overall,
               "machine": results.environment.get("cpu"), "created": results.created}
    lines = [f"# A/A and A/B verdicts ({results.created}, {results.environment.get('cpu')})", "",
             f"{results.job.rounds} interleaved rounds of {', '.join(results.job.backends)}; {config.epochs} epochs "
             f"of {config.train_limit} samples each; noise threshold {stats.NOISE_THRESHOLD:.2f}. Goals: A/A called "
             f"~ in >= {GOALS['aa_called_same']:.0%} of trials, the 15% A/B called slower in >= "
             f"{GOALS['ab_called_slower']:.0%}.", "",
             "| rounds per trial | trials | A/A called ~ | A/B called slower | A/A ratio, 95th pct deviation | "
             "A/A CI mean half-width | A/B median ratio |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["trials"]:
            lines.append(f"| {row['trial_rounds']} | {row['trials']} | {row['aa_called_same']:.0%} | "
                         f"{row['ab_called_slower']:.0%} | {row['aa_ratio_p95_deviation']:.3f} | "
                         f"{row['aa_ci_mean_half_width']:.3f} | {row['ab_estimate_median']:.3f} |")
    lines += ["", f"Trials drawn at random from the {len(everything)} rounds ({RESAMPLED_TRIALS} per length; they "
              "share rounds, so they are not independent):", "",
              "| rounds per trial | A/A called ~ | A/B called slower | A/A CI mean half-width |", "|---|---|---|---|"]
    lines += [f"| {row['trial_rounds']} | {row['aa_called_same']:.0%} | {row['ab_called_slower']:.0%} | "
              f"{row['aa_ci_mean_half_width']:.3f} |" for row in resampled if row["trials"]]
    lines += ["", f"All {len(everything)} rounds at once: A/A {stats.Ratio(**overall['aa'])}, "
              f"A/B {stats.Ratio(**overall['ab'])} (the injected slowdown makes it 1/{1 + 0.15:.2f} = 0.87)."]
    write_text_atomic(out / "aa_ab.json", json.dumps(summary, indent=1) + "\n")
    write_text_atomic(out / "aa_ab.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def main(argv: list[str] | None = None) -> int:
    """Run (or, with --analyze, re-judge) the A/A and A/B benchmark."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
    parser = study_parser(__doc__, rounds=60, epochs=4, train_limit=16000, model=False)
    parser.add_argument("--slowdown", type=float, default=0.15)
    parser.add_argument("--analyze", type=Path, default=None, help="judge an earlier run folder instead of training")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report(args.analyze or train(args), args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
