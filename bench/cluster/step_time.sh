#!/usr/bin/env bash
# Step time of CondenseNet-86 training on Fashion-MNIST, side by side in one run (bench/README.md):
#   the single-process engine (2 threads) | a local cluster of N workers x 1 thread | PyTorch DDP (gloo) N x 1 thread,
#   with glibc's default allocator and with our allocator settings,
# at the same global batch, for N = 1, 2 and 3. Prints the median step of each.
# The global batch is 32 images per worker (32·N), or GLOBAL_BATCH for every N (it must divide by 1, 2 and 3).
# STEPS=12 steps per run; WORKERS="2" runs only that N; KEEP=DIR keeps the logs there.
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${STEPS:-12}
PYTHON=${PYTHON:-/usr/bin/python3}   # Debian's, which python3-torch installs into
TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824:glibc.malloc.arena_max=1 # NativeAllocator.Tunables
OUT=${KEEP:-$(mktemp -d)}
[ -n "${KEEP:-}" ] || trap 'rm -rf "$OUT"' EXIT
mkdir -p "$OUT"
dotnet build -c Release -v quiet -nologo >/dev/null
COORDINATOR=Coordinator/bin/Release/net10.0/condense-coordinator.dll

median_of_run() { grep -oP 'median \K[0-9]+(?= ms per step)' "$1" | tail -1; }
# the smallest all-reduce wait of the workers: the slowest worker's, which waits for no peer, only for the transfer
allreduce_of_run() { grep -oP '│ worker-[0-9]+ │[^│]*│[^│]*│[^│]*│ *\K[0-9.]+' "$1" | sort -g | head -1; }

printf '%-8s %-34s %12s %18s\n' workers "what" "median ms" "all-reduce ms"
for N in ${WORKERS:-1 2 3}; do
  BATCH=${GLOBAL_BATCH:-$((32 * N))}
  dotnet "$COORDINATOR" train --local --threads 2 --batch-size "$BATCH" --stop-after "$STEPS" --recovery-steps 0 --out "$OUT/single$N" > "$OUT/single$N.log"
  printf '%-8s %-34s %12s %18s\n' "$N" "single process, 2 threads, batch $BATCH" "$(median_of_run "$OUT/single$N.log")" -
  dotnet "$COORDINATOR" train --local-workers "$N" --port 0 --batch-size "$BATCH" --stop-after "$STEPS" --recovery-steps 0 --out "$OUT/cluster$N" > "$OUT/cluster$N.log"
  printf '%-8s %-34s %12s %18s\n' "$N" "CondenseCluster, $N x 1 thread" "$(median_of_run "$OUT/cluster$N.log")" "$(allreduce_of_run "$OUT/cluster$N.log")"
  if "$PYTHON" -c 'import torch' 2>/dev/null; then
    for allocator in default ours; do
      if [ "$allocator" = ours ]; then export GLIBC_TUNABLES=$TUNABLES; fi
      "$PYTHON" bench/pytorch/ddp_step.py --processes "$N" --global-batch "$BATCH" --channels 1 --steps "$STEPS" > "$OUT/ddp$N-$allocator.log" 2>&1
      unset GLIBC_TUNABLES
      printf '%-8s %-34s %12s %18s\n' "$N" "PyTorch DDP (gloo), $allocator allocator" \
        "$(grep -oP 'median step \K[0-9.]+' "$OUT/ddp$N-$allocator.log" | head -1)" "$(grep -oP 'MB\): median \K[0-9.]+' "$OUT/ddp$N-$allocator.log" | head -1)"
    done
  fi
done
