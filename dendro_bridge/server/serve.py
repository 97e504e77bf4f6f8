"""Run the service with waitress, a production WSGI server (a pool of worker threads)."""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import waitress.server

from dendro_bridge.server.app import ServerConfig, create_app

# Threads serving requests; each request runs in one SQLite transaction, so more threads
# mostly help long downloads and uploads, not throughput.
DEFAULT_THREADS = 8


def _not_ready(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting"]


class DendroServer:
    """A bound waitress server: `serve_forever()` blocks until `shutdown()`."""

    def __init__(self, server: Any, public_url: str):
        self._server = server
        self.public_url = public_url
        self._stopped = threading.Event()

    @property
    def server_port(self) -> int:
        return int(self._server.effective_port)

    def serve_forever(self) -> None:
        try:
            self._server.run()
        except (OSError, ValueError):
            # waitress's loop ends with EBADF (or a select on a closed map) after close()
            if not self._stopped.is_set():
                raise

    def shutdown(self) -> None:
        self._stopped.set()
        self._server.close()


def make_dendro_server(host: str, port: int, data_dir: Path, *, storage_url: str | None = None,
                       public_url: str | None = None, url_ttl_sec: float = 3600.0,
                       public_downloads: bool = True, threads: int = DEFAULT_THREADS) -> DendroServer:
    """Bind first, so that with port 0 the public URL can name the port actually chosen."""
    server = waitress.server.create_server(
        _not_ready, host=host, port=port, threads=threads,
        # uploads stream through to the object store: no request body size cap
        max_request_body_size=1 << 62, clear_untrusted_proxy_headers=True)
    url = public_url or f"http://{host}:{server.effective_port}"
    config = ServerConfig(data_dir=Path(data_dir), public_url=url, storage_url=storage_url,
                          url_ttl_sec=url_ttl_sec, public_downloads=public_downloads)
    server.application = create_app(config)
    return DendroServer(server, url)
