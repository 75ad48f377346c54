"""The `gpusched` command (SPEC section 2).

Every failure prints one line on stderr saying what went wrong and what to do, and exits
non-zero; no traceback reaches the user. A command line the parser refuses (an unknown option,
a bad value) is argparse's: a usage line, an error line, exit 2 (README). The daemon is
imported only by `gpusched daemon`, so the client commands start fast.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gpusched import __version__, render
from gpusched.client import Client
from gpusched.errors import (
    GpuschedError,
    NoDaemonError,
    ProtocolError,
    RequestError,
    SpecError,
    UsageError,
)
from gpusched.render import print_json
from gpusched.views.commands import VIEW_COMMANDS

TYPE_CHECKING = False  # typing is imported for the type checker only: the CLI starts faster
if TYPE_CHECKING:
    from typing import Any

__all__ = ["main", "build_parser", "COMMANDS"]

TERMINAL = {"completed", "stopped", "failed", "cancelled", "interrupted"}


def cmd_daemon(args: argparse.Namespace) -> int:
    """Run the daemon in the foreground."""
    import anyio

    from gpusched._daemon.main import make_backend, run_daemon
    from gpusched.config import (
        daemon_socket_path,
        default_config_path,
        default_state_dir,
        load_settings,
    )
    from gpusched.log import configure_logging

    config = args.config or default_config_path()
    settings = load_settings(None if config is None else str(config))
    configure_logging(level=args.log_level, also_to=settings.log_file or None)
    backend = make_backend(args.fake_gpus)
    state_dir = args.state_dir or settings.state_dir
    try:
        anyio.run(lambda: run_daemon(
            socket_path=daemon_socket_path(args.socket),
            # Absolute: trials get paths in it (GPUSCHED_REPORT_FILE, ...) and run elsewhere.
            state_dir=Path(os.path.abspath(state_dir)) if state_dir else default_state_dir(),
            settings=settings, backend=backend,
        ), backend="asyncio")
    except BaseExceptionGroup as group:
        # Task groups wrap errors; a user-facing one (socket taken, unreadable log) is one line.
        ours = group.subgroup(lambda e: isinstance(e, GpuschedError))
        if ours is None:
            raise
        raise _first_leaf(ours) from None
    return 0


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def cmd_submit(args: argparse.Namespace) -> int:
    """Send the experiment file to the daemon, which checks and records it.

    The daemon parses it (it has the parser loaded): this command imports no YAML parser and
    starts in a fraction of the time. With no daemon to send it to, the file is checked here,
    so its problems are still reported first.
    """
    from gpusched._spec_read import read_text

    if args.aip and not args.command:
        raise UsageError("--aip needs the trainer's command after --, e.g."
                         f" `gpusched submit --aip {args.file} -- python train.py`")
    if not args.aip and args.command:
        raise UsageError("a command after -- is only for --aip; put `command:` in the"
                         " experiment file")
    text = read_text(args.file)
    # An AI Platform file runs in the current folder; an experiment file in its own folder.
    base_dir = Path.cwd() if args.aip else args.file.absolute().parent
    command = args.command if args.aip else None
    try:
        answer = Client(args.socket).submit_text(
            text, source=str(args.file), base_dir=str(base_dir), overrides=args.set,
            name=args.name, command=command)
    except NoDaemonError:
        from gpusched.spec import parse_experiment_text

        parse_experiment_text(text, source=str(args.file), base_dir=base_dir,
                              overrides=args.set, name=args.name, command=command)
        raise
    for warning in answer.get("warnings") or ():  # an older daemon sends none
        print(f"gpusched: warning: {render.printable(str(warning))}", file=sys.stderr)
    if args.json:
        print_json({"id": answer["id"], "name": answer["name"]})
    else:
        print(answer["id"])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """One experiment or one trial, in full."""
    data = Client(args.socket).show(args.target)
    if args.json:
        print_json(data)
        return 0
    skip = {"spec", "events", "params", "last_report", "trials", "best"}
    # A trial's objective so far is shown only while it has one (it runs), and the point of
    # points_to_evaluate it took only if it took one: null says nothing.
    only_set = {"objective_so_far", "point"}
    pairs = [(k, f"points_to_evaluate[{v}]" if k == "point" else v) for k, v in data.items()
             if k not in skip and not (k in only_set and v is None)]
    if "trials" in data:
        t = data["trials"]
        pairs.append(("trials", ", ".join(f"{k} {v}" for k, v in t.items() if v)))
        best = data["best"]
        pairs.append(("best", "-" if best is None else
                      f"{render.fmt_value(best['objective'])} ({best['trial']})"
                      f" {render.inline(best['params'])}"))
    else:
        pairs += [("params", data["params"]), ("last_report", data["last_report"])]
    print(render.key_values(pairs))
    if data.get("spec"):  # an experiment's settings (another user's env values hidden)
        print(render.spec_lines(data["spec"]))
    print(render.events_lines(data.get("events") or []))  # retries, interruptions, the end
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    """The best trials of an experiment and their hyperparameters."""
    client = Client(args.socket)
    if args.experiment is None:
        args.experiment = _newest_of_mine(client)
        if not args.json:
            print(f"(best of {args.experiment}, your newest experiment)", file=sys.stderr)
    trials = client.best(args.experiment, args.n)
    if args.json:
        print_json(trials)
        return 0
    exp = client.show(args.experiment)
    if not trials:
        print(_no_result(args.experiment, exp))
        return 0
    print(render.best_table(trials, exp["metric"]))
    return 0


def _newest_of_mine(client: Client) -> str:
    """The id of the newest experiment this user submitted (on a shared daemon, others' are
    not what `gpusched best` alone means); UsageError when there is none."""
    uid = os.getuid()
    mine = [e for e in client.experiments(include_finished=True) if e.get("owner_uid") == uid]
    if not mine:
        raise UsageError("you have submitted no experiment to this daemon: name one,"
                         " `gpusched best EXP` (see `gpusched ls --all`)")
    return str(mine[0]["id"])


def _no_result(name: str, exp: dict[str, Any]) -> str:
    """What `best` says when no trial of ``exp`` (its `show` view) has a result: "yet" while
    it is in progress; once it has ended, how and why."""
    if exp["state"] not in TERMINAL:
        return f"no trial of {name} has a result yet"
    why = f" ({exp['reason']})" if exp.get("reason") else ""
    return render.printable(f"no trial of {name} has a result: it ended {exp['state']}{why}")


def _copy_new(path: Path, offset: int, what: str) -> int:
    """Copy what ``path`` has past ``offset`` to stdout; the new offset. A file not there yet
    (the trial has not started) is empty; one that cannot be read is a one-line error."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return offset
    except PermissionError:
        # A root daemon runs each trial as its submitter, who owns its folder.
        raise UsageError(f"cannot read {what} at {path}: permission denied: run `gpusched"
                         " logs` as the trial's user (or as root)") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} at {path}: {exc.strerror or exc}: check that"
                         " file (the trial's folder may have been moved or changed)") from None
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return offset + len(data)


def cmd_logs(args: argparse.Namespace) -> int:
    """A trial's stdout (or stderr), optionally following it until the trial ends."""
    client = Client(args.socket)
    info = client.trial_files(args.trial)
    stream = "stderr" if args.stderr else "stdout"
    path, what = Path(info[stream]), f"the {stream} of {args.trial}"
    offset = _copy_new(path, 0, what)
    while args.follow and info["state"] not in TERMINAL:
        time.sleep(0.5)
        offset = _copy_new(path, offset, what)
        info = client.trial_files(args.trial)
    offset = _copy_new(path, offset, what)
    if offset == 0 and (hint := _other_stream_hint(info, stream, args.trial)):
        # Nothing printed: a trainer that logs to stderr alone (as PyTorch's examples do)
        # would seem to have said nothing at all.
        print(hint, file=sys.stderr)
    return 0


# Past this size the other stream's lines are not counted (that would read all of it): its
# size is said instead.
_COUNTED_BYTES = 64 << 20


def _other_stream_hint(info: dict[str, Any], stream: str, trial: str) -> str | None:
    """``(stdout of e1/5 is empty; its stderr has 12 lines: gpusched logs e1/5 --stderr)``:
    what to run when the trial wrote nothing to ``stream`` but something to the other one;
    None when the other one is empty too, or is no regular file that can be read (its own
    `logs` says why). ``info``: the daemon's `trial_files` answer, which names both."""
    other = "stdout" if stream == "stderr" else "stderr"
    try:
        # Non-blocking: a FIFO put in the trial's folder must not hang a hint.
        fd = os.open(info[other], os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
                return None
            amount = (_line_count(fh) if st.st_size <= _COUNTED_BYTES
                      else f"{st.st_size / (1 << 20):.0f} MiB")
    except OSError:
        return None
    trial = info.get("id") or trial
    command = f"gpusched logs {trial}" + (" --stderr" if other == "stderr" else "")
    return render.printable(f"({stream} of {trial} is empty; its {other} has {amount}:"
                            f" {command})")


def _line_count(fh: Any) -> str:
    """``1 line``, ``12 lines``: the lines of the open file ``fh``, a last one without its
    newline counted too."""
    count, last = 0, b"\n"
    while chunk := fh.read(1 << 20):
        count, last = count + chunk.count(b"\n"), chunk[-1:]
    count += last != b"\n"
    return f"{count} line{'' if count == 1 else 's'}"


WAIT_TIMED_OUT = 124  # as timeout(1) exits
WAIT_NO_DAEMON = 69  # EX_UNAVAILABLE (sysexits.h): the outcome is unknown, not a failure
# The wait itself was wrong (an unknown experiment, one the user may not see, a bad option):
# 2, as for a usage error, so that a script never reads a typo as "the experiment failed".
WAIT_ERROR = 2
WAIT_REFUSALS = frozenset({"not_found", "bad_request", "forbidden"})  # what makes a wait wrong
WAIT_RECONNECT_S = 60.0  # above a restart's time: systemd's RestartSec=2 plus the start-up


def cmd_wait(args: argparse.Namespace) -> int:
    """Block until an experiment ends; exit 0 if it completed, 1 if not, 124 on --timeout,
    69 when no daemon answers (none at the socket, or it went away and was not back within
    --reconnect, or it could not answer): a script must not read "the daemon restarted" as
    "the experiment failed"; 2 when the wait itself is wrong (an unknown experiment, a bad
    option)."""
    try:
        if not args.reconnect >= 0:  # NaN too
            raise UsageError(f"--reconnect {args.reconnect:g}: give a number of seconds >= 0")
        if args.timeout is not None and not args.timeout >= 0:
            raise UsageError(f"--timeout {args.timeout:g}: give a number of seconds >= 0")
        answer = Client(args.socket).wait(args.experiment, args.timeout,
                                          reconnect_s=args.reconnect)
    except NoDaemonError as exc:
        print(f"gpusched: {exc}", file=sys.stderr)
        return WAIT_NO_DAEMON
    except (UsageError, RequestError, ProtocolError) as exc:
        print(f"gpusched: {exc}", file=sys.stderr)
        if isinstance(exc, UsageError) or (
                isinstance(exc, RequestError) and exc.code in WAIT_REFUSALS):
            return WAIT_ERROR
        # The daemon could not answer (an internal error, its log, a shutdown, a garbled
        # answer): the outcome is unknown, as with no daemon, and no failure of the experiment.
        return WAIT_NO_DAEMON
    if args.json:
        print_json(answer)
    elif answer["ended"]:
        # The reason may be a trial's own words (a FatalError): no control character of it
        # reaches the terminal.
        print(render.printable(f"{answer['id']} {answer['state']}: {answer['reason'] or '-'}"))
        for warning in answer.get("warnings") or ():  # an older daemon sends none
            print(render.printable(f"gpusched: warning: {warning}"), file=sys.stderr)
    if not answer["ended"]:
        if not args.json:
            print(f"gpusched: {answer['id']} is still {answer['state']} after {args.timeout:g}s",
                  file=sys.stderr)
        return WAIT_TIMED_OUT
    return 0 if answer["state"] == "completed" else 1


def cmd_resume(args: argparse.Namespace) -> int:
    """Go on with a failed or cancelled experiment."""
    print(Client(args.socket).resume(args.experiment))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel an experiment or a trial."""
    print(Client(args.socket).cancel(args.target))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    """Installed search and stopping plugins (read from this installation's entry points)."""
    from gpusched.plugins import describe_plugins

    plugins = describe_plugins()
    if args.json:
        print_json(plugins)
        return 0
    rows = [[p["kind"], p["name"], p.get("distribution") or "-", p.get("error") or p["summary"]]
            for p in plugins]
    print(render.table(["KIND", "NAME", "FROM", "WHAT"], rows))
    return 0


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help formatter, sized to the terminal without ``shutil``.

    argparse makes a formatter for every ``add_argument``, and its own imports ``shutil`` to
    size itself, which imports the compression modules: ~2 ms at every command's start.
    """

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _terminal_columns() - 2 if width is None else width)


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``: $COLUMNS, else stdout's terminal, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):  # None (no stdout), closed, not a tty
            columns = 0
    return columns or 80


def _add_socket(p: argparse.ArgumentParser) -> None:
    p.add_argument("--socket", help="the daemon's socket (default: $GPUSCHED_SOCKET, the system"
                   " daemon's, else the per-user one)")


def _add(sub: Any, name: str, fn: Callable[[argparse.Namespace], int], help_: str,
         *, json_flag: bool = True) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_,
                                                formatter_class=_HelpFormatter)
    p.set_defaults(fn=fn)
    _add_socket(p)
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON (see docs/json.md)")
    return p


def _add_daemon(sub: Any) -> None:
    p = _add(sub, "daemon", cmd_daemon, "run the daemon in the foreground", json_flag=False)
    p.add_argument("--state-dir", help="trial log and trial folders (default: the config's"
                   " state_dir, else /var/lib/gpusched as root, else ~/.local/state/gpusched)")
    p.add_argument("--config",
                   help="TOML file with a [daemon] table of settings (docs/config.md; default:"
                   " /etc/gpusched/config.toml as root, else ~/.config/gpusched/config.toml,"
                   " when it exists)")
    p.add_argument("--fake-gpus", metavar="N|FILE", help="use N fake GPUs, or those of FILE")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _add_submit(sub: Any) -> None:
    p = _add(sub, "submit", cmd_submit, "submit an experiment file")
    p.add_argument("file", type=Path, help="experiment file (YAML or JSON)")
    p.add_argument("--aip", action="store_true",
                   help="FILE is an AI Platform hptuning_config.yaml or a Vertex AI tuning"
                        " config (studySpec); the command follows --")
    p.add_argument("--name", help="the experiment's name (default: from the file)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of the file, e.g. --set max_trials=5")
    p.add_argument("command", nargs="*", help=argparse.SUPPRESS)


def _add_show(sub: Any) -> None:
    p = _add(sub, "show", cmd_show, "show an experiment (EXP) or a trial (EXP/N)")
    p.add_argument("target")


def _add_best(sub: Any) -> None:
    p = _add(sub, "best", cmd_best, "the best trials of an experiment")
    p.add_argument("experiment", nargs="?", help="default: your newest experiment")
    p.add_argument("-n", type=int, default=1, help="how many (default 1)")


def _add_logs(sub: Any) -> None:
    p = _add(sub, "logs", cmd_logs, "print a trial's output", json_flag=False)
    p.add_argument("trial")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until it ends")
    p.add_argument("--stderr", action="store_true", help="stderr instead of stdout")


def _add_wait(sub: Any) -> None:
    p = _add(sub, "wait", cmd_wait, "wait until an experiment ends (exit 0 if it completed,"
             " 1 if it failed or was cancelled, 124 on --timeout, 69 if no daemon answers (or"
             " its socket refuses you, or it could not say),"
             " 2 for an unknown experiment or a bad option)")
    p.add_argument("experiment")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="give up after this long (default: wait as long as it takes)")
    p.add_argument("--reconnect", type=float, default=WAIT_RECONNECT_S, metavar="SECONDS",
                   help="when the daemon goes away (a restart), wait this long for it to"
                   f" answer again before exiting 69 (default {WAIT_RECONNECT_S:g})")


def _add_resume(sub: Any) -> None:
    p = _add(sub, "resume", cmd_resume, "go on with a failed or cancelled experiment, keeping"
             " its trials", json_flag=False)
    p.add_argument("experiment")


def _add_cancel(sub: Any) -> None:
    p = _add(sub, "cancel", cmd_cancel, "cancel an experiment or a trial", json_flag=False)
    p.add_argument("target")


def _add_plugins(sub: Any) -> None:
    _add(sub, "plugins", cmd_plugins, "installed search and stopping plugins")


def _view_command(name: str) -> Callable[[Any], None]:
    return lambda sub: VIEW_COMMANDS[name](sub, _add)


# Every command's parser, by name, in the order `gpusched --help` lists them.
COMMANDS: dict[str, Callable[[Any], None]] = {
    "daemon": _add_daemon, "submit": _add_submit,
    **{name: _view_command(name) for name in VIEW_COMMANDS},
    "show": _add_show, "best": _add_best, "logs": _add_logs, "wait": _add_wait,
    "resume": _add_resume, "cancel": _add_cancel, "plugins": _add_plugins,
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every command or, given a command's name, of that one only.

    `main` builds the one it runs: its usage, help and errors are the same either way, and
    the other commands' parsers (~2 ms, argparse looks up a translation for every string)
    are not built for nothing. Anything else (no command, `--help`, a typo) gets them all.
    """
    parser = argparse.ArgumentParser(prog="gpusched", description=__doc__.splitlines()[0],
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"gpusched {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for name in [command] if command in COMMANDS else COMMANDS:
        COMMANDS[name](sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gpusched` script."""
    argv = _socket_after_command(list(sys.argv[1:] if argv is None else argv))
    extra: list[str] = []
    if "--" in argv:  # `submit --aip FILE -- COMMAND ARGS`: the rest is the trainer's
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    if args.cmd == "submit":
        args.command = list(args.command) + extra
    try:
        return int(args.fn(args))
    except SpecError as exc:
        print(f"gpusched: {exc}", file=sys.stderr)
        return 2
    except GpuschedError as exc:
        print(f"gpusched: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        # The last net: a file a command reads or writes (a plot's PNG, stdout on a full
        # disk) that the command did not foresee still gets one line, not a traceback.
        print(f"gpusched: {_os_error_line(exc)}", file=sys.stderr)
        return 1


def _socket_after_command(argv: list[str]) -> list[str]:
    """``--socket PATH CMD ...`` (where docker and kubectl take a global option) as ``CMD
    --socket PATH ...``, where every command's parser takes it; anything else as it is."""
    if len(argv) >= 3 and argv[0] == "--socket":
        return [argv[2], "--socket", argv[1], *argv[3:]]
    if len(argv) >= 2 and argv[0].startswith("--socket="):
        return [argv[1], argv[0], *argv[2:]]
    return argv


def _os_error_line(exc: OSError) -> str:
    """``exc`` in one line: what failed, on which file, and what to do."""
    what = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return f"{what}: check where the output goes (a full disk, a closed terminal)"
    names = str(exc.filename) + ("" if exc.filename2 is None else f" -> {exc.filename2}")
    hint = ("check its permissions, or choose another path"
            if isinstance(exc, PermissionError) else "check that path")
    return f"{names}: {what}: {hint}"


if __name__ == "__main__":
    sys.exit(main())
