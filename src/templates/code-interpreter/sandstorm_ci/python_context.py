"""A python context: one ipykernel, its outputs streamed as NDJSON lines, interrupts and restarts."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Optional

from .config import INTERRUPT_GRACE_S, INTERRUPT_RETRY_S, KEEPALIVE_S, LIVENESS_CHECK_S
from .context import Context, Emit, RunEnded
from .http_conn import ClientGone
from .http_reply import Stream
from .kernel_session import KernelSession
from .log import log
from .messages import error_line, result_line, stamp


class PythonContext(Context):
    """A context whose code runs in an ipykernel; a dead kernel is started again."""
    language = "python"

    def __init__(self, cid: str, cwd: str, runtime_dir: str) -> None:
        super().__init__(cid, cwd)
        self.runtime_dir = runtime_dir
        self.kernel: Optional[KernelSession] = None
        self.listeners: dict[str, asyncio.Queue] = {}

    def _on_iopub(self, msg: dict) -> None:
        queue = self.listeners.get(msg.get("parent_header", {}).get("msg_id"))
        if queue is not None:
            queue.put_nowait(msg)

    async def start(self) -> None:
        kernel = KernelSession(self.cwd, self.runtime_dir, self.id, self._on_iopub)
        try:
            await kernel.start()
        except BaseException:
            await kernel.shutdown()
            raise
        self.kernel = kernel

    async def _replace_kernel(self) -> None:
        old, self.kernel = self.kernel, None
        if old:
            await old.shutdown()
        if not self.closed:
            await self.start()

    async def run(self, code: str, env: dict[str, str], emit: Emit, stream: Stream) -> None:
        kernel = self.kernel
        if kernel is None:
            raise RunEnded("ContextUnavailable", "the context's kernel is not running: restart the context")
        queue: asyncio.Queue = asyncio.Queue()
        if env:
            kernel.forget(kernel.execute(f"__import__('_sandstorm_ci').push_env({json.dumps(env)})", silent=True))
        # The queue gets the kernel's outputs, and also a note when the client goes or the run is aborted.
        msg_id = kernel.execute(code)
        self.listeners[msg_id] = queue
        kernel.forget(msg_id)
        self._abort = queue.put_nowait
        unsubscribe = stream.on_gone(lambda: queue.put_nowait(ClientGone()))
        try:
            try:
                finished = await self._stream_outputs(kernel, queue, emit, stream)
            except ClientGone:
                finished = False
            finally:
                unsubscribe()
                self._abort = None
            # A restart, a removal or a kernel that died (RunEnded) leaves nothing to stop or undo.
            if not finished:
                await self._stop(kernel, queue)
            if env and self.kernel is kernel:
                await self._pop_env(kernel)
        finally:
            self.listeners.pop(msg_id, None)

    async def _pop_env(self, kernel: KernelSession) -> None:
        try:
            reply = await asyncio.wait_for(kernel.request("__import__('_sandstorm_ci').pop_env()"), INTERRUPT_GRACE_S)
        except asyncio.TimeoutError:
            reply = {"status": "timeout"}
        if reply.get("status") != "ok":
            log("undoing the run's env vars failed: restarting the kernel", context=self.id, reply=reply)
            await self._replace_kernel()

    async def _stream_outputs(self, kernel: KernelSession, queue: asyncio.Queue, emit: Emit, stream: Stream) -> bool:
        """Passes the run's outputs on until the kernel is idle (True), or the client goes (False)."""
        errored = False
        quiet_since = time.monotonic()
        while True:
            try:
                msg = await asyncio.wait_for(queue.get(), LIVENESS_CHECK_S)
            except asyncio.TimeoutError:
                if not await kernel.is_alive():
                    code = kernel.km.provisioner.process.returncode if kernel.km.provisioner and kernel.km.provisioner.process else None
                    await self._replace_kernel()
                    raise RunEnded("KernelDied", f"the python kernel exited (code {code}) during the run; it was started again and its state is lost")
                if time.monotonic() - quiet_since >= KEEPALIVE_S:
                    await emit({"type": "keepalive"})
                    quiet_since = time.monotonic()
                continue
            if isinstance(msg, ClientGone):
                return False
            if isinstance(msg, RunEnded):
                raise msg
            quiet_since = time.monotonic()
            kind = msg.get("msg_type")
            content = msg.get("content", {})
            if kind == "stream":
                name = content.get("name")
                if name in ("stdout", "stderr"):
                    await emit({"type": name, "text": content.get("text", ""), "timestamp": stamp(msg)})
            elif kind in ("display_data", "execute_result"):
                await emit(result_line(dict(content.get("data", {})), kind == "execute_result"))
            elif kind == "error":
                if not errored:
                    errored = True
                    await emit(error_line(content))
            elif kind == "execute_input":
                await emit({"type": "number_of_executions", "execution_count": content.get("execution_count")})
            elif kind == "status" and content.get("execution_state") == "idle":
                return True

    async def _stop(self, kernel: KernelSession, queue: asyncio.Queue) -> None:
        """Interrupts the run and drains its outputs until the kernel is idle; a kernel that will not
        stop is restarted, so that the next run starts clean."""
        if self.kernel is not kernel:
            return
        log("interrupting run", context=self.id)
        try:
            deadline = time.monotonic() + INTERRUPT_GRACE_S
            await kernel.interrupt()
            while True:
                try:
                    msg = await asyncio.wait_for(queue.get(), max(0.01, min(INTERRUPT_RETRY_S, deadline - time.monotonic())))
                except asyncio.TimeoutError:
                    if time.monotonic() >= deadline:
                        raise
                    # Quiet and not idle: sent again, since a SIGINT that landed before the kernel
                    # began to run the code (a run stopped early, under load) is ignored by an idle kernel.
                    await kernel.interrupt()
                    continue
                if isinstance(msg, dict) and msg.get("msg_type") == "status" and msg["content"].get("execution_state") == "idle":
                    return
        except (asyncio.TimeoutError, RuntimeError) as err:
            log("interrupt did not stop the run: restarting the kernel", context=self.id, error=repr(err))
            await self._replace_kernel()

    async def restart(self) -> None:
        await self._replace_kernel()

    async def close(self) -> None:
        self.closed = True
        old, self.kernel = self.kernel, None
        if old:
            await old.shutdown()
