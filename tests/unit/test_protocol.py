"""The wire format: one strict-JSON object per line, versioned, with known ops only."""

from __future__ import annotations

import json
import math

import pytest

from gpusched.errors import ProtocolError
from gpusched.protocol import (
    MAX_LINE_BYTES,
    OPS,
    VERSION,
    decode_request,
    decode_response,
    encode,
    error_response,
    jsonable,
    ok_response,
)


def test_encode_is_one_compact_newline_terminated_line() -> None:
    line = encode({"v": VERSION, "id": 1, "op": "hello", "args": {"a": [1, 2]}})
    assert line == b'{"v":1,"id":1,"op":"hello","args":{"a":[1,2]}}\n'
    assert line.count(b"\n") == 1


def test_encode_keeps_newlines_inside_strings_escaped() -> None:
    line = encode({"v": VERSION, "text": "two\nlines"})
    assert line.count(b"\n") == 1
    assert json.loads(line)["text"] == "two\nlines"


def test_non_finite_floats_become_null() -> None:
    line = encode({"v": VERSION, "x": math.nan, "y": [math.inf, -math.inf, 1.5],
                   "z": {"w": (math.nan, 2)}})
    assert b"NaN" not in line
    assert b"Infinity" not in line
    assert json.loads(line) == {"v": 1, "x": None, "y": [None, None, 1.5], "z": {"w": [None, 2]}}


def test_jsonable_turns_keys_into_strings_and_tuples_into_lists() -> None:
    assert jsonable({1: (1.0, "a"), "b": None}) == {"1": [1.0, "a"], "b": None}
    assert jsonable(math.nan) is None
    assert jsonable(0.25) == 0.25


def test_a_request_round_trips() -> None:
    line = encode({"v": VERSION, "id": 7, "op": "submit", "args": {"spec": {"name": "x"}}})
    assert decode_request(line) == (7, "submit", {"spec": {"name": "x"}})


def test_args_default_to_an_empty_object() -> None:
    assert decode_request(b'{"v": 1, "id": "a", "op": "gpus"}') == ("a", "gpus", {})


def test_every_known_op_is_accepted() -> None:
    assert {"hello", "submit", "gpus", "cancel"} <= OPS
    for op in OPS:
        assert decode_request(encode({"v": VERSION, "id": 1, "op": op}))[1] == op


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_another_protocol_version_is_refused(version: object) -> None:
    line = json.dumps({"v": version, "id": 1, "op": "hello"}).encode()
    with pytest.raises(ProtocolError, match="unsupported protocol version") as info:
        decode_request(line)
    assert repr(version) in str(info.value)
    assert f"speaks {VERSION}" in str(info.value)


def test_a_missing_version_is_refused() -> None:
    with pytest.raises(ProtocolError, match="unsupported protocol version None"):
        decode_request(b'{"id": 1, "op": "hello"}')


def test_an_unknown_op_is_refused_with_the_known_ones_listed() -> None:
    with pytest.raises(ProtocolError, match="unknown op 'launch'") as info:
        decode_request(b'{"v": 1, "id": 1, "op": "launch"}')
    assert "submit" in str(info.value)
    with pytest.raises(ProtocolError, match="unknown op None"):
        decode_request(b'{"v": 1, "id": 1}')
    with pytest.raises(ProtocolError, match="unknown op 3"):
        decode_request(b'{"v": 1, "id": 1, "op": 3}')


@pytest.mark.parametrize("line", [b"[1, 2]", b'"hello"', b"42", b"null"])
def test_a_message_that_is_not_an_object_is_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError, match="must be a JSON object"):
        decode_request(line)
    with pytest.raises(ProtocolError, match="must be a JSON object"):
        decode_response(line)


@pytest.mark.parametrize("line", [b"{not json", b"", b"\xff\xfe{}", b'{"v": 1'])
def test_garbage_is_refused_as_not_json(line: bytes) -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        decode_request(line)


def test_args_must_be_an_object() -> None:
    with pytest.raises(ProtocolError, match="'args' must be a JSON object"):
        decode_request(b'{"v": 1, "id": 1, "op": "show", "args": [1]}')


def test_responses_round_trip() -> None:
    ok = decode_response(encode(ok_response(3, {"id": "e1", "score": math.nan})))
    assert ok == {"v": VERSION, "id": 3, "ok": True, "result": {"id": "e1", "score": None}}
    err = decode_response(encode(error_response(4, "not_found", "no experiment 'x'")))
    assert err == {"v": VERSION, "id": 4, "ok": False,
                   "error": {"code": "not_found", "message": "no experiment 'x'"}}
    detailed = error_response(5, "invalid_experiment", "2 problems", details=["a", "b"])
    assert detailed["error"]["details"] == ["a", "b"]


def test_a_response_must_carry_ok() -> None:
    with pytest.raises(ProtocolError, match="must carry 'ok'"):
        decode_response(b'{"v": 1, "id": 1, "result": 3}')
    with pytest.raises(ProtocolError, match="must carry 'ok'"):
        decode_response(b'{"v": 1, "id": 1, "ok": "yes"}')
    with pytest.raises(ProtocolError, match="unsupported protocol version"):
        decode_response(b'{"v": 2, "id": 1, "ok": true}')


def test_the_line_bound_is_four_mebibytes() -> None:
    assert MAX_LINE_BYTES == 4 * 1024 * 1024
    assert VERSION == 1
