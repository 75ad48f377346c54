"""The wire format between clients and the daemon (documented in docs/protocol.md).

One JSON object per line, each way, over a Unix stream socket. A request is
``{"v": 1, "id": 7, "op": "submit", "args": {...}}``; its response carries the same ``id`` and
either ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"code": ..., "message": ...}}``.
Lines are bounded (``MAX_LINE_BYTES``) so that a garbage or hostile client cannot make the
daemon buffer without limit.
"""

from __future__ import annotations

import json
import math
from typing import Any

from gpusched.errors import ProtocolError

__all__ = [
    "VERSION",
    "MAX_LINE_BYTES",
    "OPS",
    "encode",
    "decode_request",
    "decode_response",
    "ok_response",
    "error_response",
    "jsonable",
]

VERSION = 1
MAX_LINE_BYTES = 4 * 1024 * 1024
OPS = frozenset(
    {"hello", "submit", "experiments", "trials", "show", "best", "cancel", "gpus", "trial_files",
     "wait"}
)


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats turned into ``None``: strict JSON for every language."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def encode(message: dict[str, Any]) -> bytes:
    """One message as a line of strict JSON (no NaN), newline-terminated."""
    return json.dumps(jsonable(message), separators=(",", ":"), allow_nan=False).encode() + b"\n"


def _load_object(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("a message must be a JSON object")
    version = obj.get("v")
    if version != VERSION:
        raise ProtocolError(
            f"unsupported protocol version {version!r} (this daemon speaks {VERSION})"
        )
    return obj


def decode_request(line: bytes) -> tuple[Any, str, dict[str, Any]]:
    """Parse a request line into ``(id, op, args)``; raise ProtocolError saying what is wrong."""
    obj = _load_object(line)
    op = obj.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise ProtocolError(f"unknown op {op!r} (known: {', '.join(sorted(OPS))})")
    args = obj.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("'args' must be a JSON object")
    return obj.get("id"), op, args


def decode_response(line: bytes) -> dict[str, Any]:
    """Parse a response line; raise ProtocolError if it is not a well-formed response."""
    obj = _load_object(line)
    if not isinstance(obj.get("ok"), bool):
        raise ProtocolError("a response must carry 'ok'")
    return obj


def ok_response(request_id: Any, result: Any) -> dict[str, Any]:
    """A success response to request ``request_id``."""
    return {"v": VERSION, "id": request_id, "ok": True, "result": result}


def error_response(
    request_id: Any, code: str, message: str, details: Any = None
) -> dict[str, Any]:
    """A failure response: ``code`` is a stable word, ``message`` a sentence for people."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"v": VERSION, "id": request_id, "ok": False, "error": error}
