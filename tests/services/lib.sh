# Helpers shared by slurm.sh, sshd.sh and s3.sh. Sourced, not run.
# shellcheck shell=bash
#
# The rules they implement: every server listens on 127.0.0.1 only,
# daemons are started directly and their pids recorded, and they are stopped by those
# pids after checking the pid still belongs to the program we started - never by name.

# Messages go to stderr: the pytest fixtures show the stderr tail when a start fails.
# Each is stamped with the seconds since the script started (to see where time goes).
_T0=${EPOCHREALTIME/[.,]/}
log() {
    local cs=$(( (${EPOCHREALTIME/[.,]/} - _T0) / 10000 ))
    printf '[%s +%d.%02ds] %s\n' "$SERVICE" $((cs / 100)) $((cs % 100)) "$*" >&2
}
die() { log "ERROR: $*"; exit 1; }

# parse_args "ACTION1 ACTION2" "$@": checks the arguments, sets ACTION and STATE_DIR
# (absolute; created by start; for other actions a missing one means "not running").
parse_args() {
    local actions=$1; shift
    ACTION=${1:-}
    if [ $# -ne 2 ] || ! [[ " $actions " == *" $ACTION "* ]]; then
        echo "usage: $0 {${actions// /|}} STATE_DIR" >&2
        exit 2
    fi
    if [ "$ACTION" = start ]; then
        mkdir -p "$2"
    elif [ ! -d "$2" ]; then
        log "no state directory $2: not running"
        [ "$ACTION" = status ] && exit 1
        exit 0
    fi
    # shellcheck disable=SC2034  # used by the script that sources this file
    STATE_DIR=$(cd "$2" && pwd -P)
}

# The system python: starts fast (no pyenv shim) and is always there after install.sh.
PY=/usr/bin/python3
SERVICES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# procs ARGS...: pids of leftover processes tied to this server (see procs.py).
procs() { "$PY" -S "$SERVICES_DIR/procs.py" "$@"; }

# kill_pids "PID PID...": SIGTERM, then SIGKILL what is still alive after 2 s.
kill_pids() {
    local pids=$1 i p alive
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
        alive=""
        for p in $pids; do readlink "/proc/$p/exe" >/dev/null 2>&1 && alive+=" $p"; done
        [ -n "$alive" ] || return 0
        sleep 0.05
    done
    # shellcheck disable=SC2086
    kill -KILL $alive 2>/dev/null || true
}

# free_ports N: prints N distinct free TCP ports on 127.0.0.1, one per line. All sockets
# are held open until every port is chosen, so the N ports differ. (The port could in
# theory be taken by someone else before the server binds it; the start then fails
# loudly, it never silently talks to a foreign server.)
free_ports() {
    "$PY" -S -c '
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print("\n".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# pid_is PID EXE NEEDLE: true if PID is alive, runs the binary EXE and its command line
# contains NEEDLE (something unique to this STATE_DIR, e.g. the config path), i.e. the
# pid was not recycled for another process since we recorded it.
# EXE is resolved first: Debian's /usr/sbin/slurmctld is a symlink to slurmctld-wlm, and a
# venv's python a symlink to the system one; /proc/PID/exe shows the real file.
pid_is() {
    local pid=$1 exe=$2 needle=$3
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$exe")" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$needle"
}

# running PIDFILE EXE NEEDLE: true if the pid recorded in PIDFILE is our live program.
running() {
    local pidfile=$1
    [ -s "$pidfile" ] && pid_is "$(head -n1 "$pidfile")" "$2" "$3"
}

# stop_pidfile NAME PIDFILE EXE NEEDLE [TIMEOUT_S]: SIGTERM the recorded pid if it is
# still ours, wait for it to exit (SIGKILL after TIMEOUT_S), then remove the pid file.
stop_pidfile() {
    local name=$1 pidfile=$2 exe=$3 needle=$4 timeout=${5:-10}
    if ! running "$pidfile" "$exe" "$needle"; then
        [ -e "$pidfile" ] && log "$name: not running (stale pid file removed)"
        rm -f "$pidfile"
        return 0
    fi
    local pid; pid=$(head -n1 "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < timeout * 20; i++)); do
        pid_is "$pid" "$exe" "$needle" || break
        sleep 0.05
    done
    if pid_is "$pid" "$exe" "$needle"; then
        log "$name (pid $pid) ignored SIGTERM for ${timeout}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            pid_is "$pid" "$exe" "$needle" || break
            sleep 0.05
        done
    fi
    pid_is "$pid" "$exe" "$needle" && die "$name (pid $pid) does not die"
    rm -f "$pidfile"
    log "$name (pid $pid) stopped"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.05 s until it succeeds;
# after SECONDS logs "timed out waiting for DESCRIPTION" and fails.
wait_for() {
    local timeout=$1 what=$2; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "timed out after ${timeout}s waiting for $what"
            return 1
        fi
        sleep 0.05
    done
}

# write_env FILE NAME=VALUE...: writes `export NAME='VALUE'` lines atomically, so that
# an env.sh that exists is always complete (it is written last, once the server is ready).
write_env() {
    local file=$1; shift
    local tmp="$file.tmp.$$" kv
    : > "$tmp"
    for kv in "$@"; do
        [[ "$kv" != *\'* ]] || die "quote in env value: $kv"
        printf "export %s='%s'\n" "${kv%%=*}" "${kv#*=}" >> "$tmp"
    done
    mv -f "$tmp" "$file"
}

# tail_log FILE: the end of a server log, for error messages.
tail_log() { [ -f "$1" ] && tail -n 20 "$1" | sed 's/^/    /' >&2 || true; }
