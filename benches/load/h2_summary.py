#!/usr/bin/env python3
"""Turns h2.sh's results.tsv into the Markdown tables of BENCHMARKS.md.

    python3 benches/load/h2_summary.py target/load/h2-*/results.tsv [machine.txt]

The heading says the transport: h2c (prior knowledge), or TLS (h2 by ALPN)
when machine.txt says `transport: TLS, ...` (h2.sh's TLS=1); runs without
that line were h2c. req/s is a median over the rounds; a ratio is the median of the per-round
ratios to the server's twin without linger (auto -> auto-bare, axum and
axum-around -> axum-bare, X+nodelay -> its twin +nodelay, X@rev -> X's twin in
the same round).
"""

import csv
import statistics
import sys
from collections import defaultdict

ORDER = ["get", "read16", "ignore64", "ignore1m"]
TWIN = {"auto": "auto-bare", "axum": "axum-bare", "axum-around": "axum-bare",
        "axum-axumlayer": "axum-bare", "axum-identity": "axum-bare"}


def fmt_int(x):
    return f"{x:,.0f}".replace(",", "\u202f")


def main():
    machine = None
    if len(sys.argv) > 2:
        try:
            machine = open(sys.argv[2]).read().strip()
        except OSError:
            pass
    tls = machine is not None and any(
        line.startswith("transport: TLS") for line in machine.splitlines())
    print("## HTTP/2 over TLS (h2 by ALPN), h2load\n" if tls
          else "## HTTP/2 cleartext (h2c, prior knowledge), h2load\n")
    if machine is not None:
        print("```\n" + machine + "\n```")
    rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
    if not rows:
        sys.exit("no results")
    runs = defaultdict(dict)
    servers, workloads = [], []
    for row in rows:
        w, s = row["workload"], row["server"]
        servers.append(s) if s not in servers else None
        workloads.append(w) if w not in workloads else None
        done = int(row["done"])
        secs = float(row["duration_s"])
        runs[(w, s)][row["round"]] = {
            "rps": done / secs if secs else 0.0,
            "lost": int(row["failed"]) + int(row["errored"]) + int(row["timeout"]),
            "non2xx": int(row["non2xx"]),
            "done": done,
            "cpu_us": int(row["server_cpu_ns"]) / 1e3 / done if done else float("nan"),
        }
    workloads.sort(key=lambda w: ORDER.index(w) if w in ORDER else len(ORDER))

    def twin(s):
        # X+nodelay's twin is its bare twin with TCP_NODELAY too.
        base, _, nodelay = s.split("@")[0].partition("+")
        t = TWIN.get(base)
        return t and (f"{t}+{nodelay}" if nodelay else t)

    def per_round(w, s, key):
        """The per-round ratios of s to its twin, or [] without a twin."""
        t = twin(s)
        if t is None or (w, t) not in runs:
            return []
        mine, theirs = runs[(w, s)], runs[(w, t)]
        return [mine[r][key] / theirs[r][key] for r in mine if r in theirs and theirs[r][key]]

    def table(heading, cell):
        """One row per server, one cell(got, w, s) per workload."""
        print(heading)
        print("| server | " + " | ".join(workloads) + " |")
        print("|---|" + "---|" * len(workloads))
        for s in servers:
            cells = [cell(runs[(w, s)], w, s) if runs.get((w, s)) else "–" for w in workloads]
            print(f"| {s} | " + " | ".join(cells) + " |")

    def rps_cell(got, w, s):
        rps = statistics.median(g["rps"] for g in got.values())
        lost = sum(g["lost"] for g in got.values())
        non2xx = sum(g["non2xx"] for g in got.values())
        cell = fmt_int(rps)
        pairs = per_round(w, s, "rps")
        if pairs:
            spread = f" [{min(pairs):.2f}..{max(pairs):.2f}]" if len(pairs) > 1 else ""
            cell += f" ({statistics.median(pairs):.2f}×{spread})"
        cell += f"; lost {fmt_int(lost)}"
        if non2xx:
            cell += f", non-2xx {fmt_int(non2xx)}"
        return cell

    def cpu_cell(got, w, s):
        cpu = statistics.median(g["cpu_us"] for g in got.values())
        pairs = per_round(w, s, "cpu_us")
        return f"{cpu:.1f}" + (f" ({statistics.median(pairs):.2f}×)" if pairs else "")

    table("\nRequests per second, median of the rounds; in brackets the median of the "
          "per-round ratios to the twin without linger (`auto` / `auto-bare`, `axum` / "
          "`axum-bare`) and their range; then requests that got no response "
          "(h2load's failed + errored + timeout, summed over the rounds) and non-2xx "
          "answers:\n", rps_cell)
    table("\nServer CPU time per response in µs (all its threads), median; in brackets "
          "the median of per-round ratios to the twin (≤ 1 is cheaper):\n", cpu_cell)

if __name__ == "__main__":
    main()
