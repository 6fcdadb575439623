#!/usr/bin/env python3
"""Allocation sites per request from two DHAT runs of `load count`.

    dhat_sites.py N BASE_NONE.json BASE_N.json [NAME NONE.json N.json ...]

Each server is given by the DHAT output of a run with 0 requests and one with
N requests (same warm-up), so that start-up allocations cancel out. A site is
named by its first frame, from the allocation upwards, that belongs to hyper,
tokio, linger, axum, tower or http (allocator and std frames are looked
through). Prints the blocks per request of each site for every server, the
first server being the baseline, sorted by what the others add to it.
"""

import json
import re
import sys
from collections import Counter

INTERESTING = re.compile(r"(hyper|tokio|linger|axum|tower|http|load::server|load::client|matchit)")
PLUMBING = re.compile(r"^(new<|UnknownInlinedFun|box_new|alloc|with_capacity|<alloc::|<core::|core::|std::|<std::|malloc|realloc|calloc)")


def site_name(frames):
    for frame in frames:
        m = re.search(r"0x[0-9A-F]+: (.*?) \(", frame)
        name = m.group(1) if m else frame
        if PLUMBING.match(name) or not INTERESTING.search(name):
            continue
        # Strip generic arguments, which make the names unreadable.
        for _ in range(6):
            name = re.sub(r"<[^<>]*>", "", name)
        return name[:120]
    return "?"


def blocks(path):
    data = json.load(open(path))
    table = data["ftbl"]
    counts = Counter()
    for pp in data["pps"]:
        counts[site_name([table[i] for i in pp["fs"]])] += pp["tbk"]
    return counts


def main():
    args = sys.argv[1:]
    if len(args) < 4 or (len(args) - 1) % 3:
        sys.exit(__doc__)
    n = int(args[0])
    servers = []
    for i in range(1, len(args), 3):
        name, none, some = args[i : i + 3]
        a, b = blocks(none), blocks(some)
        servers.append((name, {k: (b[k] - a[k]) / n for k in set(a) | set(b)}))
    base = servers[0][1]
    sites = set().union(*(s.keys() for _, s in servers))
    def added(site):
        return max(abs(s.get(site, 0) - base.get(site, 0)) for _, s in servers[1:]) if len(servers) > 1 else base.get(site, 0)
    print("| allocation site (first hyper/tokio/linger/axum frame) | " + " | ".join(name for name, _ in servers) + " |")
    print("|---|" + "---|" * len(servers))
    print("| **all** | " + " | ".join(f"**{sum(s.values()):.2f}**" for _, s in servers) + " |")
    for site in sorted(sites, key=lambda k: (-added(k), -base.get(k, 0))):
        values = [s.get(site, 0) for _, s in servers]
        if max(abs(v) for v in values) < 0.05:
            continue
        print(f"| `{site}` | " + " | ".join(f"{v:.2f}" for v in values) + " |")


if __name__ == "__main__":
    main()
