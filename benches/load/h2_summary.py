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

    def ratio(w, s, key):
        t = twin(s)
        if t is None or (w, t) not in runs:
            return None
        mine, theirs = runs[(w, s)], runs[(w, t)]
        pairs = [mine[r][key] / theirs[r][key] for r in mine if r in theirs and theirs[r][key]]
        return statistics.median(pairs) if pairs else None

    def spread(w, s):
        t = twin(s)
        if t is None or (w, t) not in runs:
            return ""
        mine, theirs = runs[(w, s)], runs[(w, t)]
        pairs = [mine[r]["rps"] / theirs[r]["rps"] for r in mine if r in theirs and theirs[r]["rps"]]
        return f" [{min(pairs):.2f}..{max(pairs):.2f}]" if len(pairs) > 1 else ""

    print("\nRequests per second, median of the rounds; in brackets the median of the "
          "per-round ratios to the twin without linger (`auto` / `auto-bare`, `axum` / "
          "`axum-bare`) and their range; then requests that got no response "
          "(h2load's failed + errored + timeout, summed over the rounds) and non-2xx "
          "answers:\n")
    print("| server | " + " | ".join(workloads) + " |")
    print("|---|" + "---|" * len(workloads))
    for s in servers:
        cells = []
        for w in workloads:
            got = runs.get((w, s))
            if not got:
                cells.append("–")
                continue
            rps = statistics.median(g["rps"] for g in got.values())
            r = ratio(w, s, "rps")
            lost = sum(g["lost"] for g in got.values())
            non2xx = sum(g["non2xx"] for g in got.values())
            cell = fmt_int(rps)
            if r is not None:
                cell += f" ({r:.2f}×{spread(w, s)})"
            cell += f"; lost {fmt_int(lost)}"
            if non2xx:
                cell += f", non-2xx {fmt_int(non2xx)}"
            cells.append(cell)
        print(f"| {s} | " + " | ".join(cells) + " |")

    print("\nServer CPU time per response in µs (all its threads), median; in brackets "
          "the median of per-round ratios to the twin (≤ 1 is cheaper):\n")
    print("| server | " + " | ".join(workloads) + " |")
    print("|---|" + "---|" * len(workloads))
    for s in servers:
        cells = []
        for w in workloads:
            got = runs.get((w, s))
            if not got:
                cells.append("–")
                continue
            cpu = statistics.median(g["cpu_us"] for g in got.values())
            r = ratio(w, s, "cpu_us")
            cells.append(f"{cpu:.1f}" + (f" ({r:.2f}×)" if r is not None else ""))
        print(f"| {s} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
