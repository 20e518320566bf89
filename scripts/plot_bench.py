#!/usr/bin/env python3
"""Plots epg-bench CSV files: time and wire bandwidth against tokens per rank,
epgraph against the NCCL send/recv and raw LSA all-to-all baselines.

usage: plot_bench.py OUT.png RESULTS.csv [RESULTS.csv ...]
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    out, paths = sys.argv[1], sys.argv[2:]
    rows = [r for p in paths for r in csv.DictReader(open(p))]
    # One column per configuration apart from the token count (EP, payload and the swept shape).
    def group_of(r):
        return (int(r["ep"]), r["payload"], int(r["hidden"]), int(r["top_k"]), int(r["experts"]), r["routing"])

    groups = sorted({group_of(r) for r in rows})
    fig, axes = plt.subplots(2, len(groups), figsize=(5 * len(groups), 8), squeeze=False)
    for col, key in enumerate(groups):
        ep, payload, hidden, top_k, experts, routing = key
        g = sorted((r for r in rows if group_of(r) == key), key=lambda r: int(r["tokens"]))
        t = [int(r["tokens"]) for r in g]
        ax = axes[0][col]
        for key, label, style in [("dispatch_us", "epgraph dispatch", "o-"), ("combine_us", "epgraph combine", "s-"),
                                  ("nccl_dispatch_us", "NCCL send/recv (dispatch bytes)", "o--"),
                                  ("nccl_combine_us", "NCCL send/recv (combine bytes)", "s--"),
                                  ("lsa_dispatch_us", "raw LSA all-to-all (dispatch bytes)", "o:")]:
            ax.plot(t, [float(r[key]) for r in g], style, label=label)
        ax.set(xscale="log", yscale="log", xlabel="tokens per rank", ylabel="median time (us)",
               title=f"EP={ep}, {payload}, H={hidden}, top-{top_k}/{experts}, {routing}\n{g[0]['gpu']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        ax = axes[1][col]
        ax.plot(t, [float(r["wire_dispatch_GBps"]) for r in g], "o-", label="dispatch wire GB/s")
        ax.plot(t, [float(r["wire_combine_GBps"]) for r in g], "s-", label="combine wire GB/s")
        ax.axhline(450, color="gray", ls="--", label="NVLink4 line rate")
        ax.set(xscale="log", xlabel="tokens per rank", ylabel="GB/s per GPU (remote bytes)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main()
