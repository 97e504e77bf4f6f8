"""Polling cost: the executor asks the service about all in-flight Dendro jobs with one request
per cycle (the orchestrator runs in-process here, so its requests can be counted)."""
from __future__ import annotations

from collections import Counter

from dendro_bridge.api import ApiTransport
from drypipe import DryPipe, TaskConf
from drypipe.instance import Instance
from drypipe.scheduler import RunOptions, Scheduler
from executors.dendro import DendroExecutor, dendro_call


def test_one_request_per_poll_cycle_for_all_in_flight_jobs(tenant, tmp_path, monkeypatch):
    tenant.start_compute()
    for name, value in tenant.env().items():
        if name.startswith(("DENDRO_", "DRYPIPE_DENDRO_")):
            monkeypatch.setenv(name, value)
    (tmp_path / "text.txt").write_text("some text\n")
    conf = TaskConf(executer_type="dendro", dendro_service=tenant.service, dendro_app="textstats",
                    dendro_processor="upper", required_resources={"memoryGb": 1, "timeSec": 60})

    def gen(dsl):
        for i in range(4):
            yield dsl.task(key=f"upper-{i}", task_conf=conf).inputs(
                input=dsl.file(str(tmp_path / "text.txt")), suffix=f"-{i}", delay_sec=1.0).outputs(
                output=dsl.file("upper.txt")).calls(dendro_call(conf))()

    requests: Counter = Counter()
    post = ApiTransport.post

    def counting_post(self, endpoint, body, **kwargs):
        requests[endpoint] += 1
        return post(self, endpoint, body, **kwargs)

    polls: list[tuple[int, Counter]] = []
    poll = DendroExecutor.poll

    def recording_poll(self, tasks):
        before = Counter(requests)
        result = poll(self, tasks)
        polls.append((len(tasks), requests - before))
        return result

    monkeypatch.setattr(ApiTransport, "post", counting_post)
    monkeypatch.setattr(DendroExecutor, "poll", recording_poll)
    options = RunOptions(sleep_schedule=(0, 0.1, 0.2), max_local_jobs=4)
    summary = Scheduler(DryPipe.create_pipeline(gen), Instance(tmp_path / "instance"), options).run()

    assert summary.succeeded, summary.states
    for i in range(4):
        assert (tmp_path / "instance" / "output" / f"upper-{i}" / "upper.txt").read_text() == f"SOME TEXT-{i}\n"
    assert requests["createJob"] == 4
    assert max(n for n, _ in polls) == 4  # all four in flight together ...
    assert all(made == Counter(findJobs=1) for _, made in polls), polls  # ... one request per cycle
