"""Turns a pytest-benchmark run of the op benchmarks (--benchmark-json) into the project's results:
rows appended to bench/results/<device>.csv (utils.COLUMNS, as the earlier scripts wrote them) and
one markdown table per op, printed and, with --markdown, written into docs/benchmarks.md between the markers
``<!-- bench-tables:<device> begin -->`` and ``<!-- bench-tables:<device> end -->``.

    python -m pytest bench/ --benchmark-only --benchmark-json=run.json
    python -m bench.results_from_json run.json --markdown docs/benchmarks.md

A row's median is pytest-benchmark's median per call; gb_s is the bytes the fused op must move
(extra_info) over that median; speedup_vs_reference divides the median of the ``reference`` row of
the same group (op x mode x dtype x shape) by the row's. In the tables, "ours" is the fastest of our
backends (cuda, triton, cpu) in the group.
"""

import argparse
import datetime
import json
import os
import re
import sys
from collections import defaultdict
from bench.utils import OURS, append_csv

BASELINES = ("reference", "reference-compiled", "sdpa-folded-bias", "flex", "copy")


def _timed(run: dict) -> list[dict]:
    return [b for b in run["benchmarks"] if "provider" in b["extra_info"] and b.get("stats")]


def rows_from_runs(runs: list[dict]) -> list[dict]:
    """The CSV rows (utils.COLUMNS) of --benchmark-json documents (e.g. one run per subset of the
    providers: a row's speedup uses the reference row of its group in any of them, on the same
    device); benchmarks without the op benchmarks' extra_info (or not timed) are left out."""
    reference_s = {
        (run["machine_info"].get("swinir", {}).get("device"), b["group"]): b["stats"]["median"]
        for run in runs for b in _timed(run) if b["extra_info"]["provider"] == "reference"
    }
    return [row for run in runs for row in _rows(run, reference_s)]


def _rows(run: dict, reference_s: dict) -> list[dict]:
    machine = run["machine_info"].get("swinir")
    if machine is None:
        raise ValueError("not a run of bench/: machine_info has no 'swinir' entry (bench/conftest.py adds it)")
    date = datetime.datetime.fromisoformat(run["datetime"]).astimezone(datetime.timezone.utc)
    rows = []
    for bench in _timed(run):
        info, median = bench["extra_info"], bench["stats"]["median"]
        reference = reference_s.get((machine["device"], bench["group"]))
        rows.append({
            "op": info["op"],
            "provider": info["provider"],
            "mode": info["mode"],
            "dtype": info["dtype"],
            "shape": info["shape"],
            "median_ms": f"{median * 1e3:.4f}",
            "gb_s": f"{info['bytes'] / median / 1e9:.4g}" if info.get("bytes") else "",
            "speedup_vs_reference": "" if reference is None else f"{reference / median:.2f}",
            "peak_mb": "" if info.get("peak_mb") is None else f"{info['peak_mb']:.1f}",
            "device": machine["device"],
            "torch": machine["torch"],
            "commit": machine["commit"],
            "date": date.strftime("%Y-%m-%dT%H:%M:%SZ"),
        })
    return rows


def _ms(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def markdown_tables(rows: list[dict]) -> str:
    """One table per op: a line per mode x dtype x shape, a column per provider (median ms), then the
    fastest of ours against the reference and its GB/s."""
    by_op: dict[str, dict[tuple, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        by_op[row["op"]][(row["mode"], row["dtype"], row["shape"])][row["provider"]] = row
    tables = []
    for op, groups in by_op.items():
        present = {provider for group in groups.values() for provider in group}
        columns = [p for p in OURS + BASELINES if p in present] + sorted(present - set(OURS + BASELINES))
        header = ["mode", "dtype", "shape", *(f"{p} ms" for p in columns), "ours vs reference", "ours GB/s"]
        lines = [f"**{op}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for (mode, dtype, shape), group in groups.items():
            cells = [mode, dtype, shape] + [_ms(float(group[p]["median_ms"])) if p in group else "-" for p in columns]
            ours = [group[p] for p in OURS if p in group]
            best = min(ours, key=lambda r: float(r["median_ms"])) if ours else None
            if best is None or not best["speedup_vs_reference"]:
                cells += ["-", best["gb_s"] if best else "-"]
            else:
                speedup = f"{best['speedup_vs_reference']}x"
                cells += [f"{f'**{speedup}**' if float(best['speedup_vs_reference']) >= 1 else speedup} ({best['provider']})",
                          best["gb_s"] or "-"]
            lines.append("| " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def replace_in_readme(path: str, device: str, text: str) -> None:
    """Writes `text` between the device's markers in the markdown page at `path` (which must have them)."""
    begin, end = f"<!-- bench-tables:{device} begin -->", f"<!-- bench-tables:{device} end -->"
    with open(path) as handle:
        readme = handle.read()
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(readme):
        raise SystemExit(f"--readme: {path} has no markers '{begin}' ... '{end}'; add them where the tables go")
    readme = pattern.sub(lambda _: f"{begin}\n{text}\n{end}", readme)
    with open(path + ".tmp", "w") as handle:
        handle.write(readme)
    os.replace(path + ".tmp", path)  # never a half-written page


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="--benchmark-json files of `python -m pytest bench/`")
    parser.add_argument("--no-csv", action="store_true", help="do not append the rows to bench/results/<device>.csv")
    parser.add_argument("--markdown", "--readme", dest="readme",
                        help="markdown page to write the tables into, between the device's markers (docs/benchmarks.md)")
    args = parser.parse_args(argv)
    runs = []
    for path in args.runs:
        with open(path) as handle:
            runs.append(json.load(handle))
    by_device: dict[str, list[dict]] = defaultdict(list)
    for row in rows_from_runs(runs):
        by_device[row["device"]].append(row)
    if not by_device:
        raise SystemExit(f"no timed op benchmarks in {', '.join(args.runs)} (was it run with --benchmark-disable?)")
    for device, rows in by_device.items():
        tables = markdown_tables(rows)
        print(f"## {device}\n\n{tables}\n")
        if not args.no_csv:
            print(f"appended {len(rows)} rows to {append_csv(rows, device)}")
        if args.readme:
            replace_in_readme(args.readme, device, tables)
            print(f"wrote the {device} tables into {args.readme}")


if __name__ == "__main__":
    main()
