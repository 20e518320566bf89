#!/usr/bin/env bash
# Runs epg-demo on every local GPU under mpirun; without GPUs, says what it needs.
set -uo pipefail
build=${1:-build}; shift || true
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
if [ "${gpus:-0}" -lt 1 ]; then
  echo "epg-demo needs NVIDIA Hopper GPUs (sm_90, e.g. H100/H200) in one NVLink domain, one MPI rank per GPU;" >&2
  echo "no GPU is visible on this machine (nvidia-smi found none). Run 'make demo' on a GPU machine." >&2
  exit 2
fi
export NCCL_NVLS_ENABLE=0
exec mpirun -np "$gpus" --bind-to none "$build/apps/epg-demo/epg-demo" "$@"
