"""Run the service with werkzeug's threaded WSGI server (one thread per request)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from werkzeug.serving import BaseWSGIServer, make_server

from dendro_bridge.server.app import ServerConfig, create_app


def _not_ready(environ: dict, start_response: Callable) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting"]


def make_dendro_server(host: str, port: int, data_dir: Path, *, storage_url: str | None = None,
                       public_url: str | None = None, url_ttl_sec: float = 3600.0,
                       public_downloads: bool = True) -> BaseWSGIServer:
    """Bind first, so that with port 0 the public URL can name the port actually chosen."""
    server = make_server(host, port, _not_ready, threaded=True)
    url = public_url or f"http://{host}:{server.server_port}"
    config = ServerConfig(data_dir=Path(data_dir), public_url=url, storage_url=storage_url,
                          url_ttl_sec=url_ttl_sec, public_downloads=public_downloads)
    server.app = create_app(config)
    server.public_url = url  # type: ignore[attr-defined]
    return server

