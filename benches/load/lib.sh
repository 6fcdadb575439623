# Shared by run.sh, sendfirst.sh, count.sh and profile.sh (sourced, not run).
#
# build_load_bin REV_OR_EMPTY PROFILE_TARGET_DIR
#   Builds the `load` bench binary (bench profile, feature axum) and prints its
#   path. Empty REV: this working tree. A git revision: that revision's crate,
#   extracted with `git archive` into target/load-src/SHA, with THIS tree's
#   benches/load harness copied in (so both sides run the same servers and
#   client), built in PROFILE_TARGET_DIR/load-base: cargo names the artifacts
#   of a path package without its path, so the two `linger` crates must not
#   share a target directory. Extra cargo settings come from the environment (RUSTFLAGS,
#   CARGO_PROFILE_BENCH_DEBUG: see profile.sh).

LOAD_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOAD_ROOT="$(cd "$LOAD_HERE/../.." && pwd)"

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Prints the executable that cargo built for the `load` bench target.
cargo_load_bin() {
    local manifest="$1" target_dir="$2"
    CARGO_TARGET_DIR="$target_dir" cargo build --manifest-path "$manifest" \
        --profile bench --bench load --features "${LOAD_FEATURES:-axum}" --message-format=json \
        | python3 -c '
import json, sys
exe = None
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") == "compiler-message":
        rendered = msg.get("message", {}).get("rendered")
        if rendered and msg["message"].get("level") == "error":
            sys.stderr.write(rendered)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
            and msg["target"]["name"] == "load":
        exe = msg["executable"]
if not exe:
    sys.exit("no load executable was built")
print(exe)
'
}

build_load_bin() {
    local rev="$1" target_dir="$2"
    if [ -z "$rev" ]; then
        log "building the load servers of this tree ($(git -C "$LOAD_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$LOAD_ROOT" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ', with uncommitted changes'))"
        cargo_load_bin "$LOAD_ROOT/Cargo.toml" "$target_dir"
        return
    fi
    local sha src
    sha="$(git -C "$LOAD_ROOT" rev-parse --verify --short "$rev^{commit}")" \
        || die "unknown revision $rev"
    src="$LOAD_ROOT/target/load-src/$sha"
    if [ ! -f "$src/Cargo.toml" ]; then
        log "extracting $rev ($sha) into $src"
        mkdir -p "$src"
        git -C "$LOAD_ROOT" archive "$sha" | tar -x -C "$src"
    fi
    # This tree's harness, whatever the revision had.
    rm -rf "$src/benches/load"
    mkdir -p "$src/benches"
    cp -r "$LOAD_HERE" "$src/benches/load"
    if ! grep -q 'benches/load/main.rs' "$src/Cargo.toml"; then
        printf '\n[[bench]]\nname = "load"\npath = "benches/load/main.rs"\nharness = false\n' \
            >>"$src/Cargo.toml"
    fi
    log "building the load servers of $rev ($sha)"
    # A target directory of its own per revision: cargo names a path
    # package's artifacts without its path, so in a shared one two `linger`
    # crates would take turns in one rlib, and a build of either could link
    # the other. Seeded from another revision's, for its dependencies.
    local dir="$target_dir/load-base-$sha" seed
    if [ ! -d "$dir" ]; then
        for seed in "$target_dir"/load-base "$target_dir"/load-base-* "$target_dir"; do
            if [ -d "$seed/release" ]; then
                mkdir -p "$dir"
                cp -a "$seed/release" "$dir/release"
                break
            fi
        done
    fi
    cargo_load_bin "$src/Cargo.toml" "$dir"
}

# nginx_prepare DIR PORT: writes DIR/nginx.conf from benches/load/nginx.conf
# (listening on 127.0.0.1:PORT) and the 8 MiB file that answers POST /big.
# PORT may carry listen options ("18380 http2", "18380 ssl http2"); with
# NGINX_TLS_CERT and NGINX_TLS_KEY set (PEM files), the config names them as
# ssl_certificate and ssl_certificate_key, and adds TLSv1.3 to ssl_protocols
# (nginx before 1.23.4 offers only up to TLSv1.2 by default; with it, h2load
# gets TLSv1.3 as from the Rust servers). Start nginx with: nginx -p DIR -c DIR/nginx.conf. Started as root, nginx's
# worker runs as nobody: DIR and its parent (the script's mktemp -d, mode
# 700) are made traversable so that it can open the file.
nginx_prepare() {
    local dir="$1" port="$2"
    mkdir -p "$dir/www"
    chmod go+x "$(dirname "$dir")" "$dir" "$dir/www"
    local tls=()
    if [ -n "${NGINX_TLS_CERT:-}" ]; then
        tls=(-e "s#^\( *\)\# @TLS@.*#\1ssl_certificate $NGINX_TLS_CERT;\n\1ssl_certificate_key $NGINX_TLS_KEY;\n\1ssl_protocols TLSv1.2 TLSv1.3;#")
    fi
    sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#g" "${tls[@]}" "$LOAD_HERE/nginx.conf" >"$dir/nginx.conf"
    [ -f "$dir/www/big" ] || head -c $((8 * 1024 * 1024)) /dev/zero | tr '\0' x >"$dir/www/big"
}

# Waits until something accepts on 127.0.0.1:$1 (at most 10 s).
wait_port() {
    local port="$1" i
    for i in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# CPU time (ns) of process $1 and its children, all threads, from schedstat.
cpu_ns() {
    local pid="$1" total=0 p t v
    for p in "$pid" $(pgrep -P "$pid" 2>/dev/null); do
        for t in /proc/"$p"/task/*/schedstat; do
            read -r v _ <"$t" 2>/dev/null || continue
            total=$((total + v))
        done
    done
    echo "$total"
}

# Busy and total jiffies of CPU $1 from /proc/stat (user..steal; guest is in user).
cpu_jiffies() {
    awk -v cpu="cpu$1" '$1 == cpu {
        total = 0; for (i = 2; i <= 9; i++) total += $i
        print total - $5 - $6, total }' /proc/stat
}

# --- Servers, for run.sh and sendfirst.sh -----------------------------------
#
# start_servers: builds the `load` binary (BIN; BASE_BIN and BASE_SHA by
#   revision with BASELINE_REV, which may list several), then starts every
#   server of SERVERS (and BASELINE_SERVERS of each BASELINE_REV), each on its own port from PORT_BASE, pinned to
#   SERVER_CPU, and stops them all on exit. Fills NAMES (the table's rows, in
#   order), PORT and PID by name. Needs OUT and TMP; SERVER_ENV is added to
#   the Rust servers' environment.
# start_server NAME PORT: (re)starts one of them.
# machine_facts: the lines of machine.txt that every harness prints.

PIDS=()
stop_servers() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}

NAMES=()
declare -A KIND ARG PORT PID BASE_BIN BASE_SHA
add_server() { NAMES+=("$1"); KIND[$1]="$2"; ARG[$1]="$3"; }

start_server() {
    local name="$1" port="$2" mode="${1%@*}"
    case "${KIND[$name]}" in
        rust)
            # shellcheck disable=SC2086 # SERVER_ENV is a list of NAME=value words
            env $SERVER_ENV taskset -c "$SERVER_CPU" "${ARG[$name]}" serve "$mode" "127.0.0.1:$port" \
                >"$OUT/server-$name.log" 2>&1 &
            ;;
        nginx)
            nginx_prepare "$TMP/nginx" "$port${NGINX_LISTEN:+ $NGINX_LISTEN}"
            taskset -c "$SERVER_CPU" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" \
                >"$OUT/server-nginx.log" 2>&1 &
            ;;
        go)
            taskset -c "$SERVER_CPU" "$TMP/goserver" "127.0.0.1:$port" \
                >"$OUT/server-go.log" 2>&1 &
            ;;
    esac
    PID[$name]=$!
    PIDS+=("$!")
    wait_port "$port" || die "$name did not start on port $port (see $OUT/server-$name.log)"
}

start_servers() {
    trap stop_servers EXIT
    trap 'exit 130' INT TERM
    BIN="$(build_load_bin "" "${CARGO_TARGET_DIR:-$LOAD_ROOT/target}")"
    local rev
    for rev in $BASELINE_REV; do
        BASE_BIN[$rev]="$(build_load_bin "$rev" "${CARGO_TARGET_DIR:-$LOAD_ROOT/target}")"
        BASE_SHA[$rev]="$(git -C "$LOAD_ROOT" rev-parse --short "$rev^{commit}")"
    done
    local s name i=0
    for s in $SERVERS; do
        case "$s" in
            nginx)
                if command -v nginx >/dev/null; then add_server nginx nginx -
                else log "nginx not installed: it is skipped"; fi ;;
            go)
                if command -v go >/dev/null; then
                    log "building the Go server"
                    (cd "$LOAD_HERE/go" && GOFLAGS=-mod=mod go build -o "$TMP/goserver" main.go) \
                        || die "go build failed"
                    add_server go go -
                else log "go not installed: it is skipped"; fi ;;
            *) add_server "$s" rust "$BIN" ;;
        esac
    done
    for rev in $BASELINE_REV; do
        for s in $BASELINE_SERVERS; do add_server "$s@${BASE_SHA[$rev]}" rust "${BASE_BIN[$rev]}"; done
    done
    for name in "${NAMES[@]}"; do
        PORT[$name]=$((PORT_BASE + i))
        i=$((i + 1))
        start_server "$name" "${PORT[$name]}"
        log "started $name on 127.0.0.1:${PORT[$name]} (pid ${PID[$name]})"
    done
}

machine_facts() {
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "commit: $(git -C "$LOAD_ROOT" rev-parse --short HEAD)$(git -C "$LOAD_ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)')"
    local rev
    for rev in $BASELINE_REV; do echo "baseline: $rev = ${BASE_SHA[$rev]:-$rev}"; done
    echo "nproc: $(nproc)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
    echo "kernel: $(uname -sr)"
    command -v nginx >/dev/null && echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //')"
    command -v go >/dev/null && echo "go: $(go version | cut -d' ' -f3)"
    echo "rustc: $(rustc --version)"
    [ -n "$SERVER_ENV" ] && echo "Rust servers' environment: $SERVER_ENV"
    return 0
}
