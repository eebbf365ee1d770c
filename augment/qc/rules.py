"""The QC rules: each takes the features of an original and a candidate and returns reasons
(empty = no objection). Pure functions of (settings, features, similarity), so a rule can be
read, tested and changed alone; the checker only combines them per method.

Soft evidence (a dropped name, new content) only rejects below
``soft_evidence_max_sim``; hard evidence (a changed number, a flipped negation, a lost
placeholder) rejects at any similarity.  This keeps the checks conservative on news/caption
text, where true paraphrases often add or drop a clause.
"""

from __future__ import annotations

import difflib
import re

from .features import (_ANTONYMS, _PRIVATIVE_BASE, _Features, _bare_name,  # noqa: F401
                       _full_stem, _has_phrase, _prefix_flips, _same_task)
from .roles import reversed_relations
from .words import (
    _ANSWER_OPENER, _APOLOGY, _ASK, _ASK_SPLIT, _DEMONYMS, _FIRST_PERSON, _HERE_OPENER, _INJECTION_VERB,
    _NAME_HEADS, _NEGATION, _NUMBER_SAID, _ORDINAL_WORDS, _REFUSAL_ALTERNATIVE, _REFUSAL_DECLINE, _REFUSAL_REASON, _REQUEST_VERBS,
    _REWRITE_TALK, _SECOND_POSSESSIVE, _STOPWORDS, _TO_CLAUSE, _TOKEN, _UNIT_WORDS, _UNITS, _WORD)

#: Checks that read English word lists or patterns: off when `language` is not "en".
ENGLISH_ONLY = ("polarity", "entities", "content", "answer", "injection", "number words",
                "periods and measures", "refusal wording", "judge")


def norm(t: str) -> str:
    return " ".join(t.lower().split())


def sim_reason(sim: float, lo: float, hi: float) -> str:
    if sim <= lo:
        return f"similarity {sim:.2f} <= {lo:.2f} (meaning likely changed)"
    return f"similarity {sim:.2f} >= {hi:.2f} (near-duplicate)"


def _invariant_reasons(o: _Features, c: _Features, source_only: bool) -> list[str]:
    """Hard invariants.  ``source_only``: only things *added* by the candidate count
    (summaries may drop facts but must not invent them)."""
    reasons = []
    for name, vals in o.exact.items():
        if not source_only:
            for v in sorted(vals - c.exact[name]):
                reasons.append(f"{name} {v} missing")
        for v in sorted(c.exact[name] - vals):
            reasons.append(f"{name} {v} added (not in original)")
    # a number that is part of a duration the other text states in other words is not lost:
    # "30 minutes" -> "half an hour", "a week-long trip" -> "a seven-day trip"
    # "Compare A, B and C" -> "Compare these three": a count of the original's list items is not
    # a new number (a number the candidate lost still is); "2nd period" -> "second period".
    if not source_only:
        for v in sorted(o.numbers - c.numbers, key=str):
            if not (o.duration_of.get(v, frozenset()) & c.durations or _ordinal_word(v, c)
                    or _number_said(v, c) and v not in o.duration_of):
                reasons.append(f"number {v} missing")
    for v in sorted(c.numbers - o.numbers, key=str):
        if not (c.duration_of.get(v, frozenset()) & o.durations or _ordinal_word(v, o)
                or (v in o.list_sizes or _number_said(v, o)) and v not in c.duration_of
                and not _recounted(v, c, o)):
            reasons.append(f"number {v} added (not in original)")
    lost, new = o.units - c.units, c.units - o.units
    stated_o = set().union(*o.duration_of.values()) if o.duration_of else set()
    stated_c = set().union(*c.duration_of.values()) if c.duration_of else set()
    # the same time spans in other units ("7-day plan, 30 minutes a day" -> "one-week plan,
    # half an hour per day"): every span one text states with a number the other states too
    if o.durations == c.durations or (stated_o <= c.durations and stated_c <= o.durations
                                      and (stated_o or stated_c)):
        lost = {u for u in lost if not u.startswith("time:")}
        new = {u for u in new if not u.startswith("time:")}
    if lost and new and not source_only:
        reasons.append(f"unit changed {'/'.join(sorted(lost))} -> {'/'.join(sorted(new))}")
    if o.currencies and c.currencies and not (o.currencies & c.currencies):
        reasons.append(f"currency changed {'/'.join(sorted(o.currencies))} -> "
                       f"{'/'.join(sorted(c.currencies))}")
    return reasons


def _period_reasons(o: _Features, c: _Features) -> list[str]:
    """A period, weekday or unit of measure swapped for another of its kind while the numbers
    stay ("100 requests per minute" -> "... per hour", "Tuesdays" -> "Thursdays", "3,000 meters"
    -> "3,000 feet", "3:30 am" -> "half past three in the afternoon"); see `words._PERIOD`. A
    conversion changes a number and is not judged here. Weekdays and halves of the day need no
    equal numbers: they are not converted."""
    reasons = []
    for name, a, b, need_same_numbers in (("period", o.periods, c.periods, True),
                                          ("weekday", o.weekdays, c.weekdays, False),
                                          ("time of day", o.day_halves, c.day_halves, False),
                                          ("unit of measure", o.measures, c.measures, True)):
        lost, new = a - b, b - a
        if lost and new and (o.numbers == c.numbers or not need_same_numbers):
            reasons.append(f"{name} changed {'/'.join(sorted(lost))} -> {'/'.join(sorted(new))}")
    return reasons


def _recounted(v: str, c: _Features, o: _Features) -> bool:
    """Does the candidate count with ``v`` something the original counts with another number
    ("4 cups a day, down to 1" -> "four cups ... down to two cups")? Then ``v`` is a changed
    value, not a count of the original's list items nor its "a" said as a digit."""
    return any(v in nums and noun in o.counts for noun, nums in c.counts.items())


def _number_said(v: str, other: _Features) -> bool:
    """Does the other text state ``v`` another way: as an ordinal or cardinal of the same
    number ("December 24" -> "December 24th", "his 90th birthday" -> "turning 90"), or in words
    `_NUMBER_SAID` lists ("two eggs" -> "a couple of eggs", "a 1-hour lunch" -> "an hour",
    "zero downtime" -> "without downtime", "at noon" -> "at 12")?"""
    card = v[:-2] if v.endswith("th") and v[:-2].isdigit() else v
    if _NUMBER_SAID.get(card, frozenset()) & other.word_set:
        return True
    return card != v and card in other.numbers or card == v and f"{v}th" in other.numbers


def _ordinal_word(v: str, other: _Features) -> bool:
    """Does the other text spell ordinal ``v`` ("1th", "2th") as a word (`_ORDINAL_WORDS`)?"""
    return v in _ORDINAL_WORDS and _ORDINAL_WORDS[v] in other.word_set


def _polarity_reasons(o: _Features, c: _Features,
                      reworded: bool = True) -> tuple[list[str], list[str]]:
    """(hard, soft). A flip is hard evidence when a word the extra negators negate also stands
    in the other text ("include tests" -> "don't include tests") or the negated part was dropped
    with nothing in its place ("... without losing my number?" -> "...?"); otherwise the rewrite
    reworded the negated part too ("that doesn't mention the price" -> "leaving the price out"),
    and on written request rewrites such count mismatches were as often
    faithful as not (32 faithful, 38 changed), so in a request it is only soft evidence.
    ``reworded=False`` (back-translation) keeps every flip hard: a machine translation's stray
    "not" ("in my vault" -> "not my safe") is a garbled text, not a rewording."""
    reasons, soft = [], []
    flips_o, flips_c = _prefix_flips(c, o), _prefix_flips(o, c)
    po, pc = o.negations + flips_o, c.negations + flips_c
    # A flip is excused (never made) when the text with fewer negators has, and the other
    # lacks, a privative word standing for the missing negator ("without power" == "lost
    # power", "hates" == "can't stand"), or a keep-word for what the other forbids to change
    # or lose ("without losing X" == "keeping X"). A privative never counts as a negator by
    # itself: one reworded by an unlisted synonym ("losing" -> "behind") must not flip.
    fewer, other = (o, c) if po < pc else (c, o)
    kept = fewer.keeps - other.keeps and other.alters - fewer.alters
    # the words the extra negators negate
    extra = [w for w in other.negated if w not in fewer.negated]
    prefix_flips = flips_o + flips_c
    if (po % 2 != pc % 2 and not fewer.privatives - other.privatives and not kept
            and not (prefix_flips == 0 and _negation_absorbed(fewer, extra))):
        anchored = (prefix_flips or not all(extra) or any(w in fewer.stems for w in extra)
                    or not fewer.content_stems - other.content_stems)  # dropped, not reworded
        flip = f"negation flipped ({po} vs {pc} negators)"
        (reasons if anchored or not o.is_request or not reworded else soft).append(flip)
    for fa, fb, a, b in _ANTONYMS:
        for x, y, xa, yb in ((fa, fb, a, b), (fb, fa, b, a)):
            wo, wc = _has_phrase(o, x), _has_phrase(c, y)
            if wo and wc and not _has_phrase(o, y) and not _has_phrase(c, x):
                swap = f"antonym swap: {wo} -> {wc}"
                # In a reworded request an antonym about ANOTHER word is a rewording ("under
                # 100 words" -> "stays below 120 characters"... "less formal" -> "more
                # casual", "spun up" -> "locking down"): on 3,800 written request rewrites
                # such swaps were faithful twice as often as not (20 vs 10). Hard when the
                # swapped word keeps its neighbour ("less formal" -> "more formal").
                hard = not (o.is_request and reworded) or _antonym_anchored(o, c, wo, wc)
                (reasons if hard else soft).append(swap)
    return list(dict.fromkeys(reasons)), list(dict.fromkeys(soft))


def _neighbours(f: _Features, phrase: str) -> set[str]:
    """Stems of the nearest content word (3+ letters) before and after each use of ``phrase``."""
    words, parts = f.lower_words, phrase.split()
    out = set()
    for i in range(len(words) - len(parts) + 1):
        if words[i:i + len(parts)] != parts:
            continue
        for seq in (words[i + len(parts):], reversed(words[:i])):
            for w in seq:
                if len(w) >= 3 and w not in _STOPWORDS:
                    out.add(_full_stem(w))
                    break
    return out


def _antonym_anchored(o: _Features, c: _Features, wo: str, wc: str) -> bool:
    return bool(_neighbours(o, wo) & _neighbours(c, wc))


def _negation_absorbed(fewer: _Features, extra: list[str]) -> bool:
    """Did a rewrite fold the extra negation into one word? Every word the extra negators negate
    (`extra`) survives in the text without them, ``fewer``, only inside a longer negative word
    ("no children" -> "childless", "without stopping" -> "nonstop"; "not site" -> "website" is
    no such word). A real flip keeps the word itself ("include tests" -> "don't include
    tests"), and a dropped negated constraint ("without using the word 'sale'") loses it. A
    negator with no content word after it is never excused (nor, by the caller, prefix flips
    such as "unlocked")."""
    return bool(extra) and all(
        len(w) >= 4 and w not in fewer.stems
        and any(w in x and x != w and (x.startswith(("non", "un", "dis"))
                                       or x.endswith(("less", "free")))
                for x in fewer.lower_words)
        for w in extra)


def _mentions(f: _Features, entity: str) -> bool:
    """Is ``entity`` mentioned in ``f``, in any case, possibly abbreviated
    ("Mass" ~ "Massachusetts", "Fed" ~ "Federal")?"""
    if entity in f.word_set or entity in f.entity_words:
        return True
    if not f.word_set.isdisjoint(_DEMONYMS.get(entity, ())) or any(
            entity in _DEMONYMS.get(w, ()) for w in f.word_set):
        return True  # "US" == "American", "Ireland" == "Irish"
    if any(entity in names and not f.entity_words.isdisjoint(names)
           for names in _DEMONYMS.values()):
        return True  # one country's names: "the US" == "America", "the UK" == "Britain"
    return len(entity) >= 3 and any(
        len(w) >= 3 and (w.startswith(entity) or entity.startswith(w) or _same_root(w, entity))
        for w in f.entity_words)


def _same_root(a: str, b: str) -> bool:
    """Mexico/Mexican, Canada/Canadian: one root with a different ending. All but the last
    letter of the shorter word must be shared (and at least 5 letters), so Austria/Australia
    and Johnson/Johnston stay different names."""
    n = min(len(a), len(b))
    return n >= 6 and a[: n - 1] == b[: n - 1]


def _initials(o: _Features, acronym: str) -> set[str]:
    """Words of ``o`` that ``acronym`` abbreviates: "us" -> {"united", "states"} when "United
    States" is a name run of ``o``; "js" -> {"javascript"} (camel-case humps); "fdr" ->
    {"franklin", "d", "roosevelt"}."""
    out: set[str] = set()
    for run in o.name_runs:
        words = [w for w in run if w not in ("of", "the", "and", "van", "von", "de", "la")]
        if len(words) >= 2 and "".join(w[0] for w in words) == acronym:
            out.update(run)
    for w in o.words:
        humps = "".join(ch for i, ch in enumerate(w) if i == 0 or ch.isupper()).lower()
        if len(humps) >= 2 and humps == acronym:
            out.add(w.lower())
    # a term spelled out in lower case: "PTO" = "paid time off", "EV" = "electric vehicle" (two
    # letters only from two content words, or "US" would match "use something")
    low, k = o.lower_words, len(acronym)
    for i in range(len(low) - k + 1):
        run = low[i:i + k]
        if "".join(w[0] for w in run) == acronym and (
                k >= 3 or all(w not in _STOPWORDS and len(w) >= 4 for w in run)):
            out.update(run)
    return out


def _entity_reasons(o: _Features, c: _Features) -> tuple[list[str], list[str]]:
    """(hard, soft): a name replaced by another is hard; a name merely dropped is soft."""
    # a given name dropped from a full name whose surname stays ("Vincent van Gogh" -> "Van
    # Gogh") names the same person
    kept = {w for run in o.name_runs if _mentions(c, run[-1]) for w in run[:-1]}
    # an acronym of a name the other text spells out ("United States" -> "US") is that name
    for x, y in ((o, c), (c, o)):
        for e in y.entities:
            if 2 <= len(e) <= 5 and not _mentions(x, e):
                kept |= _initials(x, e)
    missing = sorted(e for e in o.entities
                     if not _mentions(c, e) and e not in kept and not _initials(c, e))
    added = sorted(e for e in c.entities if not _mentions(o, e) and not _initials(o, e))
    if missing and added:
        return [f"entity changed: {', '.join(missing)} -> {', '.join(added)}"], []
    soft = [f"entity {e} missing" for e in missing] + [f"entity {e} added" for e in added]
    return [], soft


def _content_reasons(o: _Features, c: _Features, cfg) -> list[str]:
    """Content dropped or added *without replacement*.

    A rewording swaps content words for others (synonyms), so it both drops
    and adds; only the net imbalance is evidence of lost or invented content.
    """
    dropped = len(o.content_stems - c.stems)
    added = len(c.content_stems - o.stems)
    out = []
    if o.content_stems and (dropped - added) / len(o.content_stems) >= cfg.content_drop_ratio:
        out.append(f"content dropped ({dropped - added} of {len(o.content_stems)} content words)")
    if c.content_stems and (added - dropped) / len(c.content_stems) >= cfg.content_add_ratio:
        out.append(f"content added ({added - dropped} of {len(c.content_stems)} content words)")
    return out


def _swapped_words(o: _Features, c: _Features) -> str | None:
    """``c`` is ``o`` with exactly two words exchanged ("Germany beat France" ->
    "France beat Germany", "from May 4 to May 6" -> "from May 6 to May 4"):
    roles or values changed although every word survived.  Symmetric
    coordination ("salt and pepper") is exempt."""
    a, b = o.lower_words, c.lower_words
    num_a, num_b = _TOKEN.findall(o.text), _TOKEN.findall(c.text)
    for x, y in ((a, b), (num_a, num_b)):
        if len(x) != len(y):
            continue
        diff = [i for i, (p, q) in enumerate(zip(x, y)) if p != q]
        if len(diff) == 2:
            i, j = diff
            if x[i] == y[j] and x[j] == y[i] and not (j == i + 2 and x[i + 1].lower() in ("and", "or", "&")):
                return f"{x[i]} <-> {x[j]}"
    return None


_IN_WORD_HYPHEN = re.compile(r"(?<=\w)-(?=\w)")
#: `_word_diff`: the original's words as written, both texts' words lowercased, the opcodes.
_WordDiff = tuple[list[str], list[str], list[str], list[tuple[str, int, int, int, int]]]


def _word_diff(o: _Features, c: _Features) -> _WordDiff:
    """The original's words as written, both texts' words lowercased, and the opcodes that turn
    one into the other; in-word hyphens are removed first ("key-board" and "keyboard" are one
    word). `_minimal_edit` and `_cut_only` read the same diff, computed once per pair."""
    cased, theirs = (_WORD.findall(_IN_WORD_HYPHEN.sub("", f.text)) for f in (o, c))
    a, b = ([w.lower().replace("’", "'") for w in words] for words in (cased, theirs))
    return cased, a, b, difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()


def _minimal_edit(diff: _WordDiff) -> str | None:
    """If the candidate is the original with one or two small spans changed (``diff``:
    `_word_diff`), describe the edit.

    Why: a true synonym swap in an otherwise identical sentence keeps the
    embedding very close (cosine > 0.9); when so small an edit moves it
    further, the changed words carry different meaning (cat -> dog,
    guitar -> violin, admin -> guest).
    """
    _, a, b, opcodes = diff
    if not a or not b:
        return None
    ops = [op for op in opcodes if op[0] != "equal"]
    # An edit of function words only ("answered" -> "have answered", "this is" -> "but it
    # is") carries no content; negators are judged by the polarity check, not here.
    ops = [op for op in ops if not _function_words_only(a[op[1]:op[2]] + b[op[3]:op[4]])]
    # Edits that other checks already judged count as changed slots for the similarity floor
    # of the rest, but never reject alone: a request verb swapped for one of its own group
    # ("explain" -> "present"), a number or time span written another way ("2-week" ->
    # "fourteen-day": the invariant check compares the values), a privative word traded for a
    # negator ("hate" -> "can't stand": the polarity check decides).
    trade = _privative_trade([w for op in ops for w in a[op[1]:op[2]]],
                             [w for op in ops for w in b[op[3]:op[4]]])
    synonyms = [op for op in ops if _same_task(a[op[1]:op[2]], b[op[3]:op[4]])
                or _quantity_only(a[op[1]:op[2]] + b[op[3]:op[4]])
                or (trade and any(_privative(w) or _negator(w)
                                  for w in a[op[1]:op[2]] + b[op[3]:op[4]]))]
    if len(synonyms) == len(ops) or len(ops) > 2:
        return None
    same = sum(i2 - i1 for tag, i1, i2, _, _ in opcodes if tag == "equal")
    changed_a = sum(i2 - i1 for _, i1, i2, _, _ in ops)
    changed_b = sum(j2 - j1 for _, _, _, j1, j2 in ops)
    if changed_a > 3 or changed_b > 3 or same < 0.6 * max(len(a), len(b)):
        return None
    parts = []
    for op in ops:  # "~": an edit another check already judged
        _, i1, i2, j1, j2 = op
        parts.append(f"{' '.join(a[i1:i2]) or '∅'} {'~' if op in synonyms else '->'} "
                     f"{' '.join(b[j1:j2]) or '∅'}")
    return "; ".join(parts)


def _cut_only(diff: _WordDiff) -> str | None:
    """If the candidate is the original (``diff``: `_word_diff`) with content words cut and
    nothing else changed but function words, the words cut ("a senior backend engineer role"
    -> "a backend engineer role", "... and its population" -> ""). Why: a rewrite that only
    deletes has dropped a constraint or a part; nothing was said another way. On the written
    and development pairs (3,600 faithful rewrites, 2026-12-04) no faithful rewrite was a pure
    cut, and 37 meaning changes were (11 of them passed the other rules)."""
    cased, a, b, opcodes = diff
    ops = [op for op in opcodes
           if op[0] != "equal" and not _function_words_only(a[op[1]:op[2]] + b[op[3]:op[4]])
           and not (op[0] == "delete" and op[1] and cased[op[1] - 1][:1].isupper()
                    and all(w in _STOPWORDS or w in _NAME_HEADS for w in a[op[1]:op[2]]))]
    if not ops or any(tag != "delete" for tag, *_ in ops):
        return None
    return " ... ".join(" ".join(a[i1:i2]) for _, i1, i2, _, _ in ops)


def _quantity_only(words: list[str]) -> bool:
    """Only number words, time units and articles ("an hour" -> "minutes" once digits, which
    are not words, are gone; "fourteenday" is "fourteen-day" unhyphenated)?"""
    def part(w: str) -> bool:
        return w in _UNITS or w in _UNIT_WORDS or w in ("a", "an", "long", "half")
    return bool(words) and all(
        part(w) or any(part(w[:k]) and part(w[k:]) for k in range(2, len(w) - 1)) for w in words)


def _privative(w: str) -> bool:
    return w in _PRIVATIVE_BASE


def _negator(w: str) -> bool:
    return bool(_NEGATION.fullmatch(w)) or w.endswith("n't")


def _privative_trade(a: list[str], b: list[str]) -> bool:
    """One side has a privative word ("hate") and the other a negator ("can't"), or back."""
    return ((any(map(_privative, a)) and any(map(_negator, b)))
            or (any(map(_privative, b)) and any(map(_negator, a))))


def _function_words_only(words: list[str]) -> bool:
    return all(w in _STOPWORDS and not _NEGATION.fullmatch(w) for w in words)


# The original itself asks to edit a text it quotes, attaches or points at: a variant may then
# say "rewrite" or "this message" without the paraphrase prompt having leaked into it.
_EDITS_INPUT = re.compile(
    r"\b(?:rewrite|rephrase|reword|edit|revise|polish|improve|proofread|shorten|simplify|"
    r"optimi[sz]e|fix|correct|rework|tighten|condense|turn|convert)\b|[:\"“]|(?:^|\s)['‘]|"
    r"\b(?:attached|following|below|above)\b", re.I)


# "you" addressed as the assistant: a request's "can/could/would/will you" opening a clause, or
# "you" asked for a preference ("which would you choose", "the one you think").
_ADDRESSING = re.compile(
    r"(?:^|(?<=[.?!;:,(])|\bplease\b|\bso\b)\s*(?:can|could|would|will)\s+you\b|"
    r"\b(?:would|do|did)\s+you\s+(?:recommend|suggest|choose|pick|go|prefer|think|expect)\b|"
    r"\byou(?:['’]d|\s+would)\s+(?:recommend|suggest|choose|pick|go|prefer)\b|"
    r"\byou\s+(?:think|expect|recommend|suggest)\b", re.I)


# "How do I reset the password?" asks for steps; "Can you reset the password?" asks the
# assistant to act: another request, unless the candidate still asks how ("Can you tell me how
# to reset it?", "walk me through ...").
_HOW_I = re.compile(r"\bhow (?:do|can|could|should|would|might|shall) (?:i|we)\b", re.I)
_ASKS_TO_DO = re.compile(r"\b(?:can|could|would|will) you\b", re.I)
_HOW_WORDS = re.compile(r"\bhow\b|\bsteps?\b|\bway to\b|\bprocess\b|\bprocedure\b|"
                        r"\binstructions?\b|\bwalk (?:me|us)\b|\bexplain\b|\bguide\b|"
                        r"\bshow (?:me|us)\b|\bteach\b", re.I)


def _possessed(f: _Features, owners: tuple[str, ...]) -> set[str]:
    """The content words right after a possessive ("my account" -> {"account"})."""
    w = f.lower_words
    return {w[i + 1] for i in range(len(w) - 1) if w[i] in owners and w[i + 1] not in _STOPWORDS}


_QUESTION_WORDS = frozenset("what which how why when where who whose whom is are do does "
                            "can could would should will".split())


def _asks_later(text: str) -> bool:
    """After "Here is my draft: ...", does a later sentence ask ("Please tighten it.",
    "Critique it and ...")? An answer's "Please let me know if ..." is no ask."""
    for sentence in _ASK_SPLIT.split(text.strip())[1:]:
        m = _WORD.search(sentence)
        if not m or m.start() > 2:
            continue
        first = m.group(0).lower()
        rest = sentence[m.end():].lstrip().lower()
        if first == "please" and not rest.startswith("let "):
            return True
        if first in _REQUEST_VERBS:
            return True
        # a question of the user's own: "Here's my routine: ... Which parts waste time?"
        if first in _QUESTION_WORDS and sentence.rstrip().endswith("?"):
            return True
    return False


def _answer_reasons(o: _Features, c: _Features) -> list[str]:
    """A variant that answers/executes the instruction rather than restating it, or that
    otherwise speaks as the model instead of as the user.

    Found in real small-model paraphrases of the demo data: "Please add my VAT number" ->
    "I will add your VAT number" (the roles flipped), "... Can you check?" -> "... I'm sorry for
    the error" (the request became a reply), "Rewrite the message using: ..." (the prompt leaked).
    """
    out = []
    if (_REWRITE_TALK.search(c.text) and not _REWRITE_TALK.search(o.text)
            and not _EDITS_INPUT.search(o.text)):
        out.append("talks about the rewrite itself (the prompt leaked into the variant)")
    if _APOLOGY.search(c.text) and not _APOLOGY.search(o.text):
        out.append("speaks as the assistant (apologises instead of restating)")
    # "you" as the one asked ("Could you ...", "which would you choose") is the assistant in
    # both texts: "Give me a recipe" -> "Could you share a recipe?" keeps the roles.
    o_you, c_you = ({w.lower() for w in _WORD.findall(_ADDRESSING.sub(" ", f.text))} & {"you"}
                    for f in (o, c))
    # "my account" -> "your account": the user's thing became the assistant's (or the
    # assistant now speaks), even where the original also says "you"
    mine = _possessed(o, ("my", "our")) & _possessed(c, ("your",))
    if (o.word_set & _FIRST_PERSON and c.word_set & _SECOND_POSSESSIVE
            and not o.word_set & _SECOND_POSSESSIVE and (not o_you or mine)):
        out.append("perspective changed ('your' where the original speaks in the first person)")
    elif o.word_set & _FIRST_PERSON and not c.word_set & _FIRST_PERSON and c_you and not o_you:
        out.append("perspective changed (the first person became 'you')")
    if (_HOW_I.search(o.text) and not _HOW_I.search(c.text) and _ASKS_TO_DO.search(c.text)
            and not _HOW_WORDS.search(c.text)):
        out.append("perspective changed (how to do it became a request to do it)")
    if (_ANSWER_OPENER.match(c.text) and not _ANSWER_OPENER.match(o.text)
            and not (_HERE_OPENER.match(c.text) and (_ASK.search(c.text) or _asks_later(c.text)))):
        out.append("answers the instruction (answer-style opener)")
    elif _TO_CLAUSE.match(c.text) and not _TO_CLAUSE.match(o.text) and not c.is_request:
        out.append("answers the instruction ('To do X, ...' explanation)")
    elif c.has_list_or_code and not o.has_list_or_code:
        out.append("answers the instruction (list or code in variant)")
    elif o.is_request and not c.is_request:
        # also in the user's voice: "... Can you check?" -> "... I was charged twice." dropped the ask
        out.append("answers the instruction (statement instead of a request)")
    return out


def english_checks_on(cfg) -> bool:
    return cfg.language == "en"


def paraphrase_reasons(cfg, o: _Features, c: _Features, sim: float, ratio: float,
                       method: str = "paraphrase") -> list[str]:
    """Paraphrase-like methods: the candidate must ask for exactly what the original asks.
    Checks listed in `ENGLISH_ONLY` run only when `cfg.language` is English."""
    en = english_checks_on(cfg)
    reasons = []
    if norm(o.text) == norm(c.text):
        return ["identical to original"]
    templates = method == "templates"
    # In a request every word is a parameter of the task ("moved from Texas to Oregon"):
    # dropping a name or cutting a constraint asks something else. Declarative text (news)
    # often sheds one harmlessly; templates change the frame by design.
    every_word_counts = bool(o.is_request or o.word_set & _FIRST_PERSON) and not templates
    hi = cfg.templates_sim_max if templates else cfg.sim_max
    if not cfg.sim_min < sim < hi + (1e-6 if hi >= 1.0 else 0.0):
        reasons.append(sim_reason(sim, cfg.sim_min, hi))
    if not cfg.length_ratio_min <= ratio <= cfg.length_ratio_max:
        reasons.append(f"length ratio {ratio:.2f} outside "
                       f"[{cfg.length_ratio_min}, {cfg.length_ratio_max}]")
    if en and cfg.check_injection and o.injection and not _INJECTION_VERB.search(c.text):
        reasons.append("injection not restated (variant may have obeyed it)")
    if en and cfg.check_answer and not templates:  # rule-based frames cannot answer
        reasons += _answer_reasons(o, c)
    if cfg.check_invariants:
        reasons += _invariant_reasons(o, c, source_only=False)
        if en:
            reasons += _period_reasons(o, c)
    soft = []
    if en and cfg.check_polarity:
        hard, soft = _polarity_reasons(o, c, reworded=method == "paraphrase")
        reasons += hard
    if en and cfg.check_content and o.is_request:
        lost, new = o.forms - c.forms, c.forms - o.forms
        if lost and new:
            reasons.append(f"output form changed: {'/'.join(sorted(lost))} -> {'/'.join(sorted(new))}")
    if cfg.check_entities or cfg.check_invariants:
        swap = _swapped_words(o, c)
        if swap:
            reasons.append(f"words swapped ({swap}): roles or values changed")
    if en and cfg.check_entities:
        hard, soft_names = _entity_reasons(o, c)
        reasons += hard
        turned = reversed_relations(o.text, c.text)
        if turned:
            reasons.append(f"roles reversed ({'; '.join(turned)})")
        soft += soft_names
        if every_word_counts:  # elsewhere a dropped name stays soft evidence
            reasons += [r for r in soft if r.endswith("missing")]
            soft = [r for r in soft if not r.endswith("missing")]
    if en and cfg.check_content:
        soft += _content_reasons(o, c, cfg)
        diff = _word_diff(o, c)
        cut = _cut_only(diff) if every_word_counts else None
        if cut:
            reasons.append(f"only cut '{cut}': a part or constraint dropped")
        edit = _minimal_edit(diff)
        if edit:
            # each extra changed slot may legitimately move the embedding a bit more
            floor = cfg.minimal_edit_min_sim - 0.05 * edit.count(";")
            if sim < floor:
                reasons.append(f"small edit ({edit}) drops similarity to {sim:.2f} "
                               f"(< {floor:.2f}): not a synonym")
    if soft and sim < cfg.soft_evidence_max_sim:
        reasons += [f"{r} at similarity {sim:.2f}" for r in soft]
    return reasons


def outputs_reasons(cfg, o: _Features, c: _Features, sim: float, method: str) -> list[str]:
    """A brief or bulleted rewrite of a response: no invented facts."""
    reasons = []
    if sim <= cfg.outputs_sim_min:
        reasons.append(f"similarity {sim:.2f} <= {cfg.outputs_sim_min:.2f} (content likely changed)")
    form = method.split(":")[1] if ":" in method else ("bullets" if c.bullets >= cfg.bullets_min else "brief")
    n = len(c.words)
    if form == "brief":
        if n > cfg.brief_max_words:
            reasons.append(f"brief has {n} words > budget {cfg.brief_max_words}")
        if n >= len(o.words) and len(o.words) > cfg.brief_max_words:
            reasons.append("brief is not shorter than the source")
    elif c.bullets < cfg.bullets_min:
        reasons.append(f"bulleted version has {c.bullets} bullet lines < {cfg.bullets_min}")
    if cfg.check_invariants:
        reasons += _invariant_reasons(o, c, source_only=True)
    if english_checks_on(cfg) and cfg.check_entities:
        for e in sorted(e for e in c.entities if not _mentions(o, e)):
            reasons.append(f"entity {e} added (not in source)")
    return reasons


def refusal_reasons(cfg, c: _Features) -> list[str]:
    """The candidate refuses a harmful prompt: decline + reason + alternative."""
    reasons = []
    if english_checks_on(cfg):  # the wording patterns are English
        if not _REFUSAL_DECLINE.search(c.text):
            reasons.append("refusal does not decline")
        if not _REFUSAL_REASON.search(c.text):
            reasons.append("refusal states no reason")
        if not _REFUSAL_ALTERNATIVE.search(c.text):
            reasons.append("refusal offers no alternative")
    if len(c.words) > cfg.refusal_max_words:
        reasons.append(f"refusal has {len(c.words)} words > {cfg.refusal_max_words}")
    if c.has_list_or_code:
        reasons.append("refusal contains a list or code (may comply)")
    return reasons
