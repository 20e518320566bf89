#!/usr/bin/env python3
"""Reads a build with stamps.patch, push-stamps.patch and push-gap-stamps.patch.

    push_gap_summary.py DIR

DIR holds one run's stamps_dispatch_r0.bin, stamps_push_r0.bin and sm_of_r0.bin. Prints, for
the first CTAs that pushed a slice 0 of a row over 1 KB in the last launch, the way from its
slots to its first stores (us from the first CTA's start): the push loop's start, the item
known, the slots loaded, the copy loop entered (push-stamps words 4 to 6), the slice entered,
the first loads back, the stores to the first two destinations issued, the slice done; then
the SM that CTA 0 ran on in the last 12 launches and how the launches' SM sets overlap.
"""
import struct
import sys

from stamps_summary import last_launch, push_rows


def main(d):
    seq, ctas, t0 = last_launch(d + '/stamps_dispatch_r0.bin')
    push = push_rows(d + '/stamps_push_r0.bin')

    def us(x):
        return round((x - t0) / 1000, 2) if x and x > t0 else None

    shown = 0
    for b, p in enumerate(push):
        if b not in ctas or not (p[0] and p[0] > t0) or shown == 4:
            continue
        r = ctas[b]
        shown += 1
        print(f"CTA {b}: slots {us(r[6])} push start {us(r[7])} | item known {us(p[4])} slots loaded {us(p[5])} "
              f"copy loop {us(p[6])} slice entry {us(p[0])} loads back {us(p[1])} dest 1 {us(p[2])} "
              f"dest 2 {us(p[3])} done {us(p[7])} | push end {us(r[8])} after arrive {us(r[10])} end {us(r[14])}")
    sms = struct.unpack_from('<2048I', open(d + '/sm_of_r0.bin', 'rb').read())
    hist = [sms[i * 64:(i + 1) * 64] for i in range(32)]
    print('launch', seq, '- CTA 0 ran on SM', [hist[(seq - k) % 32][0] for k in range(12)], 'in the last 12 launches')
    sets = [set(hist[(seq - k) % 32]) for k in range(4)]
    print('SMs shared by consecutive launches (of 64):', [len(sets[k] & sets[k + 1]) for k in range(3)])


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
