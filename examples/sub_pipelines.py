"""The manual's "Pipeline composition" example: two DAG generators composed as sub pipelines
with key prefixes "s_" and "o_", plus tasks that depend on tasks of both.

    drypipe run -p examples.sub_pipelines:pipeline -i /tmp/sub-pipelines

Task keys: s_a-super-task, o_do-it-1, o_do-it-2, o_do-it-3, task-dependent-on-a-super-task,
grande-finale.
Outputs: .drypipe/s_a-super-task/output_vars has {"a_variable": "7"};
.drypipe/task-dependent-on-a-super-task/output_vars has {"z": "70"};
output/grande-finale/grande-finale.txt has z and the content of every do-it file.

a-super-task sleeps 0.5 s, so the do-it tasks complete first: grande-finale's two waits are
then satisfied at different times, and `dsl.wait_for_tasks("task-dependent-on-a-super-task")`
is evaluated while that task has not been yielded yet.  The manual says the loop is then
empty; the current core raises "task 'task-dependent-on-a-super-task' was never yielded"
and aborts the run (a second `drypipe run` completes it).  See tests/test_examples.py.

Adapted from the manual: the two sub pipeline generators (imported as modules in the manual)
are defined in this module; a_func and grande_finale_func are written here; grande-finale
declares an output file so that its work can be checked.
"""
import os
import time

from dry_pipe import DryPipe


# -- the two composed pipelines -----------------------------------------------------------------

@DryPipe.python_call()
def a_super_func():
    time.sleep(0.5)  # a slow super task: the do-it tasks of the other sub pipeline finish first
    return {"a_variable": 7}


def super_duper_pipeline_dag_generator(dsl):
    yield dsl.task(
        key="a-super-task"
    ).outputs(
        a_variable=dsl.var(int)
    ).calls(
        a_super_func
    )()


def other_pipeline_dag_gen(dsl):
    for i in [1, 2, 3]:
        yield dsl.task(
            key=f"do-it-{i}"
        ).inputs(
            i=i
        ).outputs(
            a_file_defined_in_do_it_tasks=dsl.file("done.txt")
        ).calls("""
            #!/usr/bin/env bash
            echo "did it $i in $__task_key" > $a_file_defined_in_do_it_tasks
        """)()


# -- the composite ------------------------------------------------------------------------------

@DryPipe.python_call()
def a_func(y):
    return {"z": y * 10}


@DryPipe.python_call()
def grande_finale_func(z, a_pattern, finale):
    with open(finale, "w") as out:
        out.write(f"z\t{z}\n")
        for path in a_pattern():
            with open(path) as f:
                out.write(f"{os.path.basename(os.path.dirname(path))}\t{f.read().strip()}\n")


def my_composite_dag_generator(dsl):
    super_duper = dsl.sub_pipeline(super_duper_pipeline_dag_generator, "s_")
    yield super_duper

    other_sub_pipeline = dsl.sub_pipeline(other_pipeline_dag_gen, "o_")
    yield other_sub_pipeline

    for super_task in super_duper.wait_for_tasks("a-super-task"):
        v = super_task.outputs.a_variable
        yield dsl.task(
            "task-dependent-on-a-super-task"
        ).inputs(
            y=dsl.val(v)
        ).outputs(
            z=dsl.var(int)
        ).calls(
            a_func
        )()

    for matcher in other_sub_pipeline.wait_for_matching_tasks("do-it-*"):
        for task_dependent_on_a_super_task in dsl.wait_for_tasks("task-dependent-on-a-super-task"):
            yield dsl.task(
                "grande-finale"
            ).inputs(
                z=task_dependent_on_a_super_task.outputs.z,
                a_pattern=matcher.all.a_file_defined_in_do_it_tasks.as_glob_expression()
            ).outputs(
                finale=dsl.file("grande-finale.txt")  # not in the manual: a checkable result
            ).calls(
                grande_finale_func
            )()


def pipeline():
    return DryPipe.create_pipeline(my_composite_dag_generator)
