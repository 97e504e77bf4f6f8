"""A multi-step task (the manual shows one in the chunked fasta example: a bash snippet
followed by a python call): several .calls(...) run in order in one task, and each step sees
the output variables set by the steps before it.

    drypipe run -p examples.multi_step:pipeline -i /tmp/multi-step

Steps of task "count-words":
  0 (bash)   counts lines and words of the input, exports line_count and word_count
  1 (python) receives line_count/word_count parsed as int, returns words_per_line (float)
  2 (bash)   reads $line_count, $word_count and $words_per_line, writes report.txt
  3 (python) reads report.txt and words_per_line, returns the summary string
Outputs: output/count-words/report.txt; .drypipe/count-words/output_vars has
{"line_count": "3", "word_count": "10", "words_per_line": "3.3333333333333335",
 "summary": "3 lines, 10 words"}.

This module imports `from drypipe import DryPipe` (the native package name) to show that it
works like the manual's `from dry_pipe import DryPipe`.
"""
import os

from drypipe import DryPipe

POEM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "poem.txt")


@DryPipe.python_call()
def per_line(line_count, word_count):
    assert isinstance(line_count, int) and isinstance(word_count, int)
    return {"words_per_line": word_count / line_count}


@DryPipe.python_call()
def summarize(report, words_per_line, line_count, word_count):
    with open(report) as f:
        assert f"words_per_line={words_per_line}" in f.read()
    return {"summary": f"{line_count} lines, {word_count} words"}


def my_dag_generator(dsl):
    yield dsl.task(
        key="count-words"
    ).inputs(
        text=dsl.file(POEM)
    ).outputs(
        line_count=int,
        word_count=int,
        words_per_line=float,
        summary=str,
        report=dsl.file("report.txt")
    ).calls("""
        #!/usr/bin/env bash
        export line_count=$(wc -l < $text)
        export word_count=$(wc -w < $text)
    """).calls(
        per_line
    ).calls("""
        #!/usr/bin/env bash
        echo "lines=$line_count" > $report
        echo "words=$word_count" >> $report
        echo "words_per_line=$words_per_line" >> $report
    """).calls(
        summarize
    )()


def pipeline():
    return DryPipe.create_pipeline(my_dag_generator)
