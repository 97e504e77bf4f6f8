"""The WSGI application: `POST /api/<name>`, signed object URLs under `/f/`, and job pages."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from dendro_bridge.model import ValidationError
from dendro_bridge.server import endpoints_compute, endpoints_submit  # noqa: F401  (registers endpoints)
from dendro_bridge.server.jobs import public_view
from dendro_bridge.server.objects import AccessDenied, ObjectStore, UrlSigner, check_key, load_or_create_secret
from dendro_bridge.server.registry import ENDPOINTS, ApiError, Context, parse_request
from dendro_bridge.server.store import Store

log = logging.getLogger("dendro_bridge.server")


@dataclass
class ServerConfig:
    data_dir: Path
    public_url: str
    storage_url: str | None = None  # default: <data_dir>/objects
    url_ttl_sec: float = 3600.0
    # Outputs of the hosted service are public; set False to require signed download URLs.
    public_downloads: bool = True

    @property
    def database_path(self) -> Path:
        return self.data_dir / "dendro.sqlite"


def _bearer_token() -> str | None:
    # The hosted service takes the second word, so "Bearer: <key>" works as well as "Bearer <key>".
    words = request.headers.get("Authorization", "").split(" ")
    return words[1] if len(words) > 1 and words[1] else None


def _error(status: int, message: str) -> Response:
    resp = jsonify({"error": message})
    resp.status_code = status
    return resp


def create_app(config: ServerConfig) -> Flask:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(config.database_path)
    objects = ObjectStore(config.storage_url or str(config.data_dir / "objects"))
    signer = UrlSigner(load_or_create_secret(config.data_dir / "signing.key"), config.public_url,
                       config.url_ttl_sec)
    app = Flask("dendro_bridge")

    @app.post("/api/<name>")
    def api(name: str) -> Any:
        if name not in ENDPOINTS:
            return _error(404, f"unknown endpoint {name}")
        try:
            req = parse_request(name, request.get_json(silent=True))
            ep = ENDPOINTS[name]
            with store.transaction(write=ep.write) as db:
                ctx = Context(db, _bearer_token(), signer, objects)
                resp = ep.handler(ctx, req)
        except ValidationError as e:
            return _error(400, str(e))
        except ApiError as e:
            return _error(e.status, e.message)
        return jsonify({"type": f"{name}Response", **resp})

    @app.put("/f/<path:key>")
    def upload(key: str) -> Any:
        try:
            signer.verify("PUT", check_key(key), request.args.get("expires"), request.args.get("signature"))
        except (AccessDenied, ValueError) as e:
            return _error(403, str(e))
        size = objects.put(key, request.stream)
        return jsonify({"size": size})

    @app.get("/f/<path:key>")
    def download(key: str) -> Any:
        try:
            check_key(key)
            if request.args or not config.public_downloads:
                signer.verify("GET", key, request.args.get("expires"), request.args.get("signature"))
        except (AccessDenied, ValueError) as e:
            return _error(403, str(e))
        size = objects.size(key)
        if size is None:
            return _error(404, f"no object {key}")
        return Response(objects.read_chunks(key), mimetype="application/octet-stream",
                        headers={"Content-Length": str(size)})

    @app.get("/job/<job_id>")
    def job_page(job_id: str) -> Any:
        with store.transaction(write=False) as db:
            job = db.job(job_id)
        return jsonify(public_view(job)) if job else _error(404, f"no job {job_id}")

    @app.errorhandler(Exception)
    def internal_error(e: Exception) -> Any:
        if isinstance(e, HTTPException):  # routing errors (404, 405 ...)
            return _error(e.code or 500, e.description or e.name)
        log.exception("internal error")
        return _error(500, f"internal error: {type(e).__name__}")

    return app
