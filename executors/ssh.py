"""SSH executor: runs tasks on remote hosts (`TaskConf(ssh_specs=..., remote_base_dir=...)`).

The loop sends every task whose TaskConf has `ssh_specs` here (`TaskConf.executor_name()`);
`executer_type` then says how it runs on the host: `process` (a detached process) or `slurm`
(a job array submitted to the host's Slurm, built by the Slurm executor's own code).

- launch: per host, ONE rsync uploads the tasks' control dirs, the shared task runtime and
  exactly the input files they consume (upstream outputs included) into
  `<remote_base_dir>/<instance name>/` with the local layout; then ONE remote command starts
  them all (or submits them as job arrays).  Python calls get drypipe in a remote venv
  (`upload-drypipe-for-remote-instance`), bash-only tasks need nothing on the host.
  Each launch has a token, recorded locally (`.drypipe/<key>/ssh_launch`) before anything is
  sent and remotely when the task starts: the poll tells "started by this launch" from "the
  launch never arrived", so a dropped connection never makes a task run twice.
- poll: ONE remote command per host per poll cycle reads the markers, launch tokens and pid
  liveness of all the host's in-flight tasks (plus one `squeue` under Slurm).  Intermediate
  states are mirrored on the local marker; on a final state the task's output dir and its logs
  and output variables are downloaded first, and only then the local marker takes the remote
  final state.
- kill: `task kill` on the host (or `scancel`), then the same download.

Connections are paramiko (one per host for the run, reconnected with back-off); data goes
with rsync over ssh, retried on rsync's retryable errors.  See docs/ssh.md.
"""
from __future__ import annotations

import atexit
import logging
import os
import posixpath
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from drypipe import state as st
from drypipe.errors import UserError
from drypipe.executor import Executor, ExecutorContext, Liveness, TaskRun
from drypipe.instance import Instance, write_atomic
from drypipe.task_conf import TaskConf
from drypipe.task_record import TaskRecord
from drypipe.text import first_of
from executors import slurm_api
from executors import ssh_scripts as scripts
from executors.ssh_client import ConnectionPool, SshConnection, SshUnavailable
from executors.ssh_config import (
    HostSettings,
    RemoteSettings,
    host_settings,
    remote_mode,
    remote_settings,
    resolve_remote_dir,
    split_ssh_specs,
)
from executors.ssh_plugin import RECORD_FILE
from executors.ssh_stage import (
    DEFAULT_VENV,
    DOWNLOADED_CONTROL_FILES,
    EXTERNAL_DIR,
    SSH_DIR,
    UPLOAD_EXCLUDES,
    UPLOAD_INCLUDES,
    RemoteTask,
    build_wheel,
    code_excludes,
    source_digest,
    stage_task,
)

log = logging.getLogger("drypipe.ssh")

STARTUP_SECONDS = 30  # a started task writes its pid file within ms; after this long, it never will
ARRAY_CHUNK = 1000
KILL_WAIT_SECONDS = 20.0
RSYNC_FLAGS = ["-rlpt"]


@dataclass
class _Task:
    """A TaskRun with its SSH settings resolved."""

    run: TaskRun
    settings: HostSettings
    remote: RemoteSettings
    mode: str

    @property
    def key(self) -> str:
        return self.run.key


def _names(keys: list[str]) -> str:
    return f"task{'s' if len(keys) > 1 else ''} {first_of(keys)}"


class SshExecutor(Executor):
    name = "ssh"
    event_driven = False  # polled on the loop's --sleep-schedule back-off

    def __init__(self, context: ExecutorContext):
        super().__init__(context)
        self.root = Path(context.instance_dir)
        self.instance = Instance(self.root)
        self.pool = ConnectionPool(self.root / SSH_DIR)
        atexit.register(self.pool.close)  # commands that never call close(): no lingering ssh masters
        self._homes: dict[HostSettings, str] = {}
        self._dirs_done: set[tuple[HostSettings, str]] = set()
        self._code_done: set[tuple[HostSettings, str, str]] = set()
        self._venv_done: dict[tuple[HostSettings, str], str] = {}
        self._failed_downloads: dict[str, int] = defaultdict(int)
        self.venv_installed = False
        self._logs_fetched: set[str] = set()
        # What tests and -vv logs look at: per poll call, the remote commands it made.
        self.poll_log: deque[dict[str, Any]] = deque(maxlen=10000)

    # -- settings ------------------------------------------------------------------------------

    def _resolve(self, runs: list[TaskRun]) -> list[_Task]:
        resolved = []
        for run in runs:
            try:
                conf = run.task_conf
                resolved.append(_Task(run, host_settings(conf), remote_settings(conf), remote_mode(conf)))
            except UserError as e:
                raise UserError(f"task {run.key}: {e}") from None
        return resolved

    def _by_host(self, tasks: list[_Task]) -> dict[HostSettings, list[_Task]]:
        groups: dict[HostSettings, list[_Task]] = defaultdict(list)
        for task in tasks:
            groups[task.settings].append(task)
        return groups

    def _home(self, conn: SshConnection) -> str:
        home = self._homes.get(conn.settings)
        if home is None:
            result = conn.run("cd ~ 2>/dev/null; pwd -P\n")
            home = result.out.strip().splitlines()[-1] if result.out.strip() else ""
            if not home.startswith("/"):
                raise SshUnavailable(f"{conn.label}: cannot find the remote home directory")
            self._homes[conn.settings] = conn.home = home
        return home

    def remote_instance(self, conn: SshConnection, task: _Task) -> str:
        base = task.remote.base_dir
        if base.startswith("/") and not base.startswith("~"):
            return posixpath.join(posixpath.normpath(base), self.root.name)
        return posixpath.join(resolve_remote_dir(base, self._home(conn)), self.root.name)

    def _prelude(self, tasks: list[_Task]) -> str:
        seen: list[str] = []
        for task in tasks:
            p = task.remote.prelude()
            if p not in seen:
                seen.append(p)
        return "".join(seen)

    def _connect_first(self, conn: SshConnection, keys: list[str]) -> None:
        """Connect before starting anything: configuration errors stop the run at once, naming
        the tasks; a host never reached in this run fails after a few quick attempts."""
        if conn.ever_connected:
            return
        last: Exception | None = None
        for delay in (0.5, 1.0, 2.0, None):
            try:
                conn.check()
                return
            except UserError as e:
                raise UserError(f"{_names(keys)}: {e}") from None
            except SshUnavailable as e:
                last = e
                if delay:
                    time.sleep(delay)
        why = str(last).removeprefix(f"{conn.label}: ")
        raise UserError(f"{_names(keys)}: cannot connect to {conn.label}: {why}")

    # -- local launch records ------------------------------------------------------------------

    def read_record(self, key: str) -> dict[str, Any] | None:
        import json

        try:
            record = json.loads((self.instance.control_dir(key) / RECORD_FILE).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def write_record(self, key: str, record: dict[str, Any]) -> None:
        import json

        write_atomic(self.instance.control_dir(key) / RECORD_FILE, json.dumps(record, sort_keys=True) + "\n")

    # -- upload --------------------------------------------------------------------------------

    def _venv_of(self, conn: SshConnection, task: _Task, rinst: str) -> str:
        venv = task.remote.venv or posixpath.join(rinst, DEFAULT_VENV)
        return venv if venv.startswith("/") else resolve_remote_dir(venv, self._home(conn))

    def _stage(self, conn: SshConnection, tasks: list[_Task]) -> dict[str, tuple[str, RemoteTask]]:
        """Upload what the tasks need: one rsync for all of them, plus their code and external
        inputs when new, and drypipe for python calls.  Returns key -> (remote instance dir,
        staged files)."""
        staged: dict[str, tuple[str, RemoteTask]] = {}
        dirs: set[str] = set()
        venvs: dict[str, _Task] = {}  # remote venvs python calls need
        code: dict[tuple[str, str], str] = {}  # (remote instance, remote dest) -> local source
        externals: dict[str, set[str]] = defaultdict(set)
        for task in tasks:
            rinst = self.remote_instance(conn, task)
            dirs.update({posixpath.join(rinst, ".drypipe"), posixpath.join(rinst, "output")})
            # python calls use drypipe of a remote venv, unless the TaskConf names an interpreter
            venv = None if task.run.task_conf.python_bin else self._venv_of(conn, task, rinst)
            files = stage_task(self.instance, task.key, rinst, venv and posixpath.join(venv, "bin", "python"),
                               task.run.task_conf.remote_containers_dir, task.remote.upload_code,
                               task.remote.python)
            staged[task.key] = (rinst, files)
            if venv and files.needs_python and (conn.settings, venv) not in self._venv_done:
                venvs[venv] = task
            for dest, source in files.code.items():
                if (conn.settings, rinst, dest) not in self._code_done:
                    code[(rinst, dest)] = source
                    dirs.add(posixpath.dirname(posixpath.join(rinst, dest)))
            if files.externals:
                externals[rinst].update(files.externals)
                dirs.add(posixpath.join(rinst, EXTERNAL_DIR))
        self._make_dirs(conn, tasks, dirs)
        for venv, task in venvs.items():
            self._ensure_venv(conn, task, venv)
        for (rinst, dest), source in code.items():
            slash = "/" if os.path.isdir(source) else ""
            excludes = [f"--exclude={e}" for e in code_excludes(dest, source, self.root)]
            conn.rsync([*RSYNC_FLAGS, "--delete", *excludes, source + slash,
                        conn.remote(posixpath.join(rinst, dest) + slash)], what=f"uploading code {source}")
            self._code_done.add((conn.settings, rinst, dest))
        for rinst, paths in externals.items():
            target = conn.remote(posixpath.join(rinst, EXTERNAL_DIR) + "/")
            conn.rsync([*RSYNC_FLAGS, "--ignore-missing-args", "/", target],
                       files=sorted(p.lstrip("/") for p in paths), what="uploading inputs outside the instance")
        by_rinst: dict[str, set[str]] = defaultdict(set)
        for rinst, files in staged.values():
            by_rinst[rinst].update(files.paths)
        for rinst, paths in by_rinst.items():
            conn.rsync([*RSYNC_FLAGS, "--ignore-missing-args", *[f"--include={e}" for e in UPLOAD_INCLUDES],
                        *[f"--exclude={e}" for e in UPLOAD_EXCLUDES],
                        str(self.root) + "/", conn.remote(rinst + "/")],
                       files=sorted(paths), what="uploading task inputs")
        return staged

    def _make_dirs(self, conn: SshConnection, tasks: list[_Task], dirs: set[str]) -> None:
        todo = sorted(d for d in dirs if (conn.settings, d) not in self._dirs_done)
        if not todo:
            return
        result = conn.run(self._prelude(tasks) + "mkdir -p -- " + " ".join(scripts.q(d) for d in todo) + "\n")
        if result.rc != 0:
            raise UserError(f"cannot create directories on {conn.label}: {result.err.strip()}")
        self._dirs_done.update((conn.settings, d) for d in todo)

    def _ensure_venv(self, conn: SshConnection, task: _Task, venv: str) -> str:
        """drypipe in a venv on the host, (re)installed only when the local version differs."""
        done = self._venv_done.get((conn.settings, venv))
        if done:
            return done
        prelude = task.remote.prelude()
        stamp = source_digest()
        check = conn.run(scripts.venv_check_script(prelude, venv, stamp))
        self.venv_installed = "venv-ok" not in check.out
        if self.venv_installed:
            wheel = build_wheel()
            remote_wheel = posixpath.join(venv + "-wheels", wheel.name)
            conn.rsync([*RSYNC_FLAGS, str(wheel), conn.remote(remote_wheel)], what="uploading the drypipe wheel")
            log.info("ssh: installing drypipe in %s on %s", venv, conn.label)
            result = conn.run(scripts.venv_install_script(prelude, task.remote.python, venv, remote_wheel, stamp,
                                                          task.remote.pip_deps), timeout=900)
            if result.rc != 0:
                raise UserError(
                    f"installing drypipe into {venv} on {conn.label} with {task.remote.python} failed: "
                    f"{(result.err or result.out).strip()[-600:]} (set executor_options remote_python, "
                    "or TaskConf.python_bin to an interpreter that has drypipe)"
                )
        python = posixpath.join(venv, "bin", "python")
        self._venv_done[(conn.settings, venv)] = python
        return python

    # -- launch --------------------------------------------------------------------------------

    def launch(self, tasks: list[TaskRun]) -> dict[str, str]:
        resolved = self._resolve(tasks)
        groups = self._by_host(resolved)
        for settings, group in groups.items():
            self._connect_first(self.pool.get(settings), [t.key for t in group])
        handles: dict[str, str] = {}
        started: list[tuple[SshConnection, list[_Task]]] = []
        token = f"{int(time.time())}-{secrets.token_hex(4)}"
        for settings, group in groups.items():
            conn = self.pool.get(settings)
            for task in group:  # recorded before anything is sent: see the module docstring
                handles[task.key] = token
                self.write_record(task.key, {
                    "token": token, "host": conn.label, "mode": task.mode, "launched_at": time.time(),
                })
            try:
                handles.update(self._launch_on(conn, group, token))
                started.append((conn, group))
            except SshUnavailable as e:
                # Nothing or part of it reached the host: the poll finds out which (tokens).
                log.warning("ssh: launching %s on %s: %s; will check and retry", _names([t.key for t in group]),
                            conn.label, e)
            except UserError as e:
                for other_conn, other in started:
                    self._kill_on(other_conn, other)
                message = str(e)
                raise UserError(message if message.startswith(("task ", "tasks "))
                                else f"{_names([t.key for t in group])}: {message}") from None
        return handles

    def _launch_on(self, conn: SshConnection, tasks: list[_Task], token: str) -> dict[str, str]:
        staged = self._stage(conn, tasks)
        for task in tasks:
            record = self.read_record(task.key) or {}
            record["remote_instance"] = staged[task.key][0]
            self.write_record(task.key, record)
        specs = {
            task.key: scripts.StartSpec(task.key, posixpath.join(rinst, ".drypipe", task.key), token,
                                        task.run.start_step, files.env_text, files.conf_text)
            for task in tasks
            for rinst, files in [staged[task.key]]
        }
        process = [t for t in tasks if t.mode == "process"]
        slurm = [t for t in tasks if t.mode == "slurm"]
        handles: dict[str, str] = {}
        if process:
            result = conn.run(scripts.start_script(self._prelude(process), [specs[t.key] for t in process]))
            for fields in scripts.parse_lines(result.out):
                if fields[0] == "started" and len(fields) == 3:
                    handles[fields[1]] = fields[2]
                elif fields[0] in ("missing", "error") and len(fields) == 2:
                    log.warning("ssh: task %s: could not be set up on %s (%s)", fields[1], conn.label, fields[0])
            log.info("ssh: started %d task(s) on %s", len(handles), conn.label)
        if slurm:
            handles.update(self._submit(conn, slurm, staged, specs, token))
        return handles

    def _submit(self, conn: SshConnection, tasks: list[_Task], staged: dict[str, tuple[str, RemoteTask]],
                specs: dict[str, scripts.StartSpec], token: str) -> dict[str, str]:
        """Job arrays on the host's Slurm: one per (remote instance, TaskConf), as the Slurm
        executor builds them (its batch script, its sbatch options)."""
        groups: dict[tuple[str, str], list[_Task]] = defaultdict(list)
        for task in tasks:
            groups[(staged[task.key][0], task.run.task_conf.batch_key())].append(task)
        script = [scripts.stage_script(self._prelude(tasks), [specs[t.key] for t in tasks])]
        arrays: dict[str, tuple[str, list[_Task]]] = {}
        n = 0
        for (rinst, _), group in groups.items():
            for start in range(0, len(group), ARRAY_CHUNK):
                part = group[start:start + ARRAY_CHUNK]
                array = slurm_api.job_array(part[0].run.task_conf, PurePosixPath(rinst), f"ssh-{token}-{n}",
                                            [(t.key, t.run.start_step) for t in part])
                n += 1
                for i, task in enumerate(part):  # before sbatch: a lost reply is found by comment
                    record = self.read_record(task.key) or {}
                    record.update(array=array.name, index=i)
                    self.write_record(task.key, record)
                script.append(scripts.sbatch_script(array, rinst))
                arrays[array.name] = (rinst, part)
        result = conn.run("\n".join(script))
        handles: dict[str, str] = {}
        failures = []
        errors = [f[1] for f in scripts.parse_lines(result.out) if f[0] == "E" and len(f) > 1]
        for fields in scripts.parse_lines(result.out):
            if fields[0] == "job" and len(fields) == 3 and fields[1] in arrays:
                rinst, part = arrays[fields[1]]
                job_id = fields[2]
                for i, task in enumerate(part):
                    handle = f"{job_id}_{i}"
                    handles[task.key] = handle
                    record = self.read_record(task.key) or {}
                    record.update(job_id=handle, array=fields[1])
                    self.write_record(task.key, record)
                    slurm_api.record_job_id(task.run.control_dir, handle)
                log.info("ssh: submitted %d task(s) as job array %s on %s", len(part), job_id, conn.label)
            elif fields[0] == "sbatch-failed" and len(fields) == 3:
                failures.append(fields[1])
        if failures:
            submitted = [h for h in handles.values()]
            if submitted:
                conn.run(scripts.kill_script(self._prelude(tasks), [], submitted))
            keys = [t.key for name in failures for t in arrays[name][1]]
            reason = slurm_api.error_text("\n".join(errors))
            raise UserError(f"{_names(keys)}: sbatch on {conn.label} failed: {reason}")
        return handles

    # -- poll ----------------------------------------------------------------------------------

    def poll(self, tasks: list[TaskRun]) -> dict[str, Liveness]:
        result: dict[str, Liveness] = {}
        entry = {"tasks": len(tasks), "hosts": 0, "commands": 0}
        for settings, group in self._by_host(self._resolve(tasks)).items():
            conn = self.pool.get(settings)
            before = conn.command_count
            result.update(self._poll_host(conn, group))
            entry["hosts"] += 1
            entry["commands"] += conn.command_count - before
        self.poll_log.append(entry)
        log.debug("ssh poll: %d task(s) on %d host(s), %d remote command(s)", entry["tasks"], entry["hosts"],
                  entry["commands"])
        return result

    def _poll_host(self, conn: SshConnection, tasks: list[_Task], download: bool = True) -> dict[str, Liveness]:
        result: dict[str, Liveness] = {}
        records: dict[str, dict[str, Any]] = {}
        for task in tasks:
            record = self.read_record(task.key)
            if not record or not record.get("remote_instance"):
                # the launch stopped before its upload ended: the task cannot have started
                result[task.key] = Liveness(False, st.READY, f"its launch never reached {conn.label}")
                continue
            records[task.key] = record
        if not records:
            return result
        by_key = {t.key: t for t in tasks if t.key in records}
        job_ids = [r["job_id"] for r in records.values() if r.get("mode") == "slurm" and r.get("job_id")]
        names = [slurm_api.job_name(PurePosixPath(r["remote_instance"])) for r in records.values()
                 if r.get("mode") == "slurm" and not r.get("job_id")]
        script = scripts.poll_script(
            self._prelude(list(by_key.values())),
            [(k, posixpath.join(r["remote_instance"], ".drypipe", k)) for k, r in records.items()],
            job_ids, names,
        )
        try:
            answer = conn.run(script)
        except SshUnavailable as e:
            log.warning("ssh: cannot poll %d task(s) on %s: %s", len(records), conn.label, e)
            return {**result, **{k: Liveness(alive=True) for k in records}}
        polled = scripts.parse_poll(answer.out)
        finished: list[_Task] = []
        ended: dict[str, str] = {}  # key -> the final state of a finished task
        for key, record in records.items():
            remote = polled.tasks.get(key)
            if remote is None or remote.token != record.get("token"):
                result[key] = Liveness(False, st.READY, f"its launch never reached {conn.label}")
                continue
            if st.is_terminal(remote.state):
                if st.read_state(str(by_key[key].run.control_dir)) == remote.state:
                    result[key] = Liveness(False, st.LOST, "ended remotely", certain=True)  # fetched before
                else:
                    finished.append(by_key[key])
                    ended[key] = remote.state
                continue
            self._mirror(key, remote.state)
            if record.get("mode") == "slurm":
                result[key] = self._slurm_liveness(key, record, remote, polled, conn)
            elif remote.alive:
                result[key] = Liveness(alive=True)
            elif remote.alive is None and (remote.age or 0) < STARTUP_SECONDS:
                result[key] = Liveness(alive=True)  # starting: its pid file comes within ms
            elif remote.alive is None:
                result[key] = Liveness(False, st.LOST, f"never started on {conn.label} (see drypipe.log)")
            else:
                result[key] = Liveness(False, st.LOST, f"its process on {conn.label} is gone without a final state")
        if finished and download:
            result.update(self._finish(conn, finished, ended, records))
        elif finished:
            result.update({t.key: Liveness(alive=True) for t in finished})
        dead = [k for k, lv in result.items() if not lv.alive and lv.outcome != st.READY and not lv.certain
                and k in records and k not in self._logs_fetched]
        if dead and download:
            self._fetch_logs(conn, dead, records)
        return result

    def _fetch_logs(self, conn: SshConnection, keys: list[str], records: dict[str, dict[str, Any]]) -> None:
        """The logs of tasks whose process or job ended without a final state (what happened?)."""
        by_rinst: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            by_rinst[records[key]["remote_instance"]].append(key)
        for rinst, group in by_rinst.items():
            names = ("out.log", "drypipe.log", slurm_api.BATCH_LOG_FILE)
            files = [f".drypipe/{k}/{name}" for k in group for name in names]
            try:
                conn.rsync([*RSYNC_FLAGS, "--ignore-missing-args", conn.remote(rinst + "/"), str(self.root) + "/"],
                           files=files, what="downloading logs")
                self._logs_fetched.update(group)
            except (SshUnavailable, UserError) as e:
                log.info("ssh: logs of %s: %s", _names(group), e)

    def _slurm_liveness(self, key: str, record: dict[str, Any], remote: scripts.RemoteState,
                        polled: scripts.PollResult, conn: SshConnection) -> Liveness:
        job_id = record.get("job_id")
        if not job_id:
            wanted = slurm_api.array_comment(record.get("array", ""))
            found = next((job for job, comment in polled.named if record.get("array") and comment == wanted), None)
            if found is None:
                if (remote.age or 0) < STARTUP_SECONDS:
                    return Liveness(alive=True)
                return Liveness(False, st.READY, f"its job array was never submitted on {conn.label}")
            job_id = record["job_id"] = f"{found}_{record.get('index', 0)}"
            self.write_record(key, record)
            slurm_api.record_job_id(self.instance.control_dir(key), job_id)
            log.info("ssh: task %s: found its job %s on %s", key, job_id, conn.label)
            return Liveness(alive=True)
        if polled.jobs is None:
            return Liveness(alive=True)  # squeue failed: unknown this cycle
        status = polled.jobs.get(job_id) or polled.jobs.get(job_id.split("_")[0])
        if status is not None and status.alive:
            return Liveness(alive=True)
        if status is None:
            return Liveness(False, st.LOST, f"slurm job {job_id} on {conn.label} is no longer known to Slurm")
        outcome = slurm_api.ended_outcome(status)
        reason = f"slurm job {job_id} on {conn.label} {status.state}" + (f" ({status.reason})" if status.reason else "")
        return Liveness(False, outcome, reason)

    def _mirror(self, key: str, remote_state: str | None) -> None:
        """Show a running task's remote progress (step-started.N ...) on its local marker."""
        if not st.is_in_flight(remote_state):
            return
        control = str(self.instance.control_dir(key))
        local = st.read_state(control)
        if st.is_in_flight(local) and local != remote_state:
            st.transition(control, local, remote_state)

    def _finish(self, conn: SshConnection, tasks: list[_Task], states: dict[str, str],
                records: dict[str, dict[str, Any]]) -> dict[str, Liveness]:
        """Download finished tasks, then give their local markers the remote final state."""
        result: dict[str, Liveness] = {}
        by_rinst: dict[str, list[str]] = defaultdict(list)
        for task in tasks:
            by_rinst[records[task.key]["remote_instance"]].append(task.key)
        for rinst, keys in by_rinst.items():
            files = []
            for key in keys:
                files.append(f"output/{key}")
                files.extend(f".drypipe/{key}/{name}" for name in DOWNLOADED_CONTROL_FILES)
            (self.root / "output").mkdir(exist_ok=True)
            try:
                conn.rsync([*RSYNC_FLAGS, "--ignore-missing-args", conn.remote(rinst + "/"), str(self.root) + "/"],
                           files=files, what="downloading results")
            except SshUnavailable as e:
                log.warning("ssh: %s: %s; retrying at the next poll", _names(keys), e)
                result.update({k: Liveness(alive=True) for k in keys})
                continue
            except UserError as e:
                for key in keys:
                    self._failed_downloads[key] += 1
                    if self._failed_downloads[key] < 3:
                        result[key] = Liveness(alive=True)
                    else:
                        result[key] = Liveness(False, "failed", f"its results could not be downloaded: {e}",
                                               certain=True)
                continue
            for key in keys:
                control = str(self.instance.control_dir(key))
                local = st.read_state(control)
                final = states[key]
                if not st.is_terminal(local) and st.transition(control, local, final):
                    log.info("ssh: task %s: %s (downloaded from %s)", key, final, conn.label)
                result[key] = Liveness(False, st.LOST, "ended remotely", certain=True)
        return result

    # -- kill / collect ------------------------------------------------------------------------

    def kill(self, tasks: list[TaskRun]) -> None:
        resolved = self._resolve(tasks)
        for settings, group in self._by_host(resolved).items():
            conn = self.pool.get(settings)
            try:
                self._kill_on(conn, group)
            except SshUnavailable as e:
                log.warning("ssh: cannot kill %s on %s: %s", _names([t.key for t in group]), conn.label, e)
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        pending = list(tasks)
        while pending and time.monotonic() < deadline:
            liveness = self.sync(pending)
            still = []
            for run in pending:
                state = st.read_state(str(run.control_dir))
                if st.is_terminal(state):
                    continue
                lv = liveness.get(run.key)
                if lv is not None and not lv.alive and lv.outcome in ("killed", st.READY) \
                        and state == st.LAUNCHED:
                    TaskRecord.at(run.control_dir).record_state(st.LAUNCHED, st.killed(0),
                                                                lv.reason or "killed before it started", by="drypipe")
                    continue
                still.append(run)
            pending = still
            if pending:
                time.sleep(0.5)

    def _kill_on(self, conn: SshConnection, tasks: list[_Task]) -> None:
        process, jobs = [], []
        for task in tasks:
            record = self.read_record(task.key)
            if not record or not record.get("remote_instance"):
                continue
            if record.get("mode") == "slurm":
                if record.get("job_id"):
                    jobs.append(record["job_id"])
            else:
                process.append((task.key, posixpath.join(record["remote_instance"], ".drypipe", task.key),
                                record.get("token", "")))
        if process or jobs:
            conn.run(scripts.kill_script(self._prelude(tasks), process, jobs), timeout=60)

    def collect(self, tasks: list[TaskRun]) -> None:
        self.sync(tasks)

    def sync(self, tasks: list[TaskRun], download: bool = True) -> dict[str, Liveness]:
        """One poll of the tasks' hosts: mirror states, download and finish the ended ones."""
        result: dict[str, Liveness] = {}
        for settings, group in self._by_host(self._resolve(tasks)).items():
            result.update(self._poll_host(self.pool.get(settings), group, download))
        return result

    def close(self) -> None:
        """Remote tasks keep running: a later `drypipe run` adopts them."""
        self.pool.close()

    # -- the remote-* and array-* commands -----------------------------------------------------

    def upload(self, tasks: list[TaskRun]) -> dict[str, str]:
        """Upload tasks and their inputs, with their remote task-env.sh/task-conf.json, without
        starting them; key -> remote control dir."""
        placed: dict[str, str] = {}
        for settings, group in self._by_host(self._resolve(tasks)).items():
            conn = self.pool.get(settings)
            self._connect_first(conn, [t.key for t in group])
            staged = self._stage(conn, group)
            specs = [scripts.StartSpec(t.key, posixpath.join(staged[t.key][0], ".drypipe", t.key), "", 0,
                                       staged[t.key][1].env_text, staged[t.key][1].conf_text) for t in group]
            result = conn.run(scripts.files_script(self._prelude(group), specs))
            for fields in scripts.parse_lines(result.out):
                if fields[0] == "staged" and len(fields) == 2:
                    placed[fields[1]] = f"{conn.label}:{posixpath.join(staged[fields[1]][0], '.drypipe', fields[1])}"
        return placed

    def rsync_list(self, tasks: list[TaskRun]) -> dict[str, list[str]]:
        """What an upload of the tasks sends (paths relative to the instance), per task."""
        listed = {}
        for task in self._resolve(tasks):
            files = stage_task(self.instance, task.key, "/remote", None, None, False)
            listed[task.key] = files.paths + [f"{EXTERNAL_DIR}{p}" for p in files.externals]
        return listed

    def download(self, tasks: list[TaskRun]) -> None:
        """Download the tasks' outputs and logs now, whatever their state."""
        for settings, group in self._by_host(self._resolve(tasks)).items():
            conn = self.pool.get(settings)
            self._connect_first(conn, [t.key for t in group])
            by_rinst: dict[str, list[str]] = defaultdict(list)
            for task in group:
                record = self.read_record(task.key) or {}
                by_rinst[record.get("remote_instance") or self.remote_instance(conn, task)].append(task.key)
            for rinst, keys in by_rinst.items():
                files = [f for k in keys for f in self.download_list(k)]
                conn.rsync([*RSYNC_FLAGS, "--ignore-missing-args", conn.remote(rinst + "/"), str(self.root) + "/"],
                           files=files, what="downloading results")

    def install_drypipe(self, task: TaskRun) -> str:
        """drypipe in the task's remote venv (upload-drypipe-for-remote-instance); its python."""
        (resolved,) = self._resolve([task])
        conn = self.pool.get(resolved.settings)
        self._connect_first(conn, [task.key])
        venv = self._venv_of(conn, resolved, self.remote_instance(conn, resolved))
        self._make_dirs(conn, [resolved], {posixpath.dirname(venv)})
        python = self._ensure_venv(conn, resolved, venv)
        what = "installed" if self.venv_installed else "already up to date"
        return f"{conn.label}:{python} ({what}, drypipe {source_digest()})"

    def download_list(self, key: str) -> list[str]:
        """What comes back from the host when a task ends (relative to the instance)."""
        return [f"output/{key}"] + [f".drypipe/{key}/{name}" for name in DOWNLOADED_CONTROL_FILES]

    @staticmethod
    def with_remote_dest(conf: TaskConf, dest: str) -> TaskConf:
        """The TaskConf with `--ssh-remote-dest user@host[:port]:/remote/base[:/path/to/key]`
        (the original DryPipe's form: the first path is the remote base dir)."""
        user, host, port, key, base = split_ssh_specs(dest)
        if base is None:  # one path: the base dir, no key (agent / default keys)
            base, key = dest.rsplit(":", 1)[1], None
        # A port only if given: else the ssh config's, or 22.
        specs = f"{user + '@' if user else ''}{host}" + (f":{port}" if port else "") + (f":{key}" if key else "")
        data = conf.to_dict()
        data.update(ssh_specs=specs, remote_base_dir=base)
        return TaskConf.from_dict(data)
