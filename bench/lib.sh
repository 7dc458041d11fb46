# Shared by the benchmark scripts (sourced after the script defines `log`): child processes with cleanup on
# exit, and loopback port checks.

# --- children and cleanup -------------------------------------------------------------------------------------
PIDS=()
WORK=""
stop_children() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 150); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
cleanup() {
    stop_children
    if [[ -n $WORK && -d $WORK && ${KEEP_DATA:-0} != 1 ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The running children as `--server-pids` wants them.
pid_list() { local IFS=,; echo "${PIDS[*]}"; }
port_free() { ! ss -ltnH "sport = :$1" | grep -q .; }
wait_port_free() {
    for _ in $(seq 150); do port_free "$1" && return 0; sleep 0.1; done
    log "port $1 is still in use"; return 1
}
wait_port_open() { # port, seconds
    for _ in $(seq $(($2 * 10))); do port_free "$1" || return 0; sleep 0.1; done
    log "nothing listens on port $1 after $2 s"; return 1
}
