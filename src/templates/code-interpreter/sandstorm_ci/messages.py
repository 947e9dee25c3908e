"""The NDJSON lines of a run as E2B's server writes them: results, errors, outputs made JSON-safe."""
from __future__ import annotations

import json
import math
from typing import Any

from .config import ANSI
from .log import now_iso


def strip_ansi(text: Any) -> str:
    """The text without terminal colour codes; anything not a string as ""."""
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
    """One NDJSON line, with NaN and infinities as null when the plain encoding refuses them."""
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)
    except ValueError:
        text = json.dumps(json_safe(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)
    return (text + "\n").encode("utf-8", errors="surrogateescape")


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


def stamp(msg: dict) -> str:
    """The kernel's own timestamp of an output message, else now."""
    date = msg.get("header", {}).get("date")
    return date.isoformat() if hasattr(date, "isoformat") else str(date or now_iso())


def error_line(content: dict) -> dict:
    """A kernel's error as E2B's `error` line, colour codes removed."""
    traceback = content.get("traceback") or []
    return {
        "type": "error",
        "name": strip_ansi(content.get("ename", "")),
        "value": strip_ansi(content.get("evalue", "")),
        "traceback": strip_ansi("\n".join(t for t in traceback if isinstance(t, str))),
    }
