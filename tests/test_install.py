"""The installs reproduce the measured stack: uv.lock matches pyproject, every documented install resolves with
one TensorFlow, no two installed distributions write the same file, and runs record whether they match the lock.

Resolution only (the lock's metadata): no wheel is downloaded here.
"""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from benchmarks.measure.stack import LOCK_PATH, describe_stack, locked_versions, stack_report

ROOT = Path(__file__).resolve().parent.parent
# The Pythons the lock covers (pyproject's requires-python), and the installs docs/install.md documents.
PYTHONS = ("3.11", "3.12", "3.13")
INSTALLS = {"cpu": ("cpu", "test", "cluster"), "gpu": ("gpu", "test", "cluster")}
# Distributions that all install the one `tensorflow/` package: at most one of them may be in an install.
TENSORFLOW_PROVIDERS = {"tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos", "tensorflow-gpu",
                        "tf-nightly", "tf-nightly-cpu"}


def uv(*args: str) -> subprocess.CompletedProcess:
    """uv (installed by the README's commands), run on the project."""
    return subprocess.run([sys.executable, "-m", "uv", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def linux_x86_64(python: str) -> dict[str, str]:
    """Marker environment of CPython `python` on Linux x86-64."""
    return {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
            "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
            "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def resolved_install(extras: tuple[str, ...], python: str) -> dict[str, list[str]]:
    """{distribution: [versions]} that `uv sync --extra ...` installs on CPython `python`, Linux x86-64."""
    exported = uv("export", "--frozen", "--no-hashes", "--no-emit-project", "--no-header", "--no-annotate",
                  *[flag for extra in extras for flag in ("--extra", extra)])
    assert exported.returncode == 0, exported.stderr
    versions = collections.defaultdict(list)
    for line in exported.stdout.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(linux_x86_64(python)):
            versions[requirement.name].append(str(requirement.specifier).removeprefix("=="))
    return versions


def test_the_lock_matches_pyproject():
    checked = uv("lock", "--check")
    assert checked.returncode == 0, f"uv.lock drifts from pyproject.toml (re-lock: docs/install.md): {checked.stderr}"


@pytest.mark.parametrize("install", INSTALLS)
@pytest.mark.parametrize("python", PYTHONS)
def test_every_documented_install_resolves_with_one_tensorflow(install, python):
    versions = resolved_install(INSTALLS[install], python)
    twice = {name: found for name, found in versions.items() if len(found) > 1}
    assert not twice, f"{install} on {python}: two versions of one distribution (nvidia-* pins disagree?): {twice}"
    tensorflows = TENSORFLOW_PROVIDERS & set(versions)
    assert tensorflows == {"tensorflow-cpu" if install == "cpu" else "tensorflow"}, tensorflows
    assert {"jax", "jaxlib", "flax", "optax", "keras", "numpy", "ray", "pytest"} <= set(versions)
    cuda = {name for name in versions if name.startswith(("nvidia-", "jax-cuda"))}
    if install == "cpu":
        assert not cuda, f"the CPU install pulls CUDA wheels: {sorted(cuda)}"
    else:
        # TensorFlow's and JAX's CUDA wheels resolved together: one cuDNN, one cuBLAS for both.
        assert {"jax-cuda12-plugin", "nvidia-cudnn-cu12", "nvidia-cublas-cu12"} <= cuda


def test_cpu_and_gpu_tensorflow_are_refused_together():
    both = uv("export", "--frozen", "--extra", "cpu", "--extra", "gpu")
    assert both.returncode != 0 and "incompatible" in both.stderr, both.stderr


def test_python_311_gets_the_stack_every_figure_was_measured_on():
    versions = resolved_install(INSTALLS["cpu"], "3.11")
    measured = {"jax": "0.10.2", "jaxlib": "0.10.2", "flax": "0.12.8", "numpy": "2.4.6", "tensorflow-cpu": "2.21.0",
                "keras": "3.15.1"}
    assert {name: versions[name][0] for name in measured} == measured


def test_no_two_installed_distributions_write_one_file():
    import importlib.metadata

    owners = collections.defaultdict(set)
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            parts = file.parts
            if parts and not parts[0].endswith((".dist-info", ".data")) and parts[0] != ".." and "__pycache__" not in parts:
                owners[str(file)].add(dist.metadata["Name"])
    shared = {path: sorted(names) for path, names in owners.items() if len(names) > 1}
    assert not shared, f"files written by two distributions: {dict(list(shared.items())[:5])}"


LOCK = '''
version = 1
requires-python = ">=3.11"
resolution-markers = ["python_full_version < '3.12'", "python_full_version >= '3.12'"]

[[package]]
name = "jax"
version = "0.10.2"
resolution-markers = ["python_full_version < '3.12'"]

[[package]]
name = "jax"
version = "0.12.0.1"
resolution-markers = ["python_full_version >= '3.12'"]

[[package]]
name = "Keras"
version = "3.15.1"

[[package]]
name = "mnist-bench"
version = "0.1.0"
'''


def test_the_stack_record_names_each_drifting_package(tmp_path):
    assert locked_versions(LOCK, linux_x86_64("3.11")) == {"jax": {"0.10.2"}, "keras": {"3.15.1"},
                                                           "mnist-bench": {"0.1.0"}}
    assert locked_versions(LOCK, linux_x86_64("3.12"))["jax"] == {"0.12.0.1"}
    lock = tmp_path / "uv.lock"
    lock.write_text(LOCK, encoding="utf-8")
    here = Marker("python_full_version < '3.12'").evaluate()
    jax_locked = "0.10.2" if here else "0.12.0.1"
    matching = stack_report(lock, {"jax": jax_locked, "keras": "3.15.1", "mnist-bench": "9", "pip": "24.0"})
    assert (matching["matches"], matching["drift"], matching["checked"]) == (True, [], 2)
    assert describe_stack(matching) == "matches uv.lock (2 installed packages checked)"
    drifting = stack_report(lock, {"jax": "0.11.0", "keras": "3.15.1"})
    assert drifting["drift"] == [f"jax 0.11.0 (locked {jax_locked})"]
    assert describe_stack(drifting) == f"DRIFTS from uv.lock: jax 0.11.0 (locked {jax_locked})"
    assert stack_report(tmp_path / "none.lock")["matches"] is None


def test_this_install_matches_the_lock():
    # The README's commands install from the lock: this environment must be the locked stack.
    report = stack_report(LOCK_PATH)
    assert report["matches"], describe_stack(report)


def test_a_backend_whose_framework_is_missing_is_refused_in_one_line(tmp_path):
    from helpers import cli_without

    out = tmp_path / "run"
    done = cli_without("tensorflow", ["run", "--rounds", "1", "--timing-rounds", "0", "--backend", "flax,keras", "--out", str(out)])
    assert done.returncode == 2
    assert done.stderr.strip() == ("mnist-bench: error: backend 'keras' needs tensorflow, which is not installed here: "
                                   "the `cpu` extra (`gpu` on NVIDIA machines) installs it (docs/install.md)")
    assert not out.exists()
