"""Bad input on the socket, against the real daemon process: every refusal is a clear error, and
nothing a client sends (or fails to send, or fails to read) stops the daemon serving the others.

tests/integration/test_cli.py has the first, smaller garbage test; this file goes further.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpusched.protocol import MAX_DEPTH, MAX_LINE_BYTES, OPS, decode_response, encode
from tests.integration.harness import Daemon, running_daemon, trial_script, wait_for
from tests.integration.test_gpus import probe_experiment

# The error codes docs/protocol.md lists, less `internal`: a bug, which no request may provoke.
CLIENT_ERROR_CODES = {"not_found", "invalid_experiment", "bad_request", "not_running",
                      "shutting_down", "too_large", "ProtocolError"}
SERVER_FAILURES = {"request_failed", "connection_failed", "response_unencodable"}
QUICK_S = 2.0  # a `hello` on an idle daemon answers in milliseconds; this is a loaded CI box


def connect(d: Daemon, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(d.socket))
    return sock


def send_quietly(sock: socket.socket, payload: bytes) -> None:
    """Send ``payload``; the daemon may refuse and close before it has all of it."""
    with suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(payload)


def read_answer(sock: socket.socket) -> dict[str, Any]:
    """The first response line on ``sock``, checked to be a well-formed response (for one
    request at a time: what comes after that line is dropped)."""
    data = b""
    while b"\n" not in data:
        try:
            chunk = sock.recv(1 << 16)
        except ConnectionResetError:  # the daemon closed with our bytes unread: answer is in
            break
        if not chunk:
            break
        data += chunk
    assert b"\n" in data, f"no answer from the daemon (got {data[:200]!r})"
    return decode_response(data.split(b"\n", 1)[0])


def exchange(d: Daemon, payload: bytes) -> dict[str, Any]:
    with connect(d) as sock:
        send_quietly(sock, payload)
        return read_answer(sock)


def request(op: Any, args: Any = None, *, request_id: Any = 1, **extra: Any) -> bytes:
    message: dict[str, Any] = {"v": 1, "id": request_id, "op": op, **extra}
    if args is not None:
        message["args"] = args
    return json.dumps(message).encode() + b"\n"


def assert_refused(answer: dict[str, Any], code: str, *words: str) -> None:
    assert answer["ok"] is False, answer
    error = answer["error"]
    assert error["code"] == code, answer
    for word in words:
        assert word in error["message"], (word, answer)


def closed_by_daemon(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def assert_still_serving(d: Daemon, tmp: Path) -> None:
    """The daemon answers `hello`, runs an experiment to the end, and logged no server bug."""
    assert d.proc.poll() is None, "the daemon exited"
    assert d.client.hello()["pid"] == d.proc.pid
    exp = d.submit(probe_experiment(tmp / f"after-{time.monotonic_ns()}", max_trials=2),
                   name="after")
    view = d.wait_experiment(exp, timeout=30)
    assert view["state"] == "completed" and view["trials"]["completed"] == 2, view
    failures = [e for e in d.log_events() if e.get("event") in SERVER_FAILURES]
    assert not failures, failures


def test_oversized_requests_are_refused_as_too_large_and_the_connection_closed(
    tmp_path: Path,
) -> None:
    with running_daemon(tmp_path / "d") as d:
        for payload in (b"x" * (MAX_LINE_BYTES + 4096) + b"\n",  # with its newline
                        b"x" * (MAX_LINE_BYTES + 4096)):  # none yet: the daemon stops reading
            with connect(d) as sock:
                send_quietly(sock, payload)
                assert_refused(read_answer(sock), "too_large", str(MAX_LINE_BYTES))
                assert closed_by_daemon(sock)

        # The bound is exact: a line (a padded `hello`) of MAX_LINE_BYTES is taken...
        hello = request("hello", request_id="edge")[:-1]
        at_limit = hello + b" " * (MAX_LINE_BYTES - len(hello))
        answer = exchange(d, at_limit + b"\n")
        assert answer["ok"] is True and answer["id"] == "edge", answer
        # ...and one byte more is refused, even when its newline arrives in the same read
        # as its last bytes (the daemon has the first part buffered by then).
        with connect(d) as sock:
            sock.sendall(at_limit[:-100])
            time.sleep(0.2)
            send_quietly(sock, at_limit[-100:] + b" \n")
            assert_refused(read_answer(sock), "too_large")
        assert_still_serving(d, tmp_path)


def test_a_truncated_request_is_answered_if_the_client_listens_and_dropped_if_not(
    tmp_path: Path,
) -> None:
    half = request("hello")[:12]
    with running_daemon(tmp_path / "d") as d:
        with connect(d) as sock:  # stops sending, still reading: told what is wrong
            sock.sendall(half)
            sock.shutdown(socket.SHUT_WR)
            assert_refused(read_answer(sock), "ProtocolError", "cut off", "newline")
            assert closed_by_daemon(sock)
        for _ in range(5):  # closes outright: nobody to answer
            with connect(d) as sock:
                sock.sendall(half)
        with connect(d) as sock:  # a whole request, then half of the next one
            sock.sendall(request("hello", request_id=1) + half)
            sock.shutdown(socket.SHUT_WR)
            with sock.makefile("rb") as lines:  # both answers, then the daemon closes
                first, second, *rest = [decode_response(line) for line in lines]
            assert first["ok"] is True and first["id"] == 1, first
            assert_refused(second, "ProtocolError", "cut off")
            assert not rest, rest
        assert_still_serving(d, tmp_path)


def test_a_slow_client_does_not_hold_up_the_others(tmp_path: Path) -> None:
    payload = request("hello", request_id="slow")
    with running_daemon(tmp_path / "d") as d, connect(d) as slow:
        quick_answers = []
        for i, byte in enumerate(payload):
            slow.sendall(bytes([byte]))
            time.sleep(0.01)
            if i in (len(payload) // 3, 2 * len(payload) // 3):  # the slow request half-sent
                start = time.monotonic()
                with connect(d, timeout=QUICK_S) as other:
                    other.sendall(request("hello", request_id="quick"))
                    answer = read_answer(other)
                quick_answers.append(time.monotonic() - start)
                assert answer["ok"] is True and answer["id"] == "quick", answer
        assert len(quick_answers) == 2 and max(quick_answers) < QUICK_S, quick_answers
        slow_answer = read_answer(slow)
        assert slow_answer["ok"] is True and slow_answer["id"] == "slow", slow_answer
        assert_still_serving(d, tmp_path)


def test_clients_that_leave_before_reading_their_answer_do_not_matter(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        busy = d.submit(probe_experiment(tmp_path / "busy", max_trials=1, command=[
            sys.executable, trial_script("probe.py"), "--sleep", "30"]), name="busy")
        requests = [request("experiments"), request("show", {"target": busy}),
                    request("gpus"), request("trials", {"experiment": busy}),
                    request("wait", {"experiment": busy, "timeout_s": 0.2})]
        for payload in requests:
            for abrupt in (False, True):
                sock = connect(d)
                if abrupt:  # close with a reset (SO_LINGER 0) instead of an orderly FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.sendall(payload)
                sock.close()
        time.sleep(0.4)  # the held `wait`s have answered into closed sockets by now
        assert d.client.hello()["pid"] == d.proc.pid
        d.client.cancel(busy)
        assert d.wait_experiment(busy)["state"] == "cancelled"
        assert_still_serving(d, tmp_path)


def test_many_idle_connections_do_not_stop_others_being_served(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d, ExitStack() as stack:
        idle = [stack.enter_context(connect(d)) for _ in range(200)]
        for sock in idle[::2]:
            sock.sendall(b'{"v": 1, "op": "hel')  # and half of them stalled mid-request
        start = time.monotonic()
        with connect(d, timeout=QUICK_S) as other:
            other.sendall(request("hello"))
            assert read_answer(other)["ok"] is True
        assert time.monotonic() - start < QUICK_S
        assert_still_serving(d, tmp_path)  # while all 200 are still open


@contextmanager
def fd_limit(pid: int, soft: int) -> Iterator[None]:
    """Lower process ``pid``'s soft limit on open files to ``soft`` for a while."""
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, old[1]))
    try:
        yield
    finally:
        with suppress(ProcessLookupError):  # it died: the test says so
            resource.prlimit(pid, resource.RLIMIT_NOFILE, old)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prlimit and /proc are Linux's")
def test_running_out_of_file_descriptors_does_not_stop_the_daemon(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        # Not while it imports its plugins: a failed import (no descriptor for the file) can
        # leave a module such as numpy unloadable for the rest of the process's life.
        wait_for(lambda: any(e.get("event") == "plugins_loaded" for e in d.log_events()),
                 what="the plugins_loaded log line")
        open_now = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
        with fd_limit(d.proc.pid, open_now + 16):
            with ExitStack() as stack:
                for _ in range(60):  # far more connections than the daemon has descriptors for
                    stack.enter_context(connect(d))
                wait_for(lambda: d.proc.poll() is not None  # died (how it used to end), or
                     or any(e.get("event") == "accept_failed" for e in d.log_events()),
                     timeout=10, what="the daemon to run out of file descriptors")
                time.sleep(0.3)  # it keeps trying to accept meanwhile
                assert d.proc.poll() is None, "the daemon died when accept() failed"
            # The hogs have gone (the limit still holds): the daemon serves new clients again.
            assert d.client.hello()["pid"] == d.proc.pid
        assert_still_serving(d, tmp_path)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_every_kind_of_bad_request_gets_a_clear_error(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe_experiment(tmp_path / "out", max_trials=2), name="known")
        d.wait_experiment(exp)
        e = exp
        cases: list[tuple[bytes, str, tuple[str, ...]]] = [
            # Framing and encoding.
            (b"\xff\xfe\xfd garbage\n", "ProtocolError", ("not UTF-8",)),
            (b'{"v": 1, "op": "h\xc3llo"}\n', "ProtocolError", ("not UTF-8",)),
            (b"\xef\xbb\xbf" + request("hello"), "ProtocolError", ("not JSON", "BOM")),
            (b"{not json\n", "ProtocolError", ("not JSON",)),
            (b"\n", "ProtocolError", ("not JSON",)),
            (request("show", {"target": "\ud800"}), "ProtocolError", ("Unicode", "surrogate")),
            (b'{"v": 1, "op": "hello", "id": ' + nested(MAX_DEPTH) + b"}\n", "ProtocolError",
             ("nested more than 32 levels",)),
            (b'{"v": 1, "op": "hello", "id": ' + nested(500) + b"}\n", "ProtocolError",
             ("nested",)),
            (b'{"v": 1, "op": "hello", "args": {"x": ' + b"[" * 200_000 + b"}}\n",
             "ProtocolError", ("nested too deeply",)),
            (b'{"v": 1, "op": "hello", "id": ' + b"9" * 5000 + b"}\n", "ProtocolError",
             ("not JSON", "digits")),
            # Valid JSON that is not a request.
            (b"[1, 2]\n", "ProtocolError", ("must be a JSON object",)),
            (b'"hello"\n', "ProtocolError", ("must be a JSON object",)),
            (b"null\n", "ProtocolError", ("must be a JSON object",)),
            (b'{"op": "hello"}\n', "ProtocolError", ("unsupported protocol version None",)),
            (request("hello", v=2), "ProtocolError", ("unsupported protocol version 2",
                                                      "speaks 1")),
            (request("hello", v="1"), "ProtocolError", ("unsupported protocol version '1'",)),
            (request("launch"), "ProtocolError", ("unknown op 'launch'", "submit")),
            (request(None), "ProtocolError", ("unknown op None",)),
            (request("x" * 100_000), "ProtocolError", ("unknown op 'xxx", "...")),
            (request("show", [e]), "ProtocolError", ("'args' must be a JSON object",)),
            # Each op's arguments.
            (request("show", {"target": 5}), "bad_request", ("name an experiment",)),
            (request("show", {}), "bad_request", ("name an experiment",)),
            (request("show", {"target": f"{e}/x"}), "bad_request", ("whole number",)),
            (request("show", {"target": "/3"}), "bad_request", ("names no experiment",)),
            (request("show", {"target": f"{e}/" + "9" * 30}), "bad_request",
             ("at most 18 digits",)),
            (request("show", {"target": f"{e}/\u00b2"}), "bad_request", ("whole number",)),
            (request("trial_files", {"trial": f"{e}/" + "9" * 30}), "bad_request",
             ("at most 18 digits",)),
            (request("trial_files", {"trial": e}), "bad_request", ("EXP/N",)),
            (request("trial_files", {"trial": [e]}), "bad_request", ("name an experiment",)),
            (request("cancel", {"target": {"id": e}}), "bad_request", ("name an experiment",)),
            (request("trials", {"experiment": 5}), "bad_request", ("'experiment' must be",)),
            (request("trials", {"experiment": e, "limit": "x"}), "bad_request",
             ("'limit' must be a whole number",)),
            (request("trials", {"experiment": e, "limit": -1}), "bad_request", ("'limit'",)),
            (request("trials", {"experiment": e, "limit": True}), "bad_request", ("'limit'",)),
            (request("trials", {"experiment": e, "limit": 1.5}), "bad_request", ("'limit'",)),
            (request("trials", {"experiment": e, "sort": 5}), "bad_request",
             ("'sort' must be a string",)),
            (request("trials", {"experiment": e, "sort": "-nonsense"}), "bad_request",
             ("cannot sort by 'nonsense'",)),
            (request("trials", {"experiment": e, "last_report": "yes"}), "bad_request",
             ("'last_report' must be true or false",)),
            (request("reports", {"target": 5}), "bad_request", ("name an experiment",)),
            (request("reports", {"target": f"{e}/99"}), "not_found", (f"no trial {e}/99",)),
            (request("reports", {"target": "e999"}), "not_found", ("no experiment 'e999'",)),
            (request("best", {"experiment": e, "n": "x"}), "bad_request", ("whole number",)),
            (request("best", {"experiment": e, "n": 0}), "bad_request", ("whole number",)),
            (request("best", {"experiment": e, "n": True}), "bad_request", ("whole number",)),
            (request("best", {"experiment": None}), "bad_request", ("'experiment' must be",)),
            (request("wait", {"experiment": e, "timeout_s": "x"}), "bad_request",
             ("timeout_s must be a number of seconds",)),
            (request("wait", {"experiment": e, "timeout_s": 3601}), "bad_request",
             ("from 0 to 3600",)),
            (request("wait", {"experiment": e, "timeout_s": True}), "bad_request",
             ("timeout_s",)),
            (request("wait", {"experiment": 5, "timeout_s": 0}), "bad_request",
             ("'experiment' must be",)),
            (request("experiments", {"all": "yes"}), "bad_request", ("'all' must be true",)),
            (request("submit", {"experiment": [], "base_dir": "/"}), "invalid_experiment",
             ("must be a mapping",)),
            (request("submit", {"experiment": {}, "base_dir": "/"}), "invalid_experiment",
             ("command: required",)),
            (request("submit", {"experiment": probe_experiment(tmp_path / "x"),
                                "base_dir": "relative/dir"}), "bad_request",
             ("'base_dir', an absolute path",)),
            (request("submit", {"experiment": probe_experiment(tmp_path / "x")}),
             "bad_request", ("'base_dir'",)),
            (request("submit", {"experiment": probe_experiment(tmp_path / "x"),
                                "base_dir": "/tmp/a\0b"}), "bad_request", ("'base_dir'",)),
            (request("submit", {"experiment": probe_experiment(tmp_path / "x"),
                                "base_dir": str(tmp_path), "source": ["x.yaml"]}),
             "bad_request", ("'source' must be a string",)),
            # The experiment file's text, which the daemon parses (`gpusched submit`).
            (request("submit", {"text": 7, "base_dir": "/"}), "bad_request",
             ("'text' must be a string",)),
            (request("submit", {"text": "x" * (1024 * 1024 + 1), "base_dir": "/"}),
             "bad_request", ("over 1024 KiB",)),
            (request("submit", {"text": "metric: a", "base_dir": "/", "set": "a=1"}),
             "bad_request", ("'set' must be a list",)),
            (request("submit", {"text": "metric: a", "base_dir": "/", "name": 3}),
             "bad_request", ("'name' must be a string",)),
            (request("submit", {"text": "metric: a", "base_dir": "/", "command": "python"}),
             "bad_request", ("'command' must be a list",)),
            (request("submit", {"text": "a: [1", "base_dir": "/", "source": "x.yaml"}),
             "invalid_experiment", ("x.yaml", "not valid YAML", "line ")),
            (request("submit", {"text": "", "base_dir": "/"}), "invalid_experiment",
             ("is empty",)),
            # What only the daemon judges (here: a search plugin) names the file too.
            (request("submit", {"experiment": {**probe_experiment(tmp_path / "x"),
                                               "search": "tpee"},
                                "base_dir": str(tmp_path), "source": "x.yaml"}),
             "invalid_experiment", ("x.yaml: 1 problem", "unknown search plugin 'tpee'")),
            (request("submit", {"text": "metric: a\n", "base_dir": "/", "set": ["nokey"]}),
             "invalid_experiment", ("--set",)),
            # Well-formed requests for what does not exist.
            (request("show", {"target": "e99"}), "not_found", ("no experiment 'e99'",)),
            (request("show", {"target": f"{e}/77"}), "not_found", (f"no trial {e}/77",)),
            (request("cancel", {"target": e}), "not_running", ("not queued or running",)),
        ]
        for payload, code, words in cases:
            answer = exchange(d, payload)
            assert_refused(answer, code, *words)
            # The request's id comes back whenever the line is a JSON object with an id the
            # protocol allows: refused for its version, op, args or values too.
            echoes = payload.startswith(b'{"v": ') and b'"id": 1,' in payload
            assert answer["id"] == (1 if echoes else None), (payload[:80], answer)
        deepest = exchange(d, b'{"v": 1, "op": "hello", "id": ' + nested(MAX_DEPTH - 1) + b"}\n")
        assert deepest["ok"] is True and deepest["id"] == json.loads(nested(MAX_DEPTH - 1))
        assert [e["id"] for e in d.client.experiments()] == [exp]  # no bad submit got in
        assert_still_serving(d, tmp_path)


# -- the protocol fuzzed against the real daemon ---------------------------------------------

ARG_NAMES = ["experiment", "target", "trial", "sort", "limit", "n", "all", "timeout_s",
             "base_dir", "source", "last_report"]
SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=10)
# Values the protocol refuses: arrays nested past MAX_DEPTH (some past what a recursive encoder
# survives), and text with a lone surrogate (JSON can spell one, \\ud800; it is not Unicode).
REFUSED = (st.builds(lambda depth: json.loads(nested(depth)), st.integers(MAX_DEPTH - 2, 900))
           | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1,
                     max_size=3).map(lambda bad: f"e1{bad}"))


def arg_values(exp: str, tmp: Path) -> st.SearchStrategy[Any]:
    """Junk, and values that are nearly right for some argument of some op."""
    meaningful = st.sampled_from([
        exp, f"{exp}/0", f"{exp}/1", f"{exp}/9", f"{exp}/", f"{exp}/-1", f"/{exp}", "known",
        "e99", "e99/3", f"{exp}/" + "9" * 25, "-objective", "objective", "params.x", "-number",
        "state", "", "-", "/", str(tmp), "relative/dir", 0, 1, 3, -1, 0.05, 3600, 3601, True,
        False, [], {}])
    experiment = st.builds(lambda trials: probe_experiment(tmp / "fuzz", max_trials=trials),
                           st.integers(-1, 2))
    return meaningful | JSON | experiment


def valid_args(op: str, exp: str, tmp: Path) -> dict[str, Any]:
    """Arguments that ``op`` accepts: the requests below start from these, or from nothing."""
    table: dict[str, dict[str, Any]] = {
        "submit": {"experiment": probe_experiment(tmp / "fuzz", max_trials=1),
                   "base_dir": str(tmp), "source": "fuzz.yaml"},
        "experiments": {"all": False}, "trials": {"experiment": exp, "sort": "-objective",
                                                  "limit": 1},
        "show": {"target": f"{exp}/0"}, "best": {"experiment": exp, "n": 2},
        "cancel": {"target": exp}, "trial_files": {"trial": f"{exp}/1"},
        "wait": {"experiment": exp, "timeout_s": 0.5}, "reports": {"target": f"{exp}/0"},
    }
    return dict(table.get(op, {}))


def refusable(value: Any) -> bool:
    """Whether the protocol refuses ``value`` as a request's id (level 2 of the request):
    nested past MAX_DEPTH, or holding a string with a lone surrogate once on the wire (where a
    high surrogate followed by a low one is one valid character)."""
    stack: list[tuple[Any, int]] = [(value, 2)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            wire = json.loads(json.dumps(item))
            if any(0xD800 <= ord(c) <= 0xDFFF for c in wire):
                return True
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return True
            items = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((i, depth + 1) for i in items)
    return False


@st.composite
def requests(draw: st.DrawFn, exp: str, tmp: Path) -> dict[str, Any]:
    """A request with a known op and random args, valid ones changed or not; one in five
    carries a value that the protocol refuses."""
    op = draw(st.sampled_from(sorted(OPS)))
    args = valid_args(op, exp, tmp) if draw(st.booleans()) else {}
    args.update(draw(st.dictionaries(st.sampled_from(ARG_NAMES) | st.text(max_size=5),
                                     arg_values(exp, tmp), max_size=3)))
    message = {"v": 1, "id": draw(JSON), "op": op, "args": args}
    if draw(st.integers(0, 4)) == 0:
        where = draw(st.sampled_from(["id", *ARG_NAMES]))
        (message if where == "id" else args)[where] = draw(REFUSED)
    return message


def test_random_requests_to_the_daemon_always_get_a_well_formed_answer(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe_experiment(tmp_path / "out", max_trials=2), name="known")
        d.wait_experiment(exp)
        answers: dict[str, int] = {}

        @settings(max_examples=50, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(message=requests(exp, tmp_path))
        def check(message: dict[str, Any]) -> None:
            with connect(d, timeout=30) as sock:
                sock.sendall(encode(message))
                answer = read_answer(sock)
            # The id comes back, even when the request is refused, unless the id is itself a
            # value the protocol refuses.
            echoed = None if refusable(message["id"]) else json.loads(json.dumps(message["id"]))
            assert answer["id"] == echoed, (message["id"], answer)
            if answer["ok"]:
                assert "result" in answer, answer
                answers["ok"] = answers.get("ok", 0) + 1
            else:
                error = answer["error"]
                assert error["code"] in CLIENT_ERROR_CODES, answer  # never `internal`
                assert isinstance(error["message"], str) and error["message"], answer
                answers[error["code"]] = answers.get(error["code"], 0) + 1
            assert d.proc.poll() is None, f"the daemon exited after {message!r}"

        check()
        assert sum(answers.values()) >= 50, answers
        assert_still_serving(d, tmp_path)
