#!/usr/bin/env python3
"""Summarizes the kernel timelines written by a build with scripts/diag/stamps.patch.

    stamps_summary.py DIR/stamps_dispatch_r0.bin [DIR/stamps_combine_r0.bin DIR/stamps_push_r0.bin ...]

Each file holds, for the last launch of that kernel, thread 0's %globaltimer at fixed points
of every CTA (64 CTAs x 16 words; word 15 is the launch number). Prints, per point, the
earliest, median and latest CTA in microseconds from the first CTA's start. Points a CTA did
not reach in that launch (older stamps) are left out.
"""
import statistics as st
import struct
import sys

NAMES = {0: 'start', 1: 'T known', 2: 'mask known', 3: 'claimed', 4: 'counted', 5: 'look-back', 6: 'slots',
         7: 'push/pull start', 8: 'push/pull end (warp 0)', 9: 'before arrive', 10: 'after arrive',
         11: 'peer polled', 12: 'syncthreads_and', 13: 'NCCL wait done', 14: 'end'}


def last_launch(path):
    """A stamps_{dispatch,combine} file's last launch: its number, the stamp rows of the CTAs
    that ran in it (by CTA index) and the first CTA's start."""
    data = open(path, 'rb').read()
    rows = [struct.unpack_from('<16Q', data, i * 128) for i in range(len(data) // 128)]
    seq = max(r[15] for r in rows)
    ctas = {i: r for i, r in enumerate(rows) if r[15] == seq and r[0]}
    return seq, ctas, min(r[0] for r in ctas.values())


def print_point(i, name, v):
    if v:
        print(f'  {i:2d} {name:24s} min {min(v):6.2f}  median {st.median(v):6.2f}  max {max(v):6.2f}  ({len(v)} CTAs)')


def summarize(path):
    seq, ctas, t00 = last_launch(path)
    print(f'{path}: launch {seq}, {len(ctas)} CTAs')
    names = dict(NAMES)
    if 'combine' in path:  # combine stamps 1 after arrive_and_claim (10: after NCCL's arrive inside it)
        names[1] = 'arrived and claimed'
    for i, name in names.items():
        print_point(i, name, [(r[i] - t00) / 1e3 for r in ctas.values() if t00 <= r[i] < t00 + 10**9])


PUSH_NAMES = {0: 'slice 0 entry', 1: 'first loads back', 2: 'stores to dest 1', 3: 'stores to dest 2',
              4: 'stores to dest 3', 5: 'stores to dest 4', 6: 'stores to dest 5', 7: 'slice done'}


def push_rows(path):
    """A stamps_push file's rows: 8 words per CTA, by CTA index."""
    push = open(path, 'rb').read()
    return [struct.unpack_from('<8Q', push, i * 64) for i in range(len(push) // 64)]


def summarize_push(path):
    """stamps_push_r<rank>.bin (scripts/diag/push-stamps.patch): thread 0's stamps inside its last
    push of a hidden-row slice 0, 64 CTAs x 8 words, read against the same rank's
    stamps_dispatch file (its last launch's start and end per CTA bound which stamps count)."""
    seq, ctas, t00 = last_launch(path.replace('stamps_push_', 'stamps_dispatch_'))
    prow = push_rows(path)
    inside = lambda i, t: i in ctas and ctas[i][0] <= t <= ctas[i][14]  # within CTA i's last launch
    pushed = [(i, r) for i, r in enumerate(prow) if inside(i, r[0])]
    print(f'{path}: launch {seq}, CTAs with a slice 0 in it: {len(pushed)}')
    for k, name in PUSH_NAMES.items():
        print_point(k, name, [(r[k] - t00) / 1e3 for i, r in pushed if inside(i, r[k])])


if __name__ == '__main__':
    for p in sys.argv[1:]:
        summarize_push(p) if 'stamps_push_' in p else summarize(p)
