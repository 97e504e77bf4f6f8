#!/usr/bin/env bash
# A second test sshd on 127.0.0.1 that only the ssh test user's processes can connect to
# (an nftables rule resets every other local connection to its port): the tests, run as
# root, reach it only through sshd.sh's server as a jump host (ProxyJump), whose sessions
# run as that user.  Same actions and env.sh as sshd.sh (SSH_HOST_ALIAS is
# drypipe-test-sshd-inner; its ssh_config has no ProxyJump: use the variables).
#
#   sshd_inner.sh {start|stop|kill-sessions|status} STATE_DIR
#
# Requires: sshd.sh's requirements, and nft (nftables, install.sh); root.
set -euo pipefail
export SSHD_REACHABLE_BY_SSH_USER_ONLY=1
exec bash "$(dirname "${BASH_SOURCE[0]}")/sshd.sh" "$@"
