#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build epgraph (as root), or says
# exactly what to install (otherwise). The CUDA toolkit (nvcc >= 12.9 with NCCL 2.28.x
# headers, or NCCL_ROOT) does not come from Debian and is only checked.
set -euo pipefail

# nlohmann-json3-dev: epg-bench's JSON; python3-matplotlib: scripts/plot_bench.py (and its test).
packages=(cmake ninja-build g++ make libopenmpi-dev openmpi-bin libboost-program-options-dev libgtest-dev
          nlohmann-json3-dev python3-matplotlib)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "deps: missing Debian packages; run: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [ ! -x "$nvcc_bin" ]; then
  echo "deps: the CUDA toolkit (nvcc, CUDA >= 12.9) is missing: install NVIDIA's cuda-toolkit and put nvcc on PATH" >&2
  exit 1
fi
# nvcc may be a wrapper script (e.g. /usr/local/bin/nvcc execs the real one), so ask nvcc
# itself where its toolkit lives instead of guessing from its path.
cuda_root=$("$nvcc_bin" -v --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)
cuda_root=$(cd "${cuda_root:-$(dirname "$nvcc_bin")/..}" && pwd -P)
cuda_inc=$cuda_root/include
nccl_inc=${NCCL_ROOT:+$NCCL_ROOT/include}
nccl_inc=${nccl_inc:-$cuda_inc}
if [ ! -f "$nccl_inc/nccl_device.h" ]; then
  echo "deps: NCCL 2.28.x with the device API (nccl_device.h) not found in $nccl_inc;" \
       "install it and set NCCL_ROOT to its prefix (include/ and lib/ side by side)" >&2
  exit 1
fi
echo "deps: ok ($("$nvcc_bin" --version | tail -1), NCCL headers in $nccl_inc)"
