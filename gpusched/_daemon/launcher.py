"""Starting and stopping trial processes.

A trial runs in a new session (so it leads its own process group), with an environment built
whole (anyio's ``env=`` replaces the daemon's), stdout and stderr to files in its folder. Stopping
is our own code, after trio's ``_subprocess.py``: SIGTERM to the whole group, a grace period,
then SIGKILL; anyio's ``Process.aclose`` would kill outright and miss grandchildren. Processes
that left the group but not the session are found through /proc and get the same treatment, so
no child outlives its trial.

A root daemon's trial of another user starts through ``/bin/sh`` (:data:`TRAMPOLINE`), which
enters ``workdir`` once it has that user's rights and then execs the command in the same
process: ``Popen``'s child enters ``cwd`` before it drops root, so a ``cwd=`` would let a user's
trial start in, and read from, a folder that user may not reach.

A trial's folder, checkpoint folder and logs get the modes its submitter's umask gives (sent by
``gpusched submit``), and the trial runs with that umask: what it makes is as private as what
that user makes by hand. The daemon's own umask (0022 for the system service) would open them to
every local user.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from gpusched._daemon.child import Child, spawn_child
from gpusched._daemon.identity import RunAs
from gpusched._daemon.procfs import YOUNG_S, pids_in_session
from gpusched._daemon.reports import why_not_read
from gpusched._umask import process_umask

__all__ = [
    "BASE_ENV_KEYS",
    "DAEMON_UMASK",
    "DEFAULT_PATH",
    "HOST_ENV_KEYS",
    "TRAMPOLINE",
    "TRAMPOLINE_SHELL",
    "TrialFiles",
    "TrialProcess",
    "can_enter",
    "not_on_path",
    "trial_command",
    "trial_environment",
    "spawn_trial",
    "trampoline_argv",
    "workdir_problem_as",
]

# What a trial of another user (a root daemon's) takes from the daemon's environment: the
# host's locale, time zone and CUDA set-up, nothing that is the daemon's own.
HOST_ENV_KEYS = (
    "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_NUMERIC", "LC_TIME", "LC_COLLATE",
    "LC_MONETARY", "LC_MESSAGES", "LC_PAPER", "LC_NAME", "LC_ADDRESS", "LC_TELEPHONE",
    "LC_MEASUREMENT", "LC_IDENTIFICATION", "TZ", "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH",
)
# What a trial inherits from the daemon's own environment when both run as the same user:
# enough to find programs, libraries and the user's home, nothing else (the experiment's `env`
# adds the rest).
BASE_ENV_KEYS = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", *HOST_ENV_KEYS, "TMPDIR", "VIRTUAL_ENV",
    "CONDA_PREFIX", "CONDA_DEFAULT_ENV",
)
# login.defs' ENV_PATH: another user's trial gets this PATH (its experiment's `env` may set its
# own, e.g. its virtualenv's bin folder first).
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_KILL_POLL_S = 0.01
# The daemon's umask, read once as it starts (it never changes it). mkdir() and open() take it
# away from the modes they are given: where it takes bits that a submitter's umask leaves, a
# trial's folder or log made now is given its mode again (see TrialFiles).
DAEMON_UMASK = process_umask()

# How another user's trial starts: ``TRAMPOLINE_SHELL -c TRAMPOLINE gpusched WORKDIR
# CANNOT_ENTER CANNOT_ENTER_STATUS NOT_FOUND NOT_FOUND_STATUS REPORT_FILE COMMAND...``, run with
# that user's ids from ``/``. It enters WORKDIR with them (``cd -P``: the physical folder, as
# chdir() gives), checks that COMMAND is there for them, then execs it in the same process (the
# pid stays the one the daemon watches; a bare name is looked for on the trial's PATH from
# WORKDIR, as exec does: a file, not a shell builtin of that name, which `command -v` would
# have found and exec would not run). What fails is said twice: a status line in the report
# file (the trial fails with that reason, not retried, as when the same user's command cannot
# start) and a line on stderr (a crash's reason, should the report file not take it). The
# shell's own variables go, so the command gets the environment the daemon built, no more (but
# for SHLVL=0 where /bin/sh is bash: its exec sets it).
TRAMPOLINE_SHELL = "/bin/sh"
TRAMPOLINE = r"""fail() {
  { printf '%s\n' "$3" >>"$4"; } 2>/dev/null; printf 'gpusched: %s\n' "$2" >&2; exit "$1"
}
on_path() {
  set -- "$1" "${PATH-}:"
  while [ -n "$2" ]; do
    case $2 in :*) set -- "$1" "${2#:}" "./$1";; *) set -- "$1" "${2#*:}" "${2%%:*}/$1";; esac
    [ -f "$3" ] && [ -x "$3" ] && return 0
  done
  return 1
}
cd -P -- "$1" 2>/dev/null || fail 125 "$2" "$3" "$6"
case $7 in */*) [ -f "$7" ] && [ -x "$7" ];; *) on_path "$7";; esac || fail 127 "$4" "$5" "$6"
unset -f fail on_path; unset PWD OLDPWD SHLVL; shift 6; exec "$@"
"""
# At submit, a root daemon checks that another user may enter their workdir the same way, with
# that user's ids; a folder that does not answer in this long (an NFS home) counts as closed.
_ENTER_TIMEOUT_S = 10.0


class TrialFiles:
    """The files of one trial, all inside its own folder, but for ``checkpoints`` when it
    continues another trial (it goes on in that trial's checkpoint folder).

    ``umask``: its submitter's (the experiment's), which its folders, logs and process get;
    None (an older client sent none): the daemon's, as before.
    """

    def __init__(self, trial_dir: Path, checkpoints: Path | None = None,
                 umask: int | None = None) -> None:
        self.dir = trial_dir
        self.stdout = trial_dir / "stdout.log"
        self.stderr = trial_dir / "stderr.log"
        self.reports = trial_dir / "reports.jsonl"
        self.hypertune = trial_dir / "hypertune_metrics.json"
        self.checkpoints = checkpoints or trial_dir / "checkpoint"
        self.umask = umask

    @property
    def folder_mode(self) -> int:
        """The mode of its folder and checkpoint folder: 0777 less the submitter's umask, but
        always its owner's to use (a umask of 0222 would leave the daemon and the trainer
        unable to write there)."""
        return 0o777 if self.umask is None else 0o777 & ~self.umask | 0o700

    @property
    def log_mode(self) -> int:
        """The mode of its logs: 0666 less the submitter's umask, its owner's to write
        (without one, 0644 as the daemon's umask leaves it)."""
        return 0o644 if self.umask is None else 0o666 & ~self.umask | 0o600

    def create(self, owner: RunAs | None = None) -> bool:
        """Make the folder and the checkpoint folder (kept across retries and resumes); True
        when the folder was made now (so no file of the trial can be in it yet).

        With an ``owner`` (a root daemon's trial of another user) both belong to that user,
        and the experiment's folder above them, root's, is open for it to reach them.
        """
        mode = self.folder_mode
        # The folder first: its parent exists after an experiment's first trial, so this is
        # two mkdir calls, not a failed one, an exception and three. (The checkpoint folder
        # of a trial that continues another is that one's: there already.) The folders above
        # it get the daemon's modes: its users reach their own trials' folders through them.
        try:
            self.dir.mkdir(mode)
            made = True
        except FileExistsError:  # a retry, a resume: the earlier attempt's folder
            made = False
        except FileNotFoundError:  # the experiment's first trial: the folders above it too
            self.dir.mkdir(mode, parents=True, exist_ok=True)
            made = True
        self.checkpoints.mkdir(mode, parents=True, exist_ok=True)
        if made and self.umask is not None and mode & DAEMON_UMASK:
            # mkdir() took away bits the submitter's umask leaves (theirs 0002, say, the
            # daemon's 0022): set them. Folders made now only, by the daemon in its own folder
            # (no link can be there yet); a continuation's checkpoint folder is its parent's.
            os.chmod(self.dir, mode)
            if self.checkpoints.parent == self.dir:
                os.chmod(self.checkpoints, mode)
        if owner is None:
            return made
        for folder in (self.dir.parent.parent, self.dir.parent):
            os.chmod(folder, 0o755)
        for folder in (self.dir, self.checkpoints):
            # Not following links: the user owns these folders and could plant one.
            os.chown(folder, owner.uid, owner.gid, follow_symlinks=False)
        return made


def can_enter(run_as: RunAs, folder: str) -> bool:
    """Whether ``run_as`` may enter ``folder``, tried with its ids as its trials enter their
    workdir (``cd -P`` in :data:`TRAMPOLINE_SHELL`, from ``/``). It starts a process and
    waits for it: call it off the event loop."""
    try:
        done = subprocess.run(
            [TRAMPOLINE_SHELL, "-c", 'cd -P -- "$1"', "gpusched", folder],
            user=run_as.uid, group=run_as.gid, extra_groups=list(run_as.groups), cwd="/",
            env={"PATH": DEFAULT_PATH}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, timeout=_ENTER_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def workdir_problem_as(run_as: RunAs) -> Callable[[str], str | None]:
    """The submit's check of a ``workdir`` where trials of ``run_as`` (another user, under a
    root daemon) will run: with that user's rights, not root's (:func:`can_enter`). A folder
    it may not enter is refused as one that is not there: what a folder closed to the user
    holds is not theirs to learn, and a folder only root may not enter (an NFS home with
    root_squash) is theirs to use."""
    name = run_as.name

    def problem(folder: str) -> str | None:
        if can_enter(run_as, folder):
            return None
        return (f"no such directory for {name}: {folder} (it is missing, or {name} may not"
                " enter it: a trial runs with its submitter's rights only)")

    return problem


def _flag_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def trial_command(command: Sequence[str], params: Mapping[str, Any]) -> list[str]:
    """The command, then one ``--NAME=VALUE`` per hyperparameter (AI Platform's convention)."""
    return [*command, *(f"--{name}={_flag_value(v)}" for name, v in params.items())]


def trial_environment(
    *,
    daemon_env: Mapping[str, str],
    experiment_env: Mapping[str, str],
    experiment_id: str,
    number: int,
    params: Mapping[str, Any],
    files: TrialFiles,
    uuids: Sequence[str],
    metric: str,
    run_as: RunAs | None = None,
    attempt: int = 1,
) -> dict[str, str]:
    """The whole environment of a trial (SPEC section 4); ``run_as``: the other user it runs as
    (its login variables then come from the user database, not from the daemon)."""
    if run_as is None:
        env = {k: daemon_env[k] for k in BASE_ENV_KEYS if k in daemon_env}
    else:
        env = {k: daemon_env[k] for k in HOST_ENV_KEYS if k in daemon_env}
        env.update(run_as.login_env(), PATH=DEFAULT_PATH)
    env["PYTHONUNBUFFERED"] = "1"  # so that `gpusched logs --follow` shows output as it comes
    # AI Platform's trial id where its trainers read it: Google's samples write each trial's
    # model to job_dir/TF_CONFIG.task.trial. No cluster and no task type: TensorFlow reads that
    # as one local worker. Before the experiment's env, which may set a TF_CONFIG of its own.
    env["TF_CONFIG"] = json.dumps({"task": {"trial": str(number)}})
    # Vertex AI's folders, where its trainers save (model.save(os.environ["AIP_MODEL_DIR"])):
    # folders that exist, so no trainer fails on a missing one and no trial pays for a mkdir.
    env["AIP_MODEL_DIR"] = env["AIP_TENSORBOARD_LOG_DIR"] = str(files.dir)
    env["AIP_CHECKPOINT_DIR"] = str(files.checkpoints)
    env.update(experiment_env)
    env.update({
        # UUIDs, not indices: NVML and CUDA number GPUs differently, UUIDs are the same for both.
        "CUDA_VISIBLE_DEVICES": ",".join(uuids),
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "GPUSCHED_EXPERIMENT": experiment_id,
        "GPUSCHED_TRIAL": str(number),
        # 1, then 2... when it runs again (a retry, a resume, after a restart): a trainer
        # without a checkpoint knows it starts over while training_iteration goes on.
        "GPUSCHED_ATTEMPT": str(attempt),
        "GPUSCHED_TRIAL_DIR": str(files.dir),
        "GPUSCHED_PARAMS": json.dumps(dict(params)),
        "GPUSCHED_REPORT_FILE": str(files.reports),
        "GPUSCHED_CHECKPOINT_DIR": str(files.checkpoints),
        "CLOUD_ML_HP_METRIC_FILE": str(files.hypertune),
        "CLOUD_ML_HP_METRIC_TAG": metric,
        "CLOUD_ML_TRIAL_ID": str(number),
    })
    return env


class TrialProcess:
    """A started trial: the leader process of its own session and process group."""

    def __init__(self, process: Child) -> None:
        self._process = process
        self.pid = process.pid
        self._spawned = time.monotonic()

    def __repr__(self) -> str:
        return f"<TrialProcess pid={self.pid} returncode={self._process.returncode}>"

    async def wait(self) -> int:
        """Wait for the leader to exit; its return code (negative: killed by that signal)."""
        return await self._process.wait()

    def young(self) -> bool:
        """True while pids handed out since the leader cannot have wrapped round (YOUNG_S)."""
        return time.monotonic() - self._spawned < YOUNG_S

    def _members(self) -> list[int]:
        return pids_in_session(self.pid, young=self.young())

    def signal_all(self, sig: signal.Signals) -> None:
        """``sig`` to the trial's process group, then to each process of its session outside
        the group (each process gets it once)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        # Then, one by one, those that left the group but not the session; the group's own
        # members must not get the signal twice (a SIGTERM handler would run twice).
        for pid in self._members():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) != self.pid:
                    os.kill(pid, sig)

    async def _alive(self) -> bool:
        if self._process.returncode is None:
            return True
        # A pass over /proc is the only way to find processes that left the group but not the
        # session. It is one getsid() per process (~0.1 ms for 120 processes, ~1 ms for
        # 1,500): cheaper on the loop than a hop to a worker thread and back.
        return bool(self._members())

    async def wait_session_gone(self) -> None:
        """Wait until neither the leader nor any process of its session is left."""
        # No event tells when a non-child leaves a session (pidfd covers only one pid): poll.
        while await self._alive():  # noqa: ASYNC110
            await anyio.sleep(_KILL_POLL_S)

    async def stop(self, grace_s: float, *, terminated: bool = False) -> None:
        """SIGTERM to every process of the trial, ``grace_s`` to exit, then SIGKILL.

        ``terminated``: the SIGTERM was sent already (a stop whose leader exited first): what
        is left gets what remains of the grace period, ``grace_s``, without a second SIGTERM
        (a trainer's handler, saving a checkpoint, must not run twice).
        """
        if not await self._alive():
            return
        if not terminated:
            self.signal_all(signal.SIGTERM)
        with anyio.move_on_after(grace_s):
            await self.wait_session_gone()
        if await self._alive():
            self.signal_all(signal.SIGKILL)
            await self.wait_session_gone()


# O_NOFOLLOW: in another user's trial folder, a link planted in place of a log must not make
# the daemon (root) write through it. O_NONBLOCK: nor may a FIFO planted there hang the daemon
# (its open would wait for a reader, on the event loop); cleared once it is a regular file.
_LOG_FLAGS = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
              | os.O_CLOEXEC)
_NEW_LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISLNK, "a symbolic link"),
          (stat.S_ISDIR, "a folder"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
          (stat.S_ISBLK, "a device"))


def _not_a_log(path: Path, mode: int) -> str | None:
    """``{path} is a FIFO, not a regular file``, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "something else")
    return f"{path} is {kind}, not a regular file"


def _refused(path: Path, why: str, code: int = errno.EINVAL) -> OSError:
    """The error a log the daemon does not write to ends the trial's start with (its reason,
    through trial_runner's ``cannot start ...: WHY: remove it``)."""
    return OSError(code, f"{why}: remove it", str(path))


def _open_log(path: Path, owner: RunAs | None, mode: int = 0o644, *,
              exact: bool = False, fresh: bool = False) -> int:
    """A write descriptor of the log at ``path``, made with ``mode`` when missing, for a
    trial's stdout or stderr; OSError for anything there but a regular file, and, with an
    ``owner`` (the other user a root daemon's trial runs as), for a file with another name (a
    hard link) or of a third user (:func:`~gpusched._daemon.reports.why_not_read`): the
    daemon would write into it and hand it to that user.

    ``exact``: ``mode`` is the submitter's (their umask applied), which the daemon's umask
    must not reduce further: a log made now gets it whole. ``fresh``: the trial's folder was
    made just now, by the daemon: with no ``owner``, nothing can have been planted in it, and
    a log made there exclusively needs none of the checks (one system call, not four, on a
    short trial's path); anything found there after all takes the checks."""
    if fresh and owner is None:
        try:
            fd = os.open(path, _NEW_LOG_FLAGS, mode)
        except FileExistsError:
            pass
        else:
            if exact and mode & DAEMON_UMASK:
                os.fchmod(fd, mode)  # made now: open() took the daemon's umask from it
            return fd
    try:
        fd = os.open(path, _LOG_FLAGS, mode)
    except OSError as exc:
        # ELOOP (a link), ENXIO (a FIFO without a reader, a socket), EISDIR: say what is there.
        try:
            why = _not_a_log(path, os.lstat(path).st_mode)
        except OSError:
            why = None
        if why is not None:
            raise _refused(path, why, exc.errno or errno.EINVAL) from exc
        raise
    try:
        st = os.fstat(fd)
        why = _not_a_log(path, st.st_mode)
        if why is None and owner is not None and (
                problem := why_not_read(st, owner.uid)) is not None:
            why = f"{path}: {problem}"
        if why is not None:
            raise _refused(path, why)
        os.set_blocking(fd, True)  # the trial's writes block as usual
        if exact and mode & DAEMON_UMASK and stat.S_IMODE(st.st_mode) == mode & ~DAEMON_UMASK:
            # What open() left of mode: made now. (A mode the user gave it stays.)
            os.fchmod(fd, mode)
        # Only now: a file that passed is the user's or one the daemon (root) made just now.
        if owner is not None and (st.st_uid, st.st_gid) != (owner.uid, owner.gid):
            os.fchown(fd, owner.uid, owner.gid)
    except OSError:
        os.close(fd)
        raise
    return fd


def _status_line(reason: str) -> str:
    """The report line that fails a trial without a retry, with ``reason``."""
    return json.dumps({"status": "failed", "reason": reason})


def not_on_path(program: str, path: str, *, path_in_env: bool, other_user: bool = False,
                has_path: bool = True, user: str = "") -> str:
    """``not found on PATH (DIRS): what to do``: why ``program``, named without a folder,
    could not start. ``path``: the folders looked in; ``path_in_env``: the PATH the
    experiment's ``env:`` sets; ``other_user``: a root daemon's trial of another user (a
    default PATH), else the daemon's PATH (``has_path``: it has one); ``user``: the user it
    was looked for as, when the trampoline looked (see :func:`trampoline_argv`)."""
    if path_in_env:
        where, fix = "the PATH that the experiment's env sets", "or add its folder to that PATH"
    else:
        where = ("the PATH of a trial run as another user" if other_user
                 else "the daemon's PATH" if has_path
                 else "the default PATH (the daemon has none)")
        fix = "or set env: {PATH: ...} in the experiment file"
    as_user = f" for {user}" if user else ""
    return (f"not found on {where} ({path}){as_user}: give its full path in command"
            f" (`which {program}` in your shell shows it), {fix}")


def _not_found(program: str, workdir: str, env: Mapping[str, str], user: str) -> str:
    """Why ``program`` cannot start as ``user``, as trial_runner's ``cannot_start_reason``
    words it for the same user's command (it cannot see what the trampoline saw)."""
    said = f"cannot start {program!r} in {workdir}"
    if "/" in program:
        return (f"{said}: no such file that {user} may run (it is missing, not executable, or"
                f" in a folder closed to {user})")
    path = env.get("PATH", "")
    return f"{said}: " + not_on_path(program, path, path_in_env=path != DEFAULT_PATH,
                                     other_user=True, user=user)


def trampoline_argv(argv: Sequence[str], *, workdir: str, env: Mapping[str, str],
                    files: TrialFiles, run_as: RunAs) -> list[str]:
    """``argv`` started through :data:`TRAMPOLINE`: in ``workdir``, entered with the rights of
    ``run_as``, whose failures are said in the trial's reason."""
    user = run_as.name
    cannot_enter = (f"cannot enter the workdir {workdir} as {user}: it does not exist, or"
                    f" {user} may not reach it (a trial runs with its submitter's rights only):"
                    f" open it to {user}, or submit again with another workdir")
    not_found = _not_found(argv[0], workdir, env, user)
    return [TRAMPOLINE_SHELL, "-c", TRAMPOLINE, "gpusched", workdir,
            cannot_enter, _status_line(cannot_enter), not_found, _status_line(not_found),
            str(files.reports), *argv]


async def spawn_trial(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, files: TrialFiles,
    run_as: RunAs | None = None, fresh: bool = False,
) -> TrialProcess:
    """Start a trial, as ``run_as`` when given (a root daemon's trial of another user);
    OSError (command not found, not executable, bad workdir, a log that is not a regular file)
    propagates. Another user's trial enters ``cwd`` and looks for its command with that
    user's rights (:data:`TRAMPOLINE`): what fails there fails the trial with its reason.
    ``fresh``: ``files.create`` made the trial's folder just now (see :func:`_open_log`)."""
    ids: dict[str, Any] = {}
    if run_as is not None:
        # Popen drops its vfork() fast path once ids are to be changed: only for another user.
        ids = {"user": run_as.uid, "group": run_as.gid, "extra_groups": list(run_as.groups)}
        argv = trampoline_argv(argv, workdir=os.fspath(cwd), env=env, files=files,
                               run_as=run_as)
        cwd = Path("/")  # entered as root, harmlessly; the trampoline goes on from there
    exact, mode = files.umask is not None, files.log_mode
    out = _open_log(files.stdout, run_as, mode, exact=exact, fresh=fresh)
    try:
        err = _open_log(files.stderr, run_as, mode, exact=exact, fresh=fresh)
        try:
            process = await spawn_child(argv, env=env, cwd=cwd, stdout=out, stderr=err,
                                        ids=ids, umask=_child_umask(files.umask))
        except OSError as exc:
            if ids and exc.filename == TRAMPOLINE_SHELL:
                raise _no_trampoline(exc) from exc
            raise
        finally:
            os.close(err)
    finally:
        os.close(out)
    return TrialProcess(process)


def _child_umask(umask: int | None) -> int:
    """``Popen``'s ``umask`` for a trial of a submitter whose umask is ``umask``: -1 (the
    daemon's, inherited) when it is the same or unknown. ``Popen`` keeps its vfork() fast
    path with a umask (CPython 3.11's _posixsubprocess gives it up only for a preexec_fn and
    for changes of user, group or groups); left out, it spares the child a syscall."""
    return -1 if umask is None or umask == DAEMON_UMASK else umask


def _no_trampoline(exc: OSError) -> OSError:
    """The error for a trampoline shell that cannot be run. There is no going back to
    ``Popen``'s ``cwd=``: entering workdir as root is what the trampoline is there to avoid."""
    return OSError(exc.errno, f"{TRAMPOLINE_SHELL}: {exc.strerror}: a root daemon starts"
                   " another user's trial through it (to enter workdir with that user's"
                   f" rights): restore {TRAMPOLINE_SHELL}", TRAMPOLINE_SHELL)
