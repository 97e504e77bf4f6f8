"""Time one evaluation of a pipeline generator, in process, without touching any file.

    python bench/evaluate_dag.py MODULE:FUNCTION INSTANCE_DIR

Prints JSON: the number of tasks yielded, the seconds `drypipe.dsl.evaluate` took, and the
peak RSS of this process.  This is the "generator evaluation" part of a DAG build, the part
that `drypipe run` repeats whenever a completion can grow the DAG.
"""
from __future__ import annotations

import gc
import json
import resource
import sys
import time

from drypipe.dsl import evaluate, load_pipeline


def main() -> None:
    spec, instance_dir = sys.argv[1], sys.argv[2]
    pipeline = load_pipeline(spec)
    gc.collect()
    started = time.perf_counter()
    evaluation = evaluate(pipeline, instance_dir, lambda key: False)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "tasks": len(evaluation.tasks),
        "seconds": seconds,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
