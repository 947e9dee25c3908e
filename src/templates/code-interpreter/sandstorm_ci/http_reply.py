"""HTTP/1.1 answers: whole ones (JSON, text, empty) and streamed NDJSON that sees the client go."""
from __future__ import annotations

import asyncio
import json
from typing import Any, Callable, Optional

from .http_conn import ClientGone, Connection
from .messages import ndjson

REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           411: "Length Required", 413: "Payload Too Large", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


CORS = "Access-Control-Allow-Origin: *\r\n"


def response_head(status: int, headers: dict[str, str], keep_alive: bool) -> bytes:
    """Status line and headers of an answer, CORS included."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n" + CORS + "\r\n").encode("latin-1")


class Reply:
    """A whole answer: JSON, plain text or nothing."""

    def __init__(self, status: int, body: Any = None, text: Optional[str] = None) -> None:
        self.status = status
        if text is not None:
            self.body = text.encode("utf-8")
            self.content_type: Optional[str] = "text/plain; charset=utf-8"
        elif status == 204:
            self.body = b""
            self.content_type = None
        else:
            self.body = json.dumps(body).encode("utf-8")
            self.content_type = "application/json"


class Stream:
    """A streamed NDJSON answer (chunked), and the client's disconnect as an event."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.gone = asyncio.Event()
        self._callbacks: list[Callable[[], None]] = []

    def on_gone(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Calls back once the client is gone (now, if it already is); returns an unsubscribe."""
        if self.gone.is_set():
            callback()
            return lambda: None
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def mark_gone(self) -> None:
        if self.gone.is_set():
            return
        self.gone.set()
        for cb in list(self._callbacks):
            cb()

    async def start(self, keep_alive: bool) -> None:
        headers = {"Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked", "Cache-Control": "no-store"}
        await self._write(response_head(200, headers, keep_alive))

    async def send(self, obj: dict) -> None:
        data = ndjson(obj)
        await self._write(b"%x\r\n%s\r\n" % (len(data), data))

    async def end(self) -> None:
        await self._write(b"0\r\n\r\n")

    async def _write(self, data: bytes) -> None:
        if self.gone.is_set():
            raise ClientGone()
        try:
            await self.conn.write(data)
        except ClientGone:
            self.mark_gone()
            raise
