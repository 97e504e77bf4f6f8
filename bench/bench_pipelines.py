"""The drypipe pipelines that bench/run.py measures (its Snakemake twins are in snakefiles.py).

Every generator reads its size from the environment, so that `drypipe run -p
bench_pipelines:<name>` can be pointed at any N without editing code:

    BENCH_N      number of tasks (chunks for the dynamic DAG)

Each task runs one trivial command (`touch $f`) into a declared output file, so that what
is measured is the orchestrator, not the work.
"""
from __future__ import annotations

import os

from drypipe import TaskConf

TOUCH = "touch $f\n"  # a bash snippet (the newline makes it one, not a script name)


def _n(default: int = 1000) -> int:
    return int(os.environ.get("BENCH_N", default))


def throughput(dsl):
    """Case 1 (and 3, 6): N independent tasks, each touching its declared output file."""
    for i in range(_n()):
        yield dsl.task(key=f"t{i}").outputs(f=dsl.file("f")).calls(TOUCH)()


def chain(dsl):
    """Case 2: N tasks, each consuming the output file of the one before."""
    previous = None
    for i in range(_n(200)):
        builder = dsl.task(key=f"c{i}")
        if previous is not None:
            builder = builder.inputs(prev=previous.outputs.f)
        previous = builder.outputs(f=dsl.file("f")).calls(TOUCH)()
        yield previous


def fanout_gather(dsl):
    """Case 4: one root task, N tasks that consume its output, one task that gathers all N."""
    root = dsl.task(key="root").outputs(f=dsl.file("f")).calls(TOUCH)()
    yield root
    workers = []
    for i in range(_n(10000)):
        worker = dsl.task(key=f"w{i}").inputs(root.outputs.f).outputs(g=dsl.file("g")).calls("touch $g\n")()
        workers.append(worker)
        yield worker
    yield dsl.task(key="gather").inputs(**{f"g{i}": w.outputs.g for i, w in enumerate(workers)}).outputs(
        f=dsl.file("f")
    ).calls(TOUCH)()


SPLIT = """
for ((i = 0; i < BENCH_CHUNKS; i++)); do : > "$__task_output_dir/chunk.$i.txt"; done
"""


def _split(dsl):
    return dsl.task(key="split").inputs(BENCH_CHUNKS=_n(5000)).outputs(chunks=dsl.fileset("chunk.*.txt")).calls(SPLIT)()


def dynamic(dsl):
    """Case 5, dynamic: the chunked-fasta pattern (fileset, wait_for_tasks, one task per chunk,
    wait_for_matching_tasks, a gather over a glob)."""
    split = _split(dsl)
    yield split
    for _ in dsl.wait_for_tasks(split):
        for handle in split.outputs.chunks.fetch():
            n = handle.basename().split(".")[1]
            yield dsl.task(key=f"chunk.{n}").inputs(chunk=handle).outputs(f=dsl.file("f")).calls(TOUCH)()
    for matcher in dsl.wait_for_matching_tasks("chunk.*"):
        yield dsl.task(key="gather").inputs(all=matcher.all.f.as_glob_expression()).outputs(
            f=dsl.file("f")
        ).calls(TOUCH)()


def static(dsl):
    """Case 5, static: the same tasks, the same commands, with every edge declared up front."""
    split = _split(dsl)
    yield split
    chunks = []
    for i in range(_n(5000)):
        task = dsl.task(key=f"chunk.{i}").inputs(split.outputs.chunks).outputs(f=dsl.file("f")).calls(TOUCH)()
        chunks.append(task)
        yield task
    yield dsl.task(key="gather").inputs(**{f"f{i}": t.outputs.f for i, t in enumerate(chunks)}).outputs(
        f=dsl.file("f")
    ).calls(TOUCH)()


SLURM = TaskConf(executer_type="slurm")


def slurm_throughput(dsl):
    """Case 6: N independent trivial tasks as Slurm jobs."""
    for i in range(_n()):
        yield dsl.task(key=f"s{i}", task_conf=SLURM).outputs(f=dsl.file("f")).calls(TOUCH)()
