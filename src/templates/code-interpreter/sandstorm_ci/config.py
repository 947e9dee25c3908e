"""Limits and timings of the server, in one place."""
import re

LANGUAGES = ("python", "bash")
DEFAULT_PORT = 49999
KEEPALIVE_S = 5.0
"""A line every few seconds of silence, as E2B's server sends, so idle proxies keep the stream."""
INTERRUPT_GRACE_S = 5.0
"""How long an interrupted run may take to stop before its kernel or shell is restarted instead."""
INTERRUPT_RETRY_S = 0.5
"""How often an interrupt is sent again while the interrupted run has not ended."""
KERNEL_START_TIMEOUT_S = 60.0
LIVENESS_CHECK_S = 1.0
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_PIPELINED_BYTES = 1024 * 1024
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
