"""The files and directories a run creates under a directory, from an strace of it.

A run is traced with STRACE_ARGS (`strace -ff -ttt -z -y -o PREFIX`: one file per process,
each call with its time, only the calls that succeeded, file descriptors shown with their
paths).  `created_files` replays the calls of every process in time order over a map of names
to files: an open with O_CREAT (or creat) of a name that is not there, a mkdir or a symlink
makes a new file; a rename moves a name, a link adds one (no new file: a temporary renamed
into place, or a state marker moved by link + unlink, is one file); unlink and rmdir remove a
name.  So each file or directory is counted once, however many names it had, temporaries
that were deleted included.  A path given relative to the working directory is resolved
against the process's own, followed through chdir/fchdir and inherited at fork.
"""
from __future__ import annotations

import heapq
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

# The calls that create, move or remove a name, the ones that move the working directory, and
# the forks that hand it down.  A regex: a call the architecture lacks (open on arm64) is no error.
STRACE_ARGS = ["-ff", "-ttt", "-z", "-y", "-qq", "-e",
               "trace=/^(open|openat|openat2|creat|mkdir(at)?|link(at)?|symlink(at)?|rename|renameat2?"
               "|unlink(at)?|rmdir|f?chdir|clone3?|v?fork)$"]

_CALL = re.compile(r"^(\d+\.\d+) (\w+)\((.*)\)\s+= (\S+)")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\{[^}]*\}|[^,]+')
_FD = re.compile(r"^(AT_FDCWD|-?\d+)(?:<(.*)>)?$")
# The names a call takes: (index of the directory fd or None for the working directory, index of the name)
_NAMES = {
    "open": [(None, 0)], "creat": [(None, 0)], "openat": [(0, 1)], "openat2": [(0, 1)],
    "mkdir": [(None, 0)], "mkdirat": [(0, 1)], "symlink": [(None, 1)], "symlinkat": [(1, 2)],
    "link": [(None, 0), (None, 1)], "linkat": [(0, 1), (2, 3)],
    "rename": [(None, 0), (None, 1)], "renameat": [(0, 1), (2, 3)], "renameat2": [(0, 1), (2, 3)],
    "unlink": [(None, 0)], "unlinkat": [(0, 1)], "rmdir": [(None, 0)],
}
_OPENS = {"open", "openat", "openat2", "creat"}
_NEW = {"mkdir", "mkdirat", "symlink", "symlinkat"}
_MOVES = {"rename", "renameat", "renameat2"}
_LINKS = {"link", "linkat"}
_REMOVES = {"unlink", "unlinkat", "rmdir"}
_FORKS = {"clone", "clone3", "fork", "vfork"}


def _unquote(token: str) -> str:
    return token[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")


def _dir_of(token: str, cwd: str) -> str | None:
    m = _FD.match(token)
    if m is None:
        return None
    return m.group(2) or (cwd if m.group(1) == "AT_FDCWD" else None)


Event = tuple[float, str, list[str], str]  # (time, call, absolute names, arguments)


def _events(lines: Iterable[str], cwd: str, children: dict[int, str]) -> Iterator[Event]:
    """One process's calls in its order, names made absolute."""
    for line in lines:
        m = _CALL.match(line)
        if m is None:
            continue
        stamp, call, args, result = m.groups()
        tokens = [t.strip() for t in _TOKEN.findall(args)]
        fd_cwd = _FD.match(tokens[0]) if tokens else None
        if fd_cwd and fd_cwd.group(1) == "AT_FDCWD" and fd_cwd.group(2):
            cwd = fd_cwd.group(2)  # strace -y shows the working directory: trust it over our tracking
        if call in _FORKS:
            if result.isdigit():
                children[int(result)] = cwd
        elif call == "chdir":
            cwd = os.path.normpath(os.path.join(cwd, _unquote(tokens[0])))
        elif call == "fchdir":
            cwd = _dir_of(tokens[0], cwd) or cwd
        elif call in _NAMES:
            if call in _OPENS and ("O_CREAT" not in args and call != "creat" or "O_TMPFILE" in args):
                continue
            names = []
            for dir_index, name_index in _NAMES[call]:
                base = cwd if dir_index is None else _dir_of(tokens[dir_index], cwd)
                if base is None or name_index >= len(tokens) or not tokens[name_index].startswith('"'):
                    break
                names.append(os.path.normpath(os.path.join(base, _unquote(tokens[name_index]))))
            if len(names) == len(_NAMES[call]):
                yield float(stamp), call, names, args


def _process_events(prefix: Path, start_cwd: str) -> list[list[Event]]:
    """The events of every traced process (a parent is read before its children: their
    starting directory is its own at the fork)."""
    traces = {int(p.name.rsplit(".", 1)[1]): p for p in prefix.parent.glob(prefix.name + ".*")
              if p.name.rsplit(".", 1)[1].isdigit()}
    children: dict[int, str] = {}
    pending = sorted(set(traces) - _forked(traces.values()))
    cwds = {pid: start_cwd for pid in pending}
    per_process = []
    while pending:
        pid = pending.pop()
        with open(traces[pid], errors="replace") as lines:
            per_process.append(list(_events(lines, cwds[pid], children)))
        for child, cwd in list(children.items()):
            if child in traces and child not in cwds:
                cwds[child] = cwd
                pending.append(child)
    return per_process


def created_files(prefix: Path, start_cwd: str) -> list[str]:
    """Each file or directory the traced processes created, by the name it was created under."""
    names: dict[str, int] = {}  # a name there now -> its file
    created: list[str] = []
    for _, call, paths, _args in heapq.merge(*_process_events(prefix, start_cwd), key=lambda e: e[0]):
        if call in _OPENS or call in _NEW:
            if paths[0] not in names or call in _NEW:  # an O_CREAT open of an existing name opens it
                names[paths[0]] = len(created)
                created.append(paths[0])
        elif call in _MOVES:
            file = names.pop(paths[0], None)
            if file is not None:
                names[paths[1]] = file
        elif call in _LINKS:
            if paths[0] in names:
                names[paths[1]] = names[paths[0]]
        elif call in _REMOVES:
            names.pop(paths[0], None)
    return created


def _forked(paths: Iterable[Path]) -> set[int]:
    pids = set()
    for path in paths:
        with open(path, errors="replace") as lines:
            for line in lines:
                m = _CALL.match(line)
                if m and m.group(2) in _FORKS and m.group(4).isdigit():
                    pids.add(int(m.group(4)))
    return pids


def census(created: list[str], root: Path, keys: set[str]) -> dict[str, Any]:
    """The files and directories created under `root`, split into those of a task (under
    .drypipe/<key>/ or output/<key>/, the two directories included) and the instance-wide rest;
    each with a breakdown by the name it was created under (key as <key>, temporary names collapsed)."""
    root_text = str(root)
    per_task: Counter[str] = Counter()
    instance: Counter[str] = Counter()
    for path in created:
        if not path.startswith(root_text + os.sep):
            continue
        parts = os.path.relpath(path, root_text).split(os.sep)
        if len(parts) >= 2 and parts[0] in (".drypipe", "output") and parts[1] in keys:
            per_task[os.sep.join([parts[0], "<key>", *map(_pattern, parts[2:])])] += 1
        else:
            instance[os.sep.join(map(_pattern, parts))] += 1
    return {"files": sum(per_task.values()) + sum(instance.values()), "task_files": sum(per_task.values()),
            "instance_files": sum(instance.values()),
            "per_task": dict(sorted(per_task.items())), "instance": dict(sorted(instance.items()))}


def _pattern(name: str) -> str:
    """`.zo_11gx1.tmp` -> `.<random>.tmp` (mkstemp's 8 characters), pids and times -> <n>."""
    name = re.sub(r"(?<=^\.)[a-z0-9_]{8}(?=\.tmp$)", "<random>", name)
    return re.sub(r"\d{3,}", "<n>", name)
