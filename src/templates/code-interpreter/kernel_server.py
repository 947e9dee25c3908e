#!/usr/bin/python3
"""
Entry point of the code interpreter server (the package sandstorm_ci beside this file). The
template runs it as `python3 -I /opt/sandstorm/code-interpreter/kernel_server.py [--host H]
[--port P] [--cwd D]`, as the sandbox user with cwd /home/user.

Why -I and the insertion below: the sandbox's user owns its cwd and may set PYTHONPATH or install
packages in ~/.local; any of them could shadow our modules or jupyter_client's with a file of the
same name. -I (isolated mode) leaves all three off sys.path, and since Python 3.11 this script's own
directory too, so it is put back here, first and by its absolute, resolved path. The environment
itself is left as it is: kernels are started with it and see the user's PYTHONPATH as before.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(os.path.abspath(__file__))))

from sandstorm_ci.main import main  # noqa: E402 — only once the path above is set

if __name__ == "__main__":
    main()
