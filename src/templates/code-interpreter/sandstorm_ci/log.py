"""Structured log lines on stderr, and timestamps."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any


def log(event: str, **fields: Any) -> None:
    """One JSON line per event on stderr (the sandbox's log of its start command)."""
    record = {"time": datetime.now(timezone.utc).isoformat(), "msg": event, **fields}
    print(json.dumps(record, default=str), file=sys.stderr, flush=True)


def now_iso() -> str:
    """The time now, as the ISO 8601 UTC timestamps of output lines."""
    return datetime.now(timezone.utc).isoformat()
