"""What every context (python kernel, bash shell) is: one run at a time, restarts between runs."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Optional

from .http_reply import Stream

Emit = Callable[[dict], Awaitable[None]]
"""Sends one NDJSON line of a run to its client."""


class RunEnded(Exception):
    """A run stopped early: its context was restarted or removed, or its kernel died."""

    def __init__(self, name: str, value: str) -> None:
        super().__init__(value)
        self.name = name
        self.value = value


class Context:
    """A place where code runs, one run at a time; state persists between runs."""

    language = ""

    def __init__(self, cid: str, cwd: str) -> None:
        self.id = cid
        self.cwd = cwd
        self.lock = asyncio.Lock()
        self.closed = False
        self._abort: Optional[Callable[[RunEnded], None]] = None
        # A restart asked for while the lock is held: whoever holds the lock next (or now, once its
        # run is aborted) does it, before any run queued behind.
        self.pending_restart: Optional[asyncio.Future] = None

    def describe(self) -> dict:
        return {"id": self.id, "language": self.language, "cwd": self.cwd}

    async def start(self) -> None:
        raise NotImplementedError

    async def run(self, code: str, env: dict[str, str], emit: Emit, stream: Stream) -> None:
        raise NotImplementedError

    async def restart(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def abort_run(self, reason: RunEnded) -> None:
        """Ends the run in progress (if any) with an error, at once."""
        if self._abort:
            self._abort(reason)

    async def settle(self) -> None:
        """Does a pending restart; called with the lock held."""
        fut, self.pending_restart = self.pending_restart, None
        if fut is None:
            return
        try:
            if not self.closed:
                await self.restart()
            fut.set_result(None)
        except Exception as err:  # noqa: BLE001 — the restart's caller answers it
            fut.set_exception(err)


async def wait_lock(lock: asyncio.Lock, stream: Stream) -> bool:
    """Takes the lock (runs queue in order); False when the client went away while waiting."""
    acquire = asyncio.ensure_future(lock.acquire())
    gone = asyncio.ensure_future(stream.gone.wait())
    try:
        await asyncio.wait({acquire, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if acquire.done() and not acquire.cancelled():
        if stream.gone.is_set():
            lock.release()
            return False
        return True
    acquire.cancel()
    try:
        await acquire
    except asyncio.CancelledError:
        pass
    else:
        lock.release()
    return False
