"""The server's start: listen, start the default python kernel, answer /health once it is up, stop on SIGTERM."""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time

from .config import DEFAULT_PORT
from .connections import serve_connection
from .log import log
from .registry import Contexts
from .routes import Routes


async def serve() -> None:
    """Parses the command line and serves until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description="Sandstorm's code interpreter server (the API of @e2b/code-interpreter)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--cwd", default=os.getcwd(), help="where new contexts start (default: this process's cwd)")
    args = parser.parse_args()

    contexts = Contexts(args.cwd)
    routes = Routes(contexts)
    tcp = await asyncio.start_server(lambda r, w: serve_connection(routes, r, w), args.host, args.port, reuse_address=True)
    log("listening", host=args.host, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    try:
        await contexts.default("python")
    except Exception as err:
        log("the default python kernel did not start", error=repr(err))
        tcp.close()
        await contexts.close()
        sys.exit(1)
    routes.ready = True
    log("ready", ms=round((time.monotonic() - started) * 1000))
    await stop.wait()
    tcp.close()
    await contexts.close()


def main() -> None:
    """Runs the server in a new event loop."""
    asyncio.run(serve())
