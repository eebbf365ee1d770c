"""`qc_speedup_vs_seed` (baseline: the seed's per-pair function, bench/seed_qc.py),
`qc_overhead_vs_encode` (the rules; baseline: one bare model.encode of the same texts) and
`qc_judge_cost` (the judge head's encoder pass; baseline: the same scoring with the judge off)."""

from __future__ import annotations

import json
import random

from bench.harness import ROOT, demo_rows, entry, interleaved, med, perf, rnd, timed


FRAMES = ("Could you tell me: {s}", "Quick question: {s}", "I would like to know: {s}",
          "Please help with this: {s}", "Hi there. {s} Thanks!", "Can you explain: {s}",
          "Here is what I need to know: {s}", "{s} Any advice?")


def qc_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """n (original, variant) pairs of demo text: the held-out human paraphrases of the eval
    prompts first, then framed rewrites of train prompts (distinct variants)."""
    evals = {r.id: r.prompt for r in demo_rows("eval")}
    origs, augs = [], []
    with open(ROOT / "data" / "demo" / "eval_paraphrases.jsonl") as f:
        for line in f:
            d = json.loads(line)
            if d["source_id"] in evals:
                origs.append(evals[d["source_id"]])
                augs.append(d["prompt"])
    train = [r.prompt for r in demo_rows("train")]
    combos = [(p, fr) for p in train for fr in FRAMES]
    random.Random(seed).shuffle(combos)
    for p, fr in combos:
        if len(origs) >= n:
            break
        origs.append(p)
        augs.append(fr.format(s=p))
    return origs[:n], augs[:n]


def fig_qc_speedup_vs_seed(S) -> dict:
    from augment.quality import QualityChecker, QualityConfig
    from bench.seed_qc import measure_augmentation_quality as seed_measure
    n_seed, n_ours = S.pick(10, 20, 2), S.pick(500, 1000, 16)
    o, a = qc_pairs(max(n_seed, n_ours))
    seed_measure(o[0], a[0])  # warm-up: imports, file cache
    t = perf()
    for x, y in zip(o[:n_seed], a[:n_seed]):
        seed_measure(x, y)
    seed_rate = n_seed / (perf() - t)
    checker = QualityChecker(QualityConfig(mode="project"))
    t = perf()
    checker.score_pairs(o[:n_ours], a[:n_ours], "paraphrase")
    cold_rate = n_ours / (perf() - t)
    ts = timed(lambda: checker.score_pairs(o[:n_ours], a[:n_ours], "paraphrase"),
               repeat=S.pick(3, 3, 1), warmup=0)
    rate = n_ours / med(ts)
    value = rate / seed_rate
    return entry(value, "x (pairs/s)",
                 "bench/seed_qc.py: seed per-pair function, loads the model every call",
                 ">= 50", value >= 50,
                 seed_pairs_per_s=rnd(seed_rate), seed_pairs=n_seed,
                 ours_pairs_per_s=rnd(rate), ours_pairs=n_ours,
                 ours_cold_pairs_per_s_incl_model_load=rnd(cold_rate),
                 ratio_cold=rnd(cold_rate / seed_rate),
                 timing="seed: one warm-up call then mean over its pairs; ours: median of "
                        "repeats after a first (cold, model-loading) call, project mode",
                 pairs="demo eval prompts vs held-out human paraphrases, then framed rewrites "
                       "of train prompts")


def fig_qc_overhead_vs_encode(S) -> dict:
    """The rules' own cost over the MiniLM pass they need; the judge (a second encoder) is
    `qc_judge_cost`."""
    from augment.quality import QualityChecker, QualityConfig
    n = S.pick(384, 768, 16)
    o, a = qc_pairs(n)
    checker = QualityChecker(QualityConfig(mode="project", judge="none"))
    model = checker.model
    distinct = list(dict.fromkeys(o + a))
    bs = checker.config.batch_size

    def encode():
        model.encode(distinct, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True,
                     show_progress_bar=False)

    t = interleaved({"score": lambda: checker.score_pairs(o, a, "paraphrase"), "encode": encode},
                    repeat=S.pick(3, 5, 1), warmup=1)
    value = med(t["score"]) / med(t["encode"])
    return entry(value, "x (time, score_pairs / encode)",
                 "one bare model.encode of the same distinct texts, same batch size",
                 "<= 1.15", value <= 1.15,
                 pairs=n, distinct_texts=len(distinct), batch_size=bs,
                 score_pairs_s=rnd(med(t["score"])), encode_s=rnd(med(t["encode"])),
                 timing=f"median of {len(t['score'])}, 1 warm-up, interleaved; project mode, "
                        "judge off (see qc_judge_cost)")


def fig_qc_judge_cost(S) -> dict:
    """What the default judge (trees over all-mpnet-base-v2 vectors, run on the requests the
    rules accept) adds to scoring: time with it / time without it, same pairs, same process."""
    from augment.quality import QualityChecker, QualityConfig
    n = S.pick(192, 384, 8)
    o, a = qc_pairs(n)
    rules = QualityChecker(QualityConfig(mode="project", judge="none"))
    judged = QualityChecker(QualityConfig(mode="project"), model=rules.model)
    res = judged.score_pairs(o[:4], a[:4], "paraphrase")  # warm-up: loads both encoders
    res = judged.score_pairs(o, a, "paraphrase")
    asked = sum("judge_p_changed" in r for r in res)
    t = interleaved({"judge": lambda: judged.score_pairs(o, a, "paraphrase"),
                     "rules": lambda: rules.score_pairs(o, a, "paraphrase")},
                    repeat=S.pick(3, 5, 1), warmup=0)
    value = med(t["judge"]) / med(t["rules"])
    return entry(value, "x (time, judge on / judge off)",
                 "the same score_pairs with qc_judge: none (MiniLM + rules only)", "report", True,
                 pairs=n, judged_pairs=asked, judge_on_s=rnd(med(t["judge"])),
                 judge_off_s=rnd(med(t["rules"])),
                 ms_per_judged_pair=rnd(1000 * (med(t["judge"]) - med(t["rules"])) / max(asked, 1)),
                 timing=f"median of {len(t['judge'])}, after a warm-up call, interleaved")
