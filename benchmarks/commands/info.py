"""`mnist-bench info`: what this machine can run, asked of each framework in its own process."""

from __future__ import annotations

import subprocess
import sys

from backends.registry import BACKENDS
from backends.routes import CPU_ROUTES
from benchmarks.harness.parent import HarnessError, check_xla_flags
from backends.frameworks import DEVICE_PROBES
from benchmarks.measure.calibration import noise_threshold
from benchmarks.measure.environment import collect_environment, framework_devices
from benchmarks.measure.stack import describe_stack
from common.errors import EXIT_OK


def machine_info() -> str:
    """A readable report of machine, packages, backends and devices."""
    env = collect_environment()
    lines = [f"machine:   {env['cpu']}, {env['usable_cores']} usable of {env['cpu_cores']} cores, "
             f"{env['memory_gib']} GiB", f"os:        {env['os']}", f"python:    {env['python']}",
             f"commit:    {env['git_commit']}", "packages:  " + ", ".join(
                 f"{name} {version}" for name, version in env["packages"].items() if version),
             f"stack:     {describe_stack(env['stack'])}",
             f"settings:  {env['env'] or 'none of ' + ', '.join(('XLA_FLAGS', 'OMP_NUM_THREADS', '...'))}",
             noise_line(),
             "devices:"]
    for framework in DEVICE_PROBES:
        lines.append(f"  {framework:<11}{framework_devices(framework)}")
    lines.append("backends:")
    for spec in BACKENDS.values():
        routes = "; ".join(f"{model} on {device}: {flags}" for (model, device), flags in spec.xla_routes.items())
        lines.append(f"  {spec.name:<11}{spec.description} [{', '.join(spec.frameworks)}]"
                     + (f" (own route: {routes})" if routes else ""))
    lines.append("kernel routes (--xla-flags for the JAX workers; TensorFlow's kernels by its build):")
    for flags, meaning in CPU_ROUTES.items():
        try:
            if flags:
                check_xla_flags(flags)
            known = "available"
        except HarnessError:
            known = "not known to this jaxlib"
        lines.append(f"  {repr(flags) if flags else '(none)':<56}{meaning}: {known}")
    lines.append(f"  TensorFlow oneDNN kernels: {tensorflow_onednn()}")
    return "\n".join(lines)


def noise_line() -> str:
    """The noise threshold `run` judges with here, and where it comes from (this machine's calibration or not)."""
    threshold, source = noise_threshold()
    return f"noise:     ratios within 1 ± {threshold:.3f} are called ~: {source}"


def tensorflow_onednn() -> str:
    """Whether this machine's TensorFlow runs oneDNN's kernels, asked of it in a child (info never imports it)."""
    probe = subprocess.run([sys.executable, "-c", "import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
                            "from backends.devices import onednn_enabled; print(onednn_enabled())"],
                           capture_output=True, text=True)
    if probe.returncode:
        return "TensorFlow not importable here"
    return "on" if probe.stdout.strip().endswith("True") else "off (TF_ENABLE_ONEDNN_OPTS=0, or not built in)"


def cmd_info(args) -> int:
    """The machine, installed backends with versions, and the devices each framework sees."""
    print(machine_info())
    return EXIT_OK


def add_parser(commands, formatter) -> None:
    """Add this command to the CLI's subcommands."""
    info = commands.add_parser("info", help="machine, installed backends and versions, visible devices")
    info.set_defaults(handler=cmd_info)
