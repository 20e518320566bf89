#!/usr/bin/env python3
"""Reads the A/B files of `scripts/gpu-check.sh`'s compare stage (compare_np<N>_<build>_r<round>.csv,
epg-bench rows of builds run interleaved on one machine) and prints, per configuration, each
build's median over its rounds and its difference from the base build.

A row is left out as disturbed when the raw LSA copy timed in the same process (`lsa_<op>_us`)
is more than --disturbed percent away from its median over every round and build of the
configuration: the copy does not change between builds, so such a row measured the machine,
not the build (a slowdown of the whole machine hits both). On 2x and 4x H200 the copy stayed
within 3% of its median in undisturbed calls (perf-notes v33); NCCL's own time varies up to
9% from run to run, too much to tell a slowdown.

`sep` says whether every kept round of a build lies below (`<`) or above (`>`) every kept round
of the base; empty when they overlap. `spread` is the larger of the two builds' (max - min) /
median over their kept rounds: a cell whose spread is near its difference needs more rounds.
"""
import argparse
import csv
import glob
import os
import re
import statistics
import sys
from collections import defaultdict

FILE_NAME = re.compile(r"compare_np(\d+)_(\w+?)_r(\d+)\.csv$")
# The columns that name a configuration, where present (older files lack some).
CONFIG = ["ep", "domain_size", "payload", "routing", "hidden", "top_k", "experts", "tokens", "ctas", "threads",
          "remote_ctas"]
BASELINES = ["lsa"]  # the same-process baseline that judges a row (the module docstring)


def read_rows(folders):
    """Every row of every compare file under the folders, with its build and round."""
    rows = []
    for folder in folders:
        if not os.path.isdir(folder):
            raise ValueError(f"{folder} is not a folder")
        for path in sorted(glob.glob(os.path.join(folder, "compare_np*_*_r*.csv"))):
            match = FILE_NAME.search(os.path.basename(path))
            if not match:
                continue
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    rows.append({"build": match.group(2), "round": match.group(3), "file": path, **row})
    if not rows:
        raise ValueError("no compare_np<N>_<build>_r<round>.csv rows in " + ", ".join(folders))
    return rows


def config_of(row):
    return tuple((k, row[k]) for k in CONFIG if k in row)


def number(row, column):
    value = row.get(column, "")
    try:
        return float(value)
    except ValueError:
        return None


def disturbed_rows(rows, ops, limit_percent):
    """Ids of rows whose same-process baselines sit more than limit_percent off their median."""
    by_config = defaultdict(list)
    for row in rows:
        by_config[config_of(row)].append(row)
    bad = set()
    for group in by_config.values():
        for op in ops:
            for baseline in BASELINES:
                column = f"{baseline}_{op}_us"
                values = [number(r, column) for r in group]
                if any(v is None or v <= 0 for v in values):
                    continue
                median = statistics.median(values)
                for r, v in zip(group, values):
                    if abs(v / median - 1) * 100 > limit_percent:
                        bad.add(id(r))
    return bad


def spread_percent(values):
    return 100 * (max(values) - min(values)) / statistics.median(values)


def compare(rows, base, ops, limit_percent):
    """One record per (configuration, op, build other than base)."""
    builds = sorted({r["build"] for r in rows})
    if base not in builds:
        raise ValueError(f"base build '{base}' is not among the files' builds: {', '.join(builds)}")
    bad = disturbed_rows(rows, ops, limit_percent)
    cells = defaultdict(lambda: defaultdict(list))  # (config, op) -> build -> kept values
    dropped = defaultdict(int)                      # (config, op) -> rows left out
    for row in rows:
        for op in ops:
            value = number(row, f"{op}_us")
            if value is None:
                continue
            key = (config_of(row), op)
            if id(row) in bad:
                dropped[key] += 1
            else:
                cells[key][row["build"]].append(value)
    records = []
    for (config, op), by_build in sorted(cells.items()):
        base_values = by_build.get(base)
        if not base_values:
            continue
        base_median = statistics.median(base_values)
        for build in builds:
            values = by_build.get(build)
            if build == base or not values:
                continue
            median = statistics.median(values)
            sep = "<" if max(values) < min(base_values) else ">" if min(values) > max(base_values) else ""
            spread = max(spread_percent(values), spread_percent(base_values))
            records.append({**dict(config), "op": op, "base": base, "base_us": base_median, "build": build,
                            "build_us": median, "delta_us": median - base_median,
                            "delta_percent": 100 * (median / base_median - 1), "sep": sep, "spread_percent": spread,
                            "base_rounds": len(base_values), "build_rounds": len(values),
                            "disturbed_rows": dropped[(config, op)]})
    return records


def print_table(records):
    if not records:
        print("no configuration has rows of the base and of another build")
        return
    shown = [k for k in CONFIG if k in records[0]]
    print(" ".join(shown) + " op | base us | build us (delta us, %) sep | spread | rounds | disturbed")
    for r in records:
        print(" ".join(str(r[k]) for k in shown), r["op"],
              f"| {r['base']} {r['base_us']:.2f} | {r['build']} {r['build_us']:.2f} "
              f"({r['delta_us']:+.2f}, {r['delta_percent']:+.1f}%) {r['sep'] or '.'} "
              f"| {r['spread_percent']:.1f}% | {r['base_rounds']}/{r['build_rounds']} | {r['disturbed_rows']}")


def write_csv(path, records, fields=None):
    if fields is None:
        fields = list(records[0].keys()) if records else ["op"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)


def merge(path, rows, tags):
    """Every input row, with the tags, build and round in front (the union of the columns)."""
    fields = list(tags) + ["build", "round"]
    for row in rows:
        fields += [k for k in row if k not in fields and k != "file"]
    write_csv(path, [{**tags, **row} for row in rows], fields)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: compare_ab.py logs/cmp --base head --merge raw.csv --tag call=3 --tag machine=4xH200")
    parser.add_argument("folders", nargs="+", help="folders with compare_np<N>_<build>_r<round>.csv files")
    parser.add_argument("--base", required=True, help="the build the others are compared with")
    parser.add_argument("--ops", default="dispatch,combine", help="ops to compare (columns <op>_us), comma-separated")
    parser.add_argument("--disturbed", type=float, default=5.0, metavar="PERCENT",
                        help="leave out rows whose LSA copy is this far off its median (default 5)")
    parser.add_argument("--csv", metavar="OUT", help="also write the comparison as CSV")
    parser.add_argument("--merge", metavar="OUT", help="write every input row to one CSV (for bench/results/raw)")
    parser.add_argument("--tag", action="append", default=[], metavar="NAME=VALUE",
                        help="a column put in front of every merged row (repeatable)")
    args = parser.parse_args()
    try:
        tags = dict(t.split("=", 1) for t in args.tag)
    except ValueError:
        parser.error("--tag takes NAME=VALUE")
    if args.disturbed <= 0:
        parser.error("--disturbed must be above 0")
    ops = [op for op in args.ops.split(",") if op]
    try:
        rows = read_rows(args.folders)
        records = compare(rows, args.base, ops, args.disturbed)
    except (OSError, ValueError) as e:
        print(f"compare_ab.py: {e}", file=sys.stderr)
        return 2
    print_table(records)
    if args.csv:
        write_csv(args.csv, records)
    if args.merge:
        merge(args.merge, rows, tags)
    return 0


if __name__ == "__main__":
    sys.exit(main())
