"""The two channels to a remote host: paramiko for commands, rsync over ssh for data.

- `SshConnection`: ONE paramiko connection per host for the whole run, reused by every
  command; reconnected when it drops (first retry at once, then with a back-off).  Every
  command is a bash script fed to `bash -s` on stdin (no command-line length limit, nothing
  of it in the remote process list) and is written to be safe to run twice, so a command cut
  by a dropped connection is simply run again after reconnecting.
- `rsync`: `rsync -e "ssh -F <file>"`, retried on rsync's retryable exit codes (connection and
  timeout errors).  drypipe writes that ssh config file: the hosts exactly as the paramiko
  connection resolved them (address, user, port, key, jump hosts) with drypipe's host key
  checking, then the user's ssh config (`Include`) for everything else.

Jump hosts (ProxyJump): each hop is a paramiko connection running over a `direct-tcpip`
channel of the previous one, its host key checked like the final host's.

Host keys are checked against known_hosts (RejectPolicy); an unknown host is refused with a
message saying how to trust it, unless `ssh_accept_unknown_host` is set; a key that does not
match known_hosts is always refused; the same for every jump host.  Errors that retrying
cannot fix (unknown or changed host key, refused authentication, unusable private key) are
`UserError`s; the others are `SshUnavailable` (try again later).
"""
from __future__ import annotations

import logging
import os
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from drypipe.errors import UserError
from drypipe.instance import write_atomic
from executors.ssh_config import HostSettings, SshTarget, check_private_key

log = logging.getLogger("drypipe.ssh")
# paramiko's transport thread logs at ERROR what it then raises to us (a jump host refusing a
# channel, a dropped socket): drypipe reports those itself, so they show with -vv only.
logging.getLogger("paramiko.transport").addFilter(lambda record: logging.getLogger().isEnabledFor(logging.DEBUG))
SYSTEM_SSH_CONFIG = "/etc/ssh/ssh_config"

# rsync exit codes worth retrying: socket I/O (10), protocol data stream (12), timeouts (30,
# 35), and 255 = ssh could not connect or the connection dropped.
RSYNC_RETRYABLE = {10, 12, 30, 35, 255}
RSYNC_VANISHED = 24  # some source files vanished during the transfer: not an error for us
RSYNC_ATTEMPTS = 4
COMMAND_TIMEOUT = 300.0
MAX_BACKOFF = 60.0


class SshUnavailable(Exception):
    """The host cannot be reached right now (connection refused or dropped, timeout)."""


class UnknownHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey):
        super().__init__(f"{hostname} not found in known_hosts")
        self.hostname = hostname
        self.key = key


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise UnknownHostKey(hostname, key)


class _AcceptUnknown(paramiko.MissingHostKeyPolicy):
    """Trust a host that known_hosts does not list (explicit opt-in), for this run only."""

    def __init__(self, on_accept: Callable[[str, paramiko.PKey], None]):
        self.on_accept = on_accept

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        log.warning("ssh: accepting the UNKNOWN host key of %s (%s %s): ssh_accept_unknown_host is set",
                    hostname, key.get_name(), _fingerprint(key))
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.on_accept(hostname, key)


def _fingerprint(key: paramiko.PKey) -> str:
    import base64
    import hashlib

    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


@dataclass
class Result:
    rc: int
    out: str
    err: str


class SshConnection:
    """The control connection to one host (see the module docstring)."""

    def __init__(self, settings: HostSettings, state_dir: Path):
        self.settings = settings
        self.state_dir = state_dir  # local dir for this run's files (accepted host keys)
        self._clients: list[paramiko.SSHClient] = []  # the jump hosts', then the host's
        self._lock = threading.RLock()
        self._failures = 0
        self._next_attempt = 0.0
        self.ever_connected = False
        self.command_count = 0
        self.connect_count = 0
        self.home: str | None = None
        self._accepted: list[tuple[str, paramiko.PKey]] = []  # (host, key) of the keys accepted in this run
        self._rsync_config: str | None = None  # the text last written to rsync_config_path

    @property
    def label(self) -> str:
        return self.settings.label

    # -- connecting ----------------------------------------------------------------------------

    def check(self) -> None:
        """Connect now (if not connected): UserError for configuration problems."""
        with self._lock:
            self._ensure(respect_backoff=False)

    def _ensure(self, respect_backoff: bool = True) -> paramiko.Transport:
        if self._clients:
            transport = self._clients[-1].get_transport()
            if transport is not None and transport.is_active():
                return transport
            self._drop()
        now = time.monotonic()
        if respect_backoff and now < self._next_attempt:
            raise SshUnavailable(f"{self.label}: not reachable (next attempt in {self._next_attempt - now:.0f} s)")
        try:
            return self._connect()
        except SshUnavailable:
            self._failures += 1
            self._next_attempt = time.monotonic() + min(MAX_BACKOFF, 2.0 ** (self._failures - 1))
            raise

    def _connect(self) -> paramiko.Transport:
        """Connect to each jump host in turn, each through the previous one, then to the host."""
        hops = [*self.settings.jumps, self.settings.target]
        for hop in hops:
            check_private_key(hop)
        clients: list[paramiko.SSHClient] = []
        try:
            for i, hop in enumerate(hops):
                sock = self._tunnel(clients[-1], hops[i - 1], hop) if clients else None
                clients.append(self._connect_hop(hop, sock, jump=i < len(hops) - 1))
        except BaseException:
            for client in reversed(clients):
                client.close()
            raise
        transport = _transport(clients[-1])
        for client in clients:
            _transport(client).set_keepalive(15)
        self._clients = clients
        self._failures = 0
        self._next_attempt = 0.0
        self.ever_connected = True
        self.connect_count += 1
        via = f" through {', '.join(j.label for j in self.settings.jumps)}" if self.settings.jumps else ""
        log.info("ssh: connected to %s%s", self.label, via)
        return transport

    def _tunnel(self, client: paramiko.SSHClient, via: SshTarget, to: SshTarget) -> paramiko.Channel:
        """A direct-tcpip channel from jump host `via` to `to`: the next hop's connection runs in it."""
        try:
            return _transport(client).open_channel(
                "direct-tcpip", (to.hostname, to.port), ("127.0.0.1", 0), timeout=self.settings.connect_timeout)
        except paramiko.ChannelException as e:
            raise SshUnavailable(f"jump host {via.label} cannot reach {to.label}: {e.text}") from None
        except (TimeoutError, paramiko.SSHException, OSError, EOFError) as e:
            raise SshUnavailable(f"jump host {via.label}: {_os_error(e)} "
                                 f"(opening a connection to {to.label})") from None

    def _host_keys_into(self, client: paramiko.SSHClient) -> None:
        settings = self.settings
        known = settings.known_hosts
        if known:
            if os.path.exists(known):
                client.load_host_keys(known)
            elif not settings.accept_unknown:
                raise UserError(f"known_hosts file {known} does not exist (ssh_known_hosts / DRYPIPE_SSH_KNOWN_HOSTS)")
        else:
            client.load_system_host_keys()
            if os.path.exists("/etc/ssh/ssh_known_hosts"):
                client.load_system_host_keys("/etc/ssh/ssh_known_hosts")
        for hostname, key in self._accepted:  # accepted earlier in this run: a key that changed since is refused
            client.get_host_keys().add(hostname, key.get_name(), key)
        client.set_missing_host_key_policy(
            _AcceptUnknown(self._remember_accepted) if settings.accept_unknown else _RejectUnknown()
        )

    def _connect_hop(self, target: SshTarget, sock: paramiko.Channel | None, jump: bool) -> paramiko.SSHClient:
        """One authenticated connection; errors name the hop (`jump host ...`, or the host)."""
        settings = self.settings
        where = f"jump host {target.label}: " if jump else ""  # UserErrors name the host already
        hop = f"jump host {target.label}" if jump else target.label
        client = paramiko.SSHClient()
        self._host_keys_into(client)
        kwargs: dict[str, Any] = {
            "hostname": target.hostname, "port": target.port, "username": target.user, "sock": sock,
            "timeout": settings.connect_timeout, "banner_timeout": settings.connect_timeout,
            "auth_timeout": settings.connect_timeout,
        }
        if target.key_path:
            kwargs.update(key_filename=target.key_path, look_for_keys=False, allow_agent=False)
        passphrase = os.environ.get("DRYPIPE_SSH_KEY_PASSPHRASE")
        if passphrase:
            kwargs["passphrase"] = passphrase
        known = settings.known_hosts or "~/.ssh/known_hosts"
        try:
            client.connect(**kwargs)
        except UnknownHostKey as e:
            client.close()
            raise UserError(
                f"{where}host {target.known_hosts_name} is not in known_hosts {known} (it offers {e.key.get_name()} "
                f"key {_fingerprint(e.key)}); refusing to connect. Check the fingerprint and add the key "
                f"(ssh-keyscan -p {target.port} {target.hostname} >> {known}), or set "
                "TaskConf(executor_options={'ssh_accept_unknown_host': True}) to trust it"
            ) from None
        except paramiko.BadHostKeyException as e:
            client.close()
            raise UserError(
                f"{where}host key of {target.known_hosts_name} does NOT match known_hosts {known} "
                f"(got {e.key.get_name()} {_fingerprint(e.key)}): refusing to connect (possible "
                "man-in-the-middle attack, or the host was reinstalled)"
            ) from None
        except paramiko.PasswordRequiredException:
            client.close()
            raise UserError(
                f"{where}private key {target.key_path} is encrypted: set DRYPIPE_SSH_KEY_PASSPHRASE or use an "
                "unencrypted key"
            ) from None
        except paramiko.AuthenticationException as e:
            client.close()
            key = f"key {target.key_path}" if target.key_path else "the default keys / ssh agent"
            if self.ever_connected:  # it worked before in this run: a connection cut during auth
                raise SshUnavailable(f"{hop}: authentication interrupted ({e})") from None
            raise UserError(f"{where}ssh authentication as {target.label} failed with {key}") from None
        except (paramiko.SSHException, ValueError) as e:
            client.close()
            text = str(e)
            if "private key" in text.lower() or "not a valid" in text.lower() or isinstance(e, ValueError):
                raise UserError(f"{where}private key {target.key_path} cannot be used: {text}") from None
            raise SshUnavailable(f"{hop}: {text}") from None
        except (TimeoutError, OSError, EOFError) as e:
            client.close()
            raise SshUnavailable(f"{hop}: {_os_error(e)}") from None
        return client

    def _remember_accepted(self, hostname: str, key: paramiko.PKey) -> None:
        """Keep the accepted key for this run: reconnections check it, rsync's ssh reads it."""
        self._accepted.append((hostname, key))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{host} {k.get_name()} {k.get_base64()}\n" for host, k in self._accepted]
        write_atomic(self.accepted_known_hosts_path, "".join(lines), 0o600)

    @property
    def accepted_known_hosts_path(self) -> Path:
        return self.state_dir / f"known_hosts.{self.settings.host_id}"

    def _drop(self) -> None:
        clients, self._clients = self._clients, []
        for client in reversed(clients):
            try:
                client.close()
            except Exception:  # noqa: BLE001, S110 - closing a dead connection
                pass

    def close(self) -> None:
        with self._lock:
            self._drop()
            self._close_master()

    # -- commands ------------------------------------------------------------------------------

    def run(self, script: str, timeout: float = COMMAND_TIMEOUT, retry: bool = True) -> Result:
        """Run a bash script on the host (fed to `bash -s`); retried once on a fresh connection
        if the connection drops (scripts are written to be safe to run twice)."""
        with self._lock:
            try:
                return self._run_once(script, timeout)
            except SshUnavailable as e:
                if not retry:
                    raise
                log.info("ssh: %s; reconnecting", e)
                self._drop()
                return self._run_once(script, timeout)

    def _run_once(self, script: str, timeout: float) -> Result:
        transport = self._ensure()
        self.command_count += 1
        try:
            channel = transport.open_session(timeout=self.settings.connect_timeout)
            channel.settimeout(timeout)
            channel.exec_command("bash -s")
            channel.sendall(script.encode())
            channel.shutdown_write()
            out, err = [], []
            deadline = time.monotonic() + timeout
            while True:
                busy = False
                while channel.recv_ready():
                    out.append(channel.recv(1 << 16))
                    busy = True
                while channel.recv_stderr_ready():
                    err.append(channel.recv_stderr(1 << 16))
                    busy = True
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if not transport.is_active() or (channel.closed and not channel.exit_status_ready()):
                    raise SshUnavailable(f"{self.label}: connection lost during a command")
                if not busy:
                    if time.monotonic() > deadline:
                        channel.close()
                        raise SshUnavailable(f"{self.label}: command timed out after {timeout:.0f} s")
                    time.sleep(0.002)
            rc = channel.recv_exit_status()
            channel.close()
        except SshUnavailable:
            self._drop()
            raise
        except (TimeoutError, paramiko.SSHException, OSError, EOFError) as e:
            self._drop()
            raise SshUnavailable(f"{self.label}: {_os_error(e)}") from None
        return Result(rc, b"".join(out).decode("utf-8", "replace"), b"".join(err).decode("utf-8", "replace"))

    # -- rsync ---------------------------------------------------------------------------------

    def ssh_command(self) -> str:
        """The `ssh` command line rsync uses (-e): the hosts, keys and host key checking of
        rsync_config_path, plus the shared connection."""
        args = ["ssh", "-F", str(self._write_rsync_config())]
        if self.settings.control_master:
            # One ssh connection shared by this run's rsyncs (a new one costs 0.3 s or more).
            args += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_path}",
                     "-o", "ControlPersist=60"]
        return " ".join(shlex.quote(a) for a in args)

    @property
    def rsync_config_path(self) -> Path:
        return self.state_dir / f"ssh_config.{self.settings.host_id}"

    def rsync_config(self) -> str:
        """An ssh config naming this connection `settings.ssh_alias` (its jump hosts
        `<alias>-jump<N>`) with the addresses, users, ports and keys paramiko used, so that
        rsync goes exactly where the control connection goes, through the same jump hosts
        with the same host key checks (ProxyJump hands this file to each hop's ssh)."""
        settings = self.settings
        alias = settings.ssh_alias
        names = [f"{alias}-jump{i + 1}" for i in range(len(settings.jumps))] + [alias]
        lines = ["# Written by drypipe for rsync's ssh (regenerated every run)."]
        for i, (name, hop) in enumerate(zip(names, [*settings.jumps, settings.target], strict=True)):
            lines += [f"Host {name}", f"    HostName {hop.hostname}", f"    Port {hop.port}"]
            if hop.user:
                lines.append(f"    User {hop.user}")
            if hop.key_path:
                lines += [f"    IdentityFile {_config_path(hop.key_path)}", "    IdentitiesOnly yes"]
            lines.append(f"    ProxyJump {names[i - 1] if i else 'none'}")
        known = [settings.known_hosts or os.path.expanduser("~/.ssh/known_hosts")]
        if self._accepted:
            known.append(str(self.accepted_known_hosts_path))
        lines += [f"Host {' '.join(names)}", "    BatchMode yes", "    StrictHostKeyChecking yes",
                  f"    UserKnownHostsFile {' '.join(_config_path(k) for k in known)}",
                  f"    ConnectTimeout {int(settings.connect_timeout)}",
                  "    ServerAliveInterval 15", "    ServerAliveCountMax 4"]
        if settings.known_hosts:
            lines.append("    GlobalKnownHostsFile /dev/null")
        # The user's and the system's other settings (ciphers, ...) still apply (ssh reads the
        # system file only without -F).
        includes = [f for f in (settings.ssh_config, SYSTEM_SSH_CONFIG) if f and os.path.exists(f)]
        if includes:
            lines += ["Match all", *(f"    Include {_config_path(f, tokens=False)}" for f in includes)]
        return "\n".join(lines) + "\n"

    def _write_rsync_config(self) -> Path:
        text = self.rsync_config()
        if text != self._rsync_config:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.rsync_config_path, text, 0o600)
            self._rsync_config = text
        return self.rsync_config_path

    @property
    def control_path(self) -> str:
        import hashlib
        import tempfile

        raw = f"{os.getpid()} {self.settings}"
        return os.path.join(tempfile.gettempdir(), f"drypipe-ssh-{hashlib.sha256(raw.encode()).hexdigest()[:16]}")

    def _close_master(self) -> None:
        if self.settings.control_master and os.path.exists(self.control_path):
            try:
                subprocess.run(["ssh", "-F", str(self.rsync_config_path), "-o", f"ControlPath={self.control_path}",
                                "-O", "exit", self.settings.ssh_alias],
                               capture_output=True, timeout=10, check=False, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired) as e:  # it exits by itself after ControlPersist
                log.debug("ssh: closing the shared connection to %s: %s", self.label, e)

    def remote(self, path: str) -> str:
        """An rsync remote argument for a path on this host (the host as rsync_config names it)."""
        return f"{self.settings.ssh_alias}:{path}"

    def rsync(self, args: list[str], files: list[str] | None = None, what: str = "rsync") -> None:
        """Run rsync with our ssh; `files` (relative paths) go to --files-from.  Retryable
        failures are retried; then SshUnavailable.  Other failures: UserError."""
        command = ["rsync", "-e", self.ssh_command(), *args]
        if files is not None:
            command.insert(1, "--files-from=-")
        stdin = "".join(f + "\n" for f in files) if files is not None else None
        delay = 0.5
        for attempt in range(1, RSYNC_ATTEMPTS + 1):
            if not self.ever_connected:
                self.check()  # paramiko first: clear errors for host keys and keys
            try:
                done = subprocess.run(command, input=stdin, capture_output=True, text=True,
                                      timeout=COMMAND_TIMEOUT * 4, check=False)
            except FileNotFoundError:
                raise UserError("rsync is not installed on this host (it copies tasks to and from ssh hosts)") from None
            except subprocess.TimeoutExpired:
                done = subprocess.CompletedProcess(command, 30, "", "timed out")
            if done.returncode in (0, RSYNC_VANISHED):
                return
            message = _rsync_error(done.stderr)
            if done.returncode not in RSYNC_RETRYABLE:
                raise UserError(f"{what} with {self.label} failed (rsync exit code {done.returncode}): {message}")
            log.info("ssh: %s with %s failed (rsync exit code %d, attempt %d): %s",
                     what, self.label, done.returncode, attempt, message)
            if attempt < RSYNC_ATTEMPTS:
                time.sleep(delay)
                delay *= 2
        raise SshUnavailable(f"{what} with {self.label} failed {RSYNC_ATTEMPTS} times: {message}")


def _config_path(path: str, tokens: bool = True) -> str:
    """A path as an ssh config value: quoted, its % not taken for a token (where ssh expands them)."""
    if '"' in path or "\n" in path:
        raise UserError(f"path {path!r} cannot be written in an ssh config file (quote or newline)")
    return '"' + (path.replace("%", "%%") if tokens else path) + '"'


def _rsync_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return "; ".join(lines[-4:]) or "no error message"


def _transport(client: paramiko.SSHClient) -> paramiko.Transport:
    """The transport of a connected client (None only before connect or after close)."""
    transport = client.get_transport()
    if transport is None:
        raise SshUnavailable("the ssh connection is closed")
    return transport


def _os_error(e: BaseException) -> str:
    if isinstance(e, socket.timeout):
        return "timed out"
    if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError):  # one error per address tried
        return "; ".join(sorted({_os_error(error) for error in e.errors.values()}))
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return text


class ConnectionPool:
    """One `SshConnection` per host settings, for the whole run."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self._connections: dict[HostSettings, SshConnection] = {}
        self._lock = threading.Lock()

    def get(self, settings: HostSettings) -> SshConnection:
        with self._lock:
            connection = self._connections.get(settings)
            if connection is None:
                connection = self._connections[settings] = SshConnection(settings, self.state_dir)
            return connection

    def all(self) -> list[SshConnection]:
        return list(self._connections.values())

    def close(self) -> None:
        for connection in self.all():
            connection.close()
