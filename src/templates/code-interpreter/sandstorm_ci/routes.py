"""The API's routes: /health, /execute (a streamed run), /contexts and their restart and removal."""
from __future__ import annotations

import asyncio
import json
import re
from typing import Optional
from urllib.parse import unquote, urlsplit

from .bash_context import SHELL_NAME
from .context import RunEnded, wait_lock
from .http_conn import ClientGone, Connection, HttpError, Request
from .http_reply import Reply, Stream
from .registry import Contexts
from .validation import env_vars_of, normalize_language, optional_string, parse_json_object


class Routes:
    """Answers one request; None when the answer was streamed already."""

    def __init__(self, contexts: Contexts) -> None:
        self.contexts = contexts
        self.ready = False

    async def handle(self, req: Request, conn: Connection) -> Optional[Reply]:
        path = unquote(urlsplit(req.path).path).rstrip("/") or "/"
        method = req.method
        if method == "OPTIONS":
            return Reply(204)
        if path == "/health":
            if method != "GET":
                raise HttpError(405, "/health: expected GET")
            if not self.ready:
                raise HttpError(503, "starting: the default python kernel is not ready yet")
            return Reply(200, "OK")
        if path == "/execute":
            if method != "POST":
                raise HttpError(405, "/execute: expected POST")
            await self.execute(req, conn)
            return None
        if path == "/contexts":
            if method == "GET":
                return Reply(200, self.contexts.describe())
            if method == "POST":
                data = parse_json_object(req.body, '{"language": "python", "cwd": "/home/user"}')
                language = normalize_language(data.get("language"), "language")
                cwd = optional_string(data, "cwd") or self.contexts.default_cwd
                ctx = await self.contexts.create(language, cwd)
                return Reply(200, ctx.describe())
            raise HttpError(405, "/contexts: expected GET or POST")
        match = re.fullmatch(r"/contexts/([^/]+)(/restart)?", path)
        if match:
            cid, restart = match.group(1), match.group(2)
            if restart:
                if method != "POST":
                    raise HttpError(405, f"{path}: expected POST")
                await self.contexts.restart(self.contexts.find(cid))
                return Reply(204)
            if method != "DELETE":
                raise HttpError(405, f"{path}: expected DELETE")
            await self.contexts.remove(self.contexts.find(cid))
            return Reply(204)
        raise HttpError(404, f"{method} {path}: no such route; expected /execute, /contexts or /health")

    async def execute(self, req: Request, conn: Connection) -> None:
        """Runs code in a context and streams its outputs; the answer starts before the run does."""
        data = parse_json_object(req.body, '{"code": "1+1"}')
        code = data.get("code")
        if not isinstance(code, str):
            raise HttpError(400, f"code: expected a string of code to run, got {json.dumps(code)[:60]}")
        context_id = optional_string(data, "context_id")
        language = optional_string(data, "language")
        if context_id and language:
            raise HttpError(400, "context_id and language: give one of them, not both (a context has its language)")
        env = env_vars_of(data)
        if context_id:
            ctx = self.contexts.find(context_id)
        else:
            ctx = await self.contexts.default(normalize_language(language, "language"))
        if ctx.language == "bash":
            for key in env:
                if not SHELL_NAME.match(key):
                    raise HttpError(400, f"env_vars: name {key!r}: bash takes names of letters, digits and _, not starting with a digit")

        # Answer at once, as E2B's server does: a run waiting behind another is no request timeout.
        stream = Stream(conn)
        watch = asyncio.create_task(conn.watch_until_gone())
        watch.add_done_callback(lambda _: stream.mark_gone() if conn.eof else None)
        try:
            await stream.start(req.keep_alive)
            if not await wait_lock(ctx.lock, stream):
                raise ClientGone()
            try:
                await ctx.settle()
                if ctx.closed:
                    raise RunEnded("ContextRemoved", "Context was removed")
                await ctx.run(code, env, stream.send, stream)
            except RunEnded as ended:
                await stream.send({"type": "error", "name": ended.name, "value": ended.value, "traceback": ""})
            finally:
                try:
                    await ctx.settle()
                finally:
                    ctx.lock.release()
            await stream.send({"type": "end_of_execution"})
            await stream.end()
        finally:
            watch.cancel()
            try:
                await watch
            except asyncio.CancelledError:
                pass
