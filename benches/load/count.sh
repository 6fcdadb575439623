#!/usr/bin/env bash
# Allocation calls and instructions per request on the server side, for the
# closing path (deliverable 4 of issue 14: "before" and "after" figures).
#
#   benches/load/count.sh                                  # get_ka read16 get_close rej64
#   WORKLOADS=rej64 SERVERS="plain both" benches/load/count.sh
#   BASELINE_REV=d39598f benches/load/count.sh             # + the servers of d39598f
#   BASELINE_REV="af856a0 f021807" benches/load/count.sh   # + those of two revisions
#   SERVERS="auto-bare auto" WORKLOADS="h2_get h2_read16" benches/load/count.sh
#   LOAD_FEATURES="axum,axum/http2" SERVERS="axum-bare axum-around" WORKLOADS=h2_get benches/load/count.sh
#                   # HTTP/2 (h2c, hyper's client, one stream at a time: h2client.rs)
#
# Each figure comes from `load count SERVER WORKLOAD N WARM_UP`: the server
# (a one-worker tokio runtime, as `taskset -c 0` gives the served binary) and
# a blocking client in one process; the client makes WARM_UP requests, then N
# more, one at a time (a closing workload: a new connection per request, read
# to EOF). Counted on the server's threads only:
#   - allocation calls (alloc, alloc_zeroed, realloc) and bytes asked for,
#     per request, by a counting global allocator, over the N requests;
#   - instructions (user space) per request under callgrind
#     (--separate-threads=yes): the runs with N=0 and N=$N differ only by the
#     N requests, so (Ir(N) - Ir(0)) / N of the server's threads. Kernel work
#     (copies, page faults, TCP) is not in it: see profile.sh for that.
# Repeated runs on a quiet machine agree within ~0.2 %; under heavy load
# (other builds) the thread interleaving changes and some servers showed up
# to 15 % more, so measure before and after in one run (BASELINE_REV) on a
# quiet machine. Needs valgrind for the instructions (skipped without it).
# DHAT=1 also runs valgrind's DHAT (0 and DHAT_N requests) and lists the
# allocation sites per request of each server (dhat_sites.py), per workload.
set -euo pipefail

# shellcheck source=benches/load/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVERS="${SERVERS:-plain drain linger both axum-bare axum}"
WORKLOADS="${WORKLOADS:-get_ka read16 get_close rej64}"
BASELINE_REV="${BASELINE_REV:-}"
BASELINE_SERVERS="${BASELINE_SERVERS:-drain linger both axum}"
N="${N:-2000}"
WARM_UP="${WARM_UP:-200}"
DHAT="${DHAT:-0}"
DHAT_N="${DHAT_N:-500}"
OUT="${OUT:-$LOAD_ROOT/target/load/count-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

BIN="$(build_load_bin "" "${CARGO_TARGET_DIR:-$LOAD_ROOT/target}")"
declare -A BINS
NAMES=()
for s in $SERVERS; do NAMES+=("$s"); BINS[$s]="$BIN"; done
# BASELINE_REV may list several revisions.
for rev in $BASELINE_REV; do
    BASE_BIN="$(build_load_bin "$rev" "${CARGO_TARGET_DIR:-$LOAD_ROOT/target}")"
    BASE_SHA="$(git -C "$LOAD_ROOT" rev-parse --short "$rev^{commit}")"
    for s in $BASELINE_SERVERS; do NAMES+=("$s@$BASE_SHA"); BINS[$s@$BASE_SHA]="$BASE_BIN"; done
done

# Sum of the `totals:` of the callgrind files of every thread but the first
# (the main thread is the client).
server_ir() {
    local prefix="$1" total=0 f v
    for f in "$prefix"-*; do
        case "$f" in *-01) continue ;; esac
        v="$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$f" | head -1)"
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

callgrind() {
    local name="$1" workload="$2" n="$3" prefix="$OUT/callgrind/$1.$2.$3"
    mkdir -p "$OUT/callgrind"
    rm -f "$prefix"-*
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$prefix" \
        "${BINS[$name]}" count "${name%@*}" "$workload" "$n" "$WARM_UP" \
        >"$prefix.log" 2>&1 || { log "callgrind failed: $prefix.log"; echo 0; return; }
    server_ir "$prefix"
}

printf 'server\tworkload\tallocs_per_request\talloc_bytes_per_request\tinstructions_per_request\tclient\n' >"$OUT/counts.tsv"
for workload in $WORKLOADS; do
    for name in "${NAMES[@]}"; do
        line="$("${BINS[$name]}" count "${name%@*}" "$workload" "$N" "$WARM_UP")"
        echo "$line" >>"$OUT/count.log"
        allocs="$(sed -n 's/.*server_allocs_per_request=\([0-9.]*\).*/\1/p' <<<"$line")"
        bytes="$(sed -n 's/.*server_alloc_bytes_per_request=\([0-9.]*\).*/\1/p' <<<"$line")"
        client="$(sed -n 's/.* responses=\([0-9]*\) connections=\([0-9]*\) write_errors=\([0-9]*\) resets=\([0-9]*\) lost=\([0-9]*\).*/responses \1, connections \2, write errors \3, resets \4, lost \5/p' <<<"$line")"
        ir="-"
        if command -v valgrind >/dev/null; then
            a="$(callgrind "$name" "$workload" 0)"
            b="$(callgrind "$name" "$workload" "$N")"
            ir="$(awk -v a="$a" -v b="$b" -v n="$N" 'BEGIN { printf "%.0f", (b - a) / n }')"
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$workload" "$allocs" "$bytes" "$ir" "$client" >>"$OUT/counts.tsv"
        log "$workload $name: $allocs allocations ($bytes bytes), $ir instructions per request; $client"
    done
done

if [ "$DHAT" = 1 ] && command -v valgrind >/dev/null; then
    mkdir -p "$OUT/dhat"
    for workload in $WORKLOADS; do
        args=()
        for name in "${NAMES[@]}"; do
            for n in 0 "$DHAT_N"; do
                valgrind --tool=dhat --dhat-out-file="$OUT/dhat/$name.$workload.$n.json" \
                    "${BINS[$name]}" count "${name%@*}" "$workload" "$n" "$WARM_UP" \
                    >"$OUT/dhat/$name.$workload.$n.log" 2>&1 || log "dhat failed: $name $workload $n"
            done
            args+=("$name" "$OUT/dhat/$name.$workload.0.json" "$OUT/dhat/$name.$workload.$DHAT_N.json")
        done
        { echo; echo "Allocation sites per request, $workload (DHAT, $DHAT_N requests):"; echo
          python3 "$LOAD_HERE/dhat_sites.py" "$DHAT_N" "${args[@]}"; } | tee "$OUT/dhat-$workload.md"
    done
fi

python3 - "$OUT/counts.tsv" <<'EOF' | tee "$OUT/counts.md"
import csv, sys
def n(x):
    return f"{x:,.0f}".replace(",", "\u202f")
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = {(r["server"], r["workload"]): r for r in rows}
def bare_twin(server):
    name = server.split("@")[0]
    return "axum-bare" if name.startswith("axum") else "auto-bare" if name.startswith("auto") else "plain"
print("| workload | server | allocations / request | bytes asked / request | instructions / request (server threads, user space) | added to its bare twin (`plain`; `axum-bare` for axum rows, `auto-bare` for auto rows) |")
print("|---|---|---|---|---|---|")
for r in rows:
    b = by.get((bare_twin(r["server"]), r["workload"]))
    ir = r["instructions_per_request"]
    has_ir = ir not in ("-", "")
    added = ""
    if b and r is not b:
        added = f'{float(r["allocs_per_request"]) - float(b["allocs_per_request"]):+.2f} allocations'
        if has_ir and b["instructions_per_request"] not in ("-", ""):
            added += f', {int(ir) - int(b["instructions_per_request"]):+d} instructions'
    print(f'| {r["workload"]} | {r["server"]} | {r["allocs_per_request"]} | {n(float(r["alloc_bytes_per_request"]))} | {n(int(ir)) if has_ir else ir} | {added} |')
EOF
log "results in $OUT"
