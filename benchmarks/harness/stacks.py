"""Stacks: the project on other framework versions, each in a virtual environment that uv builds and keeps.

`--stack NAME=REQ[,REQ...]` names a stack by the requirements it pins (`jax09=jax==0.9.2,jaxlib==0.9.2`); the
running environment is the stack `current`. A stack's environment holds the project's requirements with the stack's
pins, every other package kept at the version the running environment has (the locked one, where it matches the
lock) wherever the resolver can keep it: `uv pip compile` prefers the versions already in its output file, so the
running environment's versions go there first and only what must move with a pin moves (jax 0.9.2 takes flax back
to 0.12.6, whose releases after it require jax >= 0.10). The project goes in editable from this checkout, with no
dependencies of its own.

Each environment is keyed by a hash of the Python version and the resolved requirements, under the user's cache
folder ($MNIST_BENCH_STACKS_DIR, else $XDG_CACHE_HOME/mnist-bench/stacks), and reused while its info file says it
was built whole for that key; one without it (a build cut short, a damaged folder) is removed and built again.
Requirements are parsed as requirements (`packaging`) and reach uv as arguments and files, never a shell.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from benchmarks.harness.children import CHILD_ENVIRONMENT
from benchmarks.measure.stack import installed_versions
from common.atomic import write_text_atomic
from common.errors import MnistBenchError
from common.job import CURRENT_STACK as CURRENT
STACKS_DIR_ENV = "MNIST_BENCH_STACKS_DIR"
INFO_FILE = "mnist-bench-stack.json"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
PROJECT = "mnist-bench"
RESOLVE_TIMEOUT_S = 300
INSTALL_TIMEOUT_S = 1800


class StackError(MnistBenchError):
    """A stack that cannot be used: a bad spec, requirements that do not resolve, an install that failed."""


@dataclasses.dataclass(frozen=True)
class StackSpec:
    """A stack as the user named it: its name and the requirements it pins."""

    name: str
    requirements: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Stack:
    """A built stack: its interpreter, the requirements it resolved to and what moved from the running stack."""

    name: str
    requirements: tuple[str, ...]
    python: str
    resolved: dict  # package -> version
    moved: dict  # package -> [running version or None, this stack's]
    path: str

    def to_dict(self) -> dict:
        """Plain-JSON form, for results.json."""
        return dataclasses.asdict(self)


def parse_stack(text: str) -> StackSpec:
    """'NAME=REQ[,REQ...]' as a StackSpec; a bad name or requirement is a StackError naming it and the fix."""
    from packaging.requirements import InvalidRequirement, Requirement

    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not rest.strip():
        raise StackError(f"--stack {text!r}: expected NAME=REQ[,REQ...], e.g. jax09=jax==0.9.2,jaxlib==0.9.2")
    if not NAME_PATTERN.match(name) or name == CURRENT:
        raise StackError(f"--stack {text!r}: the name {name!r} must be lower-case letters, digits, '.', '_' or '-' "
                         f"(at most 32) and not {CURRENT!r}, the running environment's")
    requirements = []
    for item in (part.strip() for part in rest.split(",")):
        try:
            requirement = Requirement(item)
        except InvalidRequirement as error:
            reason = str(error).splitlines()[0]
            raise StackError(f"--stack {name}: {item!r} is not a requirement ({reason}); write NAME==VERSION") from None
        if requirement.url or requirement.marker:
            raise StackError(f"--stack {name}: {item!r}: give a package and its version, not a URL or a marker")
        requirements.append(str(requirement))
    return StackSpec(name, tuple(requirements))


def parse_stacks(values: Sequence[str] | None) -> tuple[StackSpec, ...]:
    """Every --stack, each name once."""
    specs = tuple(parse_stack(value) for value in values or ())
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise StackError(f"--stack: {', '.join(repeated)} named twice; give each stack one name")
    return specs


def stacks_dir() -> Path:
    """Where stack environments are kept."""
    if os.environ.get(STACKS_DIR_ENV):
        return Path(os.environ[STACKS_DIR_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mnist-bench" / "stacks"


def project_root() -> Path:
    """The checkout this mnist-bench runs from (the folder with pyproject.toml beside the packages)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise StackError("stacks install mnist-bench from its checkout, and this one runs from an installed package; "
                         "run it from a clone of the repository")
    return root


def _uv() -> list[str]:
    """uv, as the project installs it (a module of the running interpreter), else from PATH."""
    try:
        importlib.metadata.version("uv")
        return [sys.executable, "-m", "uv"]
    except importlib.metadata.PackageNotFoundError:
        found = shutil.which("uv")
        if not found:
            raise StackError("stacks are built with uv, which is not installed: pip install uv") from None
        return [found]


def project_requirements() -> list[str]:
    """The project's own requirements with the extra the running environment has (cpu or gpu) applied."""
    from packaging.requirements import Requirement

    installed = installed_versions()
    extra = "gpu" if "tensorflow" in installed and "tensorflow-cpu" not in installed else "cpu"
    chosen = []
    for line in importlib.metadata.requires(PROJECT) or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
            requirement.marker = None
            chosen.append(str(requirement))
    return chosen


def running_versions() -> dict[str, str]:
    """The running environment's distributions and versions (the stack `current`), the project left out."""
    return {name: version for name, version in installed_versions().items() if name != PROJECT}


def resolve(spec: StackSpec) -> dict[str, str]:
    """The stack's packages and versions: the project's requirements with the stack's pins, every other package at
    the running environment's version where the resolver can keep it. Raises StackError with uv's reason."""
    from packaging.requirements import Requirement

    current = running_versions()
    with tempfile.TemporaryDirectory(prefix="mnist-bench-stack-") as scratch:
        wanted, pinned = Path(scratch) / "requirements.in", Path(scratch) / "requirements.txt"
        pins = {canonicalize_name(Requirement(requirement).name) for requirement in spec.requirements}
        wanted.write_text("\n".join([*project_requirements(), *spec.requirements]) + "\n", encoding="utf-8")
        # The output file's versions are the resolver's preferences: the running stack's, less what the stack pins.
        pinned.write_text("".join(f"{name}=={version}\n" for name, version in sorted(current.items())
                                  if name not in pins), encoding="utf-8")
        command = [*_uv(), "pip", "compile", str(wanted), "-o", str(pinned), "--quiet", "--no-header",
                   "--no-annotate", "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise StackError(f"--stack {spec.name}: resolving {', '.join(spec.requirements)} took over "
                             f"{RESOLVE_TIMEOUT_S} s (no network, or a slow index?)") from None
        if done.returncode:
            raise StackError(f"--stack {spec.name}: {', '.join(spec.requirements)} do not resolve with the project's "
                             f"requirements: {_reason(done.stderr)}")
        resolved = {}
        for line in pinned.read_text(encoding="utf-8").splitlines():
            name, sep, version = line.strip().partition("==")
            if sep and not line.startswith("#"):
                resolved[canonicalize_name(name.split("[")[0])] = version.split(";")[0].strip()
        return resolved


def _reason(stderr: str) -> str:
    """uv's explanation, in one line."""
    lines = [line.strip().removeprefix("×").removeprefix("╰─▶").strip() for line in stderr.splitlines()]
    lines = [line.removeprefix("error:").strip() for line in lines if line.strip()]
    # "No solution found when resolving dependencies:" is the heading; the reason is what follows it.
    text = " ".join(line for line in lines if not line.startswith("No solution found")) or " ".join(lines)
    return (text[:600] + "...") if len(text) > 600 else text or "uv gave no reason"


def stack_key(resolved: dict[str, str]) -> str:
    """The environment's identity: the Python version and the resolved requirements."""
    text = sys.version.split()[0] + "\n" + "\n".join(f"{name}=={version}" for name, version in sorted(resolved.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _whole_build_info(path: Path, key: str) -> dict | None:
    """The environment's info file when it says the environment was built whole for `key`; None otherwise."""
    try:
        info = json.loads((path / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    whole = isinstance(info, dict) and info.get("key") == key and info.get("complete") is True
    return info if whole and (path / "bin" / "python").exists() else None


def build_stack(spec: StackSpec, quiet: bool = True) -> Stack:
    """The stack's environment: reused when one was built whole for the same key, else (re)built with uv."""
    resolved = resolve(spec)
    key = stack_key(resolved)
    root = stacks_dir()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{spec.name}-{key}"
    # One builder at a time per environment: a second run waits for the first and then reuses its work.
    with open(root / f"{spec.name}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        project = str(project_root())
        info = _whole_build_info(path, key)
        if info is None:
            if path.exists():
                shutil.rmtree(path)  # half-built or damaged: never used
            _install(spec, path, resolved, quiet)
        elif info.get("project") != project:
            _install_project(spec, path)  # the same stack, used from another checkout: its code, not the other's
        if info is None or info.get("project") != project:
            write_text_atomic(path / INFO_FILE, json.dumps({"key": key, "complete": True, "name": spec.name,
                                                            "requirements": list(spec.requirements),
                                                            "python": sys.version.split()[0], "resolved": resolved,
                                                            "project": project}, indent=1) + "\n")
    current = running_versions()
    moved = {name: [current.get(name), version] for name, version in sorted(resolved.items())
             if current.get(name) != version}
    return Stack(spec.name, spec.requirements, str(path / "bin" / "python"), resolved, moved, str(path))


def _install(spec: StackSpec, path: Path, resolved: dict[str, str], quiet: bool) -> None:
    """A venv at `path` with exactly `resolved`, and the project editable from its checkout without dependencies."""
    if not quiet:
        print(f"stack {spec.name}: building {path} ({len(resolved)} packages, from uv's cache where it has them)",
              file=sys.stderr, flush=True)
    python = path / "bin" / "python"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as pins:
        pins.write("".join(f"{name}=={version}\n" for name, version in sorted(resolved.items())))
    try:
        _uv_steps(spec, [[*_uv(), "venv", str(path), "--python", sys.executable, "--quiet"],
                         [*_uv(), "pip", "install", "--python", str(python), "--quiet", "-r", pins.name]])
    finally:
        os.unlink(pins.name)
    _install_project(spec, path)


def _install_project(spec: StackSpec, path: Path) -> None:
    """This checkout of mnist-bench into the stack, editable and without dependencies."""
    _uv_steps(spec, [[*_uv(), "pip", "install", "--python", str(path / "bin" / "python"), "--quiet", "--no-deps",
                      "-e", str(project_root())]])


def _uv_steps(spec: StackSpec, steps: list[list[str]]) -> None:
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
            if done.returncode:
                raise StackError(f"--stack {spec.name}: installing its environment failed: {_reason(done.stderr)}")
    except subprocess.TimeoutExpired:
        raise StackError(f"--stack {spec.name}: installing its environment took over {INSTALL_TIMEOUT_S} s") from None


def python_module(stack: dict, module: str) -> tuple[str, ...]:
    """The command that runs `module` as a child in a stack's interpreter (`stack`: a Job's entry for it,
    Stack.to_dict()), as children.python_module does in this one."""
    return (stack["python"], "-m", module)


def worker_environment(stack: dict, **extra: str) -> dict[str, str]:
    """A clean environment for a stack's worker: nothing of the parent's Python or library paths leaks in, and JAX
    keeps no compile cache shared with another stack's."""
    leaking = ("PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "JAX_COMPILATION_CACHE_DIR")
    environment = {name: value for name, value in os.environ.items() if name not in leaking}
    environment.update(VIRTUAL_ENV=stack["path"], PATH=f"{Path(stack['path']) / 'bin'}{os.pathsep}"
                                                       f"{environment.get('PATH', '')}", **CHILD_ENVIRONMENT, **extra)
    return environment


def stacked_job(job, values: Sequence[str] | None, quiet: bool = True):
    """`job` over the stacks `values` names (--stack): every backend on the running stack (`flax@current`) and on
    each other one (`flax@jax09`), interleaved by the rounds like any labels; each stack built (or reused) first, so a
    stack that cannot be had stops the run before any training. No --stack: `job` unchanged."""
    specs = parse_stacks(values)
    if not specs:
        return job
    built = [build_stack(spec, quiet) for spec in specs]
    labels = tuple(f"{backend}@{stack}" for stack in (CURRENT, *(spec.name for spec in specs))
                   for backend in job.backends)
    return job.replace(backends=labels, stacks={stack.name: stack.to_dict() for stack in built})
