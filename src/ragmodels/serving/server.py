"""Running the app: ``serve`` (blocking, as ``ragmodels serve``) and ``BackgroundServer`` (a uvicorn server
in a thread of this process, for tests, benchmarks and notebooks)."""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI

from .logs import configure_logging


def _config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    # our middleware logs every request as JSON; uvicorn's own access log would repeat it
    return uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning", lifespan="on")


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, *, protected: bool = False) -> None:
    """Serve ``app`` until interrupted, logging JSON lines to stderr.

    Binds first, so that a taken port is an OSError here; then prints the start line with the URL to
    stderr, and a warning when ``host`` reaches beyond loopback and ``protected`` (a token) is False.
    """
    configure_logging()
    sock = bind(host, port)
    for line in start_lines(host, sock.getsockname()[1], protected):
        print(line, file=sys.stderr, flush=True)
    uvicorn.Server(_config(app, host, port)).run(sockets=[sock])


def start_lines(host: str, port: int, protected: bool) -> list[str]:
    """What ``serve`` prints when it listens: the URL, and a warning for an open non-loopback bind."""
    url = f"http://{_url_host(host)}:{port}"
    lines = [f"ragmodels serve: listening on {url}/ (page at /, API at POST /v1/answer, schema at /openapi.json; "
             "the model loads in the background, GET /readyz says when it is ready)"]
    if not protected and not is_loopback(host):
        lines.append(f"ragmodels serve: warning: {host} accepts connections from other machines and no token is set: "
                     "anyone who can reach this port can use the model. Give --token (or RAGMODELS_SERVE_TOKEN), "
                     "or bind 127.0.0.1.")
    return lines


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (IPv4 or IPv6, as the host resolves)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family, backlog=2048)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


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
