"""Users and groups: the answers of the user and group databases are kept a while, misses too,
so that a slow directory (LDAP behind NSS) is not asked at every request on the event loop."""

from __future__ import annotations

import grp
import pwd
from collections import Counter
from collections.abc import Iterator

import pytest

from gpusched._daemon import access

ALICE, BOB, GONE = 1001, 1002, 4242
ADMINS, STAFF = "admins", "staff"


class Directory:
    """A user and group database that counts how often it is asked."""

    def __init__(self) -> None:
        self.users = {
            ALICE: pwd.struct_passwd(("alice", "x", ALICE, 100, "", "/home/alice", "/bin/sh")),
            BOB: pwd.struct_passwd(("bob", "x", BOB, 500, "", "/home/bob", "/bin/sh")),
        }
        self.groups = {
            ADMINS: grp.struct_group((ADMINS, "x", 500, [])),  # bob's primary group
            STAFF: grp.struct_group((STAFF, "x", 100, [])),
        }
        self.asked: Counter[str] = Counter()

    def getpwuid(self, uid: int) -> pwd.struct_passwd:
        self.asked["getpwuid"] += 1
        return self.users[uid]  # KeyError for a uid without an entry, as pwd's own

    def getgrnam(self, name: str) -> grp.struct_group:
        self.asked["getgrnam"] += 1
        return self.groups[name]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    access.clear_cache()
    yield
    access.clear_cache()  # nothing of the fake directory is left for other tests


@pytest.fixture
def directory(monkeypatch: pytest.MonkeyPatch) -> Directory:
    fake = Directory()
    monkeypatch.setattr(pwd, "getpwuid", fake.getpwuid)
    monkeypatch.setattr(grp, "getgrnam", fake.getgrnam)
    return fake


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(access, "_clock", fake)
    return fake


def test_names_are_as_before(directory: Directory) -> None:
    assert access.login_name(ALICE) == "alice"
    assert access.user_name(ALICE) == "alice (uid 1001)"
    assert access.login_name(GONE) == "4242"
    assert access.user_name(GONE) == "uid 4242"
    assert access.login_name(None) is None
    assert access.user_name(None) == "unknown"
    assert access.group_id(ADMINS) == 500
    assert access.group_id("nosuch") is None


def test_a_uid_is_looked_up_once_within_the_ttl(directory: Directory, clock: Clock) -> None:
    for _ in range(50):
        assert access.login_name(ALICE) == "alice"
        assert access.user_name(ALICE) == "alice (uid 1001)"
    assert directory.asked["getpwuid"] == 1
    access.login_name(BOB)
    assert directory.asked["getpwuid"] == 2  # one entry per uid


def test_a_uid_without_a_name_is_kept_too(directory: Directory, clock: Clock) -> None:
    # A miss is often a directory's slowest answer (it waits for every server to say no).
    for _ in range(20):
        assert access.login_name(GONE) == "4242"
    assert directory.asked["getpwuid"] == 1


def test_answers_expire_after_the_ttl(directory: Directory, clock: Clock) -> None:
    assert access.login_name(ALICE) == "alice"
    directory.users[ALICE] = pwd.struct_passwd(
        ("alice2", "x", ALICE, 100, "", "/home/alice", "/bin/sh"))
    clock.now += access.CACHE_TTL_S - 1
    assert access.login_name(ALICE) == "alice"  # still the kept answer
    clock.now += 2
    assert access.login_name(ALICE) == "alice2"  # asked again: a rename is seen
    assert directory.asked["getpwuid"] == 2


def test_no_lookup_for_an_unknown_uid() -> None:
    assert access.login_name(None) is None  # no fake needed: nothing is asked


def test_group_membership_is_kept_per_group_and_per_user(
    directory: Directory, clock: Clock,
) -> None:
    directory.groups[ADMINS].gr_mem.append("alice")
    for _ in range(30):  # a busy daemon authorizing requests
        assert access.in_group(ALICE, ADMINS)  # a supplementary member
        assert access.in_group(BOB, ADMINS)  # by primary group
        assert access.in_group(ALICE, STAFF)  # her primary group
    assert access.group_id(ADMINS) == 500  # the same kept entry as in_group's
    assert directory.asked == {"getgrnam": 2, "getpwuid": 2}


def test_membership_changes_are_seen_after_the_ttl(directory: Directory, clock: Clock) -> None:
    assert not access.in_group(ALICE, ADMINS)
    directory.groups[ADMINS] = grp.struct_group((ADMINS, "x", 500, ["alice"]))
    assert not access.in_group(ALICE, ADMINS)  # within the TTL: the kept answer
    clock.now += access.CACHE_TTL_S
    assert access.in_group(ALICE, ADMINS)


def test_a_missing_group_or_user_is_not_a_member_and_is_kept(
    directory: Directory, clock: Clock,
) -> None:
    for _ in range(10):
        assert not access.in_group(ALICE, "nosuch")
        assert not access.in_group(GONE, ADMINS)
    # no user lookup for a group that does not exist; each miss asked once
    assert directory.asked == {"getgrnam": 2, "getpwuid": 1}


def test_an_error_other_than_a_miss_is_not_kept(
    monkeypatch: pytest.MonkeyPatch, clock: Clock,
) -> None:
    calls = 0

    def failing(uid: int) -> pwd.struct_passwd:
        nonlocal calls
        calls += 1
        raise OSError("directory unreachable")

    monkeypatch.setattr(pwd, "getpwuid", failing)
    for _ in range(2):
        with pytest.raises(OSError, match="unreachable"):
            access.login_name(ALICE)
    assert calls == 2


def test_clear_cache_asks_again(directory: Directory, clock: Clock) -> None:
    access.login_name(ALICE)
    access.group_id(ADMINS)
    access.clear_cache()
    access.login_name(ALICE)
    access.group_id(ADMINS)
    assert directory.asked == {"getpwuid": 2, "getgrnam": 2}


def test_the_cache_is_bounded(
    directory: Directory, clock: Clock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(access, "_MAX_ENTRIES", 8)
    for uid in range(5000, 5020):
        access.login_name(uid)
    assert len(access._users._entries) <= 8
    assert access.login_name(5019) == "5019"
    assert directory.asked["getpwuid"] == 20  # the newest entry survived the purge
