"""Cheap text features for the rules: computed once per distinct text, no model calls."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .words import (
    _ABBREVIATIONS, _ANTONYM_PAIRS, _BULLET, _CODE, _CURRENCY_WORDS, _DEONTIC, _EMAIL, _INJECTION,
    _LEADING_CLAUSE, _LIST_OR_CODE, _NEGATION, _NEITHER_NOR, _NOT_NEGATION, _ORDINAL_DIGITS,
    _ORDINALS, _PLACEHOLDER, _PREFIX_NEGATION, _REQUEST_START, _SCALES, _SENT_SPLIT, _STOPWORDS,
    _TIME, _TITLES, _TOKEN, _UNIT_WORDS, _UNITS, _UNITS_IGNORED, _URL, _WANTS, _WORD)

def _forms(spec: str) -> frozenset[str]:
    """Regular English inflections of each base word in ``spec`` (``a|b|c``)."""
    out: set[str] = set()
    for base in spec.split("|"):
        out.add(base)
        if " " in base or len(base) < 3:
            continue
        stem_e = base[:-1] if base.endswith("e") else base
        out.update({base + "s", base + "es", stem_e + "ed", stem_e + "ing", base + "d"})
        if base.endswith("y") and base[-2] not in "aeiou":
            out.update({base[:-1] + "ies", base[:-1] + "ied"})
        if re.search(r"[^aeiou][aeiou][bdgmnpt]$", base):  # stop -> stopped
            out.update({base + base[-1] + "ed", base + base[-1] + "ing"})
    return frozenset(out)


_ANTONYMS = [(_forms(a), _forms(b), a.split("|")[0], b.split("|")[0]) for a, b in _ANTONYM_PAIRS]


@dataclass
class _Features:
    """Everything the rules need from one text, computed once per distinct text."""

    text: str
    words: list[str]
    lower_words: list[str]
    word_set: frozenset[str]
    stems: frozenset[str]
    full_stems: frozenset[str]
    content_stems: frozenset[str]
    numbers: frozenset[str]
    currencies: frozenset[str]
    units: frozenset[str]
    exact: dict[str, frozenset[str]]
    entities: frozenset[str]
    entity_words: frozenset[str]
    negations: int
    is_request: bool
    sentences: int
    has_list_or_code: bool
    bullets: int
    injection: bool


def _full_stem(w: str) -> str:
    """Suffix-stripped word (changing/changed -> chang; connection stays)."""
    for suf in ("ing", "ed", "es", "s"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            return w[: -len(suf)]
    return w


def _stem(w: str) -> str:
    """Crude stem shared by inflections (cancelled/cancel, charged/charge)."""
    w = w.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    for suf in ("ing", "ed", "es", "s", "ly"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            w = w[: -len(suf)]
            break
    return w[:5]


def _fmt_number(v: float) -> str:
    return f"{v:.6g}" if v != int(v) else str(int(v))


def _numbers(tokens: list[str]) -> tuple[set[str], set[str], set[str]]:
    """Normalised numeric values, currency codes and counted units in a token list.

    ``1,000`` and ``1000`` and ``one thousand`` all become ``1000``;
    ``$12 million`` becomes ``12000000`` (+ currency ``USD``); ``10 years``
    records the unit ``time:year`` so that ``10 months`` does not pass.
    """
    values: list[float | str] = []
    currencies: set[str] = set()
    units: set[str] = set()
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        low = tok.lower()
        if low in _CURRENCY_WORDS:
            currencies.add(_CURRENCY_WORDS[low])
        val: float | None = None
        if tok[0].isdigit():
            raw = tok.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", tok) else tok
            try:
                val = float(raw.replace(",", "."))
            except ValueError:
                val = None
        elif "-" not in low and low in _UNITS and low not in _UNITS_IGNORED:
            val = float(_UNITS[low])
        elif low in _ORDINALS:
            values.append(f"{_ORDINALS[low]}th")
        elif _ORDINAL_DIGITS.match(low):
            values.append(f"{int(_ORDINAL_DIGITS.match(low).group(1))}th")
        if val is not None:
            # "twenty five" / "twenty-five" (hyphen split by the tokenizer)
            j = i + 1
            if val >= 20 and val % 10 == 0 and j + 1 < n and tokens[j] == "-" and tokens[j + 1].lower() in _UNITS:
                val += _UNITS[tokens[j + 1].lower()]
                j += 2
            if j < n and tokens[j].lower() in _SCALES:
                val *= _SCALES[tokens[j].lower()]
                j += 1
            values.append(val)
            k = j + 1 if j < n and tokens[j] == "-" else j
            if k < n and tokens[k] in _UNIT_WORDS:
                units.add(_UNIT_WORDS[tokens[k]])
            i = j
            continue
        if low in ("hundreds", "thousands", "millions", "billions"):
            values.append(low)
        i += 1
    return {v if isinstance(v, str) else _fmt_number(v) for v in values}, currencies, units


def _sentence_starts(tokens: list[str]) -> set[int]:
    """Indexes of tokens that open a sentence (their capital letter says nothing)."""
    starts, expect = set(), True
    for i, t in enumerate(tokens):
        if t[0].isalnum():
            if expect:
                starts.add(i)
            expect = False
        elif t in ".!?:;•*\"“(" and not (t == "." and i and tokens[i - 1].lower() in _ABBREVIATIONS):
            expect = True
    return starts


def _bare_name(token: str) -> str:
    """A name without possessive, dots or apostrophes: O'Neill's == ONeill, U.S. == US."""
    return re.sub(r"['’]s$", "", token).replace(".", "").replace("'", "").replace("’", "")


def _entities(tokens: list[str]) -> set[str]:
    """Capitalised non-initial tokens, acronyms and camel-case names, lowercased."""
    starts = _sentence_starts(tokens)
    out = set()
    for i, t in enumerate(tokens):
        if not t[0].isalpha() or t in ("I", "I'm", "I'd", "I've", "I'll", "OK"):
            continue
        core = _bare_name(t)
        if len(core) < 2 or core.lower() in _TITLES:
            continue
        acronym = len(core) >= 2 and core.isupper()
        camel = not core[0].isupper() and any(c.isupper() for c in core[1:])  # iPhone, eBay
        cap = core[0].isupper() and i not in starts
        if acronym or camel or cap:
            out.add(core.lower())
    return out


def _is_request(text: str, lower_words: list[str]) -> bool:
    """Does the text ask for something (question, imperative, first-person need)?"""
    if "?" in text or "please" in lower_words or "kindly" in lower_words or _DEONTIC.search(text):
        return True
    body = _LEADING_CLAUSE.sub("", text.strip(), count=1)
    m = _WORD.search(body)
    return bool(_WANTS.match(body)) or (
        bool(m) and m.group(0).lower().replace("’", "'") in _REQUEST_START)


def _features(text: str) -> _Features:
    masked = text
    exact: dict[str, frozenset[str]] = {}
    for name, rx in (("code span", _CODE), ("URL", _URL), ("e-mail", _EMAIL),
                     ("placeholder", _PLACEHOLDER), ("time", _TIME)):
        found = rx.findall(masked)
        exact[name] = frozenset(f.rstrip(".,;:!?)") if name == "URL" else f for f in found)
        masked = rx.sub(" ", masked)
    exact["time"] = frozenset(t.lstrip("0") for t in exact["time"])
    tokens = _TOKEN.findall(masked)
    numbers, currencies, units = _numbers(tokens)
    words = _WORD.findall(text)
    lower = [w.lower().replace("’", "'") for w in words]
    stems = frozenset(_stem(w) for w in lower)
    content = frozenset(_stem(w) for w in lower if w not in _STOPWORDS and len(w) > 2)
    neg_text = _NOT_NEGATION.sub(" ", text)
    neg = len(_NEGATION.findall(neg_text)) - (1 if _NEITHER_NOR.search(neg_text) else 0)
    return _Features(
        text=text, words=words, lower_words=lower, word_set=frozenset(lower), stems=stems,
        full_stems=frozenset(_full_stem(w) for w in lower),
        content_stems=content, numbers=frozenset(numbers), currencies=frozenset(currencies),
        units=frozenset(units),
        exact=exact, entities=frozenset(_entities(tokens)), negations=neg,
        entity_words=frozenset(_bare_name(t).lower() for t in tokens if t[0].isalpha()),
        is_request=_is_request(text, lower),
        sentences=len([s for s in _SENT_SPLIT.split(text.strip()) if _WORD.search(s)]),
        has_list_or_code=bool(_LIST_OR_CODE.search(text)), bullets=len(_BULLET.findall(text)),
        injection=bool(_INJECTION.search(text)),
    )


def _has_phrase(f: _Features, forms: Iterable[str]) -> str | None:
    low = " " + " ".join(f.lower_words) + " "
    for w in forms:
        if (" " in w and f" {w} " in low) or w in f.word_set:
            return w
    return None


def _prefix_flips(a: _Features, b: _Features) -> int:
    """Words of ``b`` that are un-/dis-/in- negations of a word in ``a`` (locked -> unlocked,
    changing -> unchanged)."""
    n = 0
    for w in b.word_set - a.word_set:
        for p in _PREFIX_NEGATION:
            if w.startswith(p) and len(w) - len(p) >= 5 and _full_stem(w[len(p):]) in a.full_stems:
                n += 1
                break
    return n


# --------------------------------------------------------------------------
