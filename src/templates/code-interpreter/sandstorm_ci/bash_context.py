"""A bash context: one persistent shell, each run ended by a random marker on stdout and stderr."""
from __future__ import annotations

import asyncio
import codecs
import os
import re
import secrets
import shlex
import signal
import time
from typing import Any, Optional

from .config import INTERRUPT_GRACE_S, KEEPALIVE_S
from .context import Context, Emit, RunEnded
from .http_conn import ClientGone
from .http_reply import Stream
from .log import log, now_iso

SHELL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""Names bash takes for variables (env_vars of a bash run are checked against it)."""


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
