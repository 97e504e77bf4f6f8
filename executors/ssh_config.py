"""What a TaskConf says about running a task over SSH: the target host, how to trust it, and
where the task lives on it.

    TaskConf(ssh_specs="user@host[:port]:/path/to/private_key",
             remote_base_dir="/scratch/me/pipelines",      # the instance goes in <dir>/<instance name>
             executer_type="process" | "slurm",            # how the task runs on that host
             executor_options={...})                       # the settings below, all optional

executor_options (per TaskConf; environment variables give run-wide defaults):

    ssh_known_hosts          known_hosts file checked against the server's host key
                             (env DRYPIPE_SSH_KNOWN_HOSTS; default: ~/.ssh/known_hosts and
                             /etc/ssh/ssh_known_hosts)
    ssh_accept_unknown_host  True: trust a host missing from known_hosts (its key is logged and
                             kept for this run only).  A key that CHANGED is always refused.
                             (env DRYPIPE_SSH_ACCEPT_UNKNOWN_HOST=1)
    ssh_connect_timeout      seconds (default 15)
    ssh_control_master       False: no shared ssh connection (ControlMaster) for rsync
    remote_python            interpreter that creates the remote venv for python calls
                             (env DRYPIPE_SSH_REMOTE_PYTHON; default python3)
    remote_venv              where that venv lives (default <remote instance>/.drypipe/.venv)
    remote_pip_deps          True: also install drypipe's dependencies in the venv (needs an index)
    remote_env               {NAME: value} exported before every remote command (e.g. SLURM_CONF)
    remote_init              bash lines run before every remote command (e.g. "module load slurm")
    upload_pipeline_code     False: do not copy $__pipeline_code_dir to the host (default True)

The private key's path may appear in messages; its content and any passphrase
(env DRYPIPE_SSH_KEY_PASSPHRASE) never do.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from typing import Any

from drypipe.errors import UserError
from drypipe.task_conf import TaskConf

DEFAULT_PORT = 22
DEFAULT_CONNECT_TIMEOUT = 15.0
DEFAULT_REMOTE_BASE = "drypipe-instances"  # relative: under the remote user's home

_HOST = re.compile(r"^[A-Za-z0-9._-]+$|^\[[0-9A-Fa-f:.]+\]$")
_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*$")
_BOOL_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class SshTarget:
    """user@host:port and the private key to log in with (None: agent / default keys)."""

    user: str | None
    host: str
    port: int
    key_path: str | None

    @property
    def label(self) -> str:
        """How messages name the host (never the key)."""
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port}"

    @property
    def hostname(self) -> str:
        return self.host[1:-1] if self.host.startswith("[") else self.host

    @property
    def known_hosts_name(self) -> str:
        """The host as known_hosts files name it: `host`, or `[host]:port` off port 22."""
        return self.hostname if self.port == DEFAULT_PORT else f"[{self.hostname}]:{self.port}"


@dataclass(frozen=True)
class HostSettings:
    """Everything that identifies one control connection: tasks with equal settings share it."""

    target: SshTarget
    known_hosts: str | None  # None: the user's and the system's known_hosts
    accept_unknown: bool
    connect_timeout: float
    control_master: bool = True

    @property
    def label(self) -> str:
        return self.target.label

    @property
    def host_id(self) -> str:
        """A file-name-safe id of this connection (for local bookkeeping files)."""
        raw = f"{self.target.user}@{self.target.hostname}:{self.target.port}"
        safe = re.sub(r"[^A-Za-z0-9._@-]", "_", raw)
        return f"{safe}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class RemoteSettings:
    """Where and how a task lives on its host."""

    base_dir: str  # as configured (may be relative to the remote home, or start with ~/)
    python: str
    venv: str | None
    pip_deps: bool
    env: tuple[tuple[str, str], ...]
    init: str
    upload_code: bool

    def prelude(self) -> str:
        """Bash lines run first in every remote command for these settings."""
        lines = ["unset SSH_CONNECTION SSH_CLIENT SSH_TTY SSH_AUTH_SOCK"]
        for name, value in self.env:
            lines.append(f"export {name}={_q(value)}")
        if self.init:
            lines.append(self.init)
        return "\n".join(lines) + "\n"


def _q(value: str) -> str:
    import shlex

    return shlex.quote(value)


def parse_ssh_specs(specs: str) -> tuple[SshTarget, str | None]:
    """`user@host[:port][:/path/to/key]`, or the original DryPipe's
    `user@host[:port]:/remote/base/dir:/path/to/key` (two paths: base dir, then key).

    Returns the target and the remote base dir given in the specs (or None)."""
    if not isinstance(specs, str) or not specs.strip():
        raise UserError(f"ssh_specs must be a string like user@host:port:/path/to/key, got {specs!r}")
    text = specs.strip()
    user = None
    if "@" in text:
        user, _, text = text.partition("@")
        if not _USER.match(user):
            raise UserError(f"ssh_specs {specs!r}: invalid user name {user!r}")
    if text.startswith("["):  # [ipv6]:port:...
        end = text.find("]")
        if end < 0:
            raise UserError(f"ssh_specs {specs!r}: unclosed [ in host")
        host, rest = text[: end + 1], text[end + 1:]
        parts = rest.split(":")[1:] if rest.startswith(":") else ([] if not rest else None)
        if parts is None:
            raise UserError(f"ssh_specs {specs!r}: expected ':' after the host")
    else:
        host, *parts = text.split(":")
    if not host or not _HOST.match(host):
        raise UserError(f"ssh_specs {specs!r}: invalid host {host!r}")
    port = DEFAULT_PORT
    if parts and parts[0].isdigit():
        port = int(parts.pop(0))
        if not 0 < port < 65536:
            raise UserError(f"ssh_specs {specs!r}: invalid port {port}")
    parts = [p for p in parts if p != ""]
    if len(parts) > 2:
        raise UserError(f"ssh_specs {specs!r}: expected user@host[:port]:/path/to/private_key")
    base = parts[0] if len(parts) == 2 else None
    key = parts[-1] if parts else None
    key_path = os.path.abspath(os.path.expanduser(key)) if key else None
    return SshTarget(user, host, port, key_path), base


def _option(conf: TaskConf, name: str, env: str | None = None, default: Any = None) -> Any:
    options = conf.executor_options or {}
    if name in options and options[name] is not None:
        return options[name]
    if env and os.environ.get(env) not in (None, ""):
        return os.environ[env]
    return default


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _BOOL_TRUE
    return bool(value)


def host_settings(conf: TaskConf) -> HostSettings:
    if not conf.ssh_specs:
        raise UserError("executer_type ssh needs TaskConf.ssh_specs (user@host[:port]:/path/to/private_key)")
    target, _ = parse_ssh_specs(conf.ssh_specs)
    known_hosts = _option(conf, "ssh_known_hosts", "DRYPIPE_SSH_KNOWN_HOSTS")
    if known_hosts:
        known_hosts = os.path.abspath(os.path.expanduser(str(known_hosts)))
    accept = _flag(_option(conf, "ssh_accept_unknown_host", "DRYPIPE_SSH_ACCEPT_UNKNOWN_HOST", False))
    try:
        timeout = float(_option(conf, "ssh_connect_timeout", None, DEFAULT_CONNECT_TIMEOUT))
    except (TypeError, ValueError):
        raise UserError("executor_options ssh_connect_timeout must be a number of seconds") from None
    master = _flag(_option(conf, "ssh_control_master", "DRYPIPE_SSH_CONTROL_MASTER", True))
    return HostSettings(target, known_hosts, accept, timeout, master)


def remote_settings(conf: TaskConf) -> RemoteSettings:
    _, base_in_specs = parse_ssh_specs(conf.ssh_specs or "")
    base = conf.remote_base_dir or base_in_specs or DEFAULT_REMOTE_BASE
    if any(c in base for c in "\t\n\r"):
        raise UserError(f"remote_base_dir {base!r} contains a tab or newline")
    env = _option(conf, "remote_env", None, {}) or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and k.isidentifier() for k in env):
        raise UserError("executor_options remote_env must map variable names to values")
    init = _option(conf, "remote_init", None, "") or ""
    if isinstance(init, (list, tuple)):
        init = "\n".join(init)
    return RemoteSettings(
        base_dir=str(base),
        python=str(_option(conf, "remote_python", "DRYPIPE_SSH_REMOTE_PYTHON", "python3")),
        venv=_option(conf, "remote_venv", "DRYPIPE_SSH_REMOTE_VENV"),
        pip_deps=_flag(_option(conf, "remote_pip_deps", None, False)),
        env=tuple(sorted((k, str(v)) for k, v in env.items())),
        init=str(init),
        upload_code=_flag(_option(conf, "upload_pipeline_code", None, True)),
    )


def remote_mode(conf: TaskConf) -> str:
    """How the task runs on its host: `slurm` (submitted there) or `process` (detached)."""
    return "slurm" if conf.executer_type == "slurm" else "process"


def resolve_remote_dir(path: str, home: str) -> str:
    """An absolute remote path: `~/x` and relative paths are under the remote home."""
    if path == "~":
        return home
    path = path.removeprefix("~/")
    return posixpath.normpath(path if path.startswith("/") else posixpath.join(home, path))


def check_private_key(target: SshTarget) -> None:
    """A clear error for a key that ssh/paramiko would refuse (missing, unreadable, too open)."""
    path = target.key_path
    if path is None:
        return
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"ssh_specs: private key {path} not found (for {target.label})") from None
    except OSError as e:
        raise UserError(f"ssh_specs: private key {path} is not readable ({e.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"ssh_specs: private key {path} is not a file")
    if not os.access(path, os.R_OK):
        raise UserError(f"ssh_specs: private key {path} is not readable by this user")
    if info.st_uid == os.getuid() and info.st_mode & 0o077:
        raise UserError(
            f"ssh_specs: private key {path} is accessible by other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"ssh refuses such keys: chmod 600 {path}"
        )
