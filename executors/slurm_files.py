"""What the Slurm executor keeps on disk, and the `sbatch` command lines it builds.

    .drypipe/<key>/sbatch-launcher.sh   submits that one task (`drypipe sbatch -k KEY` runs it)
    .drypipe/<key>/slurm_job_id         "<job id>" or "<array job id>_<index>": the task's job
    .drypipe/<key>/slurm.log            what the batch script itself printed (the task's step
                                        output goes to out.log, as everywhere)
    .drypipe/.slurm/array-launcher.sh   the batch script of every job array of the instance
    .drypipe/.slurm/array-<n>.tasks     line i = "<task key> <start step>" of array element i
    .drypipe/.slurm/array-<n>.job       the array's job id, once sbatch returned it
    .drypipe/.slurm/array-<n>.log       Slurm's own messages for the array (e.g. CANCELLED AT ...)
    .drypipe/.slurm/parents/<key>       a parent key: the task keys of its children, one a line

Every file is written atomically (temporary name, then rename), so a reader never sees half
of one, and a restarted orchestrator can trust what it finds.
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePath
from typing import NamedTuple, TypeVar

from drypipe.budget import mem_mib, time_seconds, time_text
from drypipe.errors import UserError
from drypipe.instance import write_atomic
from drypipe.task_conf import TaskConf
from executors.slurm_plugin import JOB_ID_FILE as JOB_ID_FILE  # re-exported: the files of a job
from executors.slurm_plugin import PLUGIN

SLURM_DIR = Path(".drypipe") / ".slurm"
LAUNCHER_FILE = "sbatch-launcher.sh"
BATCH_LOG_FILE = "slurm.log"
DEFAULT_SIGNAL = "B:USR1@60"  # the task script records timed-out.N when it gets SIGUSR1

_ARRAY_FILE = re.compile(r"^array-(\d+)\.tasks$")


_P = TypeVar("_P", bound=PurePath)  # a local Path, or a PurePosixPath on a remote host


def slurm_dir(instance_root: _P) -> _P:
    return instance_root / SLURM_DIR


def job_name(instance_root: PurePath) -> str:
    """One Slurm job name per pipeline instance: `squeue --name` finds all of its jobs."""
    return "drypipe-" + hashlib.sha256(str(instance_root).encode()).hexdigest()[:10]


# -- sbatch command lines -----------------------------------------------------------------------

# An sbatch option's name: `--name` (before any `=`) or `-x`.  Anything else would be taken by
# sbatch as the batch script, or reach it as something other than what the TaskConf shows.
_OPTION_NAME = re.compile(r"--?[A-Za-z0-9][A-Za-z0-9-]*")
_LINE_BREAKS = ("\0", "\n", "\r")


def sbatch_option_problem(options: Sequence[str]) -> tuple[str, str] | None:
    """The first of `options` (a TaskConf's sbatch_options) that drypipe refuses to pass on,
    and why; None if every one is fine.  A word not starting with `-` after a bare option is
    that option's value (`["--time", "1:00:00"]`), and may hold any character but a NUL or a
    line break."""
    value_allowed = False
    for option in options:
        if any(c in option for c in _LINE_BREAKS):
            return option, "contains a NUL or a line break"
        if value_allowed and not option.startswith("-"):
            value_allowed = False
            continue
        name, eq, _ = option.partition("=")
        if not _OPTION_NAME.fullmatch(name):
            return option, ("is not an sbatch option (-x, --name or --name=value, with a name of "
                            "letters, digits and -)")
        value_allowed = not eq
    return None


def check_sbatch_options(conf: TaskConf, key: str | None = None) -> None:
    """Refuse, with one line naming the task (when known) and the option, what sbatch_options
    and slurm_account must not hold.  Runs wherever drypipe builds an sbatch command line."""
    where = f"task {key}: " if key else ""
    settings = PLUGIN.settings_of(conf, key)
    problem = sbatch_option_problem(settings.sbatch_options)
    if problem:
        raise UserError(f"{where}sbatch option {problem[0]!r} {problem[1]}")
    account = settings.slurm_account
    if account and any(c in account for c in _LINE_BREAKS):
        raise UserError(f"{where}slurm_account {account!r} contains a NUL or a line break")


def common_sbatch_args(conf: TaskConf, name: str, key: str | None = None) -> list[str]:
    """Options every job of a TaskConf gets; the user's sbatch_options come after ours, so a
    user may override the job name, the export or the signal."""
    check_sbatch_options(conf, key)
    settings = PLUGIN.settings_of(conf, key)
    args = ["sbatch", "--parsable", f"--job-name={name}", "--export=ALL"]
    if settings.slurm_account:
        args.append(f"--account={settings.slurm_account}")
    if not any(o.startswith("--signal") for o in settings.sbatch_options):
        args.append(f"--signal={DEFAULT_SIGNAL}")
    args.extend(resource_args(conf))
    args.extend(settings.sbatch_options)
    return args


def resource_args(conf: TaskConf) -> list[str]:
    """sbatch's options for TaskConf.cpus, mem and time (a retry's TaskConf has them scaled)."""
    args = [f"--cpus-per-task={conf.cpus}"] if conf.cpus else []
    if conf.mem is not None:
        args.append(f"--mem={mem_mib(conf.mem)}")
    if conf.time is not None:
        args.append(f"--time={time_text(time_seconds(conf.time))}")
    return args


def array_throttle(conf: TaskConf, count: int) -> str:
    spec = f"0-{count - 1}"
    throttle = PLUGIN.settings_of(conf).max_simultaneous_jobs
    if throttle:
        spec += f"%{throttle}"
    return spec


def array_sbatch_args(conf: TaskConf, instance_root: PurePath, number: int | str, count: int,
                      key: str | None = None) -> list[str]:
    """The sbatch command submitting array-<number>.tasks (count elements) as one job array
    (an argv: run without a shell).  `key` names the task in a refusal of its options."""
    directory = slurm_dir(instance_root)
    return common_sbatch_args(conf, job_name(instance_root), key) + [
        f"--array={array_throttle(conf, count)}",
        f"--output={directory / f'array-{number}.log'}",
        "--open-mode=append",
        f"--comment={array_comment(f'array-{number}')}",
        str(directory / "array-launcher.sh"),
        str(directory / f"array-{number}.tasks"),
    ]


def array_comment(array_name: str) -> str:
    """The job comment (squeue's %k) of a job array: finds its job when sbatch's reply was lost."""
    return f"drypipe {array_name}"


class InControlDir(NamedTuple):
    """An argument drypipe itself builds around the task's control directory (prefix, the
    directory, suffix): sbatch-launcher.sh computes that directory at run time."""

    prefix: str
    suffix: str


def _single_args(conf: TaskConf, instance_root: Path, key: str) -> list[str | InControlDir]:
    """sbatch ... up to (not including) --wrap; the user's words are always plain strings."""
    return [*common_sbatch_args(conf, job_name(instance_root), key),
            InControlDir("--output=", "/" + BATCH_LOG_FILE),
            "--open-mode=append",
            f"--comment=drypipe task {key}"]


def wrap_command(control: str, at_step: int | None) -> str:
    """The --wrap of one task's job; sbatch-launcher.sh builds the same text (its __quote is
    shlex.quote)."""
    command = f"exec {shlex.quote(control + '/task')}"
    if at_step is not None:
        command += f" --at-step {int(at_step)}"
    return command


def single_sbatch_args(conf: TaskConf, instance_root: Path, key: str, at_step: int | None = None) -> list[str]:
    """The sbatch command that sbatch-launcher.sh runs for one task (as `sbatch-gen` prints it):
    the launcher at `--at-step N`, where it stands, passes exactly this argv."""
    control = str(instance_root / ".drypipe" / key)
    args = [a if isinstance(a, str) else a.prefix + control + a.suffix
            for a in _single_args(conf, instance_root, key)]
    return args + [f"--wrap={wrap_command(control, at_step)}"]


# -- generated scripts --------------------------------------------------------------------------

ARRAY_LAUNCHER = r"""#!/usr/bin/env bash
# drypipe: the batch script of every Slurm job array of this pipeline instance.
# Array element i runs the task named on line i+1 of the list file given as $1
# (lines: "<task key> <start step>").  Its own output goes to the task's slurm.log;
# the task records its states and step output itself, as it does everywhere.
list=${1:?usage: array-launcher.sh .drypipe/.slurm/array-N.tasks}
index=${SLURM_ARRAY_TASK_ID:?array-launcher.sh runs as a Slurm array element}
line=""
n=0
while IFS= read -r line || [[ -n $line ]]; do
    (( n++ == index )) && break
    line=""
done < "$list"
key=${line%% *}
step=${line##* }
if [[ -z $key || -z $step ]]; then
    echo "drypipe: $list has no line for array index $index" >&2
    exit 2
fi
control=${list%/.slurm/*}/$key
exec >> "$control/slurm.log" 2>&1
printf '%(%Y-%m-%dT%H:%M:%S)T slurm job %s_%s (job id %s) on %s: task %s from step %s\n' \
    -1 "$SLURM_ARRAY_JOB_ID" "$index" "$SLURM_JOB_ID" "${HOSTNAME:-?}" "$key" "$step"
# Recorded here too: covers an orchestrator killed between sbatch and its own record.
printf '%s_%s\n' "$SLURM_ARRAY_JOB_ID" "$index" > "$control/.slurm_job_id.$index.tmp" &&
    mv -f -- "$control/.slurm_job_id.$index.tmp" "$control/slurm_job_id"
exec "$control/task" --at-step "$step"
"""


def _shell_word(arg: str | InControlDir) -> str:
    """One bash word: user text only ever inside single quotes."""
    if isinstance(arg, str):
        return shlex.quote(arg)
    return (shlex.quote(arg.prefix) if arg.prefix else "") + '"$__control_dir"' + (
        shlex.quote(arg.suffix) if arg.suffix else "")


def launcher_text(conf: TaskConf, instance_root: Path, key: str) -> str:
    """sbatch-launcher.sh of one task: paths are computed from its own location at run time.
    Every option is one quoted word; only drypipe's own path arguments hold $__control_dir."""
    args = _single_args(conf, instance_root, key)
    lines = " \\\n    ".join(_shell_word(a) for a in args[1:])  # args[0] is "sbatch"
    return f"""#!/usr/bin/env bash
# drypipe: submits task {key} to Slurm as one job (`drypipe sbatch -k {key}` runs this script;
# `drypipe sbatch-gen -k {key}` prints the command).  Prints the job id and records it in
# slurm_job_id.  usage: sbatch-launcher.sh [--at-step N] [more sbatch options]
set -euo pipefail
__control_dir=$(CDPATH= cd -- "$(dirname -- "${{BASH_SOURCE[0]}}")" && pwd)
# As Python's shlex.quote: --wrap is then the very text `drypipe sbatch-gen` prints.
__quote() {{
    local sq="'" esc="'\\"'\\"'"
    if [[ -z $1 ]]; then REPLY="''"
    elif [[ $1 == *[!abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-]* ]]; then
        REPLY="'${{1//$sq/$esc}}'"
    else REPLY=$1; fi
}}
at_step=""
if [[ ${{1:-}} == --at-step ]]; then
    if [[ ! ${{2:-}} =~ ^[0123456789]+$ ]]; then  # it goes into the job's script (--wrap)
        echo "sbatch-launcher.sh: --at-step needs a step number" >&2
        exit 2
    fi
    at_step=" --at-step $2"
    shift 2
fi
__quote "$__control_dir/task"
job_id=$(sbatch \\
    {lines} \\
    "$@" \\
    --wrap="exec $REPLY$at_step")
job_id=${{job_id%%;*}}
printf '%s\\n' "$job_id" > "$__control_dir/.slurm_job_id.tmp"
mv -f -- "$__control_dir/.slurm_job_id.tmp" "$__control_dir/slurm_job_id"
echo "$job_id"
"""


def write_if_changed(path: Path, text: str, mode: int = 0o755) -> None:
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    write_atomic(path, text, mode)


def write_array_launcher(instance_root: Path) -> Path:
    directory = slurm_dir(instance_root)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "array-launcher.sh"
    write_if_changed(path, ARRAY_LAUNCHER)
    return path


def write_task_launcher(instance_root: Path, key: str, conf: TaskConf) -> Path:
    path = instance_root / ".drypipe" / key / LAUNCHER_FILE
    write_if_changed(path, launcher_text(conf, instance_root, key))
    return path


# -- job ids ------------------------------------------------------------------------------------


def read_job_id(control_dir: Path) -> str | None:
    try:
        text = (control_dir / JOB_ID_FILE).read_text().strip()
    except OSError:
        return None
    return text or None


def write_job_id(control_dir: Path, job_id: str) -> None:
    write_atomic(control_dir / JOB_ID_FILE, job_id + "\n")


# -- array list files ---------------------------------------------------------------------------


class ArrayFiles:
    """Numbers and writes the list files of the instance's job arrays."""

    def __init__(self, instance_root: Path):
        self.directory = slurm_dir(instance_root)
        self._next: int | None = None

    def create(self, lines: Iterable[tuple[str, int]]) -> tuple[int, Path]:
        """Write a new array-<n>.tasks (never overwriting one) and return (n, path)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._next is None:
            self._next = max(self.numbers(), default=-1) + 1
        content = "".join(f"{key} {step}\n" for key, step in lines)
        tmp = self.directory / f".array.{os.getpid()}.tmp"
        tmp.write_text(content)
        try:
            while True:
                path = self.directory / f"array-{self._next}.tasks"
                try:
                    os.link(tmp, path)  # atomic, and fails if another process took this number
                    return self._next, path
                except FileExistsError:
                    self._next += 1
        finally:
            tmp.unlink(missing_ok=True)
            self._next += 1

    def numbers(self) -> list[int]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return [int(m.group(1)) for m in map(_ARRAY_FILE.match, names) if m]

    def record_job(self, number: int, job_id: str) -> None:
        write_atomic(self.directory / f"array-{number}.job", job_id + "\n")

    def job_of(self, number: int) -> str | None:
        try:
            return (self.directory / f"array-{number}.job").read_text().strip() or None
        except OSError:
            return None

    def keys_of(self, number: int) -> list[str]:
        try:
            text = (self.directory / f"array-{number}.tasks").read_text()
        except OSError:
            return []
        return [line.split(" ")[0] for line in text.splitlines() if line.strip()]

    def index(self, wanted: set[str] | None = None) -> dict[str, tuple[int, int]]:
        """Where each key (or each wanted key) was last listed: key -> (array number, index).
        Reads every list file: for adopting tasks, not in steady state."""
        found: dict[str, tuple[int, int]] = {}
        for number in sorted(self.numbers()):
            for i, key in enumerate(self.keys_of(number)):
                if wanted is None or key in wanted:
                    found[key] = (number, i)
        return found


# -- parents (groups of tasks named by one key, for the array-* commands) ------------------------


def parents_dir(instance_root: Path) -> Path:
    return slurm_dir(instance_root) / "parents"


def write_parent(instance_root: Path, parent: str, keys: list[str]) -> Path:
    directory = parents_dir(instance_root)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / parent
    write_atomic(path, "".join(k + "\n" for k in keys))
    return path


def read_parent(instance_root: Path, parent: str) -> list[str] | None:
    try:
        text = (parents_dir(instance_root) / parent).read_text()
    except (OSError, ValueError):
        return None
    return [line.strip() for line in text.splitlines() if line.strip()]
