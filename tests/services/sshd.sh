#!/usr/bin/env bash
# A real OpenSSH server on 127.0.0.1 for tests, logging in the unprivileged user drypipe-ssh.
#
#   sshd.sh start         STATE_DIR   start it (exit 0 also if it already runs from STATE_DIR)
#   sshd.sh stop          STATE_DIR   stop the server AND its open sessions (and processes the
#                                     sessions started, incl. detached ones under STATE_DIR)
#   sshd.sh kill-sessions STATE_DIR   kill open sessions only, the server keeps listening
#                                     (simulates a dropped connection; a stopped sshd alone
#                                     leaves its sessions alive)
#   sshd.sh status        STATE_DIR
#
# Once ready (verified with a real ssh login), STATE_DIR/env.sh exports:
#   SSHD_PORT           port on 127.0.0.1
#   SSH_HOST            127.0.0.1
#   SSH_USER            drypipe-ssh
#   SSH_KEY             client private key (owned by root, mode 600)
#   SSH_KNOWN_HOSTS     known_hosts with [127.0.0.1]:PORT and [localhost]:PORT
#   SSH_CONFIG          ssh client config with a Host alias (ssh -F $SSH_CONFIG $SSH_HOST_ALIAS)
#   SSH_HOST_ALIAS      drypipe-test-sshd
#   SSH_REMOTE_BASE     STATE_DIR/remote, owned by drypipe-ssh: put remote work dirs here
#   SSH_REMOTE_PYTHON   /usr/bin/python3 - the python drypipe-ssh can run (root's pyenv under
#                       /root, mode 700, is out of its reach)
#
# STATE_DIR and all its parents must be traversable (o+x) by drypipe-ssh: sshd reads the
# authorized keys as that user, and the user works in STATE_DIR/remote. (pytest's own tmp
# dirs are mode 700: the fixture uses a dir of its own.)
# Requires: install.sh has run (openssh-server, user drypipe-ssh); root.
#
# sshd_inner.sh runs this script with SSHD_REACHABLE_BY_SSH_USER_ONLY=1: a second server
# that only the ssh user's processes can connect to (see there).
set -euo pipefail
ONLY_SSH_USER=${SSHD_REACHABLE_BY_SSH_USER_ONLY:-0}
SERVICE=sshd
[ "$ONLY_SSH_USER" = 1 ] && SERVICE=sshd-inner
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_args "start stop kill-sessions status" "$@"

SSHD=/usr/sbin/sshd          # sshd refuses to start unless run by its absolute path
SSH_USER=drypipe-ssh
REMOTE_PYTHON=/usr/bin/python3
CONFIG=$STATE_DIR/sshd_config
PID_FILE=$STATE_DIR/sshd.pid
LOG=$STATE_DIR/sshd.log
HOST_KEY=$STATE_DIR/ssh_host_ed25519_key
CLIENT_KEY=$STATE_DIR/client_ed25519
AUTH_KEYS=$STATE_DIR/authorized_keys
KNOWN_HOSTS=$STATE_DIR/known_hosts
CLIENT_CONFIG=$STATE_DIR/ssh_config
HOST_ALIAS=drypipe-test-sshd
[ "$ONLY_SSH_USER" = 1 ] && HOST_ALIAS=drypipe-test-sshd-inner
NFT_TABLE_FILE=$STATE_DIR/nft_table
REMOTE=$STATE_DIR/remote
ENV_FILE=$STATE_DIR/env.sh

sshd_running() { running "$PID_FILE" "$SSHD" "$CONFIG"; }

# Processes that belong to this server's sessions: every descendant of the listening sshd
# (one "sshd: user [priv]" per connection, the user's shell and commands below it), and
# processes that left that tree (nohup/setsid runners, orphans) but are tied to this
# server: SSH_CONNECTION in their environment ends with our port, or they are the ssh
# user's and work in STATE_DIR (cwd or command line). Descendants of those too.
session_pids() {
    local listener=${1:-} port uid args=()
    port=$(awk '$1 == "Port" {print $2}' "$CONFIG" 2>/dev/null)
    uid=$(id -u "$SSH_USER")
    [ -n "$listener" ] && args+=(--children-of "$listener")
    [ -n "$port" ] && args+=(--rule "envsuffix:SSH_CONNECTION= 127.0.0.1 $port")
    procs "${args[@]}" --rule "uid:$uid" "cwd-under:$STATE_DIR" \
                       --rule "uid:$uid" "cmdline-has:$STATE_DIR"
}

# kill_sessions [LISTENER_PID]: kill the session processes, scanning again afterwards in
# case one started another meanwhile.
kill_sessions() {
    local listener=${1:-} pids i
    for i in 1 2 3; do
        pids=$(session_pids "$listener")
        [ -n "$pids" ] || return 0
        log "killing session processes: $pids"
        kill_pids "$pids"
    done
}

do_kill_sessions() {
    local listener=""
    sshd_running && listener=$(cat "$PID_FILE")
    kill_sessions "$listener"
}

do_stop() {
    # Note the sessions while they are still the listener's children, stop the listener
    # (no new sessions), then kill them and whatever else is tied to this server.
    local listener="" pids
    sshd_running && listener=$(cat "$PID_FILE")
    pids=$(session_pids "$listener")
    stop_pidfile sshd "$PID_FILE" "$SSHD" "$CONFIG" 10
    if [ -n "$pids" ]; then
        log "killing session processes: $pids"
        kill_pids "$pids"
    fi
    kill_sessions
    firewall_off
    rm -f "$ENV_FILE"
}

# firewall_on PORT: only the ssh user's processes (such as the sessions of another test sshd
# used as a jump host) may connect to 127.0.0.1:PORT; the others get a TCP reset. The rule
# is in an nftables table of its own, recorded in NFT_TABLE_FILE and deleted by stop.
firewall_on() {
    local port=$1 table=drypipe_sshd_$1 uid connect
    command -v nft >/dev/null || die "nft missing: run tests/services/install.sh"
    uid=$(id -u "$SSH_USER")
    echo "$table" > "$NFT_TABLE_FILE"
    nft -f - <<EOF || die "nft could not add the rule for port $port"
table inet $table {
    chain output {
        type filter hook output priority 0; policy accept;
        ip daddr 127.0.0.1 tcp dport $port meta skuid != $uid reject with tcp reset
    }
}
EOF
    # The proof, both ways: we (root) are refused, the ssh user gets through.
    connect="import socket; socket.create_connection(('127.0.0.1', $port), 5).close()"
    if "$PY" -S -c "$connect" 2>/dev/null; then die "port $port is still reachable by root"; fi
    runuser -u "$SSH_USER" -- "$PY" -S -c "$connect" || die "$SSH_USER cannot reach port $port"
    log "127.0.0.1:$port is reachable by $SSH_USER only (nftables table $table)"
}

firewall_off() {
    [ -s "$NFT_TABLE_FILE" ] || return 0
    nft delete table inet "$(cat "$NFT_TABLE_FILE")" 2>/dev/null || true
    rm -f "$NFT_TABLE_FILE"
}

ssh_check() {
    ssh -F /dev/null -i "$CLIENT_KEY" -p "$1" \
        -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes \
        -o UserKnownHostsFile="$KNOWN_HOSTS" -o ConnectTimeout=5 \
        "$SSH_USER@127.0.0.1" true
}

do_start() {
    if sshd_running; then
        log "already running from $STATE_DIR"
        [ -s "$ENV_FILE" ] || die "running but $ENV_FILE is missing"
        return 0
    fi
    id "$SSH_USER" >/dev/null 2>&1 || die "user $SSH_USER missing: run tests/services/install.sh"
    [ -x "$SSHD" ] || die "$SSHD missing: run tests/services/install.sh"
    rm -f "$ENV_FILE"

    # The user must reach STATE_DIR (authorized_keys, remote/): every parent directory
    # must be searchable by "others" (the user owns none of them).
    chmod 755 "$STATE_DIR"
    local d=$STATE_DIR parents=()
    while [ "$d" != / ]; do parents+=("$d"); d=$(dirname "$d"); done
    local mode path
    while read -r mode path; do
        [[ "${mode:9:1}" == [xt] ]] ||
            die "$SSH_USER cannot enter $path ($mode): use a STATE_DIR whose parents are o+x"
    done < <(stat -c '%A %n' "${parents[@]}")

    # Keys are made once per STATE_DIR (a restart keeps them, so clients stay valid).
    [ -s "$HOST_KEY" ] || ssh-keygen -q -t ed25519 -N '' -C drypipe-test-host -f "$HOST_KEY"
    [ -s "$CLIENT_KEY" ] || ssh-keygen -q -t ed25519 -N '' -C drypipe-test-client -f "$CLIENT_KEY"
    cp "$CLIENT_KEY.pub" "$AUTH_KEYS"
    chmod 644 "$AUTH_KEYS"          # read by sshd with the user's rights
    mkdir -p "$REMOTE"
    chown "$SSH_USER:" "$REMOTE"
    # sshd's privilege separation directory (normally made by systemd/the init script).
    mkdir -p /run/sshd
    chmod 755 /run/sshd

    local port
    port=$(free_ports 1)
    cat > "$CONFIG" <<EOF
# Generated by tests/services/sshd.sh - test sshd.
ListenAddress 127.0.0.1
Port $port
HostKey $HOST_KEY
PidFile $PID_FILE
AuthorizedKeysFile $AUTH_KEYS
AllowUsers $SSH_USER
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# No PAM (no pam session setup here) and no ownership checks on our files under /tmp.
UsePAM no
StrictModes no
# Tests open many connections/channels at once; the defaults (10) would drop some.
MaxStartups 100:30:200
MaxSessions 100
# internal-sftp: no dependency on the sftp-server binary's path.
Subsystem sftp internal-sftp
X11Forwarding no
PrintMotd no
PrintLastLog no
UseDNS no
LogLevel INFO
EOF

    # Forks into the background once it listens and writes PidFile.
    "$SSHD" -f "$CONFIG" -E "$LOG" </dev/null >/dev/null 2>&1 ||
        { tail_log "$LOG"; die "sshd failed to start"; }
    wait_for 10 "pid file" sshd_running || { tail_log "$LOG"; die "sshd did not start"; }

    {
        printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$HOST_KEY.pub")"
        printf '[localhost]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$HOST_KEY.pub")"
    } > "$KNOWN_HOSTS"
    cat > "$CLIENT_CONFIG" <<EOF
Host $HOST_ALIAS
    HostName 127.0.0.1
    Port $port
    User $SSH_USER
    IdentityFile $CLIENT_KEY
    IdentitiesOnly yes
    UserKnownHostsFile $KNOWN_HOSTS
    StrictHostKeyChecking yes
    BatchMode yes
EOF

    # A real login, with host key checking, proves the whole chain works.
    ssh_check "$port" 2>>"$LOG" || { tail_log "$LOG"; die "ssh login as $SSH_USER failed"; }
    log "ssh login as $SSH_USER works"
    [ "$ONLY_SSH_USER" = 1 ] && firewall_on "$port"

    write_env "$ENV_FILE" \
        "SSHD_PORT=$port" \
        "SSH_HOST=127.0.0.1" \
        "SSH_USER=$SSH_USER" \
        "SSH_KEY=$CLIENT_KEY" \
        "SSH_KNOWN_HOSTS=$KNOWN_HOSTS" \
        "SSH_CONFIG=$CLIENT_CONFIG" \
        "SSH_HOST_ALIAS=$HOST_ALIAS" \
        "SSH_REMOTE_BASE=$REMOTE" \
        "SSH_REMOTE_PYTHON=$REMOTE_PYTHON"
    log "ready on 127.0.0.1:$port; env: $ENV_FILE"
}

do_status() {
    if sshd_running; then
        log "sshd: running (pid $(cat "$PID_FILE")), session processes: $(session_pids "$(cat "$PID_FILE")" | wc -w)"
    else
        log "sshd: stopped"; return 1
    fi
}

case "$ACTION" in
    start) do_start ;;
    stop) do_stop ;;
    kill-sessions) do_kill_sessions ;;
    status) do_status ;;
esac
