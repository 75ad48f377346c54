"""The wire format between clients and the daemon (documented in docs/protocol.md).

One JSON object per line, each way, over a Unix stream socket. A request is
``{"v": 1, "id": 7, "op": "submit", "args": {...}}``; its response carries the same ``id`` and
either ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"code": ..., "message": ...}}``.
Lines are bounded (``MAX_LINE_BYTES``) so that a garbage or hostile client cannot make the
daemon buffer without limit, and requests are nested at most ``MAX_DEPTH`` deep and hold only
valid Unicode, so that no request can exhaust the daemon's stack or reach its files as text that
cannot be encoded.
"""

from __future__ import annotations

import json
import math

from gpusched.errors import ProtocolError

TYPE_CHECKING = False  # typing is imported for the type checker only: the CLI starts faster
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "VERSION",
    "MAX_LINE_BYTES",
    "MAX_DEPTH",
    "OPS",
    "encode",
    "decode_request",
    "load_request",
    "request_id",
    "check_request",
    "decode_response",
    "ok_response",
    "error_response",
    "jsonable",
]

VERSION = 1
MAX_LINE_BYTES = 4 * 1024 * 1024
# How deeply a request's arrays and objects may nest (the request object itself is level 1).
MAX_DEPTH = 32
_REPR_CHARS = 60  # how much of a refused value an error message quotes
OPS = frozenset(
    {"hello", "submit", "experiments", "trials", "show", "best", "cancel", "gpus", "trial_files",
     "wait", "resume", "reports"}
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


def _short_repr(value: Any) -> str:
    """``repr(value)``, cut to a readable length (a refused value may be megabytes long)."""
    try:
        text = repr(value)
    except RecursionError:  # a version or op nested deep enough to exhaust the stack
        text = f"<a deeply nested {type(value).__name__}>"
    return text if len(text) <= _REPR_CHARS else text[: _REPR_CHARS - 3] + "..."


def _load_object(line: bytes) -> dict[str, Any]:
    """The line's JSON object, its version checked."""
    obj = load_request(line)
    _check_version(obj)
    return obj


def load_request(line: bytes) -> dict[str, Any]:
    """The line as a JSON object, nothing else checked yet; ProtocolError when it is not one
    (not UTF-8, not JSON, not an object): for a request, a refusal with no id to echo."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"not JSON: the line is not UTF-8 ({exc})") from None
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ProtocolError(
            f"not JSON: nested too deeply to parse (a request nests at most {MAX_DEPTH} levels)"
        ) from None
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("a message must be a JSON object")
    return obj


def _check_version(obj: dict[str, Any]) -> None:
    version = obj.get("v")
    if type(version) is not int or version != VERSION:  # not true, nor 1.0
        raise ProtocolError(
            f"unsupported protocol version {_short_repr(version)} (this daemon speaks {VERSION})"
        )


def _check_values(value: Any, depth: int = 1) -> None:
    """Refuse nesting deeper than MAX_DEPTH and strings that are not valid Unicode; ``value``
    is at level ``depth`` of the request (the request object is level 1).

    Iterative, so that checking a hostile request cannot itself exhaust the stack.
    """
    stack: list[tuple[Any, int]] = [(value, depth)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ProtocolError(
                    f"not valid Unicode: the string {_short_repr(value)} holds a lone "
                    f"surrogate (\\ud800-\\udfff escape)"
                ) from None
            continue
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise ProtocolError(f"the request is nested more than {MAX_DEPTH} levels deep")
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)


def request_id(request: dict[str, Any]) -> Any:
    """The id to echo in the response to ``request`` (from :func:`load_request`), whatever
    else is wrong with it: its ``id`` when that is a value the protocol allows (nested within
    MAX_DEPTH, valid Unicode), else None."""
    value = request.get("id")
    try:
        _check_values(value, depth=2)
    except ProtocolError:
        return None
    return value


def check_request(request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(op, args)`` of a request from :func:`load_request`; ProtocolError saying what is
    wrong (its version, its values, an unknown op, args that are not an object)."""
    _check_version(request)
    _check_values(request)
    op = request.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise ProtocolError(f"unknown op {_short_repr(op)} (known: {', '.join(sorted(OPS))})")
    args = request.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("'args' must be a JSON object")
    return op, args


def decode_request(line: bytes) -> tuple[Any, str, dict[str, Any]]:
    """Parse a request line into ``(id, op, args)``; raise ProtocolError saying what is wrong
    (the daemon uses the three steps, :func:`load_request`, :func:`request_id` and
    :func:`check_request`, to echo the id of a request it refuses)."""
    request = load_request(line)
    op, args = check_request(request)
    return request.get("id"), op, args


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
