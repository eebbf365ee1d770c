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
    """The JSON array in `reply` (plain, prose-wrapped, inside an object, or fenced).

    Order matters: the whole reply first, then arrays at its top level, and fenced blocks only
    when both fail. A paraphrase of a coding question carries the question's code block inside
    its JSON strings; looking into fences first took that code's `[1, 2]` (or, through
    `_repair`, a Python list of names) for the answer. A list found inside the reply counts
    only if it holds texts, and nothing is ever taken from inside a string.

    Raises CandidateError("no JSON array in reply: '...'") when there is none.
    """
    text = reply.strip()
    whole = _loads(text)
    if whole is not _MISSING:
        got = _as_list(whole)
        if got is not None:  # the model's own answer: clean_items reports what is wrong in it
            return [_text_of(x) for x in got]
    spans = _string_spans(text)
    found = _scan(text, spans)
    if found is None:
        for m in _FENCE.finditer(text):
            if not _inside(m.start(), spans):
                chunk = m.group(1)
                found = _scan(chunk, _string_spans(chunk))
                if found is not None:
                    break
    if found is None:
        raise CandidateError(f"no JSON array in reply: {snippet(reply)!r}")
    return found


def _string_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the string literals from the first bracket on. Prose before it may hold
    stray quotes; after it, a bracket inside a string is part of a text (a code block's list),
    even when the JSON around it is broken and cannot be parsed."""
    firsts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    if not firsts:
        return []
    spans, quote, begin, i = [], None, 0, min(firsts)
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                spans.append((begin, i))
                quote = None
        elif ch == '"' or (ch == "'" and not text[i - 1:i].isalnum()):  # not "don't"
            quote, begin = ch, i
        i += 1
    if quote:
        spans.append((begin, len(text)))  # a reply cut inside a string
    return spans


def _inside(pos: int, spans) -> bool:
    return any(a < pos <= b for a, b in spans)


def _scan(text: str, spans):
    """The first array of texts at the top level of `text`: a value that parses but holds no
    texts is skipped whole, so the brackets nested in it are never tried on their own."""
    decoder = json.JSONDecoder()
    skip_to = 0
    for i, ch in enumerate(text):
        if ch not in "[{" or i < skip_to or _inside(i, spans):
            continue
        try:
            value, skip_to = decoder.raw_decode(text, i)
        except ValueError:
            value = _repair(text, i)
            if value is _MISSING:
                continue
        got = _as_list(value)
        if got is not None and _holds_texts(got):
            return [_text_of(x) for x in got]
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


# Fields a model puts a rewrite in when it answers a list of objects instead of strings.
_TEXT_KEYS = ("text", "paraphrase", "rewrite", "rewritten", "variant", "content", "translation")


def _text_of(item):
    """An object item's text field, else the item unchanged (clean_items judges it)."""
    if isinstance(item, dict):
        for key in _TEXT_KEYS:
            if isinstance(item.get(key), str):
                return item[key]
    return item


def _holds_texts(items: list) -> bool:
    return any(isinstance(_text_of(x), str) for x in items)


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
