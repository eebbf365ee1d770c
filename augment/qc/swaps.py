"""Meaning changes made by rules on top of WRITTEN faithful rewrites, for the cross-encoder's
training: two roles or names swapped ("the tenant asks the landlord" -> "the landlord asks the
tenant"), or a request widened from one thing to every thing ("this function" -> "every
function").

Why: on the held-out instruction sets most of the meaning changes that still got through were
role swaps and widened scope in freely reworded text. The written pairs hold a few hundred of
each; the generator's are not reworded. A swap applied to a writer's faithful rewrite keeps all
of the writer's rewording, so the only difference from the faithful pair is the swap.

Rules, not a parser (no tagger ships offline): a role is a word of `ROLES` (singular or plural),
a name a capitalised word inside a sentence; both must occur in the original too. Two words
joined by "and", "or", "vs" ... or in one list are not swapped ("compare Python and Go" means the same either
way round).

Tried on 2026-12-03 and not shipped (`train_judge --cross --cross-swaps roles [scope]`): the
cross-encoder ranked fold 0 worse (averaged AUC 0.920-0.921 against 0.936) and, at equal
recall, let through more meaning changes on three of the four held-out sets with roles alone
(0.013 more on average) and 0.006 fewer with scope too, fresh3 worse: within noise, below the
bar set beforehand. Swaps made by rules read as swaps made by rules (odd phrases, every word
kept); the writers' role swaps are reworded.
"""

from __future__ import annotations

import random
import re
from typing import Sequence

from .words import _NOT_NAMES

#: Nouns naming a party to a request. Any two of them in one text are swapped.
ROLES = """teacher student parent child kid daughter son mother father wife husband partner
landlord tenant buyer seller customer supplier vendor client agency employer employee manager
boss team colleague coworker doctor patient advisor interviewer candidate applicant lender
borrower host guest coach player mentor mentee author reader sender recipient user admin
developer designer driver passenger company neighbour neighbor friend brother sister sibling
owner renter contractor homeowner volunteer donor nonprofit school university reviewer editor
writer audience speaker listener investor founder board staff agent caller server
frontend backend service app library""".split()
_PLURAL = {"child": "children", "wife": "wives", "staff": "staff", "library": "libraries",
           "company": "companies", "agency": "agencies", "university": "universities",
           "audience": "audiences", "board": "boards"}
_ROLE_FORMS = {}
for _r in ROLES:
    _ROLE_FORMS[_r] = _r
    _ROLE_FORMS[_PLURAL.get(_r, _r + "s")] = _r
_WORD = re.compile(r"[A-Za-z][\w'-]*")
_JOINED = re.compile(r"^[\s,&/]*(?:(?:and|or|vs\.?|versus|with|nor)\b[\s,&/]*)*$", re.I)
#: Nouns a request can be narrowed to ("the opening paragraph", "this function").
SCOPE_NOUNS = set("""function paragraph page section file chapter method class table slide
email sentence line component route endpoint query column test office team room item question
step account product post customer student employee section module script sheet tab field form
screen shift day week client user branch store report meeting""".split())
_SCOPE = re.compile(r"\b(?:just |only )?(?:the|this|that|my|our) ((?:[a-z][\w-]* )?)("
                    + "|".join(sorted(SCOPE_NOUNS)) + r")\b(?: only| alone| specifically)?")


def _sentence_start(text: str, i: int) -> bool:
    before = text[:i].rstrip()
    return not before or before[-1] in ".!?:;\n\"'(-"


def _in_longer_name(text: str, m: re.Match) -> bool:
    """Part of a name of several words ("Harbor Dental", "Apple Pay"): swapping one word of
    it makes nonsense, not a role swap."""
    before = re.search(r"([A-Za-z][\w'-]*)\s+$", text[:m.start()])
    after = re.match(r"\s+([A-Za-z][\w'-]*)", text[m.end():])
    return any(x and x.group(1)[0].isupper() and x.group(1) not in _NOT_NAMES
               for x in (before, after))


def _roles(text: str) -> dict[str, list[re.Match]]:
    out: dict[str, list[re.Match]] = {}
    for m in _WORD.finditer(text):
        lemma = _ROLE_FORMS.get(m.group().lower())
        if lemma:
            out.setdefault(lemma, []).append(m)
    return out


def _names(text: str) -> dict[str, list[re.Match]]:
    out: dict[str, list[re.Match]] = {}
    for m in _WORD.finditer(text):
        w = m.group()
        if (w[0].isupper() and w not in _NOT_NAMES and not w.isupper()
                and not _sentence_start(text, m.start()) and not _in_longer_name(text, m)):
            out.setdefault(w, []).append(m)
    return out


def _form(word: str, like: str, lemma_of_like: str) -> str:
    """`word` (a lemma) in the number and case of `like`."""
    plural = like.lower() != lemma_of_like and like.lower() == _PLURAL.get(
        lemma_of_like, lemma_of_like + "s")
    out = _PLURAL.get(word, word + "s") if plural else word
    return out[0].upper() + out[1:] if like[0].isupper() else out


def swap(original: str, candidate: str, rng: random.Random) -> str | None:
    """The candidate with two of its roles or names exchanged everywhere, or None."""
    options = []
    for find in (_roles, _names):
        found, in_original, is_role = find(candidate), find(original), find is _roles
        shared = [k for k in found if k in in_original]
        for i, a in enumerate(shared):
            for b in shared[i + 1:]:
                options.append((a, b, found, is_role))
    rng.shuffle(options)
    for a, b, found, is_role in options:
        ma, mb = found[a][0], found[b][0]
        lo, hi = sorted((ma, mb), key=lambda m: m.start())
        between = candidate[lo.end():hi.start()]
        if _JOINED.match(re.sub(r"\b[A-Z][\w'-]*", "", between)):
            continue  # "A and B", "A, B and C": a list reads the same in any order
        spans = sorted([(m, b) for m in found[a]] + [(m, a) for m in found[b]],
                       key=lambda x: x[0].start())
        out, pos = [], 0
        for m, other in spans:
            own = a if other == b else b
            new = _form(other, m.group(), own) if is_role else other
            out += [candidate[pos:m.start()], new]
            pos = m.end()
        text = "".join(out) + candidate[pos:]
        if text != candidate:
            return text
    return None


def widen(original: str, candidate: str, rng: random.Random) -> str | None:
    """The candidate asking about every one of something the original narrows to one of, or
    None: "the opening paragraph" -> "every paragraph"."""
    hits = [m for m in _SCOPE.finditer(candidate)
            if re.search(rf"\b{m.group(2)}\b", original, re.I)]
    if not hits:
        return None
    m = rng.choice(hits)
    new = f"every {m.group(2)}"
    return candidate[:m.start()] + new + candidate[m.end():]


KINDS = {"roles": ("flip_perspective", swap), "scope": ("change_scope", widen)}


def rows(pairs: Sequence[dict], kinds: Sequence[str], seed: int) -> list[dict]:
    """One changed pair per faithful written pair and kind where the rule applies:
    {"original", "candidate", "label": 1, "kind"}."""
    rng = random.Random(seed)
    out = []
    for r in pairs:
        if r["label"] != 0:
            continue
        for k in kinds:
            label_kind, rule = KINDS[k]
            cand = rule(r["original"], r["candidate"], rng)  # None, or a changed text
            if cand:
                out.append({"original": r["original"], "candidate": cand, "label": 1,
                            "kind": label_kind})
    return out
