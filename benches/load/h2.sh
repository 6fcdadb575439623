#!/usr/bin/env bash
# HTTP/2 side by side (issue 22, item 3): the README's set-ups over h2c (or
# TLS, TLS=1) against the same servers without linger and against nginx,
# under h2load.
# Not run in CI. See README.md here.
#
#   benches/load/h2.sh                                   # defaults below (~6 min)
#   WORKLOADS=ignore64 SERVERS="auto auto-bare" benches/load/h2.sh
#   SERVER_ENV="LOAD_NODELAY=1" benches/load/h2.sh       # with TCP_NODELAY
#   TLS=1 benches/load/h2.sh                             # over TLS: auto, auto-bare, nginx
#
# Needs: h2load (nghttp2-client), taskset, python3, cargo; optional nginx
# (nginx-light): `apt-get install -y nghttp2-client nginx-light`; with TLS=1
# also openssl (nginx's certificate).
#
# Servers (the `load` binary built with axum's `http2` feature, so that
# axum::serve speaks HTTP/2 as an application enabling it would):
#   auto       the README's hyper form for HTTP/1 and HTTP/2 on one port:
#              LingeringListener + DrainBodyLayer, hyper-util's auto builder
#   auto-bare  the same loop without linger
#   axum-around the README's axum quick start (the layer around the router),
#              axum::serve with `http2`
#   axum       the README's other axum form, `Router::layer`
#   axum-bare  the same router without linger
#   nginx      `listen ... http2` (h2c), the config of run.sh
# Workloads: get (GET /), read16 (POST /read, 16 KiB read whole),
# ignore64 and ignore1m (POST /ignore, 64 KiB and 1 MiB never read).
#
# TLS=1: HTTP/2 over TLS (h2 by ALPN, h2load's https:// URLs) instead of h2c.
# The `auto` servers get LOAD_TLS=1: a self-signed certificate made at start
# with rcgen (ECDSA P-256), ALPN h2 and http/1.1; `auto` as the README advises
# for TLS (examples/hyper_auto_tls.rs): LingeringListener wraps the TCP
# stream under tokio-rustls, the handshake runs in the connection's task.
# nginx listens with `ssl http2` on its port, with an openssl-made P-256
# certificate in OUT/tls (nginx's default TLS settings, TLSv1.3 added). The
# axum servers are left out (axum::serve has no TLS; with axum-server the
# set-up is another one), from SERVERS and BASELINE_SERVERS alike. At the end each `auto`
# server's log (OUT/server-auto.log) holds LingeringListener::stats(), and
# machine.txt the TLS version, cipher and ALPN protocol h2load got from each
# server.
#
# Method as run.sh: every server at once, pinned to SERVER_CPU, h2load (one
# thread, CLIENTS connections x STREAMS concurrent streams, DURATION s) on
# CLIENT_CPU; each round runs every workload against every server in turn,
# the order rotated by one each round. Reported: req/s (median of rounds),
# the median of per-round ratios to the twin without linger, requests that
# did not end with a response (h2load's failed + errored + timeout) and
# non-2xx answers, and the server's CPU time per request.
set -euo pipefail

# shellcheck source=benches/load/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-3}"
CLIENTS="${CLIENTS:-8}"
STREAMS="${STREAMS:-10}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
TLS="${TLS:-0}"
if [ "$TLS" = 1 ]; then
    SERVERS="${SERVERS:-auto-bare auto nginx}"
else
    SERVERS="${SERVERS:-auto-bare auto axum-bare axum-around nginx}"
fi
WORKLOADS="${WORKLOADS:-get read16 ignore64 ignore1m}"
BASELINE_REV="${BASELINE_REV:-}"
BASELINE_SERVERS="${BASELINE_SERVERS:-auto axum}"
PAUSE="${PAUSE:-1}"
PORT_BASE="${PORT_BASE:-18380}"
SERVER_ENV="${SERVER_ENV:-}"
OUT="${OUT:-$LOAD_ROOT/target/load/h2$([ "$TLS" = 1 ] && echo -tls)-$(date -u +%Y%m%dT%H%M%SZ)}"
export LOAD_FEATURES="axum,axum/http2"
NGINX_LISTEN="http2"
SCHEME=http
TRANSPORT="h2c, prior knowledge"

command -v h2load >/dev/null || die "h2load not found: apt-get install -y nghttp2-client"
command -v taskset >/dev/null || die "taskset not found (util-linux)"
mkdir -p "$OUT"
TMP="$(mktemp -d)"
OUT="$(cd "$OUT" && pwd)"

if [ "$TLS" = 1 ]; then
    # Without the axum servers: axum::serve has no TLS.
    without_axum() {
        local s kept=()
        for s in $1; do
            case "${s%@*}" in
                axum*) log "TLS=1: $s is left out (axum::serve has no TLS)" ;;
                *) kept+=("$s") ;;
            esac
        done
        echo "${kept[*]}"
    }
    SERVERS="$(without_axum "$SERVERS")"
    BASELINE_SERVERS="$(without_axum "$BASELINE_SERVERS")"
    SERVER_ENV="${SERVER_ENV:+$SERVER_ENV }LOAD_TLS=1"
    NGINX_LISTEN="ssl http2"
    SCHEME=https
    TRANSPORT="TLS, h2 by ALPN"
    command -v openssl >/dev/null || die "openssl not found (nginx's certificate)"
    mkdir -p "$OUT/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
        -subj /CN=localhost -keyout "$OUT/tls/key.pem" -out "$OUT/tls/cert.pem" 2>/dev/null \
        || die "openssl could not make nginx's certificate"
    export NGINX_TLS_CERT="$OUT/tls/cert.pem" NGINX_TLS_KEY="$OUT/tls/key.pem"
fi

start_servers

for kib in 16 64 1024; do
    head -c $((kib * 1024)) /dev/zero | tr '\0' x >"$TMP/body$kib"
done

{
    machine_facts
    echo "h2load: $(h2load --version | head -1)"
    echo "transport: $TRANSPORT"
    echo "setting: h2load -t1 -c$CLIENTS -m$STREAMS -D $DURATION ($TRANSPORT), server on CPU $SERVER_CPU, h2load on CPU $CLIENT_CPU, $ROUNDS rounds"
    echo "load at start: $(cat /proc/loadavg)"
} | tee "$OUT/machine.txt" >&2

# Over TLS: what each server negotiated (one GET), and that it is h2.
if [ "$TLS" = 1 ]; then
    for name in "${NAMES[@]}"; do
        got="$(h2load -n1 -c1 "https://127.0.0.1:${PORT[$name]}/" 2>&1 \
            | sed -n 's/^\(TLS Protocol\|Cipher\|Server Temp Key\|Application protocol\): //p' | paste -sd' ')"
        echo "tls $name: ${got:-no TLS session}" | tee -a "$OUT/machine.txt" >&2
        [ "${got##* }" = h2 ] || die "$name did not negotiate h2 over TLS: ${got:-nothing}"
    done
fi

RESULTS="$OUT/results.tsv"
printf 'round\tworkload\tserver\tdone\tsucceeded\tfailed\terrored\ttimeout\tstarted\tduration_s\tnon2xx\tserver_cpu_ns\n' >"$RESULTS"

# The path and body of a workload.
target() {
    case "$1" in
        get) echo "/ -" ;;
        read16) echo "/read $TMP/body16" ;;
        ignore64) echo "/ignore $TMP/body64" ;;
        ignore1m) echo "/ignore $TMP/body1024" ;;
        *) die "unknown workload $1" ;;
    esac
}

# One h2load run; prints "done succeeded failed errored timeout started duration non2xx".
h2_run() {
    local name="$1" workload="$2" path body args=()
    read -r path body < <(target "$workload")
    [ "$body" = - ] || args+=(-d "$body")
    taskset -c "$CLIENT_CPU" timeout $((DURATION + 60)) h2load -t1 -c"$CLIENTS" -m"$STREAMS" \
        -D "$DURATION" "${args[@]}" "$SCHEME://127.0.0.1:${PORT[$name]}$path" 2>&1 \
        | tee -a "$OUT/h2load-$name-$workload.log" | python3 -c '
import re, sys
text = sys.stdin.read()
m = re.search(r"finished in ([\d.]+)(m?s)", text)
r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
if not (m and r and s):
    sys.exit(0)
secs = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
total, started, done, ok, failed, errored, timeout = map(int, r.groups())
non2xx = sum(map(int, s.groups()[1:]))
print(done, ok, failed, errored, timeout, started, secs, non2xx)
'
}

n=${#NAMES[@]}
for round in $(seq 1 "$ROUNDS"); do
    log "round $round/$ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    for workload in $WORKLOADS; do
        for k in $(seq 0 $((n - 1))); do
            name="${NAMES[$(((k + round - 1) % n))]}"
            cpu0="$(cpu_ns "${PID[$name]}")"
            fields="$(h2_run "$name" "$workload")"
            cpu1="$(cpu_ns "${PID[$name]}")"
            if [ -z "$fields" ]; then
                log "  $workload $name: h2load printed no result (see $OUT/h2load-$name-$workload.log)"
                continue
            fi
            read -r done ok failed errored timeout started secs non2xx <<<"$fields"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$workload" "$name" \
                "$done" "$ok" "$failed" "$errored" "$timeout" "$started" "$secs" "$non2xx" \
                "$((cpu1 - cpu0))" >>"$RESULTS"
            log "  $workload $name: $(awk -v d="$done" -v s="$secs" 'BEGIN { printf "%.0f req/s", d / s }'), failed/errored/timeout $failed/$errored/$timeout, non-2xx $non2xx"
            sleep "$PAUSE"
        done
    done
done
echo "load at end: $(cat /proc/loadavg)" | tee -a "$OUT/machine.txt" >&2

python3 "$LOAD_HERE/h2_summary.py" "$RESULTS" "$OUT/machine.txt" | tee "$OUT/summary.md"
log "raw results in $OUT"
