"""The MNIST data layer: formats, structural verification, caching, downloads and real-data facts."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import mnist
from common.mnist import MnistDataError, download_mnist, load_mnist, read_idx
from conftest import idx_bytes, real_mnist_dir, requires_real_mnist, write_idx_set

GZ_NAMES = list(mnist.GZ_SHA256)


def assert_same_arrays(loaded, arrays):
    for got, want in zip((loaded.train_images, loaded.train_labels, loaded.test_images, loaded.test_labels),
                         arrays):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("layout", ["gz", "raw", "npz"])
def test_every_directory_layout_loads_the_same_arrays(tmp_path, synthetic_arrays, layout):
    if layout == "npz":
        tmp_path.mkdir(exist_ok=True)
        np.savez(tmp_path / "mnist.npz", x_train=synthetic_arrays[0], y_train=synthetic_arrays[1],
                 x_test=synthetic_arrays[2], y_test=synthetic_arrays[3])
    else:
        write_idx_set(tmp_path, synthetic_arrays, compress=layout == "gz")
    loaded = load_mnist(tmp_path)
    assert_same_arrays(loaded, synthetic_arrays)
    assert loaded.train_images.dtype == np.uint8 and loaded.train_images.shape == (60_000, 28, 28)
    assert not loaded.canonical


def test_environment_variable_is_used_when_no_argument(monkeypatch, synthetic_gz_dir, synthetic_arrays):
    monkeypatch.setenv(mnist.DATA_ENV, str(synthetic_gz_dir))
    assert_same_arrays(load_mnist(), synthetic_arrays)


def write_small(path: Path, data: bytes, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("kind, forged, expected_text", [
    ("images", dict(magic=2049), "expected IDX magic 2051 (images), found magic 2049"),
    ("labels", dict(magic=2051), "expected IDX magic 2049 (labels), found magic 2051"),
    ("images", dict(count=7), "expected 8 data bytes"),
])
def test_bad_headers_are_named(tmp_path, kind, forged, expected_text):
    array = np.zeros((5, 28, 28) if kind == "images" else (5,), np.uint8)
    path = write_small(tmp_path / f"x-{kind}", idx_bytes(array, kind, **forged))
    with pytest.raises(MnistDataError) as error:
        read_idx(path, kind)
    message = str(error.value)
    if "data bytes" in expected_text:
        assert "expected 5488 data bytes after the header, found 3920" in message
    else:
        assert expected_text in message
    assert str(path) in message and "Fix:" in message and "\n" not in message


def test_wrong_image_dimensions(tmp_path):
    path = write_small(tmp_path / "imgs", idx_bytes(np.zeros((3, 28, 27), np.uint8), "images"))
    with pytest.raises(MnistDataError, match=r"expected 28x28 images, found 28x27"):
        read_idx(path, "images")


def test_item_count_must_be_canonical(tmp_path, synthetic_arrays):
    arrays = list(synthetic_arrays)
    arrays[1] = arrays[1][:-1]  # 59,999 train labels
    write_idx_set(tmp_path, arrays, compress=False)
    with pytest.raises(MnistDataError, match=r"train-labels-idx1-ubyte: expected 60000 items, found 59999"):
        load_mnist(tmp_path)


def test_image_label_count_mismatch_in_npz(tmp_path, synthetic_arrays):
    np.savez(tmp_path / "mnist.npz", x_train=synthetic_arrays[0], y_train=synthetic_arrays[1][:-5],
             x_test=synthetic_arrays[2], y_test=synthetic_arrays[3])
    with pytest.raises(MnistDataError, match=r"expected as many train labels as images, found 60000 images and 59995"):
        load_mnist(tmp_path)


def test_truncated_gzip_gets_a_clear_error(tmp_path, synthetic_arrays):
    write_idx_set(tmp_path, synthetic_arrays)
    victim = tmp_path / "t10k-images-idx3-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.raises(MnistDataError) as error:
        load_mnist(tmp_path)
    assert str(error.value).startswith(f"{victim}: expected a readable gzip file, found EOFError")


def test_label_out_of_range(tmp_path):
    path = write_small(tmp_path / "labels.gz", idx_bytes(np.array([1, 2, 10], np.uint8), "labels"), compress=True)
    with pytest.raises(MnistDataError, match=r"expected labels in 0..9, found label 10"):
        read_idx(path, "labels")


def test_empty_or_partial_folder_lists_what_is_missing(tmp_path, synthetic_gz_dir):
    with pytest.raises(MnistDataError, match="found none of them"):
        load_mnist(tmp_path)
    (tmp_path / GZ_NAMES[0]).write_bytes((synthetic_gz_dir / GZ_NAMES[0]).read_bytes())
    with pytest.raises(MnistDataError, match=r"missing \['train-labels-idx1-ubyte.gz'"):
        load_mnist(tmp_path)
    with pytest.raises(MnistDataError, match="does not exist"):
        load_mnist(tmp_path / "nope")


def decoded_entries() -> list[Path]:
    root = mnist.user_cache_dir() / "decoded"
    return sorted(root.iterdir()) if root.exists() else []


def test_decoded_arrays_are_cached_and_keyed_by_content(tmp_path, synthetic_arrays):
    write_idx_set(tmp_path, synthetic_arrays, compress=False)
    first = load_mnist(tmp_path)
    assert len(decoded_entries()) == 1
    second = load_mnist(tmp_path)
    assert isinstance(second.train_images, np.memmap)  # served from the cache, not re-decoded
    assert_same_arrays(second, synthetic_arrays)

    changed = list(synthetic_arrays)
    changed[3] = (changed[3] + 1) % 10
    write_idx_set(tmp_path, changed, compress=False)
    third = load_mnist(tmp_path)
    np.testing.assert_array_equal(third.test_labels, changed[3])  # never the stale entry
    assert len(decoded_entries()) == 2
    del first


def test_damaged_decoded_cache_is_rebuilt(tmp_path, synthetic_arrays):
    write_idx_set(tmp_path, synthetic_arrays, compress=False)
    load_mnist(tmp_path)
    (entry,) = decoded_entries()
    damaged = entry / "train_images.npy"
    damaged.write_bytes(damaged.read_bytes()[:5000])
    assert_same_arrays(load_mnist(tmp_path), synthetic_arrays)
    assert (entry / "train_images.npy").stat().st_size > 47_000_000


def test_decoded_cache_damaged_in_place_is_detected_and_rebuilt(tmp_path, synthetic_arrays, caplog):
    # Same size, same header, damaged pixels: only the recorded checksum can tell.
    write_idx_set(tmp_path, synthetic_arrays, compress=False)
    load_mnist(tmp_path)
    (entry,) = decoded_entries()
    damaged = entry / "train_images.npy"
    data = bytearray(damaged.read_bytes())
    data[-1000:] = bytes(1000)
    damaged.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="common.mnist"):
        reloaded = load_mnist(tmp_path)
    assert_same_arrays(reloaded, synthetic_arrays)
    (warning,) = [record.getMessage() for record in caplog.records]
    assert "train_images.npy does not match its recorded checksum" in warning and "\n" not in warning
    assert isinstance(load_mnist(tmp_path).train_images, np.memmap)  # the rebuilt entry is served again


def test_data_layer_imports_no_framework():
    code = ("import sys, common.mnist, common.data, common.weights, common.config; "
            "bad = [m for m in ('tensorflow', 'jax', 'keras', 'flax') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- downloads, against a loopback HTTP server ---------------------------------------------------

def serve(mirror, prefix: str, folder: Path, names=GZ_NAMES):
    for name in names:
        mirror.files[f"/{prefix}/{name}"] = (folder / name).read_bytes()


def checksums_of(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in GZ_NAMES}


def test_download_then_serve_from_cache(tmp_path, loopback_mirror, synthetic_gz_dir):
    serve(loopback_mirror, "a", synthetic_gz_dir)
    target = tmp_path / "dl"
    download_mnist(target, mirrors=(loopback_mirror.url("a"),), progress=False,
                   checksums=checksums_of(synthetic_gz_dir))
    for name in GZ_NAMES:
        assert (target / name).read_bytes() == (synthetic_gz_dir / name).read_bytes()
    assert len(loopback_mirror.requests) == 4
    download_mnist(target, mirrors=(loopback_mirror.url("a"),), progress=False,
                   checksums=checksums_of(synthetic_gz_dir))
    assert len(loopback_mirror.requests) == 4  # verified from the cache, nothing fetched again


def test_404_on_first_mirror_falls_back_to_the_next(tmp_path, loopback_mirror, synthetic_gz_dir):
    serve(loopback_mirror, "second", synthetic_gz_dir)
    download_mnist(tmp_path, mirrors=(loopback_mirror.url("first"), loopback_mirror.url("second")),
                   progress=False, checksums=checksums_of(synthetic_gz_dir))
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(GZ_NAMES)
    assert loopback_mirror.requests[:2] == [f"/first/{GZ_NAMES[0]}", f"/second/{GZ_NAMES[0]}"]


def test_corrupted_download_is_rejected_and_not_cached(tmp_path, loopback_mirror, synthetic_gz_dir):
    serve(loopback_mirror, "bad", synthetic_gz_dir)
    loopback_mirror.files[f"/bad/{GZ_NAMES[2]}"] = b"not the file you are looking for"
    with pytest.raises(MnistDataError) as error:
        download_mnist(tmp_path, mirrors=(loopback_mirror.url("bad"),), progress=False,
                       checksums=checksums_of(synthetic_gz_dir))
    assert f"could not download {GZ_NAMES[2]}" in str(error.value)
    assert "hash" in str(error.value).lower()
    assert not (tmp_path / GZ_NAMES[2]).exists()
    assert not [p for p in tmp_path.iterdir() if p.name not in GZ_NAMES[:2]]  # no temporary leftovers


def test_all_mirrors_failing_is_one_clear_error(tmp_path, loopback_mirror, monkeypatch):
    monkeypatch.setenv(mnist.MIRROR_ENV, f"{loopback_mirror.url('x')},{loopback_mirror.url('y')}")
    with pytest.raises(MnistDataError) as error:
        load_mnist(progress=False)
    message = str(error.value)
    assert "\n" not in message and "404" in message and "/x/" in message and "/y/" in message
    assert "MNIST_BENCH_DATA" in message


def test_keras_cache_with_wrong_hash_is_ignored(tmp_path, loopback_mirror, monkeypatch, synthetic_arrays):
    keras_file = mnist.keras_cache_file()
    keras_file.parent.mkdir(parents=True)
    np.savez(keras_file, x_train=synthetic_arrays[0], y_train=synthetic_arrays[1],
             x_test=synthetic_arrays[2], y_test=synthetic_arrays[3])
    monkeypatch.setenv(mnist.MIRROR_ENV, loopback_mirror.url("none"))
    with pytest.raises(MnistDataError, match="could not download"):
        load_mnist(progress=False)
    assert loopback_mirror.requests  # fell through to the download step


@requires_real_mnist
def test_real_download_end_to_end_through_load_mnist(loopback_mirror, monkeypatch):
    serve(loopback_mirror, "mnist", real_mnist_dir())
    monkeypatch.setenv(mnist.MIRROR_ENV, loopback_mirror.url("mnist"))
    data = load_mnist(progress=False)
    assert data.canonical and data.source == str(mnist.user_cache_dir())
    assert len(loopback_mirror.requests) == 4
    (mnist.user_cache_dir() / GZ_NAMES[1]).write_bytes(b"damaged")
    assert load_mnist(progress=False).canonical  # damaged cache file re-fetched, not trusted
    assert len(loopback_mirror.requests) == 5


@requires_real_mnist
def test_real_mnist_known_facts():
    data = load_mnist(real_mnist_dir())
    assert data.canonical
    assert np.bincount(data.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert data.train_labels[0] == 5 and data.test_labels[0] == 7
    scaled = data.train_images.astype(np.float64) / 255.0
    assert scaled.mean() == pytest.approx(0.1307, abs=5e-5)
    assert scaled.std() == pytest.approx(0.3081, abs=5e-5)
