"""Pull a list of strings out of an LLM reply, and say exactly what was wrong with it.

Why not `json.loads(reply)`: models wrap arrays in code fences, put a sentence before or after
them, wrap them in an object, add a trailing comma, or answer the text instead of rewriting it.
We accept the shapes that still carry a clean array, repair nothing else, and report every
dropped item in `problems`, so a weak backend shows up in the build report instead of hiding.
"""

from __future__ import annotations

import ast
import json
import re

from ..errors import CandidateError

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([\]}])")
# Keys a model tends to use when it wraps the array in an object.
_LIST_KEYS = ("paraphrases", "rewrites", "variants", "items", "results", "texts", "output",
              "outputs", "answers", "translations")


def snippet(text: str, limit: int = 80) -> str:
    """A one-line excerpt for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def normalise(text: str) -> str:
    """Comparison form: case- and whitespace-insensitive."""
    return " ".join(text.casefold().split())


def find_json_list(reply: str) -> list:
    """The first JSON array in `reply` (plain, fenced, prose-wrapped, or inside an object).

    Raises CandidateError("no JSON array in reply: '...'") when there is none.
    """
    text = reply.strip()
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for chunk in candidates:
        found = _scan(chunk)
        if found is not None:
            return found
    raise CandidateError(f"no JSON array in reply: {snippet(reply)!r}")


def _scan(text: str):
    whole = _loads(text.strip())
    if whole is not _MISSING:
        got = _as_list(whole)
        if got is not None:
            return got
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch not in "[{":
            continue
        try:
            value, _ = decoder.raw_decode(text, i)
        except ValueError:
            value = _repair(text, i)
            if value is _MISSING:
                continue
        got = _as_list(value)
        if got is not None:
            return got
    return None


_MISSING = object()


def _loads(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return _MISSING


def _repair(text: str, start: int):
    """Trailing commas and Python-style single quotes: the two slips small models make."""
    close = "]" if text[start] == "[" else "}"
    end = text.rfind(close)
    if end <= start:
        return _MISSING
    chunk = _TRAILING_COMMA.sub(r"\1", text[start:end + 1])
    value = _loads(chunk)
    if value is not _MISSING:
        return value
    try:
        return ast.literal_eval(chunk)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return _MISSING


def _as_list(value):
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for key in _LIST_KEYS:
            if isinstance(value.get(key), list):
                return value[key]
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    return None


def clean_items(items: list, n: int, source: str) -> tuple[list[str], list[str]]:
    """Validate items against the request: strings, non-empty, distinct, not the source.

    Returns (usable items, at most `n`; problems). A wrong count is tolerated while at least one
    usable item remains; nothing usable raises CandidateError naming every reason.
    """
    problems: list[str] = []
    dropped = {"non-string": 0, "empty": 0, "duplicate": 0, "identical to the source": 0}
    seen = {normalise(source)}
    src = normalise(source)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            dropped["non-string"] += 1
            continue
        item = item.strip()
        if not item:
            dropped["empty"] += 1
            continue
        key = normalise(item)
        if key == src:
            dropped["identical to the source"] += 1
            continue
        if key in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(key)
        out.append(item)
    for why, count in dropped.items():
        if count:
            problems.append(f"dropped {count} {why} item{'s' if count > 1 else ''}")
    if not out:
        detail = "; ".join(problems) or "empty array"
        raise CandidateError(f"no usable item in the reply ({detail})")
    if len(out) != n:
        problems.append(f"asked {n}, got {len(out)}" + (f"; kept {n}" if len(out) > n else ""))
        out = out[:n]
    return out, problems


def parse_string_list(reply: str, n: int, source: str) -> tuple[list[str], list[str]]:
    """`find_json_list` then `clean_items`: the whole contract for list-of-strings replies."""
    return clean_items(find_json_list(reply), n, source)
