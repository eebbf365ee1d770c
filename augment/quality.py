"""Quality control for augmented training text: the stable front door of `augment.qc`.

Why QC exists: the seed rule kept a paraphrase when the MiniLM cosine to its original fell in
``0.70 < sim < 0.98``. Sentence embeddings are topic detectors: "How do I cancel my
subscription?" and "How do I *not* cancel my subscription?" score ~0.98, a swapped number or
name barely moves the score, an *answer* can look like a paraphrase, and a dropped constraint
("in 3 sentences") or a changed operation (summarise -> critique) hardly moves it at all. The
project QC adds invariants (numbers, names, URLs, placeholders, ...), polarity, answer and
perspective checks, per-method rules and a judge of instruction-level changes; see `augment/qc/`.

Public API (stable): :func:`measure_augmentation_quality`, :func:`score_pairs`,
:func:`check_variant_set`, :class:`QualityConfig`, :class:`QualityChecker`, :func:`load_model`,
:func:`make_checker`, :func:`judge_candidates`.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from .qc.checker import (QualityChecker, judge_candidates, make_checker, normalise_method,
                         qc_method, rules_digest)
from .qc.embed import load_model
from .qc.features import _features
from .qc.rules import ENGLISH_ONLY, _same_root
from .qc.settings import (DEFAULT_MODEL, JUDGES, METHODS, MODES, PARAPHRASE_LIKE, RUN_FIELDS,
                          SEED_SIM_MAX, SEED_SIM_MIN, QualityConfig)

__all__ = [
    "METHODS", "MODES", "JUDGES", "SEED_SIM_MIN", "SEED_SIM_MAX", "DEFAULT_MODEL", "RUN_FIELDS",
    "QualityConfig", "QualityChecker", "load_model", "make_checker", "judge_candidates",
    "qc_method", "get_default_checker", "measure_augmentation_quality", "score_pairs",
    "check_variant_set",
]

_DEFAULT_CHECKER: QualityChecker | None = None


def get_default_checker() -> QualityChecker:
    global _DEFAULT_CHECKER
    if _DEFAULT_CHECKER is None:
        _DEFAULT_CHECKER = QualityChecker(QualityConfig())
    return _DEFAULT_CHECKER


def measure_augmentation_quality(original: str, augmented: str, method: str | None = None) -> dict:
    """Score one pair with the default (project) checker.

    Keys: semantic_similarity, is_valid, length_ratio, unique_words, reasons (empty iff
    valid), plus method, mode and long_text (and judge_p_changed when the judge saw it).
    """
    return get_default_checker().measure(original, augmented, method)


def score_pairs(originals: Sequence[str], augmenteds: Sequence[str], method: str | None = None,
                **kwargs: Any) -> list[dict]:
    """Batched :func:`measure_augmentation_quality`; see :meth:`QualityChecker.score_pairs`."""
    return get_default_checker().score_pairs(originals, augmenteds, method, **kwargs)


def check_variant_set(original: str, variants: Sequence[str],
                      other_originals: Iterable[str] | None = None,
                      method: str | None = None) -> list[list[str]]:
    """Reasons per variant of one row, including near-duplicates among the variants and
    variants that equal another row's original."""
    return get_default_checker().check_variant_set(original, variants, other_originals, method)
