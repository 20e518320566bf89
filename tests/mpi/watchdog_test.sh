#!/usr/bin/env bash
# Fault injection: rank 1 stops replaying at step 2. Rank 0 must not hang silently, both ways:
#  1. host watchdog (5 s, device deadline longer): it names the step and the rank that is
#     behind, then aborts the job;
#  2. device deadline (3 s, watchdog off): rank 0's kernels end with a fault naming rank 1,
#     check_faults reports it on rank 0, and the job ends with that error.
#   watchdog_test.sh <epg-demo> [mpirun]
set -u
demo=${1:?path to epg-demo}; mpirun=${2:-mpirun}
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
if [ "${gpus:-0}" -lt 2 ]; then echo "SKIPPED: needs 2 GPUs, found ${gpus:-0}"; exit 77; fi
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fail() { echo "FAILED: $*"; exit 1; }
run() {  # options...
  out=$(timeout -k 10 120 "$mpirun" -np 2 --bind-to none "$demo" --steps 5 --tokens 32 --hidden 512 \
          --variant zero-copy --inject-stall 1:2 "$@" 2>&1)
  rc=$?
  echo "$out" | grep -v "^\s*$" | tail -12
  [ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "the job hung ($*)"
  [ $rc -ne 0 ] || fail "the job succeeded although a rank stalled ($*)"
}

run --watchdog 5 --host-check-every 100
echo "$out" | grep -q "epgraph watchdog: rank 0 did not finish step 2 within 5 s" || fail "no watchdog diagnostic on rank 0"
echo "$out" | grep -q "rank 0 #5 (dispatch), rank 1 #4 (combine) (behind)" || fail "the diagnostic does not name rank 1 as behind"
echo "PASSED watchdog: named the stalled rank and aborted (exit $rc)"

start=$SECONDS
run --watchdog 0 --deadline 3 --host-check-every 1
echo "$out" | grep -q "epg-demo: rank 0: .*rank 1 did not reach collective #5 (dispatch)" ||
  fail "rank 0's error does not name rank 1 and the collective it missed"
echo "$out" | grep -q "rank 1 did not reach 'check_faults' within 7 s" || fail "the agreement's deadline (twice the device deadline + 1 s) is not reported"
echo "PASSED deadline: rank 0's kernels ended at the deadline, the error names rank 1 (exit $rc, $((SECONDS - start)) s)"
