"""Which trial took a point of ``points_to_evaluate``, through a real daemon: ``point`` in the
trial views (``ls EXP --json``, ``show EXP/N``, ``best``), and a ``point`` line in ``show
EXP/N`` for those trials alone; read from the log, so a restarted daemon says the same."""

from __future__ import annotations

from pathlib import Path

from tests.integration.harness import running_daemon
from tests.integration.test_points_to_evaluate import POINTS, probe


def point_lines(text: str) -> list[list[str]]:
    """The ``point`` line of ``gpusched show EXP/N``'s fields, split into its words (none when
    it is not shown)."""
    fields = text.split("\nevents:", 1)[0]
    return [line.split() for line in fields.splitlines() if line.split()[:1] == ["point"]]


def test_the_trials_that_took_a_point_say_which(tmp_path: Path) -> None:
    state = tmp_path / "state"
    experiment = probe(tmp_path / "out", max_trials=4, points_to_evaluate=POINTS[:2])
    with running_daemon(tmp_path / "d1", state_dir=state) as d:
        exp = d.submit(experiment)
        assert d.wait_experiment(exp)["state"] == "completed"
        listed = d.cli_json("ls", exp)
        shown = [d.cli("show", f"{exp}/{n}") for n in range(4)]
        as_json = d.cli_json("show", f"{exp}/1")
        best = d.cli_json("best", exp, "-n", "4")
    assert [t["point"] for t in listed] == [0, 1, None, None]
    assert [t["params"] for t in listed[:2]] == POINTS[:2]
    assert all(s.returncode == 0 for s in shown), [s.stderr for s in shown]
    assert [point_lines(s.stdout) for s in shown] == [
        [["point", "points_to_evaluate[0]"]], [["point", "points_to_evaluate[1]"]], [], []]
    assert as_json["point"] == 1
    assert {t["number"]: t["point"] for t in best} == {0: 0, 1: 1, 2: None, 3: None}
    # From the log alone: a daemon that did not run them says the same.
    with running_daemon(tmp_path / "d2", state_dir=state) as d:
        assert [t["point"] for t in d.cli_json("ls", exp)] == [0, 1, None, None]
