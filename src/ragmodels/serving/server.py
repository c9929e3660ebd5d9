"""Running the app: ``serve`` (blocking, as ``ragmodels serve``) and ``BackgroundServer`` (a uvicorn server
in a thread of this process, for tests, benchmarks and notebooks)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI

from .logs import configure_logging


def _config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    # our middleware logs every request as JSON; uvicorn's own access log would repeat it
    return uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning", lifespan="on")


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``app`` until interrupted, logging JSON lines to stderr."""
    configure_logging()
    uvicorn.Server(_config(app, host, port)).run()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class BackgroundServer:
    """``with BackgroundServer(app) as server: urlopen(server.url + "/healthz")``; loopback by default."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int | None = None, start_timeout_s: float = 30):
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout_s = start_timeout_s
        self._server = uvicorn.Server(_config(app, self.host, self.port))
        self._thread = threading.Thread(target=self._server.run, name="ragmodels-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> "BackgroundServer":
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"The server did not start on {self.url}.")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
