#!/usr/bin/env python3
"""Splits the gap between two tokens a warp pushes, from a build with
scripts/diag/claims-gap-trace.patch (records of 6 words: token, item known, push end, from,
loop top, slots loaded).

    claims_gap_summary.py DIR/trace_r0 [...]

Prints, as means over every pair of consecutive tokens of a warp in the last launch: push end ->
loop top, loop top -> item known (the claim, or the fixed item), item -> slots loaded, slots ->
push end, and the whole gap (push end -> next item known).
"""
import struct, sys, statistics as st
from collections import defaultdict
for base in sys.argv[1:]:
    tok = open(base + '.tok', 'rb').read()
    recs = [struct.unpack_from('<6Q', tok, i) for i in range(0, len(tok), 48)]
    seq = max(r[0] >> 32 for r in recs if r[1])
    per_warp = defaultdict(list)
    for i, r in enumerate(recs):
        if r[0] >> 32 == seq and r[1]: per_warp[i // 256].append(r)
    back, claim, slot, push, gap = [], [], [], [], []
    for v in per_warp.values():
        v = sorted(v, key=lambda r: r[1])
        for a, b in zip(v, v[1:]):
            back.append((b[4] - a[2]) / 1e3); claim.append((b[1] - b[4]) / 1e3); slot.append((b[5] - b[1]) / 1e3)
            gap.append((b[1] - a[2]) / 1e3)
        push += [(r[2] - r[5]) / 1e3 for r in v]
    m = lambda x: f'{st.mean(x):.3f}'
    print(f'{base}: tokens {sum(len(v) for v in per_warp.values())}; mean us: t1->loop top {m(back)}, loop top->item {m(claim)}, item->slots {m(slot)}, slots->push end {m(push)}; gap (t1->t0) {m(gap)}')
