# drypipe task runtime, sourced by every generated `task` script of this instance.
# It needs only bash (>= 4.4) and coreutils: a compute node without drypipe can run bash tasks.
# The `task` script defines before sourcing this file:
#   __control_dir, __pipeline_instance_dir, __task_key, __step_count, __run_step N,
#   __output_var_names (array), __output_files (array, filled by task-env.sh)

# Bash's loadable mkdir, rmdir, ln and unlink (Debian package bash-builtins), where installed,
# save a fork each.  They know fewer options than coreutils' (no -v, no --): user code gets the
# real commands back (__user_code_shell).
__loadables=()
for __builtin in mkdir rmdir ln unlink; do
    [[ -f /usr/lib/bash/$__builtin ]] && enable -f "/usr/lib/bash/$__builtin" "$__builtin" 2>/dev/null &&
        __loadables+=("$__builtin")
done
# A marker moves to a later state by a hard link of the new name, then an unlink of the old one,
# without a fork; `mv` (a fork) where the loadables are missing.
__link_moves=""
[[ " ${__loadables[*]} " == *" ln unlink "* ]] && __link_moves=1

__user_code_shell() {  # in the subshell of a step, before any user code runs
    if ((${#__loadables[@]})); then enable -n "${__loadables[@]}"; fi
}

__usage() {
    cat <<USAGE
usage: task [run] [--at-step N] [--force] run the task (in the foreground), from step N;
                                           --force: even if an upstream task has not completed
       task kill                           stop the running task (SIGTERM to its steps)
       task tail                           print out.log and drypipe.log; follow them while the task runs
       task ps                             show the task's processes
       task container-command [N]          print the command that runs step N (0) in its container
USAGE
}

__log() {  # one timestamped line in drypipe.log
    printf '%(%Y-%m-%dT%H:%M:%S)T %s %s\n' -1 "${EPOCHREALTIME:-0}" "$*" >> "$__control_dir/drypipe.log"
}

__current_state() {  # sets __state to the task's state ("" without a marker); no subshell: forks cost
    __marker_in "$__control_dir"
}

__transition() {  # moves the single state marker to $1 (a later state: link + unlink); logged once it moved
    local old __r r
    __current_state
    old=$__state
    if [[ -z $old ]]; then
        : > "$__control_dir/state.$1" || return 1
    elif [[ $old != "$1" ]]; then
        __rank "$old"; r=$__r
        __rank "$1"
        # A link the file system refuses falls back to mv.  The old name may already be gone
        # after a link: an orchestrator tidying up after a crash removes it.
        if [[ -n $__link_moves ]] && ((__r > r)) && ln -f "$__control_dir/state.$old" "$__control_dir/state.$1" 2>/dev/null; then
            unlink "$__control_dir/state.$old" 2>/dev/null || :
        else
            mv -f -- "$__control_dir/state.$old" "$__control_dir/state.$1"
        fi || {
            echo "drypipe: task $__task_key: cannot move state.$old to state.$1" >&2
            return 1
        }
    fi
    __log "state.$1${2:+ $2}"
}

__state_of() {  # sets __state to the state of task $1 of this instance ("none" without a marker)
    __marker_in "$__pipeline_instance_dir/.drypipe/$1" || __state=none
}

__check_upstreams() {  # sets __env_error naming each upstream task that has not completed
    local __u __bad=() __state
    for __u in "${__upstream_keys[@]}"; do
        [[ -e $__pipeline_instance_dir/.drypipe/$__u/state.completed ]] && continue
        __state_of "$__u"
        __bad+=("$__u ($__state)")
    done
    (( ${#__bad[@]} )) || return 0
    __env_error="upstream task(s) not completed: ${__bad[*]}"
    return 1
}

# Values longer than this (in characters) stay shell variables of the steps instead of
# exported ones: the kernel refuses to start any program (even `mv`) whose environment holds
# a string of 128 KiB.  Kept equal to EXPORT_LIMIT in task_script.py (tests check).
__export_limit=32000
__max_value_length=10000000  # the longest output value (MAX_VALUE_LENGTH in errors.py, tests check)

__load_env() {  # sets __env_error and returns 1 when the task's environment cannot be loaded completely
    local __env_complete=""
    __env_error=""
    # shellcheck disable=SC1091
    source "$__control_dir/task-env.sh"
    if [[ -z $__env_complete ]]; then
        __env_error=${__env_error:-"$__control_dir/task-env.sh is incomplete or unreadable (regenerate it with drypipe run or drypipe prepare)"}
        return 1
    fi
    local __v
    for __v in "${__output_var_names[@]}"; do unset "$__v"; done
    if [[ -f $__control_dir/output_vars.sh ]]; then
        # shellcheck disable=SC1091
        source "$__control_dir/output_vars.sh" || { __env_error="cannot read $__control_dir/output_vars.sh"; return 1; }
    fi
}

__expand_vars() {  # sets __expanded to $1 with $name and ${name} replaced by the value of each
    # exported variable (others are left as they are, like Python's os.path.expandvars, which
    # the original DryPipe used); only variables: no command substitution, nothing runs
    local __rest=$1 __name __token __word='^([a-zA-Z0-9_]+)' __braced='^\{([^}]*)\}'
    __expanded=""
    while [[ $__rest == *'$'* ]]; do
        __expanded+=${__rest%%'$'*}
        __rest=${__rest#*'$'}
        if [[ $__rest =~ $__braced ]]; then
            __name=${BASH_REMATCH[1]} __token='$'${BASH_REMATCH[0]}
        elif [[ $__rest =~ $__word ]]; then
            __name=${BASH_REMATCH[1]} __token='$'$__name
        else
            __expanded+='$'
            continue
        fi
        __rest=${__rest:${#__token}-1}
        if [[ $__name =~ ^[a-zA-Z_][a-zA-Z0-9_]*$ && ${!__name@a} == *x* ]]; then
            __expanded+=${!__name}
        else
            __expanded+=$__token
        fi
    done
    __expanded+=$__rest
}

__extra_env() {  # __extra_env NAME VALUE: TaskConf.extra_env, VALUE's variables expanded
    local __expanded
    __expand_vars "$2"
    printf -v "$1" '%s' "$__expanded"
    export "${1?}"
}

__upstream_var() {  # __upstream_var NAME UPSTREAM_KEY OUTPUT_NAME [may_be_none]: an output variable of an upstream task
    local file="$__pipeline_instance_dir/.drypipe/$2/output_vars.sh" value
    if [[ ! -f $file ]]; then
        __env_error="upstream task $2 has no output variables ($file is missing): input $1 of this task is its output variable $3"
        return 1
    fi
    value=$(unset "$3"; source "$file" || exit 1; [[ -v $3 ]] || exit 3; printf '%sx' "${!3}")
    case $? in
        0) ;;
        3)
            if [[ ${4:-} == may_be_none ]]; then  # declared dsl.var(..., may_be_none=True): runs without it
                unset "$1"
                return 0
            fi
            __env_error="upstream task $2 did not set output variable $3, input $1 of this task (not in $file)"
            return 1 ;;
        *) __env_error="cannot read $file"; return 1 ;;
    esac
    printf -v "$1" '%s' "${value%x}"
    (( ${#value} <= __export_limit )) && export "${1?}"
    return 0
}

__save_output_vars() {  # record the declared output variables set by a bash step
    local __v __value __line __body="" __tmp="$__control_dir/.output_vars.sh.tmp"
    (( ${#__output_var_names[@]} )) || return 0
    for __v in "${__output_var_names[@]}"; do
        [[ -v $__v ]] || continue
        __value=${!__v}
        printf -v __line '%s=%q' "$__v" "$__value"
        (( ${#__value} <= __export_limit )) && __line="export $__line"
        __body+=$__line$'\n'
    done
    # One write whose status is checked: a failed write in the middle must not pass.
    printf '%s' "$__body" > "$__tmp" || return 1
    # The step may have exported a value too large for the environment of `mv`.
    for __v in "${__output_var_names[@]}"; do export -n "$__v" 2>/dev/null; done
    mv -f -- "$__tmp" "$__control_dir/output_vars.sh"
}

__is_of_type() {  # __is_of_type TYPE VALUE: VALUE reads back as TYPE (values.parse_var), as python calls are checked
    local __space='[[:space:]]*'
    case $1 in
        int) [[ $2 =~ ^${__space}[+-]?[0-9]+${__space}$ ]] ;;
        float) [[ $2 =~ ^${__space}[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?${__space}$ ||
                  ${2,,} =~ ^${__space}[+-]?(inf|infinity|nan)${__space}$ ]] ;;
        bool) [[ ${2,,} =~ ^${__space}(true|false|1|0|yes|no)${__space}$ ]] ;;
        *) return 0 ;;
    esac
}

__json_string() {  # sets __json to a JSON string literal of $1 (UTF-8 passes through), without forks
    local s=$1 c h i
    s=${s//\\/\\\\}; s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}; s=${s//$'\r'/\\r}; s=${s//$'\t'/\\t}
    if [[ $s == *[[:cntrl:]]* ]]; then
        for ((i = 1; i < 32; i++)); do
            printf -v h '%02x' "$i"; printf -v c "\\x$h"
            [[ $s == *"$c"* ]] && s=${s//"$c"/\\u00$h}
        done
    fi
    __json="\"$s\""
}

__write_output_vars_json() {  # output_vars: JSON of the output variables (sourced into this shell by __run)
    local __tmp="$__control_dir/.output_vars.tmp" __sep="" __body="{" __v
    for __v in "${__output_var_names[@]}"; do
        if [[ -v $__v ]]; then
            __json_string "$__v"; __body+="$__sep$__json: "
            __json_string "${!__v}"; __body+="$__json"
            __sep=", "
        fi
    done
    printf '%s}\n' "$__body" > "$__tmp" && mv -f -- "$__tmp" "$__control_dir/output_vars"
}

__bash_step() {  # __bash_step FILE: source a bash snippet or script, then record its outputs
    trap '__save_output_vars || exit 70' EXIT  # a step whose variables are not recorded fails
    # By default, as in the original DryPipe, only the last command's exit code decides;
    # TaskConf(bash_strict=True) stops at the first failing command, unset variable or pipe.
    [[ -n ${__bash_strict:-} ]] && set -euo pipefail
    # shellcheck disable=SC1090
    source "$1"
}

__exec_step() {  # a script with its own interpreter (shebang other than bash/sh)
    chmod +x "$1" 2>/dev/null || true
    "$1"
}

__python_step() {  # __python_step MODULE:FUNCTION
    "${__python_bin:-python3}" "${__python_switches[@]}" -m drypipe call "$1"  # switches: TaskConf.python_interpreter_switches
}

__before_step() {  # TaskConf.command_before_task (module load, conda activate ...)
    if [[ -n ${__command_before_task:-} ]]; then eval "$__command_before_task"; fi
}

__container_or() {  # __container_or IMAGE STEP COMMAND...: COMMAND, inside IMAGE unless already there
    if [[ -n $1 && -z ${__inside_container:-} ]]; then
        local __cmd __line
        __container_command "$1" "$2" || return
        if [[ -n ${__print_only:-} ]]; then  # ./task container-command STEP
            printf -v __line '%q ' "${__cmd[@]}"
            printf '%s\n' "${__line% }"
            return 0
        fi
        "${__cmd[@]}"
    elif [[ -n ${__print_only:-} ]]; then
        echo "task $__task_key: step $2 runs outside a container"
    else
        shift 2
        "$@"
    fi
}

__container_command() {  # __container_command IMAGE STEP: sets __cmd, the command line that runs STEP in IMAGE
    # $__container_runtime and $__container_binds come from task-env.sh (drypipe/containers.py).
    # The step sees the instance dir, its scratch dir, the code dir and its inputs outside the
    # instance at their own paths, and starts in its output dir; inside, this script runs again
    # (--step-only) and loads the task's variables from task-env.sh.
    local image=$1 runtime=${__container_runtime:-apptainer} bin b binds=() flags=() missing
    if [[ $image == -* ]]; then  # the runtime would read it as one of its own options
        echo "drypipe: task $__task_key: step $2: container image '$1' starts with '-': refused" >&2
        return 2
    fi
    for b in "$__pipeline_instance_dir" "$__scratch_dir" "${__container_binds[@]}"; do
        [[ -e $b && $b != "$__pipeline_instance_dir"/* ]] || continue  # inside the instance dir: bound with it
        if [[ $b == *[:,]* ]]; then  # bind specifications are separated by these
            echo "drypipe: task $__task_key: step $2: cannot bind $b into container $1: its path contains ':' or ','" >&2
            return 2
        fi
        binds+=("$b")
    done
    case $runtime in
        apptainer|singularity)  # one command line (singularity is apptainer's former name)
            [[ $image == /* || $image == *://* ]] || image="${__containers_dir:-.}/$image"
            bin=$(command -v "$runtime" || command -v apptainer || command -v singularity)
            missing="neither apptainer nor singularity is installed"
            for b in "${binds[@]}"; do flags+=(--bind "$b"); done
            __cmd=("${bin:-$runtime}" exec --pwd "$__task_output_dir" --env __inside_container=1 "${flags[@]}") ;;
        podman|docker)
            bin=$(command -v "$runtime")
            missing="$runtime is not installed"
            for b in "${binds[@]}"; do flags+=(--volume "$b:$b"); done
            for b in "${__scratch_dir_variables[@]}"; do  # the scratch dir, in task-env.sh
                [[ -n ${!b:-} ]] && flags+=(--env "$b")
            done
            # docker's daemon would run the step as root: the files it writes belong to the user
            [[ $runtime == docker ]] && flags+=(--user "$(id -u):$(id -g)")
            __cmd=("${bin:-$runtime}" run --rm --network host --workdir "$__task_output_dir"
                   --env __inside_container=1 "${flags[@]}") ;;
        *)
            echo "drypipe: task $__task_key: step $2: unknown container runtime '$runtime' (apptainer, singularity, podman or docker)" >&2
            return 2 ;;
    esac
    __cmd+=("$image" bash "$__control_dir/task" --step-only "$2")
    if [[ -z $bin && -z ${__print_only:-} ]]; then
        echo "drypipe: task $__task_key: step $2 needs container $1 but $missing (container runtime: $runtime)" >&2
        return 127
    fi
}

__log_cpu() {  # CPU time (user, system) of this run's steps, for `drypipe report-execution-times`
    local __stat __ticks __line
    { read -r __stat < "/proc/$BASHPID/stat"; } 2>/dev/null || return 0
    __stat=${__stat##*) }
    set -- $__stat
    # fields 16 and 17 of /proc/PID/stat: CPU of waited-for children, in clock ticks (100 per second)
    __ticks=("${14}" "${15}")
    printf -v __line '0m%d.%02ds 0m%d.%02ds' $((__ticks[0] / 100)) $((__ticks[0] % 100)) \
        $((__ticks[1] / 100)) $((__ticks[1] % 100))
    __log "cpu $__line"
}

__start_time() {  # sets __started to the kernel start time of pid $1 (pid + start time identify a process)
    local stat
    __started=0
    { read -r stat < "/proc/$1/stat"; } 2>/dev/null || return 0
    stat=${stat##*) }
    set -- $stat
    [[ $1 == [ZX] ]] && return 0  # a zombie (dead, not reaped) is not running
    __started=${20}
}

__write_pid() {  # in place (a rename costs a fork): a reader finding it partial waits out the grace period
    __start_time $BASHPID  # not $$: in a process executor's worker, that is the worker
    printf '%s %s %s\n' "$BASHPID" "$__started" "${HOSTNAME:-localhost}" > "$__control_dir/pid"
}

__on_signal() {  # $1: killed (SIGTERM/SIGINT) or timed-out (SIGUSR1, sent by Slurm before the time limit); $2: the signal
    trap '' TERM INT USR1
    __signalled=$1 __signal_name=$2
    if [[ -n ${__in_worker:-} ]]; then  # the steps are in this shell's process group (see __run)
        kill -TERM -- "-$BASHPID" 2>/dev/null
    elif [[ -n ${__child:-} ]]; then
        kill -TERM -- "-$__child" 2>/dev/null
    fi
}

__exit_reason() {  # "exit code N", naming the signal when N > 128 (137: SIGKILL, e.g. out of memory)
    local name
    __reason="exit code $1"
    if (( $1 > 128 && $1 < 160 )) && name=$(kill -l "$(( $1 - 128 ))" 2>/dev/null); then
        __reason+=": killed by SIG$name"
        (( $1 == 137 )) && __reason+=" (e.g. out of memory)"
    fi
}

__full_disk_note() {  # a step failed on a full file system: say so (its own error may not have fit in out.log)
    local dir avail size
    for dir in "$__task_output_dir" "$__control_dir"; do
        read -r avail size < <(stat -f -c '%a %S' -- "$dir" 2>/dev/null) || continue
        if [[ -n $size ]] && (( avail * size < 65536 )); then
            __reason+=" (no space left on device: $((avail * size)) bytes free for ${dir#"$__pipeline_instance_dir"/})"
            return 0
        fi
    done
}

__check_inputs() {  # the input files of upstream tasks exist (a completed task's output deleted since?)
    local __i __missing=()
    for __i in "${__input_files[@]}"; do
        [[ -e $__i ]] || __missing+=("${__i#"$__pipeline_instance_dir"/}")
    done
    (( ${#__missing[@]} )) || return 0
    __transition "failed.$1" "missing input file(s): ${__missing[*]}"
    echo "drypipe: task $__task_key: missing input file(s), outputs of upstream tasks: ${__missing[*]}" >> "$__out_log"
    return 1
}

__refuse_start() {  # __refuse_start STEP: the task cannot start (its inputs are not all there)
    __current_state
    echo "drypipe: task $__task_key: $__env_error" >&2
    if [[ $__state == launched ]]; then  # handed over by an orchestrator or sbatch: record why
        __transition "failed.$1" "$__env_error"
        echo "drypipe: task $__task_key: $__env_error" >> "$__control_dir/out.log"
    fi
    exit 1
}

__separate_runs() {  # $1: the first step (numbered as in state markers). A rerun's output starts below a line saying so (a retry's has one)
    local log=$__control_dir/out.log last  # $__out_log comes with task-env.sh, loaded later
    [[ -s $log ]] || return 0
    last=$(tail -n 1 "$log")
    [[ $last == "===== "* ]] ||
        printf '===== run from step %s (%(%Y-%m-%dT%H:%M:%S)T) =====\n' "$1" -1 >> "$log"
}

__run() {  # locals are __-prefixed: output variables (any other name) are sourced into this shell
    local __start=$1 __force=$2 __step __rc __state __f __value __missing=() __reason __env_error=""
    # Signals first, then the pid file: a `task kill` during start-up is recorded as killed.
    __signalled=""
    trap '__on_signal killed SIGTERM' TERM
    trap '__on_signal killed SIGINT' INT
    trap '__on_signal timed-out SIGUSR1' USR1
    __write_pid
    if [[ -z $__start ]]; then
        __current_state
        case $__state in
            failed.*|killed.*|timed-out.*) __start=${__state##*.} ;;
            *) __start=0 ;;
        esac
    fi
    __separate_runs "$__start"
    if [[ -z $__force ]] && ! __check_upstreams; then
        __env_error+=" (drypipe run starts it when they have; ./task --force runs it anyway)"
        __refuse_start "$__start"
    fi
    __load_env || __refuse_start "$__start"
    [[ -d $__task_output_dir && -d $__scratch_dir ]] || mkdir -p "$__task_output_dir" "$__scratch_dir"
    __check_inputs "$__start" || exit 1
    # Each step runs in its own process group, so `task kill` stops all of it.  In a process
    # executor's worker, the task is a process group of its own: its steps stay in it.
    [[ -n ${__in_worker:-} ]] || set -m
    cd "$__task_output_dir" || exit 1
    for ((__step = __start; __step < __step_count; __step++)); do
        if [[ -n $__signalled ]]; then  # received before this step started
            __transition "$__signalled.$__step" "received $__signal_name"
            exit 143
        fi
        __transition "step-started.$__step" || exit 1
        # A later step sees the output variables of the ones before (loaded again); the first
        # has what __run loaded.
        ( __user_code_shell
          if ((__step > __start)); then __load_env || { echo "drypipe: task $__task_key: $__env_error" >&2; exit 1; }; fi
          __before_step; __run_step "$__step" ) >> "$__out_log" 2>&1 &
        __child=$!
        while :; do
            wait "$__child"; __rc=$?
            # a trapped signal interrupts `wait` with rc > 128 while the child still runs
            kill -0 "$__child" 2>/dev/null || break
        done
        __child=""
        if [[ -z $__signalled ]]; then
            # The step died of the signal before this shell's trap ran (Slurm's scancel and
            # `kill -- -PGID` signal every process at once): the same outcome.
            case $__rc in
                143) __signalled=killed __signal_name=SIGTERM ;;
                130) __signalled=killed __signal_name=SIGINT ;;
                138) __signalled=timed-out __signal_name=SIGUSR1 ;;
            esac
        fi
        if [[ -n $__signalled ]]; then
            __transition "$__signalled.$__step" "received $__signal_name"
            exit 143
        fi
        if (( __rc != 0 )); then
            __log_cpu
            __exit_reason "$__rc"
            __full_disk_note
            __transition "failed.$__step" "$__reason"
            echo "drypipe: task $__task_key: step $__step failed with $__reason" >> "$__out_log"
            exit "$__rc"
        fi
        if (( __step + 1 < __step_count )); then __transition "step-completed.$__step" || exit 1; fi
    done
    for __f in "${__output_files[@]}"; do
        [[ -e $__f ]] || __missing+=("${__f#"$__task_output_dir"/}")
    done
    # shellcheck disable=SC1091
    [[ -f $__control_dir/output_vars.sh ]] && source "$__control_dir/output_vars.sh"
    local __i __type __unset=() __wrong=()
    for ((__i = 0; __i < ${#__output_var_names[@]}; __i++)); do
        __f=${__output_var_names[__i]} __type=${__output_var_types[__i]:-str}
        if [[ ! -v $__f ]]; then
            __unset+=("$__f")
            continue
        fi
        __value=${!__f}
        if (( ${#__value} > __max_value_length )); then
            __missing+=("variable $__f (${#__value} characters, more than the $__max_value_length a value may have)")
        elif ! __is_of_type "$__type" "$__value"; then
            (( ${#__value} <= 200 )) || __value="${__value:0:200}..."
            __value=${__value//[[:cntrl:]]/?}  # one line in drypipe.log
            __wrong+=("output variable $__f is declared $__type, but was set to '$__value'")
        fi
    done
    if (( ${#__missing[@]} )); then
        __wrong=("missing output(s): ${__missing[*]}" "${__wrong[@]}")
    fi
    if (( ${#__wrong[@]} )); then
        printf -v __reason '%s; ' "${__wrong[@]}"
        __reason=${__reason%; }
        __transition "failed.$((__step_count - 1))" "$__reason"
        echo "drypipe: task $__task_key: $__reason" >> "$__out_log"
        exit 1
    fi
    # As in the original DryPipe, a declared variable left unset does not fail the task: a
    # downstream task that consumes it fails when it starts, naming it (see __upstream_var).
    if (( ${#__unset[@]} )); then
        __log "warning: output variable(s) not set: ${__unset[*]}"
        echo "drypipe: task $__task_key: warning: output variable(s) not set: ${__unset[*]}" >> "$__out_log"
    fi
    if (( ${#__output_var_names[@]} )) && ! __write_output_vars_json; then
        __transition "failed.$((__step_count - 1))" "cannot write $__control_dir/output_vars"
        exit 1
    fi
    [[ $__scratch_dir == "$__task_output_dir/scratch" ]] && rmdir "$__scratch_dir" 2>/dev/null
    __log_cpu
    __transition completed || exit 1
}

__pid_of_task() {
    local pid start rest
    read -r pid start rest < "$__control_dir/pid" 2>/dev/null || return 1
    __start_time "$pid"
    [[ $__started == "$start" ]] || return 1
    printf '%s' "$pid"
}

__kill() {
    local pid i
    pid=$(__pid_of_task) || { echo "task $__task_key is not running"; return 1; }
    kill -TERM "$pid"
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || { __current_state; echo "task $__task_key: $__state"; return 0; }
        sleep 0.1
    done
    echo "task $__task_key did not stop within 10 s (pid $pid)" >&2
    return 1
}

__tail() {  # like `tail`; while the task runs, follow its logs until it ends
    local pid logs=() f follower
    for f in "$__control_dir/out.log" "$__control_dir/drypipe.log"; do [[ -e $f ]] && logs+=("$f"); done
    if pid=$(__pid_of_task); then  # a process of this host: tail itself stops when it ends
        exec tail -n 40 -F --pid="$pid" "$__control_dir/out.log" "$__control_dir/drypipe.log" 2>/dev/null
    fi
    if __running_elsewhere; then  # e.g. a batch job on another node: until its marker says it ended
        tail -n 40 -F "$__control_dir/out.log" "$__control_dir/drypipe.log" 2>/dev/null &
        follower=$!
        trap "kill $follower 2>/dev/null" EXIT
        trap 'exit 130' INT TERM  # Ctrl-C: the EXIT trap stops the follower too
        while __running_elsewhere; do sleep 2; done
        sleep 1.5  # tail reads the files once a second: let it print their last lines
        return 0
    fi
    (( ${#logs[@]} )) || { echo "task $__task_key has no log yet"; return 0; }
    exec tail -n 40 "${logs[@]}"
}

__running_elsewhere() {  # its marker says it runs, and an executor plugin's check says: on another machine
    __current_state && [[ $__state == launched || $__state == step-started.* || $__state == step-completed.* ]] || return 1
    __running_elsewhere_plugins  # written after this file by drypipe (task_script.task_lib_text)
}

__main() {
    local cmd=run at_step="" step_only="" force=""
    while (($#)); do
        case $1 in
            run|kill|tail|ps) cmd=$1 ;;
            container-command) cmd=$1 step_only=${2:-0}; (($# > 1)) && shift ;;
            --at-step) at_step=${2:?--at-step needs a step number}; shift ;;
            --step-only) step_only=${2:?}; shift ;;
            --force) force=1 ;;
            --wait|--by-runner) ;;
            -h|--help) __usage; return 0 ;;
            *) echo "task $__task_key: unknown argument '$1'" >&2; __usage >&2; return 2 ;;
        esac
        shift
    done
    case $cmd in
        kill) __kill ;;
        tail) __tail ;;
        ps)
            local pid
            pid=$(__pid_of_task) || { echo "task $__task_key is not running"; return 1; }
            ps -o pid,pgid,stat,etime,args -p "$pid" --ppid "$pid" -g "$(ps -o pgid= --ppid "$pid" | tr -d ' ' | paste -sd,)" 2>/dev/null
            ;;
        container-command)
            __load_env || { echo "drypipe: task $__task_key: $__env_error" >&2; return 1; }
            __print_only=1 __run_step "$step_only"
            ;;
        run)
            if [[ -n $step_only ]]; then
                __load_env || { echo "drypipe: task $__task_key: $__env_error" >&2; return 1; }
                __user_code_shell
                __run_step "$step_only"
            elif [[ -n $at_step && ( $at_step == *[!0-9]* || 10#$at_step -ge __step_count ) ]]; then  # a glob: =~ compiles a regex
                echo "task $__task_key: --at-step $at_step: the task has steps 0 to $((__step_count - 1))" >&2
                return 2
            else
                __run "$at_step" "$force"
            fi
            ;;
    esac
}
