#!/usr/bin/env bash
# A real S3-compatible HTTP server (moto_server, from the venv install.sh makes) for tests.
#
#   s3.sh start  STATE_DIR   start it (exit 0 also if it already runs from STATE_DIR)
#   s3.sh stop   STATE_DIR
#   s3.sh status STATE_DIR
#
# Once it answers S3 requests, STATE_DIR/env.sh exports:
#   AWS_ENDPOINT_URL_S3      http://127.0.0.1:PORT (read by boto3/botocore >= 1.28 itself)
#   S3_ENDPOINT_URL          the same, for code that passes endpoint_url explicitly
#   AWS_ACCESS_KEY_ID        testing
#   AWS_SECRET_ACCESS_KEY    testing
# With s3fs/fsspec: storage_options={'key': 'testing', 'secret': 'testing',
# 'client_kwargs': {'endpoint_url': URL}} - and NO region_name (with one, bucket creation
# fails with InvalidLocationConstraint). Data lives in memory only and is lost on stop;
# `curl -X POST $S3_ENDPOINT_URL/moto-api/reset` wipes it between tests.
set -euo pipefail
SERVICE=s3
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_args "start stop status" "$@"

MOTO_VENV=/opt/drypipe-moto
MOTO_SERVER=$MOTO_VENV/bin/moto_server
MOTO_PYTHON=$MOTO_VENV/bin/python3     # moto_server's shebang: the process's exe
PID_FILE=$STATE_DIR/moto.pid
PORT_FILE=$STATE_DIR/moto.port
LOG=$STATE_DIR/moto.log
ENV_FILE=$STATE_DIR/env.sh

# moto_server takes no argument we could point at STATE_DIR, so a pid is ours if it runs
# the venv's python with exactly our command line (the port was chosen for this dir).
moto_cmdline() { echo "$MOTO_SERVER -H 127.0.0.1 -p $(cat "$PORT_FILE" 2>/dev/null)"; }
moto_running() { [ -s "$PORT_FILE" ] && running "$PID_FILE" "$MOTO_PYTHON" "$(moto_cmdline)"; }

# ListBuckets answers 200 once the S3 backend is loaded (moto loads it on first use, so
# this also moves that cost into start-up).
s3_answers() { curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$1/"; }

do_stop() {
    stop_pidfile moto_server "$PID_FILE" "$MOTO_PYTHON" "$(moto_cmdline)" 10
    rm -f "$ENV_FILE" "$PORT_FILE"
}

do_start() {
    if moto_running; then
        log "already running from $STATE_DIR"
        [ -s "$ENV_FILE" ] || die "running but $ENV_FILE is missing"
        return 0
    fi
    [ -x "$MOTO_SERVER" ] || die "$MOTO_SERVER missing: run tests/services/install.sh"
    rm -f "$ENV_FILE"

    local port pid
    port=$(free_ports 1)
    echo "$port" > "$PORT_FILE"
    # moto_server stays in the foreground: run it in the background in its own session
    # (setsid, so a Ctrl-C meant for pytest does not hit it before the fixture stops it),
    # with all output in a log so it holds no pipe of whoever called this script.
    # In a non-interactive script a background job is no process group leader, so setsid
    # execs in place and $! is moto_server's own pid.
    cd "$STATE_DIR"
    setsid "$MOTO_SERVER" -H 127.0.0.1 -p "$port" </dev/null >"$LOG" 2>&1 &
    pid=$!
    echo "$pid" > "$PID_FILE"

    local deadline=$((SECONDS + 30))
    until s3_answers "$port"; do
        if ! moto_running; then
            tail_log "$LOG"; rm -f "$PID_FILE"; die "moto_server exited"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail_log "$LOG"; do_stop; die "moto_server does not answer after 30 s"
        fi
        sleep 0.05
    done
    local url=http://127.0.0.1:$port
    write_env "$ENV_FILE" \
        "AWS_ENDPOINT_URL_S3=$url" \
        "S3_ENDPOINT_URL=$url" \
        "AWS_ACCESS_KEY_ID=testing" \
        "AWS_SECRET_ACCESS_KEY=testing"
    log "ready on $url (pid $pid); env: $ENV_FILE"
}

do_status() {
    if moto_running; then
        log "moto_server: running (pid $(cat "$PID_FILE")) on port $(cat "$PORT_FILE")"
    else
        log "moto_server: stopped"; return 1
    fi
}

case "$ACTION" in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
esac
