#!/usr/bin/env bash
# Upgrade the locked stack and show what it changes: re-lock (all packages, or those named), install the new
# lock into .venv-upgrade/, run the tests and `verify` there, train the reference backends for 2 epochs on
# the old and the new stack, and write the version diff and the comparison under runs/upgrade-<UTC>/.
# Usage (from an installed checkout, venv active): bash benchmarks/upgrade_stack.sh [PACKAGE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
out="runs/upgrade-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
cp uv.lock "$out/uv.lock.old"
python -m benchmarks.cli info > "$out/info-old.txt"

if [ "$#" -gt 0 ]; then
    uv lock $(printf -- '--upgrade-package %s ' "$@") 2>&1 | tee "$out/relock.log"
else
    uv lock --upgrade 2>&1 | tee "$out/relock.log"
fi
grep -E '^(Updated|Added|Removed) ' "$out/relock.log" > "$out/versions.diff" || echo "no version changed" > "$out/versions.diff"

# The old stack's figures, from the venv that is active now.
epochs=(--epochs 2 --seeds 0 --quiet)
python -m benchmarks.cli run "${epochs[@]}" --out "$out/run-old"

# The new stack in a venv of its own: the active one stays as it was until the new lock is accepted.
python3 -m venv .venv-upgrade
.venv-upgrade/bin/pip install -q uv==0.13.9
VIRTUAL_ENV="$PWD/.venv-upgrade" .venv-upgrade/bin/uv sync --active --locked --inexact --compile-bytecode --extra cpu --extra test --extra cluster
.venv-upgrade/bin/python -m benchmarks.cli info > "$out/info-new.txt"
status=0
.venv-upgrade/bin/python -m pytest -n auto --dist loadfile -q 2>&1 | tee "$out/tests.log" || status=1
.venv-upgrade/bin/python -m benchmarks.cli verify --backend all --out "$out/verify" || status=1
.venv-upgrade/bin/python -m benchmarks.cli run "${epochs[@]}" --out "$out/run-new"
python -m benchmarks.cli compare "$out/run-old" "$out/run-new" --out "$out/compare" | tee "$out/compare.txt"

echo
cat "$out/versions.diff"
if [ "$status" -ne 0 ]; then
    echo "upgrade_stack: tests or verify FAILED on the new stack ($out); restore the lock: cp $out/uv.lock.old uv.lock" >&2
    exit 1
fi
echo "upgrade_stack: tests and verify pass on the new stack; keep uv.lock, re-sync (uv sync --active --locked --inexact --compile-bytecode --extra cpu ...) and record $out/compare.txt under docs/results/"
