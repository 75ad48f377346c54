"""Trial behaviour through a real daemon: reports, outcomes, stops, cancel, restart."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from tests.integration.harness import (
    fake_config,
    running_daemon,
    stop_daemon,
    trial_script,
    wait_for,
)
from tests.integration.test_failure_rules import outcome_experiment, shown
from tests.integration.test_gpus import probe_experiment


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_hypertune_file_reports_are_read_without_duplicates(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({"command": [sys.executable, trial_script("hypertune.py")],
                        "metric": "val_auc", "max_trials": 1,
                        "params": [{"name": "x", "type": "integer", "min": 1, "max": 3}]})
        assert d.wait_experiment(exp)["state"] == "completed"
        (trial,) = d.client.trials(exp)
        shown = d.client.show(f"{exp}/0")
    assert trial["reports"] == 5
    assert trial["objective"] == 0.9
    last = shown["last_report"]
    assert last["val_auc"] == 0.9 and last["step"] == 4 and last["training_iteration"] == 5
    assert {"time_total_s", "time_this_iter_s", "timestamp"} <= set(last)


def test_no_report_is_lost_when_trials_exit_right_after_reporting(tmp_path: Path) -> None:
    # Regression: a poll cancelled by the trial's exit used to drop what it had read.
    out = tmp_path / "out"
    with running_daemon(tmp_path / "d", fake=fake_config(2)) as d:
        exp = d.submit(probe_experiment(out, max_trials=12, max_parallel_trials=2,
                                        command=[sys.executable, trial_script("probe.py"),
                                                 "--steps", "300"]))
        assert d.wait_experiment(exp)["state"] == "completed"
        trials = d.client.trials(exp)
    assert [t["reports"] for t in trials] == [300] * 12
    for t in trials:
        assert t["objective"] == pytest.approx(t["params"]["x"])  # the last report: x * 300/300


def test_outcomes_and_their_reasons(tmp_path: Path) -> None:
    out = tmp_path / "out"
    probe = [sys.executable, trial_script("probe.py"), "--out", str(out)]
    with running_daemon(tmp_path / "d") as d:
        # max_failed_trials unset: AI Platform's rule, the first trial's failure ends it.
        once = {"max_trials": 1, "max_failed_trials": None}
        silent = d.submit(probe_experiment(out, command=[*probe, "--no-metric"], **once))
        crash = d.submit(probe_experiment(out, command=[*probe, "--exit", "3"], **once),
                         name="crash")
        missing = d.submit(probe_experiment(out, command=["/nonexistent/trainer"], **once),
                           name="missing")
        for exp, reason in [(silent, "exited 0 without reporting 'score'"),
                            (crash, "exited with code 3"), (missing, "cannot start")]:
            view = d.wait_experiment(exp)
            (trial,) = d.client.trials(exp)
            assert trial["state"] == "failed"
            assert reason in trial["reason"]
            assert view["state"] == "failed"
            assert view["reason"].startswith(f"the first trial, {exp}/0, failed: {reason}")
        (crashed,) = d.client.trials(crash)
        assert crashed["exit_code"] == 3


def test_stop_bound_stops_a_running_trial(tmp_path: Path) -> None:
    script = tmp_path / "climb.py"
    script.write_text(
        "import os, json, time\n"
        "f = open(os.environ['GPUSCHED_REPORT_FILE'], 'a')\n"
        "for i in range(1000):\n"
        "    f.write(json.dumps({'score': i / 100}) + '\\n'); f.flush(); time.sleep(0.01)\n"
    )
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({"command": [sys.executable, str(script)], "metric": "score",
                        "max_trials": 1, "stop": {"score": 0.5},
                        "params": [{"name": "x", "type": "integer", "min": 1, "max": 3}]})
        assert d.wait_experiment(exp)["state"] == "completed"
        (trial,) = d.client.trials(exp)
    assert trial["state"] == "stopped"
    assert "stop bound" in trial["reason"] and "score" in trial["reason"]
    assert 0.5 <= trial["objective"] < 9.0  # stopped long before its 1000 reports


def test_trial_timeout_fails_the_trial(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe_experiment(out, max_trials=1, trial_timeout="1s",
                                        command=[sys.executable, trial_script("probe.py"),
                                                 "--sleep", "60"]))
        d.wait_experiment(exp, timeout=30)
        (trial,) = d.client.trials(exp)
    assert trial["state"] == "failed" and "trial_timeout" in trial["reason"]
    assert trial["exit_signal"] == 15  # SIGTERM, within the grace period


STUBBORN = """
import json, os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: open(sys.argv[1], "a").write("term\\n"))
with open(os.environ["GPUSCHED_REPORT_FILE"], "a", buffering=1) as fh:
    for step in range(10**6):
        fh.write(json.dumps({"step": step, "score": step}) + "\\n")
        time.sleep(0.05)
"""


def test_a_trial_that_ignores_sigterm_is_killed_after_the_grace_and_its_reports_kept(
    tmp_path: Path
) -> None:
    # The watch goes on reading reports through the grace period, then sends SIGKILL.
    script, terms = tmp_path / "stubborn.py", tmp_path / "terms"
    script.write_text(STUBBORN)
    with running_daemon(tmp_path / "d", settings={"grace_period_s": 0.6}) as d:
        exp = d.submit({"command": [sys.executable, str(script), str(terms)], "metric": "score",
                        "max_trials": 1, "trial_timeout": "1s",
                        "params": [{"name": "x", "type": "integer", "min": 1, "max": 3}]})
        d.wait_experiment(exp, timeout=30)
        (trial,) = d.client.trials(exp)
        reports = d.client.reports(f"{exp}/0")[0]["reports"]
    assert trial["state"] == "failed" and "trial_timeout of 1s" in trial["reason"], trial
    assert trial["exit_signal"] == 9, trial  # SIGKILL: it ignored the SIGTERM
    assert terms.read_text() == "term\n"  # one SIGTERM, then the grace, then SIGKILL
    assert 1.6 - 0.05 <= trial["duration_s"] < 10, trial
    # Reports kept coming during the grace period, and were all stored.
    assert len(reports) >= 20, len(reports)
    assert [r["step"] for r in reports] == list(range(len(reports)))


def test_cancel_kills_the_trial_its_children_and_grandchildren(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids.json"
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({"command": [sys.executable, trial_script("family.py"), str(pids_file)],
                        "metric": "score", "max_trials": 1,
                        "params": [{"name": "x", "type": "integer", "min": 1, "max": 3}]})
        wait_for(pids_file.exists, 20, "the trial's processes")
        pids = json.loads(pids_file.read_text())["pids"]
        assert all(alive(p) for p in pids)
        out = d.cli("cancel", f"{exp}/0")
        assert out.returncode == 0, out.stderr
        wait_for(lambda: d.client.show(f"{exp}/0")["state"] == "cancelled", 20, "cancelled")
        assert not [p for p in pids if alive(p)]
        assert d.wait_experiment(exp)["state"] == "failed"  # its only trial: no result


def test_a_stopped_trials_child_gets_one_sigterm_and_the_grace_when_its_leader_exits_first(
    tmp_path: Path,
) -> None:
    # The leader exits on SIGTERM at once; its child takes 1 s in its SIGTERM handler. The
    # clean-up after the leader's exit once sent the child a second SIGTERM, re-entering its
    # handler in the middle of its save, and counted a fresh grace period from there.
    notes = tmp_path / "child.txt"
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({"command": [sys.executable, trial_script("saver.py"), str(notes)],
                        "metric": "score", "max_trials": 1,
                        "params": [{"name": "x", "type": "integer", "min": 1, "max": 3}]})
        wait_for(lambda: notes.exists() and "ready" in notes.read_text(), 20, "the child")
        assert d.cli("cancel", f"{exp}/0").returncode == 0
        wait_for(lambda: d.client.show(f"{exp}/0")["state"] == "cancelled", 20, "cancelled")
        d.wait_experiment(exp)
    assert notes.read_text().split() == ["ready", "term", "saved"]


def test_a_cancel_after_the_trial_exited_by_itself_keeps_its_outcome(tmp_path: Path) -> None:
    # The trial exits 0 with its metric; the child it left ignores SIGTERM, so the daemon
    # waits out the grace period before recording the end. A cancel in that window once
    # turned the completed trial into a cancelled one without a result.
    pids_file = tmp_path / "pids.json"
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({"command": [sys.executable, trial_script("lingering.py"),
                                    str(pids_file)],
                        "metric": "score", "max_trials": 1,
                        "params": [{"name": "x", "type": "integer", "min": 1, "max": 3}]})
        wait_for(pids_file.exists, 20, "the trial's pids")
        pids = json.loads(pids_file.read_text())
        # Reaped by the daemon (gone from /proc, not merely a zombie): its exit is known there.
        wait_for(lambda: not Path(f"/proc/{pids['leader']}").exists(), 20, "the leader's end")
        assert alive(pids["child"])
        assert d.cli("cancel", f"{exp}/0").returncode == 0
        view = d.wait_experiment(exp)
        (trial,) = d.client.trials(exp)
    assert (trial["state"], trial["objective"]) == ("completed", 0.5), trial["reason"]
    assert view["state"] == "completed"
    assert not alive(pids["child"])


def test_a_cancel_as_the_trial_crashes_is_not_turned_into_a_retry(tmp_path: Path) -> None:
    # The trial crashes with a retry left; its leftover child is being stopped when the
    # cancel comes. The cancel was once dropped, and the trial ran again.
    pids_file = tmp_path / "pids.json"
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({"command": [sys.executable, trial_script("lingering.py"),
                                    str(pids_file), "--exit-code=3"],
                        "metric": "score", "max_trials": 1, "max_retries_per_trial": 2,
                        "params": [{"name": "x", "type": "integer", "min": 1, "max": 3}]})
        wait_for(pids_file.exists, 20, "the trial's pids")
        pids = json.loads(pids_file.read_text())
        # Reaped by the daemon (gone from /proc, not merely a zombie): its exit is known there.
        wait_for(lambda: not Path(f"/proc/{pids['leader']}").exists(), 20, "the leader's end")
        assert d.cli("cancel", f"{exp}/0").returncode == 0
        d.wait_experiment(exp)
        (trial,) = d.client.trials(exp)
    assert (trial["state"], trial["attempts"]) == ("cancelled", 1), trial
    assert trial["reason"] == "cancelled (it had exited with code 3)"


def test_cancel_an_experiment_stops_all_its_trials(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with running_daemon(tmp_path / "d", fake=fake_config(2)) as d:
        exp = d.submit(probe_experiment(out, max_trials=10, command=[
            sys.executable, trial_script("probe.py"), "--out", str(out), "--sleep", "60"]))
        wait_for(lambda: d.client.show(exp)["trials"]["running"] == 2, 20, "two trials")
        assert d.cli("cancel", exp).returncode == 0
        view = d.wait_experiment(exp)
        trials = d.client.trials(exp)
    assert view["state"] == "cancelled"
    assert [t["state"] for t in trials] == ["cancelled", "cancelled"]
    assert not [r["pid"] for r in map(json.loads, map(Path.read_text, out.glob("*.json")))
                if alive(r["pid"])]


def test_cancel_ends_an_experiment_whose_retry_waits_for_a_gpu(tmp_path: Path) -> None:
    # Trial 0 crashes; its retry waits while the only GPU releases (3 s). A cancel then must
    # record the waiting retry cancelled and end the experiment (it once stayed running), and
    # `resume` runs that trial again.
    with running_daemon(tmp_path / "d", fake=fake_config(1, release_delay_s=3.0)) as d:
        exp = d.submit(outcome_experiment({0: "crash"}, max_trials=1, max_failed_trials=100,
                                          max_retries_per_trial=1))
        wait_for(lambda: d.client.trials(exp)[0]["reason"] == "exited with code 3; retry 1 of 1",
                 20, "trial 0's retry to wait")
        assert d.cli("cancel", exp).returncode == 0
        view = d.wait_experiment(exp, timeout=10)
        (trial,) = d.client.trials(exp)
        assert view["state"] == "cancelled"
        assert (trial["state"], trial["attempts"], trial["reason"]) == (
            "cancelled", 1, "cancelled")
        assert d.cli("resume", exp).returncode == 0
        assert d.wait_experiment(exp)["state"] == "failed"  # failed again: no result
        (trial,) = d.client.trials(exp)
    # It ran again, crashed again, and its one retry was spent before the cancel.
    assert (trial["state"], trial["attempts"]) == ("failed", 2)


def test_sigterm_interrupts_trials_and_a_restart_runs_them_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    state = tmp_path / "state"
    experiment = probe_experiment(out, max_trials=1, command=[
        sys.executable, trial_script("probe.py"), "--out", str(out), "--sleep", "2"])
    with running_daemon(tmp_path / "d1", state_dir=state) as d:
        exp = d.submit(experiment)
        wait_for(lambda: list(out.glob("*.json")), 20, "the trial to be running")
        assert stop_daemon(d.proc) == 0
    with running_daemon(tmp_path / "d2", state_dir=state) as d:
        view = d.wait_experiment(exp)
        (trial,) = d.client.trials(exp)
        events = [e["kind"] for e in d.client.show(f"{exp}/0")["events"]]
    assert view["state"] == "completed"
    assert trial["state"] == "completed" and trial["attempts"] == 2
    assert events.count("trial_started") == 2
    ended = [e for e in events if e == "trial_ended"]
    assert len(ended) == 2
    runs = sorted(out.glob("*.json"))
    assert len(runs) == 2 and "end" not in json.loads(runs[0].read_text())  # first cut short
    assert not [p for p in (json.loads(r.read_text())["pid"] for r in runs) if alive(p)]
    assert os.path.exists(trial["dir"])


FLAKY = """\
import os, sys
from gpusched import trial
seen = len(os.listdir(trial.checkpoint_dir()))
if "--mode=failed" in sys.argv:
    raise gpusched_error
if seen < int(os.environ["CRASHES"]):
    open(os.path.join(trial.checkpoint_dir(), f"crash-{seen}"), "w").close()
    sys.exit(3)
trial.report(score=float(seen))
"""


def test_a_crashing_trial_is_retried_with_its_params_and_checkpoint_folder(
    tmp_path: Path,
) -> None:
    script = tmp_path / "flaky.py"
    script.write_text(FLAKY.replace("raise gpusched_error",
                                    "raise __import__('gpusched').FailedTrialError('bad x')"))

    def experiment(crashes: int, retries: int, mode: str = "crash") -> dict[str, object]:
        return {"command": [sys.executable, str(script)], "metric": "score", "max_trials": 1,
                "max_retries_per_trial": retries, "env": {"CRASHES": str(crashes)},
                "params": [{"name": "mode", "type": "categorical", "values": [mode]},
                           {"name": "x", "type": "discrete", "values": [1.0]}]}

    with running_daemon(tmp_path / "d") as d:
        healed = d.submit(experiment(crashes=2, retries=2), name="healed")
        exhausted = d.submit(experiment(crashes=5, retries=2), name="exhausted")
        refused = d.submit(experiment(crashes=0, retries=3, mode="failed"), name="refused")
        for exp in (healed, exhausted, refused):
            d.wait_experiment(exp)
        (ok,) = d.client.trials(healed)
        (bad,) = d.client.trials(exhausted)
        (said,) = d.client.trials(refused)
        retries = [e for e in d.client.show(f"{healed}/0")["events"]
                   if e["kind"] == "trial_retrying"]
        shown_text = shown(d, f"{healed}/0")
        listed = d.cli("ls", healed).stdout.splitlines()
    # Two crashes, then success on the third attempt, which saw the first two's checkpoints.
    assert ok["state"] == "completed" and ok["attempts"] == 3 and ok["objective"] == 2.0
    assert [e["data"]["reason"] for e in retries] == [
        "exited with code 3; retry 1 of 2", "exited with code 3; retry 2 of 2"]
    # `gpusched show` prints the attempts and each retry with its reason; `ls` a TRIES column.
    assert shown_text["attempts"] == "3" and shown_text["state"] == "completed"
    assert "trial_retrying  exited with code 3; retry 2 of 2" in shown_text["events"]
    header, row = (line.split() for line in listed)
    assert row[header.index("TRIES")] == "3"
    assert bad["state"] == "failed" and bad["attempts"] == 3
    assert bad["reason"] == "exited with code 3"
    # FailedTrialError: failed at once, no retry.
    assert said["state"] == "failed" and said["attempts"] == 1 and "bad x" in said["reason"]


RETRIED_THEN_WAITS = """\
import os, pathlib, sys, time
crashed = pathlib.Path(os.environ["GPUSCHED_CHECKPOINT_DIR"]) / "crashed"
if not crashed.exists():
    crashed.write_text("once")
    sys.exit(3)
while not pathlib.Path(sys.argv[1]).exists():
    time.sleep(0.02)
with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as fh:
    fh.write('{"score": 1.0}\\n')
"""


def test_a_retried_trial_running_again_has_no_end_and_no_negative_duration(
    tmp_path: Path,
) -> None:
    # The retry's start once kept the first attempt's ended_at: while it ran, `ls` showed a
    # negative TIME and the views an end for a running trial.
    script, go = tmp_path / "retried.py", tmp_path / "go"
    script.write_text(RETRIED_THEN_WAITS)
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({"command": [sys.executable, str(script), str(go)], "metric": "score",
                        "max_trials": 1, "max_retries_per_trial": 1,
                        "params": [{"name": "x", "type": "discrete", "values": [1.0]}]})
        running = wait_for(lambda: (t := d.client.show(f"{exp}/0"))["state"] == "running"
                           and t["attempts"] == 2 and t, 20, "the retry to run")
        go.touch()
        ended = d.wait_experiment(exp)
    assert running["ended_at"] is None
    assert running["duration_s"] is None or running["duration_s"] >= 0
    assert ended["state"] == "completed"


def test_time_budget_stops_running_trials_and_starts_no_more(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe_experiment(out, max_trials=50, max_parallel_trials=2,
                                        time_budget="1.5s", command=[
                                            sys.executable, trial_script("probe.py"), "--out",
                                            str(out), "--sleep", "0.6", "--steps", "3"]))
        view = d.wait_experiment(exp, timeout=30)
        trials = d.client.trials(exp)
        events = [e["kind"] for e in d.client.show(exp)["events"]]
    assert view["state"] == "completed", view
    assert view["reason"].startswith("time_budget of 1.5s used up;"), view["reason"]
    assert "time_budget_used_up" in events
    assert 2 <= len(trials) < 50  # it ran some, then no more
    started = [float(t["started_at"]) for t in trials]
    assert max(started) - float(view["started_at"]) < 1.5
    stopped = [t for t in trials if t["state"] == "stopped"]
    assert stopped and all("time_budget of 1.5s used up" in t["reason"] for t in stopped)
    assert float(view["ended_at"]) - float(view["started_at"]) < 1.5 + 3.0  # + grace


def test_resume_goes_on_with_a_failed_or_cancelled_experiment(tmp_path: Path) -> None:
    fixed = tmp_path / "fixed"
    script = tmp_path / "train.py"
    script.write_text(f"import os, sys\nif not os.path.exists({str(fixed)!r}): sys.exit(2)\n"
                      "from gpusched import trial\ntrial.report(score=1.0)\n")
    out = tmp_path / "out"
    with running_daemon(tmp_path / "d") as d:
        broken = d.submit({"command": [sys.executable, str(script)], "metric": "score",
                           "max_trials": 3, "max_parallel_trials": 1,
                           "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]},
                          name="broken")
        assert d.wait_experiment(broken)["state"] == "failed"  # its first trial failed
        failed_before = [t["number"] for t in d.client.trials(broken) if t["state"] == "failed"]
        fixed.touch()
        out_resume = d.cli("resume", broken)
        assert out_resume.returncode == 0 and out_resume.stdout.startswith(f"resuming {broken}")
        view = d.wait_experiment(broken)
        trials = d.client.trials(broken)
        assert view["state"] == "completed", view
        # The failed ones stay as they were (results, too); the rest run now.
        assert [t["state"] == "failed" for t in trials] == [
            t["number"] in failed_before for t in trials]
        assert len(trials) == 3 and trials[-1]["state"] == "completed"
        assert "experiment_resumed" in [e["kind"] for e in d.client.show(broken)["events"]]

        slow = d.submit(probe_experiment(out, max_trials=2, max_parallel_trials=2, command=[
            sys.executable, trial_script("probe.py"), "--out", str(out), "--sleep", "0.5"]),
            name="slow")
        wait_for(lambda: d.client.show(slow)["trials"]["running"] == 2, what="both running")
        d.cli("cancel", slow)
        assert d.wait_experiment(slow)["state"] == "cancelled"
        again = d.cli("resume", "slow")  # by name
        assert again.returncode == 0, again.stderr
        assert "2 trials to run again" in again.stdout
        assert d.wait_experiment(slow)["state"] == "completed"
        assert [(t["state"], t["attempts"]) for t in d.client.trials(slow)] == [
            ("completed", 2), ("completed", 2)]

        refused = d.cli("resume", slow)
        assert refused.returncode == 1 and "only a failed or cancelled one" in refused.stderr
        assert "resume_from" in refused.stderr


def test_a_failed_experiment_with_nothing_left_to_run_is_not_resumed_into_a_success(
    tmp_path: Path,
) -> None:
    # Its one trial failed: `resume` once made it `completed` at once, and `gpusched wait`
    # exited 0, a success to a CI script.
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({"command": "false", "metric": "acc", "max_trials": 1,
                        "gpus_per_trial": 0,
                        "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]})
        first = d.cli("wait", exp)
        refused = d.cli("resume", exp)
        after = d.cli("wait", exp)
        events = [e["kind"] for e in d.client.show(exp)["events"]]
    assert first.returncode == 1, first
    assert first.stdout.startswith(f"{exp} failed: the first trial, {exp}/0, failed: exited with"
                                   " code 1; set max_failed_trials"), first
    assert refused.returncode == 1, refused
    assert refused.stderr.startswith(f"gpusched: {exp} has nothing left to run: all of its"
                                     " max_trials (1) have run and no trial was cut short, so it"
                                     " stays failed."), refused.stderr
    assert "None of its trials has a result to learn from" in refused.stderr
    assert (after.returncode, after.stdout) == (1, first.stdout)  # as it was: failed
    assert "experiment_resumed" not in events


def test_a_daemonized_grandchild_does_not_outlive_its_trial(tmp_path: Path) -> None:
    pid_file = tmp_path / "escapee.pid"
    script = tmp_path / "train.py"
    # The child leaves the trial's session and process group (setsid), as a daemon does.
    script.write_text(
        "import subprocess, sys\nfrom gpusched import trial\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "trial.report(score=1.0)\n")
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({"command": [sys.executable, str(script)], "metric": "score",
                        "max_trials": 1,
                        "params": [{"name": "x", "type": "categorical", "values": ["a"]}]})
        assert d.wait_experiment(exp)["state"] == "completed"
        escapee = int(pid_file.read_text())
        assert not alive(escapee)  # gone by the time the trial's end was recorded
        assert any(e["event"] == "trial_escapees_stopped" for e in d.log_events())


def test_ai_platform_early_stopping_is_the_median_rule(tmp_path: Path) -> None:
    script = tmp_path / "curve.py"
    script.write_text(  # a learning curve that rises to x; low x is a poor trial
        "import sys, time\nfrom gpusched import trial\n"
        "x = float(next(a for a in sys.argv if a.startswith('--x=')).split('=')[1])\n"
        "for step in range(1, 11):\n"
        "    time.sleep(0.01)\n"
        "    trial.report(score=x * step / 10)\n")
    config = tmp_path / "hptuning_config.yaml"
    config.write_text(
        "trainingInput:\n  hyperparameters:\n    goal: MAXIMIZE\n"
        "    hyperparameterMetricTag: score\n    maxTrials: 12\n    maxParallelTrials: 1\n"
        "    enableTrialEarlyStopping: true\n    params:\n"
        "      - {parameterName: x, type: DOUBLE, minValue: 0.0, maxValue: 1.0}\n")
    with running_daemon(tmp_path / "d") as d:
        out = d.cli("submit", "--aip", str(config), "--", sys.executable, str(script))
        assert out.returncode == 0, out.stderr
        exp = out.stdout.strip()
        view = d.wait_experiment(exp)
        trials = d.client.trials(exp)
    assert view["state"] == "completed", view
    assert view["metric"] == "score"
    stopped = [t for t in trials if t["state"] == "stopped"]
    assert stopped, [(t["params"], t["state"]) for t in trials]
    for t in stopped:
        assert t["reason"].startswith("median stopping: best score")
        assert t["reports"] < 10  # stopped before its curve ended
        assert t["number"] >= 5  # min_trials: 5 completed trials first


@pytest.mark.parametrize("restart", [False, True])
def test_trials_stopped_at_the_stop_bound_are_what_median_stopping_compares_with(
    tmp_path: Path, restart: bool,
) -> None:
    # With Ray Tune's usual `stop: {training_iteration: N}`, every trial ends `stopped` by the
    # bound, and median stopping, which compared with completed trials only, never acted.
    gate = tmp_path / "go"
    script = tmp_path / "curve.py"
    script.write_text(  # loss is x at every step; x = 0.9, the poor trial, waits for the gate
        "import os, sys, time\nfrom gpusched import trial\n"
        "x = float(next(a for a in sys.argv if a.startswith('--x=')).split('=')[1])\n"
        f"while x > 0.5 and not os.path.exists({str(gate)!r}):\n"
        "    time.sleep(0.02)\n"
        "for step in range(1, 41):\n"
        "    trial.report(loss=x)\n"
        "    time.sleep(0.02 if x < 0.5 else 0.1)\n")
    state = tmp_path / "state"
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        exp = d.submit({
            "command": [sys.executable, str(script)], "metric": "loss", "goal": "minimize",
            "max_trials": 3, "max_parallel_trials": 1, "search": "grid",
            "stop": {"training_iteration": 5},
            "early_stopping": {"policy": "median", "min_trials": 2, "grace_period": 1},
            "params": [{"name": "x", "type": "discrete", "values": [0.1, 0.2, 0.9]}]})
        wait_for(lambda: d.client.show(exp)["trials"]["running"] == 1
                 and len(d.client.trials(exp)) == 3, 30, "the poor trial to start")
        if restart:  # the first two are read back from the log (the bound is in the reason)
            d.proc.kill()
            d.proc.wait()
        else:
            gate.touch()
            assert d.wait_experiment(exp)["state"] == "completed"
            trials = d.client.trials(exp)
    if restart:
        with running_daemon(tmp_path / "d", state_dir=state) as d:
            gate.touch()
            assert d.wait_experiment(exp)["state"] == "completed"
            trials = d.client.trials(exp)
    assert [t["reason"].split(":")[0] for t in trials[:2]] == ["stop bound reached"] * 2
    # Judged at its first poll with reports: step 1, or a later one when the host is slow to
    # poll (its reports come every 0.1 s), but before the bound of 5 could stop it instead.
    assert re.match(r"median stopping: best loss 0\.9 by step [1-4]\b", trials[2]["reason"]), \
        trials[2]
