"""Shared fixtures: synthetic MNIST written as real IDX files, a loopback HTTP mirror, real-data gating."""

from __future__ import annotations

import gzip
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from common.mnist import DATA_ENV, IDX_STEMS, IMAGE_MAGIC, LABEL_MAGIC, TEST_COUNT, TRAIN_COUNT

# Every Ray a test starts (in this process or in its children) advertises and dials the loopback address only:
# Ray otherwise swaps 127.0.0.1 for the machine's outward address. Ray reads this switch for exactly that.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def pytest_configure(config):
    """Backends that run inside the test process (flax, flax-fused, flax-vmap) get the project's CPU settings.

    Each Keras backend runs in a subprocess of its own, which prepares itself.
    """
    from backends.registry import prepare_process
    from common.job import Job

    prepare_process(Job(backends=("flax",)))


REAL_DATA_REASON = f"real MNIST not available: set {DATA_ENV}=../shared/mnist (a folder with the four .gz files)"


def _real_mnist_dir_from_env() -> Path | None:
    value = os.environ.get(DATA_ENV)
    return Path(value).resolve() if value and Path(value).is_dir() else None


# Read once at start-up: tests clear the variable so that only the ones that ask for real data use it.
_REAL_MNIST_DIR = _real_mnist_dir_from_env()


def real_mnist_dir() -> Path | None:
    """The real MNIST folder named by MNIST_BENCH_DATA when the session started, or None."""
    return _REAL_MNIST_DIR


requires_real_mnist = pytest.mark.skipif(real_mnist_dir() is None, reason=REAL_DATA_REASON)


def idx_bytes(array: np.ndarray, kind: str, *, magic: int | None = None, count: int | None = None) -> bytes:
    """Serialize uint8 images (N, 28, 28) or labels (N,) as IDX, optionally with a forged header."""
    magic = magic if magic is not None else (IMAGE_MAGIC if kind == "images" else LABEL_MAGIC)
    dims = [count if count is not None else len(array), *array.shape[1:]]
    header = np.array([magic, *dims], dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def synthetic_mnist(seed: int = 0, train_count: int = TRAIN_COUNT, test_count: int = TEST_COUNT):
    """Fake digits about as hard as MNIST for 100 steps: faint class patterns on a shared background."""
    rng = np.random.default_rng(seed)
    # Low contrast and heavy noise keep gradients and losses in MNIST's range (~0.3 after 100 steps),
    # so numerical comparisons on synthetic data are as demanding as on the real thing.
    background = (rng.random((28, 28)) < 0.3).astype(np.float32) * 100.0
    prototypes = (rng.random((10, 28, 28)) < 0.2).astype(np.float32) * 40.0

    def draw(count):
        labels = rng.integers(0, 10, size=count).astype(np.uint8)
        noise = rng.normal(0.0, 80.0, size=(count, 28, 28)).astype(np.float32)
        images = np.clip(background + prototypes[labels] + noise, 0, 255).astype(np.uint8)
        return images, labels

    return (*draw(train_count), *draw(test_count))


def write_idx_set(directory: Path, arrays, *, compress: bool = True) -> Path:
    """Write (train_images, train_labels, test_images, test_labels) as the four canonical IDX files."""
    directory.mkdir(parents=True, exist_ok=True)
    for (key, stem), array in zip(IDX_STEMS.items(), arrays):
        data = idx_bytes(array, key[1])
        if compress:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(data, compresslevel=1, mtime=0))
        else:
            (directory / stem).write_bytes(data)
    return directory


@pytest.fixture(scope="session")
def synthetic_arrays():
    """Full-size synthetic MNIST arrays (60,000 + 10,000), generated once per session."""
    return synthetic_mnist()


@pytest.fixture(scope="session")
def synthetic_gz_dir(tmp_path_factory, synthetic_arrays) -> Path:
    """A folder with the synthetic data as the four gzipped IDX files."""
    return write_idx_set(tmp_path_factory.mktemp("synthetic-gz"), synthetic_arrays)


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """Session- and module-scoped fixtures cache into a throwaway folder too, never the user's."""
    saved = {name: os.environ.get(name) for name in ("XDG_CACHE_HOME", "KERAS_HOME")}
    root = tmp_path_factory.mktemp("session-cache")
    os.environ["XDG_CACHE_HOME"] = str(root / "xdg")
    os.environ["KERAS_HOME"] = str(root / "keras")
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    """Every test gets its own XDG cache and Keras home, so no test reads or damages the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.delenv("MNIST_BENCH_MIRROR", raising=False)
    monkeypatch.delenv("MNIST_BENCH_CALIBRATION_DIR", raising=False)  # the machine's calibration: the XDG cache's
    monkeypatch.delenv(DATA_ENV, raising=False)


@pytest.fixture(scope="session")
def mnist_data_dir(synthetic_gz_dir) -> Path:
    """Real MNIST when MNIST_BENCH_DATA is set, else the synthetic IDX folder."""
    return real_mnist_dir() or synthetic_gz_dir


class LoopbackMirror:
    """A stdlib HTTP server on 127.0.0.1 serving a dict of {path: bytes}; 404 for anything else."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                mirror.requests.append(self.path)
                body = mirror.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, prefix: str) -> str:
        """Base URL of one virtual mirror folder on this server."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/{prefix.strip('/')}/"

    def close(self):
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def loopback_mirror():
    """A running LoopbackMirror, shut down after the test."""
    mirror = LoopbackMirror()
    yield mirror
    mirror.close()
