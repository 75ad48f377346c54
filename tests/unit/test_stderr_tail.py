"""The last stderr line in a crashed trial's reason: which line, how it is cleaned, and what
is never read (links, FIFOs, another user's files, an earlier attempt's output)."""

from __future__ import annotations

import codecs
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gpusched._daemon.stderr_tail import (
    MAX_LINES_AFTER,
    MAX_SHOWN,
    TAIL_BYTES,
    last_meaningful_line,
    last_stderr_line,
    read_tail,
)
from gpusched._daemon.trial_runner import describe_exit

TRACEBACK = b"""\
epoch 1: loss 0.93
Traceback (most recent call last):
  File "/work/train.py", line 12, in <module>
    model.fit(x)
    ^^^^^^^^^^^^
RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB

"""


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- the reason ----------------------------------------------------------------------------


def test_the_reason_adds_the_line_to_the_exit_and_is_unchanged_without_one() -> None:
    assert describe_exit(1, "RuntimeError: boom") == "exited with code 1: RuntimeError: boom"
    assert describe_exit(-9, "loading shard 7") == "killed by signal SIGKILL: loading shard 7"
    assert describe_exit(3) == describe_exit(3, None) == "exited with code 3"
    assert describe_exit(-15) == "killed by signal SIGTERM"


# --- which line ----------------------------------------------------------------------------


def test_a_traceback_gives_its_exception_line() -> None:
    assert last_meaningful_line(TRACEBACK) == (
        "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")


# What Weights & Biases' exit handler prints after the traceback of a crashed run.
WANDB = (b"wandb: \xf0\x9f\x9a\x80 View run dry-sun-3 at: https://wandb.ai/me/proj/runs/abc\n"
         b"wandb: Find logs at: ./wandb/run-20240101_000000-abc/logs\n")


def test_what_prints_after_the_traceback_does_not_hide_its_exception() -> None:
    assert last_meaningful_line(TRACEBACK + WANDB) == (
        "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")


def test_a_chained_exception_gives_the_one_raised_last() -> None:
    chained = (b"Traceback (most recent call last):\n"
               b"  File \"/work/train.py\", line 3, in <module>\n"
               b"KeyError: 'lr'\n\n"
               b"During handling of the above exception, another exception occurred:\n\n"
               b"Traceback (most recent call last):\n"
               b"  File \"/work/train.py\", line 5, in <module>\n"
               b"ValueError: no learning rate\n")
    assert last_meaningful_line(chained + WANDB) == "ValueError: no learning rate"


def test_notes_and_a_messages_second_line_come_after_the_exception() -> None:
    noted = (b"Traceback (most recent call last):\n"
             b"  File \"/work/train.py\", line 5, in <module>\n"
             b"    raise e\n"
             b"ValueError: bad shard\n"
             b"the second line of its message\n"
             b"a note added with add_note\n")
    assert last_meaningful_line(noted) == "ValueError: bad shard"


def test_a_workers_traceback_quoted_in_the_message_gives_the_workers_error() -> None:
    # PyTorch's DataLoader re-raises a worker's error with the worker's traceback in its message.
    quoted = (b"Traceback (most recent call last):\n"
              b"  File \"/work/train.py\", line 9, in <module>\n"
              b"RuntimeError: Caught ValueError in DataLoader worker process 0.\n"
              b"Original Traceback (most recent call last):\n"
              b"  File \"/torch/utils/data/_utils/worker.py\", line 308, in _worker_loop\n"
              b"    data = fetcher.fetch(index)\n"
              b"ValueError: image 17 is truncated\n\n")
    assert last_meaningful_line(quoted + WANDB) == "ValueError: image 17 is truncated"


def test_a_traceback_cut_off_before_its_exception_gives_the_last_line() -> None:
    # Killed as it printed: the exception line was never written.
    cut = b"Traceback (most recent call last):\n  File \"/work/train.py\", line 3, in f\n"
    assert last_meaningful_line(cut) == 'File "/work/train.py", line 3, in f'


@pytest.mark.parametrize(("code", "line"), [
    # The group's frames, then sub-exceptions with tracebacks of their own, then a nested
    # group without one: the last (innermost) error.
    ("errs = []\n"
     "for e in (ValueError('a'), TypeError('b')):\n"
     "    try:\n"
     "        raise e\n"
     "    except Exception as caught:\n"
     "        errs.append(caught)\n"
     "raise ExceptionGroup('eg', [*errs, ExceptionGroup('nested', [OSError('deep')])])\n",
     "OSError: deep"),
    ("raise ExceptionGroup('eg', [ValueError('a'), TypeError('b')])\n", "TypeError: b"),
    # A sub-exception raised while handling another: the one raised last.
    ("def sub():\n"
     "    try:\n"
     "        raise KeyError('k')\n"
     "    except KeyError:\n"
     "        raise ValueError('chained in sub')\n"
     "try:\n"
     "    sub()\n"
     "except ValueError as e:\n"
     "    raise ExceptionGroup('eg', [e])\n", "ValueError: chained in sub"),
    # A group raised while handling another error: the group's.
    ("try:\n"
     "    raise KeyError('inner')\n"
     "except KeyError:\n"
     "    raise ExceptionGroup('eg', [ValueError('the one')])\n", "ValueError: the one"),
])
def test_an_exception_group_as_python_prints_it_gives_its_last_error(
    tmp_path: Path, code: str, line: str,
) -> None:
    script = write(tmp_path / "crash.py", (
        "import atexit, sys\n"
        "atexit.register(lambda: print('wandb: Find logs at: ./wandb', file=sys.stderr))\n"
        + code).encode())
    crashed = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60,
                             check=False)
    assert crashed.returncode == 1
    assert crashed.stderr.endswith(b"wandb: Find logs at: ./wandb\n")
    assert last_meaningful_line(crashed.stderr) == line


# What loguru's logger.exception prints: the frame that raised marked with `> `, its variables
# drawn with box-drawing characters.
LOGURU = """\
2024-01-01 12:00:00.000 | ERROR    | __main__:<module>:12 - An error has been caught
Traceback (most recent call last):

  File "train.py", line 12, in <module>
    func(5, 0)
    \u2514 <function func at 0x7f>

> File "train.py", line 8, in func
    return a / b
           \u2502   \u2514 0
           \u2514 5

ZeroDivisionError: division by zero
""".encode()


def test_logurus_marked_frame_is_not_taken_for_the_exception() -> None:
    assert last_meaningful_line(LOGURU + WANDB) == "ZeroDivisionError: division by zero"


def test_frames_drawn_with_box_drawing_characters_are_skipped() -> None:
    drawn = ("Traceback (most recent call last):\n"
             "\u2502 /work/train.py:8 in func \u2502\n"
             "\u2570\u2500\u2500\u2500\u2500\u256f\n"
             "ZeroDivisionError: division by zero\n").encode()
    assert last_meaningful_line(drawn) == "ZeroDivisionError: division by zero"


# What torchrun prints for a rank that crashed: each line behind the rank's prefix.
RANK0 = (b"[rank0]: Traceback (most recent call last):\n"
         b"[rank0]:   File \"/w/train.py\", line 10, in <module>\n"
         b"[rank0]:     main()\n"
         b"[rank0]: RuntimeError: CUDA error: out of memory\n")


def test_a_prefixed_traceback_gives_its_exception_with_the_prefix() -> None:
    assert last_meaningful_line(RANK0 + WANDB) == "[rank0]: RuntimeError: CUDA error: out of memory"


def test_a_line_without_the_prefix_ends_a_prefixed_traceback() -> None:
    # Cut off by other output before its exception: no exception line, the last line.
    cut = RANK0.splitlines(keepends=True)
    assert last_meaningful_line(b"".join(cut[:2]) + b"killed: out of memory\n") == (
        "killed: out of memory")


def test_a_handled_traceback_followed_by_more_output_is_not_the_reason() -> None:
    after = [b"wandb: line %d\n" % i for i in range(MAX_LINES_AFTER + 1)]
    # A few lines after it (an exit handler's, the rest of its message): the exception.
    assert last_meaningful_line(TRACEBACK + b"".join(after[:-1])) == (
        "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")
    # One more: it was handled and the trial went on; the last line.
    assert last_meaningful_line(TRACEBACK + b"".join(after)) == f"wandb: line {MAX_LINES_AFTER}"


def test_sys_exit_after_a_logged_exception_gives_its_message(tmp_path: Path) -> None:
    script = write(tmp_path / "crash.py", (
        "import logging, sys\n"
        "try:\n"
        "    open('/nonexistent/ckpt')\n"
        "except OSError:\n"
        "    logging.exception('could not load the checkpoint, starting fresh')\n"
        f"for epoch in range({MAX_LINES_AFTER + 1}):\n"
        "    print(f'epoch {epoch} loss 0.5', file=sys.stderr)\n"
        "sys.exit('no data left in /data/shards')\n").encode())
    crashed = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60,
                             check=False)
    assert crashed.returncode == 1 and b"FileNotFoundError" in crashed.stderr
    assert last_meaningful_line(crashed.stderr) == "no data left in /data/shards"


def test_a_fatal_error_after_a_logged_exception_gives_the_fatal_error(tmp_path: Path) -> None:
    # A handled traceback, then a segmentation fault: faulthandler's line, not the exception
    # nor the last line of its thread dump.
    script = write(tmp_path / "crash.py", (
        b"import ctypes, faulthandler, logging, sys\n"
        b"faulthandler.enable()\n"
        b"try:\n"
        b"    open('/nonexistent/ckpt')\n"
        b"except OSError:\n"
        b"    logging.exception('could not load the checkpoint, starting fresh')\n"
        b"print('epoch 1 loss 0.5', file=sys.stderr, flush=True)\n"
        b"ctypes.string_at(0)\n"))
    crashed = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60,
                             check=False)
    assert crashed.returncode < 0 and b"FileNotFoundError" in crashed.stderr
    assert last_meaningful_line(crashed.stderr) == "Fatal Python error: Segmentation fault"


def test_empty_whitespace_and_punctuation_only_output_gives_no_line() -> None:
    assert last_meaningful_line(b"") is None
    assert last_meaningful_line(b"\n \n\t\r\n") is None
    assert last_meaningful_line(b"----\n  ^^^^\n+---+\n") is None


def test_lines_without_a_letter_or_digit_are_skipped() -> None:
    assert last_meaningful_line(b"ValueError: bad\n    ^^^^\n\n   \n") == "ValueError: bad"


def test_an_exception_group_gives_its_last_error_without_the_margin() -> None:
    group = (b"  + Exception Group Traceback (most recent call last):\n"
             b"  | ExceptionGroup: eg (2 sub-exceptions)\n"
             b"  +-+---------------- 1 ----------------\n"
             b"    | ValueError: a\n"
             b"    +---------------- 2 ----------------\n"
             b"    | TypeError: b\n"
             b"    +------------------------------------\n")
    assert last_meaningful_line(group) == "TypeError: b"


def test_a_progress_bar_redrawn_with_carriage_returns_gives_its_last_state() -> None:
    bar = b"train:  10%|#         | 1/10\rtrain:  20%|##        | 2/10\r"
    assert last_meaningful_line(bar) == "train: 20%|## | 2/10"


# --- how it is cleaned ---------------------------------------------------------------------


def test_terminal_escapes_and_control_characters_are_removed() -> None:
    coloured = (b"\x1b]0;title\x07\x1b[1;31mRuntimeError\x1b[0m: \x1b(Bboom\x07\x08"
                b"\x00\x7f\x1b\n")
    assert last_meaningful_line(coloured) == "RuntimeError: boom"


def test_bidi_overrides_and_zero_width_characters_are_removed() -> None:
    spoof = "Error: \u202egnp.exe\u202c done\u200b\ufeff\n".encode()
    assert last_meaningful_line(spoof) == "Error: gnp.exe done"


def test_tabs_and_whitespace_runs_are_one_space() -> None:
    assert last_meaningful_line(b"\tKeyError:\t\t'lr'   here  \n") == "KeyError: 'lr' here"


def test_undecodable_bytes_are_replaced_and_no_surrogate_is_left() -> None:
    # Latin-1 text, a cut UTF-8 sequence and an encoded surrogate (which UTF-8 forbids).
    line = last_meaningful_line(b"OSError: caf\xe9 \xe2\x82 \xed\xa0\x80 done\n")
    assert line is not None and line.startswith("OSError: caf\ufffd") and line.endswith("done")
    assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in line)
    line.encode("utf-8")  # what the store does with it: no lone surrogate to refuse


def test_a_long_line_is_capped_with_an_ellipsis() -> None:
    line = last_meaningful_line(b"RuntimeError: " + b"x" * 1000 + b"\n")
    assert line is not None and len(line) == MAX_SHOWN
    assert line.startswith("RuntimeError: xxx") and line.endswith("x...")
    exact = "E: " + "y" * (MAX_SHOWN - 3)
    assert last_meaningful_line(exact.encode()) == exact  # at the cap: whole


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_output_after_its_byte_order_mark_is_read_as_utf16(codec: str) -> None:
    bom = codecs.BOM_UTF16_LE if codec == "utf-16-le" else codecs.BOM_UTF16_BE
    text = "OSError: caf\u00e9 \u2014 disk full\r\n"
    assert last_meaningful_line(bom + text.encode(codec)) == "OSError: caf\u00e9 \u2014 disk full"
    # A trial killed mid-write leaves half a unit at the end: left out, not shown as U+FFFD.
    assert last_meaningful_line(bom + "KeyError: lr".encode(codec) + b"\x00") == "KeyError: lr"


def test_a_utf8_byte_order_mark_is_not_shown() -> None:
    assert last_meaningful_line(codecs.BOM_UTF8 + b"KeyError: 'lr'\n") == "KeyError: 'lr'"


def test_an_attempts_utf16_output_is_read_from_its_own_start(tmp_path: Path) -> None:
    first = b"RuntimeError: the first attempt\n"
    path = write(tmp_path / "stderr.log", first + "ValueError: \u00fcber\n".encode("utf-16"))
    assert last_stderr_line(path, start=len(first)) == "ValueError: \u00fcber"


# --- what is read --------------------------------------------------------------------------


def test_the_file_gives_its_last_line(tmp_path: Path) -> None:
    path = write(tmp_path / "stderr.log", TRACEBACK)
    assert last_stderr_line(path) == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"


def test_no_file_an_empty_one_or_a_folder_gives_no_line(tmp_path: Path) -> None:
    assert last_stderr_line(tmp_path / "missing.log") is None
    assert last_stderr_line(write(tmp_path / "empty.log", b"")) is None
    (tmp_path / "folder").mkdir()
    assert last_stderr_line(tmp_path / "folder") is None


def test_only_the_last_few_kib_are_read(tmp_path: Path) -> None:
    early = b"EarlyError: far from the end\n" + b"\n" * (TAIL_BYTES * 4)
    path = write(tmp_path / "stderr.log", early + b"LateError: at the end\n")
    data, cut = read_tail(path) or (b"", True)
    assert len(data) == TAIL_BYTES and data.endswith(b"LateError: at the end\n")
    assert not cut  # it begins after a newline
    # The early line is beyond the tail: only blank lines are read, so no line.
    assert last_stderr_line(write(tmp_path / "blank-tail.log", early)) is None


def test_a_deep_traceback_is_found_with_what_printed_after_it(tmp_path: Path) -> None:
    # 60 frames (a Lightning stack is about 40), ~8 KiB: its header within the tail.
    frames = b"".join(b'  File "/site-packages/lightning/pytorch/trainer/loop_%02d.py", line 1'
                      b"23, in run\n    return self._run_stage(batch, batch_idx)\n"
                      % i for i in range(60))
    deep = b"Traceback (most recent call last):\n" + frames + b"RuntimeError: CUDA error\n"
    assert 6 * 1024 < len(deep) + len(WANDB) < TAIL_BYTES
    path = write(tmp_path / "stderr.log", b"epoch 1\n" * 4096 + deep + WANDB)
    assert last_stderr_line(path) == "RuntimeError: CUDA error"


def test_a_line_longer_than_the_tail_is_shown_cut_in_front(tmp_path: Path) -> None:
    path = write(tmp_path / "stderr.log", b"Error: " + "\u00e9".encode() * TAIL_BYTES + b"\n")
    data, cut = read_tail(path) or (b"", False)
    assert cut and len(data) == TAIL_BYTES
    line = last_stderr_line(path)
    assert line is not None and line.startswith("...\u00e9\u00e9") and line.endswith("...")
    assert "\ufffd" not in line  # the character cut in two at the start is dropped


def test_an_earlier_attempts_output_is_not_read(tmp_path: Path) -> None:
    first = b"RuntimeError: the first attempt\n"
    path = write(tmp_path / "stderr.log", first)
    assert last_stderr_line(path, start=len(first)) is None  # this attempt wrote nothing
    with path.open("ab") as fh:
        fh.write(b"KeyError: the second\n")
    assert last_stderr_line(path, start=len(first)) == "KeyError: the second"
    # Shorter than where the attempt began: truncated or replaced since, all of it is new.
    write(path, b"OSError: rewritten\n")
    assert last_stderr_line(path, start=len(first)) == "OSError: rewritten"


def test_a_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    secret = write(tmp_path / "secret", b"root:SECRET-HASH:19000:0:99999:7:::\n")
    link = tmp_path / "stderr.log"
    link.symlink_to(secret)
    assert last_stderr_line(link) is None
    assert last_stderr_line(link, owner=os.geteuid()) is None


def test_a_fifo_is_not_read_and_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "stderr.log"
    os.mkfifo(fifo)
    found: list[str | None] = []
    reader = threading.Thread(target=lambda: found.append(last_stderr_line(fifo)), daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # blocked in open(): a writer lets it go, and the test fails
        os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))
        reader.join(10)
        pytest.fail("opening a FIFO blocked")
    assert found == [None]


def test_another_users_trial_reads_only_a_file_with_one_link(tmp_path: Path) -> None:
    path = write(tmp_path / "stderr.log", b"RuntimeError: boom\n")
    mine = os.stat(path).st_uid
    assert last_stderr_line(path, owner=mine) == "RuntimeError: boom"
    os.link(path, tmp_path / "elsewhere")  # a second name: it could be any file of the owner
    assert last_stderr_line(path, owner=mine) is None
    assert last_stderr_line(path, owner=mine, daemon_uid=mine) is None
    # The daemon's own user: a hard link is nothing to protect from.
    assert last_stderr_line(path) == "RuntimeError: boom"


def test_another_users_trial_reads_only_its_own_or_the_daemons_file(tmp_path: Path) -> None:
    path = write(tmp_path / "stderr.log", b"RuntimeError: boom\n")
    uid = os.stat(path).st_uid
    other, third = uid + 1000, uid + 2000
    # The trial's user's file, the daemon's (the daemon created it): read.
    assert last_stderr_line(path, owner=uid, daemon_uid=other) == "RuntimeError: boom"
    assert last_stderr_line(path, owner=other, daemon_uid=uid) == "RuntimeError: boom"
    # Neither's: not read.
    assert last_stderr_line(path, owner=other, daemon_uid=third) is None
