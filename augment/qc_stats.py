"""How sure a QC operating point is: the cosine threshold raised to a recall, the judge's
threshold swept to a recall over many resamples at once, both curves whole (for the plot),
cluster-bootstrap draws, and 95% intervals (Wilson's for one share, percentiles of resampled
changes, a t-interval over sets).

Why its own module: these are plain statistics over arrays, with no QC in them, and everything
`augment.qc_eval` prints as "95%" comes from here. A held-out set has 110-130 pairs of each
kind, so a false-accept share of 0.15 is known to about +-0.06: a change smaller than its
interval is not shown to be one.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def threshold_far_at_recall(sims: np.ndarray, is_pos: np.ndarray, recall: float) -> tuple[float, float]:
    """(threshold, FAR) of `accept iff sim >= threshold`, raised as far as it can go while
    keeping at least `recall` of the paraphrases."""
    pos = np.sort(sims[is_pos])[::-1]
    k = max(int(np.ceil(recall * len(pos) - 1e-9)), 1)
    t = float(pos[k - 1])
    return t, float((sims[~is_pos] >= t).mean())


def at_recall(is_pos: np.ndarray, ok: np.ndarray, p: np.ndarray, recall,
              weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`augment.qc_eval.judge_at_recall` for many resamples at once: each row of `weights` (shape (B, n), how
    often each pair is drawn; None = every pair once) is one sample, `recall` its target (one
    for all or one each). Returns (threshold, recall, far) arrays of length B, NaN where the
    rules alone keep less (in a resample the threshold can be the P(changed) of a pair it did
    not draw: the same verdicts on those it did). Accept = rules accept and (judge never saw it
    or p < threshold); the thresholds tried are every distinct P(changed) of a pair the rules
    accept, then infinity."""
    W = np.ones((1, len(p))) if weights is None else np.atleast_2d(weights).astype(float)
    target = np.broadcast_to(np.asarray(recall, dtype=float), (len(W),))
    thresholds, rec, far = _judge_sweep(is_pos, ok, p, W)
    meets = rec >= target[:, None] - 1e-12
    first, any_ = meets.argmax(1), meets.any(1)
    b = np.arange(len(W))
    return tuple(np.where(any_, x, np.nan) for x in
                 (thresholds[first], rec[b, first], far[b, first]))


def judge_sweep(is_pos: np.ndarray, ok: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, ...]:
    """(thresholds, recall, far) of rules + judge at every judge threshold that changes a
    verdict (the curve `qc_eval --plot` draws; `at_recall` reads one point of it)."""
    thresholds, rec, far = _judge_sweep(is_pos, ok, p, np.ones((1, len(p))))
    return thresholds, rec[0], far[0]


def _judge_sweep(is_pos, ok, p, W):
    seen = ~np.isnan(p)
    judged = np.flatnonzero(seen & ok)
    judged = judged[np.argsort(p[judged], kind="stable")]
    ps = p[judged]
    thresholds = np.append(np.unique(ps), np.inf)
    below = np.searchsorted(ps, thresholds, side="left")  # judged pairs with p < threshold

    def accepted(label: np.ndarray) -> np.ndarray:  # (B, thresholds): weight accepted
        always = W[:, ok & ~seen & label].sum(1)
        running = np.cumsum(W[:, judged] * label[judged], axis=1)
        running = np.concatenate([np.zeros((len(W), 1)), running], axis=1)
        return always[:, None] + running[:, below]
    with np.errstate(invalid="ignore", divide="ignore"):
        rec = accepted(is_pos) / W[:, is_pos].sum(1)[:, None]
        far = accepted(~is_pos) / W[:, ~is_pos].sum(1)[:, None]
    return thresholds, rec, far


def cosine_curve(sims: np.ndarray, is_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, far) of `accept iff sim >= t` for every t among the pairs' similarities, from
    the strictest to the loosest: the cosine-alone curve every QC point is compared with.

    >>> r, f = cosine_curve(np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, False, True, False]))
    >>> r.tolist(), f.tolist()
    ([0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0])
    """
    t = np.sort(np.unique(sims))[::-1]
    pos, neg = np.sort(sims[is_pos]), np.sort(sims[~is_pos])
    kept = lambda x: (len(x) - np.searchsorted(x, t, side="left")) / max(len(x), 1)  # noqa: E731
    return kept(pos), kept(neg)


#: Resamples behind every 95% interval `compare_judges` prints.
BOOTSTRAP = 2000


def resample(groups: Sequence, n: int, seed: int) -> np.ndarray:
    """Bootstrap draw counts, shape (n, pairs): originals drawn with replacement, each with all
    its pairs (`groups`: the original of each pair).

    Why originals, not pairs: a held-out set gives each original one faithful rewrite and one
    meaning change, and both are easy or hard together; drawing pairs alone would treat them
    as independent and narrow the intervals. Drawing whole originals keeps each set's balance."""
    _, group = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    k = group.max() + 1 if len(group) else 0
    counts = np.random.default_rng(seed).multinomial(k, np.full(k, 1 / k), size=n) if k else \
        np.zeros((n, 0))
    return counts[:, group].astype(float)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of the share k / n (sound near 0 and 1, where the normal
    approximation is not).

    >>> [round(x, 3) for x in wilson(12, 100)]
    [0.07, 0.198]
    """
    if not n:
        return (float("nan"), float("nan"))
    share, z2 = k / n, z * z
    centre = (share + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(share * (1 - share) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))



def interval(deltas: np.ndarray) -> str:
    """'[low, high]' of the middle 95% of resampled changes (those that exist)."""
    lo, hi = np.nanpercentile(deltas, [2.5, 97.5])
    return f"[{lo:+.3f}, {hi:+.3f}]"


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """95% t-interval of the mean of `values` (each one draw, e.g. one writer's set): wider than
    a pooled interval with few draws, because it counts how the draws differ."""
    from scipy import stats
    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)
