"""MNIST: find it, download it if needed, verify it, decode it once and cache the arrays.

NumPy only: this module must never import TensorFlow or JAX, so every backend reads the same bytes.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import os
import json
import shutil
import zlib
from pathlib import Path

import numpy as np

from common.errors import MnistBenchError
from common.atomic import atomic_directory

log = logging.getLogger(__name__)

DATA_ENV = "MNIST_BENCH_DATA"
MIRROR_ENV = "MNIST_BENCH_MIRROR"
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
TRAIN_COUNT = 60_000
TEST_COUNT = 10_000
IMAGE_SIDE = 28
INPUT_DIM = IMAGE_SIDE * IMAGE_SIDE  # pixels of one image, the flat rows' width
NUM_CLASSES = 10  # the digits
IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049

# (split, kind) -> canonical file stem; the .gz files carry the published sha256.
IDX_STEMS = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
GZ_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
KERAS_NPZ_NAME = "mnist.npz"
KERAS_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
EXPECTED_COUNTS = {"train": TRAIN_COUNT, "test": TEST_COUNT}
_ARRAY_NAMES = ("train_images", "train_labels", "test_images", "test_labels")
_DECODED_FORMAT = 2  # bump when the decoded-cache layout changes (2: checksums.json added)
_CHECKSUMS_FILE = "checksums.json"


class MnistDataError(MnistBenchError, RuntimeError):
    """MNIST could not be found, fetched or verified; the message says which file and how to fix it."""


@dataclasses.dataclass(frozen=True)
class MnistArrays:
    """The verified data set: uint8 images (N, 28, 28) and uint8 labels (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    # True when the source bytes are the canonical published files (sha256 matched).
    canonical: bool


def user_cache_dir() -> Path:
    """The per-user cache (XDG-aware): downloads and decoded arrays live here."""
    try:
        import pooch  # deferred: only needed when something is cached or fetched
    except ImportError:
        # A machine given its data (MNIST_BENCH_DATA) needs no downloader: the same folder pooch would choose.
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-bench"
    return Path(pooch.os_cache("mnist-bench"))


def keras_cache_file() -> Path:
    """Where Keras' own `mnist.load_data()` keeps its copy (honours KERAS_HOME like Keras does)."""
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(keras_home) / "datasets" / KERAS_NPZ_NAME


def mirrors_from_env() -> tuple[str, ...]:
    """Mirror base URLs: MNIST_BENCH_MIRROR (comma-separated) if set, else the public ones."""
    override = os.environ.get(MIRROR_ENV, "").strip()
    if override:
        return tuple(url.strip() for url in override.split(",") if url.strip())
    return DEFAULT_MIRRORS


def load_mnist(data_dir: str | os.PathLike | None = None, *, progress: bool = True) -> MnistArrays:
    """Return verified MNIST from the first source that has it (see docs/data.md)."""
    explicit = data_dir if data_dir is not None else os.environ.get(DATA_ENV) or None
    if explicit is not None:
        return _load_directory(Path(explicit).expanduser())

    cache = user_cache_dir()
    if all((cache / name).is_file() for name in GZ_SHA256):
        # Re-verified (and re-fetched if damaged) through pooch before use.
        download_mnist(cache, progress=progress)
        return _load_directory(cache)
    keras_npz = keras_cache_file()
    if keras_npz.is_file():
        if _sha256(keras_npz) == KERAS_NPZ_SHA256:
            return _load_directory(keras_npz.parent, only_npz=True)
        log.warning("ignoring %s: its sha256 is not the published one", keras_npz)
    download_mnist(cache, progress=progress)
    return _load_directory(cache)


def download_mnist(directory: str | os.PathLike, *, mirrors: tuple[str, ...] | None = None,
                   progress: bool = True, checksums: dict[str, str] | None = None) -> Path:
    """Fetch the four .gz files into `directory`, each from the first mirror that serves the right bytes."""
    import pooch
    import requests

    directory = Path(directory)
    mirrors = mirrors or mirrors_from_env()
    for name, sha256 in (checksums or GZ_SHA256).items():
        failures = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + name
            try:
                # pooch streams into a temporary file and only moves it into place once the
                # hash matches, so a bad download never lands in the cache.
                pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=name, path=directory,
                               progressbar=progress)
                break
            except (requests.RequestException, ValueError, OSError) as error:
                failures.append(f"{url}: {_first_line(error)}")
        else:
            raise MnistDataError(
                f"could not download {name} from any mirror ({'; '.join(failures)}). "
                f"Fix: check the network, set {MIRROR_ENV} to a working mirror, or set {DATA_ENV} "
                "to a folder holding the four MNIST .gz files")
    return directory


def _load_directory(directory: Path, *, only_npz: bool = False) -> MnistArrays:
    """Load from a folder holding the .gz files, the raw IDX files, or a Keras `mnist.npz`."""
    if not directory.is_dir():
        raise MnistDataError(f"MNIST folder {directory} does not exist. Fix: point {DATA_ENV} "
                             "(or --data-dir) at a folder holding the four MNIST .gz files")
    gz = {key: directory / f"{stem}.gz" for key, stem in IDX_STEMS.items()}
    raw = {key: directory / stem for key, stem in IDX_STEMS.items()}
    npz = directory / KERAS_NPZ_NAME
    for files in (gz, raw):
        if not only_npz and all(path.is_file() for path in files.values()):
            return _load_idx_set(files)
    if npz.is_file():
        return _load_cached(npz, [npz], lambda: _decode_npz(npz))
    partial = [p.name for p in (*gz.values(), *raw.values()) if p.is_file()]
    missing = [p.name for p in gz.values() if not p.is_file()]
    found = f"found only {partial}, missing {missing}" if partial else "found none of them"
    raise MnistDataError(
        f"no MNIST in {directory}: expected the four IDX files (gzipped or raw) or {KERAS_NPZ_NAME}, "
        f"{found}. Fix: put the files there or point {DATA_ENV} elsewhere")


def _load_idx_set(files: dict[tuple[str, str], Path]) -> MnistArrays:
    ordered = [files[key] for key in IDX_STEMS]
    return _load_cached(ordered[0].parent, ordered, lambda: _decode_idx_set(files))


def _load_cached(source: Path, source_files: list[Path], decode) -> MnistArrays:
    """Serve decoded arrays from the content-keyed cache, decoding (once) on a miss."""
    digests = [_sha256(path) for path in source_files]
    canonical = (all(GZ_SHA256.get(p.name) == d for p, d in zip(source_files, digests))
                 or (len(source_files) == 1 and digests[0] == KERAS_NPZ_SHA256))
    key = hashlib.sha256(f"v{_DECODED_FORMAT}:{':'.join(digests)}".encode()).hexdigest()[:24]
    entry = user_cache_dir() / "decoded" / key
    arrays = _read_decoded(entry)
    if arrays is None:
        arrays = decode()
        _write_decoded(entry, arrays)
    return MnistArrays(*arrays, source=str(source), canonical=canonical)


def array_checksum(array: np.ndarray) -> str:
    """CRC-32 of an array's bytes: catches damage to a cached copy at ~2 GB/s (sha256 is 2x slower)."""
    return f"{zlib.crc32(memoryview(np.ascontiguousarray(array)).cast('B')):08x}"


def _read_decoded(entry: Path):
    """The cached arrays if every one still matches the checksum recorded when it was written, else None.

    The cache key proves the source files were right; only the checksums prove the decoded copies
    still are (a disk error or a stray write leaves the file's size and header intact).
    """
    if not entry.is_dir():
        return None
    try:
        expected = json.loads((entry / _CHECKSUMS_FILE).read_text(encoding="utf-8"))
        if not isinstance(expected, dict):
            raise ValueError(f"{_CHECKSUMS_FILE} is not a JSON object")
        arrays = tuple(np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                       for name in _ARRAY_NAMES)
        for name, array in zip(_ARRAY_NAMES, arrays):
            if array_checksum(array) != expected.get(name):
                raise ValueError(f"{name}.npy does not match its recorded checksum")
        _verify_pair(arrays[0], arrays[1], "train", entry)
        _verify_pair(arrays[2], arrays[3], "test", entry)
        return arrays
    except (OSError, ValueError, MnistDataError) as error:
        log.warning("discarding damaged decoded cache %s (%s); rebuilding it from the source files",
                    entry, _first_line(error))
        shutil.rmtree(entry, ignore_errors=True)
        return None


def _write_decoded(entry: Path, arrays) -> None:
    try:
        with atomic_directory(entry) as tmp:
            for name, array in zip(_ARRAY_NAMES, arrays):
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
            checksums = {name: array_checksum(array) for name, array in zip(_ARRAY_NAMES, arrays)}
            (tmp / _CHECKSUMS_FILE).write_text(json.dumps(checksums), encoding="utf-8")
    except OSError as error:
        # A read-only or full cache costs speed on the next load, not correctness.
        log.warning("could not cache decoded MNIST in %s: %s", entry, _first_line(error))


def _decode_idx_set(files: dict[tuple[str, str], Path]):
    arrays = {}
    for split in ("train", "test"):
        images = read_idx(files[(split, "images")], "images", EXPECTED_COUNTS[split])
        labels = read_idx(files[(split, "labels")], "labels", EXPECTED_COUNTS[split])
        _verify_pair(images, labels, split, files[(split, "images")].parent)
        arrays[split] = (images, labels)
    return (*arrays["train"], *arrays["test"])


def _decode_npz(path: Path):
    """Decode a Keras-layout mnist.npz (x_train, y_train, x_test, y_test), with the IDX checks."""
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in keys if key not in npz.files]
            if missing:
                raise _file_error(path, f"arrays {list(keys)}", f"{sorted(npz.files)} (missing {missing})")
            arrays = [np.asarray(npz[key]) for key in keys]
    except (OSError, ValueError, EOFError, zlib.error) as error:
        raise _file_error(path, "a readable .npz archive", f"{type(error).__name__}: {_first_line(error)}")
    for split, images, labels in (("train", *arrays[:2]), ("test", *arrays[2:])):
        if images.dtype != np.uint8 or labels.dtype.kind not in "ui":
            raise _file_error(path, f"uint8 {split} images and integer labels",
                              f"{images.dtype} images, {labels.dtype} labels")
        if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise _file_error(path, f"{split} images of shape (N, 28, 28)", f"{images.shape}")
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise _file_error(path, f"{split} labels in 0..9", f"range {labels.min()}..{labels.max()}")
        _verify_pair(images, labels.astype(np.uint8), split, path)
    return arrays[0], arrays[1].astype(np.uint8), arrays[2], arrays[3].astype(np.uint8)


def read_idx(path: str | os.PathLike, kind: str, expected_count: int | None = None) -> np.ndarray:
    """Parse one IDX file (gzipped if it ends in .gz) and check its structure."""
    path = Path(path)
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise _file_error(path, "a readable gzip file", f"{type(error).__name__}: {_first_line(error)}")
    return parse_idx(data, path, kind, expected_count)


def parse_idx(data: bytes, path: Path, kind: str, expected_count: int | None = None) -> np.ndarray:
    """Decode IDX bytes into uint8 images (N, 28, 28) or labels (N,), checking every header field."""
    magic_expected = IMAGE_MAGIC if kind == "images" else LABEL_MAGIC
    header_len = 16 if kind == "images" else 8
    if len(data) < header_len:
        raise _file_error(path, f"an IDX header of {header_len} bytes", f"{len(data)} bytes")
    magic, count = (int(x) for x in np.frombuffer(data[:8], dtype=">u4"))
    if magic != magic_expected:
        raise _file_error(path, f"IDX magic {magic_expected} ({kind})", f"magic {magic}")
    if expected_count is not None and count != expected_count:
        raise _file_error(path, f"{expected_count} items", f"{count}")
    shape: tuple[int, ...] = (count,)
    if kind == "images":
        rows, cols = (int(x) for x in np.frombuffer(data[8:16], dtype=">u4"))
        if (rows, cols) != (IMAGE_SIDE, IMAGE_SIDE):
            raise _file_error(path, f"{IMAGE_SIDE}x{IMAGE_SIDE} images", f"{rows}x{cols}")
        shape = (count, rows, cols)
    payload = int(np.prod(shape))
    if len(data) - header_len != payload:
        raise _file_error(path, f"{payload} data bytes after the header", f"{len(data) - header_len}")
    array = np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape)
    if kind == "labels" and array.size and array.max() > 9:
        raise _file_error(path, "labels in 0..9", f"label {int(array.max())}")
    return array


def _verify_pair(images: np.ndarray, labels: np.ndarray, split: str, where: Path) -> None:
    """Cross-file checks: image and label counts agree and match the canonical split size."""
    expected = EXPECTED_COUNTS[split]
    if images.shape != (len(images), IMAGE_SIDE, IMAGE_SIDE) or labels.ndim != 1:
        raise _file_error(where, f"{split} images (N, 28, 28) and labels (N,)",
                          f"{images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise _file_error(where, f"as many {split} labels as images",
                          f"{len(images)} images and {len(labels)} labels")
    if len(images) != expected:
        raise _file_error(where, f"{expected} {split} items", f"{len(images)}")


def _file_error(path: Path, expected: str, found: str) -> MnistDataError:
    return MnistDataError(
        f"{path}: expected {expected}, found {found}. Fix: delete it and re-download "
        f"(run again with no {DATA_ENV}), or point {DATA_ENV} at a folder with the canonical MNIST files")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
