#!/usr/bin/env python3
"""Splits the gap between two tokens a warp pushes, from a build with
scripts/diag/claims-gap-trace.patch (records of 9 words: token, item known, push end, from,
loop top, slots loaded, and for claimed tokens next_claimed_token's entry, ticket shuffled and
last stamp before its return).

    claims_gap_summary.py DIR/trace_r0 [...]

Prints means over the last launch: for every pair of consecutive tokens of a warp, push end ->
loop top, loop top -> item known (the claim, or the fixed item), item -> slots loaded, slots ->
push end and the whole gap; for claimed tokens, loop top -> the function's entry, entry ->
ticket shuffled, ticket -> before return, before return -> item known.
"""
import statistics as st
import struct
import sys
from collections import defaultdict

WORDS, PER_WARP = 9, 256


def summarize(base):
    tok = open(base + '.tok', 'rb').read()
    recs = [struct.unpack_from(f'<{WORDS}Q', tok, i) for i in range(0, len(tok), 8 * WORDS)]
    seq = max(r[0] >> 32 for r in recs if r[1])
    per_warp = defaultdict(list)
    for i, r in enumerate(recs):
        if r[0] >> 32 == seq and r[1]:
            per_warp[i // PER_WARP].append(r)
    pairs = [(a, b) for v in per_warp.values() for a, b in zip(sorted(v, key=lambda r: r[1]), sorted(v, key=lambda r: r[1])[1:])]
    mean = lambda xs: st.mean(xs) if xs else float('nan')
    us = lambda a, b: (b - a) / 1e3
    print(f'{base}: {sum(len(v) for v in per_warp.values())} tokens; mean us: push end -> loop top '
          f'{mean([us(a[2], b[4]) for a, b in pairs]):.3f}, loop top -> item {mean([us(b[4], b[1]) for a, b in pairs]):.3f}, '
          f'item -> slots {mean([us(b[1], b[5]) for a, b in pairs]):.3f}, slots -> push end '
          f'{mean([us(r[5], r[2]) for v in per_warp.values() for r in v]):.3f}; gap {mean([us(a[2], b[1]) for a, b in pairs]):.3f}')
    claimed = [r for v in per_warp.values() for r in v if r[6] and r[4] <= r[6] <= r[1]]
    if claimed:
        f = lambda i, j: mean([us(r[i], r[j]) for r in claimed])
        print(f'  {len(claimed)} claimed tokens: loop top -> entry {f(4, 6):.3f}, entry -> ticket shuffled {f(6, 7):.3f}, '
              f'ticket -> before return {f(7, 8):.3f}, before return -> item {f(8, 1):.3f}')


for b in sys.argv[1:]:
    summarize(b)
