#!/usr/bin/env python3
"""Plots epg-bench CSV files: one column of panels per configuration (EP size, payload, shape,
CTAs), against tokens per rank:
  1. dispatch time: epgraph, NCCL send/recv and the raw LSA copy of the same bytes, median
     with a p10-p90 band;
  2. combine time, the same, and the raw LSA pull of its bytes where the CSV has it;
  3. epgraph time / baseline time per op (below 1: epgraph is faster);
  4. wire GB/s (remote bytes / median time) of epgraph and the baselines, both ops.

CSV files written before the baseline p10/p90 and bandwidth columns existed still plot: the
baselines' bandwidth is derived from epgraph's (same bytes), and their bands are left out.
"""
import argparse
import csv
import os
import sys
from collections import defaultdict

NVLINK4_GBPS = 450  # per direction, per GPU

GROUP_KEYS = ["ep", "payload", "hidden", "top_k", "experts", "routing"]
REQUIRED = GROUP_KEYS + ["gpu", "tokens", "dispatch_us", "combine_us", "nccl_dispatch_us", "nccl_combine_us",
                         "lsa_dispatch_us", "lsa_combine_us", "wire_dispatch_GBps", "wire_combine_GBps"]
# (column prefix, label, line style); the column is <prefix>_us, with _p10_us and _p90_us.
SERIES = [("", "epgraph", "-"), ("nccl_", "NCCL send/recv", "--"), ("lsa_", "raw LSA copy", ":")]
OPS = [("dispatch", "o", "tab:blue"), ("combine", "s", "tab:orange")]
# Baselines only newer CSVs have (0 or absent: not timed), drawn for an op in every panel where
# every row of a group has them: (column prefix, label, line style, colour).
LATER_SERIES = {"combine": [("lsa_pull_", "raw LSA pull", (0, (5, 1, 1, 1, 1, 1)), "tab:pink")]}
TEXT_COLUMNS = {"gpu", "payload", "routing", "nccl_version", "checked"}
# Optional columns drawn beside an op when every row of a group has them (0 = not timed).
EXTRA_SERIES = {"dispatch": [("quantized_dispatch", "epgraph quantizing dispatch (bf16 in)"),
                             ("quantize_then_dispatch", "quantize_rows_op + fp8 dispatch")],
                "combine": [("fp8_combine", "epgraph FP8 combine")]}


def is_plotted(key):
    """Whether the plot reads this column as a number."""
    return key in REQUIRED or key in ("ctas", "domain_size") or key.endswith(("_us", "_GBps"))


class InputError(Exception):
    pass


def read_rows(path):
    """The rows of one CSV, with numbers parsed; raises InputError naming what is wrong."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: not an epg-bench CSV: no column(s) {', '.join(missing)}")
            rows = list(reader)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from e
    except (csv.Error, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV: {e}") from e
    if not rows:
        raise InputError(f"{path}: has a header but no rows (did the sweep stop before its first row?)")
    for line, row in enumerate(rows, start=2):
        empty = [c for c in REQUIRED if row.get(c) in (None, "")]
        if empty:
            raise InputError(f"{path}:{line}: no value for {', '.join(empty)} (a cut or hand-edited line?)")
        for key, value in row.items():
            if key in TEXT_COLUMNS or key is None or value is None:
                continue
            try:
                row[key] = float(value)
            except ValueError:
                if is_plotted(key):  # other columns may hold text this script does not read
                    raise InputError(f"{path}:{line}: column {key} is '{value}', not a number") from None
        row["source"] = os.path.basename(path)
        fill_old_columns(row)
    return rows


def ratio(a, b):
    return a / b if b else float("nan")


def fill_old_columns(row):
    """Older CSVs lack the baselines' bandwidth: the baselines move epgraph's bytes, so it is
    epgraph's wire GB/s scaled by the time ratio."""
    for op, _, _ in OPS:
        for prefix, _, _ in SERIES[1:]:
            key = f"wire_{prefix}{op}_GBps"
            if key not in row:
                row[key] = row[f"wire_{op}_GBps"] * ratio(row[f"{op}_us"], row[f"{prefix}{op}_us"])


def group_rows(rows):
    """Columns of the figure: one per configuration apart from the token count. Files that
    measured the same configuration (A/B runs) get a column each."""
    def key(row, by_file):
        k = tuple(row[c] for c in GROUP_KEYS) + (row.get("domain_size", ""), row.get("ctas", ""))
        return k + ((row["source"],) if by_file else ())

    seen = set()
    by_file = False
    for row in rows:
        point = key(row, False) + (row["tokens"],)
        by_file |= point in seen
        seen.add(point)
    groups = defaultdict(list)
    for row in rows:
        groups[key(row, by_file)].append(row)
    repeated = sorted({g[0]["source"] for g in groups.values() if len({r["tokens"] for r in g}) < len(g)})
    for source in repeated:
        print(f"plot_bench.py: note: {source} has several rows of one configuration and token count "
              "(A/B rounds?); each is drawn, so its lines zigzag", file=sys.stderr)
    def order(k):  # numbers by value (EP 2 before 16), text after them
        return tuple((0, v, "") if isinstance(v, float) else (1, 0, str(v)) for v in k)

    return [sorted(groups[k], key=lambda r: r["tokens"]) for k in sorted(groups, key=order)]


def title_of(g):
    r = g[0]
    ctas = f", {int(r['ctas'])} CTAs" if "ctas" in r else ""
    nccl = f", NCCL {r['nccl_version']}" if r.get("nccl_version") else ""
    domains = f" in domains of {int(r['domain_size'])}" if r.get("domain_size", r["ep"]) != r["ep"] else ""
    return (f"EP={int(r['ep'])}{domains}, {r['payload']}, H={int(r['hidden'])}, top-{int(r['top_k'])}/"
            f"{int(r['experts'])}, {r['routing']}{ctas}\n{r['gpu']}{nccl} ({r['source']})")


def later_series(g, op):
    """The LATER_SERIES of this op that every row of the group has."""
    return [s for s in LATER_SERIES.get(op, []) if all(r.get(f"{s[0]}{op}_us", 0) > 0 for r in g)]


def plot_group(axes, g, plt_colors):
    t = [r["tokens"] for r in g]
    for row_index, (op, marker, _) in enumerate(OPS):
        ax = axes[row_index]
        later = [(prefix, label, style) for prefix, label, style, _ in later_series(g, op)]
        for (prefix, label, style), color in zip(SERIES + later, plt_colors + [c for *_, c in later_series(g, op)]):
            col = f"{prefix}{op}"
            ax.plot(t, [r[f"{col}_us"] for r in g], linestyle=style, marker=marker, color=color, label=f"{label} {op}")
            if all(f"{col}_p10_us" in r and f"{col}_p90_us" in r for r in g):
                ax.fill_between(t, [r[f"{col}_p10_us"] for r in g], [r[f"{col}_p90_us"] for r in g], color=color,
                                alpha=0.2, linewidth=0)
        # FP8 variants a row may carry (issue 15), drawn where every row has them.
        for col, label in EXTRA_SERIES[op]:
            if all(r.get(f"{col}_us", 0) > 0 for r in g):
                ax.plot(t, [r[f"{col}_us"] for r in g], "-.", marker=marker, color="tab:brown" if "quantize_then" in col
                        else "tab:olive", label=label)
        ax.set(xscale="log", yscale="log", xlabel="tokens per rank", ylabel=f"{op}: us per op (p10-p90 band)")
    ax = axes[2]
    for op, marker, color in OPS:
        for prefix, label, style in SERIES[1:] + [s[:3] for s in later_series(g, op)]:
            ax.plot(t, [ratio(r[f"{op}_us"], r[f"{prefix}{op}_us"]) for r in g], linestyle=style, marker=marker, color=color,
                    label=f"{op}: epgraph / {label}")
    ax.axhline(1, color="gray", lw=1)
    ax.set(xscale="log", xlabel="tokens per rank", ylabel="time ratio (below 1: epgraph faster)")
    ax = axes[3]
    for op, marker, color in OPS:
        for prefix, label, style in SERIES + [s[:3] for s in later_series(g, op)]:
            ax.plot(t, [r[f"wire_{prefix}{op}_GBps"] for r in g], linestyle=style, marker=marker, color=color,
                    label=f"{label} {op}")
    ax.axhline(NVLINK4_GBPS, color="gray", ls="--", label="NVLink4 line rate")
    ax.set(xscale="log", xlabel="tokens per rank", ylabel="wire GB/s per GPU (remote bytes / median)")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)


DEBIAN_PYTHON = "/usr/bin/python3"


def import_pyplot(argv):
    """matplotlib.pyplot; scripts/deps.sh installs Debian's python3-matplotlib, which only
    Debian's Python sees, so another python3 first on PATH (pyenv, a venv) hands over to it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        pass
    if os.path.realpath(sys.executable) != os.path.realpath(DEBIAN_PYTHON) and os.access(DEBIAN_PYTHON, os.X_OK) \
            and not os.environ.get("PLOT_BENCH_REEXEC"):
        os.environ["PLOT_BENCH_REEXEC"] = "1"
        os.execv(DEBIAN_PYTHON, [DEBIAN_PYTHON, os.path.abspath(__file__)] + list(sys.argv[1:] if argv is None else argv))
    sys.exit(f"plot_bench.py: needs matplotlib, which {sys.executable} cannot import: apt-get install "
             "python3-matplotlib (scripts/deps.sh does it as root), or pip install matplotlib in this Python")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: plot_bench.py results/run.png results/run.csv  (epg-bench --out results/run)")
    parser.add_argument("out", metavar="OUT.png", help="image to write (its folder must exist)")
    parser.add_argument("csvs", metavar="RESULTS.csv", nargs="+", help="epg-bench CSV files (--out <prefix>.csv)")
    args = parser.parse_args(argv)
    try:
        rows = [row for path in args.csvs for row in read_rows(path)]
    except InputError as e:
        parser.error(str(e))
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        parser.error(f"the folder of {args.out} does not exist: create it or write elsewhere")
    plt = import_pyplot(argv)

    groups = group_rows(rows)
    fig, axes = plt.subplots(4, len(groups), figsize=(6 * len(groups), 17), squeeze=False)
    colors = ["tab:green", "tab:red", "tab:purple"]  # epgraph, NCCL, LSA
    for col, g in enumerate(groups):
        column = [axes[r][col] for r in range(4)]
        plot_group(column, g, colors)
        column[0].set_title(title_of(g), fontsize=9)
    fig.tight_layout()
    try:
        fig.savefig(args.out, dpi=100)
    except (OSError, ValueError) as e:
        sys.exit(f"plot_bench.py: cannot write {args.out}: {e}")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
