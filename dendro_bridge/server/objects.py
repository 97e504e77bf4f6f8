"""Object storage behind the service's `/f/<key>` URLs, with HMAC-signed, expiring access.

Objects live on a local directory or any fsspec URL.  A signed URL carries `expires` and
`signature` = HMAC-SHA256(secret, "METHOD\\nkey\\nexpires"), so an upload URL cannot be
reused for another key, after its expiry, or for downloads.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import quote, unquote

import fsspec

from dendro_bridge.model import is_file_base_name


class AccessDenied(Exception):
    """A signed URL that is missing, expired, or does not match."""


def check_key(key: str) -> str:
    """Object keys are '/'-joined file names (see is_file_base_name): no traversal, no
    absolute paths."""
    if not all(is_file_base_name(p) for p in key.split("/")):
        raise ValueError(f"invalid object key: {key!r}")
    return key


def load_or_create_secret(path: Path) -> bytes:
    if not path.exists():
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


class UrlSigner:
    def __init__(self, secret: bytes, public_url: str, ttl_sec: float):
        self.secret, self.public_url, self.ttl_sec = secret, public_url.rstrip("/"), ttl_sec

    def url(self, key: str) -> str:
        """The plain, permanent URL of an object (what jobs record)."""
        return f"{self.public_url}/f/{quote(check_key(key))}"

    def key_of(self, url: str) -> str | None:
        """The object key of a URL served by this service, else None."""
        prefix = f"{self.public_url}/f/"
        path = url.split("?", 1)[0]
        return unquote(path[len(prefix):]) if path.startswith(prefix) else None

    def _signature(self, method: str, key: str, expires: int) -> str:
        return hmac.new(self.secret, f"{method}\n{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def sign(self, method: str, key: str, expires: int | None = None) -> str:
        expires = int(time.time() + self.ttl_sec) if expires is None else expires
        return f"{self.url(key)}?expires={expires}&signature={self._signature(method, key, expires)}"

    def verify(self, method: str, key: str, expires: str | None, signature: str | None) -> None:
        if not expires or not signature:
            raise AccessDenied("missing signature")
        if not expires.isdigit() or int(expires) < time.time():
            raise AccessDenied("signed URL expired")
        if not hmac.compare_digest(signature, self._signature(method, key, int(expires))):
            raise AccessDenied("bad signature")


class ObjectStore:
    def __init__(self, url: str):
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.fs.makedirs(self.root, exist_ok=True)

    def _path(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{check_key(key)}"

    def put(self, key: str, stream: IO[bytes]) -> int:
        """Write atomically (temporary name, then move) and return the size."""
        path = self._path(key)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.upload-{uuid.uuid4().hex}"
        size = 0
        with self.fs.open(tmp, "wb") as f:
            while chunk := stream.read(1 << 20):
                f.write(chunk)
                size += len(chunk)
        self.fs.mv(tmp, path)
        return size

    def size(self, key: str) -> int | None:
        path = self._path(key)
        return int(self.fs.size(path)) if self.fs.exists(path) else None

    def read_chunks(self, key: str) -> Iterator[bytes]:
        with self.fs.open(self._path(key), "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk
