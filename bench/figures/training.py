"""`step_time_ratio` and `dataloader_wait_fraction`: pairs of train/sft.py runs, augmented and not,
started together (the baseline is the same run with --augmented_per_original 0)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import (ROOT, child_env, entry, loadavg, perf, rnd, scratch_dir,
                           tiny_model_dir)


def sft_child(out_json: str, argv: list[str]) -> None:
    """Runs train/sft.py's main() with timing hooks (entered via `run.py --_sft-child`):
    a TrainerCallback records on_step_begin/on_step_end, `get_batch_samples` (the Trainer's only
    pull from the dataloader: sampler + dataset + collator) is timed, and so is the collator."""
    from transformers import TrainerCallback

    import augment.trainer as tt
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
    import augment.pipeline as pipeline
    import train.sft as sft
    call = pipeline.IndexedCollator.__call__

    def timed_call(self, features):
        t = perf()
        out = call(self, features)
        if features and "index" in features[0]:
            rec["collate"].append(perf() - t)
        return out

    pipeline.IndexedCollator.__call__ = timed_call
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
        cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--_sft-child", str(out_json), "--",
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
    work = scratch_dir("augtune-bench-sft-")
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
