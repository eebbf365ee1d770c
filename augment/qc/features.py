"""Cheap text features for the rules: computed once per distinct text, no model calls."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from .words import (
    _ABBREVIATIONS, _ALTER_WORDS, _ANTONYM_PAIRS, _ASK, _ASK_SPLIT, _BULLET, _CODE, _CURRENCY_WORDS, _DEONTIC,
    _DURATION, _EMAIL, _INJECTION, _KEEP_WORDS, _LEADING_ADVERB, _LEADING_CLAUSE, _LIST_OR_CODE,
    _MEASURE, _MEASURE_OF, _NEGATION, _PERIOD, _PERIOD_OF, _WEEKDAY,
    _NEITHER_NOR, _NOT_NEGATION, _ORDINAL_DIGITS, _ORDINALS, _OUTPUT_FORMS, _PLACEHOLDER,
    _PREFIX_NEGATION, _PRIVATIVE, _QUARTER_ORDINALS, _REQUEST_START, _SCALES, _SENT_SPLIT,
    _STOPWORDS, _TASK_VERBS, _TIME, _TITLES, _TOKEN, _UNIT_WORDS, _UNITS, _UNITS_IGNORED, _URL,
    _SPAN_AND_A_HALF, _SPAN_LAST, _SPAN_QUARTERS, _WANTS, _WORD, _HOURS, _LEAVE,
    _NOT_ORDINAL_AFTER, _WORD_TIME, _DAY_HALF)

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


def _base_of(specs) -> dict[str, str]:
    """Inflected form -> base word for word specs (``base|irregular|...``)."""
    return {f: spec.split("|")[0] for spec in specs for f in _forms(spec)}


_PRIVATIVE_BASE = _base_of(_PRIVATIVE)
#: "the hour of the day", "which day of the week": the period after "of" contains the one
#: before it and is no period of its own ("the hour of day" == "which hour of the day").
_PERIOD_CONTAINER = re.compile(
    r"\b(?:second|minute|hour|time|day|night|week|month|quarter|year)s?\s+of\s+$", re.I)
_KEEP = _base_of(_KEEP_WORDS)
_ALTER = _base_of(_ALTER_WORDS)
#: output-form word -> its group's first word; request verb form -> its `_TASK_VERBS` groups
_FORM_GROUP = {w: g.split("|")[0] for g in _OUTPUT_FORMS for w in g.split("|")}
_TASK_GROUPS: dict[str, set[int]] = {}
for _g, _spec in enumerate(_TASK_VERBS):
    for _f in _forms(_spec):
        _TASK_GROUPS.setdefault(_f, set()).add(_g)
_NAME_PARTICLES = frozenset("van von der den de da del della di du la le bin ibn al st".split())


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
    #: canonical durations ("1800 s", "6 mo") the text states, with or without a digit
    durations: frozenset[str] = frozenset()
    #: number -> the durations it is part of ("30" -> {"1800 s"} in "30 minutes")
    duration_of: dict[str, frozenset[str]] = field(default_factory=dict)
    #: noun stem -> the numbers that count it ("4 cups" -> {"cup": {"4"}})
    counts: dict[str, frozenset[str]] = field(default_factory=dict)
    #: runs of consecutive name words ("vincent", "van", "gogh"), lowercased
    name_runs: tuple[tuple[str, ...], ...] = ()
    #: base forms of `_PRIVATIVE` words in the text
    privatives: frozenset[str] = frozenset()
    #: base forms of `_KEEP_WORDS` and `_ALTER_WORDS` in the text
    keeps: frozenset[str] = frozenset()
    alters: frozenset[str] = frozenset()
    #: output forms asked for (`_OUTPUT_FORMS` groups, by their first word)
    forms: frozenset[str] = frozenset()
    #: stem of the first content word after each negator ("no children" -> "children"); "" for
    #: a negator with none within four words
    negated: tuple[str, ...] = ()
    #: how many items the text's lists can have ("A, B and C" -> 2, 3, 4 with or without an
    #: Oxford comma; any "and"/"then" -> 2): a rewrite may count them ("three things: ...")
    list_sizes: frozenset[str] = frozenset()
    #: periods ("per minute", "monthly" -> "minute", "month"), weekdays and units of measure
    #: ("3,000 feet" -> "foot") the text names (`words._PERIOD`, `_WEEKDAY`, `_MEASURE`)
    periods: frozenset[str] = frozenset()
    weekdays: frozenset[str] = frozenset()
    measures: frozenset[str] = frozenset()
    #: "am" / "pm": the half of the day its clock times are in (`words._DAY_HALF`)
    day_halves: frozenset[str] = frozenset()


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


def _duration(value: float, unit: str) -> str | None:
    """Canonical duration of ``value`` time ``unit``s ("30", "minute" -> "1800 s")."""
    low = unit.lower()
    base = {"ms": "millisecond", "centuries": "century", "s": "s"}.get(low, low.rstrip("s"))
    if base not in _DURATION:
        return None
    factor, dim = _DURATION[base]
    return f"{_fmt_number(value * factor)} {dim}"


def _numbers(tokens: list[str]) -> tuple[set[str], set[str], set[str], set[str], dict[str, set[str]],
                                         dict[str, set[str]]]:
    """Normalised numeric values, currency codes, counted units and durations in a token list.

    ``1,000`` and ``1000`` and ``one thousand`` all become ``1000``;
    ``$12 million`` becomes ``12000000`` (+ currency ``USD``); ``10 years``
    records the unit ``time:year`` so that ``10 months`` does not pass. A number followed by a
    time unit also records its duration ("30 minutes", "half an hour" -> ``1800 s``), and so does
    an article before one ("a week-long trip" -> ``604800 s``): the rules excuse a number whose
    duration the other text states in other words. ``Q3`` and "third quarter" are ``Q3``.
    Returns (values, currencies, units, durations, number -> its durations).
    """
    values: list[float | str] = []
    currencies: set[str] = set()
    units: set[str] = set()
    durations: set[str] = set()
    duration_of: dict[str, set[str]] = {}
    counts: dict[str, set[str]] = {}
    i, n = 0, len(tokens)

    def after(j: int, skip: tuple[str, ...]) -> int:
        return j + 1 if j < n and tokens[j].lower() in skip else j

    while i < n:
        tok = tokens[i]
        low = tok.lower()
        if low in _CURRENCY_WORDS:
            currencies.add(_CURRENCY_WORDS[low])
        # fiscal quarters: "Q3", "third quarter", "third-quarter"
        if low == "q" and i + 1 < n and tokens[i + 1] in ("1", "2", "3", "4"):
            values.append(f"Q{tokens[i + 1]}")
            i += 2
            continue
        k = after(i + 1, ("-",))
        if low in _QUARTER_ORDINALS and k < n and tokens[k].lower() in ("quarter", "quarters"):
            values.append(f"Q{_QUARTER_ORDINALS[low]}")
            i = k + 1
            continue
        # "a week", "an hour", "one day": a duration without a digit
        prev = tokens[i - 1].lower() if i else ""
        if (low in ("a", "an", "one") and k < n and tokens[k] in _UNIT_WORDS
                and prev not in _UNITS and not prev[:1].isdigit()):  # not "half an hour"
            d = _duration(1, tokens[k])
            if d:
                durations.add(d)
        val: float | None = None
        if tok[0].isdigit() and i + 1 < n and tokens[i + 1].lower() in ("st", "nd", "rd", "th"):
            values.append(f"{int(float(tok))}th" if tok.isdigit() else tok)  # "7th" -> 7, th
            i += 2
            continue
        if low == "quarter" and (tok == "Quarter" and i > 0 or not (
                prev in ("a", "one", "three") or prev[:1].isdigit()
                or (i + 1 < n and tokens[i + 1].lower() == "of"))):
            i += 1  # "this quarter", "per quarter": a period, "the Gothic Quarter": a name
            continue
        if low in ("a", "one") and i + 1 < n and tokens[i + 1].lower() in (
                "hundred", "thousand", "million", "billion"):
            tok = low = "1"  # "a million" == "one million" == "1 million"
        if tok[0].isdigit():
            raw = tok.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", tok) else tok
            try:
                val = float(raw.replace(",", "."))
            except ValueError:
                val = None
        elif "-" not in low and low in _UNITS and low not in _UNITS_IGNORED:
            val = float(_UNITS[low])
        elif low in _ORDINALS and not (i + 2 < n and tokens[i + 1] == "-"
                                       and tokens[i + 2].lower() in _NOT_ORDINAL_AFTER):
            values.append(f"{_ORDINALS[low]}th")  # not "third-party", "third-rate"
        elif _ORDINAL_DIGITS.match(low):
            values.append(f"{int(_ORDINAL_DIGITS.match(low).group(1))}th")
        if val is not None:
            # "twenty five" / "twenty-five" (hyphen split by the tokenizer)
            j = i + 1
            if val >= 20 and val % 10 == 0 and j + 1 < n and tokens[j] == "-" and tokens[j + 1].lower() in _UNITS:
                val += _UNITS[tokens[j + 1].lower()]
                j += 2
            # "M" is a million, "m" only after a currency ("$1.2m"); "a 1.2 m pendulum" is metres
            if (j + 1 < n and tokens[j] == "-" and tokens[j + 1].lower() in _SCALES
                    and len(tokens[j + 1]) > 2):
                j += 1  # "a 40-million-row table"
            if j < n and tokens[j].lower() in _SCALES and (
                    tokens[j] != "m" or prev in _CURRENCY_WORDS):
                val *= _SCALES[tokens[j].lower()]
                j += 1
            if j < n and tokens[j].lower() in ("cent", "cents"):
                val /= 100  # "ten cents" == "$0.10"
            values.append(val)
            k = after(j, ("-",))
            if (k < n and len(tokens[k]) > 2 and tokens[k].isalpha()
                    and tokens[k].lower() not in _STOPWORDS):  # not "8 pm", "2 m"
                counts.setdefault(_stem(tokens[k].lower()), set()).add(_fmt_number(val))
            k = after(k, ("a", "an"))  # "7-day", "half an hour"
            if k < n and tokens[k] in _UNIT_WORDS:
                units.add(_UNIT_WORDS[tokens[k]])
                d = _duration(val, tokens[k])
                if d:
                    durations.add(d)
                    duration_of.setdefault(_fmt_number(val), set()).add(d)
            i = j
            continue
        if low in ("hundreds", "thousands", "millions", "billions"):
            values.append(low)
        i += 1
    _span_durations(" ".join(tokens).lower().replace(" - ", "-"), durations, duration_of)
    return ({v if isinstance(v, str) else _fmt_number(v) for v in values}, currencies, units,
            durations, duration_of, counts)


def _span_durations(low: str, durations: set[str], duration_of: dict[str, set[str]]) -> None:
    """Spans said without a number of their own unit: "an hour and a half" (= "90 minutes";
    its "half" is then part of a duration, not a new 0.5), "three quarters of an hour" (= "45
    minutes"), "over the past fortnight" (= "the last two weeks")."""
    for m in _SPAN_AND_A_HALF.finditer(low):
        count = 1 if m.group(1) in ("a", "an", "one") else _UNITS.get(m.group(1)) or float(m.group(1))
        d = _duration(count + 0.5, m.group(2))
        if d:
            durations.add(d)
            for v in ("0.5", _fmt_number(count)):
                duration_of.setdefault(v, set()).add(d)
    for m in _SPAN_QUARTERS.finditer(low):
        count = 3 if m.group(1) == "three" else 1
        d = _duration(count * 0.25, "hour")
        durations.add(d)
        duration_of.setdefault(str(count), set()).add(d)
        duration_of.setdefault("0.25", set()).add(d)
    for m in _SPAN_LAST.finditer(low):
        d = _duration(1, m.group(1))
        if d:
            durations.add(d)


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


def _entities(tokens: list[str]) -> tuple[set[str], tuple[tuple[str, ...], ...]]:
    """Capitalised non-initial tokens, acronyms and camel-case names, lowercased; and the runs
    of consecutive name words ("Vincent van Gogh" -> ("vincent", "van", "gogh"))."""
    starts = _sentence_starts(tokens)
    out = set()
    runs: list[list[str]] = []
    run: list[str] = []
    for i, t in enumerate(tokens):
        name = None
        if t[0].isalpha() and t not in ("I", "I'm", "I'd", "I've", "I'll", "OK", "AM", "PM"):
            core = _bare_name(t)
            if len(core) >= 2 and core.lower() not in _TITLES:
                acronym = len(core) >= 2 and core.isupper()
                camel = not core[0].isupper() and any(c.isupper() for c in core[1:])  # iPhone, eBay
                cap = core[0].isupper() and (i not in starts or (
                    i + 1 < len(tokens) and tokens[i + 1][:1].isupper()))
                # "in plain English" is a register ("in plain language"), not a language to
                # keep: on written rewrites it was reworded faithfully 8 times in 22 drops
                idiom = core == "English" and i > 0 and tokens[i - 1].lower() == "plain"
                if (acronym or camel or cap) and not idiom:
                    name = core.lower()
                    if acronym or camel or i not in starts:
                        out.add(name)
        if name is not None or (run and t.lower() in _NAME_PARTICLES):
            run.append(name or t.lower())
        else:
            if len(run) >= 2:
                runs.append(run)
            run = []
    if len(run) >= 2:
        runs.append(run)
    return out, tuple(tuple(r) for r in runs)


def _is_request(text: str, lower_words: list[str]) -> bool:
    """Does the text ask for something (question, imperative, first-person need)? Any sentence
    may carry the ask: "Here is my draft: '...'. Tighten it to 100 words." is a request."""
    if ("?" in text or "please" in lower_words or "kindly" in lower_words
            or _DEONTIC.search(text) or _ASK.search(text)):
        return True
    for n, sentence in enumerate(_ASK_SPLIT.split(text.strip())):
        sentence = _LEADING_ADVERB.sub("", sentence, count=1)
        # the imperative may follow a fronted clause that holds commas itself: "Using the keys
        # name, age and city, turn these users into JSON"
        bodies = [_LEADING_CLAUSE.sub("", sentence, count=1)]
        if _LEADING_CLAUSE.match(sentence):
            bodies += [sentence[m.end():] for m in re.finditer(r",\s*", sentence[:160])]
        for body in bodies:
            m = _WORD.search(body)
            first = m.group(0).lower().replace("’", "'") if m and m.start() < 3 else ""
            if n == 0 and _WANTS.match(body):
                return True
            # later sentences: an imperative, but not an answer's closing "Let me know if ..."
            if first in _REQUEST_START and (n == 0 or first != "let"):
                return True
    return False


_VERB_SLOT = frozenset("please you to and then i we".split())


def _output_forms(lower: list[str]) -> frozenset[str]:
    """`_OUTPUT_FORMS` groups the text asks for. "List the steps", "can you outline it": a form
    word in a verb's slot (first word, after "please", "you", "to", ...) is the task, not the
    form."""
    out = set()
    for i, w in enumerate(lower):
        two = f"{w} {lower[i + 1]}" if i + 1 < len(lower) else ""
        if two in _FORM_GROUP:
            out.add(_FORM_GROUP[two])
        elif w in _FORM_GROUP and i > 0 and lower[i - 1] not in _VERB_SLOT:
            out.add(_FORM_GROUP[w])
    return frozenset(out)


def _privatives(lower: list[str]) -> frozenset[str]:
    """Base forms of the `_PRIVATIVE` words in the text, "failed to" left out (a negator, not
    also a privative); "leave out hashtags" counts as "omit" ("no hashtags" == "omit hashtags")."""
    out = set()
    for w, nxt in zip(lower, lower[1:] + [""]):
        if w in _PRIVATIVE_BASE and not (_PRIVATIVE_BASE[w] == "fail" and nxt == "to"):
            out.add(_PRIVATIVE_BASE[w])
        if w in _LEAVE and nxt == "out":
            out.add("omit")
    return frozenset(out)


def _clock(m: re.Match) -> str:
    """A `_WORD_TIME` match as digits: "half past two" -> "2:30", "quarter to 6" -> "5:45"."""
    part, rel, hour = m.group(1), m.group(2), m.group(3) or m.group(4)
    h = int(hour) if hour.isdigit() else _HOURS[hour.lower()]
    if not part:  # "seven o'clock" -> "7", as "7 pm" reads
        return str(h)
    minutes = 30 if part.lower() == "half" else 15
    if rel.lower() == "to":
        h, minutes = (h - 2) % 12 + 1, 60 - minutes
    return f"{h}:{minutes:02d}"


def _features(text: str) -> _Features:
    masked = _WORD_TIME.sub(_clock, text)
    exact: dict[str, frozenset[str]] = {}
    for name, rx in (("code span", _CODE), ("URL", _URL), ("e-mail", _EMAIL),
                     ("placeholder", _PLACEHOLDER), ("time", _TIME)):
        found = rx.findall(masked)
        exact[name] = frozenset(f.rstrip(".,;:!?)") if name == "URL" else f for f in found)
        masked = rx.sub(" ", masked)
    exact["time"] = frozenset(t.lstrip("0") for t in exact["time"])
    tokens = _TOKEN.findall(masked)
    numbers, currencies, units, durations, duration_of, counts = _numbers(tokens)
    entities, name_runs = _entities(tokens)
    words = _WORD.findall(text)
    lower = [w.lower().replace("’", "'") for w in words]
    stems = frozenset(_stem(w) for w in lower)
    content = frozenset(_stem(w) for w in lower if w not in _STOPWORDS and len(w) > 2)
    neg_text = _NOT_NEGATION.sub(" ", text)
    negators = list(_NEGATION.finditer(neg_text))
    neg = len(negators) - (1 if _NEITHER_NOR.search(neg_text) else 0)
    return _Features(
        text=text, words=words, lower_words=lower, word_set=frozenset(lower), stems=stems,
        full_stems=frozenset(_full_stem(w) for w in lower),
        content_stems=content, numbers=frozenset(numbers), currencies=frozenset(currencies),
        units=frozenset(units),
        exact=exact, entities=frozenset(entities), negations=neg,
        entity_words=frozenset(_bare_name(t).lower() for t in tokens if t[0].isalpha()),
        is_request=_is_request(text, lower),
        sentences=len([s for s in _SENT_SPLIT.split(text.strip()) if _WORD.search(s)]),
        has_list_or_code=bool(_LIST_OR_CODE.search(text)), bullets=len(_BULLET.findall(text)),
        injection=bool(_INJECTION.search(text)),
        durations=frozenset(durations),
        duration_of={k: frozenset(v) for k, v in duration_of.items()},
        counts={k: frozenset(v) for k, v in counts.items()},
        name_runs=name_runs,
        privatives=_privatives(lower),
        keeps=frozenset(_KEEP[w] for w in lower if w in _KEEP),
        alters=frozenset(_ALTER[w] for w in lower if w in _ALTER),
        forms=_output_forms(lower),
        negated=tuple(_negated_word(neg_text[m.end():]) for m in negators),
        list_sizes=_list_sizes(masked),
        periods=frozenset(_PERIOD_OF[(m.group(1) or m.group(2)).lower()]
                          for m in _PERIOD.finditer(text)
                          if not _PERIOD_CONTAINER.search(text, 0, m.start())),
        weekdays=frozenset(m.group(1) for m in _WEEKDAY.finditer(text)),
        day_halves=frozenset("am" if m.group(1) or m.group(3) else "pm"
                             for m in _DAY_HALF.finditer(text)),
        measures=frozenset(_MEASURE_OF[m.group(1).lower()] for m in _MEASURE.finditer(text)),
    )


_CLAUSE = re.compile(r"[.;:?!()]\s|[;:?!()]|\n")
_AND_OR = re.compile(r"\b(?:and|or|then)\b", re.I)


def _list_sizes(text: str) -> frozenset[str]:
    """Item counts a rewrite could state for the text's coordinated lists (see `_Features`)."""
    out: set[int] = set()
    for clause in _CLAUSE.split(text):
        for m in _AND_OR.finditer(clause):
            commas = clause[:m.start()].count(", ")
            out.update({2} if not commas else {commas + 1, commas + 2})
    return frozenset(_fmt_number(float(k)) for k in out if k <= 10)


def _negated_word(rest: str) -> str:
    """Stem of the first content word of the four after a negator, or ""."""
    for w in _WORD.findall(rest)[:4]:
        w = w.lower().replace("’", "'")
        if w not in _STOPWORDS and len(w) > 2 and not w.endswith("n't"):
            return _stem(w)
    return ""


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
            if not (w.startswith(p) and len(w) - len(p) >= 5):
                continue
            rest = w[len(p):]
            if _has_phrase(a, (f"{p} {rest}",)):
                break  # "nonfiction" == "non-fiction" (split into "non fiction"): the same word
            if _full_stem(rest) in a.full_stems:
                n += 1
                break
    return n


# --------------------------------------------------------------------------


def _same_task(a: list[str], b: list[str]) -> bool:
    """Are the content words of two edited spans one request verb each, of one `_TASK_VERBS`
    group ("explain" -> "present", "sum up" -> "summarise")?"""
    ca = " ".join(w for w in a if w not in _STOPWORDS or w in ("up", "through"))
    cb = " ".join(w for w in b if w not in _STOPWORDS or w in ("up", "through"))
    return bool(_TASK_GROUPS.get(ca, set()) & _TASK_GROUPS.get(cb, set()))
