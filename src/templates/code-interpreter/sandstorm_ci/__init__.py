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
