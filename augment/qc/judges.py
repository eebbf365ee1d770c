"""Judges of instruction-level changes: a second opinion on requests the rules accepted.

Why: the rules see numbers, names, negation and answers, but not a dropped constraint ("in 3
sentences"), an added one, a changed operation (summarise -> critique), a request cut to one of
its parts, a changed output format, a vaguer task or a flipped perspective. Sentence embeddings
carry much of that in *how* the two vectors differ, not in their cosine.

`HeadJudge` is a logistic-regression head over frozen MiniLM features of the pair (the two
unit embeddings' product and difference, plus a few lexical counts). It is trained offline by
`python -m augment.qc.train_judge` ONLY on pairs that augtune generates by rules from request
text written for it (faithful rewrites vs perturbations of the kinds above), and ships as
`judge_head.npz` (a few hundred KB). The LLM judge (`llm_judge.py`) asks a model about the
borderline band.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from .features import _Features, _stem
from .words import _FIRST_PERSON, _SECOND_POSSESSIVE, _STOPWORDS

HEAD_PATH = Path(__file__).resolve().parent / "judge_head.npz"
_SECOND = frozenset({"you", "your", "yours", "yourself"})


def pair_features(u: np.ndarray, v: np.ndarray, fo: _Features, fc: _Features) -> np.ndarray:
    """One pair's input to the head. `u`, `v`: unit embeddings of original and candidate.

    The signed difference keeps the direction (a constraint dropped vs added); the product
    keeps what both share. The lexical counts are there because MiniLM hardly moves for one
    dropped word that changes the task ("for beginners")."""
    o_content = {_stem(w) for w in fo.lower_words if w not in _STOPWORDS and len(w) > 2}
    c_content = {_stem(w) for w in fc.lower_words if w not in _STOPWORDS and len(w) > 2}
    dropped = len(o_content - fc.stems) / max(len(o_content), 1)
    added = len(c_content - fo.stems) / max(len(c_content), 1)
    n_o, n_c = max(len(fo.words), 1), max(len(fc.words), 1)
    scal = np.array([
        float(u @ v), np.log(n_c / n_o), dropped, added,
        len(fo.entities - fc.entity_words) > 0, len(fc.entities - fo.entity_words) > 0,
        len(fo.numbers ^ fc.numbers) > 0,
        bool(fo.word_set & _FIRST_PERSON), bool(fc.word_set & _FIRST_PERSON),
        bool(fo.word_set & _SECOND), bool(fc.word_set & _SECOND),
        bool(fo.word_set & _SECOND_POSSESSIVE) != bool(fc.word_set & _SECOND_POSSESSIVE),
        "?" in fo.text, "?" in fc.text, fc.is_request, fo.sentences - fc.sentences,
    ], dtype=np.float32)
    return np.concatenate([u * v, u - v, np.abs(u - v), scal]).astype(np.float32)


class HeadJudge:
    """Logistic regression over `pair_features`; weights from `judge_head.npz`."""

    def __init__(self, threshold: float = 0.5, path: Path | str = HEAD_PATH) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: the QC judge head is missing; rebuild it with `python -m "
                "augment.qc.train_judge` (a few minutes on CPU), or set qc_judge: none.")
        data = np.load(path)
        self.mean, self.scale = data["mean"], data["scale"]
        self.w, self.b = data["w"], float(data["b"])
        self.threshold = threshold
        self._digest = hashlib.sha256(path.read_bytes()).hexdigest()

    def fingerprint(self) -> str:
        return f"head:{self._digest}:{self.threshold}"

    def p_changed(self, X: np.ndarray) -> np.ndarray:
        z = ((X - self.mean) / self.scale) @ self.w + self.b
        return 1.0 / (1.0 + np.exp(-z))

    def judge(self, pairs: Sequence[tuple[str, str]], emb: dict, feats: dict) -> list[dict]:
        if not pairs:
            return []
        X = np.stack([pair_features(emb[o], emb[c], feats[o], feats[c]) for o, c in pairs])
        out = []
        for p in self.p_changed(X):
            p = float(p)
            reason = (f"judge: the request likely changed (p={p:.2f} >= {self.threshold:.2f})"
                      if p >= self.threshold else None)
            out.append({"p_changed": p, "reason": reason})
        return out


def make_judge(cfg):
    """The judge for `cfg.judge` ('head' or 'llm'); the LLM judge wraps the head."""
    head = HeadJudge(cfg.judge_threshold)
    if cfg.judge == "llm":
        from .llm_judge import LLMJudge
        return LLMJudge(head, cfg)
    return head
