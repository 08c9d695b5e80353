"""The ops that take a profiled run's time: for each backend of a `--profile` run, its top XLA ops.

Reads each RUN/profiles/<backend>-seed<k>/ trace with JAX's own XSpace reader. On a GPU the ops are the
events of the device plane's "XLA Ops" line (device time); on the CPU, the events of XLA's worker threads
less the runtime's own wrappers and loop containers (summed over threads: CPU time, not wall time). A trace
with no XLA op events (TensorFlow's own kernels) says so.

Usage: python -m benchmarks.report.profile_ops RUN_DIR [TOP]
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

# Events that contain ops rather than being one: the thunk runtime's wrappers and control flow.
CONTAINERS = ("while", "conditional", "call")


def is_op(name: str) -> bool:
    """Whether a trace event on an XLA thread is an op (not a runtime wrapper such as ThunkExecutor::Execute)."""
    return "::" not in name and name.split(".")[0] not in CONTAINERS  # `while.45` holds the ops it loops over


def op_times_ms(planes) -> dict[str, float]:
    """{op: milliseconds} summed over the trace's XLA op events (`planes`: ProfileData planes or alike)."""
    totals: collections.Counter = collections.Counter()
    for plane in planes:
        on_device = plane.name.startswith("/device:")
        for line in plane.lines:
            if (on_device and line.name == "XLA Ops") or (plane.name == "/host:CPU" and line.name.startswith("tf_XLA")):
                for event in line.events:
                    if on_device or is_op(event.name):
                        totals[event.name] += event.duration_ns / 1e6
    return dict(totals)


def format_op_table(run_dir: Path, top: int = 10) -> str:
    """Each profiled backend's `top` ops: milliseconds in the trace and share of all its op time."""
    import jax

    traces = sorted(Path(run_dir).glob("profiles/*/plugins/profile/*/*.xplane.pb"))
    if not traces:
        return f"no --profile traces under {run_dir}/profiles"
    lines = []
    for trace in traces:
        run = trace.relative_to(Path(run_dir) / "profiles").parts[0]
        times = op_times_ms(jax.profiler.ProfileData.from_file(str(trace)).planes)
        total = sum(times.values())
        lines.append(f"{run}: {total:.2f} ms of XLA op time in the trace" if times else
                     f"{run}: no XLA op events in the trace (a TensorFlow kernel trace: open it in TensorBoard)")
        for name, ms in sorted(times.items(), key=lambda item: -item[1])[:top]:
            lines.append(f"  {ms:9.3f} ms  {100 * ms / total:5.1f}%  {name}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_op_table(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 10))
