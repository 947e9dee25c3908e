"""One ipykernel process driven over ZeroMQ with jupyter_client."""
from __future__ import annotations

import asyncio
import os
from typing import Any, Callable

from .config import KERNEL_START_TIMEOUT_S
from .kernel_boot import KERNEL_ARGS, KERNEL_BOOT
from .log import log


class KernelSession:
    """One ipykernel process and our sockets to it: iopub (outputs) and shell (requests, replies)."""

    def __init__(self, cwd: str, runtime_dir: str, cid: str, on_iopub: Callable[[dict], None]) -> None:
        from jupyter_client.manager import AsyncKernelManager

        self.km = AsyncKernelManager(kernel_name="python3", connection_file=os.path.join(runtime_dir, f"kernel-{cid}.json"))
        self.cwd = cwd
        self.on_iopub = on_iopub
        self.replies: dict[str, asyncio.Future] = {}
        self.sockets: list[Any] = []
        self.tasks: list[asyncio.Task] = []
        self.shell: Any = None
        self.seen_iopub = asyncio.Event()

    async def start(self) -> None:
        import zmq
        import zmq.asyncio

        await self.km.start_kernel(cwd=self.cwd, extra_arguments=KERNEL_ARGS)
        info = self.km.get_connection_info()
        url = lambda port: f"{info['transport']}://{info['ip']}:{info[port]}"  # noqa: E731
        ctx = zmq.asyncio.Context.instance()
        iopub = ctx.socket(zmq.SUB)
        iopub.setsockopt(zmq.SUBSCRIBE, b"")
        iopub.linger = 0
        iopub.connect(url("iopub_port"))
        shell = ctx.socket(zmq.DEALER)
        shell.linger = 0
        shell.connect(url("shell_port"))
        self.shell = shell
        self.sockets = [iopub, shell]
        self.tasks = [asyncio.create_task(self._read(iopub, self._iopub)), asyncio.create_task(self._read(shell, self._reply))]
        await asyncio.wait_for(self._handshake(), KERNEL_START_TIMEOUT_S)
        reply = await asyncio.wait_for(self.request(KERNEL_BOOT), KERNEL_START_TIMEOUT_S)
        if reply.get("status") != "ok":
            log("kernel boot code failed", reply=reply)

    async def _handshake(self) -> None:
        # A SUB socket misses what is published before it is connected: ask for kernel_info until
        # a message on iopub shows that outputs reach us.
        wait_s = 0.05
        while True:
            if not await self.km.is_alive():
                raise RuntimeError("the python kernel exited while starting")
            msg_id = self._send("kernel_info_request", {})
            try:
                await asyncio.wait_for(asyncio.shield(self.replies[msg_id]), wait_s)
                await asyncio.wait_for(self.seen_iopub.wait(), wait_s)
                return
            except asyncio.TimeoutError:
                wait_s = min(wait_s * 2, 1.0)
            finally:
                self.replies.pop(msg_id, None)

    def _send(self, msg_type: str, content: dict) -> str:
        session = self.km.session
        msg = session.msg(msg_type, content=content)
        msg_id = msg["header"]["msg_id"]
        self.replies[msg_id] = asyncio.get_running_loop().create_future()
        self.shell.send_multipart(session.serialize(msg))
        return msg_id

    def execute(self, code: str, silent: bool = False) -> str:
        """Sends code to run; returns the request's id (the parent id of its outputs)."""
        # Never stop_on_error: ipykernel then aborts the execute requests that reach it until its
        # abort is over, which, right after an interrupted run, can be the context's next run (it
        # answers "aborted" with no output). Runs of a context are one at a time here anyway.
        content = {"code": code, "silent": silent, "store_history": not silent, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": False}
        return self._send("execute_request", content)

    async def request(self, code: str, silent: bool = True) -> dict:
        msg_id = self.execute(code, silent)
        try:
            return await self.replies[msg_id]
        finally:
            self.replies.pop(msg_id, None)

    def forget(self, msg_id: str) -> None:
        fut = self.replies.pop(msg_id, None)
        if fut and not fut.done():
            fut.cancel()

    async def _read(self, sock: Any, handle: Callable[[dict], None]) -> None:
        session = self.km.session
        while True:
            frames = await sock.recv_multipart()
            try:
                _, parts = session.feed_identities(frames)
                msg = session.deserialize(parts)
            except Exception as err:  # a message we cannot read is dropped, not fatal
                log("kernel message dropped", error=repr(err))
                continue
            handle(msg)

    def _iopub(self, msg: dict) -> None:
        self.seen_iopub.set()
        self.on_iopub(msg)

    def _reply(self, msg: dict) -> None:
        fut = self.replies.get(msg.get("parent_header", {}).get("msg_id"))
        if fut and not fut.done():
            fut.set_result(msg.get("content", {}))

    async def is_alive(self) -> bool:
        return await self.km.is_alive()

    async def interrupt(self) -> None:
        await self.km.interrupt_kernel()

    async def shutdown(self) -> None:
        for task in self.tasks:
            task.cancel()
        for sock in self.sockets:
            sock.close(linger=0)
        for fut in self.replies.values():
            if not fut.done():
                fut.cancel()
        try:
            await self.km.shutdown_kernel(now=True)
        except Exception as err:
            log("kernel shutdown failed", error=repr(err))
