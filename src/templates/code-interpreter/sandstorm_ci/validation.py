"""Request bodies checked once, at the edge: a 400 that names the field, what was expected and what came."""
from __future__ import annotations

import json
from typing import Any, Optional

from .config import LANGUAGES
from .http_conn import HttpError


def normalize_language(value: Any, field: str) -> str:
    """The language asked for, by its served name (python when none); 400 for one not served."""
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
    """The body as a JSON object ({} when empty); 400 for anything else."""
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
    """A field that is absent, null or a string; 400 for another type."""
    value = data.get(field)
    if value is not None and not isinstance(value, str):
        raise HttpError(400, f"{field}: expected a string, got {json.dumps(value)[:60]}")
    return value


def env_vars_of(data: dict) -> dict[str, str]:
    """The run's env_vars: names without "=" or NUL, string values without NUL."""
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
