"""A stand-in for `docker`, for tests that run the official Dendro compute client unmodified.

It takes the two commands the compute client gives (`docker pull IMAGE` and
`docker run -v HOST:CONTAINER --workdir DIR -e K=V ... IMAGE CMD...`) and runs CMD as a
local process instead of in a container: container paths under each `-v` mount, and under
`/app` for the image (mapped by STANDIN_DOCKER_IMAGES, a JSON object image -> host folder),
are rewritten to their host paths in the environment, the arguments and the `/tmp/run.sh`
script; the environment is only the `-e` variables plus STANDIN_DOCKER_PATH as PATH, as a
container would have.  Every invocation is appended to STANDIN_DOCKER_LOG.
"""
from __future__ import annotations

import json
import os
import re
import sys


def main(argv: list[str]) -> int:
    with open(os.environ["STANDIN_DOCKER_LOG"], "a") as log:
        log.write(json.dumps(argv) + "\n")
    if argv[:1] == ["pull"]:
        return 0  # the image is a folder on this machine: nothing to pull
    if argv[:1] != ["run"]:
        print(f"container stand-in: unsupported command {argv[:1]}", file=sys.stderr)
        return 125
    mounts: list[tuple[str, str]] = []
    env: dict[str, str] = {}
    workdir = "/"
    args = argv[1:]
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag in ("-v", "--volume"):
            host, container = args.pop(0).split(":")[:2]
            mounts.append((container, host))
        elif flag in ("-e", "--env"):
            key, _, value = args.pop(0).partition("=")
            env[key] = value
        elif flag in ("-w", "--workdir"):
            workdir = args.pop(0)
        elif flag in ("--cpus", "--gpus", "--network", "--name"):
            args.pop(0)
        elif flag not in ("-d", "--rm", "-i", "-t", "-it"):
            print(f"container stand-in: unsupported option {flag}", file=sys.stderr)
            return 125
    image, command = args[0], args[1:]
    images = json.loads(os.environ.get("STANDIN_DOCKER_IMAGES", "{}"))
    if image not in images:
        print(f"container stand-in: no image {image}", file=sys.stderr)
        return 125
    mounts.append(("/app", images[image]))
    hosts = dict(mounts)
    # A container path starts a word (not inside a longer path) and is a whole prefix; one
    # pass, so host paths already substituted are not rewritten again.
    pattern = re.compile("(?<![\\w./-])(" + "|".join(re.escape(c) for c in sorted(hosts, key=len, reverse=True))
                         + ")(?=/|$|[^\\w.-])")

    def host_path(text: str) -> str:
        return pattern.sub(lambda m: hosts[m.group(1)], text)

    env = {k: host_path(v) for k, v in env.items()}
    env["PATH"] = os.environ["STANDIN_DOCKER_PATH"]
    env["HOME"] = host_path("/tmp")
    command = [host_path(c) for c in command]
    for i, arg in enumerate(command):
        if arg.endswith(".sh") and os.path.isfile(arg):  # the client's run.sh names /tmp paths
            rewritten = arg[:-3] + ".host.sh"
            with open(arg) as src, open(rewritten, "w") as dst:
                dst.write(host_path(src.read()))
            command[i] = rewritten
    os.makedirs(host_path(workdir), exist_ok=True)
    os.chdir(host_path(workdir))
    os.execvpe(command[0], command, env)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
