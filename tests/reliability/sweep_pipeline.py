"""The pipeline of the crash-point sweep (test_crash_sweep.py): six small tasks, one of each
kind the sweep must cover, steered by environment variables so that one generator serves
every scenario.  Every step is idempotent, as steps must be: a task killed after its last
step ended but before it recorded `completed` runs that step again.

    make   bash, one file                      split   bash, a fileset of SWEEP_CHUNKS files
    py     a python call on make's file        gather  bash, consumes split's fileset (a glob)
    multi  three bash steps on make's file,    final   bash, joins gather, multi and py's
           passing variables step to step              output variable

SWEEP_VARIANT changes the code of multi's last step (stale: multi and final rerun);
a file `fail-multi` in the instance makes multi's step 1 fail (for --restart-failed).

Every task appends its key to runs.log when it starts and to done.log when its last step
ends (support.LOG_RUN, LOG_DONE; the python call does the same in Python).
"""
import os

from drypipe import DryPipe
from tests.reliability.support import LOG_DONE, LOG_RUN

START = "set -e\n" + LOG_RUN  # a step stops at its first failing command (a write on a full disk)


def _log(instance_dir: str, name: str, key: str) -> None:
    with open(os.path.join(instance_dir, name), "a") as f:
        f.write(key + "\n")


@DryPipe.python_call()
def count_seed(seed, out, __task_key, __pipeline_instance_dir):
    _log(__pipeline_instance_dir, "runs.log", __task_key)
    with open(seed) as f:
        n = len(f.read().split())
    with open(out, "w") as f:
        f.write(f"{n} words\n")
    _log(__pipeline_instance_dir, "done.log", __task_key)
    return {"n": n}


def gen(dsl):
    chunks = int(os.environ.get("SWEEP_CHUNKS", "4"))
    variant = os.environ.get("SWEEP_VARIANT", "1")
    make = dsl.task(key="make").outputs(seed=dsl.file("seed.txt")).calls(
        START + 'echo "one two three four five" > "$seed"\n' + LOG_DONE)()
    yield make
    split = dsl.task(key="split").inputs(n=chunks).outputs(chunks=dsl.fileset("chunk.*.txt")).calls(
        START + 'for i in $(seq 1 "$n"); do echo "chunk $i" > "$__task_output_dir/chunk.$i.txt"; done\n'
        + LOG_DONE)()
    yield split
    gather = dsl.task(key="gather").inputs(split.outputs.chunks).outputs(all=dsl.file("all.txt")).calls(
        START + 'cat $(ls $chunks | sort -V) > "$all"\n' + LOG_DONE)()
    yield gather
    py = dsl.task(key="py").inputs(make.outputs.seed).outputs(n=int, out=dsl.file("count.txt")).calls(count_seed)()
    yield py
    multi = dsl.task(key="multi").inputs(make.outputs.seed).outputs(n=int, twice=int, report=dsl.file("report.txt")).calls(
        START + 'export n=$(wc -w < "$seed")\n').calls(
        'set -e; [ -e "$__pipeline_instance_dir/fail-multi" ] && exit 1; export twice=$((2 * n))\n').calls(
        f'set -e; echo "n=$n twice=$twice variant={variant}" > "$report"\n' + LOG_DONE)()
    yield multi
    yield dsl.task(key="final").inputs(gather.outputs.all, multi.outputs.report, words=py.outputs.n).outputs(
        final=dsl.file("final.txt")).calls(START + 'cat "$all" "$report" > "$final"; echo "words=$words" >> "$final"\n'
                                           + LOG_DONE)()
