# drypipe's process executor keeps one of these per slot (executors/process.py): it runs task
# scripts one after another, each in a forked subshell -- no exec of bash, the task runtime
# parsed once -- that is its own process group (job control), so `task kill` and the clean-up
# of a dead task's leftovers find every process of the task.  The task script is the same file
# that runs by hand, under sbatch and remotely, and records its own state as it does there.
#
#   bash worker.sh TASK_LIB      reads NUL-separated pairs "CONTROL_DIR START_STEP" on stdin,
#                                writes a line "ended PID EXIT_CODE" on stdout as each ends
# shellcheck disable=SC1090
source "$1" || exit 1
__in_worker=1  # read by the task runtime: its steps stay in the task's process group
set -m
exec 3< /dev/null
while IFS= read -r -d '' __w_dir && IFS= read -r -d '' __w_step; do
    ( exec >> "$__w_dir/drypipe.log" 2>&1 0<&3 3<&-; source "$__w_dir/task" --at-step "$__w_step" ) &
    __w_pid=$!
    wait "$__w_pid"
    printf 'ended %s %s\n' "$__w_pid" "$?"
done
