#!/usr/bin/env bash
# Forks and wall time of one generated `task` script (a one-step `touch $f` task).
#
#   bash bench/profile_task.sh [REPO_COPY] [RUNS]
#
# REPO_COPY (default: this repo) is put first on PYTHONPATH to generate the task, so a patched
# copy of the repo can be compared with the original.  Prints the processes the script forks
# (strace -f: clone and execve) and its mean wall time over RUNS runs (default 200), each run
# from state.launched, as the process executor starts it.
set -euo pipefail
bench=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd -- "${1:-$bench/..}" && pwd)
runs=${2:-200}
work=$(mktemp -d /tmp/drypipe-profile-task.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"  # not the repo: `python -m` puts the current directory first on sys.path
PYTHONPATH="$repo:$bench" BENCH_N=1 python3 -m drypipe prepare -p bench_pipelines:throughput -i "$work/i" >/dev/null
control=$work/i/.drypipe/t0
reset() { rm -f "$control"/state.*; : > "$control/state.launched"; }

if command -v strace >/dev/null; then
    reset
    strace -f -e trace=clone,clone3,fork,vfork,execve -o "$work/strace.txt" "$control/task" --at-step 0 >/dev/null 2>&1
    forks=$(grep -cE '(clone|clone3|fork|vfork)\(' "$work/strace.txt" || true)
    echo "forks: $forks"
    echo "programs executed:"
    grep -E 'execve\(' "$work/strace.txt" | grep -v ENOENT | sed -E 's/^[0-9]+ +execve\("([^"]*)", \[([^]]*)\].*/  \1  [\2]/' | cut -c1-110
else
    echo "strace not installed: fork count skipped"
fi

total=0
for ((i = 0; i < runs; i++)); do
    reset  # not timed (it forks rm)
    start=$EPOCHREALTIME
    "$control/task" --at-step 0 >/dev/null 2>&1
    end=$EPOCHREALTIME
    total=$(( total + ${end/./} - ${start/./} ))
done
awk -v t="$total" -v n="$runs" 'BEGIN { printf "mean wall: %.2f ms per task script (%d runs)\n", t / 1000 / n, n }'
start=$EPOCHREALTIME
for ((i = 0; i < runs; i++)); do bash -c "touch $work/floor" ; done
end=$EPOCHREALTIME
awk -v s="$start" -v e="$end" -v n="$runs" 'BEGIN { printf "floor:     %.2f ms per bash -c touch\n", (e - s) * 1000 / n }'
