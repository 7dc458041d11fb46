#!/usr/bin/env bash
# Cache benchmark: Syncd's cache role (3 nodes, every one a cache peer) against Redis and memcached (1 node each),
# one service at a time, all on loopback, every one driven by the same load generator (`syncd-bench cache`: every
# key written once, then C clients GET and SET Zipf-distributed keys for a fixed time), in two mixes (95 % GET /
# 5 % SET and 50/50), printed side by side per mix (`syncd-bench compare`; Syncd is the baseline of the ratios).
#
# What "hit" means differs, and the tables say so: for Syncd, a GET answered from the asked node's own copy
# (`X-Cache: hit`), without asking another node; client i talks to node i mod 3, and a write takes the other
# nodes' copies away. Redis and memcached are remote stores: every GET is a network round trip to the one server,
# and their hit rate is only the share of GETs that found the key. Neither peer persists anything here (Redis with
# `--save '' --appendonly no`), like a cache.
#
# Settings (environment): CLIENTS (16,64), DURATION_S (10 per run), WARMUP_S (1), KEYS (10000), ZIPF (0.99),
# VALUE_BYTES (1024), MIXES (read percentages, one run per service each: "95 50"), CAPACITY (syncd lines per node;
# default KEYS, so the whole key set fits on every node), WRITE_THROUGH=1 (start syncd with
# --cache-write-through), SEED (1), BENCH_TMPDIR (/var/tmp: syncd's data directories), OUT
# (target/bench/cache-<time>), KEEP_DATA=1 (keep the data directories), READY_TIMEOUT_S (90: how long a syncd node
# may take to answer /readyz; a fresh cache node waits out its lease grace first),
# SYNCD_BIN and SYNCD_BENCH_BIN (use these binaries instead of building them),
# QUIET (e.g. 0.15: before each run, wait until the whole machine has used less than this many cores for 10 s in a
# row, for at most QUIET_MAX_WAIT s (1800); on a shared machine this keeps other work out of the measurements, and
# the "other processes" column of the CPU table shows what still got in),
# RUNS (which services, in order; the first is the baseline of the ratio column; default "syncd redis memcached").
# Peers that fail to install are skipped, with a message.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLIENTS=${CLIENTS:-16,64}
DURATION_S=${DURATION_S:-10}
WARMUP_S=${WARMUP_S:-1}
KEYS=${KEYS:-10000}
ZIPF=${ZIPF:-0.99}
VALUE_BYTES=${VALUE_BYTES:-1024}
MIXES=${MIXES:-95 50}
CAPACITY=${CAPACITY:-$KEYS}
WRITE_THROUGH=${WRITE_THROUGH:-0}
SEED=${SEED:-1}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-90}
BENCH_TMPDIR=${BENCH_TMPDIR:-/var/tmp}
OUT=${OUT:-$ROOT/target/bench/cache-$(date +%Y%m%d-%H%M%S)}
RUNS=${RUNS:-syncd redis memcached}

SYNCD_PORTS=(17280 17281 17282)
REDIS_PORT=16389
MEMCACHED_PORT=11311

log() { printf 'cache.sh: %s\n' "$*" >&2; }

# Busy CPU ticks of the whole machine (user nice system irq softirq steal), 100 per core-second.
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
wait_quiet() {
    [[ -z ${QUIET:-} ]] && return 0
    local limit quiet_for=0 waited=0 before after
    limit=$(awk -v q="$QUIET" 'BEGIN{print int(q*100)}')
    while ((quiet_for < 10)); do
        before=$(busy_ticks)
        sleep 1
        after=$(busy_ticks)
        if ((after - before < limit)); then quiet_for=$((quiet_for + 1)); else quiet_for=0; fi
        waited=$((waited + 1))
        if ((waited > ${QUIET_MAX_WAIT:-1800})); then log "the machine did not get quiet; running anyway"; return 0; fi
    done
    ((waited > 10)) && log "waited ${waited} s for a quiet machine"
    return 0
}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Everything the benchmark starts must listen on loopback only.
check_loopback() {
    local pid bad
    for pid in "$@"; do
        bad=$(ss -ltnpH | grep "pid=$pid," | awk '{print $4}' | grep -vE '^(127\.[0-9.]+|\[::1\]):[0-9]+$' || true)
        if [[ -n $bad ]]; then log "pid $pid listens beyond loopback: $bad"; return 1; fi
    done
}

# --- prerequisites ----------------------------------------------------------------------------------------------
have() {
    case $1 in
        syncd) return 0 ;;
        redis) command -v redis-server >/dev/null ;;
        memcached) command -v memcached >/dev/null ;;
    esac
}
package_of() { case $1 in redis) echo redis-server ;; memcached) echo memcached ;; esac; }

needed=()
for run in $RUNS; do
    case $run in syncd | redis | memcached) ;; *) log "unknown run $run"; exit 2 ;; esac
    if ! have "$run"; then needed+=("$run"); fi
done
if [[ ${#needed[@]} -gt 0 ]]; then
    log "installing from Debian packages: ${needed[*]}"
    apt-get update
    for peer in "${needed[@]}"; do
        DEBIAN_FRONTEND=noninteractive apt-get install -y "$(package_of "$peer")" ||
            log "could not install $(package_of "$peer"); its runs are skipped"
    done
fi
# Packaged services that their install started (where systemd runs) share the CPU with the benchmark: say so.
for spec in 6379:redis-server 11211:memcached; do
    port=${spec%%:*}
    comm=${spec#*:}
    for pid in $(ss -ltnpH "sport = :$port" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
        if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]]; then
            log "warning: a packaged $comm (pid $pid) runs on port $port; it shares the machine with the benchmark"
        fi
    done
done
for port in "${SYNCD_PORTS[@]}" $REDIS_PORT $MEMCACHED_PORT; do
    port_free "$port" || { log "port $port is already in use"; exit 1; }
done

wants_syncd=0
[[ " $RUNS " == *" syncd "* ]] && wants_syncd=1
if [[ $wants_syncd == 1 ]] && ! command -v curl >/dev/null; then
    apt-get update && apt-get install -y curl # the /readyz checks
fi
packages=()
[[ -z ${SYNCD_BENCH_BIN:-} ]] && packages+=(-p syncd-bench)
[[ $wants_syncd == 1 && -z ${SYNCD_BIN:-} ]] && packages+=(-p syncd)
if [[ ${#packages[@]} -gt 0 ]]; then
    # syncd-bench links etcd-client (the lock benchmark's peer), whose build needs protoc.
    command -v protoc >/dev/null || { apt-get update && apt-get install -y protobuf-compiler; }
    log "building ${packages[*]} (release)"
    (cd "$ROOT" && cargo build --release "${packages[@]}")
fi
SYNCD_BIN=${SYNCD_BIN:-$ROOT/target/release/syncd}
BENCH=${SYNCD_BENCH_BIN:-$ROOT/target/release/syncd-bench}

mkdir -p "$OUT"
WORK=$(mktemp -d "$BENCH_TMPDIR/syncd-bench-cache.XXXXXX")
log "data in $WORK, results in $OUT"
{
    if [[ $wants_syncd == 1 ]]; then
        echo "syncd: $("$SYNCD_BIN" --version) ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'))"
    fi
    have redis && echo "redis: $(redis-server --version)"
    have memcached && echo "memcached: $(memcached -V)"
    echo "clients=$CLIENTS duration_s=$DURATION_S warmup_s=$WARMUP_S keys=$KEYS zipf=$ZIPF value_bytes=$VALUE_BYTES mixes=\"$MIXES\" capacity=$CAPACITY write_through=$WRITE_THROUGH seed=$SEED"
} | tee "$OUT/versions.txt" >&2

common=(--clients "$CLIENTS" --duration-s "$DURATION_S" --warmup-s "$WARMUP_S" --keys "$KEYS" --zipf "$ZIPF"
    --value-bytes "$VALUE_BYTES" --seed "$SEED")
declare -A results # mix -> result files, one per line, in run order

# Runs every mix against the service now running; name, backend, endpoints, label, server pids.
run_mixes() {
    local name=$1 backend=$2 endpoints=$3 label=$4 pids=$5 mix
    for mix in $MIXES; do
        wait_quiet
        log "$label: $mix % GET"
        "$BENCH" cache --backend "$backend" --endpoints "$endpoints" "${common[@]}" --read-percent "$mix" \
            --label "$label" --server-pids "$pids" \
            --json "$OUT/$name-read$mix.json" >"$OUT/$name-read$mix.md"
        results[$mix]+="$OUT/$name-read$mix.json"$'\n'
    done
}

# --- Syncd: 3 nodes, cache role only ----------------------------------------------------------------------------
wait_readyz() { # port, seconds: GET /readyz answers 200
    local deadline=$((SECONDS + $2))
    until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$1/readyz" 2>/dev/null; do
        if ((SECONDS >= deadline)); then log "syncd on port $1 is not ready after $2 s"; return 1; fi
        sleep 0.5
    done
}
run_syncd() {
    local name=syncd peers="" endpoints="" i extra=()
    [[ $WRITE_THROUGH == 1 ]] && extra+=(--cache-write-through)
    for i in 0 1 2; do
        peers+="${peers:+,}$i=127.0.0.1:${SYNCD_PORTS[$i]}"
        endpoints+="${endpoints:+,}http://127.0.0.1:${SYNCD_PORTS[$i]}"
    done
    for i in 0 1 2; do
        "$SYNCD_BIN" serve --id "$i" --listen "127.0.0.1:${SYNCD_PORTS[$i]}" --data-dir "$WORK/$name/node-$i" \
            --roles cache --peers "$peers" --cache-capacity "$CAPACITY" "${extra[@]}" \
            >"$OUT/$name-node-$i.log" 2>&1 &
        PIDS+=($!)
    done
    for i in 0 1 2; do wait_port_open "${SYNCD_PORTS[$i]}" 30; done
    check_loopback "${PIDS[@]}"
    for i in 0 1 2; do wait_readyz "${SYNCD_PORTS[$i]}" "$READY_TIMEOUT_S"; done
    local label="syncd (3 nodes, $CAPACITY lines each"
    [[ $WRITE_THROUGH == 1 ]] && label+=", write-through"
    label+=")"
    log "$label on ${SYNCD_PORTS[*]}"
    run_mixes "$name" syncd "$endpoints" "$label" "$(pid_list)"
    stop_children
    for i in 0 1 2; do wait_port_free "${SYNCD_PORTS[$i]}"; done
}

# --- Redis: one node, no persistence ----------------------------------------------------------------------------
run_redis() {
    local name=redis
    mkdir -p "$WORK/$name"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes --daemonize no \
        --dir "$WORK/$name" --save '' --appendonly no --logfile "" \
        >"$OUT/$name.log" 2>&1 &
    PIDS+=($!)
    wait_port_open "$REDIS_PORT" 30
    check_loopback "${PIDS[@]}"
    local label="redis (1 node, no persistence)"
    log "$label: $(redis-server --version | awk '{print $3}') on $REDIS_PORT"
    run_mixes "$name" redis "redis://127.0.0.1:$REDIS_PORT" "$label" "$(pid_list)"
    stop_children
    wait_port_free "$REDIS_PORT"
}

# --- memcached: one node ----------------------------------------------------------------------------------------
run_memcached() {
    local name=memcached user=()
    # memcached refuses to run as root unless told which user to run as.
    [[ $(id -u) == 0 ]] && user=(-u root)
    # TCP on loopback only, UDP off; memory (MB) is allocated as items arrive, so a generous limit costs nothing
    # and keeps evictions out of the run.
    memcached -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 1024 "${user[@]}" >"$OUT/$name.log" 2>&1 &
    PIDS+=($!)
    wait_port_open "$MEMCACHED_PORT" 30
    check_loopback "${PIDS[@]}"
    local label="memcached (1 node)"
    log "$label: $(memcached -V) on $MEMCACHED_PORT"
    run_mixes "$name" memcached "tcp://127.0.0.1:$MEMCACHED_PORT" "$label" "$(pid_list)"
    stop_children
    wait_port_free "$MEMCACHED_PORT"
}

for run in $RUNS; do
    if ! have "$run"; then
        log "skipping $run: $(package_of "$run") is not installed"
        continue
    fi
    case $run in
        syncd) run_syncd ;;
        redis) run_redis ;;
        memcached) run_memcached ;;
    esac
done

for mix in $MIXES; do
    [[ -z ${results[$mix]:-} ]] && continue
    mapfile -t files <<<"${results[$mix]%$'\n'}"
    echo
    echo "## $mix % GET / $((100 - mix)) % SET"
    echo
    "$BENCH" compare "${files[@]}" | tee "$OUT/compare-read$mix.md"
done
log "results in $OUT"
