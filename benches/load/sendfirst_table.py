#!/usr/bin/env python3
"""Turns sendfirst.sh's results.tsv into the Markdown table of BENCHMARKS.md.

    python3 benches/load/sendfirst_table.py target/load/sendfirst-*/results.tsv [machine.txt] [timeout_s]

One row per server and client, one group of columns per body size: the
median and the largest time from the connect to the last byte of the 8 MiB
answer over the rounds (a round without a whole answer counts as slower than
any: "-" when it is the median or the largest), whole answers out of the
rounds, and how the others failed (timeout: the client's write or read
timed out, a deadlock; reset: the server reset the connection, the answer
cut short; eof: the connection ended early). The last column says whether
the answers announced Connection: close and how the connections ended.
"""

import csv
import math
import statistics
import sys
from collections import Counter, defaultdict


def failure(row):
    """Why a round gave no whole answer; None when it did."""
    if row["whole"] == "1":
        return None
    if "timeout" in (row["write"], row["end"]):
        return "timeout"
    if row["end"] in ("reset", "pipe") or row["write"] in ("reset", "pipe"):
        return "reset"
    if row["end"] == "eof":
        return "eof"
    return row["end"] or "error"


def fmt_ms(ms):
    if math.isinf(ms):
        return "-"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def fmt_mib(nbytes):
    mib = nbytes / (1024 * 1024)
    return f"{mib:g} MiB"


def main():
    path = sys.argv[1]
    if len(sys.argv) > 2:
        try:
            print("```\n" + open(sys.argv[2]).read().strip() + "\n```\n")
        except OSError:
            pass
    timeout = sys.argv[3] if len(sys.argv) > 3 else None
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    if not rows:
        sys.exit("no results")

    keys, bodies = [], []
    cells = defaultdict(list)  # (server, client, body) -> rows
    for row in rows:
        key = (row["server"], row["client"])
        body = int(row["body"])
        if key not in keys:
            keys.append(key)
        if body not in bodies:
            bodies.append(body)
        cells[(*key, body)].append(row)
    bodies.sort()

    head = ["server", "client"]
    for body in bodies:
        b = fmt_mib(body)
        head += [f"{b}: median", f"{b}: max", f"{b}: whole", f"{b}: failures"]
    head.append("answer / end")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for server, client in keys:
        line = [server, client]
        ends = Counter()
        for body in bodies:
            runs = cells.get((server, client, body), [])
            times = [float(r["whole_ms"]) if r["whole"] == "1" else math.inf for r in runs]
            fails = Counter(f for f in map(failure, runs) if f)
            if times:
                line += [fmt_ms(statistics.median(times)), fmt_ms(max(times))]
            else:
                line += ["", ""]
            line.append(f"{sum(r['whole'] == '1' for r in runs)}/{len(runs)}")
            line.append(", ".join(f"{n} {k}" for k, n in fails.most_common()) or "0")
            for r in runs:
                if r["whole"] == "1":
                    answer = "close" if r["close"] == "1" else "keep-alive"
                    ends[f"{answer}, {r['end']}" if r["end"] != "-" else answer] += 1
        line.append("; ".join(f"{k} ×{n}" for k, n in ends.most_common()) or "-")
        print("| " + " | ".join(line) + " |")

    print()
    print("Time from the connect to the last byte of the 8 MiB answer; "
          "\"-\": no whole answer (a failed round counts as slower than any). "
          "Failures: timeout = the client's write or read waited "
          + (f"{timeout} s" if timeout else "its timeout")
          + " (deadlock), reset = the answer was cut by a reset. "
          "Answer / end: Connection: close announced or not, and how the connection "
          "ended after a whole answer (eof: FIN; open: still open 1 s later; "
          "the Python clients do not show it).")


if __name__ == "__main__":
    main()
