"""`padding_free_tokens_per_s`: augtune's trainer with `padding_free: true` (one flattened row per
batch, position_ids restarting per example) against the same trainer with padded batches, on the
demo's own examples (mixed lengths, as in a real instruction set). Reported, no goal: on CPU
attention over a packed row is a dense block-diagonal mask, so the win is the padding the
MLP, LM head and loss no longer compute; on a GPU with flash attention it is TRL's fastest path.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.figures.vs_trl import run_sides, step_times
from bench.harness import demo_rows, entry, loadavg, rnd, scratch_dir, tiny_model_dir


def fig_padding_free_tokens_per_s(S) -> dict:
    warm, steps, pairs = S.pick(2, 3, 1), S.pick(8, 20, 2), S.pick(2, 3, 1)
    batch, length = S.pick(8, 8, 2), 256
    model = tiny_model_dir(*((64, 2) if S.smoke else (256, 4)))
    rows = demo_rows("train")
    exs = [{"prompt": r.prompt, "completion": r.completion} for r in rows][:batch * (warm + steps)]
    work = scratch_dir("augtune-bench-pf-")
    base = dict(kind="augtune", model=model, warm=warm, steps=steps, batch=batch,
                max_length=length, examples=exs)
    ratios, flat_tps, pad_tps, fill = [], [], [], []
    for i in range(pairs):
        recs = run_sides({f"flat{i}": {**base, "padding_free": True},
                          f"padded{i}": {**base, "padding_free": False}}, work)
        tps = {}
        for name, rec in recs.items():
            t = step_times(rec, warm)
            tps[name] = sum(rec["tokens"][warm:warm + len(t)]) / sum(t)
        flat_tps.append(tps[f"flat{i}"])
        pad_tps.append(tps[f"padded{i}"])
        ratios.append(flat_tps[-1] / pad_tps[-1])
        p = recs[f"padded{i}"]
        fill.append(sum(p["tokens"]) / sum(p["fed"]))
    value = statistics.mean(ratios)
    return entry(value, "x (real tokens per second, padding-free / padded)",
                 "the same AugmentedSFTTrainer run with padded batches, run concurrently",
                 "report", True,
                 pair_ratios=[rnd(x) for x in ratios],
                 padding_free_tokens_per_s=[rnd(x) for x in flat_tps],
                 padded_tokens_per_s=[rnd(x) for x in pad_tps],
                 padded_batch_fill=[rnd(x) for x in fill],
                 setup=f"{Path(model).name} (random weights) + SmolLM2 tokenizer, full fine-tune, "
                       f"demo train rows in file order, batch {batch}, max_length {length}, CPU sdpa, "
                       f"1 torch thread per side, {warm} warm-up + {steps} timed steps",
                 loadavg_after=loadavg())
