"""`consistency_peak_memory_ratio`: peak memory of training steps with the consistency term on
(`consistency_weight: 1`) against the very same steps with it off, on the 128k-vocabulary model.

Setup (the baseline is in this file): the Llama of `peak_memory_vs_trl` (vocabulary 128,256,
hidden 64, 2 layers, full fine-tune), batch 8 x 512 tokens made of 4 pairs: a demo prompt with a
long answer, then an instruction template of the same prompt with the same answer, so nearly all
of each pair's ~480 answer tokens are shared and go through the term. Both sides are
`AugmentedSFTTrainer` + `AugmentingCollator` with the examples in order (pairs at (2k, 2k+1), as
the RatioSampler places them); only `consistency_weight` differs. Each side runs in its own child
process (`vs_trl.side`), both started together with one torch thread each, and reports VmHWM -
VmRSS before step 1 after resetting the high-water mark (see bench/figures/vs_trl.py for why
that is the honest measure for torch CPU tensors). For scale: the term's full distributions for
those ~1,900 shared tokens would be 2 x 1,900 x 128,256 x 4 B = 1.9 GB; it builds 66 tokens'
worth at a time (augment/consistency.py).
"""

from __future__ import annotations

import torch.utils.data

from bench.figures.vs_trl import VOCAB, big_vocab_model_dir, long_examples, run_sides, step_times
from bench.harness import entry, loadavg, rnd, scratch_dir


class InOrder(torch.utils.data.SequentialSampler):
    """The examples in order, declared as consistency pairs (the trainer checks the flag)."""
    consistency_pairs = True


def paired_examples(n: int, min_words: int) -> list[dict]:
    """n examples: n/2 originals, each followed by a template rewording with the same answer."""
    from augment.methods.templates import fitting_templates
    out = []
    for i, e in enumerate(long_examples(n // 2, min_words)):
        variant = next((t for _, t in fitting_templates(e["prompt"]) if t != e["prompt"]),
                       "Please answer this: " + e["prompt"])
        out += [{**e, "source": "original", "similarity": 1.0, "row_id": f"r{i}"},
                {**e, "prompt": variant, "source": "templates", "similarity": 0.9,
                 "row_id": f"r{i}"}]
    return out


def fig_consistency_peak_memory_ratio(S) -> dict:
    vocab, hidden, length, batch = S.pick((VOCAB, 64, 512, 8), (VOCAB, 64, 512, 8), (49152, 32, 64, 2))
    # The high-water mark is reset before the first step, so one step measures the peak; a step
    # at this size takes 1-4 minutes on one shared CPU thread.
    steps = S.pick(1, 2, 1)
    model = big_vocab_model_dir(vocab, hidden, 2, max(length, 512))
    work = scratch_dir("augtune-bench-consistency-")
    base = dict(model=model, kind="augtune", warm=0, steps=steps, batch=batch, max_length=length,
                examples=paired_examples(batch * steps, int(length * 1.2)))
    recs = run_sides({"off": {**base, "consistency_weight": 0.0},
                      "on": {**base, "consistency_weight": 1.0}}, work)
    mib = 2 ** 20
    on, off = (recs[k]["hwm"] - recs[k]["rss_before"] for k in ("on", "off"))
    value = on / off
    return entry(value, "x (peak resident memory of the training steps, consistency on / off)",
                 "the same AugmentedSFTTrainer steps on the same pairs with consistency_weight 0",
                 "<= 1.3", value <= 1.3,
                 on_step_peak_mib=rnd(on / mib), off_step_peak_mib=rnd(off / mib),
                 shared_tokens_full_fp32_distributions_mib=rnd(
                     2 * (batch // 2) * (length - 32) * vocab * 4 / mib),
                 hwm_reset=recs["on"]["hwm_reset"] and recs["off"]["hwm_reset"],
                 step_s_on=[rnd(x) for x in step_times(recs["on"], 0)],
                 step_s_off=[rnd(x) for x in step_times(recs["off"], 0)],
                 setup=f"Llama vocab {vocab}, hidden {hidden}, 2 layers (random weights, SmolLM2 "
                       f"tokenizer), full fine-tune, batch {batch} x {length} tokens = "
                       f"{batch // 2} pairs (original, template rewording, same long answer), "
                       f"CPU fp32, 1 torch thread per side, {steps} step(s), both sides started "
                       "together",
                 memory="per side: VmHWM - VmRSS before step 1, high-water mark reset "
                        "(/proc/self/clear_refs) after model and trainer were built",
                 loadavg_after_sides=loadavg())
