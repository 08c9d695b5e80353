#!/usr/bin/env bash
# Upgrade the locked stack and show what it changes: re-lock (all packages, or those named), install the new
# lock into .venv-upgrade/ and run the tests there, then train and verify the reference backends on the old stack
# (the active venv, `current`) and the new one (`--stack new=PINS`, the versions the re-lock moved) interleaved,
# and write the version diff and the comparison under runs/upgrade-<UTC>/.
# Usage (from an installed checkout, venv active): bash benchmarks/upgrade_stack.sh [PACKAGE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
out="runs/upgrade-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
cp uv.lock "$out/uv.lock.old"
# The running Python's packages under the lock, before and after: what the new stack pins.
export_lock() { uv export --frozen --no-hashes --no-header --no-annotate --extra cpu --no-emit-project -q > "$1"; }
export_lock "$out/requirements-old.txt"
python -m benchmarks.cli info > "$out/info-old.txt"

if [ "$#" -gt 0 ]; then
    uv lock $(printf -- '--upgrade-package %s ' "$@") 2>&1 | tee "$out/relock.log"
else
    uv lock --upgrade 2>&1 | tee "$out/relock.log"
fi
grep -E '^(Updated|Added|Removed) ' "$out/relock.log" > "$out/versions.diff" || echo "no version changed" > "$out/versions.diff"

# The new stack's pins: every package whose version the re-lock moved or added, for this Python.
export_lock "$out/requirements-new.txt"
pins=$(python - "$out/requirements-old.txt" "$out/requirements-new.txt" <<'PY'
import sys
from packaging.requirements import Requirement

def versions(path):
    found = {}
    for line in open(path, encoding="utf-8"):
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line.strip())
            if requirement.marker is None or requirement.marker.evaluate():
                found[requirement.name] = str(requirement.specifier)
    return found

old, new = versions(sys.argv[1]), versions(sys.argv[2])
print(",".join(f"{name}{spec}" for name, spec in sorted(new.items()) if old.get(name) != spec))
PY
)
echo "new stack: ${pins:-no version moved}" | tee -a "$out/versions.diff"

# The new stack in a venv of its own for the test suite: the active one stays as it was until the new lock is accepted.
python3 -m venv .venv-upgrade
.venv-upgrade/bin/pip install -q uv==0.13.9
VIRTUAL_ENV="$PWD/.venv-upgrade" .venv-upgrade/bin/uv sync --active --locked --inexact --compile-bytecode --extra cpu --extra test --extra cluster
.venv-upgrade/bin/python -m benchmarks.cli info > "$out/info-new.txt"
status=0
.venv-upgrade/bin/python -m pytest -n auto --dist loadfile -q 2>&1 | tee "$out/tests.log" || status=1
if [ -n "$pins" ]; then
    # Old and new side by side: interleaved rounds, each row against its twin on the old stack, and both verified.
    python -m benchmarks.cli verify --backend reference --stack "new=$pins" --out "$out/verify" || status=1
    python -m benchmarks.cli run --epochs 2 --seeds 0 --quiet --stack "new=$pins" --out "$out/run" | tee "$out/compare.txt"
fi

echo
cat "$out/versions.diff"
if [ "$status" -ne 0 ]; then
    echo "upgrade_stack: tests or verify FAILED on the new stack ($out); restore the lock: cp $out/uv.lock.old uv.lock" >&2
    exit 1
fi
echo "upgrade_stack: tests and verify pass on the new stack; keep uv.lock, re-sync (uv sync --active --locked --inexact --compile-bytecode --extra cpu ...) and record $out/compare.txt under docs/results/"
