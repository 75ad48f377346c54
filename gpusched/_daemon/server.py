"""The Unix-socket server: one JSON request per line in, one response per line out.

Reads are bounded (``MAX_LINE_BYTES``) and idle connections time out, so a garbage, oversized or
stalled client costs the daemon one small task and never disturbs the others. An existing socket
file is probed before it is removed (pueue's ``socket/unix.rs``): a live daemon is never
displaced, a stale file from a crash is.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

from gpusched import __version__
from gpusched._daemon import access, views
from gpusched._daemon.identity import RunAs, trial_identity
from gpusched._daemon.launcher import TrialFiles, workdir_problem_as
from gpusched._daemon.scheduler import Scheduler
from gpusched._spec_read import MAX_FILE_BYTES
from gpusched.errors import ConfigError, GpuschedError, NotFoundError, RequestError, SpecError
from gpusched.log import get_logger
from gpusched.models import TERMINAL_EXPERIMENT_STATES, Goal
from gpusched.paths import check_private_folder, private_socket_folders, socket_path_too_long
from gpusched.protocol import (
    MAX_LINE_BYTES,
    VERSION,
    check_request,
    encode,
    error_response,
    load_request,
    ok_response,
    request_id,
)
from gpusched.spec import ExperimentSpec, parse_experiment, parse_experiment_text

__all__ = ["Server", "prepare_socket_path"]

log = get_logger("gpusched.server")
IDLE_TIMEOUT_S = 300.0
# `wait` holds its answer until the experiment ends or this long (the client asks again).
WAIT_DEFAULT_S = 30.0
WAIT_MAX_S = 3600
INLINE_PARSE_CHARS = 16 * 1024  # experiment files up to this size are parsed on the event loop
# accept() failing with these is a passing shortage (no free file descriptor or memory): wait
# for a connection to close and try again, rather than stop serving.
ACCEPT_RETRY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM,
                                 errno.ECONNABORTED})
ACCEPT_RETRY_S = 0.1
MAX_TRIAL_NUMBER_DIGITS = 18  # a trial number fits SQLite's 64-bit INTEGER
Handler = Callable[[dict[str, Any], int | None], Awaitable[Any]]


def prepare_socket_path(path: Path, *, remove_stale: bool = True) -> None:
    """Make the socket's folder; remove a stale socket file, refuse a live one.
    ``remove_stale`` False: only refuse a live one (the daemon's first check, before it
    recovers its trials: until it listens, a client sees the stale socket refuse, not none).

    The per-user socket's folders are made 0700 and refused when another user owns them or
    may write them (:func:`~gpusched.paths.check_private_folder`). Only a socket is ever
    removed: ``--socket exp.yaml`` by mistake must not delete the file. Every refusal is one
    ConfigError line naming the path and what to do.
    """
    if (problem := socket_path_too_long(path)) is not None:
        raise ConfigError(problem)
    private = private_socket_folders(path)
    for folder, runtime_dir in private:
        problem = check_private_folder(folder, runtime_dir=runtime_dir, create=True)
        if problem is not None:
            raise ConfigError(f"refusing to listen at {path}: {problem}")
    if not private:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        except OSError as exc:
            why = ("it is not a folder" if isinstance(exc, FileExistsError | NotADirectoryError)
                   else exc.strerror or str(exc))
            raise ConfigError(f"cannot create the socket's folder {path.parent}: {why}: choose"
                              " another path with --socket") from None
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot use {path} as the socket: {exc.strerror or exc}: choose"
                          " another path with --socket") from None
    if not stat.S_ISSOCK(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else (
            "a folder" if stat.S_ISDIR(mode) else "a file")
        raise ConfigError(f"{path} is {kind}, not a socket: the daemon will not replace it;"
                          " give --socket a path where nothing is (e.g. gpusched.sock)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except ConnectionRefusedError:
        pass  # nobody listens: a leftover of a daemon that died, removed below
    except FileNotFoundError:
        return  # removed meanwhile
    except OSError as exc:
        # No answer in time, or not ours to try: a live daemon may be behind it.
        why = "no answer in time" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise ConfigError(f"cannot tell whether a daemon listens at {path} ({why}): stop it,"
                          " or remove the socket if none does, or use another --socket"
                          ) from None
    else:
        raise ConfigError(f"another daemon is listening at {path}; stop it first or use"
                          " --socket")
    finally:
        probe.close()
    if not remove_stale:
        return
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot remove the stale socket {path}: {exc.strerror or exc}:"
                          " remove it yourself, or use another --socket") from None


# struct ucred: pid_t pid (signed), uid_t uid and gid_t gid (unsigned: a uid of 2**31 or more,
# as AD/winbind id maps give, read as signed would come out negative).
_UCRED = struct.Struct("=iII")


# What another user sees of an experiment's env values in `show` (names are kept).
HIDDEN_ENV_VALUE = "(hidden: only its owner, root and the admin group see env values)"


def _peer_uid(stream: SocketStream) -> int | None:
    try:
        raw = stream.extra(SocketAttribute.raw_socket)
        return uid_from_ucred(raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                             _UCRED.size))
    except (OSError, AttributeError, struct.error):
        return None


def uid_from_ucred(creds: bytes) -> int:
    """The uid in an ``SO_PEERCRED`` answer (``struct ucred``)."""
    return int(_UCRED.unpack(creds)[1])


class Server:
    """Answers client requests from the trial log and the scheduler."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.store = scheduler.store
        self.connections = 0
        self._handlers: dict[str, Handler] = {
            "hello": self._hello, "submit": self._submit, "experiments": self._experiments,
            "trials": self._trials, "show": self._show, "best": self._best,
            "cancel": self._cancel, "gpus": self._gpus, "trial_files": self._trial_files,
            "wait": self._wait, "resume": self._resume, "reports": self._reports,
        }

    def __repr__(self) -> str:
        return f"<Server connections={self.connections}>"

    async def serve(self, path: Path, *, mode: int = 0o600,
                    activated: socket.socket | None = None,
                    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen at ``path`` until cancelled, or on the socket systemd passed (``activated``;
        systemd owns its file, so it is left in place at the end)."""
        if activated is not None:
            listener: SocketListener = await SocketListener.from_socket(activated)
            log.info("listening", socket=str(activated.getsockname()), activated=True)
        else:
            prepare_socket_path(path)
            try:
                listener = await anyio.create_unix_listener(path, mode=mode)
            except OSError as exc:  # a read-only file system, a folder we may not write...
                raise ConfigError(f"cannot listen at {path}: {exc.strerror or exc}: choose"
                                  " another path with --socket") from None
            self._share_with_group(path)
            log.info("listening", socket=str(path))
        task_status.started()
        try:
            async with anyio.create_task_group() as tg:
                short = False
                while True:
                    try:
                        stream = await listener.accept()
                    except anyio.BrokenResourceError as exc:
                        cause = exc.__cause__
                        if not (isinstance(cause, OSError)
                                and cause.errno in ACCEPT_RETRY_ERRNOS):
                            raise
                        if not short:  # once per shortage, not at every retry
                            log.warning("accept_failed", error=str(cause),
                                        connections=self.connections)
                        short = True
                        await anyio.sleep(ACCEPT_RETRY_S)
                        continue
                    short = False
                    tg.start_soon(self._connection, stream)
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()
            if activated is None:
                path.unlink(missing_ok=True)

    async def _connection(self, stream: SocketStream) -> None:
        self.connections += 1
        uid = _peer_uid(stream)
        reader = BufferedByteReceiveStream(stream)
        try:
            async with stream:  # the refusals below are sent before the stream closes
                try:
                    while True:
                        line: bytes | None = None
                        with anyio.move_on_after(IDLE_TIMEOUT_S):
                            # One byte over the bound: a line of exactly MAX_LINE_BYTES is taken.
                            line = await reader.receive_until(b"\n", MAX_LINE_BYTES + 1)
                        if line is None:
                            return  # idle too long: free the slot for live clients
                        if len(line) > MAX_LINE_BYTES:  # its newline came in the same read
                            raise anyio.DelimiterNotFound(MAX_LINE_BYTES)
                        await stream.send(_encode_response(await self._respond(line, uid)))
                except anyio.DelimiterNotFound:
                    await _send_quietly(stream, error_response(
                        None, "too_large", f"request longer than {MAX_LINE_BYTES} bytes"))
                except anyio.IncompleteRead:
                    if reader.buffer:  # the client stopped sending in the middle of a request
                        await _send_quietly(stream, error_response(
                            None, "ProtocolError", "the request was cut off: the connection "
                            "ended before its newline (each request ends with '\\n')"))
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                ConnectionError):
            pass  # the client went away: nothing to answer
        except Exception as exc:  # a bug closes this connection, and never stops the daemon
            log.exception("connection_failed", error=repr(exc))
        finally:
            self.connections -= 1

    async def _respond(self, line: bytes, uid: int | None) -> dict[str, Any]:
        echo: Any = None  # the request's id, echoed as soon as the line is a JSON object
        try:
            request = load_request(line)
            echo = request_id(request)  # refused or not: a wrong version, an unknown op
            op, args = check_request(request)
            return ok_response(echo, await self._handlers[op](args, uid))
        except SpecError as exc:
            return error_response(echo, "invalid_experiment", str(exc),
                                  [str(p) for p in exc.problems])
        except RequestError as exc:
            return error_response(echo, exc.code, str(exc))
        except GpuschedError as exc:
            return error_response(echo, type(exc).__name__, str(exc))
        except Exception as exc:  # a bug answers this request with an error, and only it
            log.exception("request_failed", error=repr(exc))
            return error_response(echo, "internal", f"internal error: {exc!r}")

    # -- handlers -----------------------------------------------------------------------------

    async def _hello(self, args: dict[str, Any], uid: int | None) -> Any:
        return {"protocol": VERSION, "version": __version__, "pid": os.getpid(),
                "backend": self.scheduler.backend.kind, "gpus": len(self.scheduler.devices.slots)}

    async def _submit(self, args: dict[str, Any], uid: int | None) -> Any:
        base_dir = args.get("base_dir")
        if not isinstance(base_dir, str) or not os.path.isabs(base_dir) or "\0" in base_dir:
            raise RequestError("bad_request", "submit needs 'base_dir', an absolute path")
        source = args.get("source", "")
        if not isinstance(source, str):
            raise RequestError("bad_request", "'source' must be a string (the file's name)")
        umask = _umask_arg(args)
        # Another user's ~ (a root daemon's submitter) is theirs, not the daemon's: looked up
        # in a worker thread (the user database may be LDAP, slow to answer).
        home = None if uid is None or uid == os.getuid() else await anyio.to_thread.run_sync(
            _home_of, uid)
        try:
            if "text" in args:
                # A root daemon checks another user's workdir with that user's rights (None:
                # the daemon's own user). In a worker thread: the user database may be LDAP.
                run_as = await anyio.to_thread.run_sync(trial_identity, uid) if (
                    os.geteuid() == 0) else None
                spec = await _parse_text(args, base_dir=base_dir, source=source, home=home,
                                         run_as=run_as)
            else:
                # A mapping (a Client.submit of a dict) may be as large as a request line:
                # checked off the event loop, whatever its size (only the CLI's small files
                # are inline).
                spec = await anyio.to_thread.run_sync(
                    lambda: parse_experiment(args.get("experiment"), base_dir=base_dir,
                                             source=source, home=home))
        except SpecError as exc:
            raise await self._with_daemon_problems(exc, uid) from None
        warnings = list(spec.warnings())  # the file's; the scheduler adds the daemon's
        exp_id = await self.scheduler.submit(spec, uid, source=source, warnings=warnings,
                                             umask=umask)
        return {"id": exp_id, "name": spec.name, "warnings": warnings}

    async def _with_daemon_problems(self, refused: SpecError, uid: int | None) -> SpecError:
        """The parser's ``refused`` with the problems that the scheduler finds in what of the
        file parsed, listed among the parser's: one answer, rather than the daemon's problems
        only once the parser has none left to say."""
        if refused.read is None:  # not even YAML, or no mapping: nothing to judge
            return refused
        judged = await self.scheduler.judge_refused(refused.read, uid)
        if not judged:
            return refused
        return SpecError(refused.read.merge(refused.problems, judged), refused.source,
                         read=refused.read)

    def _as_scheduled(self, exp_id: str, trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``trials``' rows as the scheduler knows them (:func:`views.as_scheduled`)."""
        return views.as_scheduled(trials, self.scheduler.trial_waits(exp_id).keys())

    async def _experiment_row(self, name: Any, uid: int | None) -> dict[str, Any]:
        """The experiment that ``name`` (an id, or a name) means to the user ``uid``: by
        name, the newest of their own so named, else the newest of anyone's
        (:meth:`~gpusched._daemon.store.Store.experiment`)."""
        if not isinstance(name, str):
            raise RequestError("bad_request", "name an experiment: 'experiment' must be an "
                                              "experiment's id or name, a string")
        row = await self.store.experiment(name, caller_uid=uid)
        if row is None:
            raise NotFoundError(f"no experiment '{name}' (see `gpusched ls`)")
        return row

    async def _experiments(self, args: dict[str, Any], uid: int | None) -> Any:
        include_finished = args.get("all", True)
        if not isinstance(include_finished, bool):
            raise RequestError("bad_request", "'all' must be true or false")
        rows = await self.store.experiments(include_finished=include_finished)
        trials = await self.store.trials()
        by_exp: dict[str, list[dict[str, Any]]] = {}
        for t in trials:
            by_exp.setdefault(t["experiment_id"], []).append(t)
        warned = await self.store.warning_counts(r["id"] for r in rows)
        return [views.experiment_view(r, self._as_scheduled(r["id"], by_exp.get(r["id"], [])),
                                      waiting=self.scheduler.waiting(r["id"]),
                                      warning_count=warned.get(r["id"], 0)) for r in rows]

    async def _trials(self, args: dict[str, Any], uid: int | None) -> Any:
        sort, limit = args.get("sort"), args.get("limit")
        if sort is not None and not isinstance(sort, str):
            raise RequestError("bad_request", "'sort' must be a string: a trial-view key, "
                                              "or params.NAME, with - for descending")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                                  or limit < 0):
            raise RequestError("bad_request", "'limit' must be a whole number >= 0")
        with_last = args.get("last_report", False)
        if not isinstance(with_last, bool):
            raise RequestError("bad_request", "'last_report' must be true or false")
        row = await self._experiment_row(args.get("experiment"), uid)
        waits = self.scheduler.trial_waits(row["id"])
        so_far = views.objectives_so_far(self.scheduler.active.get(row["id"]))
        trials = views.as_scheduled(await self.store.trials(row["id"]), waits)
        points = views.points_of(row, trials)
        out = [views.trial_view(t, exp_id=row["id"], waiting=waits.get(t["number"]),
                                so_far=so_far.get(t["number"]), point=points.get(t["number"]))
               for t in trials]
        if with_last:
            last = await self.store.last_reports(row["id"])
            for view in out:
                view["last_report"] = last.get(view["number"])
        if sort:
            key, reverse = sort.lstrip("-"), sort.startswith("-")
            if out and key not in out[0] and not key.startswith("params."):
                raise RequestError("bad_request", f"cannot sort by '{key}'")
            out.sort(key=lambda t: _sort_key(t, key), reverse=reverse)
        if limit is not None:
            out = out[:limit]
        return out

    async def _show(self, args: dict[str, Any], uid: int | None) -> Any:
        exp_name, number = _target(args.get("target"))
        row = await self._experiment_row(exp_name, uid)
        waits = self.scheduler.trial_waits(row["id"])
        trials = views.as_scheduled(await self.store.trials(row["id"]), waits)
        if number is None:
            warned = await self.store.warning_counts([row["id"]])
            view = views.experiment_view(row, trials, waiting=self.scheduler.waiting(row["id"]),
                                         warning_count=warned.get(row["id"], 0))
            view["spec"] = self._spec_for(row, uid)
            view["events"] = await self.store.events(row["id"], last=50)
            return view
        trial = next((t for t in trials if t["number"] == number), None)
        if trial is None:
            raise NotFoundError(f"no trial {row['id']}/{number}")
        so_far = views.objectives_so_far(self.scheduler.active.get(row["id"]))
        view = views.trial_view(trial, exp_id=row["id"], waiting=waits.get(number),
                                so_far=so_far.get(number),
                                point=views.points_of(row, trials).get(number))
        view["last_report"] = await self.store.last_report(row["id"], number)
        view["events"] = await self.store.events(row["id"], number)
        return view

    async def _wait(self, args: dict[str, Any], uid: int | None) -> Any:
        timeout_s = args.get("timeout_s", WAIT_DEFAULT_S)
        if (not isinstance(timeout_s, int | float) or isinstance(timeout_s, bool)
                or not 0 <= timeout_s <= WAIT_MAX_S):
            raise RequestError("bad_request", f"timeout_s must be a number of seconds from 0 to "
                                              f"{WAIT_MAX_S}")
        row = await self._experiment_row(args.get("experiment"), uid)
        await self.scheduler.wait_ended(row["id"], float(timeout_s))
        row = await self._experiment_row(row["id"], uid)
        # Said once, in `show`'s events only: a script or a user waiting for the end would
        # not see them otherwise (a stop: key that no trial reports stopped nothing).
        warnings = await self.store.warnings(row["id"])
        view = views.experiment_view(
            row, self._as_scheduled(row["id"], await self.store.trials(row["id"])),
            waiting=self.scheduler.waiting(row["id"]), warning_count=len(warnings))
        view["ended"] = row["state"] in TERMINAL_EXPERIMENT_STATES
        view["warnings"] = warnings
        return view

    async def _best(self, args: dict[str, Any], uid: int | None) -> Any:
        n = args.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise RequestError("bad_request", "-n must be a whole number >= 1")
        row = await self._experiment_row(args.get("experiment"), uid)
        goal = Goal(row["spec"]["goal"])
        trials = await self.store.trials(row["id"])
        waits = self.scheduler.trial_waits(row["id"])
        points = views.points_of(row, trials)
        return [views.trial_view(t, exp_id=row["id"], waiting=waits.get(t["number"]),
                                 point=points.get(t["number"]))
                for t in views.best_trials(trials, goal, n)]

    async def _reports(self, args: dict[str, Any], uid: int | None) -> Any:
        exp_name, number = _target(args.get("target"))
        row = await self._experiment_row(exp_name, uid)
        if number is None:
            numbers = [t["number"] for t in await self.store.trials(row["id"])]
            stored = await self.store.all_reports(row["id"])
        elif await self.store.trial(row["id"], number) is None:
            raise NotFoundError(f"no trial {row['id']}/{number}")
        else:
            numbers, stored = [number], {number: await self.store.reports(row["id"], number)}
        return [{"trial": f"{row['id']}/{n}", "number": n, "reports": stored.get(n, [])}
                for n in numbers]

    async def _resume(self, args: dict[str, Any], uid: int | None) -> Any:
        row = await self._experiment_row(args.get("experiment"), uid)
        self._authorize(row, uid, "resume")
        return {"message": await self.scheduler.resume(row["id"])}

    def _share_with_group(self, path: Path) -> None:
        """As root, give the socket to ``socket_group`` (mode 0660), so its members may use
        the daemon; without that group, only root can."""
        if os.geteuid() != 0:
            return  # a per-user daemon: its socket stays its user's own (0600)
        group = self.scheduler.settings.socket_group
        gid = access.group_id(group) if group else None
        if gid is None:
            log.warning("socket_group_missing", group=group, socket=str(path),
                        hint="create it (groupadd --system gpusched) and add its users")
            return
        os.chown(path, 0, gid)
        os.chmod(path, 0o660)

    def _privileged(self, row: dict[str, Any], uid: int | None) -> bool:
        """Whether ``uid`` may act on the experiment of ``row`` and see its secrets: its owner,
        root, the daemon's own user and the admin group (the uid comes from SO_PEERCRED: the
        kernel's word, not the client's)."""
        if uid is None or uid in (0, os.getuid(), row["owner_uid"]):
            return True
        group = self.scheduler.settings.admin_group
        return bool(group) and access.in_group(uid, group)

    def _spec_for(self, row: dict[str, Any], uid: int | None) -> dict[str, Any]:
        """The experiment's spec as ``uid`` may see it: another user's ``env`` values (API
        tokens, say) are hidden, its names kept."""
        spec: dict[str, Any] = row["spec"]
        if not spec.get("env") or self._privileged(row, uid):
            return spec
        return {**spec, "env": dict.fromkeys(spec["env"], HIDDEN_ENV_VALUE)}

    def _authorize(self, row: dict[str, Any], uid: int | None, action: str) -> None:
        """Refuse ``action`` on another's experiment unless ``uid`` is privileged (see
        ``_privileged``)."""
        if self._privileged(row, uid):
            return
        group = self.scheduler.settings.admin_group
        admins = f", or a member of '{group}'" if group else ""
        raise RequestError("forbidden", f"{row['id']} belongs to"
                           f" {access.user_name(row['owner_uid'])}: only its owner, root{admins}"
                           f" may {action} it")

    async def _cancel(self, args: dict[str, Any], uid: int | None) -> Any:
        exp_name, number = _target(args.get("target"))
        row = await self._experiment_row(exp_name, uid)
        self._authorize(row, uid, "cancel")
        return {"message": await self.scheduler.cancel(row["id"], number)}

    async def _gpus(self, args: dict[str, Any], uid: int | None) -> Any:
        backend = self.scheduler.backend
        return {"backend": backend.kind, "devices": self.scheduler.devices.snapshot(),
                "note": getattr(backend, "unavailable_reason", None)}

    async def _trial_files(self, args: dict[str, Any], uid: int | None) -> Any:
        exp_name, number = _target(args.get("trial"))
        if number is None:
            raise RequestError("bad_request", "name a trial as EXP/N")
        row = await self._experiment_row(exp_name, uid)
        trial = await self.store.trial(row["id"], number)
        if trial is None:
            raise NotFoundError(f"no trial {row['id']}/{number}")
        files = TrialFiles(Path(trial["dir"]))
        return {"id": f"{row['id']}/{number}", "state": trial["state"], "dir": str(files.dir),
                "stdout": str(files.stdout), "stderr": str(files.stderr)}


def _target(value: Any) -> tuple[str, int | None]:
    if not isinstance(value, str):
        raise RequestError("bad_request", "name an experiment (EXP) or a trial (EXP/N)")
    _, sep, number = value.partition("/")
    if sep and number.isdigit() and not (number.isascii()
                                         and len(number) <= MAX_TRIAL_NUMBER_DIGITS):
        raise RequestError("bad_request", f"{value[:80]!r}: the trial number must be a whole "
                                          f"number of at most {MAX_TRIAL_NUMBER_DIGITS} digits")
    try:
        return views.parse_target(value)
    except ValueError as exc:
        raise RequestError("bad_request", str(exc)) from None


def _sort_key(trial: dict[str, Any], key: str) -> tuple[int, Any]:
    value = trial["params"].get(key[7:]) if key.startswith("params.") else trial.get(key)
    if value is None:
        return (1, 0)
    return (0, value) if isinstance(value, int | float) else (0, str(value))


def _encode_response(response: dict[str, Any]) -> bytes:
    """``response`` as a line; an answer that cannot be encoded becomes an ``internal`` error."""
    try:
        return encode(response)
    except (ValueError, TypeError, RecursionError) as exc:  # a bug in a view, not the client
        log.exception("response_unencodable", error=repr(exc))
        return encode(error_response(None, "internal", f"internal error: cannot encode the "
                                                       f"answer: {exc!r}"))


async def _send_quietly(stream: SocketStream, message: dict[str, Any]) -> None:
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
        await stream.send(encode(message))


def _home_of(uid: int) -> str | None:
    """``uid``'s home folder from the user database; None when it has no entry."""
    try:
        return pwd.getpwuid(uid).pw_dir or None
    except KeyError:
        return None


def _umask_arg(args: dict[str, Any]) -> int | None:
    """The umask a submit sends, its submitter's (None: an older client sends none)."""
    umask = args.get("umask")
    if umask is None:
        return None
    if isinstance(umask, bool) or not isinstance(umask, int) or not 0 <= umask <= 0o777:
        raise RequestError("bad_request", "'umask' must be the submitter's umask, a whole"
                                          " number from 0 to 511 (0o777; 18 is 022), or left out")
    return umask


async def _parse_text(args: dict[str, Any], *, base_dir: str, source: str,
                      home: str | None = None, run_as: RunAs | None = None) -> ExperimentSpec:
    """The spec in a submit's ``text`` (the experiment file as read by ``gpusched submit``),
    with its ``set`` overrides, ``name`` and, for ``--aip``, ``command``; ``run_as``: the
    other user its trials run as (a root daemon's), whose rights its workdir is checked with
    (:func:`~gpusched._daemon.launcher.workdir_problem_as`)."""
    text, overrides, name, command = (args.get(k) for k in ("text", "set", "name", "command"))
    if not isinstance(text, str):
        raise RequestError("bad_request", "'text' must be a string (the experiment file)")
    if len(text) > MAX_FILE_BYTES:
        raise RequestError("bad_request", f"'text' is over {MAX_FILE_BYTES // 1024} KiB: that"
                                          " is not an experiment file")
    if overrides is None:
        overrides = []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise RequestError("bad_request", "'set' must be a list of KEY=VALUE strings")
    if name is not None and not isinstance(name, str):
        raise RequestError("bad_request", "'name' must be a string or null")
    if command is not None and (not isinstance(command, list)
                                or not all(isinstance(c, str) for c in command)):
        raise RequestError("bad_request", "'command' must be a list of strings or null")

    workdir_check = None if run_as is None else workdir_problem_as(run_as)

    def parse() -> ExperimentSpec:
        return parse_experiment_text(text, source=source, base_dir=base_dir,
                                     overrides=overrides, name=name, command=command, home=home,
                                     workdir_check=workdir_check)

    # A few KiB parse in a millisecond or two; a big file is parsed off the event loop, and
    # so is any file whose workdir is checked as another user (that starts a process).
    if len(text) <= INLINE_PARSE_CHARS and workdir_check is None:
        return parse()
    return await anyio.to_thread.run_sync(parse)
