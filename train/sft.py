"""Fine-tune with augmentation inside the run. Launch through `accelerate launch` (see launch.sh):

    accelerate launch train/sft.py --config configs/demo.yaml [--key value ...]

Order matters: config, data and API keys are checked before a model is loaded or an API is
called; the cache is built on the main process only (other ranks wait), so N processes never
make N copies of a request; then every rank loads the same accepted variants and the sampler's
plan, which depends on (seed, epoch) alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# `accelerate launch train/sft.py` puts train/ on sys.path, not the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from augment.cli import parse_config, run_cli  # noqa: E402
from augment.config import AugmentConfig, DataConfig  # noqa: E402
from augment.errors import AugtuneError, ConfigError  # noqa: E402

SECRET_WORDS = ("token", "api_key", "secret", "password")


def parse(argv):
    from trl import ModelConfig, SFTConfig
    data_cfg, aug_cfg, sft_cfg, model_cfg = parse_config(
        argv, (DataConfig, AugmentConfig, SFTConfig, ModelConfig))
    # On-the-fly collation: TRL must neither prepare nor prune the dataset (STACK.md); our
    # collator truncates to max_length.
    sft_cfg.dataset_kwargs = {**(sft_cfg.dataset_kwargs or {}), "skip_prepare_dataset": True}
    sft_cfg.remove_unused_columns = False
    if sft_cfg.padding_free:
        raise ConfigError("padding_free=True cannot be combined with augtune's collator; remove it.")
    if aug_cfg.augment_seed is None:
        aug_cfg.augment_seed = sft_cfg.seed
    return data_cfg, aug_cfg, sft_cfg, model_cfg


def check_output_dir(path: str) -> None:
    """Create output_dir and prove it is writable before anything expensive runs.

    Every rank runs this at the same moment, so the probe file needs a name of its own per
    process: with one shared name, rank 0 deleted the file rank 1 was about to delete, and rank 1
    reported a writable folder as "not writable (No such file or directory)"."""
    import tempfile
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".augtune-write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(f"output_dir {path!r} is not writable ({exc.strerror}). Choose another "
                          "--output_dir or fix its permissions.")


def main(argv):
    data_cfg, aug_cfg, sft_cfg, model_cfg = parse(argv)

    # ---- cheap checks first: nothing expensive has happened yet --------------------------
    from accelerate import PartialState
    state = PartialState()
    check_output_dir(sft_cfg.output_dir)
    aug_cfg.check_api_keys()
    from augment.data import load_rows
    split = load_rows(data_cfg, seed=sft_cfg.seed)
    methods = list(aug_cfg.augment_methods) if aug_cfg.augmented_per_original > 0 or aug_cfg.refusal_fraction > 0 else []
    if "refusals" in methods:
        from augment.methods.refusals import load_harmful_cases
        load_harmful_cases(aug_cfg.refusals_file)  # validates the file (file:line errors)
    if os.environ.get("AUGTUNE_PREFLIGHT") == "1":
        return  # launch.sh checked config, data and keys before starting N processes
    say = state.print
    say(f"augtune: {split.report['train_rows']} train rows, {split.report['eval_rows']} eval rows, "
        f"{split.report['eval_paraphrase_rows']} held-out paraphrases"
        + (f"; skipped {split.report['skipped_total']} bad rows: {split.report['skipped']}"
           if split.report["skipped_total"] else "")
        + (f"; removed {split.report['removed_train_duplicates_of_eval']} train rows duplicating "
           "eval prompts" if split.report["removed_train_duplicates_of_eval"] else ""))

    # ---- variants: built once, on the main process ----------------------------------------
    from augment.cache import VariantCache
    on_the_fly = aug_cfg.templates_on_the_fly and "templates" in methods
    cached_methods = [m for m in methods if not (on_the_fly and m == "templates")]
    if cached_methods and aug_cfg.build_before_training:
        if state.is_main_process:
            from augment.build import build_cache
            build_cache(data_cfg, dataclasses.replace(aug_cfg, augment_methods=cached_methods),
                        split.train)  # prints its own progress and summary
        state.wait_for_everyone()
    if methods and state.is_main_process and not aug_cfg.build_before_training:
        from augment.cache import init_cache_from
        init_cache_from(aug_cfg.augment_cache, aug_cfg.augment_cache_init)
    state.wait_for_everyone()
    cache = VariantCache(aug_cfg.augment_cache, readonly=not state.is_main_process) if methods else None
    if cached_methods and not aug_cfg.build_before_training:
        from augment.build import make_checker
        if cache.stale_verdicts(aug_cfg.qc, make_checker(aug_cfg).fingerprint()):
            raise AugtuneError(f"{aug_cfg.augment_cache}: its verdicts under qc={aug_cfg.qc} were made by "
                               "other QC rules or settings. Run `python -m augment.build --config CONFIG` "
                               "(re-judges locally, no API calls) or set build_before_training: true.")
    from augment.variants import RefusalTable, VariantTable
    row_methods = [m for m in methods if m != "refusals"]
    stored = [m for m in row_methods if m in cached_methods]
    # Only this run's requests: a shared cache also holds variants made with other settings.
    run_keys = (run_request_keys(dataclasses.replace(aug_cfg, augment_methods=cached_methods),
                                 split.train) if cached_methods else [])
    table = (cache.load_table(split.train, stored, aug_cfg.qc, keys=run_keys) if cache and stored
             else VariantTable.empty(len(split.train)))
    if on_the_fly:
        from augment.variants import with_on_the_fly_templates
        table = with_on_the_fly_templates(table, split.train, aug_cfg.templates_n,
                                          aug_cfg.augment_seed)
    refusals = (cache.load_refusals(["refusals"], aug_cfg.qc, keys=run_keys) if cache and "refusals" in methods
                else RefusalTable([], [], __import__("numpy").zeros(0, "int64")))

    from augment.collator import AugmentingCollator
    from augment.dataset import AugmentedDataset
    from augment.sampler import RatioSampler
    if not row_methods:
        aug_cfg.augmented_per_original = 0.0  # only refusals (or nothing) augment this run
    sampler = RatioSampler.from_config(aug_cfg, len(split.train), table, refusals, seed=sft_cfg.seed)
    rep = sampler.report(0)
    say(f"augtune: epoch plan {rep['length']} examples ({aug_cfg.augment_mode} mode): "
        + json.dumps({k: v for k, v in rep.items() if k not in ("epoch", "mode", "length")}))
    train_source = AugmentedDataset(split.train, table, refusals)
    if os.environ.get("AUGTUNE_TRACE_DIR") and state.is_main_process:
        trace = Path(os.environ["AUGTUNE_TRACE_DIR"])
        trace.mkdir(parents=True, exist_ok=True)
        (trace / "plan0.json").write_text(json.dumps(sampler.plan(0).tolist()))

    # ---- model ----------------------------------------------------------------------------
    from datasets import Dataset
    from trl import get_peft_config

    from train.model import load_model, load_tokenizer, resolve_model_path
    from train.trainer import AugmentedSFTTrainer
    path = resolve_model_path(model_cfg.model_name_or_path)
    tokenizer = load_tokenizer(path)
    model = load_model(path, model_cfg, sft_cfg)
    collator = IndexedCollator(train_source, AugmentingCollator(tokenizer, max_length=sft_cfg.max_length))

    def as_eval(rows):
        return Dataset.from_dict({"prompt": [r.prompt for r in rows],
                                  "completion": [r.completion for r in rows]}) if rows else None

    trainer = AugmentedSFTTrainer(
        model=model, args=sft_cfg, processing_class=tokenizer, data_collator=collator,
        train_dataset=Dataset.from_dict({"index": list(range(len(train_source)))}),
        eval_dataset=as_eval(split.eval), peft_config=get_peft_config(model_cfg),
        ratio_sampler=sampler, paraphrase_eval_dataset=as_eval(split.eval_paraphrases))

    if data_cfg.robustness_every_eval and split.eval and split.eval_paraphrases:
        from augment.robustness import make_callback
        trainer.add_callback(make_callback(tokenizer, split.eval, split.eval_paraphrases,
                                           **robustness_kwargs(data_cfg)))

    resume = sft_cfg.resume_from_checkpoint
    if resume in ("true", "True", "last"):
        from transformers.trainer_utils import get_last_checkpoint
        resume = get_last_checkpoint(sft_cfg.output_dir)
    t0 = time.time()
    trainer.train(resume_from_checkpoint=resume)
    trainer.write_param_fingerprint()
    evaluated = any("eval_loss" in h and h.get("step") == trainer.state.global_step
                    for h in trainer.state.log_history)
    if split.eval and not evaluated and data_cfg.loss_eval_at_end:  # eval_loss, eval_paraphrase_loss
        trainer.evaluate()
    if data_cfg.robustness_eval and split.eval and split.eval_paraphrases:
        run_robustness(trainer, tokenizer, split, data_cfg, state, Path(sft_cfg.output_dir))
    trainer.save_model(sft_cfg.output_dir)
    trainer.save_state()

    if state.is_main_process:
        out = Path(sft_cfg.output_dir)
        summary = write_summary(out, cache, methods, aug_cfg.qc, sampler, trainer, sft_cfg,
                                state.num_processes, run_keys=run_keys)
        write_resolved_config(out, data_cfg, aug_cfg, sft_cfg, model_cfg)
        from train.plots import plot_training
        pngs = plot_training(trainer.state.log_history, out)
        print_outro(out, trainer, summary, pngs, time.time() - t0)


def robustness_kwargs(data_cfg) -> dict:
    return {"metric": data_cfg.robustness_metric, "labels": data_cfg.robustness_labels,
            "max_new_tokens": data_cfg.robustness_max_new_tokens,
            "batch_size": data_cfg.robustness_batch_size,
            "paraphrases_file": data_cfg.eval_paraphrases_file}


def run_robustness(trainer, tokenizer, split, data_cfg, state, out: Path) -> None:
    """`robustness.json`: greedy answers to the eval prompts and their held-out paraphrases,
    scored (augment/robustness.py). Generated on the main process only (a sharded FSDP model
    would need every rank); the figures go through `Trainer.log`, so every integration sees them."""
    if state.is_main_process:
        from augment.robustness import evaluate_robustness, log_figures, summary_line, write_report
        model = trainer.accelerator.unwrap_model(trainer.model)
        report = evaluate_robustness(model, tokenizer, split.eval, split.eval_paraphrases,
                                     **robustness_kwargs(data_cfg))
        write_report(report, out / "robustness.json")
        trainer.log(log_figures(report))
        print(f"augtune: {summary_line(report)}; per item in {out / 'robustness.json'}", flush=True)
    state.wait_for_everyone()


def run_request_keys(aug_cfg, rows) -> list[str]:
    """Cache keys of this run's requests (cheap: no backend is built), so the summary counts
    what this run used, not everything a shared cache holds."""
    from augment.build import collect_requests
    from augment.methods import build_methods
    methods = build_methods(aug_cfg)
    return [r.key for reqs in collect_requests(methods, rows).values() for r in reqs]


class IndexedCollator:
    """The train dataset handed to TRL is just an `index` column (TRL requires a `datasets.Dataset`);
    this resolves each index through the `AugmentedDataset` and calls the augmenting collator.
    Eval features already carry prompt/completion and pass through as originals."""

    def __init__(self, source, collator):
        self.source, self.collator = source, collator

    def __call__(self, features):
        items = [self.source[f["index"]] if "index" in f else
                 {"prompt": f["prompt"], "completion": f["completion"], "source": "original",
                  "similarity": 1.0} for f in features]
        batch = self.collator(items)
        if "index" in features[0]:
            import torch
            batch["aug_index"] = torch.tensor([f["index"] for f in features], dtype=torch.long)
        return batch


def write_summary(out: Path, cache, methods, qc_mode, sampler, trainer, sft_cfg, world: int,
                  run_keys=None) -> dict:
    """`augmentation_summary.json` (stable format, ../shared/ARCHITECTURE.md): per method what the
    cache holds, per epoch what the sampler scheduled over all ranks."""
    keys = ("generated", "accepted", "rejected", "failed")
    stats = ({m: {k: c.get(k, 0) for k in keys}
              for m, c in cache.stats(qc_mode, methods=methods, keys=run_keys).items()}
             if cache else {})
    epochs = []
    n_epochs = max(1, math.ceil(trainer.state.epoch or sft_cfg.num_train_epochs))
    global_batch = sft_cfg.per_device_train_batch_size * world
    for e in range(n_epochs):
        c = sampler.epoch_counts(e)
        total = c["original"] + c["augmented"] + c.get("refusals", 0)
        # accelerate's even_batches repeats a few samples to complete the last global batch
        # when several processes share it; one process just gets a shorter last batch.
        fill = (-total) % global_batch if world > 1 and not trainer.args.dataloader_drop_last else 0
        epochs.append({"epoch": e, "original": c["original"], "augmented": c["augmented"],
                       "by_method": c["by_method"], "refusals": c.get("refusals", 0),
                       "even_batches_fill": fill})
    summary = {"methods": stats, "epochs": epochs, "sampler": sampler.report()}
    (out / "augmentation_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def write_resolved_config(out: Path, *cfgs) -> None:
    import yaml
    merged = {}
    for cfg in cfgs:
        d = cfg.to_dict() if hasattr(cfg, "to_dict") else asdict(cfg)
        merged.update(d)
    clean = {k: v for k, v in merged.items()
             if not any(w in k.lower() for w in SECRET_WORDS) and _plain(v)}
    (out / "augtune_config.yaml").write_text(yaml.safe_dump(clean, sort_keys=True))


def _plain(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool)) or (
        isinstance(v, (list, dict)) and all(_plain(x) for x in (v.values() if isinstance(v, dict) else v)))


def print_outro(out: Path, trainer, summary: dict, pngs: list, seconds: float) -> None:
    hist = trainer.state.log_history
    losses = [h["loss"] for h in hist if "loss" in h]
    ev = [h for h in hist if "eval_loss" in h]
    lines = [f"\naugtune: done in {seconds / 60:.1f} min, {trainer.state.global_step} steps. Outputs in {out}/:"]
    if losses:
        lines.append(f"  train loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    para = [h for h in hist if "eval_paraphrase_loss" in h]
    if ev:
        extra = (f", eval_paraphrase_loss {para[-1]['eval_paraphrase_loss']:.3f} (held-out "
                 "paraphrases of the eval prompts)" if para else "")
        lines.append(f"  eval_loss {ev[-1]['eval_loss']:.3f}{extra}")
    if summary["epochs"]:
        e = summary["epochs"][0]
        lines.append(f"  epoch 0 scheduled {e['original']} originals + {e['augmented']} augmented "
                     f"{e['by_method']}")
    lines += [
        "  adapter_model.safetensors   the LoRA adapter (load with peft.PeftModel.from_pretrained)",
        "  trainer_state.json          log_history: loss, loss_original, loss_augmented, loss_<method>,",
        "                              aug_fraction, aug_similarity_mean, eval_loss, eval_paraphrase_loss",
        "  augmentation_summary.json   variants per method (accepted/rejected/failed), counts per epoch",
        "  augtune_config.yaml         the resolved config of this run (no secrets)",
    ] + [f"  {p.name:<27} plot" for p in pngs]
    print("\n".join(lines))


if __name__ == "__main__":
    run_cli(main)
