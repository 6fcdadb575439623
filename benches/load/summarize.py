#!/usr/bin/env python3
"""Turns run.sh's results.tsv into the Markdown tables of BENCHMARKS.md.

    python3 benches/load/summarize.py target/load/run-*/results.tsv [machine.txt]

Every figure is a median over the rounds; a ratio is the median of the
per-round ratios against plain hyper in the same round and workload, so a
disturbance that hits one round hits both sides of its ratio alike.
"""

import csv
import statistics
import sys
from collections import defaultdict

ORDER = ["get_ka", "read16", "get_close", "ignore64", "ignore256", "rej64"]
CLK_TCK_NS = 10_000_000  # /proc/stat counts in USER_HZ = 100


def fmt_int(x):
    return f"{x:,.0f}".replace(",", "\u202f")


def main():
    path = sys.argv[1]
    if len(sys.argv) > 2:
        try:
            print("```\n" + open(sys.argv[2]).read().strip() + "\n```")
        except OSError:
            pass
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    if not rows:
        sys.exit("no results")
    runs = defaultdict(dict)  # (workload, server) -> round -> row
    servers, workloads = [], []
    for row in rows:
        w, s = row["workload"], row["server"]
        if s not in servers:
            servers.append(s)
        if w not in workloads:
            workloads.append(w)
        requests = int(row["requests"])
        duration = int(row["duration_us"]) / 1e6
        cpu_ns = int(row["server_cpu_ns"])
        busy_ns = int(row["cpu_busy"]) * CLK_TCK_NS
        total_ns = int(row["cpu_total"]) * CLK_TCK_NS
        runs[(w, s)][row["round"]] = {
            "rps": requests / duration if duration else 0.0,
            "errors": sum(int(row[k]) for k in ("connect", "read", "write", "timeout")),
            "detail": tuple(int(row[k]) for k in ("connect", "read", "write", "timeout")),
            "status": int(row["status"]),
            "cpu_us": cpu_ns / 1e3 / requests if requests else float("nan"),
            "others": max(0.0, (busy_ns - cpu_ns) / total_ns) if total_ns else 0.0,
            "p99_us": int(row["p99_us"]),
        }
    workloads.sort(key=lambda w: ORDER.index(w) if w in ORDER else len(ORDER))
    rounds = sorted({row["round"] for row in rows}, key=int)
    base = "plain" if "plain" in servers else None

    def med(values):
        values = [v for v in values if v == v]
        return statistics.median(values) if values else float("nan")

    def ratio(w, s, key):
        if base is None or s == base:
            return None
        pairs = [
            runs[(w, s)][r][key] / runs[(w, base)][r][key]
            for r in rounds
            if r in runs[(w, s)] and r in runs[(w, base)] and runs[(w, base)][r][key]
        ]
        return med(pairs) if pairs else None

    def table(title, cell):
        print(f"\n{title}\n")
        print("| server | " + " | ".join(workloads) + " |")
        print("|---|" + "---|" * len(workloads))
        for s in servers:
            cells = []
            for w in workloads:
                got = runs.get((w, s))
                cells.append(cell(w, s, got) if got else "–")
            print(f"| {s} | " + " | ".join(cells) + " |")

    def rps_cell(w, s, got):
        value = fmt_int(med([g["rps"] for g in got.values()]))
        r = ratio(w, s, "rps")
        return f"{value}" + (f" ({r:.2f}×)" if r is not None else "")

    def errors_cell(w, s, got):
        errors = med([g["errors"] for g in got.values()])
        if not errors:
            return "0"
        # The kinds of the median run.
        run = sorted(got.values(), key=lambda g: g["errors"])[len(got) // 2]
        names = ("connect", "read", "write", "timeout")
        kinds = ", ".join(f"{n} {fmt_int(v)}" for n, v in zip(names, run["detail"]) if v)
        return f"{fmt_int(errors)} ({kinds})"

    def cpu_cell(w, s, got):
        value = med([g["cpu_us"] for g in got.values()])
        r = ratio(w, s, "cpu_us")
        return f"{value:.1f}" + (f" ({r:.2f}×)" if r is not None else "")

    n = len(rounds)
    table(
        f"Requests per second, median of {n} round(s); in brackets the median of the "
        "per-round ratios to `plain` (≥ 1 is faster):",
        rps_cell,
    )
    table(
        "Socket errors per run as wrk counts them (connect + read + write + timeout), "
        "median of the rounds, with the kinds of the median run:",
        errors_cell,
    )
    table(
        "Server CPU time per request in µs (all its threads and processes), median; "
        "in brackets the median of per-round ratios to `plain` (≤ 1 is cheaper):",
        cpu_cell,
    )
    others = [g["others"] for got in runs.values() for g in got.values()]
    print(
        f"\nThe server's CPU was busy with other work (anything but the server "
        f"under test: other processes, softirq) for a median {100 * med(others):.0f} % "
        f"and at most {100 * max(others):.0f} % of a run."
    )


if __name__ == "__main__":
    main()
