"""Content digests of files, remembered by (size, mtime, inode) so that an unchanged
multi-GB input is read once, not on every run."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

from drypipe.errors import UserError
from drypipe.instance import write_atomic

_CHUNK = 1 << 20

_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def stat_file_to_digest(path: str | os.PathLike[str]) -> os.stat_result | None:
    """os.stat of a file whose content is digested (an input no task produced): None when it
    does not exist; a UserError naming it when it is not a regular file, whose content
    cannot be read (a directory) or never ends (a FIFO, /dev/zero)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise UserError(f"{os.fspath(path)!r}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "a special file")
        raise UserError(f"{os.fspath(path)!r} is {kind}, not a regular file (input files are digested)")
    return st


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class DigestCache:
    def __init__(self, path: Path):
        self.path = path
        self._dirty = False
        try:
            self._entries: dict[str, list[Any]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self._entries = {}

    def digest(self, path: str | os.PathLike[str]) -> str | None:
        """SHA-256 of a file's content, or None when it does not exist."""
        path = os.path.abspath(path)
        st = stat_file_to_digest(path)
        if st is None:
            return None
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        entry = self._entries.get(path)
        if entry and entry[:3] == stamp:
            cached: str = entry[3]
            return cached
        digest = file_sha256(path)
        self._entries[path] = [*stamp, digest]
        self._dirty = True
        return digest

    def save(self) -> None:
        if self._dirty:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(self.path, json.dumps(self._entries))
            except OSError as e:  # only a cache (e.g. the disk is full): files are digested again next time
                logging.getLogger("drypipe").warning("digest cache not saved: %s", e)
                return
            self._dirty = False
