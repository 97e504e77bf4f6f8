"""A pipeline mixing local tasks and Dendro jobs (docs/dendro.md, "Running drypipe tasks on
Dendro").

    prepare (local) -> shout (Dendro: textstats/upper) -> chars (Dendro: hello_world/count_characters) -> report (local)
                                                       -> stats (Dendro: textstats/stats)             -/

- `prepare` writes text.txt locally; `shout` takes it as input, so drypipe publishes it to the
  input store ($DRYPIPE_DENDRO_STORE) and passes its URL.
- `chars` and `stats` take shout's output by the URL of its Dendro job: they are submitted
  together with `shout` (with a job dependency), and start on the compute resource as soon as
  it completes.
- `stats` has output variables (lines, words, chars): its processor writes them to its output
  `output_vars`.  `report` runs locally on the downloaded outputs and variables.

Run it against a Dendro service (a local one: see docs/dendro.md) whose service
$DENDRO_SERVICE_NAME has the apps examples/dendro/textstats/app.yaml and
examples/dendro/hello_world/app.yaml, with a compute resource running them:

    export DENDRO_API_URL=http://127.0.0.1:8080 DENDRO_API_KEY=... DENDRO_SERVICE_NAME=drypipe_demo
    export DRYPIPE_DENDRO_STORE=/shared/dendro-inputs   # compute resource: --allow-input-url file:///shared/dendro-inputs/
    drypipe run -p examples.dendro_mixed:pipeline -i /tmp/dendro-mixed

Outputs: output/report/report.txt has the upper-cased text and its counts (3 lines, 9 words,
36 characters without whitespace).  A second instance completes from the Dendro cache.
`DRYPIPE_DEMO_DELAY_SEC` makes `shout` take that long (to watch jobs run, or kill the run).
"""
import os

from dry_pipe import DryPipe, TaskConf
from executors.dendro import dendro_call

SERVICE = os.environ.get("DENDRO_SERVICE_NAME", "drypipe_demo")


def dendro(app: str, processor: str) -> TaskConf:
    return TaskConf(executer_type="dendro", dendro_service=SERVICE, dendro_app=app, dendro_processor=processor,
                    required_resources={"numCpus": 1, "numGpus": 0, "memoryGb": 1, "timeSec": 300})


def dendro_mixed(dsl):
    prepare = dsl.task(
        key="prepare"
    ).outputs(
        text=dsl.file("text.txt"),
        n_lines=int
    ).calls("""
        #!/usr/bin/env bash
        printf '%s\\n' "the quick brown fox" "jumps over" "the lazy dog" > "$text"
        export n_lines=$(wc -l < "$text")
    """)()
    yield prepare

    upper = dendro("textstats", "upper")
    shout = dsl.task(
        key="shout", task_conf=upper
    ).inputs(
        input=prepare.outputs.text,
        suffix="!",
        delay_sec=float(os.environ.get("DRYPIPE_DEMO_DELAY_SEC", "0"))
    ).outputs(
        output=dsl.file("shout.txt")
    ).calls(dendro_call(upper))()
    yield shout

    count = dendro("hello_world", "count_characters")
    chars = dsl.task(
        key="chars", task_conf=count
    ).inputs(
        input=shout.outputs.output,
        include_whitespace=False
    ).outputs(
        output=dsl.file("chars.json")
    ).calls(dendro_call(count))()
    yield chars

    text_stats = dendro("textstats", "stats")
    stats = dsl.task(
        key="stats", task_conf=text_stats
    ).inputs(
        input=shout.outputs.output
    ).outputs(
        output=dsl.file("stats.json"),
        lines=int,
        words=int,
        chars=int
    ).calls(dendro_call(text_stats))()
    yield stats

    yield dsl.task(
        key="report"
    ).inputs(
        shouted=shout.outputs.output,
        chars_json=chars.outputs.output,
        lines=stats.outputs.lines,
        words=stats.outputs.words,
        n_lines=prepare.outputs.n_lines
    ).outputs(
        report=dsl.file("report.txt")
    ).calls("""
        #!/usr/bin/env bash
        {
            cat "$shouted"
            echo "lines: $lines (prepared: $n_lines)"
            echo "words: $words"
            echo "characters without whitespace: $(tr -dc 0-9 < "$chars_json")"
        } > "$report"
    """)()


def pipeline():
    return DryPipe.create_pipeline(dendro_mixed)
