#!/usr/bin/env python3
"""Breaks a server's CPU profile down into the cost centres of issue 14.

    breakdown.py PERF_SCRIPT(.gz) REQUESTS SERVER_CPU_NS   # one profile
    breakdown.py --syscalls OUT_DIR SERVER...              # perf stat table
    breakdown.py --table OUT_DIR SERVER...                 # profiles side by side

The profile is `perf script -F comm,tid,ip,sym,dso` of a `perf record
--call-graph dwarf` of the server process under wrk. Each sample counts for the
server's CPU time / samples, so a share of the samples times the CPU time per
request (measured from schedstat during the same run) is µs per request.

Every sample gets two labels:

* task: whose work it is, by the future at the bottom of the stack: the
  hyper connection task, the drain's background task, the linger's
  background task, the accept loop (block_on on the main thread), or the
  runtime itself (parking, the I/O and timer drivers, waking threads);
* what: the innermost recognisable thing on the stack, see WHAT below.
"""

import gzip
import os
import re
import sys
from collections import Counter, defaultdict

# (label, pattern) tried from the bottom (root) of the stack upwards; the
# last match wins, so more specific futures nested in others take over.
TASKS = [
    ("runtime", r"^tokio::runtime::(scheduler|park|io::driver|time::Driver|driver)"),
    ("accept loop", r"^load::server::serve_(plain|lingering)|^load::server::serve_main|axum::serve::|^tokio::runtime::park::CachedParkThread::block_on"),
    ("connection task", r"^load::server::spawn_connection::\{\{closure\}\}|hyper::proto::h1::dispatch::Dispatcher|hyper_util::server::conn::auto|axum::serve::.*handle_connection"),
    # The drain's task: Drainer::spawn's future (src/drain/drainer.rs; before the
    # restructure, drain::background::drain).
    ("drain task", r"^linger::drain::drainer::Drainer<.*>::spawn::\{\{closure\}\}|^linger::drain::background::drain"),
    # The lingering close's task: the future of mode::finish_in_background
    # (src/lingering/mode.rs; before, io::spawn_close). Both run in_current_span,
    # under tracing's Instrumented, which the closures nested in it override.
    ("linger task", r"^linger::lingering::mode::finish_in_background(<.*>)?::\{\{closure\}\}|^linger::lingering::io::spawn_close::\{\{closure\}\}|<tracing::instrument::Instrumented<T> as core::future::future::Future>::poll"),
]

# What a sample is doing, from the user-space side: the first frame from the
# leaf that matches one of these (frames matching SKIP are looked through).
WHAT = [
    ("timers", r"^<?tokio::(runtime::time|time)::|^<?linger::timers::"),
    ("task spawn / schedule / wake", r"^<?tokio::runtime::(task::|scheduler::.*(schedule|spawn|bind|notify|push|pop|next_task|steal|wake|run_task|Defer)|context::.*spawn|handle::Handle::spawn)|^<?tokio::task::spawn|OwnedTasks"),
    ("body channel", r"^<?hyper::body::(chan|incoming)|atomic_waker"),
    ("linger: discard", r"^<?linger::lingering::discard"),
    ("linger: close", r"^<?linger::lingering::"),
    ("drain", r"^<?linger::drain::(decision|drainer|future|body|counters|background|held)"),
    ("hyper read path", r"^<?hyper::proto::h1::(io::Buffered<T,B>( as hyper::proto::h1::io::MemRead>)?::(poll_read_from_io|read_mem)|decode::|conn::Conn<I,B,T>::(poll_read_body|poll_drain_or_close_read))|^<?bytes::bytes_mut"),
    ("hyper write (flush)", r"^<?hyper::proto::h1::io::Buffered<T,B>::poll_flush"),
    ("hyper shutdown", r"^<?hyper::proto::h1::(conn::Conn<I,B,T>::poll_shutdown|dispatch::Dispatcher<D,Bs,I,T>::poll_shutdown)"),
    ("hyper other (head, dispatch, write)", r"^<?(hyper|httparse|http)::"),
    ("handler / service", r"^<?load::server::handle|^<?tower|^<?axum|^<?matchit|^<?linger::drain::(service|layer)"),
    ("accept", r"^<?tokio::net::tcp::listener|^<?linger::lingering::listener|^<?load::server::serve"),
    ("runtime: I/O driver, park", r"^<?tokio::runtime::(io::|park|scheduler::multi_thread::(park|worker::Context::park)|driver|blocking)"),
    ("tokio other", r"^<?tokio::"),
]
SKIP = r"^<?(std::|core::|alloc::|mio::|tokio::net::tcp::stream|tokio::io::|hyper_util::rt::tokio|<&mio|<&std|socket2::|bytes::bytes::|load::count::)"
ALLOCATOR = r"^(malloc|free|cfree|realloc|calloc|_int_malloc|_int_free|_int_realloc|malloc_consolidate|__libc_malloc|__libc_free|__libc_realloc|__GI___libc_(malloc|free|realloc)|tcache_|unlink_chunk|sysmalloc|systrim|heap_trim|shrink_heap|__rust_alloc|__rust_dealloc|__rust_realloc|__rdl_|_?__madvise|__GI_madvise)|alloc::raw_vec::finish_grow|load::count::CountingAlloc"
MEMCPY = r"^(__memmove|__memcpy|__memset|memcpy|memmove|memset)"


def parse(path):
    """Yields each sample's stack, leaf first, as (symbol, dso) pairs."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", errors="replace") as f:
        stack = []
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                if stack:
                    yield stack
                stack = []
                continue
            if not line.startswith(("\t", " ")):
                stack = []  # a sample header (comm tid)
                continue
            parts = line.strip().split(" ", 1)
            if len(parts) < 2:
                continue
            m = re.match(r"^(.*) \((.*)\)$", parts[1])
            sym, dso = (m.group(1), m.group(2)) if m else (parts[1], "")
            sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
            if dso == "inlined" and stack:
                dso = stack[-1][1]
            stack.append((sym, dso))
        if stack:
            yield stack


def label_task(stack):
    task = "other"
    for sym, _ in reversed(stack):  # root first; the innermost match wins
        for label, pattern in TASKS:
            if re.search(pattern, sym):
                task = label
    return task


def label_what(stack):
    """`kind ← category`: kind is the system call, page fault, allocator or
    memcpy at the leaf (nothing for plain user code); category is who asked."""
    kind = None
    user = [(sym, dso) for sym, dso in stack if "kernel" not in dso]
    kernel = [sym for sym, dso in stack if "kernel" in dso]
    if kernel:
        syscall = None
        if "do_syscall_64" in kernel:
            # The frame do_syscall_64 called names the system call.
            at = kernel.index("do_syscall_64")
            while at > 0 and kernel[at - 1] == "x64_sys_call":
                at -= 1
            if at > 0:
                syscall = re.sub(r"^(__x64_sys_|__do_sys_|__se_sys_|__sys_|ksys_|do_)", "", kernel[at - 1])
            if syscall in ("exit_to_user_mode_loop", "syscall_exit_to_user_mode"):
                syscall = None  # scheduled out on the way back to user space
        fault = any("page_fault" in s for s in kernel)
        softirq = any(s.startswith(("__do_softirq", "handle_softirqs", "net_rx_action", "do_softirq")) for s in kernel)
        if fault:
            kind = "page fault" + (f" in {syscall}" if syscall else "")
        elif syscall:
            kind = f"syscall {syscall}" + (" (+softirq)" if softirq else "")
        elif softirq:
            kind = "softirq"
        else:
            kind = "kernel other"
    category = None
    if kind and kind.startswith("syscall close"):
        # The socket's close(2), from whatever drops the socket last.
        return f"{kind} ← socket dropped"
    for sym, dso in user:
        if re.search(ALLOCATOR, sym):
            kind = kind or "allocator"
            if kind.startswith("page fault") and "allocator" not in kind:
                kind += " (allocator)"
            continue
        if re.match(MEMCPY, sym):
            kind = kind or "memcpy"
            continue
        if "libc" in dso or re.search(SKIP, sym):
            continue
        for label, pattern in WHAT:
            if re.search(pattern, sym):
                category = label
                break
        if category:
            break
    category = category or "other"
    return f"{kind} ← {category}" if kind else category


def per_request(count, total, cpu_us_per_request):
    return cpu_us_per_request * count / total if total else 0.0


def profile(path, requests, cpu_ns):
    requests = int(requests)
    cpu_ns = int(cpu_ns)
    samples = list(parse(path))
    total = len(samples)
    if not total or not requests:
        print("no samples or no requests")
        return
    us = cpu_ns / 1e3 / requests
    by_task = Counter()
    by_what = Counter()
    matrix = defaultdict(Counter)
    for stack in samples:
        task = label_task(stack)
        what = label_what(stack)
        by_task[task] += 1
        by_what[what] += 1
        matrix[task][what] += 1
    print(f"{total} samples, {requests} requests, server CPU {us:.2f} µs per request\n")
    print("| task | µs/request | share |")
    print("|---|---|---|")
    for task, n in by_task.most_common():
        print(f"| {task} | {per_request(n, total, us):.2f} | {100 * n / total:.1f} % |")
    by_category, by_kind = Counter(), Counter()
    for what, n in by_what.items():
        kind, _, category = what.rpartition(" ← ")
        by_category[category] += n
        by_kind[re.sub(r" in \w+| \(.*\)", "", kind) or "user code"] += n
    for title, counter in (("who asked (innermost recognised user frame)", by_category),
                           ("what it is (at the leaf)", by_kind)):
        print(f"\n| {title} | µs/request | share |")
        print("|---|---|---|")
        for label, n in counter.most_common():
            print(f"| {label} | {per_request(n, total, us):.2f} | {100 * n / total:.1f} % |")
    print("\n| what ← who | µs/request | share | by task |")
    print("|---|---|---|---|")
    for what, n in by_what.most_common():
        if n / total < 0.002:
            continue
        tasks = ", ".join(
            f"{t} {per_request(matrix[t][what], total, us):.2f}"
            for t, _ in by_task.most_common()
            if matrix[t][what]
        )
        print(f"| {what} | {per_request(n, total, us):.2f} | {100 * n / total:.1f} % | {tasks} |")


def read_stat(path):
    counts = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            fields = line.strip().split(",")
            if len(fields) < 3:
                continue
            try:
                value = float(fields[0])
            except ValueError:
                continue
            counts[fields[2]] = value
    return counts


def read_kv(path):
    kv = {}
    with open(path) as f:
        for token in f.read().split():
            if "=" in token:
                k, v = token.split("=", 1)
                kv[k] = v
    return kv


def syscalls(out, servers):
    rows = {}
    names = []
    for server in servers:
        d = os.path.join(out, server)
        try:
            stat = read_stat(os.path.join(d, "perf-stat.csv"))
            kv = read_kv(os.path.join(d, "wrk-stat.txt"))
        except OSError:
            continue
        requests = int(kv.get("requests", 0)) or 1
        row = {
            "req/s": int(kv["requests"]) * 1e6 / int(kv["duration_us"]),
            "cpu µs/req": int(kv.get("server_cpu_ns", 0)) / 1e3 / requests,
        }
        for event, value in stat.items():
            name = event.replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "all syscalls")
            row[name] = value / requests
            if name not in names:
                names.append(name)
        rows[server] = row
    if not rows:
        return
    names = ["req/s", "cpu µs/req"] + sorted(
        (n for n in names if any(r.get(n, 0) >= 0.005 for r in rows.values())),
        key=lambda n: (n != "all syscalls", n in ("context-switches", "cpu-migrations"), n),
    )
    print("| per request | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for name in names:
        cells = []
        for row in rows.values():
            v = row.get(name)
            if v is None:
                cells.append("–")
            elif name == "req/s":
                cells.append(f"{v:,.0f}".replace(",", "\u202f"))
            else:
                cells.append(f"{v:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")



def side_by_side(out, servers):
    """Task, cost centre and leaf kind tables, servers as columns, µs/request."""
    columns = {}
    for server in servers:
        d = os.path.join(out, server)
        try:
            kv = read_kv(os.path.join(d, "wrk-record.txt"))
            samples = list(parse(os.path.join(d, "perf-script.txt.gz")))
        except OSError:
            continue
        requests = int(kv.get("requests", 0))
        if not samples or not requests:
            continue
        us = int(kv.get("server_cpu_ns", 0)) / 1e3 / requests
        tables = {"task": Counter(), "who": Counter(), "kind": Counter()}
        for stack in samples:
            what = label_what(stack)
            kind, _, category = what.rpartition(" ← ")
            tables["task"][label_task(stack)] += 1
            tables["who"][category] += 1
            tables["kind"][re.sub(r" in \w+| \(.*\)", "", kind) or "user code"] += 1
        columns[server] = (us, len(samples), {k: {l: us * n / len(samples) for l, n in c.items()} for k, c in tables.items()})
    if not columns:
        return
    names = list(columns)
    print("| µs per request | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    print("| **server CPU** | " + " | ".join(f"**{columns[n][0]:.1f}**" for n in names) + " |")
    print("| samples | " + " | ".join(str(columns[n][1]) for n in names) + " |")
    for key, title in (("task", "by task"), ("who", "by cost centre (innermost recognised user frame)"), ("kind", "by what runs at the leaf")):
        labels = Counter()
        for n in names:
            for label, v in columns[n][2][key].items():
                labels[label] = max(labels[label], v)
        print(f"| *{title}* |" + " |" * len(names))
        for label, _ in labels.most_common():
            print(f"| {label} | " + " | ".join(f"{columns[n][2][key].get(label, 0.0):.2f}" for n in names) + " |")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--syscalls":
        syscalls(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) >= 2 and sys.argv[1] == "--table":
        side_by_side(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 4:
        profile(*sys.argv[1:])
    else:
        sys.exit(__doc__)
