"""Fixtures of the in-process scheduler tests: a Scheduler on a real instance directory in
tmp_path, its tasks run by the fake executor (tests/fake_executor.py)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drypipe import DryPipe, TaskConf, plugins
from drypipe.instance import Instance
from drypipe.scheduler import RunOptions, RunSummary, Scheduler
from tests.fake_executor import PLUGINS, FakeBackend

FAKE = TaskConf(executer_type="fake")


@pytest.fixture(autouse=True)
def fake_executors():
    """Both fake executors, registered in this process for the test only."""
    for plugin in PLUGINS:
        plugins.register(plugin)
    yield
    for plugin in PLUGINS:
        plugins.unregister(plugin.name)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


class Runs:
    """Builds Schedulers on one instance directory, as successive `drypipe run`s would."""

    def __init__(self, root: Path, backend: FakeBackend):
        self.root = root
        self.backend = backend
        self.other = FakeBackend()  # the backend of the executor "fake2"
        self.schedulers: list[Scheduler] = []
        self.events: list[tuple[str, str | None]] = []  # (key, new state) as the loop saw them, in order

    def scheduler(self, generator: Callable, **options: Any) -> Scheduler:
        options.setdefault("sleep_schedule", (0,))
        options.setdefault("lost_grace_seconds", 0)
        options.setdefault("executor_options", {"fake": self.backend, "fake2": self.other})
        pipeline = DryPipe.create_pipeline(generator, task_conf=FAKE)
        scheduler = Scheduler(pipeline, Instance(self.root), RunOptions(**options),
                              on_change=lambda key, old, new: self.events.append((key, new)))
        self.schedulers.append(scheduler)
        return scheduler

    def __call__(self, generator: Callable, **options: Any) -> RunSummary:
        return self.scheduler(generator, **options).run()

    def when(self, key: str, state: str) -> int:
        """The index in `events` of the moment `key` went to `state`."""
        return self.events.index((key, state))

    def marker(self, key: str) -> str | None:
        markers = [p.name[6:] for p in (self.root / ".drypipe" / key).glob("state.*")]
        assert len(markers) <= 1, markers
        return markers[0] if markers else None

    def log(self, key: str) -> str:
        return (self.root / ".drypipe" / key / "drypipe.log").read_text()

    def output(self, key: str, name: str) -> str:
        return (self.root / "output" / key / name).read_text()


@pytest.fixture
def run(tmp_path, backend) -> Runs:
    return Runs(tmp_path / "instance", backend)
