"""The bash scripts the SSH executor runs on a remote host, and the parsing of their output.

Each is sent to `bash -s` on stdin and needs only bash (>= 4.4) and coreutils there.  Each
is safe to run twice (a dropped connection makes the executor run it again):

- start: installs the remote task-env.sh / task-conf.json, resets the marker to `launched`,
  records the launch token in `ssh_launch`, and starts the task detached from the ssh session
  (own session, no SSH_* variables, stdin closed) -- unless `ssh_launch` already holds this
  token, i.e. this very launch already happened.  Under Slurm it submits a job array instead,
  unless the array's job file (or a job carrying its comment) says it was already submitted.
- poll: ONE script for all in-flight tasks of the host: per task, whether the process of its
  pid file is alive (checked BEFORE reading the marker, so a task that just ended shows its
  final marker), its marker, and its launch token; under Slurm one `squeue` for all its jobs.
- kill: `task kill` for each (in parallel), or one `scancel`.
"""
from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass

from drypipe.task_script import markers_bash
from executors.slurm_api import JobArray, JobStatus, parse_squeue, squeue_args

q = shlex.quote

COMMON = r"""
printf -v __dp_now '%(%s)T' -1
__dp_put() {  # FILE BASE64 MODE: write a file atomically
    local t="$1.$$.tmp"
    base64 -d <<< "$2" > "$t" && chmod "$3" "$t" && mv -f -- "$t" "$1"
}
__dp_reset() {  # CONTROL_DIR: leave exactly one marker, state.launched (atomic rename)
    local c=$1 m
    if [[ ! -e $c/state.launched ]]; then
        for m in "$c"/state.*; do [[ -e $m ]] && { mv -f -- "$m" "$c/state.launched"; break; }; done
        [[ -e $c/state.launched ]] || : > "$c/state.launched"
    fi
    for m in "$c"/state.*; do
        [[ $m == "$c/state.launched" || ! -e $m ]] || rm -f -- "$m"
    done
}
__dp_files() {  # KEY CONTROL_DIR ENV64 CONF64
    [[ -d $2 ]] || { printf 'missing\t%s\n' "$1"; return 1; }
    __dp_put "$2/task-env.sh" "$3" 644 && __dp_put "$2/task-conf.json" "$4" 644 ||
        { printf 'error\t%s\n' "$1"; return 1; }
}
__dp_claim() {  # KEY CONTROL_DIR TOKEN ENV64 CONF64: 0 if this launch must start the task now
    local t=""
    if [[ -f $2/ssh_launch ]]; then read -r t _ < "$2/ssh_launch"; fi
    if [[ $t == "$3" ]]; then printf 'already\t%s\n' "$1"; return 1; fi
    __dp_files "$1" "$2" "$4" "$5" || return 1
    rm -f -- "$2/pid" "$2/slurm_job_id"
    __dp_reset "$2"
    printf '%s %s\n' "$3" "$__dp_now" > "$2/.ssh_launch.tmp" && mv -f -- "$2/.ssh_launch.tmp" "$2/ssh_launch"
}
__dp_start() {  # KEY CONTROL_DIR TOKEN STEP ENV64 CONF64
    __dp_claim "$1" "$2" "$3" "$5" "$6" || return 0
    ( cd -- "$2" && exec setsid nohup ./task --at-step "$4" < /dev/null >> drypipe.log 2>&1 ) &
    printf 'started\t%s\t%s\n' "$1" "$!"
}
__dp_stage() {  # KEY CONTROL_DIR TOKEN ENV64 CONF64 (Slurm: started by the array job)
    __dp_claim "$1" "$2" "$3" "$4" "$5" && printf 'staged\t%s\n' "$1"
    return 0
}
__dp_sbatch() {  # ARRAY_NAME JOB_NAME SLURM_DIR SBATCH_ARGS...: submit once
    local name=$1 job_name=$2 dir=$3 f="$3/$1.job" id="" rc
    shift 3
    if [[ -s $f ]]; then read -r id < "$f"; fi
    if [[ -z $id ]]; then
        id=$(squeue -h -t all --name="$job_name" -o '%F|%k' 2>/dev/null |
             awk -F'|' -v c="drypipe $name" '$2 == c { print $1; exit }')
    fi
    if [[ -z $id ]]; then
        id=$("$@" 2> "$dir/.$name.err"); rc=$?
        if (( rc != 0 )) || [[ -z $id ]]; then
            printf 'sbatch-failed\t%s\t%s\n' "$name" "$rc"
            sed 's/^/E\t/' "$dir/.$name.err"
            return 0
        fi
        id=${id%%;*}
    fi
    printf '%s\n' "$id" > "$f.tmp" && mv -f -- "$f.tmp" "$f"
    printf 'job\t%s\t%s\n' "$name" "$id"
}
"""

POLL = r"""
printf -v __dp_now '%(%s)T' -1
__dp_poll() {  # KEY CONTROL_DIR -> T key state token launch-age alive(1/0/-)
    local key=$1 c=$2 pid start stat alive=- state=- t=- at=- age=-
    if read -r pid start _ < "$c/pid" 2>/dev/null; then
        alive=0
        if { read -r stat < "/proc/$pid/stat"; } 2>/dev/null; then
            stat=${stat##*) }
            set -- $stat
            [[ $1 != [ZX] && ${20} == "$start" ]] && alive=1  # a zombie is not running
        fi
    fi
    __marker_in "$c" && state=$__state
    if [[ -f $c/ssh_launch ]]; then
        read -r t at _ < "$c/ssh_launch"
        [[ $at =~ ^[0-9]+$ ]] && age=$(( __dp_now - at ))
    fi
    printf 'T\t%s\t%s\t%s\t%s\t%s\n' "$key" "$state" "${t:--}" "$age" "$alive"
}
"""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def heredoc(lines: list[str], tag: str = "__DRYPIPE_END__") -> str:
    return f"<<'{tag}'\n" + "".join(line + "\n" for line in lines) + f"{tag}\n"


@dataclass
class StartSpec:
    key: str
    control_dir: str  # absolute remote path
    token: str
    step: int
    env_text: str
    conf_text: str


def start_script(prelude: str, specs: list[StartSpec]) -> str:
    lines = [prelude, COMMON]
    for s in specs:
        lines.append(" ".join(["__dp_start", q(s.key), q(s.control_dir), q(s.token), str(s.step),
                               b64(s.env_text), b64(s.conf_text)]))
    return "\n".join(lines) + "\nexit 0\n"


def stage_script(prelude: str, specs: list[StartSpec]) -> str:
    lines = [prelude, COMMON]
    for s in specs:
        lines.append(" ".join(["__dp_stage", q(s.key), q(s.control_dir), q(s.token),
                               b64(s.env_text), b64(s.conf_text)]))
    return "\n".join(lines) + "\n"


def files_script(prelude: str, specs: list[StartSpec]) -> str:
    """Install the remote task-env.sh / task-conf.json only (upload-task-inputs)."""
    lines = [prelude, COMMON]
    for s in specs:
        lines.append(" ".join(["__dp_files", q(s.key), q(s.control_dir), b64(s.env_text), b64(s.conf_text),
                               "&& printf 'staged\\t%s\\n'", q(s.key)]))
    return "\n".join(lines) + "\nexit 0\n"


def sbatch_script(array: JobArray, instance_dir: str) -> str:
    """Write the array's files and submit it once."""
    lines = [f"mkdir -p {q(array.directory)}"]
    for name, (text, mode) in array.files.items():
        lines.append(f"__dp_put {q(array.directory + '/' + name)} {b64(text)} {mode}")
    lines.append(f"cd {q(instance_dir)} && __dp_sbatch {q(array.name)} {q(array.job_name)} {q(array.directory)} "
                 + " ".join(q(a) for a in array.sbatch_args))
    return "\n".join(lines) + "\n"


def poll_script(prelude: str, tasks: list[tuple[str, str]], job_ids: list[str], find_names: list[str]) -> str:
    """One script for every in-flight task of a host: (key, remote control dir) each; Slurm
    jobs first (a job seen ended before the markers are read cannot hide a final marker)."""
    parts = [prelude, markers_bash(), POLL]
    squeue = squeue_args(job_ids)
    if squeue:
        parts.append(f"__dp_q=$({' '.join(q(a) for a in squeue)} 2>&1); __dp_rc=$?")
        parts.append('printf "QRC\\t%s\\n" "$__dp_rc"; [[ -n $__dp_q ]] && printf "%s\\n" "$__dp_q" | sed "s/^/Q\\t/"')
    for name in sorted(set(find_names)):
        parts.append(f"squeue -h -t all --name={q(name)} -o '%F|%k' 2>/dev/null | sed 's/^/N\\t/'")
    parts.append("while IFS=$'\\t' read -r __k __c; do __dp_poll \"$__k\" \"$__c\"; done "
                 + heredoc([f"{k}\t{c}" for k, c in tasks]))
    return "\n".join(parts)


def kill_script(prelude: str, tasks: list[tuple[str, str, str]], job_ids: list[str]) -> str:
    """(key, control dir, token) of process tasks: `task kill` each, in parallel; one scancel."""
    parts = [prelude]
    if job_ids:
        parts.append("scancel " + " ".join(q(j) for j in sorted(set(job_ids))) + " 2>&1 | sed 's/^/E\\t/'")
    for _key, control, token in tasks:
        parts.append(
            f"( t=; [[ -f {q(control + '/ssh_launch')} ]] && read -r t _ < {q(control + '/ssh_launch')}; "
            f"[[ $t == {q(token)} ]] && {q(control + '/task')} kill > /dev/null 2>&1 ) &"
        )
    parts.append("wait; exit 0")
    return "\n".join(parts) + "\n"


def venv_check_script(prelude: str, venv: str, stamp: str) -> str:
    return prelude + (
        f"v={q(venv)}\n"
        f'if [[ -x $v/bin/python && "$(cat "$v/.drypipe-wheel" 2>/dev/null)" == {q(stamp)} ]]; '
        "then echo venv-ok; else echo venv-needed; fi\n"
        f"mkdir -p {q(venv + '-wheels')}\n"
    )


def venv_install_script(prelude: str, python: str, venv: str, wheel: str, stamp: str, deps: bool) -> str:
    no_deps = "" if deps else "--no-deps --no-index "
    return prelude + f"""set -e
v={q(venv)}
exec 9> "$v.lock"
command -v flock > /dev/null && flock 9
if [[ -x $v/bin/python && "$(cat "$v/.drypipe-wheel" 2>/dev/null)" == {q(stamp)} ]]; then echo venv-ok; exit 0; fi
[[ -x $v/bin/python ]] || {q(python)} -m venv "$v"
"$v/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall {no_deps}{q(wheel)}
"$v/bin/python" -c 'import drypipe.pycall'
printf '%s\\n' {q(stamp)} > "$v/.drypipe-wheel"
echo venv-installed
"""


# -- parsing -------------------------------------------------------------------------------------


@dataclass
class RemoteState:
    state: str | None
    token: str | None
    age: int | None  # seconds since the launch recorded in ssh_launch
    alive: bool | None  # the pid file's process runs (None: no pid file)


@dataclass
class PollResult:
    tasks: dict[str, RemoteState]
    jobs: dict[str, JobStatus] | None  # None: squeue failed (states unknown this cycle)
    named: list[tuple[str, str]]  # (job id, comment) of jobs found by name


def parse_poll(text: str) -> PollResult:
    tasks: dict[str, RemoteState] = {}
    squeue_rc = 0
    squeue_lines: list[str] = []
    named = []
    for line in text.splitlines():
        kind, _, rest = line.partition("\t")
        if kind == "T":
            fields = rest.split("\t")
            if len(fields) != 5:
                continue
            key, state, token, age, alive = fields
            tasks[key] = RemoteState(
                None if state == "-" else state,
                None if token == "-" else token,
                int(age) if age.lstrip("-").isdigit() else None,
                None if alive == "-" else alive == "1",
            )
        elif kind == "QRC":
            squeue_rc = int(rest) if rest.strip().isdigit() else 1
        elif kind == "Q":
            squeue_lines.append(rest)
        elif kind == "N":
            job, _, comment = rest.partition("|")
            named.append((job, comment))
    return PollResult(tasks, parse_squeue(squeue_rc, "\n".join(squeue_lines)), named)


def parse_lines(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines() if line.strip()]
