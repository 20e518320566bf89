#!/usr/bin/env bash
# Builds with the CI configuration and stages the executables the GPU machine runs into
# .gpu/bin (ignored by git; carried to the device machine), plus the bench plot script.
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
rm -rf .gpu/bin && mkdir -p .gpu/bin  # other folders under .gpu (a baseline build for compare) stay
for exe in tests/epgraph_gpu_tests tests/epgraph_mpi_tests tests/epgraph_probe_first_contact tests/epgraph_probe_link_rates apps/epg-demo/epg-demo \
           apps/epg-bench/epg-bench; do
  [ -f "build/$exe" ] && cp "build/$exe" .gpu/bin/
done
strip --strip-debug .gpu/bin/* 2>/dev/null || true
du -sh .gpu/bin
