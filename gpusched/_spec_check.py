"""Checks that report a problem and carry on, for the experiment-file parser (``spec.py``).

Every check takes the :class:`Problems` collector and the value's place in the file, adds a
problem when the value is wrong and returns ``None`` then, so that one pass over a file finds every
problem in it. Nothing here raises on a badly typed value: YAML can put any type anywhere.
"""

from __future__ import annotations

import difflib
import math
import re
import shlex
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from gpusched.errors import Problem

__all__ = [
    "INT_MAX",
    "Problems",
    "at",
    "describe",
    "unknown_key",
    "did_you_mean",
    "closest",
    "number",
    "json_int",
    "whole",
    "text",
    "unusable_char",
    "boolean",
    "choice",
    "as_text",
    "key_text",
    "words",
    "freeze",
    "thaw",
    "show_number",
]

T = TypeVar("T")

INT_MAX = 2**31 - 1  # counts and priorities travel through JSON and SQLite: keep them small
_MAX_PROBLEMS = 200  # a generated file can be wrong everywhere; a reader stops long before this
_MAX_NODES = 10_000  # plugin options are small; this bounds work on YAML alias bombs
_MAX_DEPTH = 32  # and this catches self-referencing YAML anchors (`&a [*a]`)
_MAX_CLOSE = 1_000  # names compared for a "did you mean" (~10 µs each); more: only by case


class Problems:
    """Collects problems in file order; ``items`` is what :class:`~gpusched.SpecError` lists."""

    def __init__(self) -> None:
        self.items: list[Problem] = []
        #: what looks wrong but is accepted, each ``PLACE: message`` (the submit prints them)
        self.warnings: list[str] = []

    def warn(self, place: str, message: str) -> None:
        """Record a warning: the file is read, but not quite as written."""
        self.warnings.append(f"{place}: {message}")

    def add(self, place: str, message: str) -> None:
        """Record one problem (after ``_MAX_PROBLEMS``, one line says that more were left out)."""
        if len(self.items) < _MAX_PROBLEMS:
            self.items.append(Problem(place, message))
        elif len(self.items) == _MAX_PROBLEMS:
            self.items.append(Problem("", "more problems were found but are not listed"))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def full(self) -> bool:
        """True once more problems are no longer listed: a check may skip the work of saying
        what is wrong (the place and message would be dropped)."""
        return len(self.items) > _MAX_PROBLEMS


def at(place: str, key: object) -> str:
    """The place of ``key`` inside ``place``: ``params[2]`` + ``max`` → ``params[2].max``."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{place}[{key}]"
    return f"{place}.{key}" if place else str(key)


def show_number(value: int | float) -> str:
    """A number for a message: ints as written, huge ints shortened (``str`` refuses those)."""
    if isinstance(value, int) and abs(value) >= 10**30:
        return "a very large number"
    return repr(value)


def describe(value: Any) -> str:
    """A short description of any value for a "(got …)" clause, in YAML's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return show_number(value)
    if isinstance(value, str):
        shown = repr(value)
        return shown if len(shown) <= 42 else shown[:38] + "...'"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def unknown_key(key: object, known: Iterable[str]) -> str:
    """``unknown key 'max_trial' (did you mean 'max_trials'?)``."""
    if not isinstance(key, str):
        return f"unknown key {describe(key)} (keys are text)"
    return f"unknown key {describe(key)}{did_you_mean(key, known)}"


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` (did you mean 'max_trials'?)`` for the closest of ``known`` (by case first), or ``""``.
    Past ``_MAX_CLOSE`` names (a generated list, not a typed one) only case is compared."""
    close = closest(word, known)
    return f" (did you mean {close!r}?)" if close is not None else ""


def closest(word: str, known: Iterable[str]) -> str | None:
    """The name of ``known`` that :func:`did_you_mean` guesses for ``word``, or None."""
    known = list(known)
    by_case = {k.lower(): k for k in known}
    if word.lower() in by_case:
        return by_case[word.lower()]
    if len(known) > _MAX_CLOSE:
        return None
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return close[0] if close else None


def number(p: Problems, place: str, value: Any) -> int | float | None:
    """A finite int or float (ints stay ints); ``true``/``false`` are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        p.add(place, f"must be a number (got {describe(value)})")
        return None
    try:
        finite = math.isfinite(float(value))
    except OverflowError:
        finite = False
    if not finite:
        p.add(place, f"must be a finite number (got {describe(value)})")
        return None
    return value


_JSON_INT = re.compile(r"-?[0-9]{1,19}")


def json_int(value: Any) -> Any:
    """An integer that Google's APIs wrote as text, as the number: protobuf's JSON form writes
    an int64 in quotes (``"minValue": "1"``), and a config copied from ``gcloud ... describe
    --format=json`` keeps them. Anything else is returned as it is, for its own check."""
    if isinstance(value, str) and _JSON_INT.fullmatch(value):
        return int(value)
    return value


def whole(
    p: Problems, place: str, value: Any, *, low: int, high: int = INT_MAX, what: str = ""
) -> int | None:
    """A whole number in ``[low, high]``; an integral float (``1e3``) counts as whole."""
    checked = number(p, place, value)
    if checked is None:
        return None
    if isinstance(checked, float) and not checked.is_integer():
        p.add(place, f"must be a whole number{what} (got {describe(value)})")
        return None
    result = int(checked)
    if result < low:
        p.add(place, f"must be at least {low} (got {show_number(result)})")
        return None
    if result > high:
        p.add(place, f"must be at most {high} (got {show_number(result)})")
        return None
    return result


_SURROGATE = re.compile("[\ud800-\udfff]")


def unusable_char(value: str) -> str | None:
    """Why ``value`` cannot reach a process (an argument, an environment variable), or None: a
    NUL ends a C string; a lone surrogate (half of a JSON ``\\ud83d\\ude00`` escape) has no
    UTF-8 encoding."""
    if "\0" in value:
        return "must not contain NUL characters"
    if (found := _SURROGATE.search(value)) is not None:
        return (f"contains a lone surrogate ({found.group()!a}): write the character itself,"
                " or both halves of its \\u escape")
    return None


def text(
    p: Problems, place: str, value: Any, *, pattern: re.Pattern[str] | None = None, rule: str = ""
) -> str | None:
    """Non-empty text a process can receive (see :func:`unusable_char`), matching ``pattern``
    in full when one is given."""
    if not isinstance(value, str):
        p.add(place, f"must be text (got {describe(value)})")
    elif not value:
        p.add(place, "must not be empty")
    elif (problem := unusable_char(value)) is not None:
        p.add(place, problem)
    elif pattern is not None and not pattern.fullmatch(value):
        p.add(place, f"{rule} (got {describe(value)})")
    else:
        return value
    return None


def boolean(p: Problems, place: str, value: Any) -> bool | None:
    """``true`` or ``false`` (YAML 1.2: ``yes``/``no``/``on``/``off`` are text, not booleans)."""
    if isinstance(value, bool):
        return value
    p.add(place, f"must be true or false (got {describe(value)})")
    return None


def choice(p: Problems, place: str, value: Any, table: Mapping[str, T], names: str) -> T | None:
    """One of ``table``'s words, ignoring case (so AI Platform's ``MAXIMIZE`` works)."""
    if isinstance(value, str) and value.lower() in table:
        return table[value.lower()]
    p.add(place, f"must be one of {names} (got {describe(value)})")
    return None


def as_text(value: Any) -> str | None:
    """A scalar as the text a process receives (``true``, ``3``, ``0.5``); None if not a scalar."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) < 10**30:
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return None


def words(p: Problems, place: str, raw: Any, *, split: bool = False) -> tuple[str, ...] | None:
    """A list of arguments (numbers become text); with ``split``, a string is split like a
    shell line."""
    if split and isinstance(raw, str):
        try:
            raw = shlex.split(raw)
        except ValueError as exc:
            p.add(place, f"cannot be split like a shell line: {exc}")
            return None
    if not isinstance(raw, list | tuple):
        p.add(place, f"must be a string or a list of strings (got {describe(raw)})")
        return None
    out: list[str] = []
    for index, item in enumerate(raw):
        word = as_text(item)
        if word is None:
            p.add(at(place, index), f"must be text or a number (got {describe(item)})")
        elif (problem := unusable_char(word)) is not None:
            p.add(at(place, index), problem)
        else:
            out.append(word)
    return tuple(out) if len(out) == len(raw) else None


def key_text(p: Problems, place: str, key: Any, **rules: Any) -> str | None:
    """A mapping's key: text (checked at its own place) under ``rules`` (see ``text``)."""
    if not isinstance(key, str):
        p.add(place, f"keys must be text (got {describe(key)})")
        return None
    return text(p, at(place, key), key, **rules)


def freeze(p: Problems, place: str, value: Any) -> Any:
    """Plain data (null, booleans, numbers, text, lists, mappings with text keys), made immutable:
    mappings become read-only proxies and lists tuples. Anything else is a problem."""
    budget = [_MAX_NODES]

    def walk(place: str, value: Any, depth: int, top: str) -> Any:
        top = place if depth <= 1 else top  # a loop is reported where it starts, not 32 deep
        budget[0] -= 1
        if budget[0] == -1 or depth > _MAX_DEPTH:
            p.add(top, "is too large or nested too deeply (or refers to itself)")
        if budget[0] < 0 or depth > _MAX_DEPTH:
            return None
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int | float):
            return number(p, place, value)
        if isinstance(value, Mapping):
            for key in value:
                if not isinstance(key, str):
                    p.add(place, f"keys must be text (got {describe(key)})")
            return MappingProxyType(
                {k: walk(at(place, k), v, depth + 1, top) for k, v in value.items()}
            )
        if isinstance(value, list | tuple):
            return tuple(walk(at(place, i), v, depth + 1, top) for i, v in enumerate(value))
        p.add(place, f"must be plain data: text, numbers, lists, mappings (got {describe(value)})")
        return None

    return walk(place, value, 0, place)


def thaw(value: Any) -> Any:
    """The inverse of :func:`freeze`: dicts and lists again, ready for JSON."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value
