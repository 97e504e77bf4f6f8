"""The pipeline instance directory: its layout, the orchestrator lock, and atomic file writes."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from drypipe.errors import UserError
from drypipe.keys import check_task_key

if TYPE_CHECKING:  # filelock is imported when a lock is taken: task runtimes on compute nodes need only the stdlib
    from filelock import FileLock

DRYPIPE_DIR = ".drypipe"
OUTPUT_DIR = "output"


class Instance:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(os.path.abspath(root))
        self.drypipe_dir = self.root / DRYPIPE_DIR
        self._lock: FileLock | None = None

    def control_dir(self, key: str) -> Path:
        return self.drypipe_dir / key

    def output_dir(self, key: str) -> Path:
        return self.root / OUTPUT_DIR / key

    def create(self) -> None:
        self.drypipe_dir.mkdir(parents=True, exist_ok=True)
        (self.root / OUTPUT_DIR).mkdir(exist_ok=True)

    def task_keys(self) -> list[str]:
        """Keys of every task with a control dir (one listdir of .drypipe)."""
        try:
            with os.scandir(self.drypipe_dir) as it:
                return [e.name for e in it if e.is_dir() and not e.name.startswith(".")]
        except FileNotFoundError:
            return []

    def existing_control_dir(self, key: str) -> Path:
        """The control dir of an existing task, or a UserError naming the key."""
        check_task_key(key)
        path = self.control_dir(key)
        if not (path / "task").exists():
            raise UserError(f"no task {key!r} in pipeline instance {self.root}")
        return path

    def lock(self) -> None:
        """Refuse to drive an instance that another orchestrator drives.  Taken before
        anything in the instance is read; creates nothing but .drypipe/ and the lock."""
        from filelock import FileLock, Timeout

        self.drypipe_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.drypipe_dir / ".orchestrator.lock"
        pid_path = self.drypipe_dir / ".orchestrator.pid"
        self._lock = FileLock(str(lock_path))
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            holder = pid_path.read_text().strip() if pid_path.exists() else "unknown"
            raise UserError(
                f"pipeline instance {self.root} is already driven by another drypipe run (pid {holder})"
            ) from None
        write_atomic(pid_path, f"{os.getpid()}\n")

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def shown_path(path: Path) -> str:
    """A path as the user can paste it: relative to the current directory when inside it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_new(path: str | os.PathLike[str], content: str | bytes, mode: int = 0o644) -> None:
    """Write a file of a task that has no state marker yet: no reader trusts it before the
    marker exists, and a crash before then rewrites it, so a temporary name is not needed."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:  # os.write may write less than asked
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], content: str | bytes, mode: int = 0o644) -> None:
    """Write a file so that readers see the old or the new content, never a partial one."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
    except OSError as e:
        raise OSError(e.errno, f"cannot write {path}: {e.strerror}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):  # e.g. a full disk: say which file (the error alone does not)
            raise OSError(e.errno, f"cannot write {path}: {e.strerror}") from e
        raise
