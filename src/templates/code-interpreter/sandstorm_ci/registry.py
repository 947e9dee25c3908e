"""The contexts of this sandbox by id, the default one of each language, and their restart and removal."""
from __future__ import annotations

import asyncio
import os
import tempfile
import uuid

from .bash_context import BashContext
from .context import Context, RunEnded
from .http_conn import HttpError
from .log import log
from .python_context import PythonContext


class Contexts:
    """Every context of the server; kernels' connection files and bash scripts live in one private dir."""

    def __init__(self, default_cwd: str) -> None:
        self.default_cwd = default_cwd
        self.runtime_dir = tempfile.mkdtemp(prefix="sandstorm-ci-")
        self.contexts: dict[str, Context] = {}
        self.defaults: dict[str, str] = {}
        self.default_lock = asyncio.Lock()

    def _new_context(self, language: str, cwd: str) -> Context:
        cid = str(uuid.uuid4())
        if language == "python":
            return PythonContext(cid, cwd, self.runtime_dir)
        return BashContext(cid, cwd, self.runtime_dir)

    def describe(self) -> list[dict]:
        return [c.describe() for c in self.contexts.values()]

    async def create(self, language: str, cwd: str) -> Context:
        if not os.path.isdir(cwd):
            raise HttpError(400, f"cwd: {cwd!r} is not a directory in the sandbox")
        ctx = self._new_context(language, cwd)
        await ctx.start()
        self.contexts[ctx.id] = ctx
        log("context created", context=ctx.id, language=language, cwd=cwd)
        return ctx

    async def default(self, language: str) -> Context:
        async with self.default_lock:
            cid = self.defaults.get(language)
            if cid and cid in self.contexts:
                return self.contexts[cid]
            ctx = await self.create(language, self.default_cwd)
            self.defaults[language] = ctx.id
            return ctx

    def find(self, cid: str) -> Context:
        ctx = self.contexts.get(cid)
        if ctx is None:
            raise HttpError(404, f"Context {cid} not found")
        return ctx

    async def restart(self, ctx: Context) -> None:
        """Ends its run (if any) and restarts it once the lock is free; runs queued behind wait."""
        if ctx.pending_restart is None:
            ctx.pending_restart = asyncio.get_running_loop().create_future()
        done = ctx.pending_restart
        ctx.abort_run(RunEnded("ContextRestarting", "Context was restarted"))
        if not ctx.lock.locked():
            async with ctx.lock:
                await ctx.settle()
        await done
        log("context restarted", context=ctx.id)

    async def remove(self, ctx: Context) -> None:
        """Ends its run (if any), closes it and forgets it."""
        self.contexts.pop(ctx.id, None)
        ctx.abort_run(RunEnded("ContextRemoved", "Context was removed"))
        ctx.closed = True
        async with ctx.lock:
            await ctx.close()
        log("context removed", context=ctx.id)

    async def close(self) -> None:
        for ctx in list(self.contexts.values()):
            await ctx.close()
        try:
            os.rmdir(self.runtime_dir)
        except OSError:
            pass
