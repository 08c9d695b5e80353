"""`mnist-bench info`: what this machine can run, asked of each framework in its own process."""

from __future__ import annotations

import subprocess
import sys

from backends.registry import BACKENDS
from benchmarks.environment import collect_environment

# Each framework is asked in a fresh process, so neither grabs the other's devices or threads.
DEVICE_PROBES = {
    "jax": "import jax; print(', '.join(f'{d.platform}:{d.id} ({d.device_kind})' for d in jax.devices()))",
    "tensorflow": ("import os; os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2'); import tensorflow as tf; "
                   "print(', '.join(d.name for d in tf.config.list_logical_devices()))"),
}


def framework_devices(framework: str) -> str:
    """The devices `framework` sees, or why it could not be asked."""
    try:
        probe = subprocess.run([sys.executable, "-c", DEVICE_PROBES[framework]], capture_output=True, text=True,
                               timeout=120)
    except subprocess.TimeoutExpired:
        return "(timed out)"
    if probe.returncode:
        lines = probe.stderr.strip().splitlines()
        return f"(unavailable: {lines[-1] if lines else probe.returncode})"
    return probe.stdout.strip()


def machine_info() -> str:
    """A readable report of machine, packages, backends and devices."""
    env = collect_environment()
    lines = [f"machine:   {env['cpu']}, {env['usable_cores']} usable of {env['cpu_cores']} cores, "
             f"{env['memory_gib']} GiB", f"os:        {env['os']}", f"python:    {env['python']}",
             f"commit:    {env['git_commit']}", "packages:  " + ", ".join(
                 f"{name} {version}" for name, version in env["packages"].items() if version),
             f"settings:  {env['env'] or 'none of ' + ', '.join(('XLA_FLAGS', 'OMP_NUM_THREADS', '...'))}",
             "devices:"]
    for framework in DEVICE_PROBES:
        lines.append(f"  {framework:<11}{framework_devices(framework)}")
    lines.append("backends:")
    for spec in BACKENDS.values():
        lines.append(f"  {spec.name:<11}{spec.description} [{', '.join(spec.frameworks)}]")
    return "\n".join(lines)
