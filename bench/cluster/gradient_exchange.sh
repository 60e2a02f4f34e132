#!/usr/bin/env bash
# Gradient exchange after condensing: a 2-worker local cluster (CondenseNet-86, the bundled Fashion-MNIST subset,
# 93 steps per epoch) runs 56 steps, past the last condensing stage at step 47, once with mask-aware compression (the
# default) and once with --send-masked-gradients. Prints each run's per-worker table: step and compute time medians
# (their gap is the communication left on the critical path) and the bytes each worker sent in its last step.
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${STEPS:-56}
OUT=${KEEP:-$(mktemp -d)}
[ -n "${KEEP:-}" ] || trap 'rm -rf "$OUT"' EXIT
dotnet build -c Release -v quiet -nologo >/dev/null
COORDINATOR=Coordinator/bin/Release/net10.0/condense-coordinator.dll
for mode in masked-entries-left-out every-entry-sent; do
  extra=(); [ "$mode" = every-entry-sent ] && extra=(--send-masked-gradients)
  dotnet "$COORDINATOR" train --local-workers 2 --port 0 --api-port 0 --dashboard-port 0 --data Shared/Data/Bundled/fashion-mnist-subset \
    --stop-after "$STEPS" --recovery-steps 0 "${extra[@]}" --out "$OUT/$mode" > "$OUT/$mode.log" 2>&1
  echo "== $mode: $(grep -o 'median [0-9]* ms per step' "$OUT/$mode.log")"
  sed -n '/per worker (medians)/,/┘/p' "$OUT/$mode.log"
done
