"""out.log keeps every run of a task, each rerun below a line that says where it started."""
import re

from tests.helpers import drypipe, state_of, write_module

PIPELINE = '''
from dry_pipe import DryPipe

def gen(dsl):
    yield dsl.task(key="flaky").calls("""
        #!/usr/bin/env bash
        echo "first step ran"
    """).calls("""
        #!/usr/bin/env bash
        echo "second step ran"
        test -e $__pipeline_instance_dir/fixed || { echo "not fixed yet"; exit 1; }
    """)()

def pipeline():
    return DryPipe.create_pipeline(gen)
'''

SEPARATOR = re.compile(r"^===== run from step (\d+) \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\) =====$")


def test_a_restarted_task_appends_its_run_below_a_separator(tmp_path):
    write_module(tmp_path, "flaky_pipeline", PIPELINE)
    instance = tmp_path / "i"
    assert drypipe("run", "-p", "flaky_pipeline:pipeline", "-i", str(instance), cwd=tmp_path).returncode == 1
    assert state_of(instance, "flaky") == "failed.1"
    out_log = instance / ".drypipe/flaky/out.log"
    first = out_log.read_text().splitlines()
    assert not any(SEPARATOR.match(line) for line in first), first  # a first run has none

    (instance / "fixed").touch()
    drypipe("run", "-p", "flaky_pipeline:pipeline", "-i", str(instance), "--restart-failed", cwd=tmp_path,
            check=True)
    assert state_of(instance, "flaky") == "completed"
    lines = out_log.read_text().splitlines()
    assert lines[:len(first)] == first  # nothing of the failed run is lost
    separator = SEPARATOR.match(lines[len(first)])
    assert separator and separator.group(1) == "1", lines  # resumed where failed.1 says, the second step
    assert lines[len(first) + 1:] == ["second step ran"]
