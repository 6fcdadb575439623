#!/usr/bin/env bash
# Where a workload's time goes on each server (deliverable 1 of issue 14).
#
#   benches/load/profile.sh                          # rej64 on plain drain linger both
#   SERVERS="both nginx go" WORKLOAD=get_close benches/load/profile.sh
#   BASELINE_REV=d39598f SERVERS="both both@d39598f" benches/load/profile.sh
#
# For each server, under the same wrk load as run.sh (server pinned to
# SERVER_CPU, wrk to CLIENT_CPU, CONNECTIONS connections, one thread):
#   1. system calls per request: `perf stat` on the syscall tracepoints of the
#      server process (cheap, unlike strace), divided by wrk's request count;
#      also context switches and the server's CPU time per request;
#   2. a CPU profile: `perf record --call-graph dwarf` (the Rust servers are
#      built with line tables and frame pointers, in target/load-prof; DWARF
#      unwinding also sees through libc's recv, malloc and memcpy, which have
#      no frame pointers), broken down by breakdown.py into the cost centres
#      of the closing path, in µs per request.
# Needs perf (linux-perf), wrk, taskset, python3; nginx and go optional.
set -euo pipefail

# shellcheck source=benches/load/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-5s}"
CONNECTIONS="${CONNECTIONS:-16}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
SERVERS="${SERVERS:-plain drain linger both}"
WORKLOAD="${WORKLOAD:-rej64}"
BASELINE_REV="${BASELINE_REV:-}"
FREQ="${FREQ:-1999}"
# Extra environment of the Rust servers, e.g.
# SERVER_ENV="GLIBC_TUNABLES=glibc.malloc.trim_threshold=268435456".
SERVER_ENV="${SERVER_ENV:-}"
PORT="${PORT:-18180}"
OUT="${OUT:-$LOAD_ROOT/target/load/profile-$(date -u +%Y%m%dT%H%M%SZ)}"

command -v perf >/dev/null || die "perf not found"
command -v wrk >/dev/null || die "wrk not found"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
TMP="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PROF_DIR="$LOAD_ROOT/target/load-prof"
export RUSTFLAGS="-C force-frame-pointers=yes"
export CARGO_PROFILE_BENCH_DEBUG=line-tables-only
BIN="$(build_load_bin "" "$PROF_DIR")"
BASE_BIN=""
if [ -n "$BASELINE_REV" ]; then
    BASE_BIN="$(build_load_bin "$BASELINE_REV" "$PROF_DIR")"
    BASE_SHA="$(git -C "$LOAD_ROOT" rev-parse --short "$BASELINE_REV^{commit}")"
fi
unset RUSTFLAGS CARGO_PROFILE_BENCH_DEBUG

SYSCALLS="accept4 recvfrom read readv recvmsg write writev sendto sendmsg sendfile shutdown close epoll_wait epoll_pwait epoll_ctl futex setsockopt getsockopt ioctl sched_yield nanosleep clock_nanosleep mmap munmap madvise"
EVENTS="raw_syscalls:sys_enter,context-switches,cpu-migrations,page-faults"
TRACEPOINTS="$(perf list 2>/dev/null || true)"
for s in $SYSCALLS; do
    if grep -q "syscalls:sys_enter_$s " <<<"$TRACEPOINTS"; then
        EVENTS="$EVENTS,syscalls:sys_enter_$s"
    fi
done

start() {
    local name="$1" mode="${1%@*}" bin="$BIN"
    case "$name" in *@*) bin="$BASE_BIN" ;; esac
    case "$mode" in
        nginx)
            nginx_prepare "$TMP/nginx" "$PORT"
            taskset -c "$SERVER_CPU" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
            ;;
        go)
            [ -x "$TMP/goserver" ] || (cd "$LOAD_HERE/go" && go build -o "$TMP/goserver" main.go)
            taskset -c "$SERVER_CPU" "$TMP/goserver" "127.0.0.1:$PORT" &
            ;;
        # shellcheck disable=SC2086 # SERVER_ENV is a list of NAME=value words
        *) env $SERVER_ENV taskset -c "$SERVER_CPU" "$bin" serve "$mode" "127.0.0.1:$PORT" & ;;
    esac
    SERVER_PID=$!
    wait_port "$PORT" || die "$name did not start"
}

stop() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    sleep 1
}

# The process whose threads do the work: nginx's worker, else the server.
work_pid() {
    case "$1" in
        nginx) pgrep -P "$SERVER_PID" | head -1 ;;
        *) echo "$SERVER_PID" ;;
    esac
}

run_wrk() {
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$1" --timeout 2s \
        -s "$LOAD_HERE/wrk/$WORKLOAD.lua" "http://127.0.0.1:$PORT/" | sed -n 's/^LOADRESULT //p'
}

field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$2"; }

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "commit: $(git -C "$LOAD_ROOT" rev-parse --short HEAD)"
    [ -n "$SERVER_ENV" ] && echo "server environment: $SERVER_ENV"
    echo "workload: $WORKLOAD, wrk -t1 -c$CONNECTIONS -d$DURATION, server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU"
    echo "load at start: $(cat /proc/loadavg)"
} | tee "$OUT/machine.txt" >&2

for name in $SERVERS; do
    case "$name" in nginx) command -v nginx >/dev/null || { log "no nginx: skipped"; continue; } ;; esac
    case "$name" in go) command -v go >/dev/null || { log "no go: skipped"; continue; } ;; esac
    dir="$OUT/$name"
    mkdir -p "$dir"
    log "$name: warm-up"
    start "$name"
    pid="$(work_pid "$name")"
    run_wrk 1s >/dev/null

    log "$name: system calls (perf stat)"
    perf stat -x, -e "$EVENTS" -p "$pid" -o "$dir/perf-stat.csv" &
    stat_pid=$!
    sleep 0.3
    cpu0="$(cpu_ns "$SERVER_PID")"
    result="$(run_wrk "$DURATION")"
    cpu1="$(cpu_ns "$SERVER_PID")"
    kill -INT "$stat_pid"; wait "$stat_pid" 2>/dev/null || true
    echo "$result" >"$dir/wrk-stat.txt"
    echo "server_cpu_ns=$((cpu1 - cpu0))" >>"$dir/wrk-stat.txt"

    log "$name: profile (perf record --call-graph dwarf, $FREQ Hz)"
    perf record -F "$FREQ" --call-graph dwarf,16384 -p "$pid" -o "$dir/perf.data" 2>"$dir/perf-record.log" &
    rec_pid=$!
    sleep 0.3
    cpu0="$(cpu_ns "$SERVER_PID")"
    result="$(run_wrk "$DURATION")"
    cpu1="$(cpu_ns "$SERVER_PID")"
    kill -INT "$rec_pid"; wait "$rec_pid" 2>/dev/null || true
    echo "$result" >"$dir/wrk-record.txt"
    echo "server_cpu_ns=$((cpu1 - cpu0))" >>"$dir/wrk-record.txt"
    stop

    perf script -i "$dir/perf.data" -F comm,tid,ip,sym,dso 2>/dev/null | gzip >"$dir/perf-script.txt.gz"
    perf report -i "$dir/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null \
        | grep -v '^$' | head -150 >"$dir/perf-report-self.txt" || true
    requests="$(field requests "$(cat "$dir/wrk-record.txt")")"
    python3 "$LOAD_HERE/breakdown.py" "$dir/perf-script.txt.gz" "$requests" \
        "$((cpu1 - cpu0))" >"$dir/breakdown.md"
done
log "load at end: $(cat /proc/loadavg)"
echo "load at end: $(cat /proc/loadavg)" >>"$OUT/machine.txt"

python3 "$LOAD_HERE/breakdown.py" --syscalls "$OUT" $SERVERS | tee "$OUT/syscalls.md"
python3 "$LOAD_HERE/breakdown.py" --table "$OUT" $SERVERS | tee "$OUT/side-by-side.md"
for name in $SERVERS; do
    if [ -f "$OUT/$name/breakdown.md" ]; then echo; echo "## $name"; cat "$OUT/$name/breakdown.md"; fi
done >"$OUT/breakdown.md"
log "results in $OUT"
