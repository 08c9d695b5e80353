"""The second workload: Keras' "Simple MNIST convnet", its defaults, shared weights, FLOPs and float64 reference.

Architecture (keras-io examples/vision/mnist_convnet.py): input 28x28x1, Conv2D(32, 3x3, ReLU),
MaxPooling2D(2), Conv2D(64, 3x3, ReLU), MaxPooling2D(2), Flatten, Dropout(0.5), Dense(10, softmax):
34,826 parameters. Images are NHWC float32 in [0, 1]; kernels are (kh, kw, in, out), the layout Keras and
Flax both use, and Flatten reads (h, w, c) in row-major order, as both frameworks do for NHWC.

The reference trains with dropout off (rate 0): dropout draws different masks in every framework, so
only the rate-0 trajectories can agree step for step.
"""

from __future__ import annotations


import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from common.mnist import NUM_CLASSES
from common.seeds import WEIGHTS_STREAM
from common.validation import check
from common.weights import Weights
from common.workloads.base import EARLY_STEPS, ModelSettings, Tolerance, Workload
from common.workloads.mlp import TOLERANCES as MLP_TOLERANCES


IMAGE_SHAPE = (28, 28, 1)
CONV_FILTERS = (32, 64)
KERNEL = 3
POOL = 2
# Layer names of the portable weights, in Keras' get_weights() order.
CONV_NAMES = ("conv_0", "conv_1")
DENSE_NAME = "dense_0"


def feature_map_sizes() -> list[int]:
    """Spatial size after each conv + pool stage: 28 -> 26 -> 13 -> 11 -> 5 ('valid' convs, floor pooling)."""
    return [size // POOL for size, _, _ in conv_stages()]


def conv_stages() -> list[tuple[int, int, int]]:
    """(output size, input channels, filters) of each 'valid' conv: (26, 1, 32), (11, 32, 64)."""
    stages, size, channels = [], IMAGE_SHAPE[0], IMAGE_SHAPE[-1]
    for filters in CONV_FILTERS:
        size -= KERNEL - 1
        stages.append((size, channels, filters))
        size, channels = size // POOL, filters
    return stages


def flat_features() -> int:
    """Inputs of the dense layer: 5 x 5 x 64 = 1,600."""
    return feature_map_sizes()[-1] ** 2 * CONV_FILTERS[-1]


def cnn_weight_shapes() -> dict[str, tuple[int, ...]]:
    """Array names and shapes of the convnet's portable weights."""
    shapes, channels = {}, IMAGE_SHAPE[-1]
    for name, filters in zip(CONV_NAMES, CONV_FILTERS):
        shapes[f"{name}/kernel"] = (KERNEL, KERNEL, channels, filters)
        shapes[f"{name}/bias"] = (filters,)
        channels = filters
    shapes[f"{DENSE_NAME}/kernel"] = (flat_features(), NUM_CLASSES)
    shapes[f"{DENSE_NAME}/bias"] = (NUM_CLASSES,)
    return shapes


def init_cnn_weights(seed: int) -> Weights:
    """Glorot-uniform kernels and zero biases from `seed`; a conv's fans count its receptive field, as Keras'."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(WEIGHTS_STREAM, 1)))
    weights = {}
    for name, shape in cnn_weight_shapes().items():
        if name.endswith("/kernel"):
            receptive = int(np.prod(shape[:-2]))  # 1 for the dense kernel
            limit = np.sqrt(6.0 / (receptive * (shape[-2] + shape[-1])))
            weights[name] = rng.uniform(-limit, limit, size=shape).astype(np.float32)
        else:
            weights[name] = np.zeros(shape, np.float32)
    return weights


def as_images(x: np.ndarray) -> np.ndarray:
    """Flat (N, 784) rows as NHWC images (a view, no copy)."""
    return x.reshape(len(x), *IMAGE_SHAPE)


# --- float64 reference: forward and backward written plainly ---------------------------------------------


def conv2d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """'valid' 2-D convolution (cross-correlation, as every framework computes it), NHWC x HWIO."""
    windows = sliding_window_view(x, (KERNEL, KERNEL), axis=(1, 2))  # N, H', W', C, kh, kw
    # optimize=True contracts through BLAS (tensordot) rather than a Python-level loop over the windows.
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel, optimize=True) + bias


def conv2d_backward(x: np.ndarray, kernel: np.ndarray, d_out: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
    """Gradients of `conv2d` for its input, kernel and bias, given the output's gradient."""
    windows = sliding_window_view(x, (KERNEL, KERNEL), axis=(1, 2))
    d_kernel = np.einsum("nhwcij,nhwo->ijco", windows, d_out, optimize=True)
    pad = KERNEL - 1
    padded = np.pad(d_out, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    d_windows = sliding_window_view(padded, (KERNEL, KERNEL), axis=(1, 2))  # N, H, W, O, kh, kw
    d_x = np.einsum("nhwoij,ijco->nhwc", d_windows, kernel[::-1, ::-1], optimize=True)
    return d_x, d_kernel, d_out.sum(axis=(0, 1, 2))


def max_pool(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2 max pooling, stride 2, a trailing odd row/column dropped; also the 0/1 mask of each window's first
    maximum (row-major), which is where the backward pass sends the gradient, as XLA and TensorFlow do."""
    n, h, w, c = x.shape
    size_h, size_w = h // POOL, w // POOL
    windows = x[:, :size_h * POOL, :size_w * POOL].reshape(n, size_h, POOL, size_w, POOL, c)
    windows = windows.transpose(0, 1, 3, 5, 2, 4).reshape(n, size_h, size_w, c, POOL * POOL)
    first = windows.argmax(axis=-1)
    mask = np.zeros_like(windows)
    np.put_along_axis(mask, first[..., None], 1.0, axis=-1)
    return windows.max(axis=-1), mask


def max_pool_backward(mask: np.ndarray, d_out: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """The gradient of `max_pool`'s input: each window's gradient to its first maximum, zero elsewhere."""
    n, size_h, size_w, c, _ = mask.shape
    spread = (mask * d_out[..., None]).reshape(n, size_h, size_w, c, POOL, POOL).transpose(0, 1, 4, 2, 5, 3)
    d_x = np.zeros(input_shape, d_out.dtype)
    d_x[:, :size_h * POOL, :size_w * POOL] = spread.reshape(n, size_h * POOL, size_w * POOL, c)
    return d_x


def cnn_forward(weights: Weights, images: np.ndarray) -> tuple[np.ndarray, list]:
    """Logits (dropout off) and what the backward pass needs from each stage."""
    x, cache = images, []
    for name in CONV_NAMES:
        z = conv2d(x, weights[f"{name}/kernel"], weights[f"{name}/bias"])
        pooled, mask = max_pool(np.maximum(z, 0.0))
        cache.append((x, z, mask))
        x = pooled
    flat = x.reshape(len(x), -1)
    cache.append((x.shape, flat))
    return flat @ weights[f"{DENSE_NAME}/kernel"] + weights[f"{DENSE_NAME}/bias"], cache


def cnn_loss_and_grads(weights: Weights, images: np.ndarray, y_one_hot: np.ndarray) -> tuple[float, Weights]:
    """Mean softmax cross-entropy and its gradient for every array (dropout off)."""
    logits, cache = cnn_forward(weights, images)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -np.mean(np.sum(y_one_hot * log_probs, axis=1))
    delta = (np.exp(log_probs) - y_one_hot) / len(images)
    pooled_shape, flat = cache.pop()
    grads = {f"{DENSE_NAME}/kernel": flat.T @ delta, f"{DENSE_NAME}/bias": delta.sum(axis=0)}
    d_x = (delta @ weights[f"{DENSE_NAME}/kernel"].T).reshape(pooled_shape)
    for name, (x, z, mask) in zip(reversed(CONV_NAMES), reversed(cache)):
        d_z = max_pool_backward(mask, d_x, z.shape) * (z > 0)
        d_x, grads[f"{name}/kernel"], grads[f"{name}/bias"] = conv2d_backward(x, weights[f"{name}/kernel"], d_z)
    return float(loss), grads


# Set as the MLP's were (`mnist-bench verify --model cnn`, dropout off; the figures: docs/equivalence.md). Forward
# passes and the first step agree to float32 rounding, as for the MLP. But 2x2 max pooling adds a discrete choice that
# ReLU alone did not have: where two values of a window are equal in one computation and not in another (float64
# against float32, or two conv algorithms rounding differently), the gradient goes to a different pixel, and Adam
# turns that into lr-sized (1e-3) steps of a few conv weights, from the second step on, against float64 and between
# backends alike. Wrong math is still caught by the forward and first-step checks, which stay at the MLP's bounds.
TOLERANCES = {
    **MLP_TOLERANCES,
    "early_weights": Tolerance(2e-3, 2e-3, f"the first {EARLY_STEPS} steps: a max-pool tie broken differently moves a "
                                           "few conv weights by Adam steps of ~lr"),
    "loss_rel": Tolerance(3e-2, 2e-2, "all steps, relative: ReLU flips as for the MLP, and max-pool ties broken "
                                      "differently"),
    "weights_final": Tolerance(3e-2, 2e-2, "after the last step: the conv weights that flipped max-pool choices "
                                           "moved"),
}


class ConvNetWorkload(Workload):
    """Keras' MNIST convnet example, with its settings (keras-io examples/vision/mnist_convnet.py)."""

    name = "cnn"
    summary = "Keras' MNIST convnet"
    defaults = {"hidden_units": (), "epochs": 15, "batch_size": 128, "validation_split": 0.1, "dropout": 0.5}
    input_shape = IMAGE_SHAPE
    conv_kernel_size = KERNEL
    reference_source = "common/workloads/cnn.py"
    tolerances = TOLERANCES

    def validate(self, config: ModelSettings) -> None:
        """No hidden widths to choose: the convnet's layers are fixed."""
        check(config.hidden_units == (), "hidden_units", config.hidden_units,
              "() for --model cnn (the convnet's layers are fixed)")

    def weight_shapes(self, config: ModelSettings) -> dict[str, tuple[int, ...]]:
        """conv_0, conv_1 (kh, kw, in, out) and dense_0."""
        return cnn_weight_shapes()

    def initial_weights(self, config: ModelSettings, seed: int) -> Weights:
        """Glorot-uniform kernels and zero biases from `seed`."""
        return init_cnn_weights(seed)

    def layer_macs_per_sample(self, config: ModelSettings) -> list[int]:
        """S*S*O*9*C per 'valid' 3x3 conv producing S x S x O from C channels, then the dense layer.

        26*26*32*9*1 + 11*11*64*9*32 + 1600*10 multiply-adds: 4,881,920 FLOPs forward, 14,256,384 training.
        """
        macs = [size * size * filters * KERNEL * KERNEL * channels for size, channels, filters in conv_stages()]
        return macs + [flat_features() * NUM_CLASSES]

    def layer_gemms(self, config: ModelSettings) -> list[tuple[int, int, int]]:
        """Each conv as its im2col GEMM: (batch x output pixels) rows, (kernel pixels x input channels) deep."""
        batch = config.batch_size
        layers = [(batch * size * size, KERNEL ** 2 * channels, filters) for size, channels, filters in conv_stages()]
        return layers + [(batch, flat_features(), NUM_CLASSES)]

    def reference_logits(self, weights: Weights, x: np.ndarray) -> np.ndarray:
        """float64 logits of the flat rows, as images."""
        return cnn_forward(weights, as_images(x))[0]

    def reference_loss_and_grads(self, weights: Weights, x: np.ndarray, y_one_hot: np.ndarray) -> tuple[float, Weights]:
        """float64 loss and gradients of the flat rows, as images."""
        return cnn_loss_and_grads(weights, as_images(x), y_one_hot)

    def describe(self, config: ModelSettings) -> str:
        """'convnet conv32-pool-conv64-pool-dropout 0.5-dense10'."""
        return (f"convnet conv{CONV_FILTERS[0]}-pool-conv{CONV_FILTERS[1]}-pool-dropout "
                f"{config.dropout:g}-dense{NUM_CLASSES}")
