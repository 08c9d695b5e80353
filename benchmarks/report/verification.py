"""verify's output: its table for the terminal, and verify.json with its plots."""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness.verify import CHECKS, VERIFY_FILE, Verification, failures
from common.atomic import write_text_atomic
from common.workloads import EARLY_STEPS, describe_model, workload


def text_table(verification: Verification) -> str:
    """Checks as rows, backends as columns: the figure against float64 and the worst pairwise figure."""
    names = list(verification.backends)
    header = ["check: vs float64; worst pair", "tolerances", *names]
    rows = []
    for check, label in CHECKS.items():
        row = [label.replace("over the steps", f"over {verification.steps} steps")
               .replace("after the last step", f"after {verification.steps} steps"),
               f"{verification.tolerances[check]['float64']:.0e}; {verification.tolerances[check]['pairwise']:.0e}"]
        for name in names:
            own = verification.backends[name]["checks"][check]
            paired = [p["checks"][check]["value"] for p in verification.pairs if name in p["pair"]]
            cell = f"{own['value']:.1e}" + (f"; {max(paired):.1e}" if paired else "")
            ok = own["passed"] and all(p["checks"][check]["passed"] for p in verification.pairs if name in p["pair"])
            row.append(cell + ("" if ok else " FAIL"))
        rows.append(row)
    rows.append(["result", "", *("PASS" if verification.backends[name]["passed"] and all(
        p["passed"] for p in verification.pairs if name in p["pair"]) else "FAIL" for name in names)])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    job = verification.job
    reference = workload(job.config).reference_source
    lines.append(f"{describe_model(job.config)}: {verification.steps} steps of batch {job.config.batch_size} from seed "
                 f"{job.seeds[0]}'s weights and order, dropout off; device {job.device}; precision {job.precision}; "
                 f"float64 reference: {reference}")
    return "\n".join([*lines, *failures(verification)])


def write_verification(verification: Verification, out_dir: Path) -> list[Path]:
    """verify.json and the two plots, written atomically into out_dir."""
    from benchmarks.report.plots import plot_verification  # matplotlib only when plots are written

    write_text_atomic(out_dir / VERIFY_FILE, verification.to_json())
    return [out_dir / VERIFY_FILE,
            *plot_verification(verification.backends, verification.tolerances, EARLY_STEPS, out_dir)]
