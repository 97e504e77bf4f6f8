"""Content digests of files, remembered by (size, mtime, inode) so that an unchanged
multi-GB input is read once, not on every run."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from drypipe.instance import write_atomic

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
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
            self._entries: dict[str, list] = json.loads(path.read_text())
        except (OSError, ValueError):
            self._entries = {}

    def digest(self, path: str | os.PathLike) -> str | None:
        """SHA-256 of a file's content, or None when it does not exist."""
        path = os.path.abspath(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        entry = self._entries.get(path)
        if entry and entry[:3] == stamp:
            return entry[3]
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
