"""The views through a real daemon: `ls` columns, filters and wait reasons, `gpus`, `watch`
(appended snapshots off a terminal, redrawn in place on a pty), `export`, `best` without a
result, and `plot`."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import pwd
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Daemon, fake_config, running_daemon, trial_script, wait_for
from tests.unit.test_views import cells

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ME = pwd.getpwuid(os.getuid()).pw_name


def probe(out: Path, *, steps: int = 3, sleep: float = 0.0, **overrides: Any) -> dict[str, Any]:
    """probe.py trials that report ``score`` ``steps`` times, ``x`` * (step + 1) / steps."""
    out.mkdir(exist_ok=True)
    experiment: dict[str, Any] = {
        "command": [sys.executable, trial_script("probe.py"), "--out", str(out),
                    "--steps", str(steps), "--sleep", str(sleep)],
        "metric": "score", "goal": "maximize", "max_trials": 4, "max_failed_trials": 100,
        "search": {"algorithm": "random", "seed": 7},
        "params": [{"name": "x", "type": "double", "min": 0.0, "max": 1.0},
                   {"name": "opt", "type": "categorical", "values": ["sgd", "adam"]}],
    }
    experiment.update(overrides)
    return experiment


def gpusched_cmd(d: Daemon, *args: str) -> list[str]:
    return [sys.executable, "-m", "gpusched", args[0], "--socket", str(d.socket), *args[1:]]


def waiting_of(d: Daemon, exp: str) -> dict[str, Any]:
    view = d.client.show(exp)
    assert view["waiting"] is not None, view
    return dict(view["waiting"])


def test_ls_says_why_each_queued_experiment_waits(tmp_path: Path) -> None:
    fake = fake_config(2)
    fake["devices"][1]["foreign_used_mib"] = 5000  # GPU 1 is used by someone else
    with running_daemon(tmp_path / "d", fake=fake) as d:
        out = tmp_path / "out"
        a = d.submit(probe(out, sleep=60, max_trials=3, max_parallel_trials=1), name="a")
        wait_for(lambda: d.client.show(a)["trials"]["running"] == 1, what="a's first trial")
        b = d.submit(probe(out, gpus_per_trial=2), name="b")
        c = d.submit(probe(out, gpus_per_trial=3), name="c")
        e = d.submit(probe(out, priority=0), name="e")
        f = d.submit(probe(out, priority=5), name="f")
        uuid0 = d.client.gpus()["devices"][0]["uuid"]

        assert waiting_of(d, a) == {"code": "max_parallel_trials", "trials": 2, "ahead": [],
                                    "message": "max_parallel_trials reached (1 of 1 running)"}
        got = waiting_of(d, b)
        assert got["code"] == "no_free_gpu" and got["trials"] == 4
        assert got["message"].startswith(f"needs 2 free GPUs: 1 busy ({a}/0), 1 foreign")
        assert waiting_of(d, c)["code"] == "no_gpus"
        assert waiting_of(d, c)["message"].startswith(
            "needs 3 GPUs (gpus_per_trial: 3); the host has 2 GPUs")
        assert waiting_of(d, f)["ahead"] == []
        assert waiting_of(d, f)["message"] == f"no free GPU: 1 busy ({a}/0), 1 foreign"
        got = waiting_of(d, e)
        assert got["code"] == "no_free_gpu" and got["ahead"] == [f, b, c]
        assert got["message"] == (f"no free GPU: 1 busy ({a}/0), 1 foreign; lower priority than"
                                  f" {f} (0 < 5) and 2 more")

        table = {r["ID"]: r for r in cells(d.cli("ls").stdout)}
        assert table[a]["STATE"] == "running"
        assert table[a]["TRIALS"] == "1 running, 2 queued, 0 done, 0 failed / 3"
        assert table[a]["WHY"] == "waiting: max_parallel_trials reached (1 of 1 running)"
        assert table[e]["WHY"].startswith("waiting: no free GPU: 1 busy")
        assert table[f]["OWNER"] == ME
        shown = d.cli("ls", a).stdout.splitlines()
        rows = cells("\n".join(shown[: shown.index("")]))
        assert [(r["TRIAL"], r["STATE"], r["GPUS"]) for r in rows] == [(f"{a}/0", "running", "0")]
        assert shown[-1] == (f"2 trial(s) of {a} waiting: max_parallel_trials reached (1 of 1"
                             " running)")
        (trial,) = d.cli_json("ls", a)
        assert trial["devices"] == [uuid0] and trial["waiting"] is None
        queued = d.cli_json("ls", "--filter", "state == queued", "--sort", "priority,id")
        assert [x["id"] for x in queued] == [b, c, e, f]
        for exp in (a, b, c, e, f):
            d.client.cancel(exp)


def test_a_requeued_trial_says_what_it_waits_for(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d", fake=fake_config(1)) as d:
        exp = d.submit(probe(tmp_path / "out", sleep=60, max_trials=1), name="lost")
        wait_for(lambda: d.client.show(exp)["trials"]["running"] == 1, what="its trial")
        d.set_fake(fake_config(1, devices=[{"name": "Fake H100", "memory_total_mib": 81559,
                                            "lost": True}]))
        wait_for(lambda: d.client.trials(exp)[0]["waiting"], what="the trial to be requeued")
        (trial,) = d.cli_json("ls", exp)
        assert trial["state"] == "interrupted"
        assert trial["waiting"] == {"code": "no_free_gpu", "message": "no free GPU: 1 lost",
                                    "trials": 1, "ahead": []}
        shown = d.cli("ls", exp).stdout.splitlines()
        (row,) = cells("\n".join(shown[: shown.index("")]))
        assert row["STATE"] == "interrupted" and row["WHY"] == "waiting: no free GPU: 1 lost"
        d.client.cancel(exp)


def test_ls_trials_with_chosen_columns_filter_sort_and_limit(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe(tmp_path / "out", max_trials=6), name="cols")
        d.wait_experiment(exp)
        views = {t["id"]: t for t in d.cli_json("ls", exp)}
        assert all(t["last_report"]["training_iteration"] == 3 for t in views.values())
        want = sorted((t for t in views.values() if t["objective"] > 0.3),
                      key=lambda t: -t["objective"])[:2]
        out = d.cli("ls", exp, "--columns", "id,x,opt,score,iter,gpus,attempts",
                    "--filter", "score > 0.3", "--sort=-score", "--limit", "2")
        assert out.returncode == 0, out.stderr
        indices = {g["uuid"]: str(g["index"]) for g in d.client.gpus()["devices"]}
        assert cells(out.stdout) == [
            {"TRIAL": t["id"], "x": f"{t['params']['x']:.4g}", "opt": t["params"]["opt"],
             "score": f"{t['last_report']['score']:.4g}", "ITER": "3",
             "GPUS": indices[t["devices"][0]], "TRIES": "1"} for t in want]
        both = d.cli_json("ls", exp, "--filter", "opt == adam", "--filter", "x < 0.5")
        assert {t["id"] for t in both} == {i for i, t in views.items()
                                           if t["params"]["opt"] == "adam"
                                           and t["params"]["x"] < 0.5}
        ranked = d.cli_json("ls", exp, "--sort", "x", "--desc")
        assert [t["params"]["x"] for t in ranked] == sorted(
            (t["params"]["x"] for t in views.values()), reverse=True)
        listed = cells(d.cli("ls", "--columns", "id,name,state,best.objective").stdout)
        best = max(t["objective"] for t in views.values())
        assert listed == [{"ID": exp, "NAME": "cols", "STATE": "completed",
                           "BEST.OBJECTIVE": f"{best:.4g}"}]
        for bad, says in ((["--filter", "score >> 1"], "COLUMN OP VALUE"),
                          (["--sort", "nope"], "no column 'nope'"),
                          (["--columns", "id,bogus"], "no column 'bogus'"),
                          (["--limit", "-1"], "--limit -1")):
            refused = d.cli("ls", exp, *bad)
            assert refused.returncode == 1 and says in refused.stderr, refused.stderr
            assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr


def test_gpus_table_shows_holders_with_owners_and_fake_devices(tmp_path: Path) -> None:
    fake = fake_config(2)
    fake["devices"][1]["foreign_used_mib"] = 5000
    with running_daemon(tmp_path / "d", fake=fake) as d:
        exp = d.submit(probe(tmp_path / "out", sleep=60, max_trials=1), name="g")
        wait_for(lambda: d.client.gpus()["devices"][0]["state"] == "busy", what="GPU 0 busy")
        devices = d.client.gpus()["devices"]
        lines = d.cli("gpus").stdout.splitlines()
        assert lines[0] == "backend: fake (2 devices: 1 busy, 1 foreign)"
        rows = cells("\n".join(lines[1:lines.index("")] if "" in lines else lines[1:]))
        assert [r["IDX"] for r in rows] == ["0", "1"]
        assert all(r["NAME"] == "Fake H100 [fake]" for r in rows)
        assert [r["UUID"] for r in rows] == [dev["uuid"][:12] + "…" for dev in devices]
        assert rows[0]["STATE"] == "busy" and rows[0]["HOLDERS"] == f"{exp}/0 ({ME})"
        assert rows[0]["MEMORY"] == "[----------]  2300 / 81559 MiB  3%"
        assert rows[1]["STATE"] == "foreign" and rows[1]["HOLDERS"] == "-"
        assert rows[1]["MEMORY"] == "[#---------]  5300 / 81559 MiB  6%"
        assert rows[1]["WHY"] == "5000 MiB used by processes gpusched did not start"
        assert devices[0]["foreign_processes"] == []
        d.client.cancel(exp)


def test_watch_off_a_terminal_appends_snapshots_until_the_experiment_ends(
        tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe(tmp_path / "out", sleep=0.5, max_trials=4, max_parallel_trials=1),
                       name="w")
        # No EXP: the newest experiment in progress, the only one here.
        out = subprocess.run(gpusched_cmd(d, "watch", "--interval", "0.2"),
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        assert "\x1b" not in out.stdout and out.stderr == ""
        snapshots = out.stdout.split("\n-- ")
        assert len(snapshots) >= 3  # it changed as trials ran, and each change was appended
        last = snapshots[-1].splitlines()
        view = d.client.show(exp)
        assert last[1] == f"== {exp} w ({ME}): completed: {view['reason']} =="
        assert last[2] == "trials: 4 of 4 (4 completed)"
        assert last[3].startswith(f"best score (max): {view['best']['objective']:.4g}"
                                  f" ({view['best']['trial']}) x=")
        rows = cells("\n".join(last[5:]))
        trials = d.client.trials(exp, last_report=True)
        assert [(r["TRIAL"], r["STATE"], r["score"], r["ITER"]) for r in rows] == [
            (t["id"], "completed", f"{t['last_report']['score']:.4g}", "3") for t in trials]
        assert any("running" in s for s in snapshots[:-1])  # it showed the run, not only the end
        nothing = d.cli("watch")
        assert nothing.returncode == 1
        assert nothing.stderr == ("gpusched: no experiment is queued or running: name one,"
                                  " `gpusched watch EXP` (see `gpusched ls --all`)\n")
        bad = d.cli("watch", exp, "--interval", "0")
        assert bad.returncode == 1 and "--interval 0: give a number of seconds > 0" in bad.stderr


def _read_pty(fd: int, proc: subprocess.Popen[bytes], until: float) -> bytes:
    data = b""
    while time.monotonic() < until:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed its side
                break
            if not chunk:
                break
            data += chunk
        elif proc.poll() is not None:
            break
    return data


def _watch_on_pty(d: Daemon, exp: str) -> tuple[subprocess.Popen[bytes], int]:
    main, child = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "LINES": "40"}
    proc = subprocess.Popen(gpusched_cmd(d, "watch", exp, "--interval", "0.2"), stdin=child,
                            stdout=child, stderr=child, env=env, start_new_session=True)
    os.close(child)
    return proc, main


def test_watch_on_a_terminal_redraws_in_place(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe(tmp_path / "out", sleep=0.4, max_trials=3, max_parallel_trials=1),
                       name="tty")
        proc, fd = _watch_on_pty(d, exp)
        try:
            screen = _read_pty(fd, proc, time.monotonic() + 60).decode()
            assert proc.wait(10) == 0
        finally:
            os.close(fd)
        assert screen.startswith("\x1b[?25l\x1b[2J\x1b[H")  # hide the cursor, clear, home
        frames = screen.split("\x1b[H")[1:]
        assert len(frames) >= 3
        assert all(f.endswith("\x1b[J") for f in frames[:-1])  # each clears what it left over
        assert "-- " not in screen  # no appended snapshots on a terminal
        final = frames[-1].removesuffix("\x1b[?25h")  # the cursor comes back at the end
        assert screen.endswith("\x1b[?25h")
        lines = [line.removesuffix("\x1b[K") for line in final.replace("\r", "").split("\n")]
        assert lines[0].startswith(f"== {exp} tty ({ME}): completed")
        assert f"{exp}/2" in final and "Traceback" not in screen


def test_watch_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe(tmp_path / "out", sleep=60, max_trials=1), name="long")
        proc, fd = _watch_on_pty(d, exp)
        try:
            first = _read_pty(fd, proc, time.monotonic() + 3)
            assert b"running" in first or b"queued" in first
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
            rest = _read_pty(fd, proc, time.monotonic() + 10)
            assert proc.wait(10) == 130
        finally:
            os.close(fd)
        assert b"Traceback" not in first + rest and b"KeyboardInterrupt" not in first + rest
        assert rest.endswith(b"\x1b[?25h\r\n")  # cursor shown again, prompt on its own line
        d.client.cancel(exp)


def test_export_csv_json_and_every_report(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe(tmp_path / "out", steps=4, max_trials=3,
                             points_to_evaluate=[{"x": 0.5, "opt": "adam"}]), name="exp")
        d.wait_experiment(exp)
        views = d.client.trials(exp, last_report=True)
        out = d.cli("export", exp)
        assert out.returncode == 0, out.stderr
        rows = list(csv.DictReader(io.StringIO(out.stdout)))
        assert list(rows[0])[:9] == ["number", "id", "state", "objective", "params.x",
                                     "params.opt", "budget", "continues", "point"]
        # As `ls --json` has them: the first trial took the file's point 0; no budget here.
        assert [(r["budget"], r["continues"], r["point"]) for r in rows] == [
            ("", "", "0"), ("", "", ""), ("", "", "")]
        assert [t["point"] for t in views] == [0, None, None]
        for row, t in zip(rows, views, strict=True):
            assert row["number"] == str(t["number"]) and row["id"] == t["id"]
            assert row["state"] == "completed" and float(row["objective"]) == t["objective"]
            assert float(row["params.x"]) == t["params"]["x"]
            assert row["params.opt"] == t["params"]["opt"]
            assert float(row["last_report.score"]) == t["last_report"]["score"]
            assert row["last_report.training_iteration"] == "4"
            assert float(row["started_at"]) == t["started_at"]
            assert row["gpus"] == " ".join(t["devices"]) and row["attempts"] == "1"
        target = tmp_path / "all.csv"
        assert d.cli("export", exp, "--reports", "-o", str(target)).returncode == 0
        every = list(csv.DictReader(target.open()))
        assert len(every) == 12
        assert [r["training_iteration"] for r in every[:4]] == ["1", "2", "3", "4"]
        assert float(every[3]["score"]) == views[0]["last_report"]["score"]
        data = json.loads(d.cli("export", exp, "--format", "json", "--reports").stdout)
        assert data["experiment"]["id"] == exp and len(data["trials"]) == 3
        assert [len(t["history"]) for t in data["trials"]] == [4, 4, 4]
        assert data["trials"][1]["last_report"] == data["trials"][1]["history"][-1]
        tb = tmp_path / "tb"
        out = d.cli("export", exp, "--format", "tensorboard", "--out", str(tb))
        assert out.returncode == 0 and out.stdout.startswith("4 event files under")
        assert sorted(p.name for p in tb.iterdir() if p.is_dir()) == [
            "trial-0", "trial-1", "trial-2"]
        again = d.cli("export", exp, "--format", "tensorboard", "--out", str(tb))
        assert again.returncode == 1 and "already holds a TensorBoard export" in again.stderr
        no_dir = d.cli("export", exp, "--format", "tensorboard")
        assert no_dir.returncode == 1 and "--out DIR" in no_dir.stderr


def test_best_says_how_an_experiment_without_a_result_ended(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe(tmp_path / "out", max_trials=1, command=[
            sys.executable, trial_script("probe.py"), "--no-metric", "--exit", "3"]),
            name="crash")
        view = d.wait_experiment(exp)
        assert view["state"] == "failed" and view["reason"]
        out = d.cli("best", exp)
        assert out.returncode == 0, out.stderr
        assert out.stdout == (f"no trial of {exp} has a result: it ended failed"
                              f" ({view['reason']})\n")
        assert d.cli_json("best", exp) == []


def test_best_alone_means_your_newest_experiment(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        empty = d.cli("best")
        assert empty.returncode == 1
        assert "you have submitted no experiment to this daemon" in empty.stderr
        older = d.submit(probe(tmp_path / "a", max_trials=2), name="older")
        newer = d.submit(probe(tmp_path / "b", max_trials=2), name="newer")
        for exp in (older, newer):
            d.wait_experiment(exp)
        alone = d.cli("best")
        assert alone.returncode == 0, alone.stderr
        assert alone.stderr == f"(best of {newer}, your newest experiment)\n"
        assert alone.stdout == d.cli("best", newer).stdout
        assert d.cli_json("best") == d.cli_json("best", newer)


def test_plot_draws_two_pngs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe(tmp_path / "out", steps=5, max_trials=5), name="plots")
        d.wait_experiment(exp)
        out = d.cli("plot", exp, "--out", str(tmp_path / "png"))
        assert out.returncode == 0, out.stderr
        paths = [Path(p) for p in out.stdout.split()]
        assert [p.name for p in paths] == [f"{exp}-curves.png", f"{exp}-parallel.png"]
        for path in paths:
            data = path.read_bytes()
            assert data.startswith(PNG_MAGIC) and len(data) > 10_000
            width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
            assert width >= 600 and height >= 500
        other = d.cli("plot", exp, "--metric", "nothing")
        assert other.returncode == 1 and "no trial of" in other.stderr
        # Without matplotlib: one line saying what to install.
        hide = tmp_path / "hide" / "matplotlib"
        hide.mkdir(parents=True)
        (hide / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
        env = {**os.environ, "PYTHONPATH": str(hide.parent)}
        missing = subprocess.run(gpusched_cmd(d, "plot", exp), capture_output=True, text=True,
                                 timeout=60, check=False, env=env)
        assert missing.returncode == 1
        assert missing.stderr == ("gpusched: gpusched plot needs matplotlib: pip install"
                                  " 'gpusched[plot]' (or pip install matplotlib)\n")
