"""The manual's "When NOT to use dsl.wait_for" example: the generator fetches the value of
task-a's output variable x (possible only once task-a has completed, inside
`for _ in dsl.wait_for_tasks(...)`) and uses it to parametrise highly-dependent-task, which
also waits for every task matching "task-prefix-*" and "other-task-prefix-*".

    drypipe run -p examples.fetched_value:pipeline -i /tmp/fetched-value

Outputs: .drypipe/task-a/output_vars has {"x": "42"}; highly-dependent-task's
task-conf.json records sbatch_options ["--time=0:42:00"] (from estimate_time(42));
output/highly-dependent-task/report.txt lists x and the files of the matched tasks.

Adapted from the manual: task-b, the "task-prefix-*" and "other-task-prefix-*" tasks and
some_func are written here (the manual leaves them out); highly-dependent-task keeps the
manual's TaskConf fields but with executer_type="process" so that it runs without Slurm
(the process executor ignores slurm_account and slurm_options, which drypipe records as
sbatch_options); its elided inputs/outputs/calls are completed.
"""
import os

from dry_pipe import DryPipe, TaskConf


@DryPipe.python_call()
def some_func():
    return {"x": 42}


def estimate_time(x):
    """A Slurm --time for a task whose size is x: one minute per unit of x."""
    return f"{x // 60}:{x % 60:02d}:00"


@DryPipe.python_call()
def write_report(x, parts, other_parts, b_file, report):
    with open(report, "w") as out:
        out.write(f"x\t{x}\n")
        for path in parts() + other_parts():
            with open(path) as f:
                out.write(f"{os.path.basename(os.path.dirname(path))}\t{f.read().strip()}\n")
        with open(b_file) as f:
            out.write(f"task-b\t{f.read().strip()}\n")


def my_dag_generator(dsl):
    task_a = dsl.task(
        key="task-a"
    ).outputs(
        x=dsl.var(int)
    ).calls(
        some_func
    )()

    yield task_a

    task_b = dsl.task(
        key="task-b"
    ).outputs(
        b_file=dsl.file("b.txt")
    ).calls("""
        #!/usr/bin/env bash
        echo "b" > $b_file
    """)()

    yield task_b

    for prefix in ["task-prefix-", "other-task-prefix-"]:
        for i in [1, 2]:
            yield dsl.task(
                key=f"{prefix}{i}"
            ).inputs(
                i=i
            ).outputs(
                part=dsl.file("part.txt")
            ).calls("""
                #!/usr/bin/env bash
                echo "part $i of $__task_key" > $part
            """)()

    for _ in dsl.wait_for_tasks(task_a, task_b):
        # because taskA has completed, we can fetch values from it's produces clause:
        actual_x_loaded_from_completed_task = task_a.outputs.x.fetch()
        assert isinstance(actual_x_loaded_from_completed_task, int)

        for matcher1, matcher2 in dsl.wait_for_matching_tasks("task-prefix-*", "other-task-prefix-*"):
            yield dsl.task(
                key="highly-dependent-task",
                task_conf=TaskConf(
                    executer_type="process",  # manual: "slurm"
                    slurm_account="me",
                    slurm_options=[
                        f"--time={estimate_time(actual_x_loaded_from_completed_task)}"
                    ]
                )
            ).inputs(
                x=dsl.val(actual_x_loaded_from_completed_task),
                parts=matcher1.all.part.as_glob_expression(),
                other_parts=matcher2.all.part.as_glob_expression(),
                b_file=task_b.outputs.b_file
            ).outputs(
                report=dsl.file("report.txt")
            ).calls(
                write_report
            )()


def pipeline():
    return DryPipe.create_pipeline(my_dag_generator)
