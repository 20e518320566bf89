#!/usr/bin/env bash
# scripts/deps.sh must find the toolkit behind a wrapper nvcc (CI's PATH had /usr/local/bin/nvcc,
# a script that execs the real one) and must name the directory it looked in when NCCL is missing.
# Usage: deps_test.sh <repo> <nvcc> <NCCL include dir that CMake found>
set -uo pipefail
repo=$1 nvcc=$2 cmake_nccl_include=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p "$work/bin" "$work/empty/include"
printf '#!/bin/sh\nexec %s "$@"\n' "$nvcc" > "$work/bin/nvcc"
chmod +x "$work/bin/nvcc"
expected=$(readlink -f "$cmake_nccl_include")

out=$(PATH="$work/bin:/usr/sbin:/usr/bin:/sbin:/bin" bash "$repo/scripts/deps.sh" 2>&1) || fail "wrapper nvcc rejected: $out"
found=$(sed -n 's/.*NCCL headers in \(.*\))$/\1/p' <<<"$out")
[[ -n $found && $(readlink -f "$found") == "$expected" ]] ||
  fail "deps.sh and CMake disagree on the NCCL headers: CMake $expected, deps.sh: $out"

out=$(NCCL_ROOT="$work/empty" PATH="$work/bin:/usr/sbin:/usr/bin:/sbin:/bin" bash "$repo/scripts/deps.sh" 2>&1) \
  && fail "an NCCL_ROOT without headers was accepted: $out"
[[ $out == *"not found in $work/empty/include"* ]] || fail "message does not name NCCL_ROOT's include dir: $out"
echo "deps_test: ok"
