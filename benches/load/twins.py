#!/usr/bin/env python3
"""Ratios of each server to its twin of another revision, from run.sh's results.tsv.

    python3 benches/load/twins.py target/load/run-*/results.tsv REV [REV...]
    python3 benches/load/twins.py target/load/run-*/results.tsv +nodelay   # X+nodelay / X

For every server X that also ran as X@REV: per round, X's req/s over X@REV's
(and the server CPU time per request, the other way round would be inverted:
here X's µs over X@REV's, ≤ 1 is cheaper); the median of the rounds and, in
brackets, the smallest and largest per-round ratio (the run-to-run spread).
With several revisions, also REV2 against REV1 (e.g. the code before a change
against an older baseline).
"""

import csv
import statistics
import sys
from collections import defaultdict

ORDER = ["get_ka", "read16", "get_close", "ignore64", "ignore256", "rej64"]


def main():
    rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
    revs = sys.argv[2:]
    runs = defaultdict(dict)
    for row in rows:
        requests = int(row["requests"])
        duration = int(row["duration_us"]) / 1e6
        runs[(row["workload"], row["server"])][row["round"]] = (
            requests / duration,
            int(row["server_cpu_ns"]) / 1e3 / requests if requests else float("nan"),
        )
    workloads = sorted({w for w, _ in runs}, key=lambda w: ORDER.index(w) if w in ORDER else 99)
    servers = []
    for _, s in runs:
        if s not in servers:
            servers.append(s)

    def cell(w, a, b, k):
        if (w, a) not in runs or (w, b) not in runs:
            return "–"
        ra, rb = runs[(w, a)], runs[(w, b)]
        ratios = [ra[r][k] / rb[r][k] for r in ra if r in rb and rb[r][k]]
        if not ratios:
            return "–"
        return f"{statistics.median(ratios):.2f} [{min(ratios):.2f}..{max(ratios):.2f}]"

    pairs = []
    for rev in revs:
        for s in servers:
            # `+SUFFIX`: each server X+SUFFIX against X (e.g. `+nodelay`).
            if rev.startswith("+") and f"{s}{rev}" in servers:
                pairs.append((f"{s}{rev}", s))
            elif "@" not in s and f"{s}@{rev}" in servers:
                pairs.append((s, f"{s}@{rev}"))
    if len(revs) > 1:
        for s in servers:
            base = s.split("@")[0]
            if s == f"{base}@{revs[1]}" and f"{base}@{revs[0]}" in servers:
                pairs.append((s, f"{base}@{revs[0]}"))
    for k, title in ((0, "req/s, ratio (≥ 1 is faster)"), (1, "server CPU time per request, ratio (≤ 1 is cheaper)")):
        print(f"\n{title}; median of the per-round ratios [smallest..largest]:\n")
        print("| server / twin | " + " | ".join(workloads) + " |")
        print("|---|" + "---|" * len(workloads))
        for a, b in pairs:
            print(f"| `{a}` / `{b}` | " + " | ".join(cell(w, a, b, k) for w in workloads) + " |")


if __name__ == "__main__":
    main()
