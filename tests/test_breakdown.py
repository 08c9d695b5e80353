"""The per-op breakdown's one table of categories, checked on op names as XLA and TensorFlow write them, on a
saved optimized HLO, and on synthetic trace events (the real traces: tests/test_run.py's --profile run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.report.breakdown import (CATEGORIES, OpInfo, attributed_categories, breakdown_of, category, covered_ns,
                                         hlo_ops, tensorflow_op)
from benchmarks.cli import main
from common.workloads import get_workload

DATA = Path(__file__).parent / "data"

CNN_KERNEL = get_workload("cnn").conv_kernel_size  # the ops below are the convnet's


@pytest.mark.parametrize("op, expected", [
    # XLA: opcode, fused opcodes, op_name metadata, output shape.
    (OpInfo("dot", (), "jit(train_step)/jvp()/dot_general", (32, 256)), "GEMM forward"),
    (OpInfo("fusion", ("parameter", "dot"), "jit(train_step)/transpose(jvp())/dot_general"), "GEMM backward"),
    (OpInfo("fusion", ("convolution",), "jit(step)/jvp()/conv_general_dilated", (128, 26, 26, 32)), "conv forward"),
    (OpInfo("fusion", ("convolution",), "", (32, 3, 3, 64)), "conv weight gradient"),  # kernel-shaped, no metadata
    (OpInfo("convolution", (), "jit(step)/transpose(jvp())/conv_general_dilated", (128, 13, 13, 32)),
     "conv input gradient"),
    (OpInfo("convolution", (), "jit(epoch)/while/body/conv_weight_gradient/conv_general_dilated", (32, 3, 3, 64)),
     "conv weight gradient"),
    (OpInfo("fusion", ("reduce",), "jit(epoch)/while/body/jvp(max_pool)/reduce_max"), "pooling and its gradient"),
    (OpInfo("fusion", ("reduce-window",), ""), "pooling and its gradient"),
    (OpInfo("fusion", ("multiply", "add"), "jit(train_step)/optimizer_update/mul"), "optimizer update"),
    (OpInfo("fusion", ("maximum",), "jit(train_step)/jvp()/jit(relu)/max"), "activations and loss"),
    # TensorFlow: "name:type" events of its own kernels, oneDNN's included.
    (tensorflow_op("sequential/dense/MatMul:_MklMatMul"), "GEMM forward"),
    (tensorflow_op("gradient_tape/sequential/dense/MatMul:MatMul"), "GEMM backward"),
    (tensorflow_op("sequential/conv2d/Relu:_MklNativeFusedConv2D"), "conv forward"),
    (tensorflow_op("gradient_tape/c/Conv2DBackpropFilter:_MklNativeConv2DBackpropFilterWithBias"),
     "conv weight gradient"),
    (tensorflow_op("gradient_tape/c/Conv2DBackpropInput:_MklNativeConv2DBackpropInput"), "conv input gradient"),
    (tensorflow_op("gradient_tape/max_pooling2d/MaxPool2d/MaxPoolGrad:_MklNativeMaxPoolGrad"),
     "pooling and its gradient"),
    (tensorflow_op("adam/Adam/ResourceApplyAdam:ResourceApplyAdam"), "optimizer update"),
    (tensorflow_op("gradient_tape/c/ReluGrad:ReluGrad"), "activations and loss"),
])
def test_every_op_lands_in_its_category(op, expected):
    assert category(op, CNN_KERNEL) == expected


def test_ops_read_from_a_saved_program_and_helpers_counted_with_what_they_feed():
    ops = hlo_ops((DATA / "hlo-cpu-convnet-grad.txt").read_text())
    assert ops["ynn_fusion.8"].opcode == "fusion" and ops["ynn_fusion.8"].body[-1] == "convolution"
    assert ops["ynn_fusion.8"].shape == (128, 26, 26, 32) and "p__convs___0___kernel___value.1" in ops["ynn_fusion.8"].operands
    categories = attributed_categories(ops, CNN_KERNEL)
    assert categories["ynn_fusion.8"] == "conv forward"
    assert categories["wrapped_scatter"] == "pooling and its gradient"  # reduce_window's gradient, expanded
    assert categories["dot"] == "GEMM backward"
    assert categories["broadcast_maximum_fusion.1"] == "activations and loss"  # bias + ReLU
    # A broadcast that only feeds the pooling gradient's scatter is the pooling gradient's cost.
    helper = {"zeros": OpInfo("fusion", ("broadcast",)),
              "scatter": OpInfo("fusion", ("scatter",), "jit(f)/transpose(jvp())/select_and_scatter", (), ("zeros",))}
    assert attributed_categories(helper, CNN_KERNEL)["zeros"] == "pooling and its gradient"


def test_a_breakdown_is_per_step_and_counts_the_time_between_ops_once():
    ops = {"conv": OpInfo("convolution", (), "jit(f)/jvp()/conv_general_dilated", (2, 26, 26, 32)),
           "relu": OpInfo("fusion", ("maximum",))}
    # Two steps; conv overlaps relu by 1 ms on another thread; 4 ms of the 12 ms window hold no op.
    events = [("conv", 0, 3_000_000), ("relu", 2_000_000, 2_000_000), ("conv", 8_000_000, 3_000_000),
              ("relu", 11_000_000, 1_000_000)]
    assert covered_ns(events) == 8_000_000
    per_step = breakdown_of(events, ops, steps=2, kernel_size=CNN_KERNEL)
    assert list(per_step) == list(CATEGORIES)
    assert per_step["conv forward"] == pytest.approx(3.0) and per_step["activations and loss"] == pytest.approx(1.5)
    assert per_step["between ops"] == pytest.approx(2.0) and per_step["GEMM forward"] == 0
    tensorflow = breakdown_of([("gradient_tape/d/MatMul:MatMul", 0, 1_000_000)], None, steps=1, kernel_size=0)
    assert tensorflow["GEMM backward"] == pytest.approx(1.0)


def test_breakdown_refuses_a_run_without_traces_in_one_line(tmp_path, capsys):
    assert main(["breakdown", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "no results.json" in error
