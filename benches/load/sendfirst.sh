#!/usr/bin/env bash
# Clients that send the whole body before they read (issue 11, item 2): the
# time to the whole 8 MiB answer of POST /big, on every server of the harness
# side by side. Not run in CI. See README.md here.
#
#   benches/load/sendfirst.sh                       # defaults below
#   ROUNDS=1 TIMEOUT=5 benches/load/sendfirst.sh    # a quick look
#   BASELINE_REV=d39598f benches/load/sendfirst.sh  # + the linger servers of d39598f
#   SERVERS="both nginx" CLIENTS=python benches/load/sendfirst.sh
#
# Needs: taskset, python3, cargo; optional nginx (nginx-light) and go
# (golang-go); `requests` for CLIENTS=requests.
#
# Method: every server runs at the same time on its own port, pinned to
# SERVER_CPU; the client, pinned to CLIENT_CPU, opens one connection per
# round, writes POST /big with a body of BODIES_MIB MiB whole, and only then
# reads the 8 MiB answer (no server reads the body: the handler ignores it).
# Clients: `load sendfirst` (a blocking std TcpStream, sendfirst.rs), Python's
# http.client and `requests` (sendfirst.py). Each round runs every body size
# against every server and client in turn, the order of servers rotated by
# one each round. A round that takes longer than TIMEOUT seconds (the
# client's write or read timeout) is a deadlock: the server waits to write,
# the client waits to send.
set -euo pipefail

# shellcheck source=benches/load/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-5}"
BODIES_MIB="${BODIES_MIB:-4 32}"
TIMEOUT="${TIMEOUT:-20}"
SERVERS="${SERVERS:-plain both axum nginx go}"
CLIENTS="${CLIENTS:-load python}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
BASELINE_REV="${BASELINE_REV:-}"
BASELINE_SERVERS="${BASELINE_SERVERS:-both axum}"
PAUSE="${PAUSE:-0.5}"
PORT_BASE="${PORT_BASE:-18280}"
OUT="${OUT:-$LOAD_ROOT/target/load/sendfirst-$(date -u +%Y%m%dT%H%M%SZ)}"
# Extra environment of the Rust servers (e.g. RUST_LOG=...).
SERVER_ENV="${SERVER_ENV:-}"

command -v taskset >/dev/null || die "taskset not found (util-linux)"
command -v python3 >/dev/null || die "python3 not found"
for c in $CLIENTS; do
    case "$c" in
        load | python) ;;
        requests) python3 -c 'import requests' 2>/dev/null \
            || die "CLIENTS=requests needs the requests library: pip install requests" ;;
        *) die "unknown client $c (load, python, requests)" ;;
    esac
done
mkdir -p "$OUT"
TMP="$(mktemp -d)"
OUT="$(cd "$OUT" && pwd)"

start_servers

# --- Machine ---------------------------------------------------------------

{
    machine_facts
    echo "tcp_rmem: $(sysctl -n net.ipv4.tcp_rmem | tr -s '\t ' ' '), tcp_wmem: $(sysctl -n net.ipv4.tcp_wmem | tr -s '\t ' ' ')"
    echo "python: $(python3 -c 'import sys; print(sys.version.split()[0])')"
    echo "setting: POST /big (8 MiB answer), bodies of $BODIES_MIB MiB sent whole before reading, clients: $CLIENTS, timeout ${TIMEOUT} s, server on CPU $SERVER_CPU, client on CPU $CLIENT_CPU, $ROUNDS rounds"
    echo "load at start: $(cat /proc/loadavg)"
} | tee "$OUT/machine.txt" >&2

# --- Runs ------------------------------------------------------------------

RESULTS="$OUT/results.tsv"
printf 'round\tbody\tserver\tclient\tstatus\tclose\twhole\twhole_ms\tsent_ms\twrite\treceived\tend\n' >"$RESULTS"

# One round of one client against one server; prints its SENDFIRST fields.
client_run() {
    local name="$1" client="$2" bytes="$3" addr="127.0.0.1:${PORT[$1]}"
    case "$client" in
        load) taskset -c "$CLIENT_CPU" "$BIN" sendfirst "$addr" "$bytes" 1 "$TIMEOUT" ;;
        python) taskset -c "$CLIENT_CPU" python3 "$LOAD_HERE/sendfirst.py" \
            "$addr" "$bytes" 1 "$TIMEOUT" http.client ;;
        requests) taskset -c "$CLIENT_CPU" python3 "$LOAD_HERE/sendfirst.py" \
            "$addr" "$bytes" 1 "$TIMEOUT" requests ;;
    esac 2>>"$OUT/client-$name-$client.log" | sed -n 's/^SENDFIRST //p'
}

n=${#NAMES[@]}
for round in $(seq 1 "$ROUNDS"); do
    log "round $round/$ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    for mib in $BODIES_MIB; do
        bytes=$((mib * 1024 * 1024))
        for k in $(seq 0 $((n - 1))); do
            name="${NAMES[$(((k + round - 1) % n))]}"
            for client in $CLIENTS; do
                fields="$(client_run "$name" "$client" "$bytes" || true)"
                if [ -z "$fields" ]; then
                    log "  ${mib} MiB $name $client: no result (see $OUT/client-$name-$client.log)"
                    continue
                fi
                declare -A f=()
                for kv in $fields; do f[${kv%%=*}]="${kv#*=}"; done
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
                    "$round" "$bytes" "$name" "$client" "${f[status]}" "${f[close]}" \
                    "${f[whole]}" "${f[whole_ms]}" "${f[sent_ms]}" "${f[write]}" \
                    "${f[received]}" "${f[end]}" >>"$RESULTS"
                log "  ${mib} MiB $name $client: status ${f[status]}, whole ${f[whole]} in ${f[whole_ms]} ms, write ${f[write]}, end ${f[end]}"
                unset f
                sleep "$PAUSE"
            done
        done
    done
done
echo "load at end: $(cat /proc/loadavg)" | tee -a "$OUT/machine.txt" >&2

python3 "$LOAD_HERE/sendfirst_table.py" "$RESULTS" "$OUT/machine.txt" "$TIMEOUT" | tee "$OUT/summary.md"
log "raw results in $OUT"
