"""Property tests of the wire protocol: any line is a request or a ProtocolError, never a crash,
and the server's checks of each op's arguments answer any arguments with a proper refusal.

The daemon end to end is fuzzed in tests/integration/test_bad_requests.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any, cast

import anyio
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gpusched._daemon.scheduler import Scheduler
from gpusched._daemon.server import MAX_TRIAL_NUMBER_DIGITS, Server, _target
from gpusched.errors import ProtocolError, RequestError
from gpusched.protocol import (
    MAX_DEPTH,
    OPS,
    VERSION,
    decode_request,
    decode_response,
    encode,
    error_response,
    ok_response,
)

ARG_NAMES = ["experiment", "target", "trial", "sort", "limit", "n", "all", "timeout_s",
             "base_dir", "source"]
# Text that may hold lone surrogates: JSON spells them \ud800, and they are not Unicode.
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
ANY_TEXT = st.text(max_size=8) | st.text(SURROGATES | st.characters(max_codepoint=0x7F),
                                         min_size=1, max_size=6)
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70)
           | st.floats() | ANY_TEXT
           | st.sampled_from(["e1", "e1/0", "e1/x", "/", "-objective", "params.x", "", *OPS]))
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(ARG_NAMES) | ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)
REQUESTS = st.fixed_dictionaries(
    {"v": st.just(VERSION) | JSON, "op": st.sampled_from(sorted(OPS)) | JSON},
    optional={"id": JSON, "args": st.dictionaries(st.sampled_from(ARG_NAMES) | ANY_TEXT, JSON,
                                                  max_size=5) | JSON},
)


def depth(value: Any) -> int:
    """How deeply ``value`` nests arrays and objects (a scalar is 0)."""
    if isinstance(value, dict):
        return 1 + max((max(depth(k), depth(v)) for k, v in value.items()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def is_unicode(value: Any) -> bool:
    """Whether every string in ``value`` is valid Unicode (no lone surrogate)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(is_unicode(k) and is_unicode(v) for k, v in value.items())
    if isinstance(value, list):
        return all(is_unicode(v) for v in value)
    return True


def decodes_or_refuses(line: bytes) -> tuple[Any, str, dict[str, Any]] | None:
    """Decode ``line``: a well-formed request, or ProtocolError; anything else fails the test."""
    try:
        request_id, op, args = decode_request(line)
    except ProtocolError as exc:
        assert str(exc), "a refusal says what is wrong"
        return None
    assert op in OPS
    assert isinstance(args, dict)
    # What the daemon does with every request it takes: echo the id in its answer.
    echoed = decode_response(encode(ok_response(request_id, args)).rstrip(b"\n"))
    assert echoed["ok"] is True
    encode(error_response(request_id, "bad_request", "no"))
    return request_id, op, args


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_a_request_or_a_protocol_error(line: bytes) -> None:
    decodes_or_refuses(line)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json_value_is_a_request_or_a_protocol_error(value: Any) -> None:
    decodes_or_refuses(json.dumps(value).encode())


@settings(max_examples=250, deadline=None)
@given(REQUESTS)
def test_a_request_is_taken_exactly_when_it_is_well_formed(message: dict[str, Any]) -> None:
    line = json.dumps(message).encode()
    wire = json.loads(line)  # as the daemon reads it: "\\ud800\\udc00" is one valid character
    decoded = decodes_or_refuses(line)
    args = wire.get("args", {})
    well_formed = (type(wire["v"]) is int and wire["v"] == VERSION
                   and isinstance(wire["op"], str) and wire["op"] in OPS
                   and isinstance(args, dict) and depth(wire) <= MAX_DEPTH and is_unicode(wire))
    if well_formed:
        assert decoded is not None, message
        request_id, op, got_args = decoded
        assert op == wire["op"]
        assert json.dumps(got_args) == json.dumps(args)  # by text: NaN is not equal to itself
        assert json.dumps(request_id) == json.dumps(wire.get("id"))
    else:
        assert decoded is None, message


@settings(max_examples=200, deadline=None)
@given(REQUESTS, st.data())
def test_a_mangled_request_is_a_request_or_a_protocol_error(
    message: dict[str, Any], data: st.DataObject
) -> None:
    line = json.dumps(message).encode()
    start = data.draw(st.integers(0, len(line)))
    end = data.draw(st.integers(start, min(len(line), start + 8)))
    junk = data.draw(st.binary(max_size=6) | st.sampled_from([b"[", b"{", b'"', b"\\u", b"\xff"]))
    decodes_or_refuses(line[:start] + junk + line[end:])


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 3000), st.sampled_from(["id", "op", "v", "args"]),
       st.sampled_from(["[", '{"k":']))
def test_nesting_of_any_depth_is_refused_cleanly_past_the_limit(
    levels: int, where: str, opener: str
) -> None:
    closer = "]" if opener == "[" else "}"
    deep = opener * levels + ("1" if opener != "[" else "") + closer * levels
    fields = {"v": "1", "op": '"hello"', "id": "7"}
    fields[where] = deep if where != "args" else '{"x": ' + deep + "}"
    line = ("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}").encode()
    decoded = decodes_or_refuses(line)
    if where == "id" and levels + 1 <= MAX_DEPTH:
        assert decoded is not None and decoded[1] == "hello"
    elif where == "args" and levels + 2 <= MAX_DEPTH:
        assert decoded is not None and decoded[2]["x"] is not None
    elif where in ("id", "args"):  # nested past the limit: refused, saying why
        with pytest.raises(ProtocolError, match="nested"):
            decode_request(line)
    else:
        assert decoded is None  # no array or object is a version or an op


@settings(max_examples=100, deadline=None)
@given(st.text(SURROGATES, min_size=1, max_size=3), st.sampled_from(["id", "op", "key", "value"]))
def test_a_lone_surrogate_anywhere_is_refused(bad: str, where: str) -> None:
    assume(not is_unicode(json.loads(json.dumps(bad))))  # a high then a low one is a valid pair
    message: dict[str, Any] = {"v": 1, "id": 1, "op": "show", "args": {"target": "e1"}}
    if where in ("id", "op"):
        message[where] = bad
    elif where == "key":
        message["args"][bad] = 1
    else:
        message["args"]["target"] = f"e1{bad}"
    with pytest.raises(ProtocolError, match=r"not valid Unicode"):
        decode_request(json.dumps(message).encode())


def test_refusals_quote_at_most_a_short_piece_of_the_value() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_request(json.dumps({"v": 1, "op": "x" * 1_000_000}).encode())
    assert len(str(info.value)) < 300 and "unknown op 'xxx" in str(info.value)
    with pytest.raises(ProtocolError) as info:
        decode_request(json.dumps({"v": [[[[[[[[0]]]]]]]] * 50_000, "op": "hello"}).encode())
    assert len(str(info.value)) < 300 and "unsupported protocol version" in str(info.value)


# -- the server's checks of each op's arguments, without a daemon -------------------------


class StubStore:
    """A trial log with no experiments in it."""

    async def experiment(self, name: str, *, caller_uid: int | None = None
                         ) -> dict[str, Any] | None:
        assert isinstance(name, str) and is_unicode(name)
        return None

    async def experiments(self, *, include_finished: bool = True) -> list[dict[str, Any]]:
        assert isinstance(include_finished, bool)
        return []

    async def trials(self, experiment_id: str | None = None) -> list[dict[str, Any]]:
        return []

    async def warning_counts(self, experiment_ids: Iterable[str]) -> dict[str, int]:
        return {}


class StubBackend:
    kind = "fake"
    unavailable_reason = None


class StubDevices:
    def __init__(self) -> None:
        self.slots: list[Any] = []

    def snapshot(self) -> list[dict[str, Any]]:
        return []


class StubScheduler:
    """What the server asks of the scheduler, for requests about experiments that don't exist."""

    def __init__(self) -> None:
        self.store = StubStore()
        self.backend = StubBackend()
        self.devices = StubDevices()
        self.submitted: list[Any] = []

    async def submit(self, spec: Any, uid: int | None, *, source: str = "",
                     warnings: list[str] | None = None, umask: int | None = None) -> str:
        self.submitted.append(spec)
        return "e1"

    async def judge_refused(self, read: Any) -> list[Any]:
        return []


def respond(server: Server, line: bytes) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        return await server._respond(line, None)

    return anyio.run(run)


VALID_EXPERIMENT = {"command": ["python", "train.py"], "metric": "score", "max_trials": 2,
                    "params": [{"name": "x", "type": "double", "min": 0.0, "max": 1.0}]}
ARG_VALUES = (JSON | st.just(VALID_EXPERIMENT)
              | st.sampled_from(["/tmp", "relative", "/a\0b", "e1/" + "9" * 30, "e1/\u00b2"]))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(OPS)),
       st.dictionaries(st.sampled_from(ARG_NAMES) | st.text(max_size=4), ARG_VALUES,
                       max_size=4),
       JSON)
def test_any_arguments_to_any_op_get_a_proper_answer(
    op: str, args: dict[str, Any], request_id: Any
) -> None:
    server = Server(cast(Scheduler, StubScheduler()))
    line = encode({"v": VERSION, "id": request_id, "op": op, "args": args}).rstrip(b"\n")
    answer = decode_response(encode(respond(server, line)).rstrip(b"\n"))
    if answer["ok"]:
        assert "result" in answer
        return
    error = answer["error"]
    assert error["code"] in {"bad_request", "not_found", "invalid_experiment", "ProtocolError"}
    assert isinstance(error["message"], str) and error["message"]


@pytest.mark.parametrize("request_id", [7, "a", None, 1.5, True, [1, {"x": "y"}], {"n": 1}])
@pytest.mark.parametrize(("message", "words"), [
    ({"v": 1, "op": "launch"}, "unknown op 'launch'"),
    ({"v": 1}, "unknown op None"),
    ({"v": 2, "op": "hello"}, "unsupported protocol version 2"),
    ({"op": "hello"}, "unsupported protocol version None"),
    ({"v": 1, "op": "show", "args": ["e1"]}, "'args' must be a JSON object"),
    ({"v": 1, "op": "show", "args": {"target": "e1\ud800"}}, "not valid Unicode"),
    ({"v": 1, "op": "show", "args": {"x": json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)}},
     "nested more than"),
])
def test_a_refused_request_echoes_its_id(
    message: dict[str, Any], words: str, request_id: Any
) -> None:
    # docs/protocol.md: the id is echoed in the response, a refusal's too.
    server = Server(cast(Scheduler, StubScheduler()))
    answer = respond(server, json.dumps({**message, "id": request_id}).encode())
    assert answer["ok"] is False and answer["error"]["code"] == "ProtocolError", answer
    assert words in answer["error"]["message"]
    assert answer["id"] == request_id


@pytest.mark.parametrize("line", [
    b"garbage", b"[1, 2]", b'"hello"', b"\xff{}",  # not a JSON object: no id to echo
    b'{"v": 1, "op": "launch"}',  # no id
    b'{"v": 1, "op": "hello", "id": "\\ud800"}',  # an id the protocol refuses
    b'{"v": 1, "op": "hello", "id": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}",
])
def test_a_refused_request_without_an_id_to_echo_gets_a_null_one(line: bytes) -> None:
    server = Server(cast(Scheduler, StubScheduler()))
    answer = respond(server, line)
    assert answer["ok"] is False and answer["error"]["code"] == "ProtocolError", answer
    assert answer["id"] is None
    encode(answer)  # and the answer can be sent


def test_the_stub_server_answers_a_good_submit_and_refuses_bad_arguments() -> None:
    """The fuzz above can fail: its server really checks (and really takes a good request)."""
    scheduler = StubScheduler()
    server = Server(cast(Scheduler, scheduler))

    def ask(op: str, **args: Any) -> dict[str, Any]:
        return respond(server, encode({"v": VERSION, "id": 1, "op": op, "args": args}))

    assert ask("submit", experiment=VALID_EXPERIMENT, base_dir="/tmp")["result"]["id"] == "e1"
    assert len(scheduler.submitted) == 1
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("trials", {"experiment": "e1", "limit": "x"}, "'limit' must be"),
        ("trials", {"experiment": "e1", "sort": 5}, "'sort' must be"),
        ("best", {"experiment": "e1", "n": True}, "whole number"),
        ("experiments", {"all": "yes"}, "'all' must be"),
        ("wait", {"experiment": "e1", "timeout_s": math.inf}, "timeout_s"),
        ("submit", {"experiment": VALID_EXPERIMENT, "base_dir": "rel"}, "absolute"),
        ("submit", {"experiment": VALID_EXPERIMENT, "base_dir": "/", "source": 3}, "'source'"),
        ("show", {"target": "e1/" + "9" * 30}, "at most 18 digits"),
    ]
    for op, args, words in cases:
        answer = ask(op, **args)
        assert answer["error"]["code"] == "bad_request", answer
        assert words in answer["error"]["message"], answer
    assert len(scheduler.submitted) == 1


@settings(max_examples=300, deadline=None)
@given(JSON | st.text(alphabet="e0123456789/x\u00b2", max_size=40))
def test_a_target_is_an_experiment_and_a_storable_trial_number_or_refused(value: Any) -> None:
    try:
        exp, number = _target(value)
    except RequestError as exc:
        assert exc.code == "bad_request" and str(exc)
        return
    assert isinstance(exp, str) and exp
    assert number is None or 0 <= number < 10**MAX_TRIAL_NUMBER_DIGITS <= 2**63
