#!/usr/bin/env bash
# Failure modes a user can hit on a GPU machine, each must end with a clear message:
#  1. the loaded libnccl is not the one whose headers were compiled in (device-API ABI),
#  2. more ranks than GPUs on a node,
#  3. bad options: named as such before any GPU work, also when the ranks do not fit the GPUs
#     (the option check comes first), and once per job, not once per rank.
#   failure_modes_test.sh <bin-dir> [other-libnccl-dir] [mpirun]
set -u
bin=${1:?bin dir}; other=${2:-/usr/lib/x86_64-linux-gnu}; mpirun=${3:-mpirun}
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
if [ "${gpus:-0}" -lt 1 ]; then echo "SKIPPED: needs a GPU"; exit 77; fi
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
status=0
if [ -f "$other/libnccl.so.2" ]; then
  out=$(LD_LIBRARY_PATH="$other" timeout 120 "$bin/epgraph_gpu_tests" --gtest_filter='SingleRank.StepGraph*' 2>&1)
  if echo "$out" | grep -q "loaded libnccl is version .* but epgraph was compiled against"; then
    echo "PASSED version mismatch: $(echo "$out" | grep -o 'loaded libnccl is version [0-9]* but epgraph was compiled against [0-9]*' | head -1)"
  elif echo "$out" | grep -q "PASSED"; then
    echo "SKIPPED version mismatch: $other/libnccl.so.2 is the compiled version"
  else
    echo "FAILED version mismatch: no clear message"; echo "$out" | tail -5; status=1
  fi
fi
np=$((gpus + 1))
# --experts must split over np ranks (options are checked before the GPUs): 8 per rank.
out=$(timeout 120 "$mpirun" -np $np --oversubscribe --bind-to none "$bin/epg-demo" --steps 1 --tokens 8 --hidden 256 \
        --experts $((8 * np)) 2>&1)
rc=$?
if [ $rc = 2 ] && echo "$out" | grep -q "needs one NVIDIA GPU .* per rank"; then
  echo "PASSED more ranks than GPUs: $(echo "$out" | grep -o 'epg-demo needs.*visible' | head -1)"
else
  echo "FAILED more ranks than GPUs (exit $rc)"; echo "$out" | tail -5; status=1
fi
# A bad option must exit 1 with one line (not one per rank) that names it, and no GPU message.
bad_option() {  # ranks expected-text options...
  local ranks=$1 want=$2; shift 2
  out=$(timeout 120 "$mpirun" -np "$ranks" --oversubscribe --bind-to none "$bin/epg-demo" --steps 1 "$@" 2>&1)
  rc=$?
  lines=$(echo "$out" | grep -c "^epg-demo: epgraph: config error in ")
  if [ $rc = 1 ] && [ "$lines" = 1 ] && echo "$out" | grep -qF "$want" && ! echo "$out" | grep -q "needs one NVIDIA GPU"; then
    echo "PASSED bad option ($*, $ranks ranks): $(echo "$out" | grep -m1 "config error in " | sed 's/^epg-demo: epgraph: //; s/ \[[^]]*\]$//')"
  else
    echo "FAILED bad option ($*, $ranks ranks; exit $rc, $lines error lines)"; echo "$out" | tail -5; status=1
  fi
}
bad_option "$gpus" "config error in --top-k: is 40, allowed range [1, 32]" --top-k 40
bad_option "$gpus" "stray argument 'staged' that belongs to no option" --variant zero-copy staged
bad_option $np "config error in --experts: is $((2 * np + 1)), not divisible by ep_size $np" --experts $((2 * np + 1))
exit $status
