"""HTTP/1.1 requests off one client connection: head, body (length or chunked), disconnect watch."""
from __future__ import annotations

import asyncio
from typing import Optional

from .config import MAX_BODY_BYTES, MAX_HEAD_BYTES, MAX_PIPELINED_BYTES


class HttpError(Exception):
    """An answer with a status and a plain-text message (the SDK shows 404 and 502 bodies)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientGone(Exception):
    """The client closed its connection, or a write to it failed."""


class Request:
    """One parsed request, its body read whole."""
    def __init__(self, method: str, path: str, version: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.version = version
        self.headers = headers
        self.body = body

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


class Connection:
    """One client connection: requests in order, with a buffer the disconnect watch also fills."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.eof = False

    async def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = await self.reader.read(65536)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    async def _until(self, sep: bytes, limit: int) -> Optional[bytes]:
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise HttpError(431, f"request head over {limit} bytes")
            start = max(0, len(self.buf) - len(sep) + 1)
            if not await self._fill():
                return None

    async def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not await self._fill():
                raise ClientGone()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def read_request(self) -> Optional[Request]:
        """The next request, or None once the client closed between requests."""
        while self.buf[:2] == b"\r\n":  # stray line ends between requests (RFC 9112 2.2)
            del self.buf[:2]
        head = await self._until(b"\r\n\r\n", MAX_HEAD_BYTES)
        if head is None:
            if self.buf:
                raise ClientGone()
            return None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HttpError(400, f"request line: expected METHOD PATH HTTP/1.1, got {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HttpError(400, f"header line: expected Name: value, got {line[:80]!r}")
            key = name.lower()
            value = value.strip()
            if key in headers and key in ("content-length", "transfer-encoding", "host"):
                raise HttpError(400, f"header {name}: given twice")
            headers[key] = value
        body = await self._read_body(headers)
        return Request(parts[0], parts[1], parts[2], headers, body)

    async def _read_body(self, headers: dict[str, str]) -> bytes:
        encoding = headers.get("transfer-encoding", "").lower()
        if headers.get("expect", "").lower() == "100-continue" and (encoding or headers.get("content-length", "0") != "0"):
            await self.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits a second for it before a large body
        if encoding:
            if encoding != "chunked":
                raise HttpError(400, f"transfer-encoding: expected chunked, got {encoding!r}")
            body = bytearray()
            while True:
                size_line = await self._until(b"\r\n", 1024)
                if size_line is None:
                    raise ClientGone()
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise HttpError(400, f"chunk size: expected hex digits, got {size_line[:40]!r}") from None
                if size == 0:
                    while await self._until(b"\r\n", MAX_HEAD_BYTES) not in (b"", None):
                        pass  # trailers, dropped
                    return bytes(body)
                if len(body) + size > MAX_BODY_BYTES:
                    raise HttpError(413, f"body over {MAX_BODY_BYTES} bytes")
                body += await self._exactly(size)
                if await self._exactly(2) != b"\r\n":
                    raise HttpError(400, "chunk: expected CRLF after its data")
        length = headers.get("content-length")
        if length is None:
            return b""
        if not length.isdigit():
            raise HttpError(400, f"content-length: expected a number of bytes, got {length[:40]!r}")
        n = int(length)
        if n > MAX_BODY_BYTES:
            raise HttpError(413, f"body of {n} bytes: expected at most {MAX_BODY_BYTES}")
        return await self._exactly(n)

    async def watch_until_gone(self) -> None:
        """Returns when the client closes its side (read EOF or a reset). Bytes that come meanwhile
        (a pipelined request) stay buffered for later; past a limit, watching stops."""
        while len(self.buf) < MAX_PIPELINED_BYTES:
            if not await self._fill():
                return
        await asyncio.Event().wait()

    async def write(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise ClientGone()
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError) as err:
            raise ClientGone() from err

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass
