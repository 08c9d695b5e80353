"""Where a profiled step's time goes: each backend's traced ops, in ms per step by op category, side by side.

A `--profile` run leaves, per run, the framework's trace of a few steady steps (`profiles/<run>/`) and, for the
XLA backends, the optimized HLO of the traced program beside it (`program.hlo.txt`). The trace's op events on
XLA's threads (or the GPU's "XLA Ops" line) are named by HLO instruction; the HLO says what each instruction
is: its opcode, the ops fused into it, and the `op_name` metadata JAX writes (`transpose(jvp(...))` marks the
backward pass; mnist-bench's named scopes mark the optimizer update, the pool and each convolution gradient).
TensorFlow's own kernels are named by their op type in its trace (`MatMul`, `Conv2DBackpropFilter`), with
`gradient_tape/` marking the backward pass. One table, `category()` below, maps both to the categories.

Per category: milliseconds of op time per traced step (op events summed: on several CPU threads this is CPU
time) and its share of the backend's op time; "between ops" is the traced window's wall time per step not
covered by any op event (dispatch, host-side data preparation, the framework's own work between ops).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
from pathlib import Path

from backends.routes import (CONV_INPUT_GRADIENT_SCOPE, CONV_WEIGHT_GRADIENT_SCOPE, OPTIMIZER_SCOPE, POOL_SCOPE,
                             parse_computations)
from common.results import PROGRAM_FILE
from common.workloads import get_workload

CATEGORIES = ("GEMM forward", "GEMM backward", "conv forward", "conv weight gradient", "conv input gradient",
              "pooling and its gradient", "activations and loss", "optimizer update", "between ops")
# What marks each category in op_name metadata or a TensorFlow kernel's type: the Flax backends' scope names
# (backends/routes.py), JAX's primitive names, HLO opcodes, TensorFlow's op types.
OPTIMIZER_SCOPES = (OPTIMIZER_SCOPE, "adam", "optimizer")
POOL_MARKS = (POOL_SCOPE, "reduce_window_max", "select_and_scatter", "reduce-window", "select-and-scatter")
WEIGHT_GRADIENT_MARKS = (CONV_WEIGHT_GRADIENT_SCOPE, "Conv2DBackpropFilter")
INPUT_GRADIENT_MARKS = (CONV_INPUT_GRADIENT_SCOPE, "Conv2DBackpropInput")
BACKWARD_MARKS = ("transpose(", "gradient_tape/", "gradients/")
@dataclasses.dataclass(frozen=True)
class OpInfo:
    """What one traced op is: its opcode (or TensorFlow op type), the opcodes fused into it, its op_name."""

    opcode: str
    body: tuple[str, ...] = ()
    op_name: str = ""
    shape: tuple[int, ...] = ()
    operands: tuple[str, ...] = ()  # the instructions it reads (HLO only)


def category(op: OpInfo, kernel_size: int) -> str:
    """The breakdown category of one op: the one table every backend's ops go through."""
    name, opcodes, kind = op.op_name, (op.opcode, *op.body), op.opcode  # kind: a TensorFlow op type, or an opcode
    if any(scope in name.lower() for scope in OPTIMIZER_SCOPES) or kind.startswith("ResourceApply"):
        return "optimizer update"
    if (any(mark in name for mark in POOL_MARKS) or any(mark in opcodes for mark in POOL_MARKS)
            or "MaxPool" in kind):
        return "pooling and its gradient"
    backward = any(mark in name for mark in BACKWARD_MARKS)
    if "convolution" in opcodes or "Conv2D" in kind:
        if any(mark in name or mark in kind for mark in WEIGHT_GRADIENT_MARKS):
            return "conv weight gradient"
        if any(mark in name or mark in kind for mark in INPUT_GRADIENT_MARKS):
            return "conv input gradient"
        # XLA may leave autodiff's weight-gradient convolution without metadata: its output is kernel-shaped
        # (k x k spatial dims side by side in a 4-d array; no feature map here is k x k).
        shape = op.shape
        if len(shape) == 4 and any(shape[i:i + 2] == (kernel_size, kernel_size) for i in range(3)):
            return "conv weight gradient"
        return "conv input gradient" if backward else "conv forward"
    if "dot" in opcodes or "MatMul" in kind or "gemm" in kind.lower():
        return "GEMM backward" if backward else "GEMM forward"
    return "activations and loss"


def attributed_categories(ops: dict[str, OpInfo], kernel_size: int) -> dict[str, str]:
    """Each instruction's category, where an op with no category of its own ("activations and loss": a broadcast,
    an iota, a transpose) that only feeds ops of one other category is counted with them: the zeros and indices
    a pooling gradient scatters into, the transposes a weight-gradient convolution reads."""
    categories = {name: category(op, kernel_size) for name, op in ops.items()}
    users: dict[str, set[str]] = collections.defaultdict(set)
    for name, op in ops.items():
        for operand in op.operands:
            users[operand].add(name)
    changed = True
    while changed:
        changed = False
        for name, own in categories.items():
            if own != "activations and loss" or not users.get(name):
                continue
            fed = {categories.get(user, "activations and loss") for user in users[name]}
            if len(fed) == 1 and (target := fed.pop()) != own:
                categories[name], changed = target, True
    return categories


_SHAPE = re.compile(r"\(?[a-z]\w*\[([\d,]*)\]")


def hlo_ops(hlo_text: str) -> dict[str, OpInfo]:
    """{instruction name: OpInfo} for every instruction of an HLO module (a trace names ops by instruction)."""
    computations, _ = parse_computations(hlo_text)
    ops = {}
    for instructions in computations.values():
        for instruction in instructions:
            called = [computations.get(name, []) for name in re.findall(r"calls=%?([\w.\-]+)", instruction.rest)]
            body = tuple(inner.opcode for computation in called for inner in computation)
            op_names = [found for line in (instruction, *(inner for computation in called for inner in computation))
                        for found in re.findall(r'op_name="([^"]+)"', line.rest)]
            shape = _SHAPE.match(instruction.shape)
            operands = instruction.rest.split(")", 1)[0]  # the operand list, up to the opcode's closing parenthesis
            ops.setdefault(instruction.name, OpInfo(
                instruction.opcode, body, " ".join(op_names),
                tuple(int(d) for d in shape.group(1).split(",") if d) if shape else (),
                tuple(re.findall(r"%([\w.\-]+)", operands))))
    return ops


def tensorflow_op(event_name: str) -> OpInfo:
    """A TensorFlow trace event ("sequential/dense/MatMul:MatMul", or the bare type) as an OpInfo."""
    name, _, op_type = event_name.rpartition(":")
    return OpInfo(op_type or event_name, (), name or event_name)


def trace_events(trace_path: Path) -> list[tuple[str, int, int]]:
    """(op name, start ns, duration ns) of every op event of an XSpace trace: XLA's op events (CPU threads or the
    GPU's "XLA Ops" line) and, where there are none, TensorFlow's kernel events on its compute threads."""
    import jax

    from benchmarks.report.profile_ops import is_op

    planes = jax.profiler.ProfileData.from_file(str(trace_path)).planes
    xla, tensorflow = [], []
    for plane in planes:
        on_device = plane.name.startswith("/device:")
        for line in plane.lines:
            if (on_device and line.name == "XLA Ops") or (plane.name == "/host:CPU" and line.name.startswith("tf_XLA")):
                xla += [(event.name, event.start_ns, event.duration_ns) for event in line.events
                        if on_device or is_op(event.name)]
            elif plane.name == "/host:CPU" and line.name.startswith("tf_"):
                tensorflow += [(event.name, event.start_ns, event.duration_ns) for event in line.events
                               if ":" in event.name and "::" not in event.name]
    return xla or tensorflow


def covered_ns(events: list[tuple[str, int, int]]) -> int:
    """Wall time inside at least one op event (overlapping events on several threads counted once)."""
    covered, end = 0, None
    for _, start, duration in sorted(events, key=lambda event: event[1]):
        stop = start + duration
        if end is None or start >= end:
            covered += duration
            end = stop
        elif stop > end:
            covered += stop - end
            end = stop
    return covered


def breakdown_of(events: list[tuple[str, int, int]], ops: dict[str, OpInfo] | None, steps: int,
                 kernel_size: int) -> dict[str, float]:
    """{category: ms per step} of one trace's events; ops from the program's HLO (None: TensorFlow kernels)."""
    totals: collections.Counter = collections.Counter()
    categories = attributed_categories(ops, kernel_size) if ops is not None else {}
    for name, _, duration in events:
        if ops is None:
            found = category(tensorflow_op(name), kernel_size)
        else:
            found = categories.get(name) or category(OpInfo(name), kernel_size)
        totals[found] += duration / 1e6
    if events:
        window = max(start + duration for _, start, duration in events) - min(start for _, start, _ in events)
        totals["between ops"] += max(0.0, (window - covered_ns(events)) / 1e6)
    return {name: totals.get(name, 0.0) / steps for name in CATEGORIES}


@dataclasses.dataclass
class Breakdown:
    """One profiled run's step, by category."""

    run: str
    steps: int
    ms_per_step: dict[str, float]

    @property
    def total_ms(self) -> float:
        """All categories' milliseconds per step."""
        return sum(self.ms_per_step.values())


def run_breakdowns(run_dir: Path) -> list[Breakdown]:
    """Every profiled run of a run folder, broken down (runs without a trace are left out)."""
    results = json.loads((Path(run_dir) / "results.json").read_text(encoding="utf-8"))
    # The side of the model's convolution kernels tells a weight gradient in a profile (0: a model without any).
    kernel_size = get_workload(results["job"]["config"].get("model", "mlp")).conv_kernel_size
    breakdowns = []
    for run in results["runs"]:
        profile = run.get("costs", {}).get("profile_dir")
        if not profile:
            continue
        profile = Path(profile)
        if not profile.is_absolute() or not profile.exists():
            profile = Path(run_dir) / "profiles" / profile.name
        traces = sorted(profile.glob("plugins/profile/*/*.xplane.pb"))
        if not traces:
            continue
        program = profile / PROGRAM_FILE
        ops = hlo_ops(program.read_text()) if program.exists() else None
        steps = run["costs"].get("profile_steps") or 1
        events = [event for trace in traces for event in trace_events(trace)]
        breakdowns.append(Breakdown(f"{run['backend']} s{run['seed']} r{run.get('round', 0)}", steps,
                                    breakdown_of(events, ops, steps, kernel_size)))
    return breakdowns


def format_breakdown(breakdowns: list[Breakdown], markdown: bool = False) -> str:
    """Categories as rows, profiled runs as columns: `ms/step (share %)`."""
    if not breakdowns:
        return "no --profile traces in this run: run it with --profile"
    header = ["category", *[b.run for b in breakdowns]]
    rows = [[name, *[f"{b.ms_per_step[name]:.3f} ({100 * b.ms_per_step[name] / b.total_ms:.0f}%)"
                     if b.total_ms else "—" for b in breakdowns]] for name in CATEGORIES]
    rows.append(["total traced", *[f"{b.total_ms:.3f} ms/step over {b.steps} steps" for b in breakdowns]])
    if markdown:
        return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                         + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) for row in [header, *rows])
