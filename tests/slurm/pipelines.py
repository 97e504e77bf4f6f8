"""Pipelines run by the Slurm tests: the foundation examples with Slurm as the default
executor, a fan-out, and small DAGs for the failure and adoption cases.

Tests run them with `drypipe run -p tests.slurm.pipelines:<name>` from the repo root.
"""
import os

from dry_pipe import DryPipe, TaskConf
from examples import dag_t1_t2_t3

SLURM = TaskConf(executer_type="slurm")


def t1_t2_t3():
    """The manual's t1 -> t2 -> t3 example, every task a Slurm job."""
    return DryPipe.create_pipeline(dag_t1_t2_t3.my_dag_generator, task_conf=SLURM)


def t1_t2_t3_process():
    return DryPipe.create_pipeline(dag_t1_t2_t3.my_dag_generator)


@DryPipe.python_call()
def count_words(chunk, count):
    with open(chunk) as f:
        n_words = len(f.read().split())
    with open(count, "w") as out:
        out.write(f"{n_words}\n")
    return {"n_words": n_words}


def fan_out_dag(dsl):
    """A task splits work into chunk files; one task per chunk (yielded once the splitter has
    completed) counts its words; a last task waits for every count task and sums them."""
    split = dsl.task(key="split").outputs(chunks=dsl.fileset("chunk-*.txt")).calls("""
        #!/usr/bin/env bash
        for i in 1 2 3 4 5 6; do
            seq 1 $((i * 10)) | tr '\\n' ' ' > chunk-$i.txt
        done
    """)()
    yield split
    for _ in dsl.wait_for_tasks(split):
        for chunk in split.outputs.chunks.fetch():
            name = chunk.basename().replace(".txt", "")
            yield dsl.task(key=f"count.{name}").inputs(chunk=chunk)\
                .outputs(n_words=dsl.var(int), count=dsl.file("count.txt")).calls(count_words)()
    for matcher in dsl.wait_for_matching_tasks("count.*"):
        yield dsl.task(key="sum").inputs(counts=matcher.all.count.as_glob_expression())\
            .outputs(total=dsl.file("total.txt")).calls("""
            #!/usr/bin/env bash
            awk '{ s += $1 } END { print s }' $counts > "$total"
        """)()


def fan_out():
    return DryPipe.create_pipeline(fan_out_dag, task_conf=SLURM)


def fan_out_process():
    return DryPipe.create_pipeline(fan_out_dag)


def _sleeper(dsl, key, task_conf=SLURM):
    return dsl.task(key=key, task_conf=task_conf).calls("""
        #!/usr/bin/env bash
        sleep 300
    """)()


def signals_dag(dsl):
    """Long tasks the signal test stops in different ways (one of them is held pending)."""
    for key in ("to-cancel", "to-timeout", "to-sigkill"):
        yield _sleeper(dsl, key)
    yield _sleeper(dsl, "held", TaskConf(executer_type="slurm", sbatch_options=["--hold"]))


def signals():
    return DryPipe.create_pipeline(signals_dag)


def adopt_dag(dsl):
    """`slow` runs until the test creates $__pipeline_instance_dir/release."""
    yield dsl.task(key="quick").outputs(x=dsl.var(int)).calls("""
        #!/usr/bin/env bash
        export x=7
    """)()
    slow = dsl.task(key="slow").outputs(f=dsl.file("slow.txt")).calls("""
        #!/usr/bin/env bash
        while [ ! -e "$__pipeline_instance_dir/release" ]; do sleep 0.2; done
        echo slow-done > "$f"
    """)()
    yield slow
    yield dsl.task(key="after").inputs(slow.outputs.f).outputs(g=dsl.file("after.txt")).calls("""
        #!/usr/bin/env bash
        cat "$f" > "$g"; echo after >> "$g"
    """)()


def adopt():
    return DryPipe.create_pipeline(adopt_dag, task_conf=SLURM)


def many_dag(dsl):
    n = int(os.environ.get("DRYPIPE_TEST_TASK_COUNT", "200"))
    for i in range(n):
        yield dsl.task(key=f"t{i:04d}").inputs(i=i).outputs(y=dsl.var(int)).calls("""
            #!/usr/bin/env bash
            export y=$((i * 2))
        """)()


def many():
    return DryPipe.create_pipeline(many_dag, task_conf=SLURM)


def bad_options_dag(dsl):
    """`pending-ok` is valid (and cannot start for minutes); `bad` has an sbatch option
    Slurm refuses (env DRYPIPE_TEST_BAD_OPTION); `downstream` waits for `bad`."""
    yield dsl.task(key="pending-ok", task_conf=TaskConf(
        executer_type="slurm", sbatch_options=["--begin=now+600"])).calls("""
        #!/usr/bin/env bash
        echo ok
    """)()
    option = os.environ.get("DRYPIPE_TEST_BAD_OPTION", "--time=abc")
    if option.startswith("--account="):
        conf = TaskConf(executer_type="slurm", slurm_account=option.split("=", 1)[1])
    else:
        conf = TaskConf(executer_type="slurm", sbatch_options=[option])
    bad = dsl.task(key="bad", task_conf=conf).outputs(x=dsl.var(int)).calls("""
        #!/usr/bin/env bash
        export x=1
    """)()
    yield bad
    yield dsl.task(key="downstream").inputs(bad.outputs.x).calls("""
        #!/usr/bin/env bash
        echo "$x"
    """)()


def bad_options():
    return DryPipe.create_pipeline(bad_options_dag, task_conf=SLURM)


CHUNKS_CONF = TaskConf(executer_type="slurm", max_simultaneous_jobs=2)


def chunks_dag(dsl):
    """Independent chunk tasks for the array-* commands; chunk i succeeds only once the file
    $__pipeline_instance_dir/ok-<i> exists.  `held.*` stay pending (sbatch --hold)."""
    for i in range(1, 6):
        yield dsl.task(key=f"chunk.{i}", task_conf=CHUNKS_CONF).inputs(i=i).outputs(out=dsl.file("out.txt")).calls("""
            #!/usr/bin/env bash
            [ -e "$__pipeline_instance_dir/ok-$i" ] || { echo "no ok-$i" >&2; exit 3; }
            echo "chunk $i" > "$out"
        """)()
    for i in range(1, 3):
        yield _sleeper(dsl, f"held.{i}", TaskConf(executer_type="slurm", sbatch_options=["--hold"]))
    yield _sleeper(dsl, "sleeper")


def chunks():
    return DryPipe.create_pipeline(chunks_dag, task_conf=SLURM)


def chunked_fasta():
    """The manual's chunked fasta fan-out (examples/chunked_fasta.py) on Slurm."""
    from examples import chunked_fasta as example

    return DryPipe.create_pipeline(example.dag_gen, task_conf=SLURM)


def chunked_fasta_process():
    from examples import chunked_fasta as example

    return DryPipe.create_pipeline(example.dag_gen)
