"""What a TaskConf says about running a task over SSH: the target host, how to trust it, and
where the task lives on it.

    TaskConf(ssh_specs="user@host[:port]:/path/to/private_key",
             remote_base_dir="/scratch/me/pipelines",      # the instance goes in <dir>/<instance name>
             executer_type="process" | "slurm",            # how the task runs on that host
             executor_options={...})                       # the settings below, all optional

executor_options (per TaskConf; environment variables give run-wide defaults):

    ssh_config               ssh client config file read for the host of ssh_specs and its jump
                             hosts (env DRYPIPE_SSH_CONFIG; default ~/.ssh/config; "none": none)
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

The host of ssh_specs may be a `Host` alias of that config: HostName, User, Port, IdentityFile
(the first that exists) and ProxyJump come from it, each jump host resolved the same way; what
ssh_specs gives explicitly wins.  ProxyCommand is not supported (a clear error).

The private key's path may appear in messages; its content and any passphrase
(env DRYPIPE_SSH_KEY_PASSPHRASE) never do.
"""
from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from typing import Any

import paramiko

from drypipe.errors import UserError
from drypipe.task_conf import TaskConf
from executors.ssh_plugin import PLUGIN

DEFAULT_PORT = 22
DEFAULT_CONNECT_TIMEOUT = 15.0
DEFAULT_REMOTE_BASE = "drypipe-instances"  # relative: under the remote user's home
DEFAULT_SSH_CONFIG = "~/.ssh/config"
MAX_JUMPS = 10  # ProxyJump nested deeper than this (a hop's own ProxyJump...) is a loop in the config

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
    alias: str | None = None  # the ssh config's Host name, when it differs from the host

    @property
    def label(self) -> str:
        """How messages name the host (never the key)."""
        user = f"{self.user}@" if self.user else ""
        address = f"{user}{self.host}:{self.port}"
        return f"{self.alias} ({address})" if self.alias else address

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
    jumps: tuple[SshTarget, ...] = ()  # ProxyJump hosts, the first one is connected to first
    ssh_config: str | None = None  # the config file the hosts were resolved with

    @property
    def label(self) -> str:
        return self.target.label

    @property
    def _raw_id(self) -> str:
        raw = f"{self.target.user}@{self.target.hostname}:{self.target.port}"
        return raw + "".join(f" via {j.user}@{j.hostname}:{j.port}" for j in self.jumps)

    @property
    def host_id(self) -> str:
        """A file-name-safe id of this connection (for local bookkeeping files)."""
        raw = self._raw_id
        safe = re.sub(r"[^A-Za-z0-9._@-]", "_", raw.split(" ")[0])
        return f"{safe}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"

    @property
    def ssh_alias(self) -> str:
        """The Host name of this connection in the ssh config drypipe writes for rsync."""
        return f"drypipe-{hashlib.sha256(self._raw_id.encode()).hexdigest()[:12]}"


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
    user, host, port, key_path, base = split_ssh_specs(specs)
    return SshTarget(user, host, port or DEFAULT_PORT, key_path), base


def split_ssh_specs(specs: str) -> tuple[str | None, str, int | None, str | None, str | None]:
    """user, host, port (None: not given), key path and remote base dir of ssh_specs."""
    if not isinstance(specs, str) or not specs.strip():
        raise UserError(f"ssh_specs must be a string like user@host:port:/path/to/key, got {specs!r}")
    user, host, port, parts = _split_address(specs.strip(), f"ssh_specs {specs!r}")
    parts = [p for p in parts if p != ""]
    if len(parts) > 2:
        raise UserError(f"ssh_specs {specs!r}: expected user@host[:port]:/path/to/private_key")
    base = parts[0] if len(parts) == 2 else None
    key = parts[-1] if parts else None
    key_path = os.path.abspath(os.path.expanduser(key)) if key else None
    return user, host, port, key_path, base


def _split_address(text: str, what: str) -> tuple[str | None, str, int | None, list[str]]:
    """`[user@]host[:port][:more:...]`: user, host, port (None: not given), the rest split on ':'."""
    user = None
    if "@" in text:
        user, _, text = text.partition("@")
        if not _USER.match(user):
            raise UserError(f"{what}: invalid user name {user!r}")
    if text.startswith("["):  # [ipv6]:port:...
        end = text.find("]")
        if end < 0:
            raise UserError(f"{what}: unclosed [ in host")
        host, rest = text[: end + 1], text[end + 1:]
        parts = rest.split(":")[1:] if rest.startswith(":") else ([] if not rest else None)
        if parts is None:
            raise UserError(f"{what}: expected ':' after the host")
    else:
        host, *parts = text.split(":")
    if not host or not _HOST.match(host):
        raise UserError(f"{what}: invalid host {host!r}")
    port = None
    if parts and parts[0].isdigit():
        port = int(parts.pop(0))
        if not 0 < port < 65536:
            raise UserError(f"{what}: invalid port {port}")
    return user, host, port, parts


# -- the ssh client config ------------------------------------------------------------------------


def ssh_config_file(conf: TaskConf) -> str | None:
    """The ssh config file to read: the option's, else ~/.ssh/config if it exists, else none."""
    value = _option(conf, "ssh_config", "DRYPIPE_SSH_CONFIG")
    if value is None:
        default = os.path.expanduser(DEFAULT_SSH_CONFIG)
        return default if os.path.isfile(default) else None
    if str(value).strip().lower() == "none":
        return None
    path = os.path.abspath(os.path.expanduser(str(value)))
    if not os.path.isfile(path):
        raise UserError(f"ssh config file {path} does not exist (executor_options ssh_config / DRYPIPE_SSH_CONFIG)")
    return path


def _load_config(path: str) -> paramiko.SSHConfig:
    info = os.stat(path)
    return _parse_config(path, info.st_mtime_ns, info.st_size)


@functools.lru_cache(maxsize=8)
def _parse_config(path: str, mtime_ns: int, size: int) -> paramiko.SSHConfig:
    """Parsed once per file version (every task's settings are resolved at each launch and poll)."""
    try:
        return paramiko.SSHConfig.from_path(path)
    except (OSError, paramiko.SSHException, ValueError) as e:
        raise UserError(f"ssh config file {path} cannot be read: {e}") from None


class _Resolver:
    """Resolves hosts through one ssh config file (or none), as ssh would."""

    def __init__(self, path: str | None):
        self.path = path
        self.config = _load_config(path) if path else None

    def lookup(self, host: str) -> dict[str, Any]:
        if self.config is None:
            return {}
        try:
            return self.config.lookup(host)
        except (paramiko.SSHException, ValueError, ImportError) as e:  # e.g. a Match it cannot evaluate
            raise UserError(f"ssh config file {self.path}: host {host}: {e}") from None

    def host(self, user: str | None, host: str, port: int | None,
             key_path: str | None) -> tuple[SshTarget, dict[str, Any]]:
        """One host: what was given explicitly, the rest from its config entry (also returned)."""
        name = host[1:-1] if host.startswith("[") else host
        entry = self.lookup(name)
        proxy_command = entry.get("proxycommand")
        if proxy_command and proxy_command.lower() != "none" and not entry.get("proxyjump"):
            raise UserError(f"ssh config file {self.path}: host {name} uses ProxyCommand, which drypipe's ssh "
                            "connection does not support: use ProxyJump")
        hostname = entry.get("hostname", name)
        if port is None:
            try:
                port = int(entry.get("port", DEFAULT_PORT))
            except ValueError:
                raise UserError(f"ssh config file {self.path}: host {name}: invalid Port {entry['port']!r}") from None
        if key_path is None:
            key_path = next((os.path.abspath(os.path.expanduser(k)) for k in entry.get("identityfile", [])
                             if os.path.exists(os.path.expanduser(k))), None)
        address = f"[{hostname}]" if ":" in hostname and not hostname.startswith("[") else hostname
        alias = name if hostname != name else None
        return SshTarget(user or entry.get("user"), address, port, key_path, alias), entry

    def jumps(self, proxy_jump: str | None, depth: int = 0) -> tuple[SshTarget, ...]:
        """The hosts of a ProxyJump value, first connected first.  As with ssh, the first
        host's own ProxyJump (from the config) comes before it; the others' are ignored."""
        if not proxy_jump or proxy_jump.strip().lower() == "none":
            return ()
        if depth >= MAX_JUMPS:
            raise UserError(f"ssh config file {self.path}: more than {MAX_JUMPS} nested ProxyJump hosts (a loop?)")
        hops: list[SshTarget] = []
        for i, word in enumerate(proxy_jump.split(",")):
            text = word.strip().removeprefix("ssh://")
            user, host, port, rest = _split_address(text, f"ssh config file {self.path}: ProxyJump {word.strip()!r}")
            if rest:
                raise UserError(f"ssh config file {self.path}: ProxyJump {word.strip()!r}: expected [user@]host[:port]")
            target, entry = self.host(user, host, port, None)
            if i == 0:
                hops.extend(self.jumps(entry.get("proxyjump"), depth + 1))
            hops.append(target)
        return tuple(hops)


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
    specs = PLUGIN.settings_of(conf).ssh_specs
    if not specs:
        raise UserError("executer_type ssh needs TaskConf.ssh_specs (user@host[:port]:/path/to/private_key)")
    user, host, port, key_path, _ = split_ssh_specs(specs)
    config_file = ssh_config_file(conf)
    resolver = _Resolver(config_file)
    target, entry = resolver.host(user, host, port, key_path)
    jumps = resolver.jumps(entry.get("proxyjump"))
    known_hosts = _option(conf, "ssh_known_hosts", "DRYPIPE_SSH_KNOWN_HOSTS")
    if known_hosts:
        known_hosts = os.path.abspath(os.path.expanduser(str(known_hosts)))
    accept = _flag(_option(conf, "ssh_accept_unknown_host", "DRYPIPE_SSH_ACCEPT_UNKNOWN_HOST", False))
    try:
        timeout = float(_option(conf, "ssh_connect_timeout", None, DEFAULT_CONNECT_TIMEOUT))
    except (TypeError, ValueError):
        raise UserError("executor_options ssh_connect_timeout must be a number of seconds") from None
    master = _flag(_option(conf, "ssh_control_master", "DRYPIPE_SSH_CONTROL_MASTER", True))
    return HostSettings(target, known_hosts, accept, timeout, master, jumps, config_file)


def remote_settings(conf: TaskConf) -> RemoteSettings:
    ssh = PLUGIN.settings_of(conf)
    _, base_in_specs = parse_ssh_specs(ssh.ssh_specs or "")
    base = ssh.remote_base_dir or base_in_specs or DEFAULT_REMOTE_BASE
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
        raise UserError(f"private key {path} not found (for {target.label})") from None
    except OSError as e:
        raise UserError(f"private key {path} is not readable ({e.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"private key {path} is not a file")
    if not os.access(path, os.R_OK):
        raise UserError(f"private key {path} is not readable by this user")
    if info.st_uid == os.getuid() and info.st_mode & 0o077:
        raise UserError(
            f"private key {path} of {target.label} is accessible by other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"ssh refuses such keys: chmod 600 {path}"
        )
