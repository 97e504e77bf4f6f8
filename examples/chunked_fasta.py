"""The manual's "DAG driven by task execution" example: prepare-chunks splits chimp.fasta
into a fileset of work-chunk.<n>.fasta files; once it has completed, the generator yields
one task-for-chunk.<n> per chunk; once all of those have completed, analyze-all-work-pieces
reads every chunk's results.json through a glob expression.

chimp.fasta is an input of the instance: seed the instance dir with it first.

    mkdir -p /tmp/chimp && cp examples/data/chimp.fasta /tmp/chimp/
    drypipe run -p examples.chunked_fasta:pipeline -i /tmp/chimp

Outputs: output/prepare-chunks/work-chunk.{0,1,2}.fasta (3, 3 and 1 sequences of the 7),
output/task-for-chunk.<n>/results.json ({"sequences": .., "bases": ..}),
output/analyze-all-work-pieces/final-result-file (one line per chunk).

Adapted from the manual: the chunk files are named work-chunk.<n>.fasta (the manual writes
work-chunk-<n>.fasta, which neither matches the fileset 'work-chunk.*.fasta' nor splits on
"." into a chunk number) and are opened for writing; the chunk tasks write the results.json
they declare (the manual's snippet only echoes); analyze_all writes to the open file handle
(not to the path string); get_next_chunk_from, write_chunk_into and read_from are written
here.
"""
import json
import os

from dry_pipe import DryPipe

SEQUENCES_PER_CHUNK = 3


def get_next_chunk_from(lines):
    """Yields lists of at most SEQUENCES_PER_CHUNK fasta records (each a list of lines)."""
    records = []
    for line in lines:
        if line.startswith(">"):
            records.append([line])
        elif records and line.strip():
            records[-1].append(line)
    for start in range(0, len(records), SEQUENCES_PER_CHUNK):
        yield records[start:start + SEQUENCES_PER_CHUNK]


def write_chunk_into(records, chunk_file):
    for record in records:
        chunk_file.writelines(record)


def read_from(chunk_results_file):
    with open(chunk_results_file) as f:
        return json.load(f)


@DryPipe.python_call()
def create_n_chunks_of_work(input_fasta, __task_output_dir):
    with open(input_fasta) as f:
        c = 0
        for w in get_next_chunk_from(f.readlines()):
            with open(os.path.join(__task_output_dir, f"work-chunk.{c}.fasta"), "w") as chunk_file:
                write_chunk_into(w, chunk_file)
            c += 1


def dag_gen(dsl):
    prepare_chunks = dsl.task(
        key=f"prepare-chunks"
    ).inputs(
        input_fasta=dsl.file('chimp.fasta')
    ).outputs(
        work_chunks=dsl.fileset('work-chunk.*.fasta')
    ).calls(
        create_n_chunks_of_work
    )()

    yield prepare_chunks

    for _ in dsl.wait_for_tasks(prepare_chunks):
        # dsl.wait_for_tasks ensures that we can only get here when prepare_chunks
        # has successfully completed
        for work_chunk_file_handle in prepare_chunks.outputs.work_chunks.fetch():
            # extract number from file name, i.e.
            # work-chunk.3.fasta -> 3
            chunk_number = work_chunk_file_handle.basename().split(".")[1]

            yield dsl.task(
                key=f"task-for-chunk.{chunk_number}"
            ).inputs(
                f=work_chunk_file_handle
            ).outputs(
                results_file=dsl.file("results.json")
            ).calls("""
                #!/usr/bin/env bash
                echo "work on $f"
                sequences=$(grep -c '^>' $f)
                bases=$(grep -v '^>' $f | tr -d '\\n' | wc -c)
                echo "{\\"sequences\\": $sequences, \\"bases\\": $bases}" > $results_file
            """)()

    # wait_for_matching_tasks("task-for-chunk.*") ensures that we can only get here when ALL tasks
    # matching task-for-chunk.* have successfully completed
    for matcher in dsl.wait_for_matching_tasks("task-for-chunk.*"):
        yield dsl.task(
            key="analyze-all-work-pieces"
        ).inputs(
            # pattern_for_all_chunks is $__pipeline_instance_dir/output/task-for-chunk.*/results.json
            pattern_for_all_chunks=matcher.all.results_file.as_glob_expression()
        ).outputs(
            a_result_file=dsl.file("final-result-file")
        ).calls("""
            #!/usr/bin/env bash
            # the two following commands are equivalent:
            ls $__pipeline_instance_dir/output/task-for-chunk.*/results.json
            ls $pattern_for_all_chunks
            # the second is way more DRY (Don't Repeat Yourself) !
            echo "work on $f"
        """).calls(
            analyze_all
        )()


@DryPipe.python_call()
def analyze_all(pattern_for_all_chunks, a_result_file):
    with open(a_result_file, "w") as _a_result_file:
        # Because we are in a Python Call, we can iterate over pattern_for_all_chunks().
        # It is equivalent to calling :
        #    glob.glob(os.path.expandvars("$__pipeline_instance_dir/output/task-for-chunk.*/results.json"))
        # but way more DRY !
        for chunk_file in pattern_for_all_chunks():
            some_results = read_from(chunk_file)
            _a_result_file.write(f"got {json.dumps(some_results, sort_keys=True)} from chunk {chunk_file}\n")


def pipeline():
    return DryPipe.create_pipeline(dag_gen)
