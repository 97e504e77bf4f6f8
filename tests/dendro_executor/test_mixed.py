"""examples/dendro_mixed.py against a real Dendro service and compute resource: local tasks
and Dendro jobs in one DAG, dependents submitted with their upstream, and a second instance
completed from the Dendro cache without any job running."""
from __future__ import annotations

import json

from tests.dendro_executor.conftest import drypipe, run_pipeline, state_of

SPEC = "examples.dendro_mixed:pipeline"
DENDRO_TASKS = ("shout", "chars", "stats")
SHOUTED = "THE QUICK BROWN FOX\nJUMPS OVER\nTHE LAZY DOG!\n"


def record(instance, key) -> dict:
    return json.loads((instance / ".drypipe" / key / "dendro_job").read_text())


def check_outputs(instance) -> None:
    out = instance / "output"
    assert (out / "shout" / "shout.txt").read_text() == SHOUTED
    assert json.loads((out / "chars" / "chars.json").read_text()) == {"num_characters": 36}
    assert json.loads((out / "stats" / "stats.json").read_text()) == {"lines": 3, "words": 9, "chars": 45}
    assert json.loads((instance / ".drypipe" / "stats" / "output_vars").read_text()) == {
        "lines": "3", "words": "9", "chars": "45"}
    assert (out / "report" / "report.txt").read_text() == SHOUTED + (
        "lines: 3 (prepared: 3)\nwords: 9\ncharacters without whitespace: 36\n")
    for key in ("prepare", *DENDRO_TASKS, "report"):
        assert state_of(instance, key) == "completed", key


def test_mixed_pipeline_runs_then_second_instance_completes_from_the_dendro_cache(tenant, tmp_path):
    server = tenant.server
    compute_log = tenant.start_compute()
    created_before = server.requests("createJob")

    first = tmp_path / "first"
    run_pipeline(SPEC, first, tenant.env())
    check_outputs(first)
    # One createJob per Dendro task: the dependents were submitted ahead, with their upstream,
    # and adopted (not created again) when the loop launched them.
    assert server.requests("createJob") - created_before == len(DENDRO_TASKS)
    records = {key: record(first, key) for key in DENDRO_TASKS}
    assert records["shout"]["submitted"] == "launch"
    assert records["chars"]["submitted"] == records["stats"]["submitted"] == "ahead"
    assert records["chars"]["dependencies"] == records["stats"]["dependencies"] == [records["shout"]["job_id"]]
    assert not any(r["cache_hit"] for r in records.values())
    # The local file went through the input store; the Dendro-produced one by its job's URL.
    shout_job = tenant.client().get_job(records["shout"]["job_id"])
    assert shout_job.jobDefinition.inputFiles[0].url.startswith(tenant.store.as_uri() + "/")
    chars_job = tenant.client().get_job(records["chars"]["job_id"])
    assert chars_job.jobDefinition.inputFiles[0].url == records["shout"]["outputs"]["output"]
    # Console output of each job is in the task's out.log; timing from the job's states.
    assert "upper-cased" in (first / ".drypipe" / "shout" / "out.log").read_text()
    assert "state.completed dendro job" in (first / ".drypipe" / "shout" / "drypipe.log").read_text()
    jobs = server.jobs(tenant.service)
    assert len(jobs) == 3 and all(status == "completed" for _, status, _ in jobs)
    assert tenant.claimed() == 3, compute_log.read_text()

    # A second instance (another user of the service could do the same): same definitions,
    # so the service returns the same jobs; nothing runs on the compute resource.
    second = tmp_path / "second"
    created_before = server.requests("createJob")
    run_pipeline(SPEC, second, tenant.env())
    check_outputs(second)
    assert server.requests("createJob") - created_before == len(DENDRO_TASKS)
    assert server.jobs(tenant.service) == jobs  # no new job, no status change
    assert tenant.claimed() == 3
    for key in DENDRO_TASKS:
        again = record(second, key)
        assert again["job_id"] == records[key]["job_id"]
        assert again["cache_hit"] is True
        why = drypipe("why", "-p", SPEC, "-i", str(second), key, env=tenant.env())
        assert why.returncode == 0, why.stderr
        assert f"(from Dendro cache, job {again['job_id']})" in why.stdout, why.stdout
    why = drypipe("why", "-p", SPEC, "-i", str(first), "shout", env=tenant.env())
    assert "up to date:" in why.stdout and "Dendro cache" not in why.stdout, why.stdout

    # Running a completed instance again submits nothing.
    created_before = server.requests("createJob")
    run_pipeline(SPEC, first, tenant.env())
    assert server.requests("createJob") == created_before
