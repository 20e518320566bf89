#!/usr/bin/env python3
"""Reads the A/B files of `scripts/gpu-check.sh`'s compare stage (compare_np<N>_<build>_r<round>.csv,
epg-bench rows of builds run interleaved on one machine) and prints, per configuration, each
build's median over its rounds and its difference from the base build.

A measurement is left out as disturbed when
  * its own replays spread too far: p90 / p10 of the op above 1 + --band percent (in undisturbed
    calls on 2x and 4x H200 at most 1.11, at T = 1; rows taken while the machine slowed down
    reached 1.2 to 10, perf-notes v33), or
  * the raw LSA copy timed in the same process (lsa_dispatch_us, lsa_combine_us) is more than
    --disturbed percent off its median over every round and build of the configuration: the copy
    does not change between builds (it stayed within 3% in undisturbed calls; NCCL's own time
    varies up to 9% from run to run, too much to tell). This leaves out the whole row.
Each cell says how many measurements it lost; a cell left without rounds of the base or of the
build is listed at the end.

`sep` says whether every kept round of a build lies below (`<`) or above (`>`) every kept round
of the base; `?` when either side kept fewer than 3 rounds (too few to tell), empty when they
overlap. `spread` is the larger of the two sides' (max - min) / median over their kept rounds: a
cell whose spread is near its difference needs more rounds.
"""
import argparse
import csv
import glob
import os
import re
import statistics
import sys
from collections import defaultdict

FILE_NAME = re.compile(r"compare_np(\d+)_(.+)_r(\d+)\.csv$")
# The columns that name a configuration, where every row has them (older files lack some).
CONFIG = ["ep", "domain_size", "payload", "routing", "hidden", "top_k", "experts", "tokens", "ctas", "threads",
          "remote_ctas", "programmatic"]
JUDGE_OPS = ["dispatch", "combine"]  # the ops whose LSA copy judges a row
MIN_ROUNDS_FOR_SEP = 3


def compare_files(paths):
    """The compare files named, and those in the folders named."""
    for path in paths:
        if os.path.isdir(path):
            yield from sorted(glob.glob(os.path.join(path, "compare_np*_*_r*.csv")))
        elif os.path.isfile(path):
            yield path
        else:
            raise ValueError(f"{path} is neither a file nor a folder")


def read_rows(paths):
    """Every complete row of every compare file (each file once), with its build and round."""
    rows, seen = [], set()
    for path in compare_files(paths):
        match = FILE_NAME.search(os.path.basename(path))
        if not match:
            print(f"compare_ab.py: note: {path} is not compare_np<N>_<build>_r<round>.csv; skipped", file=sys.stderr)
            continue
        if os.path.realpath(path) in seen:
            continue
        seen.add(os.path.realpath(path))
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if None in row.values() or None in row:  # a row cut short (or too long): not a measurement
                    print(f"compare_ab.py: note: a malformed row in {path}; skipped", file=sys.stderr)
                    continue
                rows.append({**row, "build": match.group(2), "round": match.group(3)})
    if not rows:
        raise ValueError("no compare_np<N>_<build>_r<round>.csv rows in " + ", ".join(paths))
    return rows


def number(row, column):
    try:
        return float(row.get(column, ""))
    except (TypeError, ValueError):
        return None


def band_ok(row, op, band_percent):
    p10, p90 = number(row, f"{op}_p10_us"), number(row, f"{op}_p90_us")
    return p10 is None or p90 is None or p10 <= 0 or p90 / p10 <= 1 + band_percent / 100


def copy_disturbed_rows(rows, key_of, limit_percent):
    """Ids of rows whose LSA copy (dispatch or combine) sits more than limit_percent off its median."""
    by_config = defaultdict(list)
    for row in rows:
        by_config[key_of(row)].append(row)
    bad = set()
    for group in by_config.values():
        for op in JUDGE_OPS:
            values = [number(r, f"lsa_{op}_us") for r in group]
            if any(v is None or v <= 0 for v in values):
                continue
            median = statistics.median(values)
            bad.update(id(r) for r, v in zip(group, values) if abs(v / median - 1) * 100 > limit_percent)
    return bad


def sort_key(config):
    """Numbers as numbers (T = 512 before 4096)."""
    out = []
    for _, value in config:
        try:
            out.append((0, float(value), ""))
        except ValueError:
            out.append((1, 0.0, value))
    return out


def compare(rows, base, ops, ignore, limit_percent, band_percent):
    """The configuration columns, the records of (configuration, op, build other than base), the cells
    left without rounds of both, and the measurements left out."""
    builds = sorted({r["build"] for r in rows})
    if base not in builds:
        raise ValueError(f"base build '{base}' is not among the files' builds: {', '.join(builds)}")
    missing = [op for op in ops if not any(number(r, f"{op}_us") is not None for r in rows)]
    if missing:
        raise ValueError(f"no column {', '.join(op + '_us' for op in missing)} in the files")
    columns = [k for k in CONFIG if k not in ignore and all(k in r for r in rows)]
    key_of = lambda row: tuple((k, row[k]) for k in columns)  # noqa: E731
    bad_rows = copy_disturbed_rows(rows, key_of, limit_percent)
    cells = defaultdict(lambda: defaultdict(list))  # (config, op) -> build -> kept values
    dropped = defaultdict(int)                      # (config, op) -> measurements left out
    for row in rows:
        for op in ops:
            value = number(row, f"{op}_us")
            if value is None:
                continue
            key = (key_of(row), op)
            if id(row) in bad_rows or not band_ok(row, op, band_percent):
                dropped[key] += 1
                cells[key]  # the cell is listed even when nothing of it is kept
            else:
                cells[key][row["build"]].append(value)
    records, empty = [], []
    for (config, op) in sorted(cells, key=lambda k: (sort_key(k[0]), k[1])):
        by_build = cells[(config, op)]
        base_values = by_build.get(base, [])
        for build in builds:
            if build == base:
                continue
            values = by_build.get(build, [])
            if not base_values or not values:
                empty.append({**dict(config), "op": op, "build": build, "dropped": dropped[(config, op)]})
                continue
            base_median, median = statistics.median(base_values), statistics.median(values)
            if min(len(values), len(base_values)) < MIN_ROUNDS_FOR_SEP:
                sep = "?"
            else:
                sep = "<" if max(values) < min(base_values) else ">" if min(values) > max(base_values) else ""
            records.append({**dict(config), "op": op, "base": base, "base_us": base_median, "build": build,
                            "build_us": median, "build_min_us": min(values), "delta_us": median - base_median,
                            "delta_percent": 100 * (median / base_median - 1), "sep": sep,
                            "spread_percent": max(spread_percent(values), spread_percent(base_values)),
                            "base_rounds": len(base_values), "build_rounds": len(values),
                            "disturbed": dropped[(config, op)]})
    return columns, records, empty, sum(dropped.values())


def spread_percent(values):
    return 100 * (max(values) - min(values)) / statistics.median(values)


def print_table(columns, records, empty, dropped_total):
    print(" ".join(columns) + " op | base us | build us (delta us, %) sep | min | spread | rounds | disturbed")
    for r in records:
        print(" ".join(r[k] for k in columns), r["op"],
              f"| {r['base']} {r['base_us']:.2f} | {r['build']} {r['build_us']:.2f} "
              f"({r['delta_us']:+.2f}, {r['delta_percent']:+.1f}%) {r['sep'] or '.'} | {r['build_min_us']:.2f} "
              f"| {r['spread_percent']:.1f}% | {r['base_rounds']}/{r['build_rounds']} | {r['disturbed']}")
    for e in empty:
        print(" ".join(e[k] for k in columns), e["op"], f"| {e['build']}: no kept rounds of both builds "
              f"({e['dropped']} disturbed)")
    print(f"{len(records)} cells compared, {len(empty)} without rounds of both builds, "
          f"{dropped_total} measurements left out as disturbed")


def write_csv(path, records, fields):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)


def merge(path, rows, tags):
    """Every input row, with the tags, build and round in front (the union of the columns)."""
    fields = list(tags) + ["build", "round"]
    for row in rows:
        fields += [k for k in row if k not in fields]
    write_csv(path, [{**row, **tags} for row in rows], fields)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: compare_ab.py logs/cmp --base head --merge raw.csv --tag call=3 --tag machine=4xH200")
    parser.add_argument("paths", nargs="+", help="compare_np<N>_<build>_r<round>.csv files, or folders of them")
    parser.add_argument("--base", required=True, help="the build the others are compared with")
    parser.add_argument("--ops", default="dispatch,combine", help="ops to compare (columns <op>_us), comma-separated")
    parser.add_argument("--ignore", default="", metavar="COLUMNS",
                        help="configuration columns the builds differ in by design (e.g. remote_ctas, or programmatic for "
                             "--plain-launch runs), comma-separated")
    parser.add_argument("--disturbed", type=float, default=5.0, metavar="PERCENT",
                        help="leave out rows whose LSA copy is this far off its median (default 5)")
    parser.add_argument("--band", type=float, default=15.0, metavar="PERCENT",
                        help="leave out measurements whose p90 is this far above their p10 (default 15)")
    parser.add_argument("--csv", metavar="OUT", help="also write the comparison as CSV")
    parser.add_argument("--merge", metavar="OUT", help="write every input row to one CSV (for bench/results/raw)")
    parser.add_argument("--tag", action="append", default=[], metavar="NAME=VALUE",
                        help="a column put in front of every merged row (repeatable)")
    args = parser.parse_args()
    try:
        tags = dict(t.split("=", 1) for t in args.tag)
    except ValueError:
        parser.error("--tag takes NAME=VALUE")
    if args.disturbed <= 0 or args.band <= 0:
        parser.error("--disturbed and --band must be above 0")
    ops = [op for op in args.ops.split(",") if op]
    ignore = {c for c in args.ignore.split(",") if c}
    try:
        rows = read_rows(args.paths)
        clash = [t for t in tags if t in rows[0]]
        if clash:
            raise ValueError(f"--tag {', '.join(clash)}: the files have a column of that name")
        columns, records, empty, dropped_total = compare(rows, args.base, ops, ignore, args.disturbed, args.band)
    except (OSError, ValueError) as e:
        print(f"compare_ab.py: {e}", file=sys.stderr)
        return 2
    print_table(columns, records, empty, dropped_total)
    if args.csv:
        write_csv(args.csv, records, columns + [k for k in (records[0] if records else {}) if k not in columns])
    if args.merge:
        merge(args.merge, rows, tags)
    return 0 if records else 1


if __name__ == "__main__":
    sys.exit(main())
