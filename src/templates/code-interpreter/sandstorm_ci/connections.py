"""One client connection served to its end: requests in order, errors answered, keep-alive honoured."""
from __future__ import annotations

import asyncio

from .http_conn import ClientGone, Connection, HttpError
from .http_reply import Reply, response_head
from .log import log
from .routes import Routes


async def serve_connection(routes: Routes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Serves requests off one connection until the client closes it or asks to."""
    conn = Connection(reader, writer)
    try:
        while True:
            try:
                req = await conn.read_request()
            except HttpError as err:
                await conn.write(response_head(err.status, {"Content-Type": "text/plain; charset=utf-8", "Content-Length": str(len(err.message.encode()))}, False) + err.message.encode())
                return
            if req is None:
                return
            try:
                reply = await routes.handle(req, conn)
            except HttpError as err:
                reply = Reply(err.status, text=err.message)
            except ClientGone:
                return
            except Exception as err:  # noqa: BLE001 — answered as a 500 with what failed
                log("request failed", method=req.method, path=req.path, error=repr(err))
                reply = Reply(500, text=f"{req.method} {req.path} failed: {err}")
            if conn.eof:
                return
            if reply is not None:
                headers = {"Content-Length": str(len(reply.body))}
                if reply.content_type:
                    headers["Content-Type"] = reply.content_type
                if reply.status == 204 and req.method == "OPTIONS":
                    headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
                    headers["Access-Control-Allow-Headers"] = "*"
                await conn.write(response_head(reply.status, headers, req.keep_alive) + reply.body)
            if not req.keep_alive:
                return
    except ClientGone:
        return
    finally:
        conn.close()
