"""The one boundary for text. Everything that enters (API bodies, forms, query strings, paths, imported rows and
files, project and run configs, gold answers, export filters) passes here before anything reaches the database.

``check_text`` refuses NUL (PostgreSQL's text and JSON cannot store it), lone surrogates (not text: they cannot
be encoded as UTF-8) and over-long strings; ``check`` walks a JSON value (keys too) with ``check_text`` and
refuses nesting deeper than ``MAX_DEPTH`` and non-finite numbers; ``loads`` parses JSON text into such a value.
Each raises ``Invalid`` naming the field (``payload.comment``, ``metadata.tags[2]``); the API answers it with a
400, an import names the line too.
"""
from __future__ import annotations

import json
import math
import re

from django.conf import settings

from .errors import Invalid

MAX_DEPTH = 64  # objects and lists inside one another
_BAD = re.compile("[\x00\ud800-\udfff]")


def check_text(value: str, field: str | None, *, max_chars: int | None = None) -> str:
    """``value`` if it holds no NUL and no lone surrogate and is at most ``max_chars`` long
    (``PS_MAX_TEXT_CHARS`` by default)."""
    limit = settings.PS_MAX_TEXT_CHARS if max_chars is None else max_chars
    if len(value) > limit:
        raise Invalid(f"is {len(value)} characters; the limit is {limit}", field=field)
    bad = _BAD.search(value)
    if bad is not None:
        if bad.group() == "\x00":
            raise Invalid(f"holds a NUL character (at {bad.start() + 1}), which cannot be stored", field=field)
        raise Invalid(f"holds a lone surrogate (\\u{ord(bad.group()):04x} at {bad.start() + 1}), which is not "
                      f"text", field=field)
    return value


def _join(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def check(value, field: str = "", *, max_chars: int | None = None, max_depth: int = MAX_DEPTH):
    """``value`` (a JSON value: dict, list, str, number, bool, None) once every string in it, keys included,
    passed ``check_text``, its nesting is at most ``max_depth`` and its numbers are finite. Walks without
    recursion, so any depth is refused cleanly. A bad key is named by the object that holds it (a name never
    carries the text it refuses); too deep a value by the innermost key above it (``payload.comment``)."""
    stack = [(value, field, 0, field)]  # value, where it is, its depth, the field a refusal of depth names
    while stack:
        item, path, depth, named = stack.pop()
        if isinstance(item, str):
            check_text(item, path or None, max_chars=max_chars)
        elif isinstance(item, (dict, list)):
            if depth >= max_depth:
                raise Invalid(f"is nested more than {max_depth} levels deep", field=named or None)
            is_dict = isinstance(item, dict)
            for key, inner in item.items() if is_dict else enumerate(item):
                if is_dict:
                    if not isinstance(key, str):
                        raise Invalid("has a key that is not a string", field=path or None)
                    _check_key(key, path, max_chars)
                where = _join(path, key)
                stack.append((inner, where, depth + 1, where if is_dict else named))
        elif isinstance(item, float) and not math.isfinite(item):
            raise Invalid("is not a finite number (NaN and Infinity are not JSON)", field=path or None)
    return value


def _check_key(key: str, path: str, max_chars: int | None) -> None:
    try:
        check_text(key, None, max_chars=max_chars)
    except Invalid as exc:
        raise Invalid(f"has a key that {exc.message}", field=path or None) from None


_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},:]')


def deep_field(text: str, field: str = "", *, max_depth: int = MAX_DEPTH) -> str:
    """Where JSON ``text`` nests past ``max_depth``, named as ``check`` names it (the innermost key above), found
    by a scan of its tokens: for text too deep for the parser to read at all."""
    stack: list[list] = []  # per open container: [path, key or index, is an object, expecting a key]
    named = [field]
    for token in _TOKENS.finditer(text):
        t = token.group()
        if t in "[{":
            if stack:
                parent = stack[-1]
                path = _join(parent[0], parent[1])
                named.append(path if parent[2] else named[-1])
            else:
                path = field
                named.append(field)
            if len(stack) >= max_depth:
                return named[-1]
            stack.append([path, 0, t == "{", t == "{"])
        elif t in "]}":
            if stack:
                stack.pop()
                named.pop()
        elif not stack:
            continue
        elif t == ",":
            top = stack[-1]
            if top[2]:
                top[3] = True
            else:
                top[1] += 1
        elif t == ":":
            stack[-1][3] = False
        elif stack[-1][2] and stack[-1][3]:  # a key
            try:
                key = json.loads(t)
                check_text(key, None)
            except (ValueError, Invalid):
                key = "?"
            stack[-1][1] = key
    return named[-1]


class JSONError(ValueError):
    """Text that is not JSON (or JSON nested past what a parser can follow)."""


def _refuse_constant(name):
    raise JSONError(f"{name} is not valid JSON")


def loads(text: str | bytes, field: str = "", *, max_chars: int | None = None):
    """JSON text parsed and checked (``check``). Raises JSONError when it is not JSON, Invalid when it is
    but holds what may not enter."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        raise Invalid(f"is nested more than {MAX_DEPTH} levels deep", field=deep_field(text, field) or None) from None
    except UnicodeDecodeError as exc:
        raise JSONError(f"not UTF-8 (byte {exc.start + 1})") from None
    except json.JSONDecodeError as exc:
        raise JSONError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise JSONError(str(exc)) from None
    return check(value, field, max_chars=max_chars)


def whole_number(text, *, max_digits: int = 18) -> int | None:
    """``text`` as a whole number if it is ASCII digits (surrounding spaces allowed), at most ``max_digits`` of
    them; None otherwise. ``str.isdigit`` alone also takes digits ``int`` refuses (superscripts: '²')."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not text or len(text) > max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def kind(value) -> str:
    """What a JSON value is, in words: "an object", "a list", "a string", "null"..."""
    return {dict: "an object", list: "a list", str: "a string", bool: "true or false", type(None): "null"}.get(
        type(value), "a number")
