"""``gpusched.trial``, as a trainer uses it: real subprocesses, with and without gpusched's env."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gpusched import trial
from gpusched._daemon.reports import ReportFileReader

_Done = subprocess.CompletedProcess[str]


def _env(tmp_path: Path | None) -> dict[str, str]:
    """The test's environment without gpusched's variables, plus a trial's when ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUSCHED_", "CLOUD_ML_"))}
    if tmp_path is not None:
        env |= {
            "GPUSCHED_EXPERIMENT": "e7",
            "GPUSCHED_TRIAL": "3",
            "GPUSCHED_PARAMS": json.dumps({"learning_rate": 0.01, "optimizer": "adam"}),
            "GPUSCHED_REPORT_FILE": str(tmp_path / "reports.jsonl"),
            "GPUSCHED_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
        }
    return env


def _run(code: str, tmp_path: Path, *, in_gpusched: bool = True) -> _Done:
    """Run ``code`` as a trainer would be run: its own Python process, in ``tmp_path``."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=False,
        env=_env(tmp_path if in_gpusched else None),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _lines(tmp_path: Path) -> list[dict[str, object]]:
    text = (tmp_path / "reports.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_reports_are_appended_one_line_each(tmp_path: Path) -> None:
    result = _run(
        """
        import numpy as np
        from gpusched import trial
        trial.report(step=1, val_accuracy=0.5, loss=np.float32(0.25))
        trial.report(step=np.int64(2), val_accuracy=np.float64(0.75), n=np.int32(4))
        trial.report(loss=np.array(0.125))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = _lines(tmp_path)
    assert [{k: v for k, v in line.items() if k != "_t"} for line in lines] == [
        {"step": 1, "val_accuracy": 0.5, "loss": 0.25},
        {"step": 2, "val_accuracy": 0.75, "n": 4},
        {"loss": 0.125},
    ]
    assert all(isinstance(line["_t"], float) for line in lines)
    assert result.stderr == ""  # under gpusched nothing is printed


def test_each_report_is_on_disk_before_report_returns(tmp_path: Path) -> None:
    code = """
        import sys
        from gpusched import trial
        trial.report(step=1, acc=0.5)
        print("reported", flush=True)
        sys.stdin.readline()
        """
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=_env(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "reported\n"
        assert [line["acc"] for line in _lines(tmp_path)] == [0.5]  # the trainer still runs
        proc.stdin.close()
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("raise_", "status", "reason"),
    [
        ("raise gpusched.FailedTrialError('out of data')", "failed", "out of data"),
        ("raise gpusched.FatalError('license expired')", "fatal", "license expired"),
        ("raise gpusched.FatalError()", "fatal", "FatalError"),
        ("trial.fail('diverged')", "failed", "diverged"),
        ("trial.fatal('no such dataset')", "fatal", "no such dataset"),
    ],
)
def test_failures_write_a_last_status_line_and_exit_non_zero(
    tmp_path: Path, raise_: str, status: str, reason: str
) -> None:
    result = _run(
        f"""
        import gpusched.errors as gpusched
        from gpusched import trial
        trial.report(step=1, acc=0.5)
        {raise_}
        """,
        tmp_path,
    )
    assert result.returncode == 1
    assert _lines(tmp_path)[-1] == {"status": status, "reason": reason}
    reader = ReportFileReader(tmp_path / "reports.jsonl")
    assert [r.values for r in reader.poll(final=True)] == [{"step": 1, "acc": 0.5}]
    assert reader.status == (status, reason)
    if raise_.startswith("raise"):
        assert "Traceback" in result.stderr  # the previous excepthook still ran


@pytest.mark.parametrize(("call", "status"), [("fail", "failed"), ("fatal", "fatal")])
def test_fail_from_another_thread_ends_the_whole_process(
    tmp_path: Path, call: str, status: str
) -> None:
    # sys.exit() there would end only the thread: the trainer went on and exited 0, and the
    # daemon ignores a status line followed by exit 0.
    result = _run(
        f"""
        import atexit, sys, threading
        from gpusched import trial
        atexit.register(print, "atexit ran")
        print("printed before", end="")  # still in stdout's buffer (a pipe): flushed at the end

        def load():
            try:
                trial.{call}("loader thread gave up")
            finally:
                print("finally ran")

        worker = threading.Thread(target=load)
        worker.start()
        worker.join()
        print("main thread went on")
        """,
        tmp_path,
    )
    assert result.returncode == 1
    assert result.stdout == "printed before"  # no finally, no atexit, no more of the main thread
    assert _lines(tmp_path) == [{"status": status, "reason": "loader thread gave up"}]


def test_fail_in_a_child_process_ends_that_process_only(tmp_path: Path) -> None:
    # The line is written; the trial fails only if its main process then exits non-zero.
    result = _run(
        """
        import multiprocessing
        from gpusched import trial
        if __name__ == "__main__":
            fork = multiprocessing.get_context("fork")
            child = fork.Process(target=trial.fail, args=("bad shard",))
            child.start()
            child.join()
            print(child.exitcode)
        """,
        tmp_path,
    )
    assert result.returncode == 0 and result.stdout == "1\n", result.stderr
    assert _lines(tmp_path) == [{"status": "failed", "reason": "bad shard"}]


@pytest.mark.parametrize(
    ("raise_", "status", "reason"),
    [
        ("raise ExceptionGroup('tasks', [ValueError('x'), gpusched.FailedTrialError('no data')])",
         "failed", "no data"),
        # A FatalError anywhere wins, however deep, even after a FailedTrialError.
        ("raise BaseExceptionGroup('outer', ["
         "ExceptionGroup('a', [gpusched.FailedTrialError('f')]), KeyboardInterrupt(),"
         " ExceptionGroup('b', [ExceptionGroup('c', [gpusched.FatalError()])])])",
         "fatal", "FatalError"),
        ("raise ExceptionGroup('tasks', [ValueError('bug')])", None, None),
        ("""
        import asyncio

        async def task(n):
            if n == 1:
                raise gpusched.FatalError('license expired')
            await asyncio.sleep(10)

        async def main():
            async with asyncio.TaskGroup() as group:
                for n in range(3):
                    group.create_task(task(n))

        asyncio.run(main())
        """, "fatal", "license expired"),
    ],
    ids=["failed", "fatal-wins-at-any-depth", "none-of-ours", "asyncio-taskgroup"],
)
def test_an_uncaught_exception_group_is_looked_into(
    tmp_path: Path, raise_: str, status: str | None, reason: str | None
) -> None:
    code = "import gpusched.errors as gpusched\nfrom gpusched import trial\ntrial.report(step=1)\n"
    result = _run(code + textwrap.dedent(raise_), tmp_path)
    assert result.returncode == 1 and "Traceback" in result.stderr
    reader = ReportFileReader(tmp_path / "reports.jsonl")
    assert [r.values for r in reader.poll(final=True)] == [{"step": 1}]
    assert reader.status == (None if status is None else (status, reason))


@pytest.mark.parametrize(
    ("call", "status", "reason"),
    [
        ("trial.fail(e)", "failed", "[Errno 2] No such file or directory: 'no/such/shard'"),
        ("trial.fatal(RuntimeError())", "fatal", "RuntimeError"),  # no text: its type
        ("trial.fail(3)", "failed", "3"),
    ],
)
def test_fail_and_fatal_take_an_exception_or_any_object(
    tmp_path: Path, call: str, status: str, reason: str
) -> None:
    result = _run(
        f"""
        from gpusched import trial
        try:
            open("no/such/shard")
        except OSError as e:
            {call}
        """,
        tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert _lines(tmp_path) == [{"status": status, "reason": reason}]


@pytest.mark.parametrize(
    ("raise_", "status", "reason"),
    [
        ("raise gpusched.FailedTrialError('shard missing')", "failed", "shard missing"),
        ("raise ExceptionGroup('g', [gpusched.FatalError('license expired')])",
         "fatal", "license expired"),
    ],
)
def test_an_error_that_ends_another_thread_writes_the_status_line(
    tmp_path: Path, raise_: str, status: str, reason: str
) -> None:
    # Only that thread dies (Python's rule): the line counts if the process exits non-zero.
    result = _run(
        f"""
        import sys, threading
        import gpusched.errors as gpusched
        from gpusched import trial

        def load():
            {raise_}

        worker = threading.Thread(target=load)
        worker.start()
        worker.join()
        print("main thread went on")
        sys.exit(1)
        """,
        tmp_path,
    )
    assert result.returncode == 1
    assert result.stdout == "main thread went on\n"
    assert "Traceback" in result.stderr  # the previous threading.excepthook still ran
    assert _lines(tmp_path) == [{"status": status, "reason": reason}]


@pytest.mark.parametrize(
    ("code", "status"),
    [("import gpusched\nraise gpusched.FatalError('license expired')", "fatal"),
     ("from gpusched import FailedTrialError\nraise FailedTrialError('license expired')",
      "failed")],
)
def test_importing_gpusched_alone_is_enough_for_the_status_line(
    tmp_path: Path, code: str, status: str
) -> None:
    # A trainer that never touches gpusched.trial still gets its uncaught error recorded.
    result = _run(code, tmp_path)
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert _lines(tmp_path) == [{"status": status, "reason": "license expired"}]


def test_outside_a_trial_importing_gpusched_installs_no_hook() -> None:
    code = "import sys, gpusched; print(sys.excepthook is sys.__excepthook__)"
    result = subprocess.run([sys.executable, "-c", code], env=_env(None), capture_output=True,
                            text=True, timeout=30, check=True)
    assert result.stdout == "True\n"


def test_other_exceptions_leave_no_status_line(tmp_path: Path) -> None:
    result = _run(
        """
        from gpusched import trial
        trial.report(step=1, acc=0.5)
        raise ValueError("bug")
        """,
        tmp_path,
    )
    assert result.returncode == 1
    assert "ValueError: bug" in result.stderr
    assert [line.get("status") for line in _lines(tmp_path)] == [None]


def test_the_trials_environment(tmp_path: Path) -> None:
    result = _run(
        """
        import json
        from gpusched import trial
        params = trial.params()
        params["mutated"] = True
        print(json.dumps({
            "params": trial.params(), "in": trial.in_gpusched(), "trial": trial.trial_id(),
            "experiment": trial.experiment_id(), "ckpt": str(trial.checkpoint_dir()),
        }))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "params": {"learning_rate": 0.01, "optimizer": "adam"},
        "in": True,
        "trial": "e7/3",
        "experiment": "e7",
        "ckpt": str(tmp_path / "ckpt"),
    }
    assert (tmp_path / "ckpt").is_dir()


def test_standalone_the_trainer_runs_and_reports_go_to_stderr(tmp_path: Path) -> None:
    result = _run(
        """
        import json
        from gpusched import trial
        trial.report(step=2, val_accuracy=0.123456789, n=3)
        print(json.dumps([trial.params(), trial.in_gpusched(), trial.trial_id(),
                          trial.experiment_id(), str(trial.checkpoint_dir())]))
        trial.fail("gave up")
        """,
        tmp_path,
        in_gpusched=False,
    )
    assert result.returncode == 1
    assert json.loads(result.stdout) == [{}, False, None, None, str(tmp_path / "checkpoints")]
    assert result.stderr.splitlines() == [
        "[gpusched] step=2 val_accuracy=0.123457 n=3",
        "[gpusched] trial failed: gave up",
    ]
    assert not (tmp_path / "reports.jsonl").exists()


def test_ten_thousand_reports_a_second_keep_up(tmp_path: Path) -> None:
    result = _run(
        """
        import time
        from gpusched import trial
        start = time.perf_counter()
        for i in range(20_000):
            trial.report(step=i, acc=i / 20_000, loss=1.0)
        print(20_000 / (time.perf_counter() - start))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) > 10_000
    assert len(ReportFileReader(tmp_path / "reports.jsonl").poll()) == 20_000


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"acc": "0.5"}, "acc='0.5' is a str, not a number"),
        ({"done": True}, "done=True is a bool"),
        ({"flag": np.bool_(True)}, "flag=True is a bool"),
        ({"vec": np.zeros(3)}, "is a ndarray"),
        ({"acc": None}, "acc=None is a NoneType"),
    ],
)
def test_report_takes_numbers_only(
    monkeypatch: pytest.MonkeyPatch, metrics: dict[str, object], message: str
) -> None:
    monkeypatch.delenv("GPUSCHED_REPORT_FILE", raising=False)
    with pytest.raises(TypeError, match=r"trial\.report\(\)") as info:
        trial.report(step=1, **metrics)
    assert message in str(info.value)


def test_report_takes_arrays_and_tensors_that_hold_one_value(tmp_path: Path) -> None:
    # A metric after dist.all_reduce is a tensor of shape [1]. torch is not needed: this class
    # looks to report() as a tensor does (.size a method, .numel() the count, .item()).
    result = _run(
        """
        import numpy as np
        from gpusched import trial

        class Tensor:
            def __init__(self, *values, ndim=1):
                self.values, self.ndim = values, ndim
            def size(self):
                return (len(self.values),)
            def numel(self):
                return len(self.values)
            def item(self):
                (value,) = self.values  # torch raises too for more than one value
                return value

        trial.report(step=np.array([2]), acc=np.array([1.5]), loss=np.array([[0.25]], np.float32),
                     n=np.array([7], np.int64), t=Tensor(0.125), t0=Tensor(3, ndim=0))
        for wrong in (Tensor(1.0, 2.0), Tensor(), np.zeros((1, 0)), np.array([1.0, 2.0])):
            try:
                trial.report(x=wrong)
            except TypeError as e:
                print(e)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    [line] = _lines(tmp_path)
    del line["_t"]
    assert line == {"step": 2, "acc": 1.5, "loss": 0.25, "n": 7, "t": 0.125, "t0": 3}
    assert all(type(line[k]) is int for k in ("step", "n", "t0"))
    assert len(result.stdout.splitlines()) == 4 and "not a number" in result.stdout


def test_report_refuses_an_int_too_large_for_a_float(monkeypatch: pytest.MonkeyPatch) -> None:
    # The daemon could only drop it, without a word to the trainer.
    monkeypatch.delenv("GPUSCHED_REPORT_FILE", raising=False)
    for value in (10**400, -(10**400), 10**5000, np.array([10**400], dtype=object)):
        with pytest.raises(TypeError, match=r"trial\.report\(\): n is an int of \d+ bits, too"):
            trial.report(n=value)


def test_report_stores_an_int_beyond_64_bits_as_a_float(tmp_path: Path) -> None:
    # 2**1023 is one the daemon would drop as an int (it may overflow): as a float it is kept.
    result = _run(
        "from gpusched import trial\n"
        "trial.report(a=2**63 - 1, b=-(2**63), c=2**63, d=2**1023, e=-(2**1000))",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    [report] = ReportFileReader(tmp_path / "reports.jsonl").poll(final=True)
    assert report.values == {"a": 2**63 - 1, "b": -(2**63), "c": 2.0**63, "d": 2.0**1023,
                             "e": -(2.0**1000)}
    assert [type(v) for v in report.values.values()] == [int, int, float, float, float]


def test_report_step_must_be_an_integer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPUSCHED_REPORT_FILE", raising=False)
    with pytest.raises(TypeError, match=r"step=1\.5 is not an integer"):
        trial.report(step=1.5, acc=0.5)  # type: ignore[arg-type]  # the mistake under test


@pytest.mark.parametrize(("env", "expected"), [
    ({"GPUSCHED_BUDGET": "9", "GPUSCHED_INITIAL_BUDGET": "3"}, [9, 3, 9]),
    ({"GPUSCHED_BUDGET": "0.25", "GPUSCHED_INITIAL_BUDGET": "0"}, [0.25, 0, 0.25]),
    ({}, [None, 0, 30]),  # no budgeted search: the trainer's own default
])
def test_budget_and_initial_budget(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: list[object]
) -> None:
    for name in ("GPUSCHED_BUDGET", "GPUSCHED_INITIAL_BUDGET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    got = [trial.budget(), trial.initial_budget(), trial.budget(default=30)]
    assert got == expected
    assert all(type(g) is type(e) for g, e in zip(got, expected, strict=True))


# A trainer whose SIGTERM handler reports (or fails) while the main thread is somewhere inside
# trial.report(): the signal is raised at the Nth line that runs in gpusched/trial.py, so
# every point of a report, the first (which opens the file) and a later one, gets its turn.
_REENTRY = """
    import signal, sys
    from gpusched import trial

    fire_at, mode = int(sys.argv[1]), sys.argv[2]
    seen = 0

    def on_term(signum, frame):
        sys.settrace(None)
        if mode == "fail":
            trial.fail("terminated")
        trial.report(step=-1, from_handler=1)

    def in_trial(frame, event, arg):
        global seen
        if event == "line":
            seen += 1
            if seen == fire_at:
                signal.raise_signal(signal.SIGTERM)
        return in_trial

    signal.signal(signal.SIGTERM, on_term)
    sys.settrace(lambda frame, event, arg:
                 in_trial if frame.f_code.co_filename == trial.__file__ else None)
    trial.report(step=1, acc=0.5)
    trial.report(step=2, acc=0.25)
    sys.settrace(None)
    print(seen)
    """


def _reenter(tmp_path: Path, fire_at: int, mode: str) -> _Done:
    (tmp_path / "reports.jsonl").unlink(missing_ok=True)
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_REENTRY), str(fire_at), mode], check=False,
            env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=10,
        )
    except subprocess.TimeoutExpired:
        # The handler waits for a lock that the thread it interrupted holds: forever.
        pytest.fail(f"deadlocked: the signal at point {fire_at}, the handler doing {mode}")


def test_a_signal_handler_can_report_or_fail_from_inside_a_report(tmp_path: Path) -> None:
    untouched = _reenter(tmp_path, 0, "report")
    assert untouched.returncode == 0, untouched.stderr
    points = int(untouched.stdout)
    assert points > 4
    for fire_at in range(1, points + 1):
        result = _reenter(tmp_path, fire_at, "report")
        assert result.returncode == 0, (fire_at, result.stderr)
        lines = _lines(tmp_path)  # every line whole: a half line would not parse
        assert len(lines) == 3 and {line["step"] for line in lines} == {-1, 1, 2}, fire_at
        failed = _reenter(tmp_path, fire_at, "fail")
        assert failed.returncode == 1, (fire_at, failed.stderr)
        lines = _lines(tmp_path)
        assert lines[-1] == {"status": "failed", "reason": "terminated"}, fire_at
        assert [line["step"] for line in lines[:-1]] in ([], [1], [1, 2]), fire_at
