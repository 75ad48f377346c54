"""A blocking client for the daemon's socket: what the CLI and scripts use.

Imports nothing of the daemon and nothing heavy, so ``gpusched ls`` starts fast.
"""

from __future__ import annotations

import itertools
import os
import socket
import stat
import time
from collections.abc import Sequence
from pathlib import Path

from gpusched._umask import process_umask
from gpusched.errors import (
    DaemonGoneError,
    NoDaemonError,
    NotFoundError,
    ProtocolError,
    RequestError,
    SocketPermissionError,
    SpecError,
    UnusableSocketError,
)
from gpusched.errors import Problem as _Problem
from gpusched.paths import (
    check_private_folder,
    client_socket_path,
    private_socket_folders,
    socket_path_too_long,
)
from gpusched.protocol import MAX_LINE_BYTES, VERSION, decode_response, encode

TYPE_CHECKING = False  # typing is imported for the type checker only: the CLI starts faster
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Client"]

WAIT_CHUNK_S = 30.0  # the longest one `wait` request is held by the daemon
RECONNECT_EVERY_S = 0.5  # how often `wait` knocks again while its daemon is away
_GONE = ("the connection was reset before an answer; a request that changes something may or"
         " may not have been taken: check with `gpusched ls`")


class Client:
    """Talks to one daemon. Each call opens a connection, sends one request, reads the answer.

    Raises :class:`NoDaemonError` when nothing answers at the socket (its
    :class:`DaemonGoneError` when the daemon went away before answering, its
    :class:`UnusableSocketError` for a path no daemon could listen at or an unsafe per-user
    socket folder), :class:`NotFoundError` for unknown experiments or trials,
    :class:`SpecError` for a refused experiment, and :class:`RequestError` for any other
    refusal. Every message is one line that says what to do.
    """

    def __init__(self, socket_path: str | Path | None = None, *, timeout_s: float = 60.0) -> None:
        self.socket_path = client_socket_path(str(socket_path) if socket_path else None)
        self.timeout_s = timeout_s
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"<Client socket={self.socket_path}>"

    def request(self, op: str, **args: Any) -> Any:
        """Send ``op`` with ``args``; return its result or raise the daemon's error."""
        return self._request_with_timeout(self.timeout_s, op, **args)

    def _request_with_timeout(self, socket_timeout_s: float, op: str, /, **args: Any) -> Any:
        request_id = next(self._ids)
        message = encode({"v": VERSION, "id": request_id, "op": op, "args": args})
        self._check_path()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(socket_timeout_s)
        try:
            self._connect(sock)
            sock.sendall(message)
            line = self._read_line(sock)
        except TimeoutError:
            raise NoDaemonError(str(self.socket_path), "no answer in time") from None
        except (ConnectionResetError, BrokenPipeError):
            # The listening end went away mid-request: a daemon that stopped, or a process
            # that had its socket for a moment (a trial a killed daemon was starting).
            raise DaemonGoneError(str(self.socket_path), _GONE) from None
        finally:
            sock.close()
        return self._result(decode_response(line))

    def _check_path(self) -> None:
        """Refuse, before connecting, a path no socket can have and a per-user socket folder
        that another user could have made or can write (they would get the request)."""
        path = self.socket_path
        if (problem := socket_path_too_long(path)) is not None:
            raise UnusableSocketError(str(path), problem)
        for folder, runtime_dir in private_socket_folders(path):
            if (problem := check_private_folder(folder, runtime_dir=runtime_dir)) is not None:
                raise UnusableSocketError(str(path), f"refusing to connect to {path}: {problem}")

    def _connect(self, sock: socket.socket) -> None:
        """Connect, or say in one line why not (every OSError but a timeout)."""
        path = str(self.socket_path)
        try:
            sock.connect(path)
        except TimeoutError:
            raise  # a daemon too busy to accept: "no answer in time"
        except FileNotFoundError as exc:
            raise NoDaemonError(path, exc.strerror or "") from None
        except ConnectionRefusedError:
            # A socket file with nobody behind it: a dead daemon's, or one a restarted daemon
            # takes over once it has recovered its trials (a second daemon is refused).
            raise NoDaemonError(path, "nothing listens on it: a daemon that died left it, or"
                                " one is starting and answers once it has recovered its"
                                " trials") from None
        except PermissionError:
            # A daemon is there, most likely (the system one: clients choose its socket while
            # it exists): "start one" would not help. Say who may use it and how to join.
            raise SocketPermissionError(path, _permission_denied(path)) from None
        except NotADirectoryError:
            raise UnusableSocketError(path, f"cannot connect to {path}: a part of it is not a"
                                      " folder: check --socket (or GPUSCHED_SOCKET)") from None
        except OSError as exc:
            raise UnusableSocketError(path, f"cannot connect to {path}: {exc.strerror or exc}:"
                                      " check --socket (or GPUSCHED_SOCKET), or start a daemon"
                                      " there with `gpusched daemon`") from None

    def _read_line(self, sock: socket.socket) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                # A daemon that stops closes its connections, a held `wait` among them.
                raise DaemonGoneError(str(self.socket_path), "the daemon closed the connection"
                                      " before answering: it may be stopping or restarting;"
                                      " a request that changes something may or may not have"
                                      " been taken: check with `gpusched ls`")
            chunks.append(chunk)
            size += len(chunk)
            if b"\n" in chunk:
                return b"".join(chunks).split(b"\n", 1)[0]
            if size > 16 * MAX_LINE_BYTES:
                raise ProtocolError("answer too large")

    @staticmethod
    def _result(response: dict[str, Any]) -> Any:
        if response["ok"]:
            return response.get("result")
        error = response.get("error") or {}
        code, msg = str(error.get("code", "error")), str(error.get("message", "request failed"))
        if code == "not_found":
            raise NotFoundError(msg)
        if code == "invalid_experiment" and isinstance(error.get("details"), list):
            problems = [_Problem("", str(d)) for d in error["details"]]
            raise SpecError(problems) if problems else RequestError(code, msg)
        raise RequestError(code, msg)

    # -- one method per operation (docs/protocol.md) -----------------------------------------

    def hello(self) -> dict[str, Any]:
        """The daemon's version, pid and GPU backend."""
        return dict(self.request("hello"))

    def submit(self, experiment: dict[str, Any], *, base_dir: str, source: str = "") -> str:
        """Submit an experiment mapping; return the new experiment's id. Its trials' files
        and processes get this process's umask, as what it makes itself does."""
        return str(self.request("submit", experiment=experiment, base_dir=base_dir,
                                source=source, umask=process_umask())["id"])

    def submit_text(
        self, text: str, *, source: str, base_dir: str, overrides: Sequence[str] = (),
        name: str | None = None, command: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Submit an experiment file's ``text`` (the daemon parses it; ``base_dir``: the file's
        folder, absolute), with ``--set`` ``overrides``, ``--name`` and, for ``--aip``, the
        trainer's ``command``. Returns ``{"id", "name"}``; :class:`SpecError` names
        ``source``. Its trials' files and processes get this process's umask, as what it
        makes itself does."""
        args: dict[str, Any] = {"text": text, "source": source, "base_dir": base_dir,
                                "set": list(overrides), "name": name, "umask": process_umask()}
        if command is not None:
            args["command"] = list(command)
        try:
            return dict(self.request("submit", **args))
        except SpecError as exc:
            raise SpecError(exc.problems, source) from None

    def experiments(self, *, include_finished: bool = True) -> list[dict[str, Any]]:
        """Experiments, newest first."""
        return list(self.request("experiments", all=include_finished))

    def trials(self, experiment: str, *, sort: str | None = None, limit: int | None = None,
               last_report: bool = False) -> list[dict[str, Any]]:
        """The trials of one experiment (``last_report``: each with its latest report)."""
        args: dict[str, Any] = {"experiment": experiment, "sort": sort, "limit": limit}
        if last_report:  # sent only when asked, so an older daemon still answers
            args["last_report"] = True
        return list(self.request("trials", **args))

    def reports(self, target: str) -> list[dict[str, Any]]:
        """Every stored report of an experiment's trials (``EXP``) or of one (``EXP/N``):
        ``[{"trial", "number", "reports": [...]}]``."""
        return list(self.request("reports", target=target))

    def show(self, target: str) -> dict[str, Any]:
        """An experiment (``EXP``) or a trial (``EXP/N``) in full."""
        return dict(self.request("show", target=target))

    def wait(self, experiment: str, timeout_s: float | None = None, *,
             reconnect_s: float = 0.0) -> dict[str, Any]:
        """Block until ``experiment`` has ended, or ``timeout_s`` has passed (None: no limit).

        Returns the experiment's summary (the shape of ``experiments``) with ``ended`` true or
        false. The daemon answers the moment the experiment ends; this asks again every
        ``WAIT_CHUNK_S`` so that no single request outlives the socket timeout.

        A daemon that stops closes the waiting connection unanswered. Once one has been
        reached, this knocks again at the same socket (a restart, by hand, by systemd or
        through socket activation, keeps the path) for up to ``reconnect_s`` seconds, then
        raises :class:`DaemonGoneError`. No daemon at the first request raises at once.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        reached = False  # a daemon took a connection at least once
        lost_at: float | None = None  # since when the daemon has been away
        while True:
            chunk = WAIT_CHUNK_S
            if deadline is not None:
                chunk = max(0.0, min(chunk, deadline - time.monotonic()))
            try:
                answer = dict(self._request_with_timeout(
                    chunk + self.timeout_s, "wait", experiment=experiment, timeout_s=chunk))
            except UnusableSocketError:
                raise
            except NoDaemonError as exc:
                reached = reached or isinstance(exc, DaemonGoneError)
                if not reached:
                    raise  # none there from the start: a wrong socket path should not hang
                now = time.monotonic()
                lost_at = now if lost_at is None else lost_at
                give_up = lost_at + reconnect_s
                if deadline is not None:
                    give_up = min(give_up, deadline)
                if now >= give_up:
                    raise DaemonGoneError(
                        str(self.socket_path), f"it went away while waiting for {experiment}"
                        f" and none answered there again within {round(now - lost_at, 1):g}s;"
                        f" when one runs, `gpusched wait {experiment}` again") from None
                time.sleep(min(RECONNECT_EVERY_S, give_up - now))
                continue
            reached, lost_at = True, None
            if answer["ended"] or (deadline is not None and time.monotonic() >= deadline):
                return answer

    def best(self, experiment: str, n: int = 1) -> list[dict[str, Any]]:
        """The ``n`` best trials, best first."""
        return list(self.request("best", experiment=experiment, n=n))

    def resume(self, experiment: str) -> str:
        """Go on with a failed or cancelled experiment, keeping its trials."""
        return str(self.request("resume", experiment=experiment)["message"])

    def cancel(self, target: str) -> str:
        """Cancel an experiment or a trial."""
        return str(self.request("cancel", target=target)["message"])

    def gpus(self) -> dict[str, Any]:
        """The devices and their states."""
        return dict(self.request("gpus"))

    def trial_files(self, trial: str) -> dict[str, Any]:
        """Where a trial's logs are, and its state."""
        return dict(self.request("trial_files", trial=trial))


_OWN_DAEMON = ("or run your own daemon with `gpusched daemon --socket PATH` and give each"
               " command --socket PATH (or GPUSCHED_SOCKET=PATH)")


def _permission_denied(path: str) -> str:
    """Why the socket at ``path`` refused this user, from the file's owner, group and mode,
    and what to do. Asked only once refused: the user and group databases are read (and
    their modules imported) then, not at each command's start."""
    import grp

    head = f"permission denied on {path}"
    try:
        info = os.stat(path)
    except OSError:  # a folder on the way that this user may not enter
        return f"{head}: a folder above it is closed to you; check the path, {_OWN_DAEMON}"
    uid, gid = os.getuid(), info.st_gid
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    shared = bool(info.st_mode & stat.S_IWGRP)
    if info.st_uid == uid or (shared and gid in (os.getegid(), *os.getgroups())):
        return (f"{head}, though you are its owner or in its group '{group}': check its mode"
                f" and ACL (`ls -l {path}`), {_OWN_DAEMON}")
    if not shared and info.st_uid != 0:
        # A per-user daemon: its socket is its user's alone, whatever socket_group says.
        return (f"{head}: it is {_user_name(info.st_uid)}'s own daemon, whose socket is theirs"
                f" alone (mode {stat.S_IMODE(info.st_mode):04o}); use the system daemon"
                f" (--socket /run/gpusched/gpusched.sock, where one runs), {_OWN_DAEMON}")
    if not shared:
        return (f"{head}: only its owner ({_user_name(info.st_uid)}) may use it (mode"
                f" {stat.S_IMODE(info.st_mode):04o}); ask an admin to share it through the"
                f" daemon's socket_group setting (a group that exists, with you in it),"
                f" {_OWN_DAEMON}")
    me = _user_name(uid)
    if _in_group_database(uid, gid):
        return (f"{head}: it belongs to the group '{group}', which you joined after you logged"
                f" in; log in again (or run `newgrp {group}`), {_OWN_DAEMON}")
    return (f"{head}: it belongs to the group '{group}'; ask an admin to add you (`usermod -aG"
            f" {group} {me}`) and log in again, {_OWN_DAEMON}")


def _user_name(uid: int) -> str:
    """``uid``'s login name, or the number when it has no passwd entry."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _in_group_database(uid: int, gid: int) -> bool:
    """Whether the user database puts ``uid`` in group ``gid`` (as its primary group or a
    supplementary one), whatever groups this process got when the user logged in."""
    import pwd

    try:
        entry = pwd.getpwuid(uid)
        return gid in os.getgrouplist(entry.pw_name, entry.pw_gid)
    except (KeyError, OSError):
        return False
