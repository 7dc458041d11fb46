#!/usr/bin/env bash
# Lock benchmark: Syncd against a 3-node etcd, both on loopback, one cluster at a time, same disk, same raft
# timing (heartbeat 100 ms, election timeout 1000 ms), both fsyncing every raft append. Drives both with the same
# load generator (`syncd-bench locks`) and prints the side-by-side table (`syncd-bench compare`).
# See docs/benchmarks.md for what is measured and the results.
#
# Settings (environment): CLIENTS (16,64), DURATION (10 s per run), WARMUP (1 s), HOLD_MS (1),
# DEADLOCK_TTL_MS (5000), DEADLOCK_ROUNDS_SYNCD (20), DEADLOCK_ROUNDS_ETCD (5), HEARTBEAT_MS (100),
# ELECTION_MS (1000), BENCH_TMPDIR (/var/tmp: the data directories; must be a real disk, not tmpfs),
# OUT (target/bench/locks-<time>), KEEP_DATA=1 (keep the data directories),
# SYNCD_BIN and SYNCD_BENCH_BIN (use these binaries instead of building them),
# BACKENDS ("syncd etcd etcd-session": which of the three runs to do; etcd-session skips the deadlock workload,
# which is the same in both etcd lease modes).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLIENTS=${CLIENTS:-16,64}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
HOLD_MS=${HOLD_MS:-1}
DEADLOCK_TTL_MS=${DEADLOCK_TTL_MS:-5000}
DEADLOCK_ROUNDS_SYNCD=${DEADLOCK_ROUNDS_SYNCD:-20}
DEADLOCK_ROUNDS_ETCD=${DEADLOCK_ROUNDS_ETCD:-5}
HEARTBEAT_MS=${HEARTBEAT_MS:-100}
ELECTION_MS=${ELECTION_MS:-1000}
BENCH_TMPDIR=${BENCH_TMPDIR:-/var/tmp}
OUT=${OUT:-$ROOT/target/bench/locks-$(date +%Y%m%d-%H%M%S)}
BACKENDS=${BACKENDS:-syncd etcd etcd-session}

SYNCD_PORTS=(17080 17081 17082)
ETCD_CLIENT_PORTS=(12379 22379 32379)
ETCD_PEER_PORTS=(12380 22380 32380)

log() { printf 'locks.sh: %s\n' "$*" >&2; }
wants() { [[ " $BACKENDS " == *" $1 "* ]]; }

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- prerequisites ----------------------------------------------------------------------------------------------
if ! command -v etcd >/dev/null; then
    log "installing etcd-server"
    apt-get update
    apt-get install -y etcd-server
fi
# Debian's package starts its own etcd where it can (systemd): stop any etcd on the default client port.
for pid in $(ss -ltnpH 'sport = :2379' | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
    if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == etcd ]]; then
        log "stopping the packaged etcd (pid $pid) on port 2379"
        kill "$pid"
    fi
done
for port in "${SYNCD_PORTS[@]}" "${ETCD_CLIENT_PORTS[@]}" "${ETCD_PEER_PORTS[@]}"; do
    port_free "$port" || { log "port $port is already in use"; exit 1; }
done

if [[ -z ${SYNCD_BIN:-} || -z ${SYNCD_BENCH_BIN:-} ]]; then
    command -v protoc >/dev/null || { apt-get update && apt-get install -y protobuf-compiler; }
    log "building syncd and syncd-bench (release)"
    (cd "$ROOT" && cargo build --release -p syncd -p syncd-bench)
fi
SYNCD_BIN=${SYNCD_BIN:-$ROOT/target/release/syncd}
BENCH=${SYNCD_BENCH_BIN:-$ROOT/target/release/syncd-bench}

mkdir -p "$OUT"
WORK=$(mktemp -d "$BENCH_TMPDIR/syncd-bench-locks.XXXXXX")
log "data in $WORK ($(df -h --output=source,fstype "$WORK" | tail -1)), results in $OUT"
if [[ $(df --output=fstype "$WORK" | tail -1) == tmpfs ]]; then
    log "warning: $WORK is on tmpfs; fsync costs nothing there and the figures mean little"
fi
log "fsync probe: $(dd if=/dev/zero of="$WORK/fsync-probe" bs=4k count=1000 oflag=dsync 2>&1 | tail -1)"
rm -f "$WORK/fsync-probe"

common=(--clients "$CLIENTS" --duration-s "$DURATION" --warmup-s "$WARMUP" --hold-ms "$HOLD_MS"
        --deadlock-ttl-ms "$DEADLOCK_TTL_MS")

results=()

# --- Syncd ----------------------------------------------------------------------------------------------------
if wants syncd; then
    peers=""
    endpoints=""
    for i in 0 1 2; do
        peers+="${peers:+,}$i=127.0.0.1:${SYNCD_PORTS[$i]}"
        endpoints+="${endpoints:+,}http://127.0.0.1:${SYNCD_PORTS[$i]}"
    done
    for i in 0 1 2; do
        "$SYNCD_BIN" serve --id "$i" --listen "127.0.0.1:${SYNCD_PORTS[$i]}" --data-dir "$WORK/syncd/node-$i" \
            --roles lock --peers "$peers" \
            --raft-heartbeat-ms "$HEARTBEAT_MS" --raft-election-timeout-ms "$ELECTION_MS" \
            >"$OUT/syncd-node-$i.log" 2>&1 &
        PIDS+=($!)
    done
    log "syncd: 3 nodes on ${SYNCD_PORTS[*]}"
    "$BENCH" locks --backend syncd --endpoints "$endpoints" "${common[@]}" --server-pids "$(pid_list)" \
        --deadlock-rounds "$DEADLOCK_ROUNDS_SYNCD" --json "$OUT/syncd.json" >"$OUT/syncd.md"
    results+=("$OUT/syncd.json")
    stop_children
    for port in "${SYNCD_PORTS[@]}"; do wait_port_free "$port"; done
fi

# --- etcd -----------------------------------------------------------------------------------------------------
if wants etcd || wants etcd-session; then
    cluster=""
    endpoints=""
    for i in 0 1 2; do
        cluster+="${cluster:+,}e$i=http://127.0.0.1:${ETCD_PEER_PORTS[$i]}"
        endpoints+="${endpoints:+,}http://127.0.0.1:${ETCD_CLIENT_PORTS[$i]}"
    done
    # etcd 3.4 refuses to start on anything but amd64 (and a few others) unless told to.
    case $(uname -m) in x86_64 | amd64) ;; *) export ETCD_UNSUPPORTED_ARCH=$(dpkg --print-architecture) ;; esac
    for i in 0 1 2; do
        etcd --name "e$i" --data-dir "$WORK/etcd/e$i" \
            --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$i]}" \
            --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$i]}" \
            --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[$i]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[$i]}" \
            --initial-cluster "$cluster" --initial-cluster-token syncd-bench --initial-cluster-state new \
            --heartbeat-interval "$HEARTBEAT_MS" --election-timeout "$ELECTION_MS" \
            --logger zap --log-outputs stderr \
            >"$OUT/etcd-$i.log" 2>&1 &
        PIDS+=($!)
    done
    log "etcd $(etcd --version | head -1 | awk '{print $3}'): 3 members, clients on ${ETCD_CLIENT_PORTS[*]}"
    if wants etcd; then
        "$BENCH" locks --backend etcd --endpoints "$endpoints" "${common[@]}" --server-pids "$(pid_list)" \
            --deadlock-rounds "$DEADLOCK_ROUNDS_ETCD" --json "$OUT/etcd.json" >"$OUT/etcd.md"
        results+=("$OUT/etcd.json")
fi
if wants etcd-session; then
    # The deadlock round is the same in both lease modes: run it once.
    "$BENCH" locks --backend etcd-session --endpoints "$endpoints" "${common[@]}" --server-pids "$(pid_list)" \
        --workloads distinct,contended,handoff --json "$OUT/etcd-session.json" >"$OUT/etcd-session.md"
    results+=("$OUT/etcd-session.json")
fi
stop_children
fi

"$BENCH" compare "${results[@]}" | tee "$OUT/compare.md"
log "results in $OUT"
