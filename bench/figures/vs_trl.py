"""`peak_memory_vs_trl` and `step_time_vs_trl`: augtune's trainer + collator against plain TRL
`SFTTrainer` with its own collator and prepared dataset, on the same original examples.

Setup (the baseline is in this file): a Llama with a 128,256-token vocabulary (Llama 3's) and a
small body (hidden 64, 2 layers), so the LM head and its logits dominate a step: at batch 8 x
512 tokens full fp32 logits would be 8 x 512 x 128,256 x 4 B = 2.1 GB (twice that with the
softmax's copy). Both sides fully fine-tune the same weights with the same SFTConfig; every
example is longer than 512 tokens, so both batches are exactly 8 x 512 with the prompt masked.
Each side runs in its own child process (`bench/run.py --_child bench.figures.vs_trl:side`),
both started together with one torch thread each, so they share the machine's load.

Peak memory, honestly for torch CPU tensors: tracemalloc does not see torch's allocator, and
ru_maxrss is a high-water mark since process start (model loading, imports). Each child resets
the kernel's high-water mark (`echo 5 > /proc/self/clear_refs`, Linux >= 4.0) after the model
and trainer are built, then reports VmHWM - VmRSS(before the first step): the resident memory the
training steps needed on top of the loaded model. glibc serves tensors above its mmap threshold
(<= 32 MiB) with mmap and unmaps them on free, so large activations and logits show up in RSS
while they live and leave it afterwards.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import (ROOT, child_env, demo_rows, entry, loadavg, rnd, scratch_dir,
                           tiny_model_dir)

VOCAB = 128256


def big_vocab_model_dir(vocab: int, hidden: int, layers: int, max_pos: int) -> str:
    """Random-weight Llama with `vocab` entries around SmolLM2's tokenizer (its ids are all below
    49,152: the rest of the vocabulary only widens the LM head, which is the point)."""
    return tiny_model_dir(hidden, layers, vocab=vocab, intermediate=hidden * 2, max_pos=max_pos,
                          name=f"llama-v{vocab}-h{hidden}-l{layers}")


def long_examples(n: int, min_words: int) -> list[dict]:
    """Demo prompts with completions made of consecutive demo answers until at least
    `min_words` words: every example is cut at max_length, prompt kept whole."""
    rows = demo_rows("train")
    out = []
    for i in range(n):
        words, k = [], i
        while len(words) < min_words:
            words += rows[k % len(rows)].completion.split()
            k += 7
        out.append({"prompt": rows[i % len(rows)].prompt, "completion": " ".join(words)})
    return out


def _vm(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def side(spec_json: str) -> None:
    """One side of a comparison, in its own process. spec: kind (trl | augtune), model, steps,
    warm, batch, max_length, padding_free, n_examples, min_words (or examples), out, barrier,
    consistency_weight (augtune: the examples are consistency pairs, kept in order)."""
    spec = json.loads(spec_json)
    import torch
    torch.set_num_threads(1)
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from augment.collator import AugmentingCollator
    from augment.trainer import AugmentedSFTTrainer
    tok = AutoTokenizer.from_pretrained(spec["model"])
    model = LlamaForCausalLM.from_pretrained(spec["model"])
    exs = spec.get("examples") or long_examples(spec["n_examples"], spec["min_words"])
    common = dict(output_dir=str(scratch_dir("augtune-bench-trl-")), use_cpu=True, bf16=False,
                  report_to="none", save_strategy="no", logging_steps=10 ** 6,
                  max_steps=spec["warm"] + spec["steps"], per_device_train_batch_size=spec["batch"],
                  max_length=spec["max_length"], gradient_checkpointing=False,
                  dataloader_drop_last=True, seed=0, learning_rate=1e-4)
    if spec["kind"] == "trl":
        data = Dataset.from_list([{"prompt": [{"role": "user", "content": e["prompt"]}],
                                   "completion": [{"role": "assistant", "content": e["completion"]}]}
                                  for e in exs])
        trainer = SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=data,
                             processing_class=tok)
    else:
        args = SFTConfig(**common, dataset_kwargs={"skip_prepare_dataset": True},
                         remove_unused_columns=False, padding_free=spec.get("padding_free", False))
        collator = AugmentingCollator(tok, spec["max_length"], padding_free=args.padding_free)
        data = Dataset.from_list([{"source": "original", "similarity": 1.0, **e} for e in exs])
        extra = {}
        if spec.get("consistency_weight") is not None:
            from bench.figures.consistency import InOrder
            extra = dict(ratio_sampler=InOrder(data), consistency_weight=spec["consistency_weight"])
        trainer = AugmentedSFTTrainer(model=model, args=args, processing_class=tok,
                                      data_collator=collator, train_dataset=data, **extra)
    rec = {"end": [], "tokens": [], "rss_before": 0, "hwm": 0, "hwm_reset": False}

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            barrier = spec.get("barrier")
            if barrier:  # start both sides together
                Path(barrier, str(os.getpid())).touch()
                deadline = time.monotonic() + 900
                while len(os.listdir(barrier)) < 2 and time.monotonic() < deadline:
                    time.sleep(0.05)
            try:
                Path("/proc/self/clear_refs").write_text("5")
                rec["hwm_reset"] = True
            except OSError:
                pass
            rec["rss_before"] = _vm("VmRSS")
            rec["end"].append(time.monotonic())

        def on_step_end(self, args, state, control, **kw):
            rec["end"].append(time.monotonic())

    trainer.add_callback(Clock())
    get = trainer.get_batch_samples

    def counting(*a, **k):
        batches, n = get(*a, **k)
        # real (non-padding) tokens of the step, and what the model was fed
        rec["tokens"].append(sum(int(b["attention_mask"].sum()) if "attention_mask" in b
                                 else int(b["input_ids"].numel()) for b in batches))
        rec.setdefault("fed", []).append(sum(int(b["input_ids"].numel()) for b in batches))
        return batches, n

    trainer.get_batch_samples = counting
    trainer.train()
    rec["hwm"] = _vm("VmHWM")
    rec["rss_after"] = _vm("VmRSS")
    Path(spec["out"]).write_text(json.dumps(rec))


def run_sides(specs: dict, work: Path) -> dict:
    """Start the sides together (two at a time, sharing a barrier); return their records."""
    barrier = work / f"barrier-{'-'.join(specs)}"
    barrier.mkdir()
    env = {**child_env(), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = {}
    for name, spec in specs.items():
        spec = {**spec, "out": str(work / f"{name}.json"), "barrier": str(barrier)}
        log = open(work / f"{name}.log", "w")
        cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--_child",
               "bench.figures.vs_trl:side", json.dumps(spec)]
        procs[name] = (subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log), log, spec)
    recs = {}
    for name, (p, log, spec) in procs.items():
        rc = p.wait(timeout=3600)
        log.close()
        if rc != 0:
            raise RuntimeError(f"{name} failed:\n" + (work / f"{name}.log").read_text()[-3000:])
        recs[name] = json.loads(Path(spec["out"]).read_text())
    return recs


def step_times(rec: dict, warm: int) -> list[float]:
    end = rec["end"]
    return [end[k + 1] - end[k] for k in range(warm, len(end) - 1)]


_RUNS: dict = {}


def trl_runs(S) -> dict:
    if _RUNS:
        return _RUNS
    vocab, hidden, length, batch = S.pick((VOCAB, 64, 512, 8), (VOCAB, 64, 512, 8), (49152, 32, 64, 2))
    # A step at 8 x 512 tokens x 128k vocabulary takes 1-4 minutes on one shared CPU thread (the
    # fused head's torch tiles on CPU): --quick times 2 steps after 1 warm-up, one pair.
    warm, steps, pairs = S.pick(1, 1, 1), S.pick(2, 4, 2), S.pick(1, 2, 1)
    model = big_vocab_model_dir(vocab, hidden, 2, max(length, 512))
    work = scratch_dir("augtune-bench-vs-trl-")
    base = dict(model=model, warm=warm, steps=steps, batch=batch, max_length=length,
                n_examples=batch * (warm + steps), min_words=int(length * 1.2))
    out = []
    for i in range(pairs):
        recs = run_sides({f"trl{i}": {**base, "kind": "trl"},
                          f"augtune{i}": {**base, "kind": "augtune"}}, work)
        out.append((recs[f"augtune{i}"], recs[f"trl{i}"]))
    _RUNS.update(pairs=out, warm=warm, steps=steps, vocab=vocab, hidden=hidden, length=length,
                 batch=batch, loadavg=loadavg())
    return _RUNS


def _setup(R) -> str:
    return (f"Llama vocab {R['vocab']}, hidden {R['hidden']}, 2 layers (random weights, SmolLM2 "
            f"tokenizer), full fine-tune, batch {R['batch']} x {R['length']} tokens (every example "
            f"truncated to it), CPU fp32, 1 torch thread per side, {R['warm']} warm-up + "
            f"{R['steps']} timed steps; augtune = AugmentedSFTTrainer + AugmentingCollator, TRL = "
            "SFTTrainer with its prepared dataset and DataCollatorForLanguageModeling, same "
            "SFTConfig")


def fig_peak_memory_vs_trl(S) -> dict:
    R = trl_runs(S)
    mib = 2 ** 20
    aug = [a["hwm"] - a["rss_before"] for a, _ in R["pairs"]]
    trl = [t["hwm"] - t["rss_before"] for _, t in R["pairs"]]
    ratios = [a / t for a, t in zip(aug, trl)]
    value = max(ratios)
    full_logits = R["batch"] * R["length"] * R["vocab"] * 4
    return entry(value, "x (peak resident memory of the training steps, augtune / TRL)",
                 "plain TRL SFTTrainer + its collator on the same examples, same process setup",
                 "<= 1.05", value <= 1.05,
                 ratios=[rnd(x) for x in ratios],
                 augtune_step_peak_mib=[rnd(x / mib) for x in aug],
                 trl_step_peak_mib=[rnd(x / mib) for x in trl],
                 augtune_process_peak_mib=[rnd(a["hwm"] / mib) for a, _ in R["pairs"]],
                 trl_process_peak_mib=[rnd(t["hwm"] / mib) for _, t in R["pairs"]],
                 full_fp32_logits_mib=rnd(full_logits / mib),
                 hwm_reset=all(a["hwm_reset"] and t["hwm_reset"] for a, t in R["pairs"]),
                 setup=_setup(R),
                 memory="per side: VmHWM - VmRSS before step 1, with the high-water mark reset "
                        "(/proc/self/clear_refs) after model and trainer were built; value = "
                        "worst pair")


def fig_step_time_vs_trl(S) -> dict:
    R = trl_runs(S)
    aug = [statistics.mean(step_times(a, R["warm"])) for a, _ in R["pairs"]]
    trl = [statistics.mean(step_times(t, R["warm"])) for _, t in R["pairs"]]
    ratios = [a / t for a, t in zip(aug, trl)]
    value = statistics.mean(ratios)
    return entry(value, "x (mean step time, augtune / TRL)",
                 "plain TRL SFTTrainer + its collator on the same examples, run concurrently",
                 "<= 1.05", value <= 1.05,
                 pair_ratios=[rnd(x) for x in ratios], augtune_step_s=[rnd(x) for x in aug],
                 trl_step_s=[rnd(x) for x in trl], setup=_setup(R),
                 timing="both sides start together (file barrier), one torch thread each; step = "
                        "on_step_end to on_step_end after the warm-up; value = mean over pairs",
                 loadavg_after=R["loadavg"])
