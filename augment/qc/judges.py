"""Judges of instruction-level changes: a second opinion on requests the rules accepted.

Why: the rules see numbers, names, negation and answers, but not a dropped constraint ("in 3
sentences"), an added one, a changed operation (summarise -> critique), a request cut to one of
its parts, a changed output format, a vaguer task or a flipped perspective. Sentence embeddings
carry much of that in *how* the two vectors differ, not in their cosine.

`HeadJudge` is a small gradient-boosted tree ensemble over features of the pair taken from a
frozen encoder (all-mpnet-base-v2, `embed.JUDGE_ENCODER`; MiniLM features caught 35% of the
written meaning changes at 95% of faithful rewrites kept, mpnet's 47%): the pooled cosine, and
how well each content word piece of one text is covered by the other's (contextual token
vectors, max cosine): the least-covered pieces of the original show a dropped constraint or
part, those of the candidate an added one. A few lexical counts (content words dropped /
added, first- and second-person words, sentences) join them. A head trained with `train_judge
--attention` also reads the P(changed) of a small attention model over the same word-piece
vectors (`attention.py`; tried, not shipped). It is trained offline by `python -m
augment.qc.train_judge` ONLY on pairs that augtune generates by rules from request text written
for it (faithful rewrites vs perturbations of the kinds above), and ships as `judge_head.npz`
(tens of KB; plain arrays, read with numpy, and the name of the encoder its features come
from). Beside the trees, a cross-encoder (`cross.py`: MiniLM reading both texts at once, LoRA
adapters shipped in `judge_cross.npz`) gives its own P(changed); the judge averages the two in
logits: it sees who does what to whom, which features of two separately encoded texts cannot.
The LLM judge (`llm_judge.py`) asks a model about the borderline band.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Sequence

import numpy as np

from .features import _TASK_GROUPS, _Features, _stem
from .words import _COORDINATORS, _FIRST_PERSON, _FORMAT_WORDS, _LIMIT_WORDS, _STOPWORDS

HEAD_PATH = Path(__file__).resolve().parent / "judge_head.npz"
_SECOND = frozenset({"you", "your", "yours", "yourself"})
FEATURE_NAMES = (
    "cosine", "orig_cover_min", "orig_cover_min2", "orig_cover_mean", "orig_share_below_0.5",
    "orig_n_below_0.6", "orig_n_below_0.4", "cand_cover_min", "cand_cover_min2",
    "cand_cover_mean", "cand_share_below_0.5", "cand_n_below_0.6", "cand_n_below_0.4",
    "log_length_ratio", "cand_is_request", "orig_question", "cand_question",
    "content_dropped", "content_added", "first_person_lost", "second_person_gained",
    "sentences_lost", "format_lost", "format_added", "task_lost", "task_added", "limit_lost",
    "limit_added", "coordinators_lost")


def _stems_in(f: _Features, vocab: frozenset[str]) -> set[str]:
    return {_stem(w) for w in f.lower_words if w in vocab or w.rstrip("s") in vocab}


def _task_groups(f: _Features) -> set[int]:
    return {g for w in f.lower_words for g in _TASK_GROUPS.get(w, ())}


def lexical_features(fo: _Features, fc: _Features) -> list[float]:
    """Output forms, request verbs and limiting words one text has and the other lacks, and
    lost coordinators (a multi-part request cut to one part)."""
    fmt_o, fmt_c = _stems_in(fo, _FORMAT_WORDS), _stems_in(fc, _FORMAT_WORDS)
    task_o, task_c = _task_groups(fo), _task_groups(fc)
    lim_o, lim_c = fo.word_set & _LIMIT_WORDS, fc.word_set & _LIMIT_WORDS
    return [len(fmt_o - fmt_c), len(fmt_c - fmt_o), len(task_o - task_c), len(task_c - task_o),
            len(lim_o - lim_c), len(lim_c - lim_o),
            len(_COORDINATORS.findall(fo.text)) - len(_COORDINATORS.findall(fc.text))]


def _coverage(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each row of `a`: its best cosine to any row of `b`, ascending."""
    if len(a) == 0 or len(b) == 0:
        return np.ones(1, dtype=np.float32)
    return np.sort((a @ b.T).max(1))


def pair_features(so: np.ndarray, sc: np.ndarray, to: np.ndarray, tc: np.ndarray,
                  fo: _Features, fc: _Features) -> np.ndarray:
    """One pair's input to the head (`FEATURE_NAMES`). `so`, `sc`: unit sentence vectors;
    `to`, `tc`: unit token vectors of the content pieces (`embed.judge_vectors`)."""
    co, cc = _coverage(to, tc), _coverage(tc, to)
    o_content = {_stem(w) for w in fo.lower_words if w not in _STOPWORDS and len(w) > 2}
    c_content = {_stem(w) for w in fc.lower_words if w not in _STOPWORDS and len(w) > 2}
    return np.array([
        float(so @ sc),
        co[0], co[:2].mean(), co.mean(), (co < 0.5).mean(), (co < 0.6).sum(), (co < 0.4).sum(),
        cc[0], cc[:2].mean(), cc.mean(), (cc < 0.5).mean(), (cc < 0.6).sum(), (cc < 0.4).sum(),
        np.log(max(len(fc.words), 1) / max(len(fo.words), 1)), fc.is_request,
        "?" in fo.text, "?" in fc.text,
        len(o_content - fc.stems) / max(len(o_content), 1),
        len(c_content - fo.stems) / max(len(c_content), 1),
        bool(fo.word_set & _FIRST_PERSON) - bool(fc.word_set & _FIRST_PERSON),
        bool(fc.word_set & _SECOND) - bool(fo.word_set & _SECOND),
        fo.sentences - fc.sentences, *lexical_features(fo, fc),
    ], dtype=np.float64)


def encode(texts: Sequence[str], encoder: str, device: str = "cpu",
           batch_size: int = 32) -> tuple[dict, dict]:
    """Unit sentence vectors and content-piece vectors of the distinct `texts` (one pass)."""
    from .embed import judge_vectors, load_model
    return judge_vectors(load_model(encoder, device), texts, batch_size, skip=_STOPWORDS)


def feature_matrix(pairs: Sequence[tuple[str, str]], feats: dict, sent: dict, pieces: dict,
                   attention_w: dict | None = None) -> np.ndarray:
    """`pair_features` of each pair, and the attention model's P(changed) after them when the
    head has one (`attention_w`, the arrays of `attention.load`)."""
    from .attention import p_changed
    rows = []
    for o, c in pairs:
        x = pair_features(sent[o], sent[c], pieces[o], pieces[c], feats[o], feats[c])
        if attention_w is not None:
            x = np.append(x, p_changed(attention_w, pieces[o], pieces[c],
                                       float(sent[o] @ sent[c])))
        rows.append(x)
    return np.stack(rows)


def encoder_features(pairs: Sequence[tuple[str, str]], feats: dict, encoder: str,
                     attention_w: dict | None = None, device: str = "cpu",
                     batch_size: int = 32) -> np.ndarray:
    """`feature_matrix` of each pair from `encoder` (one pass over the distinct texts): what a
    build computes. `feats`: text -> `features._features`."""
    sent, pieces = encode([t for p in pairs for t in p], encoder, device, batch_size)
    return feature_matrix(pairs, feats, sent, pieces, attention_w)


#: What each judge file must hold (`train_judge`'s `_export` and `_calibrate_cross` write them).
HEAD_KEYS = ("feature", "thresh", "left", "right", "value", "roots", "init", "rate", "threshold",
             "encoder")
CROSS_KEYS = ("weight", "threshold", "scaling", "out_w", "out_b")


def file_refusal(path, keys: Sequence[str]) -> str | None:
    """Why `path` (a path or an open binary file) cannot be a judge file holding `keys` (said
    after the file's name), or None.

    Why here: a wrong file (the two swapped, a stray array, an encoder nothing ships, a pooling
    this version does not know) otherwise ends in a KeyError or a hub download deep inside the
    first judged batch, minutes into a build."""
    from .cross import POOLINGS
    from .embed import PACKAGED_ENCODERS
    try:
        d = np.load(path)  # allow_pickle stays off: a stray pickle is refused, not run
    except (OSError, ValueError) as e:  # absent, unreadable, not numpy's at all
        return f"cannot be read ({type(e).__name__})"
    if not isinstance(d, np.lib.npyio.NpzFile):
        return "is one array, not an .npz of arrays"
    with d:
        missing = sorted(set(keys) - set(d.files))
        try:  # an object array (pickled) is refused here too
            encoder = str(d["encoder"]) if "encoder" in d.files else None
            pooling = str(d["pooling"]) if "pooling" in d.files else None
        except ValueError as e:
            return f"holds a name that cannot be read ({e})"
    if missing:
        return f"lacks {', '.join(missing)}"
    if encoder is not None and encoder not in PACKAGED_ENCODERS:
        return (f"names the encoder {encoder}; the judge loads the packaged "
                f"{' or '.join(PACKAGED_ENCODERS)} only")
    if pooling is not None and pooling not in POOLINGS:
        return f"pools by {pooling!r}, not one of {', '.join(POOLINGS)}"
    return None


def _load_arrays(path: Path, what: str, how: str, keys: Sequence[str]) -> tuple[dict, bytes]:
    """The arrays of one of the judge's npz files and its bytes (for the fingerprint), read
    once; a missing file says how to rebuild it, a wrong one what is wrong with it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the QC {what} is missing; rebuild it with {how}, "
                                "or set qc_judge: none.")
    from ..errors import ConfigError
    raw = path.read_bytes()
    why = file_refusal(io.BytesIO(raw), keys)
    if not why:
        try:
            with np.load(io.BytesIO(raw)) as d:
                return {k: d[k] for k in d.files}, raw
        except ValueError as e:  # an object (pickled) array: never unpickled
            why = f"holds an array that cannot be read ({e})"
    raise ConfigError(f"{path}: this QC {what} {why}; rebuild it with {how}, or set "
                      "qc_judge: none.")


class HeadJudge:
    """Gradient-boosted trees over `pair_features`, stored as flat arrays in `judge_head.npz`
    (sklearn's tree layout: feature, threshold, left, right, value per node; trees laid end to
    end, `roots` gives each tree's first node), with `encoder`, the sentence encoder whose
    features it was trained on; that encoder is loaded on the first `judge` call."""

    def __init__(self, threshold: float | None = None, path: Path | str = HEAD_PATH,
                 device: str = "cpu", batch_size: int = 32,
                 cross_path: Path | str | None = "auto") -> None:
        path = Path(path)
        d, raw = _load_arrays(path, "judge head",
                              "`python -m augment.qc.train_judge` (a few minutes on CPU)", HEAD_KEYS)
        self.feature, self.thresh = d["feature"], d["thresh"]
        self.left, self.right, self.value = d["left"], d["right"], d["value"]
        self.roots, self.init, self.rate = d["roots"], float(d["init"]), float(d["rate"])
        # The cross-encoder (cross.py) was calibrated against the shipped trees: it joins them
        # by default only; "auto" = the shipped one with the shipped head, none with another.
        if cross_path == "auto":
            from .cross import CROSS_PATH
            cross_path = CROSS_PATH if path.resolve() == HEAD_PATH else None
        self.cross_arrays, self.cross_path, self._cross = None, None, None
        own = float(d["threshold"])
        digest = hashlib.sha256(raw)
        if cross_path is not None:
            self.cross_path = Path(cross_path)
            self.cross_arrays, raw = _load_arrays(self.cross_path, "judge's cross-encoder",
                                                  "`python -m augment.qc.train_judge --cross`",
                                                  CROSS_KEYS)
            c = self.cross_arrays
            self.cross_weight, own = float(c["weight"]), float(c["threshold"])
            digest.update(raw)
        self.threshold = own if threshold is None else float(threshold)
        self.encoder = str(d["encoder"])
        from .attention import load
        self.attention = load(d)  # None for the shipped head (see train_judge --attention)
        from .embed import require_encoder
        require_encoder(self.encoder)  # a missing encoder stops a build before its first request
        self.device, self.batch_size = device, batch_size
        self._digest = digest.hexdigest()

    def fingerprint(self) -> str:
        return f"head:{self._digest}:{self.threshold}"

    def p_changed(self, X: np.ndarray) -> np.ndarray:
        """The trees' P(changed) for rows of `feature_matrix` (without the cross-encoder)."""
        X = np.atleast_2d(X)
        raw = np.full(len(X), self.init)
        rows = np.arange(len(X))
        for root in self.roots:
            node = np.full(len(X), root)
            while True:
                leaf = self.left[node] < 0
                if leaf.all():
                    break
                go_left = X[rows, np.maximum(self.feature[node], 0)] <= self.thresh[node]
                nxt = np.where(go_left, self.left[node], self.right[node])
                node = np.where(leaf, node, nxt)
            raw += self.rate * self.value[node]
        return 1.0 / (1.0 + np.exp(-raw))

    def cross_encoder(self):
        """The cross-encoder, built on first use (a copy of its encoder's weights): `judge`
        calls it; call it ahead to have a file whose adapters do not fit refused up front."""
        if self._cross is None:
            from .cross import CrossEncoder
            self._cross = CrossEncoder(self.cross_arrays, self.device, source=str(self.cross_path))
        return self._cross

    def judge(self, pairs: Sequence[tuple[str, str]], feats: dict) -> list[dict]:
        """`feats`: text -> `features._features` for every text of `pairs`."""
        if not pairs:
            return []
        X = encoder_features(pairs, feats, self.encoder, self.attention, self.device,
                             self.batch_size)
        p_all = self.p_changed(X)
        if self.cross_arrays is not None:
            from .cross import combine
            p_all = combine(p_all, self.cross_encoder().p_changed(pairs), self.cross_weight)
        out = []
        for p in p_all:
            p = float(p)
            reason = (f"judge: the request likely changed (p={p:.2f} >= {self.threshold:.2f})"
                      if p >= self.threshold else None)
            out.append({"p_changed": p, "reason": reason})
        return out


def make_judge(cfg, run_cfg=None, store=None):
    """The judge for `cfg.judge`: 'head', or 'llm' (the head plus the run's LLM backend for the
    borderline band; needs `run_cfg`, the run's `AugmentConfig`, for the backend settings).

    The LLM's wiring lives in `llm_judge.make_llm_judge`, outside `checker.RULE_MODULES`: this
    file's code is part of every cache's QC fingerprint, and a change to how verdicts are
    requested must not make every head-judged cache judge its candidates again."""
    head = HeadJudge(cfg.judge_threshold, device=cfg.device)
    if cfg.judge != "llm":
        return head
    from .llm_judge import make_llm_judge
    return make_llm_judge(head, cfg, run_cfg, store)
