#!/usr/bin/env bash
# The prepared GPU session: on a machine with one NVIDIA GPU, one command, under 8 minutes, everything under
# one folder. It needs only JAX, Flax, Optax, NumPy, matplotlib and tqdm (backends whose framework is not
# installed are skipped, each with the reason) and the four MNIST files in $MNIST_BENCH_DATA.
#
#   MNIST_BENCH_DATA=/path/to/mnist bash benchmarks/gpu_session.sh [--device gpu|cpu] [--quick] [--out DIR]
#
# --device cpu --quick runs the same steps on the CPU with a few steps each: how the tests check it.
# GPU_SESSION_BACKENDS=a,b narrows the JAX rows (default: every one installed that runs on the device).
set -euo pipefail
cd "$(dirname "$0")/.."

usage="usage: bash benchmarks/gpu_session.sh [--device gpu|cpu] [--quick] [--out DIR]"
device=gpu quick=0 out=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        --device) device="${2:?$usage}"; shift 2 ;;
        --quick) quick=1; shift ;;
        --out) out="${2:?$usage}"; shift 2 ;;
        *) echo "gpu_session.sh: unknown option $1; $usage" >&2; exit 2 ;;
    esac
done
if [ "$device" != gpu ] && [ "$device" != cpu ]; then
    echo "gpu_session.sh: --device $device; expected gpu or cpu" >&2; exit 2
fi
if [ -z "${MNIST_BENCH_DATA:-}" ] || [ ! -d "$MNIST_BENCH_DATA" ]; then
    echo "gpu_session.sh: set MNIST_BENCH_DATA to the folder with the four MNIST IDX files (nothing is downloaded)" >&2
    exit 2
fi
python="${PYTHON:-python3}"
out="${out:-runs/gpu-session-$(date -u +%Y%m%dT%H%M%SZ)}"
if [ -e "$out" ]; then
    echo "gpu_session.sh: $out exists; choose another --out" >&2; exit 2
fi
mkdir -p "$out"
log="$out/session.log"

if [ "$quick" = 1 ]; then
    batch_sizes=(32) epochs=1 profile_epochs=2 steps=3 rounds=1 limits=(--train-limit 640 --test-limit 128)
else
    # Three interleaved full rounds give every speed ratio a CI; profiled runs are never compared: one round. No
    # timing rounds (--timing-rounds 0): the session's device budget was sized for full rounds.
    batch_sizes=(32 512 2048) epochs=3 profile_epochs=2 steps=20 rounds=3 limits=()
fi

# Which rows this machine can run: the registry's backends that train the MLP on the device, split into the
# JAX rows and the TensorFlow rows; a backend whose framework is missing is skipped with the reason.
read -r jax_rows tf_rows < <("$python" - "$device" "${GPU_SESSION_BACKENDS:-}" "$out/skipped.txt" <<'PY'
import sys
from backends.frameworks import missing_frameworks
from backends.registry import BACKENDS, runs

device, only, skipped_path = sys.argv[1], sys.argv[2], sys.argv[3]
jax_rows, tf_rows, skipped = [], [], []
for spec in BACKENDS.values():
    if not runs(spec, "mlp", device) or (only and spec.name not in only.split(",")):
        continue
    missing = missing_frameworks(spec.frameworks)
    if missing:
        skipped.append(f"{spec.name}: skipped, {', '.join(f.name for f in missing)} not installed")
    else:
        (tf_rows if "tensorflow" in spec.frameworks else jax_rows).append(spec.name)
with open(skipped_path, "w", encoding="utf-8") as handle:
    handle.write("".join(line + "\n" for line in skipped))
print(",".join(jax_rows) or "-", ",".join(tf_rows) or "-")
PY
)
if [ -z "${jax_rows:-}" ] || [ "$jax_rows" = - ]; then
    echo "gpu_session.sh: no JAX backend can run here (see $out/skipped.txt)" >&2; exit 1
fi
say() { echo "== $*" | tee -a "$log"; }
bench() { "$python" -m benchmarks.cli "$@" 2>&1 | tee -a "$log"; }
failed() { status=1; echo "gpu_session.sh: FAILED: $*" | tee -a "$log" >&2; }
say "gpu session on $device ($(date -u +%FT%TZ)); JAX rows: $jax_rows; TensorFlow rows: $tf_rows"
sed 's/^/   /' "$out/skipped.txt" | tee -a "$log"
verify_rows="$jax_rows"
[ "$tf_rows" != - ] && verify_rows="$jax_rows,$tf_rows"

say "info"
"$python" -m benchmarks.cli info 2>&1 | tee "$out/info.txt" >> "$log"

status=0
for precision in highest default; do
    say "verify $verify_rows at --precision $precision"
    bench verify --backend "$verify_rows" --device "$device" --precision "$precision" --steps "$steps" \
        --out "$out/verify-$precision" --quiet || failed "verify at $precision"
done

for batch in "${batch_sizes[@]}"; do
    say "run $jax_rows at batch $batch, $epochs epochs"
    bench run --backend "$jax_rows" --device "$device" --batch-size "$batch" --epochs "$epochs" --rounds "$rounds" \
        --timing-rounds 0 "${limits[@]}" --out "$out/run-b$batch" --quiet || failed "run at batch $batch"
done

# XLA command buffers (CUDA graphs) for flax-fused's epoch program: off, XLA's default set, and the default set
# plus loops and conditionals captured whole. On the CPU the flag is read and has no effect.
declare -A command_buffers=([off]="--xla_gpu_enable_command_buffer=" [default]=""
                            [while-conditional]="--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL")
if [[ ",$jax_rows," == *",flax-fused,"* ]]; then
    for mode in off default while-conditional; do
        # Word splitting trims the spaces: XLA reads a value not starting with "--" as a file of flags.
        flags="$(echo ${XLA_FLAGS:-} ${command_buffers[$mode]})"
        say "flax-fused, command buffers $mode (XLA_FLAGS=$flags)"
        (if [ -n "$flags" ]; then export XLA_FLAGS="$flags"; else unset XLA_FLAGS; fi
         bench run --backend flax-fused --device "$device" --epochs "$epochs" --rounds "$rounds" --timing-rounds 0 "${limits[@]}" \
             --out "$out/command-buffers-$mode" --quiet) || failed "command buffers $mode"
    done
    bench compare "$out/command-buffers-off" "$out/command-buffers-default" "$out/command-buffers-while-conditional" \
        --out "$out/command-buffers" > "$out/command-buffers.txt" || failed "compare of command buffers"
else
    say "command buffers: skipped, flax-fused is not among the JAX rows"
fi

say "profile of $jax_rows (epoch 2), and the ops that take each traced step's time"
bench run --backend "$jax_rows" --device "$device" --profile --epochs "$profile_epochs" --rounds 1 "${limits[@]}" \
    --out "$out/profile" --quiet || failed "profiled run"
"$python" -m benchmarks.report.profile_ops "$out/profile" | tee "$out/profile-ops.txt" | tee -a "$log" || failed "op table of the profile"

bench compare "$out"/run-b* --out "$out/compare" > "$out/compare.txt" || failed "compare of the batch sizes"
say "done: everything is under $out (session.log, info.txt, verify-*, run-b*, command-buffers*, profile*, compare*)"
exit "$status"
