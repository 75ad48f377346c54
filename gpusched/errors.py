"""Every error gpusched raises on purpose: one base class and small, documented leaves.

Foreign exceptions (``NVMLError_*``, ``sqlite3.Error``, ``ConnectionRefusedError``) are translated
into these at the boundary where they occur, so callers only ever catch our own types.
"""

from __future__ import annotations

from collections.abc import Sequence

TYPE_CHECKING = False  # typing is imported for the type checker only: the CLI starts faster
if TYPE_CHECKING:
    from gpusched._spec_partial import PartialRead

__all__ = [
    "GpuschedError",
    "SpecError",
    "Problem",
    "ProtocolError",
    "NoDaemonError",
    "DaemonGoneError",
    "UnusableSocketError",
    "SocketPermissionError",
    "RequestError",
    "NotFoundError",
    "PluginError",
    "GpuError",
    "StoreError",
    "ConfigError",
    "UsageError",
    "FailedTrialError",
    "FatalError",
]


class GpuschedError(Exception):
    """Base class of every error that gpusched raises on purpose."""


class Problem:
    """One problem in an experiment file: where it is (``params[2].max``) and what is wrong.

    An immutable value (equal and hashing by its two fields); a plain class rather than a
    dataclass, whose import costs the CLI ~10 ms at every start.
    """

    __slots__ = ("message", "place")
    place: str
    message: str

    def __init__(self, place: str, message: str) -> None:
        object.__setattr__(self, "place", place)
        object.__setattr__(self, "message", message)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a Problem is immutable: cannot set {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Problem):
            return NotImplemented
        return (self.place, self.message) == (other.place, other.message)

    def __hash__(self) -> int:
        return hash((self.place, self.message))

    def __repr__(self) -> str:
        return f"Problem(place={self.place!r}, message={self.message!r})"

    def __str__(self) -> str:
        return f"{self.place}: {self.message}" if self.place else self.message


class SpecError(GpuschedError):
    """An experiment file was refused; ``problems`` lists every problem, each with its place.

    ``read``: when the parser refused a file whose settings it could read, what of them
    parsed that only the daemon can judge (see ``gpusched._spec_partial``); else None.
    """

    def __init__(self, problems: Sequence[Problem], source: str = "", *,
                 read: PartialRead | None = None) -> None:
        self.problems = tuple(problems)
        self.source = source
        self.read = read
        head = f"{source}: " if source else ""
        count = len(self.problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        plural = "s" if count != 1 else ""
        super().__init__(f"{head}{count} problem{plural} in the experiment\n{lines}")


class ProtocolError(GpuschedError):
    """A message on the socket is not valid under the wire protocol (see docs/protocol.md)."""


class NoDaemonError(GpuschedError):
    """Nothing answers at the socket path."""

    def __init__(self, path: str, detail: str = "") -> None:
        self.path = path
        extra = f" ({detail})" if detail else ""
        super().__init__(f"no daemon at {path}{extra}: start one with `gpusched daemon`")


class DaemonGoneError(NoDaemonError):
    """The daemon took the connection but went away before answering: it stopped, restarted
    or crashed. A request that changes something may or may not have been taken."""


class UnusableSocketError(NoDaemonError):
    """The socket path cannot be used as it is: too long for a Unix socket, under something
    that is not a folder, or in a per-user folder that another user could have made or can
    write. The whole message (``path`` and what to do) is the caller's."""

    def __init__(self, path: str, message: str) -> None:
        GpuschedError.__init__(self, message)  # not "start a daemon": that would not help
        self.path = path


class SocketPermissionError(NoDaemonError):
    """The socket refused this user (permission denied): a daemon may well be there, but it is
    shared with a group the user is not in (or joined after logging in), or with nobody, or a
    folder on the way is closed. A :class:`NoDaemonError` still, for what it means to a script
    (nothing answers *this user*: ``gpusched wait`` exits 69); its message (``path`` and what
    to do: join the group, log in again, or run one's own daemon) is the caller's."""

    def __init__(self, path: str, message: str) -> None:
        GpuschedError.__init__(self, message)  # not "start a daemon": one is there
        self.path = path


class RequestError(GpuschedError):
    """The daemon refused a request; ``code`` is a stable machine-readable word."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class NotFoundError(RequestError):
    """An experiment or trial named in a request does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__("not_found", message)


class PluginError(GpuschedError):
    """A search or stopping plugin is unknown, failed to load, or rejected its options."""


class GpuError(GpuschedError):
    """A GPU could not be queried; ``uuid`` names the device when one is known."""

    def __init__(self, message: str, uuid: str | None = None) -> None:
        self.uuid = uuid
        super().__init__(message)


class StoreError(GpuschedError):
    """The trial log (SQLite) could not be read or written."""


class UsageError(GpuschedError):
    """A command line that cannot work as written (the message says how to write it)."""


class ConfigError(GpuschedError):
    """The daemon's configuration or command-line settings are invalid."""


class FailedTrialError(GpuschedError):
    """Raise in a trainer to fail this trial without retrying it (KerasTuner's rule)."""


class FatalError(GpuschedError):
    """Raise in a trainer to fail this trial and stop its whole experiment."""
