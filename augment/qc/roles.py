"""Who does what to whom: the directed relations between the parties a request names, so that
a rewrite that reverses one is caught although every word survives ("a letter from me to my
son's teacher" -> "a letter from my son's teacher to me", "how much Priya owes Tom" -> "what
Tom owes to Priya", "I sent you the wrong item" -> "You sent me the wrong item").

Why: a flipped perspective was the meaning change that got through most often (54 of the 86
on the seven held-out sets by 2026-12-04 were accepted). Sentence embeddings are bags of
meaning, blind to direction, and the judge did not learn direction from the written pairs in a
way that carried to other writers (docs/qc.md). This module catches only the explicit cases,
and only a reversal: the candidate states B -> A for a relation the original states as A -> B,
and never A -> B itself.

Rules, not a parser (no tagger ships offline). A party is a person pronoun ("I", "me", "my",
"we" ... are the speaker; "you", "your" the addressee), a role noun (`PARTIES`) or a
capitalised word inside a sentence. "my son's teacher" is the teacher: a possessive leads to
the noun it owns. A relation is one of:

- "from A to B", within a few words ("from a child component to its parent");
- a message to B with no "from" ("an email to my manager"): from the speaker to B; a message
  from A with no "to" ("a note from my manager"): from A to the speaker;
- A, a verb of one `_VERB_GROUPS` group, then B before the clause ends ("the client sends the
  JWT to the server", "Priya owes Tom"); a passive ("paid by Tom") names no subject and states
  nothing.

Besides a reversed relation, the speaker's own role exchanged with a party the original names
("I'm a tutor ... a student who interrupts me" -> "As a student ... a tutor who interrupts me").

Measured on the written and development pairs before the held-out sets were scored with it
(2026-12-04, evening): it fired on 0 of 3,616 faithful rewrites, on 1 of 3,539 other meaning
changes (a real one: "upgrade from Basic to Pro" -> "downgrade from Pro to Basic") and on 29
of the 450 flipped perspectives (6%); see docs/qc.md.
"""

from __future__ import annotations

import re

from .words import _FIRST_PERSON, _NOT_NAMES, _SECOND_POSSESSIVE, _STOPWORDS

#: Nouns naming a party to a request (singular; "s" plurals are generated).
PARTIES = frozenset("""teacher student tutor pupil parent child kid daughter son mother father
mom dad wife husband partner landlord tenant buyer seller customer supplier vendor client agency
employer employee manager boss colleague coworker doctor patient nurse therapist advisor
interviewer candidate applicant lender borrower host guest coach player mentor mentee author
reader sender recipient user admin developer designer driver passenger company neighbour
neighbor friend brother sister sibling owner renter contractor homeowner volunteer donor
reviewer editor recruiter investor founder agent caller server frontend backend service
team member subscriber shopper merchant bank insurer cousin aunt uncle niece nephew
grandmother grandfather grandma grandpa roommate flatmate classmate girlfriend boyfriend fiance
fiancee browser""".split())
_IRREGULAR = {"children": "child", "wives": "wife", "companies": "company",
              "agencies": "agency"}
#: Verbs whose subject acts on their object, in groups of one direction: "send" and "hand"
#: state the same relation, so "the client sends X to the server" -> "the server hands X back
#: to the client" is a reversal.
_VERB_GROUPS = {
    "give": "send hand pass give forward transfer deliver return lend loan sell mail ship",
    "pay": "pay repay reimburse refund owe charge bill invoice",
    "teach": "teach tutor train coach mentor supervise manage",
    "contact": "email text message call write reply respond",
    "ask": "ask interview quiz invite hire fire thank sue",
}
_IRREGULAR_VERBS = {"sent": "send", "gave": "give", "given": "give", "sold": "sell",
                    "lent": "lend", "paid": "pay", "repaid": "repay", "taught": "teach",
                    "wrote": "write", "written": "write", "owed": "owe"}
_VERB = {}
for _group, _verbs in _VERB_GROUPS.items():
    for _v in _verbs.split():
        for _f in (_v, _v + "s", _v + "es", _v + "ed", _v + "d", _v + "ing", _v[:-1] + "ing",
                   _v[:-1] + "ies", _v[:-1] + "ied"):
            _VERB.setdefault(_f, _group)
for _f, _v in _IRREGULAR_VERBS.items():
    _VERB[_f] = next(g for g, vs in _VERB_GROUPS.items() if _v in vs.split())
#: A message addressed "to" someone is from the speaker unless it says "from".
_MESSAGES = frozenset("""email e-mail letter message note reply response text memo post card
invitation complaint request toast speech dm""".split())
_ADDRESSEE = _SECOND_POSSESSIVE | {"you"}
_POSSESSIVE = frozenset("my our your his her their its".split())
#: What may start the phrase after "to" when it names a party ("to my manager", "to the
#: client", "to Priya"), so that "to" of an infinitive ("willing to hold") is passed over.
_PHRASE_START = frozenset("the a an this that my our your his her their its".split())
_TOKEN = re.compile(r"[A-Za-z][\w'’-]*|[.;:!?]")
_CLAUSE_END = frozenset(".;:!?")
#: How far a relation may stretch, in words: "from" to its party, "from A" to "to", a verb to
#: its object.
_NEAR, _FROM_TO, _OBJECT = 4, 10, 8
#: Words allowed between a subject and its verb ("Priya still owes Tom", "you've never sent").
_BETWEEN = frozenset("""still never always just already also really finally keeps kept will
would can could should did didn't doesn't don't has have had hasn't haven't to""".split())


def _party(tok: str, sentence_start: bool) -> str | None:
    low = tok.lower().replace("’", "'")
    base = low.split("'")[0]
    if base in _FIRST_PERSON:  # "my", "I'm" (base "i"), "we'll"
        return "speaker"
    if base in _ADDRESSEE:
        return "addressee"
    if base in PARTIES or base in _IRREGULAR:
        return _IRREGULAR.get(base, base)
    if base.endswith("s") and base[:-1] in PARTIES:
        return base[:-1]
    if (tok[0].isupper() and not sentence_start and tok not in _NOT_NAMES
            and not tok.isupper() and "-" not in tok):
        return "name:" + tok.split("'")[0].split("’")[0]
    return None


def _tokens(text: str) -> list[tuple[str, str | None]]:
    out, start = [], True
    for m in _TOKEN.finditer(text):
        tok = m.group()
        out.append((tok, None if tok in _CLAUSE_END else _party(tok, start)))
        start = tok in _CLAUSE_END
    return out


def _owned(toks, i: int, limit: int) -> str | None:
    """The party a phrase starting at ``toks[i]`` names, within ``limit`` words: "my son's
    teacher" -> teacher, "a remote server" -> server, "me" -> the speaker, "my laptop" -> the
    speaker and "my roommate's leftovers" -> the roommate (the nearest owner, for want of a
    party noun)."""
    owner = None
    for tok, party in toks[i:i + limit]:
        if tok in _CLAUSE_END:
            break
        low = tok.lower()
        if low in _POSSESSIVE or low.endswith(("'s", "’s")):
            owner = party or owner
        elif party:
            return party
    return owner


def _names_party(toks, i: int) -> bool:
    return i < len(toks) and (toks[i][1] is not None or toks[i][0].lower() in _PHRASE_START)


def relations(text: str) -> frozenset[tuple[str, str, str]]:
    """The (source, relation, target) triples ``text`` states; see the module docstring."""
    toks = _tokens(text)
    lows = [t.lower() for t, _ in toks]
    out = set()
    n = len(toks)
    for i, low in enumerate(lows):
        if low == "from":
            a = _owned(toks, i + 1, _NEAR)
            b = None
            for k in range(i + 1, min(n, i + _FROM_TO)):
                if lows[k] in _CLAUSE_END:
                    break
                if lows[k] == "to" and _names_party(toks, k + 1):
                    b = _owned(toks, k + 1, _NEAR)
                    break
            if b is None and i and lows[i - 1] in _MESSAGES:
                b = "speaker"  # "a note from my manager": to the speaker
            if a and b and a != b:
                out.add((a, "to", b))
        elif low in _MESSAGES and i + 1 < n and lows[i + 1] == "to" and _names_party(toks, i + 2):
            clause = lows[max(0, i - _FROM_TO):i + _FROM_TO]
            b = _owned(toks, i + 2, _NEAR)
            if "from" not in clause and b and b != "speaker":
                out.add(("speaker", "to", b))
        elif low in _VERB:
            j = i - 1
            while j >= 0 and lows[j] in _BETWEEN and i - j <= 3:
                j -= 1
            subject = toks[j][1] if j >= 0 and lows[j] not in _POSSESSIVE else None
            if not subject:
                continue
            for k in range(i + 1, min(n, i + _OBJECT)):
                if lows[k] in _CLAUSE_END or lows[k] == "by" or lows[k] in _VERB:
                    break
                b = _owned(toks, k, 3) if toks[k][1] else None
                if b:
                    if b != subject:
                        out.add((subject, _VERB[low], b))
                    break
    return frozenset(out)


#: "I'm a tutor", "As a nurse", "I work as a recruiter": who the speaker is.
_IDENTITY = re.compile(r"\b(?:i['’]m|i am|as|i work as|i['’]ve been|we['’]re|we are)\s+"
                       r"(?:an?|the|one)\s+(?:[a-z-]+\s+)?([a-z]+)\b", re.I)


def _identities(text: str) -> set[str]:
    out = set()
    for m in _IDENTITY.finditer(text):
        party = _party(m.group(1), False)
        if party and not party.startswith("name:") and party not in ("speaker", "addressee"):
            out.add(party)
    return out


def _parties(text: str) -> set[str]:
    return {p for _, p in _tokens(text) if p}


def reversed_relations(original: str, candidate: str) -> list[str]:
    """Relations the original states A -> B and the candidate only B -> A, as text; and the
    speaker's role exchanged with another party's ("I'm a tutor ... a student who interrupts
    me" -> "As a student ... a tutor who interrupts me")."""
    ro, rc = relations(original), relations(candidate)
    out = [f"{a} -> {b} ({rel})" for a, rel, b in sorted(ro)
           if (b, rel, a) in rc and (a, rel, b) not in rc]
    io, ic = _identities(original), _identities(candidate)
    if io and ic and not io & ic:
        po, pc = _parties(original), _parties(candidate)
        out += [f"the speaker, {a}, became {b}" for a in sorted(io) for b in sorted(ic)
                if b in po and a in pc]
    return out
