"""Pipelines and helpers shared by the tests of what users see (tests/ux)."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.helpers import write_module

# One task fails (after the others have started), one waits on it forever, four complete.
FAILING = '''
def gen(dsl):
    bad = dsl.task(key="bad").outputs(x=int).calls("""
    sleep 0.6
    echo the reason it broke >&2
    printf '\\\\033[31mcolored tool output\\\\033[0m\\\\n'
    exit 3
    """)()
    yield bad
    yield dsl.task(key="after").inputs(bad.outputs.x).calls("true\\n")()
    for i in range(4):
        yield dsl.task(key=f"ok.{i}").calls("sleep 0.2\\n")()
'''

# a fails; b waits for it, c for b: what a wait on a failure looks like two steps down.
FAILING_CHAIN = '''
def gen(dsl):
    a = dsl.task(key="a").outputs(n=int).calls("exit 3\\n")()
    yield a
    b = dsl.task(key="b").inputs(a.outputs.n).outputs(m=int).calls("export m=$n\\n")()
    yield b
    yield dsl.task(key="c").inputs(b.outputs.m).calls("true\\n")()
'''

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")


def failing_pipeline(directory: Path) -> str:
    """Write the failing pipeline module into `directory`; return its generator spec."""
    write_module(directory, "failing", FAILING)
    return "failing:gen"


def control_characters(text: str) -> set[str]:
    return {c for c in text if ord(c) < 32 and c not in "\n\t"} | ({"\x7f"} & set(text))


def require_program(name: str) -> str:
    """The program's path; skip the test without it, except on CI where it must be installed."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (tests/services/install.sh installs it on CI)")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return path
