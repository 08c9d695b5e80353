"""Whether the running Python stack is the one uv.lock pins: the locked version of every installed package.

Figures are only comparable across machines that run the same versions, so every results.json and `info`
say whether this interpreter's packages match the lock beside the project, and name the ones that drift.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

LOCK_PATH = Path(__file__).resolve().parents[2] / "uv.lock"
PROJECT = "mnist-bench"


def locked_versions(lock_text: str, environment: dict[str, str] | None = None) -> dict[str, set[str]]:
    """{package: versions} the lock pins for `environment` (default: this interpreter and platform)."""
    versions: dict[str, set[str]] = {}
    for package in tomllib.loads(lock_text).get("package", []):
        markers = package.get("resolution-markers")
        if markers and not any(Marker(marker).evaluate(environment) for marker in markers):
            continue  # pinned for another Python or platform
        versions.setdefault(canonicalize_name(package["name"]), set()).add(package["version"])
    return versions


def installed_versions() -> dict[str, str]:
    """{package: version} of every distribution this interpreter can import from."""
    return {canonicalize_name(dist.metadata["Name"]): dist.version for dist in importlib.metadata.distributions()
            if dist.metadata["Name"]}


def _same(installed: str, locked: set[str]) -> bool:
    try:
        return any(Version(installed) == Version(version) for version in locked)
    except InvalidVersion:
        return installed in locked


def stack_report(lock_path: Path = LOCK_PATH, installed: dict[str, str] | None = None) -> dict:
    """{"lock", "matches", "drift": ["name installed (locked X)", ...], "checked": n} for this interpreter."""
    if not lock_path.is_file():
        return {"lock": None, "matches": None, "drift": [], "checked": 0,
                "note": f"no {lock_path.name} beside this install: versions unchecked"}
    locked = locked_versions(lock_path.read_text(encoding="utf-8"))
    installed = installed_versions() if installed is None else installed
    checked = sorted(name for name in installed if name in locked and name != PROJECT)
    drift = [f"{name} {installed[name]} (locked {' or '.join(sorted(locked[name]))})"
             for name in checked if not _same(installed[name], locked[name])]
    return {"lock": lock_path.name, "matches": not drift, "drift": drift, "checked": len(checked)}


def describe_stack(report: dict) -> str:
    """One line for `info` and the summary: matches the lock, drifts (and how), or cannot be checked."""
    if report["matches"] is None:
        return report["note"]
    if report["matches"]:
        return f"matches {report['lock']} ({report['checked']} installed packages checked)"
    return f"DRIFTS from {report['lock']}: " + ", ".join(report["drift"])
