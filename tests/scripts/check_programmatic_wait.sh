#!/usr/bin/env bash
# Every kernel launched through launch_kernel() (modules/kernels/src/programmatic_launch.cuh)
# may be resident before the kernel ahead of it on the stream has ended, so it must execute
# griddepcontrol.wait before its first memory access. Checked in the PTX of the kernels'
# sources: in each .entry, no load, store or atomic outside the parameter, shared, local and
# constant spaces comes before the first griddepcontrol.wait, and the entry has one.
# Exempt: the kernels launched plainly (stage_failed_kernel, the CUB scan instantiated in
# expert_major.cu).
#
#   check_programmatic_wait.sh FILE.ptx...
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 FILE.ptx..." >&2; exit 2; }
status=0
for ptx in "$@"; do
  awk -v file="$(basename "$ptx")" '
    function finish() {
      if (name == "" || name ~ /stage_failed|cub|CUB/) return
      checked++
      if (!waited) { printf "%s: %s has no griddepcontrol.wait\n", file, name; bad++ }
      else if (early != "") { printf "%s: %s touches memory before griddepcontrol.wait: %s\n", file, name, early; bad++ }
    }
    /\.entry[ \t]+[A-Za-z0-9_$]+/ {
      finish()
      match($0, /\.entry[ \t]+[A-Za-z0-9_$]+/); name = substr($0, RSTART, RLENGTH); sub(/\.entry[ \t]+/, "", name)
      waited = 0; early = ""; next
    }
    /^[ \t]*\.(visible[ \t]+)?\.?func/ { finish(); name = ""; next }
    name != "" && /griddepcontrol\.wait/ { waited = 1; next }
    name != "" && !waited && early == "" {
      line = $0; sub(/^[ \t]*(@!?%p[0-9]+[ \t]+)?/, "", line)
      if (line ~ /^(ld|st|atom|red|cp\.async|prefetch|multimem)\./ && line !~ /^[a-z.]*\.(param|shared|local|const)[.: \t]/) {
        early = line
      }
    }
    END {
      finish()
      if (checked == 0) { printf "%s: no kernel entry checked\n", file; bad++ }
      printf "%s: %d kernel entries wait before touching memory%s\n", file, checked - bad, bad ? ", " bad " do not" : ""
      exit bad ? 1 : 0
    }' "$ptx" || status=1
done
exit $status
