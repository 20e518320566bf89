#!/usr/bin/env bash
# Fault injection: rank 1 stops replaying at step 2. Rank 0 must not hang silently: its
# watchdog names the step and the rank that is behind, then aborts the job.
#   watchdog_test.sh <epg-demo> [mpirun]
set -u
demo=${1:?path to epg-demo}; mpirun=${2:-mpirun}
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
if [ "${gpus:-0}" -lt 2 ]; then echo "SKIPPED: needs 2 GPUs, found ${gpus:-0}"; exit 77; fi
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(timeout -k 10 180 "$mpirun" -np 2 --bind-to none "$demo" --steps 5 --tokens 32 --hidden 512 \
        --variant zero-copy --watchdog 5 --host-check-every 100 --inject-stall 1:2 2>&1)
rc=$?
echo "$out" | grep -v "^\s*$" | tail -15
fail() { echo "FAILED: $*"; exit 1; }
[ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "the job hung: the watchdog did not fire"
[ $rc -ne 0 ] || fail "the job succeeded although a rank stalled"
echo "$out" | grep -q "epgraph watchdog: rank 0 did not finish step 2 within 5 s" || fail "no watchdog diagnostic on rank 0"
echo "$out" | grep -q "rank 0=3 rank 1=2 (behind)" || fail "the diagnostic does not name rank 1 as behind"
echo "PASSED: watchdog named the stalled rank and aborted (exit $rc)"
