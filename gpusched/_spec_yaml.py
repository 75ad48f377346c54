"""Reading experiment files: YAML (JSON is YAML too), with YAML 1.2's plain rules.

PyYAML implements YAML 1.1, whose surprises bite experiment files: ``1e-4`` is text (no dot),
``yes``/``no``/``on``/``off`` are booleans (``values: [on, off]`` loses its text), ``010`` is eight,
``1:30`` is ninety, dates become ``datetime``, and a key given twice silently keeps the last.
:data:`Loader` reads numbers, booleans and dates as YAML 1.2's core schema does (and as JSON
does), and refuses a key given twice.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from typing import Any

import yaml
import yaml.scanner

from gpusched.errors import Problem, SpecError

__all__ = ["Loader", "load_text", "parse_file_text"]

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core-schema scalars and no duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Refuse a key given twice in one mapping (keys merged in with ``<<`` may be redefined)."""
        first: dict[tuple[str, str], yaml.Mark] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
                continue
            key = (key_node.tag, key_node.value)
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None, None,
                    f"duplicate key {key_node.value!r} (first on line {first[key].line + 1})",
                    key_node.start_mark,
                )  # fmt: skip
            first[key] = key_node.start_mark
        return super().construct_mapping(node, deep)

    def construct_document(self, node: yaml.Node) -> Any:
        """The file's data, with a bare ``workdir: ~`` read as the text ``~`` (the submitter's
        home, as a shell reads it) rather than YAML's null (which would mean the default, the
        file's folder)."""
        if isinstance(node, yaml.MappingNode):
            node.value = [(key, _home_for_workdir(key, value)) for key, value in node.value]
        return super().construct_document(node)


def _home_for_workdir(key: yaml.Node, value: yaml.Node) -> yaml.Node:
    """``value``, or a text ``~`` when it is the plain ``~`` of the top level's ``workdir``."""
    if (isinstance(key, yaml.ScalarNode) and key.tag == _STR and key.value == "workdir"
            and isinstance(value, yaml.ScalarNode) and value.tag == _NULL
            and value.value == "~" and value.style is None):
        return yaml.ScalarNode(_STR, "~", value.start_mark, value.end_mark)
    return value


Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                             list("tTfF"))  # fmt: skip
# Ints first: the float pattern matches "1" too, and the first match wins.
Loader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                             list("-+0123456789"))  # fmt: skip
Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+.0123456789"),
)  # fmt: skip


def _scalar_error(node: yaml.Node, what: str) -> yaml.constructor.ConstructorError:
    return yaml.constructor.ConstructorError(
        None, None, f"not {what}: {str(node.value)[:40]!r}", node.start_mark
    )


def _construct_bool(loader: Loader, node: yaml.ScalarNode) -> bool:
    value = str(loader.construct_scalar(node)).lower()
    if value not in ("true", "false"):
        raise _scalar_error(node, "true or false")
    return value == "true"


def _construct_int(loader: Loader, node: yaml.ScalarNode) -> int:
    value = str(loader.construct_scalar(node))
    try:
        # Base 10 unless 0o/0x: YAML 1.2 has no leading-zero octal.
        return int(value, 0) if value[:2].lower() in ("0o", "0x") else int(value, 10)
    except ValueError:
        raise _scalar_error(node, "a whole number (or one too long)") from None


def _construct_float(loader: Loader, node: yaml.ScalarNode) -> float:
    value = str(loader.construct_scalar(node)).lower()
    specials = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}
    if value in specials:
        return specials[value]
    try:
        return float(value)
    except ValueError:
        raise _scalar_error(node, "a number") from None


Loader.add_constructor(_BOOL, _construct_bool)
Loader.add_constructor(_INT, _construct_int)
Loader.add_constructor(_FLOAT, _construct_float)

# Besides YAMLError, PyYAML's constructors let a few plain errors out for odd explicit tags
# (`!!timestamp x` → AttributeError); deep nesting overflows its recursive composer.
_PARSER_FAILURES = (ValueError, TypeError, AttributeError, KeyError, OverflowError, RecursionError)


def _where(exc: yaml.YAMLError) -> tuple[str, str]:
    """(place, message) for a YAML error: ``line 3, column 9`` and what is wrong there."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        context = f" ({exc.context})" if exc.context else ""
        return f"line {mark.line + 1}, column {mark.column + 1}", f"{exc.problem}{context}"
    return "", str(exc)


def load_text(text: str) -> Any:
    """YAML text → data; ValueError with a message (and line, column) when it is not YAML."""
    try:
        return yaml.load(text, Loader=Loader)  # Loader is a SafeLoader subclass
    except yaml.YAMLError as exc:
        place, message = _where(exc)
        raise ValueError(f"{place}: {message}" if place else message) from None
    except _PARSER_FAILURES as exc:
        raise ValueError(f"cannot be read ({type(exc).__name__}: {exc})"[:200]) from None


def parse_file_text(text: str, source: str) -> Any:
    """The data in an experiment file's ``text`` (``source`` names the file in errors);
    SpecError (with line and column) when there is none."""

    def fail(message: str, place: str = "") -> SpecError:
        return SpecError([Problem(place, message)], source)

    try:
        data = yaml.load(text, Loader=Loader)  # Loader is a SafeLoader subclass
    except yaml.YAMLError as exc:
        # Only where YAML's scanner balks (tabs): a duplicate key stays YAML's refusal.
        data = _json_or_none(text) if isinstance(exc, yaml.scanner.ScannerError) else None
        if data is None:
            place, message = _where(exc)
            raise fail(f"not valid YAML: {message}", place) from None
    except _PARSER_FAILURES as exc:
        raise fail(f"cannot be read as YAML ({type(exc).__name__}: {exc})"[:200]) from None
    else:
        # Nested as deep as the parser allows, the halves stay apart: refused below, by place.
        with contextlib.suppress(RecursionError):
            data = _join_surrogates(data)
    if data is None:
        raise fail("is empty: write the experiment's settings (see docs/experiment-file.md)")
    return data


def _json_or_none(text: str) -> Any:
    """``text`` as JSON when YAML refused it, else None. JSON is YAML, but for what YAML's
    scanner refuses: tabs as indentation (``jq --tab``, Go's MarshalIndent with a tab)."""
    if not text.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError):
        return None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a key given twice")  # refused as YAML refuses it
    return out


def _join_surrogates(data: Any, seen: dict[int, Any] | None = None) -> Any:
    """``data`` with each string's UTF-16 surrogate pairs joined: YAML reads JSON's
    ``"\\ud83d\\ude00"`` (Python's json.dump writes any character past U+FFFF so) as two lone
    halves, which no process can receive; joined, it is the one character the file means. A
    lone half stays, for the checks to refuse with its place.

    Each container is walked once (``seen``), and kept as it is when nothing in it changes:
    YAML aliases share one list many times over, which copies would multiply.
    """
    if isinstance(data, str):
        if not _SURROGATE.search(data):
            return data
        return re.sub("[\ud800-\udbff][\udc00-\udfff]",
                      lambda m: m.group().encode("utf-16", "surrogatepass").decode("utf-16"),
                      data)
    if not isinstance(data, list | dict):
        return data
    seen = {} if seen is None else seen
    if id(data) in seen:
        return seen[id(data)]
    seen[id(data)] = data  # a container that holds itself stays as it is
    if isinstance(data, list):
        items = [_join_surrogates(item, seen) for item in data]
        changed = any(a is not b for a, b in zip(items, data, strict=True))
        result: Any = items if changed else data
    else:
        pairs = [(_join_surrogates(k, seen), _join_surrogates(v, seen)) for k, v in data.items()]
        changed = any(k is not k0 or v is not v0
                      for (k, v), (k0, v0) in zip(pairs, data.items(), strict=True))
        result = dict(pairs) if changed else data
    seen[id(data)] = result
    return result


_SURROGATE = re.compile("[\ud800-\udfff]")
