"""Instruction-format expansion: the same request in the phrasings users actually type.

Pure Python and microseconds per call, so the collator can also apply it on the fly
(`apply_template(text, index)`). Every template declares which sentence forms it fits; a text is
classified first (question / imperative / statement / block), so a question never becomes
"Please what is ...". The first word is lowercased only when it is a word we recognised
(a verb, a question word, a determiner), never a name or acronym ("Nimbus", "VPN", "iPhone").
Which templates a prompt gets is a hash of (seed, text, template name): stable across Python
versions, processes and ranks.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable

from ..errors import CandidateError
from ..types import Candidate, Request, Result, Row

QUESTION_WORDS = {"what", "who", "whom", "whose", "which", "when", "where", "why", "how"}
AUX_WORDS = {"is", "are", "was", "were", "am", "do", "does", "did", "can", "could", "should",
             "would", "will", "shall", "may", "might", "must", "have", "has", "had", "isn't",
             "aren't", "don't", "doesn't", "didn't", "can't", "won't", "shouldn't", "wouldn't"}
BE_WORDS = {"is", "are", "was", "were"}
MODALS = {"can", "could", "should", "would", "will", "might", "may", "must"}
# Base-form verbs that open instructions. A closed list on purpose: a word we do not know is
# not lowercased and the text is treated as a statement, which only narrows the templates.
IMPERATIVE_VERBS = set("""
add analyse analyze answer arrange assess assign book brainstorm build calculate cancel categorise
categorize change check choose cite classify clean compare compile complete compose compute
condense construct convert correct count create debug decide define delete derive describe
design detect determine develop diagnose discuss draft draw edit elaborate enumerate estimate
evaluate explain express extract fill find fix format generate give group guess identify
illustrate imagine implement improve interpret invent justify label list locate make match
name offer optimise optimize order organise organize outline paraphrase plan polish predict
prepare produce proofread propose provide rank rate recommend rephrase replace rewrite research
reset review reword schedule select send set shorten show simplify sketch solve sort specify
spell suggest summarise summarize teach tell translate turn update use verify write
""".split())
# Words that open statements and are safe to lowercase after a frame.
STATEMENT_OPENERS = {"my", "our", "the", "a", "an", "this", "that", "these", "those", "there",
                     "it", "we", "they", "he", "she", "your", "his", "her", "their", "some",
                     "every", "each", "all", "one", "here"}
SUBJECT_PRONOUNS = {"i", "we", "it", "there", "this", "that", "he", "she", "they"}
NP_START = {"the", "a", "an", "my", "your", "his", "her", "its", "our", "their", "this", "that",
            "these", "those"}
PREPOSITIONS = {"of", "for", "to", "in", "on", "at", "from", "with", "about", "by", "into", "like"}
REQUEST_OPENERS = {"can", "could", "would", "will"}
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_FINAL_PUNCT = re.compile(r"[\s.!?:;,]+$")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")


@dataclass(frozen=True)
class Parsed:
    """A prompt split into what the templates need."""

    form: str          # "question" | "imperative" | "statement" | "block"
    text: str          # stripped original
    body: str          # without final punctuation, first word lowercased where safe
    Body: str          # without final punctuation, original capitalisation
    indirect: str | None  # "what the capital of France is" for wh-/yes-no questions, if safe


def _lower_first(text: str, known: set) -> str:
    m = _WORD.match(text)
    if not m:
        return text
    word = m.group(0)
    # A contraction counts as its first word: "What's" is "what" + "'s", not a name.
    base = re.split(r"['’]", word.lower())[0]
    # Only Title-case words we recognised: keeps "I", "VPN", "iPhone", "Nimbus".
    if (word.lower() in known or base in known) and word[0].isupper() \
            and word[1:] == word[1:].lower() and word != "I" and not word.startswith("I'"):
        return word[0].lower() + text[1:]
    return text


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:] if text[:1].islower() else text


def _indirect(words: list[str]) -> str | None:
    """Embedded form of a simple question, or None when we cannot be sure it is grammatical.

    what/who/which + be + noun phrase: "What is the capital of France" -> "what the capital of
                                       France is" (not "Why is the sky blue": the verb would
                                       have to move inside the phrase, so we skip it)
    wh + modal + I/we:       "How can I reset my password"   -> "how I can reset my password"
    how + do + I/we:         "How do I cancel my plan"       -> "how to cancel my plan"
    be/modal + pronoun:      "Is it safe to swim"            -> "whether it is safe to swim"
    """
    if len(words) < 3:
        return None
    w0, w1, w2 = words[0].lower(), words[1].lower(), words[2]
    if w0 in QUESTION_WORDS:
        rest = words[2:]
        if (w0 in {"what", "who", "which"} and w1 in BE_WORDS
                and (w2.lower() in NP_START or (w2[0].isupper() and w2 != "I"))
                and rest[-1].lower() not in PREPOSITIONS
                and not any(w.lower() == "like" or re.search(r"(ed|en|ing)$", w) for w in rest)):
            return " ".join([w0] + rest + [w1])
        if w1 in MODALS and w2.lower() in {"i", "we"} and len(words) >= 4:
            return " ".join([w0, w2 if w2 == "I" else w2.lower(), w1] + words[3:])
        if w0 == "how" and w1 == "do" and w2.lower() in {"i", "we"} and len(words) >= 4:
            return " ".join(["how", "to"] + words[3:])
        return None
    if w0 in BE_WORDS | MODALS and w1 in SUBJECT_PRONOUNS:
        subj = "I" if w1 == "i" else w1
        return " ".join(["whether", subj, w0] + words[2:])
    return None


# Auxiliaries that also open instructions: "Do not share ...", "Don't cancel ...", "Do make
# sure ...". Only these: "Is it ..." or "Can I ..." without a "?" is still a question.
DO_WORDS = {"do", "don't", "don’t", "dont"}


def _do_instruction(low: list[str], text: str) -> bool:
    """"Don't cancel my order yet, just pause it." is an instruction: framed as a question it
    becomes "Hey, don't cancel my order yet, just pause it?". An opening "do"/"don't" makes a
    question only when a "?" ends it or a subject follows ("Do you ship to Canada.")."""
    return (low[0] in DO_WORDS and not text.endswith("?") and len(low) > 1
            and low[1] not in {"you", "i", "we", "they", "he", "she"})


def parse(text: str) -> Parsed:
    """Classify the sentence form of a prompt."""
    text = text.strip()
    if "\n" in text or len(_SENTENCE_SPLIT.split(text)) > 1 or not _WORD.match(text):
        return Parsed("block", text, text, text, None)
    core = _FINAL_PUNCT.sub("", text)
    words = core.split()
    # "Can you write ...?" and "Please write ..." are requests whose body is "write ...".
    low = [w.lower().strip(",") for w in words]
    skip = 0
    if len(low) > 2 and low[0] in REQUEST_OPENERS and low[1] == "you":
        skip = 3 if low[2] == "please" else 2
    elif low and low[0] == "please":
        skip = 1
    if skip and len(words) > skip and low[skip] in IMPERATIVE_VERBS:
        body = " ".join(words[skip:])
        body = _lower_first(body, IMPERATIVE_VERBS)
        return Parsed("imperative", text, body, _upper_first(body), None)
    if not words:
        return Parsed("block", text, text, text, None)
    first = low[0]
    if _do_instruction(low, text):
        return Parsed("imperative", text, _lower_first(core, DO_WORDS), core, None)
    if text.endswith("?") or first in QUESTION_WORDS or first in AUX_WORDS:
        known = QUESTION_WORDS | AUX_WORDS
        return Parsed("question", text, _lower_first(core, known), core, _indirect(words))
    if first in IMPERATIVE_VERBS:
        return Parsed("imperative", text, _lower_first(core, IMPERATIVE_VERBS), core, None)
    return Parsed("statement", text, _lower_first(core, STATEMENT_OPENERS), core, None)


@dataclass(frozen=True)
class Template:
    name: str
    forms: frozenset
    render: Callable[[Parsed], str | None]


def _t(name: str, forms: str, render) -> Template:
    return Template(name, frozenset(forms.split()), render)


# "Help me explain X" asks for help with the user's own explaining: a different request.
# Only verbs where user and assistant doing it together means the same thing.
HELP_ME_VERBS = {"write", "draft", "plan", "create", "build", "design", "prepare", "compose",
                 "organize", "organise", "choose", "find", "fix", "debug", "solve", "brainstorm",
                 "outline", "improve", "edit", "rewrite", "translate", "calculate", "compare"}


def _help_me(p: Parsed) -> str | None:
    """Also skips bodies with 'me'/'my': 'Help me tell me a joke' is wrong."""
    if p.body.split()[0].lower() not in HELP_ME_VERBS or re.search(r"(?i)\b(me|my)\b", p.body):
        return None
    return f"Help me {p.body}."


_FINITE = AUX_WORDS | {"keep", "keeps", "get", "gets", "seem", "seems", "need", "needs",
                       "want", "wants", "work", "works", "won't", "isn't", "doesn't"}


def _is_phrase(p: Parsed) -> bool:
    """A short verbless heading ("VPN setup for a home office"), not a sentence."""
    ws = [w.lower() for w in p.Body.split()]
    return p.text[-1:].isalnum() and len(ws) <= 10 and not any(
        w in _FINITE or w.endswith("ed") for w in ws)


def _title_colon(p: Parsed) -> str | None:
    """"VPN setup for a home office:" is a natural heading-style prompt; "My VPN keeps
    dropping:" is not, so only phrases get it."""
    return f"{p.Body}:" if _is_phrase(p) else None


def _sentence_only(fn):
    """"Here's my situation: iPhone battery tips." reads wrong: sentences only."""
    return lambda p: None if _is_phrase(p) else fn(p)


def _plain_verb(fn):
    """"Can you don't cancel ...", "I need you to do not share ...": templates that put the
    body after "you" or "to" need it to open with a plain verb, not "do"/"don't"."""
    return lambda p: None if p.body.split()[0].lower() in DO_WORDS else fn(p)


def _q(p: Parsed) -> str:
    return p.Body + "?"


# Order is part of the public surface (`apply_template(text, index)`); append, never reorder.
TEMPLATES: list[Template] = [
    _t("please", "imperative", lambda p: f"Please {p.body}."),
    _t("can_you", "imperative", _plain_verb(lambda p: f"Can you {p.body}?")),
    _t("could_you", "imperative", _plain_verb(lambda p: f"Could you {p.body}?")),
    _t("i_need_you_to", "imperative", _plain_verb(lambda p: f"I need you to {p.body}.")),
    _t("colon", "imperative", lambda p: f"{p.Body}:"),
    _t("task", "imperative statement", lambda p: f"Task: {p.Body}."),
    _t("help_me", "imperative", _help_me),
    _t("id_like_you_to", "imperative", _plain_verb(lambda p: f"I'd like you to {p.body}.")),
    _t("your_task", "imperative", _plain_verb(lambda p: f"Your task is to {p.body}.")),
    _t("comma_please", "imperative", lambda p: f"{p.Body}, please."),
    _t("quick_question", "question", lambda p: f"Quick question: {p.body}?"),
    _t("question_label", "question", lambda p: f"Question: {_q(p)}"),
    _t("can_you_tell_me", "question",
       lambda p: f"Can you tell me {p.indirect}?" if p.indirect else None),
    _t("id_like_to_know", "question",
       lambda p: f"I'd like to know {p.indirect}." if p.indirect else None),
    _t("please_answer", "question", lambda p: f"Please answer this question: {_q(p)}"),
    _t("hey", "question", lambda p: f"Hey, {p.body}?"),
    _t("thanks", "question imperative",
       lambda p: f"{_q(p)} Thanks!" if p.form == "question" else f"{p.Body}. Thanks!"),
    _t("can_you_help", "statement", _sentence_only(lambda p: f"{p.Body}. Can you help?")),
    _t("situation", "statement", _sentence_only(lambda p: f"Here's my situation: {p.body}.")),
    _t("statement_colon", "statement", _title_colon),
    _t("block_task", "block", lambda p: f"Task:\n{p.text}"),
    _t("block_following", "block", lambda p: f"Please help with the following.\n\n{p.text}"),
    _t("block_request", "block", lambda p: f"Here is my request:\n\n{p.text}"),
    _t("block_thanks", "block", lambda p: f"{p.text}\n\nThanks in advance!"),
]
TEMPLATE_NAMES = [t.name for t in TEMPLATES]


_QUOTED_END = re.compile(r"([.!?][\"'”’)\]])[.:](?=\s|$)")
_PLEASE = re.compile(r"(?i)\bplease\b")


def _says_please_again(out: str, text: str) -> bool:
    """"Write a haiku about rain, please." must not become "..., please, please." or "Please
    write ..., please.": a frame adds no "please" to a text that already has one."""
    return len(_PLEASE.findall(out)) > max(1, len(_PLEASE.findall(text)))


def _render(parsed: Parsed, template: Template) -> str | None:
    if parsed.form not in template.forms:
        return None
    out = template.render(parsed)
    if not out:
        return None
    out = re.sub(r"\?\?$", "?", out)
    # A quotation that ends the prompt keeps its own full stop: '... "on the mat."' + "." reads
    # as doubled punctuation, so the frame's "." (or ":") goes.
    out = _QUOTED_END.sub(r"\1", out)
    if _says_please_again(out, parsed.text):
        return None
    # Never hand back the prompt itself as a "variant".
    if " ".join(out.casefold().split()) == " ".join(parsed.text.casefold().split()):
        return None
    return out


def apply_template(text: str, index: int) -> str | None:
    """TEMPLATES[index] applied to `text`, or None when that template does not fit its form.

    >>> apply_template("What is the capital of France?", TEMPLATE_NAMES.index("can_you_tell_me"))
    'Can you tell me what the capital of France is?'
    >>> apply_template("What is the capital of France?", TEMPLATE_NAMES.index("please")) is None
    True
    """
    return _render(parse(text), TEMPLATES[index])


def fitting_templates(text: str) -> list[tuple[int, str]]:
    """(index, rendered text) for every template that fits `text`."""
    parsed = parse(text)
    out = []
    for i, t in enumerate(TEMPLATES):
        r = _render(parsed, t)
        if r is not None:
            out.append((i, r))
    return out


def choose(text: str, n: int, seed: int) -> list[tuple[int, str]]:
    """`n` fitting templates for (seed, text), ordered by a per-template hash."""
    def rank(item):
        name = TEMPLATES[item[0]].name
        return hashlib.sha256(f"{seed}\x00{text}\x00{name}".encode("utf-8")).digest()

    return sorted(fitting_templates(text), key=rank)[:n]


class Templates:
    name = "templates"
    field = "prompt"
    prompt_version = "templates-v1"

    def __init__(self, cfg, backend=None):
        self.cfg = cfg
        self.n = cfg.templates_n
        self.seed = cfg.augment_seed if cfg.augment_seed is not None else 0

    def requests(self, rows: list[Row]) -> list[Request]:
        return [Request.make(self.name, self.field, row.prompt, "rules", "", self.prompt_version,
                             n=self.n, seed=self.seed) for row in rows]

    async def run(self, request: Request) -> Result:
        p = request.param_dict
        chosen = choose(request.source, p["n"], p["seed"])
        form = parse(request.source).form
        if not chosen:
            raise CandidateError(f"no template fits this {form}")
        problems = []
        if len(chosen) < p["n"]:
            problems.append(f"asked {p['n']}, only {len(chosen)} templates fit a {form}")
        return Result([Candidate(text, meta={"template": TEMPLATES[i].name, "template_index": i,
                                             "form": form})
                       for i, text in chosen], problems=problems)

    def estimate(self, request: Request) -> tuple[int, int]:
        return (0, 0)
