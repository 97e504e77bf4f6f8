"""Find the processes a test server left behind, by what ties them to THAT server.

Used by slurm.sh and sshd.sh on stop: job processes and ssh sessions can outlive the
daemon (slurmstepd outlives slurmd by design, sshd sessions outlive the listener, and a
process whose parent died is re-parented to init). We never kill by name; a process is
ours only if it matches a rule built from this server's own state (its config path in
the environment, its port in SSH_CONNECTION, its state directory as cwd, ...).

    python3 -S procs.py [--children-of PID] [--rule COND [COND...]]...

A rule matches when all its conditions hold; a process is printed if any rule matches
it, or it descends from a matched process or from --children-of PID (PID itself is not
printed). This process and its ancestors are never printed. Conditions:

    env:NAME=VALUE        the environment has exactly this entry
    envkey:NAME           the environment has NAME
    envsuffix:NAME=TAIL   NAME's value ends with TAIL
    exe:PATH              /proc/PID/exe is PATH (give the resolved path)
    uid:N                 real uid is N
    cwd-under:DIR         the working directory is DIR or below it
    cmdline-has:TEXT      the command line (args joined by spaces) contains TEXT

Prints the pids on one line, space separated (nothing if none). Standard library only.
"""

from __future__ import annotations

import argparse
import os


def _read(path: str, mode: str = "r"):
    with open(path, mode) as f:
        return f.read()


class Proc:
    def __init__(self, pid: int):
        self.pid = pid
        stat = _read(f"/proc/{pid}/stat")
        self.ppid = int(stat.rsplit(")", 1)[1].split()[1])
        self._env: list[bytes] | None = None

    @property
    def env(self) -> list[bytes]:
        if self._env is None:
            try:
                self._env = _read(f"/proc/{self.pid}/environ", "rb").split(b"\0")
            except OSError:
                self._env = []
        return self._env

    def uid(self) -> int | None:
        try:
            for line in _read(f"/proc/{self.pid}/status").splitlines():
                if line.startswith("Uid:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return None

    def link(self, name: str) -> str | None:
        try:
            return os.readlink(f"/proc/{self.pid}/{name}")
        except OSError:
            return None

    def cmdline(self) -> str:
        try:
            return _read(f"/proc/{self.pid}/cmdline", "rb").replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            return ""

    def holds(self, cond: str) -> bool:
        kind, _, arg = cond.partition(":")
        if kind == "env":
            return arg.encode() in self.env
        if kind == "envkey":
            return any(e.startswith(arg.encode() + b"=") for e in self.env)
        if kind == "envsuffix":
            name, _, tail = arg.partition("=")
            return any(e.startswith(name.encode() + b"=") and e.endswith(tail.encode())
                       for e in self.env)
        if kind == "exe":
            return self.link("exe") == arg
        if kind == "uid":
            return self.uid() == int(arg)
        if kind == "cwd-under":
            cwd = self.link("cwd")
            return cwd is not None and (cwd == arg or cwd.startswith(arg.rstrip("/") + "/"))
        if kind == "cmdline-has":
            return arg in self.cmdline()
        raise SystemExit(f"procs.py: unknown condition {cond!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--children-of", type=int)
    ap.add_argument("--rule", nargs="+", action="append", default=[])
    args = ap.parse_args()

    procs: dict[int, Proc] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                procs[int(d)] = Proc(int(d))
            except (OSError, IndexError, ValueError):
                pass  # exited meanwhile

    keep = {p.pid for p in procs.values()
            if any(all(p.holds(c) for c in rule) for rule in args.rule)}
    if args.children_of:
        keep.add(args.children_of)
    while True:
        new = {p.pid for p in procs.values() if p.ppid in keep and p.pid not in keep}
        if not new:
            break
        keep |= new
    keep.discard(args.children_of)
    pid = os.getpid()
    while pid > 1:  # never ourselves or whoever called us
        keep.discard(pid)
        pid = procs[pid].ppid if pid in procs else 1
    print(" ".join(map(str, sorted(keep))))


if __name__ == "__main__":
    main()
