"""A request-body size limit as plain ASGI middleware: 413 past ``max_bytes``, before the app reads anything.

- A ``Content-Length`` above the limit is refused at once: a client that sent ``Expect: 100-continue``
  gets the 413 without sending its body; any other client is still sending, so up to ``drain_bytes`` of
  the body (and at most ``drain_s`` seconds) are read and thrown away first. Closing a socket with unread
  data makes the kernel send a reset, which a client reports instead of the 413.
- A body without a length (chunked) is read here, up to ``max_bytes``, and handed on whole; past the limit
  the rest is drained the same way and 413 returned. Memory stays bounded by ``max_bytes``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]


class BodyLimit:
    """``BodyLimit(app, max_bytes, drain_bytes)``: the ASGI ``app`` behind a request-body limit."""

    def __init__(self, app: Any, max_bytes: int, drain_bytes: int, drain_s: float = 10.0):
        self.app, self.max_bytes, self.drain_bytes, self.drain_s = app, max_bytes, drain_bytes, drain_s

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        length = headers.get(b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                return await _reply(send, 400, "The Content-Length header is not a number.")
            if int(length) > self.max_bytes:
                if b"100-continue" not in headers.get(b"expect", b"").lower():
                    await self._drain(receive, 0)
                return await _reply(send, 413, self._too_large(f"{int(length)} bytes"))
            return await self.app(scope, receive, send)
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            return await self.app(scope, receive, send)  # no body
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                if message.get("more_body", False):
                    await self._drain(receive, size - self.max_bytes)
                return await _reply(send, 413, self._too_large(f"more than {self.max_bytes} bytes"))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    def _too_large(self, size: str) -> str:
        return (f"The request body is too large: {size}; this server accepts at most {self.max_bytes} bytes. "
                "Send fewer or shorter questions.")

    async def _drain(self, receive: Any, already: int) -> None:
        """Read and discard the body until it ends, ``drain_bytes`` have been read or ``drain_s`` passed."""
        async def drain() -> None:
            read = already
            while read < self.drain_bytes:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
                read += len(message.get("body", b""))

        try:
            await asyncio.wait_for(drain(), self.drain_s)
        except TimeoutError:
            pass


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that gives ``body`` as one message, then whatever the connection says next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reply(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode("ascii")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
