"""Rails-style bracketed form fields, as Astria's curl examples send them.

`tune[title]=x`, `tune[images][]=@a.jpg`, `tune[prompts_attributes][][text]=...` become nested
dicts and lists: `{"tune": {"title": "x", "images": [...], "prompts_attributes": [{"text": ...}]}}`.
A `[]` followed by a key appends a new element when the last element already has that key, which
is how Rack groups repeated `a[][k]=1&a[][j]=2&a[][k]=3` into `[{k:1, j:2}, {k:3}]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from studio.errors import InvalidInput

_PART = re.compile(r"\[([^\[\]]*)\]")


def split_key(key: str) -> list[str]:
    """`tune[images][]` -> ['tune', 'images', '']; raises InvalidInput for malformed keys."""
    head, bracket, rest = key.partition("[")
    if not head:
        raise InvalidInput(f"form field {key!r} has no name before its brackets", field=key)
    if not bracket:
        return [head]
    rest = "[" + rest
    parts = _PART.findall(rest)
    if "".join(f"[{p}]" for p in parts) != rest:
        raise InvalidInput(f"form field {key!r} has unbalanced brackets", field=key)
    return [head, *parts]


def nest(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Fold (key, value) pairs in order into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in items:
        parts = split_key(key)
        _assign(root, parts, value, key)
    return root


def _assign(container: dict[str, Any], parts: list[str], value: Any, key: str) -> None:
    name, rest = parts[0], parts[1:]
    if not rest:
        container[name] = value
        return
    if rest[0] == "":
        items = container.setdefault(name, [])
        if not isinstance(items, list):
            raise InvalidInput(f"form field {key!r} mixes a list with a single value", field=key)
        tail = rest[1:]
        if not tail:
            items.append(value)
            return
        if not items or not isinstance(items[-1], dict) or tail[0] in items[-1]:
            items.append({})
        _assign(items[-1], tail, value, key)
        return
    child = container.setdefault(name, {})
    if not isinstance(child, dict):
        raise InvalidInput(f"form field {key!r} mixes an object with a single value", field=key)
    _assign(child, rest, value, key)
