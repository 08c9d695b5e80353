"""Kernel routes: which library runs each class of op in a compiled XLA program, read from its optimized HLO text.

XLA decides late where an op runs. On a CPU (jaxlib 0.10) a convolution or dot may become a YNNPACK fusion
(`fusion ... kind=kCustom` with `"kind":"__ynn_fusion"`), stay a `convolution`/`dot` instruction that the CPU
runtime hands to Eigen, or a `custom-call` to oneDNN or an FFI kernel; everything else is XLA's own generated
loop code (`fusion kind=kLoop`, loose elementwise ops, scatter). On a GPU, `custom-call`s name cuBLAS and cuDNN,
`kCustom` fusions Triton. This module reads that from the text alone, so it is tested on saved snippets and
never imports a framework.
"""

from __future__ import annotations

import collections
import re
from typing import NamedTuple

# The CPU kernel routes worth trying (jaxlib 0.10): XLA's defaults (YNNPACK for forward convolutions, pooling
# and weight-gradient convolutions, Eigen for the rest), YNNPACK for dots only, YNNPACK off, Eigen on one thread.
CPU_ROUTES = {"": "XLA's defaults", "--xla_cpu_experimental_ynn_fusion_type=individual_dot": "YNNPACK for dots only",
              "--xla_cpu_experimental_ynn_fusion_type=": "YNNPACK off (Eigen and XLA's own loops)",
              "--xla_cpu_multi_thread_eigen=false": "Eigen on one thread per op"}

# Named scopes the Flax backends put on their ops (jax.named_scope): they reach the compiled program's op_name
# metadata, where the per-op breakdown (benchmarks/report/breakdown.py) reads them; autodiff's own names say
# forward or backward, not which gradient or what for.
OPTIMIZER_SCOPE = "optimizer_update"
POOL_SCOPE = "max_pool"
CONV_WEIGHT_GRADIENT_SCOPE = "conv_weight_gradient"
CONV_INPUT_GRADIENT_SCOPE = "conv_input_gradient"

# Op classes, most telling first: a fusion is classed by the most telling op it contains.
OP_CLASSES = ("convolution", "GEMM", "pooling gradient", "pooling", "scatter", "reduction", "elementwise")
# HLO opcodes that make an instruction (or a fusion holding them) one of the classes above.
CLASS_OF_OPCODE = {"convolution": "convolution", "dot": "GEMM", "select-and-scatter": "pooling gradient",
                   "reduce-window": "pooling", "scatter": "scatter", "reduce": "reduction"}
# Custom-call targets by prefix: the library behind them.
CUSTOM_CALL_LIBRARIES = (("__onednn", "oneDNN"), ("__cublas", "cuBLAS"), ("__cudnn", "cuDNN"),
                         ("__ynn", "YNNPACK"), ("__xnn", "XNNPACK"))
# Op names in a jitted program's metadata (`op_name="jit(step)/transpose(jvp())/conv_general_dilated"`) that
# say what a fusion came from when its body alone does not (a YNNPACK fusion's body is its own dialect).
CLASS_OF_PRIMITIVE = {"conv_general_dilated": "convolution", "dot_general": "GEMM", "reduce_window_max": "pooling",
                      "select_and_scatter_add": "pooling gradient", "reduce_max": "reduction",
                      "reduce_sum": "reduction", "scatter-add": "scatter", "scatter_add": "scatter"}
LOOSE_OPCODES_SKIPPED = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "copy-start", "copy-done",
                         "after-all", "partition-id", "replica-id", "while", "conditional", "call"}

_COMPUTATION = re.compile(r"^(ENTRY )?%?([\w.\-]+) .*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(ROOT )?%?([\w.\-]+) = (.*?)\s([a-z][\w\-]*)\((.*)$")


class Instruction(NamedTuple):
    """One line of an HLO computation: `name = shape opcode(rest`."""

    name: str
    shape: str  # its result type as written: `f32[128,26,26,32]{3,2,1,0}`, or a tuple of them
    opcode: str
    rest: str  # the operands and attributes, after the opcode's opening parenthesis


def parse_computations(hlo_text: str) -> tuple[dict[str, list[Instruction]], str | None]:
    """({computation name: its instructions}, the entry computation's name) of an HLO module."""
    computations: dict[str, list[Instruction]] = {}
    entry, current = None, None
    for line in hlo_text.splitlines():
        if current is None:
            match = _COMPUTATION.match(line)
            if match and not line.startswith("HloModule"):
                current = match.group(2)
                computations[current] = []
                if match.group(1):
                    entry = current
            continue
        if line.strip() == "}":
            current = None
            continue
        match = _INSTRUCTION.match(line)
        if match:
            computations[current].append(Instruction(match.group(2), match.group(3), match.group(4), match.group(5)))
    return computations, entry


def _called(rest: str) -> list[str]:
    """The computations an instruction calls (a fusion's body, a while loop's condition and body, ...)."""
    return re.findall(r"(?:calls|body|condition|to_apply|branch_computations)=\{?%?([\w.\-]+)", rest)


def _class_of_ops(opcodes) -> str:
    """The most telling class among `opcodes`: elementwise when none is telling."""
    found = {CLASS_OF_OPCODE[opcode] for opcode in opcodes if opcode in CLASS_OF_OPCODE}
    return next((name for name in OP_CLASSES if name in found), "elementwise")


def _class_from_metadata(rest: str) -> str | None:
    match = re.search(r'op_name="([^"]+)"', rest)
    if not match:
        return None
    primitive = match.group(1).rsplit("/", 1)[-1]
    return CLASS_OF_PRIMITIVE.get(primitive)


def _class_from_target(rest: str) -> str:
    """A custom call's class from its target's name (cuBLAS' `__cublas$gemm`, an FFI `..._gemm`), else its own."""
    target = re.search(r'custom_call_target="([^"]+)"', rest)
    name = target.group(1).lower() if target else ""
    if any(word in name for word in ("gemm", "matmul", "dot")):
        return "GEMM"
    return "convolution" if "conv" in name else "custom call"


def _library(opcode: str, rest: str, platform: str) -> str:
    """The library that runs one top-level instruction."""
    if opcode == "custom-call":
        target = re.search(r'custom_call_target="([^"]+)"', rest)
        name = target.group(1) if target else "?"
        return next((library for prefix, library in CUSTOM_CALL_LIBRARIES if name.startswith(prefix)),
                    f"FFI kernel {name}")
    if opcode == "fusion" and "kind=kCustom" in rest:
        kind = re.search(r'"(?:fusion_config|fusion_backend_config)":\{"kind":"([^"]+)"', rest)
        name = kind.group(1) if kind else "custom fusion"
        return next((library for prefix, library in CUSTOM_CALL_LIBRARIES if name.startswith(prefix)),
                    "Triton" if "triton" in name else name)
    if opcode in ("convolution", "dot") and platform == "cpu":
        return "Eigen"  # the CPU runtime's convolution and dot thunks call Eigen
    return "XLA codegen"


def kernel_routes(hlo_text: str, platform: str = "cpu") -> dict[str, dict[str, int]]:
    """{op class: {library: how many instructions of that class it runs}} of an optimized HLO module.

    Walks the entry computation and what it calls as control flow (a scanned epoch's while body), not into fusion
    bodies: a fusion is one kernel, classed by the most telling op inside it, or by the primitive its metadata
    names where its body does not say (YNNPACK's fusions).
    """
    computations, entry = parse_computations(hlo_text)
    routes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    seen, pending = set(), [entry] if entry else []
    while pending:
        name = pending.pop()
        if name in seen or name not in computations:
            continue
        seen.add(name)
        for _, _, opcode, rest in computations[name]:
            if opcode in ("while", "conditional", "call"):
                pending.extend(_called(rest))
                continue
            if opcode in LOOSE_OPCODES_SKIPPED:
                continue
            if opcode == "fusion":
                body = [inner.opcode for called in _called(rest) for inner in computations.get(called, [])]
                op_class = _class_of_ops(body)
                if op_class == "elementwise" and "kind=kCustom" in rest:
                    op_class = _class_from_metadata(rest) or op_class
            elif opcode == "custom-call":
                op_class = _class_from_metadata(rest) or _class_from_target(rest)
            else:
                op_class = _class_of_ops([opcode])
            routes[op_class][_library(opcode, rest, platform)] += 1
    order = {name: index for index, name in enumerate((*OP_CLASSES, "custom call"))}
    return {op_class: dict(sorted(libraries.items())) for op_class, libraries in
            sorted(routes.items(), key=lambda item: order.get(item[0], len(order)))}


def format_routes(routes: dict[str, dict[str, int]]) -> str:
    """`convolution: YNNPACK 3, Eigen 2; GEMM: Eigen 2; ...`: one line for a table note."""
    return "; ".join(f"{op_class}: " + ", ".join(f"{library} {count}" for library, count in libraries.items())
                     for op_class, libraries in routes.items()) or "—"


# TensorFlow kernel op types by class, as an executed graph names them once oneDNN's rewrite has run: `_Mkl` and
# `_MklNative` prefix the ops oneDNN runs (`_MklNativeFusedConv2D`), the rest are TensorFlow's Eigen kernels.
TENSORFLOW_CLASSES = {"MatMul": "GEMM", "BatchMatMulV2": "GEMM", "FusedMatMul": "GEMM", "Conv2D": "convolution",
                      "Conv2DBackpropFilter": "convolution", "Conv2DBackpropFilterWithBias": "convolution",
                      "Conv2DBackpropInput": "convolution", "FusedConv2D": "convolution", "MaxPool": "pooling",
                      "MaxPoolGrad": "pooling gradient", "Sum": "reduction", "Mean": "reduction", "Max": "reduction",
                      "ArgMax": "reduction", "UnsortedSegmentSum": "scatter", "TensorScatterAdd": "scatter"}
TENSORFLOW_ELEMENTWISE = {"Relu", "ReluGrad", "Add", "AddV2", "Sub", "Mul", "RealDiv", "Sqrt", "Square", "Exp", "Log",
                          "Softmax", "LogSoftmax", "BiasAdd", "BiasAddGrad", "Maximum", "Minimum", "Neg", "Cast",
                          "Equal", "Select", "SelectV2", "Pow", "SoftmaxCrossEntropyWithLogits", "Rsqrt",
                          "ResourceApplyAdam", "Tile", "Pack", "Reshape", "Transpose", "ConcatV2", "DivNoNan"}
_ONEDNN_PREFIX = re.compile(r"^_Mkl(Native)?")


def tensorflow_graph_routes(op_types) -> dict[str, dict[str, int]]:
    """{op class: {library: ops}} of the kernels an executed TensorFlow graph (no XLA) ran: oneDNN's where the op
    carries oneDNN's prefix, else TensorFlow's own (Eigen) kernel."""
    routes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for op_type in op_types:
        base = _ONEDNN_PREFIX.sub("", op_type).lstrip("_")
        op_class = TENSORFLOW_CLASSES.get(base) or ("elementwise" if base in TENSORFLOW_ELEMENTWISE else None)
        if op_class:
            routes[op_class]["oneDNN" if base != op_type.lstrip("_") else "TensorFlow kernels (Eigen)"] += 1
    return {op_class: dict(sorted(routes[op_class].items())) for op_class in OP_CLASSES if op_class in routes}
