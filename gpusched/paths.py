"""Where things live: the socket a client talks to, the daemon's socket, state and config.

The client finds the socket from ``--socket``, else ``GPUSCHED_SOCKET``, else the system daemon's
(``/run/gpusched/gpusched.sock``) when it exists, else the per-user one under
``$XDG_RUNTIME_DIR``. Standard library only, and kept apart from the settings (config.py): every
client command imports it, and it should start fast.

The per-user socket's folders must be the user's own: without ``$XDG_RUNTIME_DIR`` they are
under /tmp, where anyone may create ``/tmp/gpusched-UID`` first and then swap the socket for
their own, receiving every experiment sent (environment secrets included). The daemon makes
them mode 0700 and both it and the client refuse folders another user owns or can write
(:func:`check_private_folder`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = [
    "SYSTEM_SOCKET",
    "SYSTEM_STATE_DIR",
    "SYSTEM_CONFIG",
    "MAX_SOCKET_PATH_BYTES",
    "user_socket_path",
    "private_socket_folders",
    "check_private_folder",
    "socket_path_too_long",
    "client_socket_path",
    "daemon_socket_path",
    "default_state_dir",
    "default_config_path",
]

SYSTEM_SOCKET = Path("/run/gpusched/gpusched.sock")
SYSTEM_STATE_DIR = Path("/var/lib/gpusched")
SYSTEM_CONFIG = Path("/etc/gpusched/config.toml")


MAX_SOCKET_PATH_BYTES = 107
"""The longest path a Unix socket may have on Linux (``sun_path``: 108 bytes, its NUL included)."""


def _user_socket_base() -> tuple[Path, bool]:
    """The per-user socket's base folder, and whether it is ``$XDG_RUNTIME_DIR``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return (Path(runtime), True) if runtime else (Path(f"/tmp/gpusched-{os.getuid()}"), False)


def user_socket_path() -> Path:
    """The per-user daemon's socket: under ``$XDG_RUNTIME_DIR``, else under /tmp."""
    return _user_socket_base()[0] / "gpusched" / "gpusched.sock"


def private_socket_folders(socket_path: Path) -> list[tuple[Path, bool]]:
    """The folders that must be the user's own for ``socket_path`` to be safe, outermost
    first, each with whether it is ``$XDG_RUNTIME_DIR``: for the per-user socket, its base
    (``$XDG_RUNTIME_DIR``, else /tmp/gpusched-UID) and the ``gpusched`` folder in it. None
    for any other path: the system socket's folder is root's, and a path given with
    ``--socket`` is the user's choice."""
    if socket_path != user_socket_path():
        return []
    base, from_env = _user_socket_base()
    return [(base, from_env), (base / "gpusched", False)]


def check_private_folder(folder: Path, *, runtime_dir: bool = False,
                         create: bool = False) -> str | None:
    """Why ``folder`` cannot safely hold this user's socket, with what to do; None when it
    can, or when it does not exist (then nobody listens there either). With ``create`` (the
    daemon) a missing folder is made first, mode 0700.

    Refused: a folder another user owns, one that its group or others may write (either could
    replace the socket), a symbolic link and anything not a folder. ``runtime_dir``: the
    folder is ``$XDG_RUNTIME_DIR``, which the user's environment names: a link to it is
    followed, and the fix is in that variable.
    """
    uid = os.geteuid()
    other = "use --socket PATH (or GPUSCHED_SOCKET) in a folder of your own"
    if runtime_dir:
        name = f"XDG_RUNTIME_DIR ({folder})"
        fix = f"set XDG_RUNTIME_DIR to your own (normally /run/user/{uid}), or {other}"
    else:
        name, fix = str(folder), f"have it removed, or {other}"
    if create:
        try:
            folder.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            pass  # checked below, whoever made it
        except OSError as exc:
            return f"cannot create {name}: {exc.strerror or exc}: {fix}"
    try:
        st = folder.stat() if runtime_dir else folder.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot check {name}: {exc.strerror or exc}: {fix}"
    if stat.S_ISLNK(st.st_mode):
        return (f"{name} is a symbolic link, which another user may have made to steer the"
                f" socket elsewhere: {fix}")
    if not stat.S_ISDIR(st.st_mode):
        return f"{name} is not a folder: {fix}"
    if st.st_uid != uid:
        return (f"{name} belongs to uid {st.st_uid}, not to you (uid {uid}): its owner could"
                f" swap the daemon's socket in it; {fix}")
    if st.st_mode & 0o022:
        who = "group and others" if st.st_mode & 0o022 == 0o022 else (
            "its group" if st.st_mode & 0o020 else "others")
        return (f"{name} is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o}), who"
                f" could swap the daemon's socket in it: run `chmod 700 {folder}`, or {other}")
    return None


def socket_path_too_long(path: Path) -> str | None:
    """What is wrong with a socket path over :data:`MAX_SOCKET_PATH_BYTES`, with what to do;
    None when it fits."""
    size = len(os.fsencode(str(path)))
    if size <= MAX_SOCKET_PATH_BYTES:
        return None
    return (f"the socket path {path} is {size} bytes, over the {MAX_SOCKET_PATH_BYTES} a Unix"
            " socket path may have: use a shorter one with --socket (or GPUSCHED_SOCKET),"
            " e.g. /tmp/gpusched-NAME.sock")


def _named_socket(explicit: str | None) -> Path | None:
    """``--socket``, else ``$GPUSCHED_SOCKET``: a path the user named, for client and daemon."""
    chosen = explicit or os.environ.get("GPUSCHED_SOCKET")
    return Path(chosen) if chosen else None


def client_socket_path(explicit: str | None = None) -> Path:
    """The socket a client should talk to (see the module docstring for the order)."""
    named = _named_socket(explicit)
    if named is not None:
        return named
    return SYSTEM_SOCKET if SYSTEM_SOCKET.exists() else user_socket_path()


def daemon_socket_path(explicit: str | None = None) -> Path:
    """The socket a daemon listens on: the system path as root, the per-user one otherwise."""
    named = _named_socket(explicit)
    if named is not None:
        return named
    return SYSTEM_SOCKET if os.getuid() == 0 else user_socket_path()


def default_state_dir() -> Path:
    """The trial log and trial folders: /var/lib/gpusched as root, else $XDG_STATE_HOME."""
    if os.getuid() == 0:
        return SYSTEM_STATE_DIR
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "gpusched"


def default_config_path() -> Path | None:
    """The settings file read without ``--config``: /etc/gpusched/config.toml as root, else
    ``$XDG_CONFIG_HOME/gpusched/config.toml``; None when that file does not exist."""
    if os.getuid() == 0:
        path = SYSTEM_CONFIG
    else:
        config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        path = Path(config_home) / "gpusched" / "config.toml"
    return path if path.exists() else None
