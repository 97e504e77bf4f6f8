"""Endpoint registry, strict request parsing, and the per-request context with auth checks."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dendro_bridge.model import ValidationError
from dendro_bridge.server.objects import ObjectStore, UrlSigner
from dendro_bridge.server.store import Db

Check = Callable[[Any], bool]
Handler = Callable[["Context", dict[str, Any]], dict[str, Any]]


class ApiError(Exception):
    """An error response: HTTP status plus a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Endpoint:
    handler: Handler
    required: dict[str, Check]
    optional: dict[str, Check]
    write: bool


ENDPOINTS: dict[str, Endpoint] = {}


def endpoint(name: str, *, required: dict[str, Check] | None = None,
             optional: dict[str, Check] | None = None, write: bool = False) -> Callable[[Handler], Handler]:
    """Register `POST /api/<name>`; `write` runs it in a write transaction."""
    def register(handler: Handler) -> Handler:
        ENDPOINTS[name] = Endpoint(handler, required or {}, optional or {}, write)
        return handler
    return register


def parse_request(name: str, body: Any) -> dict[str, Any]:
    """Reject what the hosted service's validator rejects: wrong type tag, unknown keys,
    missing keys, nulls and wrong value types."""
    ep = ENDPOINTS[name]
    if not isinstance(body, dict) or body.get("type") != f"{name}Request":
        raise ValidationError(f"Invalid request: type must be {name}Request")
    req = {k: v for k, v in body.items() if k != "type"}
    for key, value in req.items():
        check = ep.required.get(key) or ep.optional.get(key)
        if check is None:
            raise ValidationError(f"Invalid request: unknown key {key!r}")
        if not check(value):
            raise ValidationError(f"Invalid request: bad value for {key!r}")
    missing = [k for k in ep.required if k not in req]
    if missing:
        raise ValidationError(f"Invalid request: missing key {missing[0]!r}")
    return req


@dataclass
class Context:
    db: Db
    token: str | None
    signer: UrlSigner
    objects: ObjectStore
    now: float = field(default_factory=time.time)

    def user(self) -> dict[str, Any]:
        """The user owning the bearer API key."""
        user = self.db.user_by_key(self.token) if self.token else None
        if user is None:
            raise ApiError(401, "invalid or missing API key")
        return user

    def compute_client(self, client_id: str) -> dict[str, Any]:
        """The compute client whose private key is the bearer token."""
        if not self.token or not self.db.compute_client_key_matches(client_id, self.token):
            raise ApiError(401, "invalid compute client id or private key")
        client = self.db.compute_client(client_id)
        assert client is not None
        return client

    def job(self, job_id: str) -> dict[str, Any]:
        job = self.db.job(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id}")
        return job

    def job_for_key(self, job_id: str) -> dict[str, Any]:
        """A job whose private key is the bearer token (the running job's credential)."""
        job = self.job(job_id)
        if not self.token or job["jobPrivateKey"] != self.token:
            raise ApiError(401, "invalid job private key")
        return job


def user_has_right(service: dict[str, Any], user_id: str, right: str) -> bool:
    """Owners have every right; other users have what their entry grants."""
    if service["userId"] == user_id:
        return True
    return any(u["userId"] == user_id and (u.get(right) or u.get("admin")) for u in service.get("users", []))
