#!/usr/bin/env bash
# scripts/deps.sh must find the toolkit behind a wrapper nvcc (CI's PATH had /usr/local/bin/nvcc,
# a script that execs the real one) and must name the directory it looked in when NCCL is missing.
# Usage: deps_test.sh <repo> <real nvcc>
set -uo pipefail
repo=$1 real_nvcc=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p "$work/bin" "$work/empty/include"
printf '#!/bin/sh\nexec %s "$@"\n' "$real_nvcc" > "$work/bin/nvcc"
chmod +x "$work/bin/nvcc"
real_include=$(cd "$(dirname "$(readlink -f "$real_nvcc")")/../include" && pwd -P)

out=$(PATH="$work/bin:/usr/sbin:/usr/bin:/sbin:/bin" bash "$repo/scripts/deps.sh" 2>&1) || fail "wrapper nvcc rejected: $out"
[[ $out == *"NCCL headers in $real_include"* ]] || fail "expected headers from $real_include, got: $out"

out=$(NCCL_ROOT="$work/empty" PATH="$work/bin:/usr/sbin:/usr/bin:/sbin:/bin" bash "$repo/scripts/deps.sh" 2>&1) \
  && fail "an NCCL_ROOT without headers was accepted: $out"
[[ $out == *"not found in $work/empty/include"* ]] || fail "message does not name NCCL_ROOT's include dir: $out"
echo "deps_test: ok"
