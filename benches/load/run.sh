#!/usr/bin/env bash
# Side-by-side load benchmark: the README's set-ups against plain hyper (and
# nginx and Go when installed) under wrk. Not run in CI. See README.md here.
#
#   benches/load/run.sh                         # defaults below
#   DURATION=5s ROUNDS=3 benches/load/run.sh    # issue 14's setting (the default)
#   BASELINE_REV=d39598f benches/load/run.sh    # + the linger servers of d39598f
#   SERVERS="plain both" WORKLOADS=rej64 benches/load/run.sh
#
# Needs: wrk, taskset, python3, cargo; optional nginx (nginx-light) and go
# (golang-go): `apt-get install -y wrk nginx-light golang-go`.
#
# Method: every server runs at the same time on its own port, pinned to
# SERVER_CPU; wrk (THREADS threads, CONNECTIONS connections) is pinned to
# CLIENT_CPU. Each round runs every workload against every server in turn
# (round-robin, the order of servers rotated by one each round), so that a
# disturbance hits all servers alike; the table gives the median of the
# rounds, and ratios against plain hyper are medians of per-round ratios.
# Besides wrk's req/s and socket errors, it records the server's own CPU time
# per request (all threads and processes, from /proc/<pid>/task/*/schedstat)
# and how busy the server's CPU was with anything else meanwhile.
set -euo pipefail

# shellcheck source=benches/load/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-5s}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-16}"
THREADS="${THREADS:-1}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
SERVERS="${SERVERS:-plain drain linger both axum nginx go}"
WORKLOADS="${WORKLOADS:-get_ka get_close ignore64 ignore256 rej64}"
BASELINE_REV="${BASELINE_REV:-}"
BASELINE_SERVERS="${BASELINE_SERVERS:-drain linger both axum}"
WARMUP="${WARMUP:-1s}"
# FRESH=1: a freshly started server for every run, warmed up with the same
# workload, so that no run inherits the allocator state of another workload
# (see README.md: glibc's thresholds move with what was freed before).
FRESH="${FRESH:-0}"
PAUSE="${PAUSE:-1}"
PORT_BASE="${PORT_BASE:-18080}"
OUT="${OUT:-$LOAD_ROOT/target/load/run-$(date -u +%Y%m%dT%H%M%SZ)}"
# Extra environment of the Rust servers (e.g. GLIBC_TUNABLES=...).
SERVER_ENV="${SERVER_ENV:-}"

command -v wrk >/dev/null || die "wrk not found: apt-get install -y wrk"
command -v taskset >/dev/null || die "taskset not found (util-linux)"
command -v python3 >/dev/null || die "python3 not found"
mkdir -p "$OUT"
TMP="$(mktemp -d)"
OUT="$(cd "$OUT" && pwd)"

start_servers

# --- Machine ---------------------------------------------------------------

{
    machine_facts
    echo "wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
    echo "setting: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU, $ROUNDS rounds$([ "$FRESH" = 1 ] && echo ', a fresh server per run')"
    echo "load at start: $(cat /proc/loadavg)"
} | tee "$OUT/machine.txt" >&2

# --- Runs ------------------------------------------------------------------

RESULTS="$OUT/results.tsv"
printf 'round\tworkload\tserver\trequests\tduration_us\tconnect\tread\twrite\ttimeout\tstatus\tp50_us\tp99_us\tserver_cpu_ns\tcpu_busy\tcpu_total\n' >"$RESULTS"

# One wrk run; prints its LOADRESULT fields as "k=v ..." or nothing.
wrk_run() {
    local name="$1" workload="$2" duration="$3"
    taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --timeout 2s \
        -s "$LOAD_HERE/wrk/$workload.lua" "http://127.0.0.1:${PORT[$name]}/" 2>&1 \
        | tee -a "$OUT/wrk-$name-$workload.log" | sed -n 's/^LOADRESULT //p'
}

if [ -n "$WARMUP" ] && [ "$WARMUP" != 0 ]; then
    log "warm-up: $WARMUP of get_ka and rej64 per server"
    for name in "${NAMES[@]}"; do
        for w in get_ka rej64; do wrk_run "$name" "$w" "$WARMUP" >/dev/null; done
    done
    sleep "$PAUSE"
fi

n=${#NAMES[@]}
for round in $(seq 1 "$ROUNDS"); do
    log "round $round/$ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    for workload in $WORKLOADS; do
        for k in $(seq 0 $((n - 1))); do
            name="${NAMES[$(((k + round - 1) % n))]}"
            if [ "$FRESH" = 1 ]; then
                kill "${PID[$name]}" 2>/dev/null || true
                wait "${PID[$name]}" 2>/dev/null || true
                start_server "$name" "${PORT[$name]}"
                if [ -n "$WARMUP" ] && [ "$WARMUP" != 0 ]; then
                    wrk_run "$name" "$workload" "$WARMUP" >/dev/null
                fi
            fi
            cpu0="$(cpu_ns "${PID[$name]}")"
            read -r busy0 total0 < <(cpu_jiffies "$SERVER_CPU")
            fields="$(wrk_run "$name" "$workload" "$DURATION")"
            read -r busy1 total1 < <(cpu_jiffies "$SERVER_CPU")
            cpu1="$(cpu_ns "${PID[$name]}")"
            if [ -z "$fields" ]; then
                log "  $workload $name: wrk printed no result (see $OUT/wrk-$name-$workload.log)"
                continue
            fi
            declare -A f=()
            for kv in $fields; do f[${kv%%=*}]="${kv#*=}"; done
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
                "$round" "$workload" "$name" "${f[requests]}" "${f[duration_us]}" \
                "${f[connect]}" "${f[read]}" "${f[write]}" "${f[timeout]}" "${f[status]}" \
                "${f[p50_us]}" "${f[p99_us]}" "$((cpu1 - cpu0))" \
                "$((busy1 - busy0))" "$((total1 - total0))" >>"$RESULTS"
            log "  $workload $name: $(awk -v r="${f[requests]}" -v d="${f[duration_us]}" \
                'BEGIN { printf "%.0f req/s", r * 1e6 / d }'), socket errors c/r/w/t ${f[connect]}/${f[read]}/${f[write]}/${f[timeout]}"
            unset f
            sleep "$PAUSE"
        done
    done
done
echo "load at end: $(cat /proc/loadavg)" | tee -a "$OUT/machine.txt" >&2

python3 "$LOAD_HERE/summarize.py" "$RESULTS" "$OUT/machine.txt" | tee "$OUT/summary.md"
log "raw results in $OUT"
