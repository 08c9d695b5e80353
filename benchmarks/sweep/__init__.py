"""`mnist-bench sweep`: a grid of runs, one after another here or as Ray tasks on a cluster.

The package's parts: `grid` (axes, trials), `index` (sweep.json), `trial` (one trial in its own process),
`local_executor` and `ray_executor`, `summary` (the table, summary.md and plots) and `runner` (`run_sweep`).
What callers use is imported here.
"""

from benchmarks.sweep.errors import SweepError, SweepInterrupted
from benchmarks.sweep.grid import SHARED_SETTINGS, Grid, Trial, base_job, grid_from_toml, trial_id
from benchmarks.sweep.index import SWEEP_FILE, TRIALS_DIR, SweepIndex, is_sweep, load_sweep, load_trials, sweep_results
from benchmarks.sweep.runner import EXECUTORS, run_sweep
from benchmarks.sweep.summary import format_summary, summary_rows, write_sweep_report
from benchmarks.sweep.trial import DEFAULT_TRIAL_TIMEOUT_S

__all__ = ["DEFAULT_TRIAL_TIMEOUT_S", "EXECUTORS", "SHARED_SETTINGS", "SWEEP_FILE", "TRIALS_DIR", "Grid", "SweepError",
           "SweepIndex", "SweepInterrupted", "Trial", "base_job", "format_summary", "grid_from_toml", "is_sweep",
           "load_sweep", "load_trials", "run_sweep", "summary_rows", "sweep_results", "trial_id", "write_sweep_report"]
