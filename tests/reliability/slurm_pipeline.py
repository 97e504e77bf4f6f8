"""A small Slurm pipeline for the slurmctld-restart fault: four 6 s jobs (one job array)
and a dependent of each, submitted after the restart.  Every task logs its key to runs.log."""
from dry_pipe import TaskConf

SLURM = TaskConf(executer_type="slurm")
LOG = 'echo "$__task_key" >> "$__pipeline_instance_dir/runs.log"\n'


def gen(dsl):
    for i in range(4):
        long = dsl.task(key=f"long.{i}", task_conf=SLURM).outputs(f=dsl.file("f.txt")).calls(
            LOG + 'sleep 6; echo "$__task_key" > "$f"\n')()
        yield long
        yield dsl.task(key=f"after.{i}", task_conf=SLURM).inputs(long.outputs.f).outputs(
            g=dsl.file("g.txt")).calls(LOG + 'cat "$f" > "$g"\n')()
