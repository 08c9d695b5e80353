"""`mnist-bench info`: what this machine can run, asked of each framework in its own process."""

from __future__ import annotations

from backends.registry import BACKENDS
from backends.frameworks import DEVICE_PROBES
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
             "devices:"]
    for framework in DEVICE_PROBES:
        lines.append(f"  {framework:<11}{framework_devices(framework)}")
    lines.append("backends:")
    for spec in BACKENDS.values():
        lines.append(f"  {spec.name:<11}{spec.description} [{', '.join(spec.frameworks)}]")
    return "\n".join(lines)


def cmd_info(args) -> int:
    """The machine, installed backends with versions, and the devices each framework sees."""
    print(machine_info())
    return EXIT_OK


def add_parser(commands, formatter) -> None:
    """Add this command to the CLI's subcommands."""
    info = commands.add_parser("info", help="machine, installed backends and versions, visible devices")
    info.set_defaults(handler=cmd_info)
