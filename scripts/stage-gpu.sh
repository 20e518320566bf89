#!/usr/bin/env bash
# Builds with the CI configuration and stages the executables the GPU machine runs into
# .gpu/bin (ignored by git; carried to the device machine).
#
#   scripts/stage-gpu.sh [--pack] [NAME=BUILD_DIR ...]
#
# NAME=BUILD_DIR also stages the executables of another build folder (a baseline or a variant
# for gpu-check's compare stage) into .gpu/NAME. --pack puts everything staged into one
# .gpu/bins.tar.xz and removes the folders: the device tool carries at most 64 MiB, which a few
# builds' test binaries pass; the command on the device machine then starts with
# `(cd .gpu && tar xJf bins.tar.xz)`.
set -euo pipefail
cd "$(dirname "$0")/.."
pack=0 builds=("bin=build")
for arg in "$@"; do
  case $arg in
    --pack) pack=1 ;;
    ?*=?*) builds+=("$arg") ;;
    *) echo "stage-gpu.sh: '$arg' is neither --pack nor NAME=BUILD_DIR" >&2; exit 2 ;;
  esac
done
for entry in "${builds[@]:1}"; do  # checked before the build
  name=${entry%%=*} dir=${entry#*=}
  [[ $name =~ ^[A-Za-z0-9_.-]+$ && $name != bin ]] ||
    { echo "stage-gpu.sh: '$name' is not a plain folder name other than bin" >&2; exit 2; }
  [ -d "$dir" ] || { echo "stage-gpu.sh: $dir is not a build folder" >&2; exit 2; }
done
make build >/dev/null
mkdir -p .gpu
rm -f .gpu/bins.tar.xz  # an older pack, unpacked on the device, would overwrite what is staged now
names=()
for entry in "${builds[@]}"; do
  name=${entry%%=*} dir=${entry#*=}
  rm -rf ".gpu/$name" && mkdir -p ".gpu/$name"  # other folders under .gpu stay
  for exe in tests/epgraph_gpu_tests tests/epgraph_mpi_tests tests/epgraph_probe_first_contact \
             tests/epgraph_probe_link_rates apps/epg-demo/epg-demo apps/epg-bench/epg-bench; do
    [ -f "$dir/$exe" ] && cp "$dir/$exe" ".gpu/$name/"
  done
  [ -n "$(ls ".gpu/$name")" ] || { echo "stage-gpu.sh: no executables in $dir" >&2; exit 2; }
  strip --strip-debug ".gpu/$name"/* 2>/dev/null || true
  names+=("$name")
done
du -sh "${names[@]/#/.gpu/}"
if [ "$pack" = 1 ]; then
  tar -C .gpu -cf - "${names[@]}" | xz -T0 -6 > .gpu/bins.tar.xz
  (cd .gpu && rm -rf "${names[@]}")
  echo "packed $(du -h .gpu/bins.tar.xz | cut -f1) into .gpu/bins.tar.xz;" \
       "on the device: (cd .gpu && tar xJf bins.tar.xz)"
fi
