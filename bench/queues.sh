#!/usr/bin/env bash
# Queue benchmark: Syncd's queue role against Redis Streams, a RabbitMQ quorum queue and NATS JetStream, one service
# at a time, all on loopback, data on the same disk, every one driven by the same load generator
# (`syncd-bench queues`: C clients produce M messages of 1 KiB, then C clients receive and ack them one by one),
# and printed side by side (`syncd-bench compare`) in two groups of matched durability:
#
#   fsync before the answer: syncd --queue-fsync always (replication factor 1 and 2 on 3 nodes; rf 1 on 1 node),
#                            RabbitMQ quorum queue (1 node), Redis Streams with appendfsync always (1 node)
#   fsync later:             syncd --queue-fsync interval (rf 1 and 2 on 3 nodes; rf 1 on 1 node),
#                            Redis Streams with appendfsync everysec, NATS JetStream file storage (1 node each)
#
# On 3 nodes, client i talks to node i mod 3, so two thirds of the calls are forwarded to the queue's owner; the
# 1-node runs have no forwarding and no replication, like the single-node peers.
#
# See docs/benchmarks.md ("Queues") for what is and is not comparable, and the results.
#
# Settings (environment): CLIENTS (16,64), MESSAGES (50000 per run), BODY_BYTES (1024), RECEIVE_WAIT_MS (1000),
# SYNCD_FSYNC_INTERVAL_MS (100: syncd's default), BENCH_TMPDIR (/var/tmp: the data directories; must be a real
# disk, not tmpfs), OUT (target/bench/queues-<time>), KEEP_DATA=1 (keep the data directories),
# SYNCD_BIN and SYNCD_BENCH_BIN (use these binaries instead of building them),
# QUIET (e.g. 0.15: before each run, wait until the whole machine has used less than this many cores for 10 s in a
# row, for at most QUIET_MAX_WAIT s (1800); on a shared machine this keeps other work out of the measurements, and
# the "other processes" column of the CPU table shows what still got in),
# RUNS (which runs, in order; the first of each group is the baseline of its ratio column; default: all of
#   "syncd-1node-always syncd-rf1-always syncd-rf2-always rabbitmq redis-always
#    syncd-1node-interval syncd-rf1-interval syncd-rf2-interval redis-everysec nats").
# Peers that Debian does not package (or that fail to install) are skipped, with a message.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLIENTS=${CLIENTS:-16,64}
MESSAGES=${MESSAGES:-50000}
BODY_BYTES=${BODY_BYTES:-1024}
RECEIVE_WAIT_MS=${RECEIVE_WAIT_MS:-1000}
SYNCD_FSYNC_INTERVAL_MS=${SYNCD_FSYNC_INTERVAL_MS:-100}
BENCH_TMPDIR=${BENCH_TMPDIR:-/var/tmp}
OUT=${OUT:-$ROOT/target/bench/queues-$(date +%Y%m%d-%H%M%S)}
RUNS=${RUNS:-syncd-1node-always syncd-rf1-always syncd-rf2-always rabbitmq redis-always syncd-1node-interval syncd-rf1-interval syncd-rf2-interval redis-everysec nats}

SYNCD_PORTS=(17180 17181 17182)
REDIS_PORT=16379
AMQP_PORT=15673
RABBIT_DIST_PORT=25673
EPMD_PORT=14369
NATS_PORT=14222

log() { printf 'queues.sh: %s\n' "$*" >&2; }

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
RABBITMQ_SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server # the real script; /usr/sbin/rabbitmq-server su's to rabbitmq
have() {
    case $1 in
        redis) command -v redis-server >/dev/null ;;
        rabbitmq) [[ -x $RABBITMQ_SERVER ]] && command -v epmd >/dev/null ;;
        nats) command -v nats-server >/dev/null ;;
    esac
}
package_of() { case $1 in redis) echo redis-server ;; rabbitmq) echo rabbitmq-server ;; nats) echo nats-server ;; esac; }
peer_of() { case $1 in redis-*) echo redis ;; rabbitmq) echo rabbitmq ;; nats) echo nats ;; *) echo "" ;; esac; }

needed=()
for run in $RUNS; do
    peer=$(peer_of "$run")
    if [[ -n $peer ]] && ! have "$peer" && [[ " ${needed[*]} " != *" $peer "* ]]; then needed+=("$peer"); fi
done
if [[ ${#needed[@]} -gt 0 ]]; then
    log "installing from Debian packages: ${needed[*]}"
    apt-get update
    for peer in "${needed[@]}"; do
        DEBIAN_FRONTEND=noninteractive apt-get install -y "$(package_of "$peer")" ||
            log "could not install $(package_of "$peer"); its runs are skipped"
    done
fi
# Packaged services that their install started (where systemd runs) share the CPU and the disk: say so.
for spec in 6379:redis-server 5672:beam.smp 4222:nats-server; do
    port=${spec%%:*}
    comm=${spec#*:}
    for pid in $(ss -ltnpH "sport = :$port" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
        if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]]; then
            log "warning: a packaged $comm (pid $pid) runs on port $port; it shares the machine with the benchmark"
        fi
    done
done
for port in "${SYNCD_PORTS[@]}" $REDIS_PORT $AMQP_PORT $RABBIT_DIST_PORT $EPMD_PORT $NATS_PORT; do
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
WORK=$(mktemp -d "$BENCH_TMPDIR/syncd-bench-queues.XXXXXX")
log "data in $WORK ($(df -h --output=source,fstype "$WORK" | tail -1)), results in $OUT"
if [[ $(df --output=fstype "$WORK" | tail -1) == tmpfs ]]; then
    log "warning: $WORK is on tmpfs; fsync costs nothing there and the figures mean little"
fi
log "fsync probe: $(dd if=/dev/zero of="$WORK/fsync-probe" bs=4k count=1000 oflag=dsync 2>&1 | tail -1)"
rm -f "$WORK/fsync-probe"
{
    echo "syncd: $("$SYNCD_BIN" --version) ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'))"
    have redis && echo "redis: $(redis-server --version)"
    have rabbitmq && echo "rabbitmq: $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null), erlang $(dpkg-query -W -f='${Version}' erlang-base 2>/dev/null)"
    have nats && echo "nats: $(nats-server --version)"
    echo "clients=$CLIENTS messages=$MESSAGES body_bytes=$BODY_BYTES receive_wait_ms=$RECEIVE_WAIT_MS syncd_fsync_interval_ms=$SYNCD_FSYNC_INTERVAL_MS"
} | tee "$OUT/versions.txt" >&2

common=(--clients "$CLIENTS" --messages "$MESSAGES" --body-bytes "$BODY_BYTES" --receive-wait-ms "$RECEIVE_WAIT_MS")
durable=()
delayed=()

# --- Syncd: 3 nodes (or 1), queue role only -------------------------------------------------------------------
run_syncd() { # name, replication factor, fsync mode, nodes
    local name=$1 rf=$2 mode=$3 nodes=$4 peers="" endpoints="" i
    local ids
    ids=$(seq 0 $((nodes - 1)))
    for i in $ids; do
        peers+="${peers:+,}$i=127.0.0.1:${SYNCD_PORTS[$i]}"
        endpoints+="${endpoints:+,}http://127.0.0.1:${SYNCD_PORTS[$i]}"
    done
    for i in $ids; do
        "$SYNCD_BIN" serve --id "$i" --listen "127.0.0.1:${SYNCD_PORTS[$i]}" --data-dir "$WORK/$name/node-$i" \
            --roles queue --peers "$peers" --replication-factor "$rf" \
            --queue-fsync "$mode" --queue-fsync-interval-ms "$SYNCD_FSYNC_INTERVAL_MS" \
            >"$OUT/$name-node-$i.log" 2>&1 &
        PIDS+=($!)
    done
    for i in $ids; do wait_port_open "${SYNCD_PORTS[$i]}" 30; done
    check_loopback "${PIDS[@]}"
    local label="syncd rf=$rf fsync=$mode"
    [[ $mode == interval ]] && label+=" ${SYNCD_FSYNC_INTERVAL_MS}ms"
    label+=" ($nodes node$([[ $nodes == 1 ]] || echo s))"
    log "$label: $nodes node(s) on ${SYNCD_PORTS[*]:0:$nodes}"
    "$BENCH" queues --backend syncd --endpoints "$endpoints" "${common[@]}" --label "$label" \
        --server-pids "$(pid_list)" --json "$OUT/$name.json" >"$OUT/$name.md"
    stop_children
    for i in $ids; do wait_port_free "${SYNCD_PORTS[$i]}"; done
}

# --- Redis Streams: one node, AOF on ----------------------------------------------------------------------------
run_redis() { # name, appendfsync
    local name=$1 fsync=$2
    mkdir -p "$WORK/$name"
    # No RDB snapshots and no automatic AOF rewrite (both fork and write the whole data set in the background, in
    # the middle of a run): durability is the AOF's, appended and fsynced as configured.
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes --daemonize no \
        --dir "$WORK/$name" --save "" --appendonly yes --appendfsync "$fsync" --auto-aof-rewrite-percentage 0 \
        --logfile "" \
        >"$OUT/$name.log" 2>&1 &
    PIDS+=($!)
    wait_port_open "$REDIS_PORT" 30
    check_loopback "${PIDS[@]}"
    log "redis appendfsync=$fsync on $REDIS_PORT"
    "$BENCH" queues --backend redis --endpoints "redis://127.0.0.1:$REDIS_PORT" "${common[@]}" \
        --label "redis streams appendfsync=$fsync" --server-pids "$(pid_list)" \
        --json "$OUT/$name.json" >"$OUT/$name.md"
    stop_children
    wait_port_free "$REDIS_PORT"
}

# --- RabbitMQ: one node, quorum queue ---------------------------------------------------------------------------
run_rabbitmq() {
    local name=rabbitmq dir="$WORK/rabbitmq"
    mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
    echo "[]." >"$dir/enabled_plugins"
    : >"$dir/rabbitmq-env.conf"
    cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
log.console = true
log.console.level = warning
log.file = false
EOF
    # Our own epmd (the Erlang port mapper), on loopback and a private port, so it stops with the benchmark.
    epmd -address 127.0.0.1 -port "$EPMD_PORT" >"$OUT/epmd.log" 2>&1 &
    PIDS+=($!)
    wait_port_open "$EPMD_PORT" 10
    env HOME="$dir/home" ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1 \
        RABBITMQ_NODENAME=bench@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$AMQP_PORT" \
        RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT" RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/pid" \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        "$RABBITMQ_SERVER" >"$OUT/$name.log" 2>&1 &
    local script=$!
    PIDS+=("$script")
    wait_port_open "$AMQP_PORT" 120
    # The script runs the broker (beam.smp) as its child and stops it on SIGTERM; CPU is the broker's.
    local beam
    beam=$(pgrep -P "$script" beam.smp | head -1)
    check_loopback "${PIDS[@]}" "$beam"
    log "rabbitmq $(dpkg-query -W -f='${Version}' rabbitmq-server): AMQP on $AMQP_PORT (broker pid $beam)"
    "$BENCH" queues --backend rabbitmq --endpoints "amqp://127.0.0.1:$AMQP_PORT/%2f" "${common[@]}" \
        --label "rabbitmq quorum queue" --server-pids "$beam" \
        --json "$OUT/$name.json" >"$OUT/$name.md"
    stop_children
    wait_port_free "$AMQP_PORT"
}

# --- NATS JetStream: one node, file storage ---------------------------------------------------------------------
run_nats() {
    local name=nats
    nats-server --addr 127.0.0.1 --port "$NATS_PORT" --jetstream --store_dir "$WORK/$name" \
        --server_name syncd-bench >"$OUT/$name.log" 2>&1 &
    PIDS+=($!)
    wait_port_open "$NATS_PORT" 30
    check_loopback "${PIDS[@]}"
    log "nats $(nats-server --version) JetStream on $NATS_PORT"
    "$BENCH" queues --backend nats --endpoints "nats://127.0.0.1:$NATS_PORT" "${common[@]}" \
        --label "nats jetstream file" --server-pids "$(pid_list)" \
        --json "$OUT/$name.json" >"$OUT/$name.md"
    stop_children
    wait_port_free "$NATS_PORT"
}

for run in $RUNS; do
    peer=$(peer_of "$run")
    if [[ -n $peer ]] && ! have "$peer"; then
        log "skipping $run: $(package_of "$peer") is not installed"
        continue
    fi
    wait_quiet
    case $run in
        syncd-rf1-always) run_syncd "$run" 1 always 3; durable+=("$OUT/$run.json") ;;
        syncd-rf2-always) run_syncd "$run" 2 always 3; durable+=("$OUT/$run.json") ;;
        syncd-1node-always) run_syncd "$run" 1 always 1; durable+=("$OUT/$run.json") ;;
        syncd-rf1-interval) run_syncd "$run" 1 interval 3; delayed+=("$OUT/$run.json") ;;
        syncd-rf2-interval) run_syncd "$run" 2 interval 3; delayed+=("$OUT/$run.json") ;;
        syncd-1node-interval) run_syncd "$run" 1 interval 1; delayed+=("$OUT/$run.json") ;;
        rabbitmq) run_rabbitmq; durable+=("$OUT/$run.json") ;;
        redis-always) run_redis "$run" always; durable+=("$OUT/$run.json") ;;
        redis-everysec) run_redis "$run" everysec; delayed+=("$OUT/$run.json") ;;
        nats) run_nats; delayed+=("$OUT/$run.json") ;;
        *) log "unknown run $run"; exit 2 ;;
    esac
done

if [[ ${#durable[@]} -gt 0 ]]; then
    echo "## fsync before the answer"
    echo
    "$BENCH" compare "${durable[@]}" | tee "$OUT/compare-durable.md"
fi
if [[ ${#delayed[@]} -gt 0 ]]; then
    echo
    echo "## fsync in the background"
    echo
    "$BENCH" compare "${delayed[@]}" | tee "$OUT/compare-delayed.md"
fi
log "results in $OUT"
