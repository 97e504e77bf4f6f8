#!/usr/bin/env bash
# Install everything the real-server tests need (Slurm + munge, sshd + rsync, an S3 server).
#
# Idempotent and fast when already done: every step first checks whether its result is
# already there and only then does the work. Run as root (CI is root on a fresh Debian 12
# machine; nothing installed by hand survives to a new machine).
#
# Usage: bash tests/services/install.sh
set -euo pipefail

log() { printf '[install] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root"; exit 1
fi

# ---------------------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------------------
# curl: s3.sh polls the S3 server with it. iproute2 (ss): the smoke tests check listeners.
# python3 / python3-venv: the system interpreter is the one the unprivileged ssh test user
# runs (root's pyenv lives under /root, mode 700) and the one the moto venv is built from.
PACKAGES=(slurmctld slurmd slurm-client munge
          slurmdbd mariadb-server  # accounting in the test cluster: sacct (states, MaxRSS, TotalCPU of jobs)
          openssh-server openssh-client rsync
          procps tmux curl iproute2 python3 python3-venv
          chromium     # headless: tests/ux open the HTML report of report-execution-times, and the docs site offline, in it
          graphviz     # dot: tests/ux/test_graph.py parses `drypipe graph --format dot` with Graphviz itself
          bash-builtins  # loadable mkdir/rmdir: the task runtime saves a fork each where present
          strace         # tests/reliability: the crash-point sweep injects faults with it
          nftables       # sshd_inner.sh: a test sshd that root reaches only through a jump host
          # tests/test_containers.py runs tasks in real containers: podman, with runc (crun
          # refuses this machine's hybrid cgroups), and for rootless podman on the ssh host
          # newuidmap (uidmap) and its pause process (catatonit)
          podman runc uidmap catatonit)

missing=()
for p in "${PACKAGES[@]}"; do
    # "install ok installed" is the only state in which the package is really usable.
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    # Stop the packages' postinst scripts from starting daemons (there is no init system,
    # and we start our own instances with our own configs). Only add a policy-rc.d if there
    # is none, and only remove the one we added (marked, so a crash leftover is recognised).
    POLICY=/usr/sbin/policy-rc.d
    MARK="# drypipe-tests-policy-rc.d"
    own_policy=0
    if grep -qF "$MARK" "$POLICY" 2>/dev/null; then
        own_policy=1                    # ours, left by a run that was killed
    elif [ ! -e "$POLICY" ]; then
        printf '#!/bin/sh\n%s\nexit 101\n' "$MARK" > "$POLICY"
        chmod 755 "$POLICY"
        own_policy=1
    fi
    remove_policy() {
        if [ "$own_policy" = 1 ] && grep -qF "$MARK" "$POLICY" 2>/dev/null; then
            rm -f "$POLICY"
        fi
    }
    trap remove_policy EXIT

    export DEBIAN_FRONTEND=noninteractive
    # Lock timeout: another job on the machine may be running apt at the same moment.
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    remove_policy
    trap - EXIT
else
    log "debian packages: already installed"
fi

# ---------------------------------------------------------------------------------------
# 2. The S3 server (moto) in its own venv, so it cannot clash with the project's deps.
# ---------------------------------------------------------------------------------------
# 'moto[s3]' plus flask/flask-cors is all moto_server needs for S3 (moto[server] would pull
# every AWS service: 3x the time and size).
MOTO_VENV=/opt/drypipe-moto
# find_spec instead of import: answers in milliseconds (importing moto takes ~0.4 s).
moto_ok() {
    "$MOTO_VENV/bin/python" -c 'import importlib.util as u, sys
sys.exit(not all(u.find_spec(m) for m in ("moto", "moto.s3", "flask", "flask_cors")))' 2>/dev/null
}
if [ -x "$MOTO_VENV/bin/moto_server" ] && moto_ok; then
    log "moto venv: already installed ($MOTO_VENV)"
else
    log "creating moto venv in $MOTO_VENV"
    rm -rf "$MOTO_VENV"
    # The system python (not a pyenv shim): independent of root's pyenv setup.
    /usr/bin/python3 -m venv "$MOTO_VENV"
    # pip's output goes to a log (the local extra indexes print one warning per package);
    # shown only if the install fails.
    pip_log=$(mktemp)
    if ! "$MOTO_VENV/bin/pip" install -q 'moto[s3]' flask flask-cors >"$pip_log" 2>&1; then
        tail -n 40 "$pip_log" >&2; rm -f "$pip_log"; exit 1
    fi
    rm -f "$pip_log"
    "$MOTO_VENV/bin/python" -c 'import moto.server, flask_cors'
fi

# ---------------------------------------------------------------------------------------
# 3. A plain unprivileged user for the ssh tests (as root every ssh command costs ~0.3 s
#    more because of root's shell init, and real clusters are not accessed as root).
# ---------------------------------------------------------------------------------------
SSH_USER=drypipe-ssh
if ! id "$SSH_USER" >/dev/null 2>&1; then
    log "creating user $SSH_USER"
    useradd --create-home --shell /bin/bash "$SSH_USER"
fi
# useradd leaves the password locked ('!'), and sshd then refuses even key logins.
# '*' means "no password can match" but the account is not locked.
if [ "$(getent shadow "$SSH_USER" | cut -d: -f2)" != "*" ]; then
    usermod -p '*' "$SSH_USER"
fi
# Rootless podman (tests/test_containers.py, a task in a container on the ssh host) maps the
# container's users to these ids; useradd adds them only when /etc/subuid exists already.
if ! grep -q "^$SSH_USER:" /etc/subuid 2>/dev/null; then
    usermod --add-subuids 200000-265535 --add-subgids 200000-265535 "$SSH_USER"
fi

log "done"
