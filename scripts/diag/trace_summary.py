#!/usr/bin/env python3
"""Summarizes dispatch push traces written by a build with scripts/diag/dispatch-trace.patch.

    trace_summary.py DIR/trace_r0 [DIR2/trace_r0 ...]

For the last launch in each trace: when the CTAs start and end their push, how long a warp
pushes one token, the gap between a warp's tokens (the work item or claim in between), tokens
per warp, and how many tokens CTAs pushed from other CTAs' chunks (claims).
"""
import statistics as st
import struct
import sys
from collections import defaultdict

PER_WARP, WARPS = 256, 32  # kTracePerWarp and the warps per CTA slot of the patch


def load(base):
    tok = open(base + '.tok', 'rb').read()
    war = open(base + '.warp', 'rb').read()
    tokens = [struct.unpack_from('<4Q', tok, i) for i in range(0, len(tok), 32)]
    warps = [struct.unpack_from('<6Q', war, i) for i in range(0, len(war), 48)]
    return tokens, warps


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def summarize(base):
    tokens, warps = load(base)
    seq = max(w[0] for w in warps)
    ws = [(i, w) for i, w in enumerate(warps) if w[0] == seq]
    grid, claimed = (ws[0][1][5] >> 40) & 0xFFFF, (ws[0][1][5] >> 32) & 0xFF
    t00 = min(w[1] for _, w in ws)
    per_warp = defaultdict(list)
    for i, r in enumerate(tokens):
        if r[0] >> 32 == seq and r[1]:
            per_warp[i // PER_WARP].append(r)
    push = [(r[2] - r[1]) / 1e3 for v in per_warp.values() for r in v]
    gaps = []
    for v in per_warp.values():
        v = sorted(v, key=lambda r: r[1])
        gaps += [(b[1] - a[2]) / 1e3 for a, b in zip(v, v[1:])]
    foreign = sum(1 for k, v in per_warp.items() for r in v if (r[3] & 0xFFFF) not in (0, k // WARPS + 1))
    ends = defaultdict(int)
    for i, w in ws:
        ends[i // WARPS] = max(ends[i // WARPS], w[3])
    ends = sorted((e - t00) / 1e3 for e in ends.values())
    done = (max(w[4] for _, w in ws) - t00) / 1e3
    counts = [len(v) for v in per_warp.values()]
    print(f'{base}: launch {seq}, {grid} CTAs, claimed {claimed}, {sum(counts)} tokens, {foreign} from other CTAs')
    print(f'  push ends per CTA (us from kernel start) min {ends[0]:.2f} median {st.median(ends):.2f} max {ends[-1]:.2f};'
          f' kernel done {done:.2f}')
    print(f'  token push us: mean {st.mean(push):.3f} median {st.median(push):.3f} p90 {pct(push, .9):.3f};'
          f' gap between a warp\'s tokens: mean {st.mean(gaps) if gaps else 0:.3f} p90 {pct(gaps, .9) if gaps else 0:.3f};'
          f' tokens per warp {min(counts)}..{max(counts)}')


if __name__ == '__main__':
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for base in sys.argv[1:]:
        summarize(base)
