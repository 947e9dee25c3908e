#!/usr/bin/python3
"""
Sandstorm's code interpreter server: the HTTP API that @e2b/code-interpreter speaks (port 49999),
run inside a `code-interpreter-v1` sandbox by the template's start command.

    POST /execute                {code, context_id?, language?, env_vars?} -> NDJSON stream
    POST /contexts               {language?, cwd?} -> {id, language, cwd}
    GET  /contexts               -> [{id, language, cwd}, ...]
    DELETE /contexts/<id>        POST /contexts/<id>/restart
    GET  /health                 200 once the default python kernel answers

Python runs in ipykernel kernels driven over ZeroMQ (jupyter_client); bash runs in one persistent
bash process per context, with a sentinel after each run. Only the standard library and Debian's
python3-jupyter-client / python3-ipykernel are used: one asyncio loop serves HTTP/1.1, reads the
kernels' sockets and watches each client's connection, so a client that goes away mid-run is seen
at once (even while the code prints nothing) and its kernel is interrupted before the next run.
"""
from __future__ import annotations

import argparse
import asyncio
import codecs
import json
import math
import os
import re
import secrets
import shlex
import signal
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import unquote, urlsplit

LANGUAGES = ("python", "bash")
DEFAULT_PORT = 49999
KEEPALIVE_S = 5.0
"""A line every few seconds of silence, as E2B's server sends, so idle proxies keep the stream."""
INTERRUPT_GRACE_S = 5.0
"""How long an interrupted run may take to stop before its kernel or shell is restarted instead."""
KERNEL_START_TIMEOUT_S = 60.0
LIVENESS_CHECK_S = 1.0
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_PIPELINED_BYTES = 1024 * 1024
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def log(event: str, **fields: Any) -> None:
    """One JSON line per event on stderr (the sandbox's log of its start command)."""
    record = {"time": datetime.now(timezone.utc).isoformat(), "msg": event, **fields}
    print(json.dumps(record, default=str), file=sys.stderr, flush=True)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def strip_ansi(text: Any) -> str:
    return ANSI.sub("", text) if isinstance(text, str) else ""


def json_safe(value: Any) -> Any:
    """NaN and infinities as null: JSON.parse, and so the SDK, refuses them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def ndjson(obj: dict) -> bytes:
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)
    except ValueError:
        text = json.dumps(json_safe(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)
    return (text + "\n").encode("utf-8", errors="surrogateescape")


# ---------------------------------------------------------------------------------------------
# HTTP/1.1
# ---------------------------------------------------------------------------------------------


class HttpError(Exception):
    """An answer with a status and a plain-text message (the SDK shows 404 and 502 bodies)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientGone(Exception):
    """The client closed its connection, or a write to it failed."""


REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           411: "Length Required", 413: "Payload Too Large", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


class Request:
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


CORS = "Access-Control-Allow-Origin: *\r\n"


def response_head(status: int, headers: dict[str, str], keep_alive: bool) -> bytes:
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


# ---------------------------------------------------------------------------------------------
# Contexts
# ---------------------------------------------------------------------------------------------

Emit = Callable[[dict], Awaitable[None]]


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


# ---------------------------------------------------------------------------------------------
# Python: ipykernel
# ---------------------------------------------------------------------------------------------

# Run silently in each new kernel: rich formats as E2B's kernels give them (dicts and lists as
# application/json, DataFrames as e2b/data), and the helpers that set per-run env vars and undo them.
KERNEL_BOOT = r'''
def _sandstorm_boot():
    import json, math, os, sys, types
    from IPython.core.formatters import BaseFormatter, JSONFormatter
    from traitlets import ObjectName, Unicode

    def finite(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, list):
            return [finite(x) for x in v]
        return v

    def plain(o):
        if hasattr(o, "tolist"):
            return o.tolist()
        if hasattr(o, "isoformat"):
            return o.isoformat()
        raise TypeError(type(o).__name__)

    class DictJSONFormatter(JSONFormatter):
        def __call__(self, obj):
            if isinstance(obj, (dict, list)):
                try:
                    return finite(json.loads(json.dumps(obj, default=plain)))
                except (TypeError, ValueError):
                    return None
            return super().__call__(obj)

    class DataFrameFormatter(BaseFormatter):
        format_type = Unicode("e2b/data")
        print_method = ObjectName("_repr_e2b_data_")
        _return_type = (dict, str)

        def __call__(self, obj):
            pandas = sys.modules.get("pandas")
            if pandas is None or not isinstance(obj, pandas.DataFrame):
                return super().__call__(obj)
            columns = obj.to_dict(orient="list")
            out = {}
            for key, values in columns.items():
                out[str(key)] = [v.isoformat() if isinstance(v, pandas.Timestamp) else v for v in values]
            try:
                return finite(json.loads(json.dumps(out, default=plain)))
            except (TypeError, ValueError):
                return None

    ip = get_ipython()
    formatters = ip.display_formatter.formatters
    formatters["application/json"] = DictJSONFormatter(parent=ip.display_formatter)
    formatters["e2b/data"] = DataFrameFormatter(parent=ip.display_formatter)

    saved = []
    def push_env(env):
        saved.append({k: os.environ.get(k) for k in env})
        os.environ.update(env)
    def pop_env():
        for k, v in (saved.pop() if saved else {}).items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    helpers = types.ModuleType("_sandstorm_ci")
    helpers.push_env, helpers.pop_env = push_env, pop_env
    sys.modules["_sandstorm_ci"] = helpers

_sandstorm_boot()
del _sandstorm_boot
'''

# Command-line config of each kernel: no colour codes in tracebacks, whole collections in text/plain
# (as E2B's kernels), history in memory only.
KERNEL_ARGS = [
    "--InteractiveShell.colors=NoColor",
    "--PlainTextFormatter.max_seq_length=0",
    "--HistoryManager.hist_file=:memory:",
]

MIME_FIELDS = {
    "text/plain": "text", "text/html": "html", "text/markdown": "markdown", "image/svg+xml": "svg",
    "image/png": "png", "image/jpeg": "jpeg", "application/pdf": "pdf", "text/latex": "latex",
    "application/json": "json", "application/javascript": "javascript", "e2b/data": "data", "e2b/chart": "chart",
}


def result_line(data: dict, is_main: bool) -> dict:
    """A display bundle as E2B's `result` line: known MIME types under their names, the rest as extra."""
    out: dict[str, Any] = {"type": "result", "is_main_result": is_main}
    extra = {}
    for mime, value in data.items():
        field = MIME_FIELDS.get(mime)
        if field:
            out[field] = value
        else:
            extra[mime] = value
    text = out.get("text")
    # E2B gives a string result without its quotes: '...' or "..." -> ...
    if isinstance(text, str) and len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        out["text"] = text[1:-1]
    if extra:
        # The Python SDK reads `extra`; the JS SDK takes every field it does not know as one.
        out["extra"] = extra
        for mime, value in extra.items():
            out.setdefault(mime, value)
    return out


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
        content = {"code": code, "silent": silent, "store_history": not silent, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": not silent}
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


class PythonContext(Context):
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
            await kernel.interrupt()
            deadline = time.monotonic() + INTERRUPT_GRACE_S
            while True:
                msg = await asyncio.wait_for(queue.get(), max(0.01, deadline - time.monotonic()))
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


def stamp(msg: dict) -> str:
    date = msg.get("header", {}).get("date")
    return date.isoformat() if hasattr(date, "isoformat") else str(date or now_iso())


def error_line(content: dict) -> dict:
    traceback = content.get("traceback") or []
    return {
        "type": "error",
        "name": strip_ansi(content.get("ename", "")),
        "value": strip_ansi(content.get("evalue", "")),
        "traceback": strip_ansi("\n".join(t for t in traceback if isinstance(t, str))),
    }


# ---------------------------------------------------------------------------------------------
# Bash: a persistent shell per context
# ---------------------------------------------------------------------------------------------

SHELL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SentinelStream:
    """One pipe's text, passed on until a run's end marker (a random token) comes through it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""
        self.token: Optional[str] = None

    def begin(self, token: str) -> None:
        self.token = token
        self.pending = ""

    def feed(self, data: bytes) -> tuple[str, Optional[str]]:
        """(text to pass on, the rest of the marker's line once the marker came, else None)."""
        self.pending += self.decoder.decode(data)
        if self.token is None:
            self.pending = ""
            return "", None
        i = self.pending.find(self.token)
        if i >= 0:
            nl = self.pending.find("\n", i)
            if nl < 0:
                return self._release(i), None
            out, tail = self.pending[:i], self.pending[i + len(self.token):nl]
            self.pending, self.token = "", None
            return out, tail
        return self._release(max(0, len(self.pending) - len(self.token) + 1)), None

    def _release(self, n: int) -> str:
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


class BashContext(Context):
    """A bash process whose state (variables, functions, cwd) carries over between runs. Each run's
    code is sourced from a file with stdin at /dev/null, then the shell prints a token with the exit
    status on stdout and a token on stderr: the run ends when both came. SIGINT to the shell's
    process group stops a run (a trap returns from the sourced file); if that does not stop it, the
    group is killed and a new shell started."""

    language = "bash"

    def __init__(self, cid: str, cwd: str, runtime_dir: str) -> None:
        super().__init__(cid, cwd)
        self.dir = os.path.join(runtime_dir, f"bash-{cid}")
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.readers: list[asyncio.Task] = []
        self.queue: Optional[asyncio.Queue] = None
        self.streams = {"stdout": SentinelStream("stdout"), "stderr": SentinelStream("stderr")}
        self.count = 0

    async def start(self) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            "bash", "--noprofile", "--norc", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=self.cwd, start_new_session=True)
        proc = self.proc
        self.readers = [asyncio.create_task(self._pump(proc, proc.stdout, "stdout")),
                        asyncio.create_task(self._pump(proc, proc.stderr, "stderr"))]

    async def _pump(self, proc: asyncio.subprocess.Process, pipe: Any, name: str) -> None:
        while True:
            data = await pipe.read(65536)
            if proc is not self.proc:
                return
            queue = self.queue
            if not data:
                if queue is not None:
                    queue.put_nowait(("eof", name))
                return
            if queue is not None:
                queue.put_nowait(("data", name, data))
            else:
                self.streams[name].feed(data)  # between runs (a background job): dropped

    async def run(self, code: str, env: dict[str, str], emit: Emit, stream: Stream) -> None:
        if self.proc is None or self.proc.returncode is not None:
            await self._new_shell()
        proc = self.proc
        assert proc is not None and proc.stdin is not None
        self.count += 1
        await emit({"type": "number_of_executions", "execution_count": self.count})
        script = os.path.join(self.dir, "run.sh")
        with open(script, "w", encoding="utf-8") as f:
            f.write(code if code.endswith("\n") else code + "\n")
        token = "__sandstorm_" + secrets.token_hex(12) + "__"
        for s in self.streams.values():
            s.begin(token)
        queue: asyncio.Queue = asyncio.Queue()
        self.queue = queue
        self._abort = lambda reason: queue.put_nowait(("abort", reason))
        unsubscribe = stream.on_gone(lambda: queue.put_nowait(("gone",)))
        set_env, unset_env = env_snippets(env)
        line = (f"{set_env}trap 'return 130 2>/dev/null' INT; source {shlex.quote(script)} </dev/null; "
                f"__sandstorm_rc=$?; trap - INT; {unset_env}"
                f"printf '%s%s\\n' {token} \"$__sandstorm_rc\"; printf '%s\\n' {token} >&2\n")
        try:
            proc.stdin.write(line.encode())
            await proc.stdin.drain()
        except (ConnectionError, OSError):
            pass  # the shell is gone: its pipes' EOF ends the run below
        try:
            try:
                status = await self._collect(queue, emit)
            except ClientGone:
                status = None
            if status is None:
                await self._stop(queue)
            elif status != 0:
                await emit({"type": "error", "name": "NonZeroExitCode", "value": str(status),
                            "traceback": f"bash: the last command exited with code {status}"})
        finally:
            unsubscribe()
            self._abort = None
            self.queue = None

    async def _collect(self, queue: asyncio.Queue, emit: Emit) -> Optional[int]:
        """Outputs until both markers came: the exit status; None when the client went away."""
        status: Optional[int] = None
        done = {"stdout": False, "stderr": False}
        while not all(done.values()):
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                await emit({"type": "keepalive"})
                continue
            if item[0] == "gone":
                return None
            if item[0] == "abort":
                raise item[1]
            if item[0] == "eof":
                code = await self._reap()
                raise RunEnded("ShellExited", f"bash exited with code {code} (the code ran `exit`?); the context starts a new shell at its next run, without the old state")
            _, name, data = item
            text, tail = self.streams[name].feed(data)
            if text:
                await emit({"type": name, "text": text, "timestamp": now_iso()})
            if tail is not None:
                done[name] = True
                if name == "stdout":
                    status = int(tail) if tail.strip().lstrip("-").isdigit() else 1
        return status

    async def _stop(self, queue: asyncio.Queue) -> None:
        proc = self.proc
        if proc is None:
            return
        log("interrupting run", context=self.id)
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        seen = {"stdout": False, "stderr": False}
        deadline = time.monotonic() + INTERRUPT_GRACE_S
        try:
            while not all(seen.values()):
                item = await asyncio.wait_for(queue.get(), max(0.01, deadline - time.monotonic()))
                if item[0] == "eof":
                    break
                if item[0] == "data":
                    _, tail = self.streams[item[1]].feed(item[2])
                    if tail is not None:
                        seen[item[1]] = True
            else:
                return
        except asyncio.TimeoutError:
            pass
        log("interrupt did not stop the run: starting a new shell", context=self.id)
        await self._kill()

    async def _reap(self) -> Optional[int]:
        proc = self.proc
        if proc is None:
            return None
        try:
            return await asyncio.wait_for(proc.wait(), 2)
        except asyncio.TimeoutError:
            await self._kill()
            return None

    async def _kill(self) -> None:
        proc, self.proc = self.proc, None
        for task in self.readers:
            task.cancel()
        self.readers = []
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()

    async def _new_shell(self) -> None:
        await self._kill()
        self.streams = {"stdout": SentinelStream("stdout"), "stderr": SentinelStream("stderr")}
        await self.start()

    async def restart(self) -> None:
        self.count = 0
        await self._new_shell()

    async def close(self) -> None:
        self.closed = True
        await self._kill()
        try:
            for name in os.listdir(self.dir):
                os.unlink(os.path.join(self.dir, name))
            os.rmdir(self.dir)
        except OSError:
            pass


def env_snippets(env: dict[str, str]) -> tuple[str, str]:
    """Shell code that exports the run's env vars, and code that puts back what was there before."""
    set_parts, unset_parts = [], []
    for i, (key, value) in enumerate(env.items()):
        saved, had = f"__sandstorm_env_{i}", f"__sandstorm_had_{i}"
        set_parts.append(f'if [ -n "${{{key}+x}}" ]; then {saved}=${key}; {had}=1; else {had}=0; fi; export {key}={shlex.quote(value)}; ')
        unset_parts.append(f'if [ "${had}" = 1 ]; then export {key}="${saved}"; else unset {key}; fi; unset {saved} {had}; ')
    return "".join(set_parts), "".join(unset_parts)


# ---------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------


def normalize_language(value: Any, field: str) -> str:
    if value is None:
        return "python"
    if not isinstance(value, str):
        raise HttpError(400, f"{field}: expected a string such as \"python\", got {json.dumps(value)[:60]}")
    language = value.strip().lower()
    language = {"python3": "python", "sh": "bash", "js": "javascript", "ts": "typescript"}.get(language, language)
    if language not in LANGUAGES:
        raise HttpError(400, f"{field}: {value!r} is not served in this sandbox (it has no such kernel); expected one of {', '.join(LANGUAGES)}")
    return language


def parse_json_object(body: bytes, example: str) -> dict:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise HttpError(400, f"body: expected JSON such as {example}, got invalid JSON ({err})") from None
    if not isinstance(data, dict):
        raise HttpError(400, f"body: expected a JSON object such as {example}, got {type(data).__name__}")
    return data


def optional_string(data: dict, field: str) -> Optional[str]:
    value = data.get(field)
    if value is not None and not isinstance(value, str):
        raise HttpError(400, f"{field}: expected a string, got {json.dumps(value)[:60]}")
    return value


def env_vars_of(data: dict) -> dict[str, str]:
    value = data.get("env_vars")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HttpError(400, f"env_vars: expected an object of names to strings, got {json.dumps(value)[:60]}")
    for key, v in value.items():
        if not key or "=" in key or "\0" in key:
            raise HttpError(400, f"env_vars: name {key!r}: expected a non-empty name without '=' or NUL")
        if not isinstance(v, str) or "\0" in v:
            raise HttpError(400, f"env_vars.{key}: expected a string without NUL, got {json.dumps(v)[:60]}")
    return value


class Server:
    def __init__(self, default_cwd: str) -> None:
        self.default_cwd = default_cwd
        self.runtime_dir = tempfile.mkdtemp(prefix="sandstorm-ci-")
        self.contexts: dict[str, Context] = {}
        self.defaults: dict[str, str] = {}
        self.default_lock = asyncio.Lock()
        self.ready = False
        self.connections: set[asyncio.Task] = set()

    def _new_context(self, language: str, cwd: str) -> Context:
        cid = str(uuid.uuid4())
        if language == "python":
            return PythonContext(cid, cwd, self.runtime_dir)
        return BashContext(cid, cwd, self.runtime_dir)

    async def create_context(self, language: str, cwd: str) -> Context:
        if not os.path.isdir(cwd):
            raise HttpError(400, f"cwd: {cwd!r} is not a directory in the sandbox")
        ctx = self._new_context(language, cwd)
        await ctx.start()
        self.contexts[ctx.id] = ctx
        log("context created", context=ctx.id, language=language, cwd=cwd)
        return ctx

    async def default_context(self, language: str) -> Context:
        async with self.default_lock:
            cid = self.defaults.get(language)
            if cid and cid in self.contexts:
                return self.contexts[cid]
            ctx = await self.create_context(language, self.default_cwd)
            self.defaults[language] = ctx.id
            return ctx

    def find(self, cid: str) -> Context:
        ctx = self.contexts.get(cid)
        if ctx is None:
            raise HttpError(404, f"Context {cid} not found")
        return ctx

    # -- routes ---------------------------------------------------------------------------

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
                return Reply(200, [c.describe() for c in self.contexts.values()])
            if method == "POST":
                data = parse_json_object(req.body, '{"language": "python", "cwd": "/home/user"}')
                language = normalize_language(data.get("language"), "language")
                cwd = optional_string(data, "cwd") or self.default_cwd
                ctx = await self.create_context(language, cwd)
                return Reply(200, ctx.describe())
            raise HttpError(405, "/contexts: expected GET or POST")
        match = re.fullmatch(r"/contexts/([^/]+)(/restart)?", path)
        if match:
            cid, restart = match.group(1), match.group(2)
            if restart:
                if method != "POST":
                    raise HttpError(405, f"{path}: expected POST")
                await self.restart_context(self.find(cid))
                return Reply(204)
            if method != "DELETE":
                raise HttpError(405, f"{path}: expected DELETE")
            await self.remove_context(self.find(cid))
            return Reply(204)
        raise HttpError(404, f"{method} {path}: no such route; expected /execute, /contexts or /health")

    async def restart_context(self, ctx: Context) -> None:
        if ctx.pending_restart is None:
            ctx.pending_restart = asyncio.get_running_loop().create_future()
        done = ctx.pending_restart
        ctx.abort_run(RunEnded("ContextRestarting", "Context was restarted"))
        if not ctx.lock.locked():
            async with ctx.lock:
                await ctx.settle()
        await done
        log("context restarted", context=ctx.id)

    async def remove_context(self, ctx: Context) -> None:
        self.contexts.pop(ctx.id, None)
        ctx.abort_run(RunEnded("ContextRemoved", "Context was removed"))
        ctx.closed = True
        async with ctx.lock:
            await ctx.close()
        log("context removed", context=ctx.id)

    async def execute(self, req: Request, conn: Connection) -> None:
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
            ctx = self.find(context_id)
        else:
            ctx = await self.default_context(normalize_language(language, "language"))
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

    # -- connections ----------------------------------------------------------------------

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
                    reply = await self.handle(req, conn)
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

    async def close(self) -> None:
        for ctx in list(self.contexts.values()):
            await ctx.close()
        try:
            os.rmdir(self.runtime_dir)
        except OSError:
            pass


async def main() -> None:
    parser = argparse.ArgumentParser(description="Sandstorm's code interpreter server (the API of @e2b/code-interpreter)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--cwd", default=os.getcwd(), help="where new contexts start (default: this process's cwd)")
    args = parser.parse_args()

    server = Server(args.cwd)
    tcp = await asyncio.start_server(server.serve_connection, args.host, args.port, reuse_address=True)
    log("listening", host=args.host, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    try:
        await server.default_context("python")
    except Exception as err:
        log("the default python kernel did not start", error=repr(err))
        tcp.close()
        await server.close()
        sys.exit(1)
    server.ready = True
    log("ready", ms=round((time.monotonic() - started) * 1000))
    await stop.wait()
    tcp.close()
    await server.close()


if __name__ == "__main__":
    asyncio.run(main())
