#!/usr/bin/env bash
# Chaos soaks: the fault-injection suite's soak (tests/Cluster/FaultInjectionTests.Chaos.cs) with longer jobs and more
# faults, one run per seed. SEEDS="1 2 3" replays given seeds; otherwise RUNS random seeds are drawn and printed.
# STEPS (default 200) and FAULTS (default 12) size each soak; TOLERANCE (default 5e-2) bounds the weights' drift from
# the fault-free run, which grows with the steps (summation order alone: 1.2e-2 after 40 steps of a 6-worker ring).
# Run as root: the soak cuts workers' networks (network namespaces) and makes the checkpoint disk full or read-only (mounts).
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${STEPS:-200} FAULTS=${FAULTS:-12} TOLERANCE=${TOLERANCE:-5e-2} RUNS=${RUNS:-3}
SEEDS=${SEEDS:-$(for _ in $(seq "$RUNS"); do echo $((RANDOM * 32768 + RANDOM)); done)}
dotnet build tests -v q -nologo > /dev/null
passed=0 failed=0
for seed in $SEEDS; do
  echo "soak: seed $seed, $STEPS steps, $FAULTS faults"
  if CHAOS_SEED=$seed CHAOS_STEPS=$STEPS CHAOS_FAULTS=$FAULTS CHAOS_TOLERANCE=$TOLERANCE \
      dotnet test tests --no-build --filter "FullyQualifiedName~AChaosSoakOfOverlappingFaultsLosesNothing" \
      --logger "console;verbosity=detailed" 2>&1 | tee "/tmp/chaos-$seed.log" | grep -E "chaos seed|^ step [0-9]+: |faults injected|max relative|recoveries|after the fault|Error Message" ; then :; fi
  if grep -q "Test Run Successful" "/tmp/chaos-$seed.log"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "seed $seed FAILED: /tmp/chaos-$seed.log"; fi
done
echo "chaos soaks: $passed passed, $failed failed (replay one with SEEDS=<seed>)"
