#!/usr/bin/env bash
# Runs a test command. When it exits 77 (ctest's skip code here), its "SKIPPED: reason" lines
# become ctest labels, <CTestLabel>skipped: reason</CTestLabel>, so the reason shows in ctest's
# Label Time Summary, not only with ctest -V. The exit code is passed on unchanged.
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 77 ]; then
  grep -o 'SKIPPED:.*' "$out" | tr -d '<>' | sort -u | head -n 3 |
    sed -e 's/^SKIPPED: */<CTestLabel>skipped: /' -e 's|$|</CTestLabel>|'
fi
exit "$rc"
