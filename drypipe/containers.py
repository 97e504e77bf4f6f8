"""Steps in containers: which runtime runs them, and what is bind-mounted into them.

The command line of each runtime is built by the task runtime (resources/task-lib.sh,
`__container_command`) when the step starts, from the two things generated here into
task-env.sh: the runtime's name and the host paths the step needs to see (at the same path
inside the container).  `./task container-command N` prints the command of step N."""
from __future__ import annotations

import os
from typing import Any

from drypipe.errors import UserError

# apptainer and singularity share a command line (singularity is apptainer's former name);
# docker takes podman's, plus --user (its daemon would otherwise write files as root).
RUNTIMES = ("apptainer", "singularity", "podman", "docker")
DEFAULT_RUNTIME = "apptainer"
RUNTIME_ENV = "DRYPIPE_CONTAINER_RUNTIME"


def check_runtime(runtime: Any, what: str) -> None:
    """Refuse a runtime that is not one of RUNTIMES: "<what> ... is not one of ..."."""
    if runtime not in RUNTIMES:
        raise UserError(f"{what} {runtime!r} is not a container runtime drypipe knows "
                        f"(one of: {', '.join(RUNTIMES)})")


def resolve_runtime(task: str, chosen: str | None) -> str:
    """The runtime of a task's container steps: its TaskConf's, else $DRYPIPE_CONTAINER_RUNTIME,
    else apptainer.  Refused, naming the `task` ("task 'k' (file:line)"), when unknown."""
    if chosen is not None:
        check_runtime(chosen, f"{task}: TaskConf.container_runtime")
        return chosen
    from_env = os.environ.get(RUNTIME_ENV) or DEFAULT_RUNTIME
    check_runtime(from_env, f"{task}: ${RUNTIME_ENV}")
    return from_env


def has_container(doc: dict[str, Any]) -> bool:
    return any(step.get("container") for step in doc["steps"])


def bind_paths(doc: dict[str, Any]) -> list[str]:
    """The host paths a container step needs outside the instance directory (which the task
    runtime always binds): the pipeline's code and the task's input files given by absolute
    path.  Outputs of upstream tasks, and what globs match, are in the instance directory."""
    paths = [doc["pipeline_code_dir"]] if doc.get("pipeline_code_dir") else []
    paths += [spec["path"] for spec in doc["inputs"] if spec["kind"] == "file" and os.path.isabs(spec["path"])]
    return list(dict.fromkeys(paths))
