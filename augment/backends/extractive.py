"""Offline output variants of a response: a brief lead and a bulleted restructuring.

Extractive on purpose: it cannot invent a fact, which is the risk an LLM summariser brings, and
it is deterministic and free. The price is that it only re-cuts what is there: a brief is the
leading sentences that fit the word budget (never a cut sentence, unless the first sentence
alone is over budget, and then a cut at a clause boundary, flagged in meta), and bullets are
one sentence, or one item of an enumerated list, per line.
"""

from __future__ import annotations

import re

from ..errors import CandidateError

_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_LIST_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_CLAUSE_END = re.compile(r"[,;:]|\s[-–—]\s")
# "You need three things: flour, sugar, and eggs." -> intro + items
_ENUMERATION = re.compile(r"^(?P<intro>[^:]{3,}):\s+(?P<items>[^:]+?)[.!]?$")


def words(text: str) -> int:
    return len(text.split())


def sentences(text: str) -> list[str]:
    """Sentence units: list lines stay whole, paragraphs are split at sentence ends."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if _LIST_LINE.match(line):
            out.append(_LIST_LINE.sub("", line).strip())
            continue
        out.extend(s.strip() for s in _SENTENCE.split(line) if s.strip())
    return out


def _check(text: str) -> None:
    if "```" in text or re.search(r"^\s{4,}\S", text, re.M):
        raise CandidateError("response contains code; extractive outputs leave it alone")
    if not text.strip():
        raise CandidateError("empty response")


def brief(text: str, max_words: int) -> tuple[str, dict]:
    """Leading sentences within `max_words`. Returns (brief, meta)."""
    _check(text)
    sents = sentences(text)
    total = words(text)
    if total <= max_words:
        raise CandidateError(f"response already has {total} <= {max_words} words; a brief "
                             "would repeat it")
    kept, used = [], 0
    for s in sents:
        if used + words(s) > max_words:
            break
        kept.append(s)
        used += words(s)
    if kept:
        return " ".join(kept), {"sentences_kept": len(kept), "sentences_total": len(sents),
                                "truncated": False}
    # The first sentence alone is over budget: cut at the last clause boundary that fits.
    first = sents[0]
    cut = None
    for m in _CLAUSE_END.finditer(first):
        if words(first[:m.start()]) <= max_words and words(first[:m.start()]) >= 3:
            cut = m.start()
    if cut is None:
        raise CandidateError(f"first sentence has {words(first)} words and no clause boundary "
                             f"within {max_words}; cannot shorten without cutting mid-clause")
    out = first[:cut].rstrip() + "."
    return out, {"sentences_kept": 0, "sentences_total": len(sents), "truncated": True,
                 "truncated_at": "clause boundary"}


def _enumeration(sentence: str) -> tuple[str, list[str]] | None:
    m = _ENUMERATION.match(sentence)
    if not m:
        return None
    parts = [p.strip() for p in re.split(r",\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+",
                                         m.group("items")) if p.strip()]
    if len(parts) < 2:
        return None
    return m.group("intro").strip(), parts


def bullets(text: str) -> tuple[str, dict]:
    """One '- ' line per sentence; an enumeration becomes an intro line with nested items."""
    _check(text)
    nonempty = [ln for ln in text.splitlines() if ln.strip()]
    if len(nonempty) > 1 and all(_LIST_LINE.match(ln) for ln in nonempty):
        raise CandidateError("response is already a list")
    lines = []
    sents = sentences(text)
    for s in sents:
        enum = _enumeration(s)
        if enum:
            intro, items = enum
            lines.append(f"- {intro}:")
            lines.extend(f"  - {item}" for item in items)
        else:
            lines.append(f"- {s}")
    if len(lines) < 2:
        raise CandidateError("response is one sentence without an enumeration; nothing to "
                             "restructure into bullets")
    out = "\n".join(lines)
    return out, {"bullets": len(lines), "sentences_total": len(sents)}


class ExtractiveBackend:
    """Output-variant backend protocol: name, model, brief(text, max_words), bullets(text)."""

    name = "extractive"
    model = ""

    def brief(self, text: str, max_words: int) -> tuple[str, dict]:
        return brief(text, max_words)

    def bullets(self, text: str) -> tuple[str, dict]:
        return bullets(text)
