"""A 300-task pipeline with a dynamic part, for the crash campaign.  Every task appends its
key to runs.log when it starts, so a task run twice shows up twice."""

N_CHUNKS = 100
N_INDEPENDENT = 98

LOG = 'echo "$__task_key" >> "$__pipeline_instance_dir/runs.log"\n'


def gen(dsl):
    split = dsl.task(key="split").outputs(chunks=dsl.fileset("chunk.*.txt")).calls(LOG + f"""
    for i in $(seq 1 {N_CHUNKS}); do echo "chunk $i" > "$__task_output_dir/chunk.$i.txt"; done
    """)()
    yield split
    for j in range(N_INDEPENDENT):
        yield dsl.task(key=f"ind.{j}").inputs(j=j).outputs(o=dsl.file("o.txt")).calls(
            LOG + 'sleep 0.0$((j % 5)); echo "independent $j" > $o\n')()
    for _ in dsl.wait_for_tasks(split):
        for handle in split.outputs.chunks.fetch():
            n = handle.basename().split(".")[1]
            work = dsl.task(key=f"work.{n}").inputs(chunk=handle).outputs(r=dsl.file("r.txt"), size=int).calls(
                LOG + 'sleep 0.1; tr a-z A-Z < "$chunk" > "$r"; export size=$(wc -c < "$r")\n')()
            yield work
            yield dsl.task(key=f"post.{n}").inputs(work.outputs.r, work.outputs.size).outputs(p=dsl.file("p.txt")).calls(
                LOG + 'echo "$size $(cat $r)" > "$p"\n')()
    for matcher in dsl.wait_for_matching_tasks("post.*"):
        yield dsl.task(key="gather").inputs(all_p=matcher.all.p.as_glob_expression()).outputs(
            total=dsl.file("total.txt")).calls(LOG + 'cat $(ls $all_p | sort -V) > "$total"\n')()
