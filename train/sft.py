"""Fine-tune with augmentation inside the run. Launch through `accelerate launch` (see launch.sh):

    accelerate launch train/sft.py --config configs/demo.yaml [--key value ...]

Order matters: config, data and API keys are checked before a model is loaded or an API is
called; the cache is built on the main process only (other ranks wait), so N processes never
make N copies of a request; then every rank loads the same accepted variants and the sampler's
plan, which depends on (seed, epoch) alone.
"""

from __future__ import annotations

import json
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
from augment.errors import ConfigError  # noqa: E402

SECRET_WORDS = ("token", "api_key", "secret", "password")


def parse(argv):
    from trl import ModelConfig, SFTConfig
    data_cfg, aug_cfg, sft_cfg, model_cfg = parse_config(
        argv, (DataConfig, AugmentConfig, SFTConfig, ModelConfig))
    # Every TRL option that touches data, batching or the loss is kept or refused here, with one
    # line (augment/trl_options.py). On-the-fly collation: TRL must neither prepare nor prune the
    # dataset (TRL 1.16 needs both settings); our collator truncates to max_length.
    from augment.models import check_quantization
    from augment.trl_options import check_sft_config
    check_sft_config(sft_cfg)
    # load_in_4bit/8bit: where bitsandbytes can run (launch.sh's preflight runs on the CPU)
    check_quantization(model_cfg, sft_cfg, need_cuda=os.environ.get("AUGTUNE_PREFLIGHT") != "1")
    if aug_cfg.consistency_weight:  # batch parity, padding_free: refused before anything runs
        from augment.trainer import check_consistency_args
        check_consistency_args(aug_cfg.consistency_weight, aug_cfg.consistency_divergence, sft_cfg)
    sft_cfg.dataset_kwargs = {**(sft_cfg.dataset_kwargs or {}), "skip_prepare_dataset": True}
    sft_cfg.remove_unused_columns = False
    if aug_cfg.augment_seed is None:
        aug_cfg.augment_seed = sft_cfg.seed
    return data_cfg, aug_cfg, sft_cfg, model_cfg


def check_resume(sft_cfg) -> None:
    """resume_from_checkpoint: true with nothing to resume stops here, before the build and the
    model load (the trainer would stop too, later)."""
    if str(sft_cfg.resume_from_checkpoint).lower() == "true":
        from augment.trainer import last_complete_checkpoint, no_checkpoint_error
        if last_complete_checkpoint(sft_cfg.output_dir) is None:
            raise no_checkpoint_error(sft_cfg.output_dir)


def check_paraphrase_links(data_cfg, split, state=None) -> None:
    """The robustness eval scores each held-out paraphrase against the eval row it rewords
    (`source_id`, or the `<eval id>-<suffix>` id convention). Before training, not after it:
    none linked is an error; some unlinked are counted and named on one line."""
    if not (data_cfg.robustness_eval or data_cfg.robustness_every_eval) or not split.eval_paraphrases:
        return
    from augment.robustness import paraphrase_links
    links = paraphrase_links(data_cfg.eval_paraphrases_file, split.eval_paraphrases,
                             [r.id for r in split.eval])
    lost = [p.id for p, src in zip(split.eval_paraphrases, links) if src is None]
    if len(lost) == len(links):
        raise ConfigError(f"{data_cfg.eval_paraphrases_file}: none of its {len(links)} "
                          "paraphrases names an eval row (a source_id column, or ids like "
                          "<eval id>-p1), so the robustness eval would score nothing. Fix the "
                          "ids, or set robustness_eval: false.")
    if lost and (state is None or state.is_main_process):
        print(f"augtune: {len(lost)} of {len(links)} held-out paraphrases name no eval row and are "
              f"left out of the robustness figures (e.g. {', '.join(lost[:3])})", file=sys.stderr)


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
    if os.environ.get("AUGTUNE_TRACE_DIR"):  # diagnostics for tests: which SQLite files opened
        from augment.distributed import trace_sqlite_opens
        trace_sqlite_opens(os.environ["AUGTUNE_TRACE_DIR"], state.process_index)
    check_output_dir(sft_cfg.output_dir)
    aug_cfg.check_api_keys()
    from augment.data import load_rows
    split = load_rows(data_cfg, seed=sft_cfg.seed)
    if "refusals" in aug_cfg.augment_methods and (aug_cfg.augmented_per_original > 0
                                                  or aug_cfg.refusal_fraction > 0):
        from augment.methods.refusals import load_harmful_cases
        load_harmful_cases(aug_cfg.refusals_file)  # validates the file (file:line errors)
    check_paraphrase_links(data_cfg, split, state)
    from augment.pipeline import check_loss_options, check_pair_format
    check_pair_format(aug_cfg, split)
    check_loss_options(aug_cfg, sft_cfg, split)  # conversations: before the build, not after
    check_resume(sft_cfg)
    if os.environ.get("AUGTUNE_PREFLIGHT") == "1":
        return  # launch.sh checked config, data and keys before starting N processes
    say = state.print
    from augment.data import split_line
    say("augtune: " + split_line(split.report))

    # ---- variants (built on the main process, broadcast) and the epoch plan -----------------
    from augment.pipeline import prepare
    # The sampler's plans follow TRL's data order seed: data_seed when set, else seed.
    data = prepare(data=data_cfg, augment=aug_cfg, seed=sft_cfg.seed, data_seed=sft_cfg.data_seed,
                   split=split, state=state, say=say)
    rep = data.sampler.report(0)
    say(f"augtune: epoch plan {rep['length']} examples ({aug_cfg.augment_mode} mode): "
        + json.dumps({k: v for k, v in rep.items() if k not in ("epoch", "mode", "length")}))
    if os.environ.get("AUGTUNE_TRACE_DIR") and state.is_main_process:
        trace = Path(os.environ["AUGTUNE_TRACE_DIR"])
        trace.mkdir(parents=True, exist_ok=True)
        (trace / "plan0.json").write_text(json.dumps(data.sampler.plan(0).tolist()))

    # ---- model ----------------------------------------------------------------------------
    from trl import get_peft_config

    from augment.models import load_model, load_tokenizer, resolve_model_path
    from augment.trainer import AugmentedSFTTrainer
    path = resolve_model_path(model_cfg.model_name_or_path)
    tokenizer = load_tokenizer(path, revision=model_cfg.model_revision,
                               trust_remote_code=sft_cfg.trust_remote_code)
    model = load_model(path, model_cfg, sft_cfg)
    trainer = AugmentedSFTTrainer(model=model, args=sft_cfg, processing_class=tokenizer,
                                  train_dataset=data, peft_config=get_peft_config(model_cfg))

    if data_cfg.robustness_every_eval and split.eval and split.eval_paraphrases:
        from augment.robustness import make_callback
        trainer.add_callback(make_callback(tokenizer, split.eval, split.eval_paraphrases,
                                           **robustness_kwargs(data_cfg, aug_cfg)))

    resume = sft_cfg.resume_from_checkpoint  # "last"/true: the newest complete checkpoint
    t0 = time.time()
    trainer.train(resume_from_checkpoint=resume)
    trainer.write_param_fingerprint()
    # The trained adapter first: nothing after training (evaluations, reports) may lose it.
    trainer.save_model(sft_cfg.output_dir)
    evaluated = any("eval_loss" in h and h.get("step") == trainer.state.global_step
                    for h in trainer.state.log_history)
    if split.eval and not evaluated and data_cfg.loss_eval_at_end:  # eval_loss, eval_paraphrase_loss
        trainer.evaluate()
    if data_cfg.robustness_eval and split.eval and split.eval_paraphrases:
        run_robustness(trainer, tokenizer, split, data_cfg, aug_cfg, state,
                       Path(sft_cfg.output_dir))
    trainer.save_state()

    if state.is_main_process:
        out = Path(sft_cfg.output_dir)
        summary = data.write_summary(trainer, out, state.num_processes)
        write_resolved_config(out, data_cfg, aug_cfg, sft_cfg, model_cfg)
        from train.plots import plot_training
        pngs = plot_training(trainer.state.log_history, out)
        print_outro(out, trainer, summary, pngs, time.time() - t0)


def robustness_kwargs(data_cfg, aug_cfg) -> dict:
    return {"metric": data_cfg.robustness_metric, "labels": data_cfg.robustness_labels,
            "max_new_tokens": data_cfg.robustness_max_new_tokens,
            "batch_size": data_cfg.robustness_batch_size,
            "paraphrases_file": data_cfg.eval_paraphrases_file,
            "pair_format": aug_cfg.pair_format}  # prompted as the collator trained it


def run_robustness(trainer, tokenizer, split, data_cfg, aug_cfg, state, out: Path) -> None:
    """`robustness.json`: greedy answers to the eval prompts and their held-out paraphrases,
    scored (augment/robustness.py). Generated on the main process only (a sharded FSDP model
    would need every rank); the figures go through `Trainer.log`, so every integration sees them."""
    if state.is_main_process:
        from augment.robustness import evaluate_robustness, log_figures, summary_line, write_report
        model = trainer.accelerator.unwrap_model(trainer.model)
        report = evaluate_robustness(model, tokenizer, split.eval, split.eval_paraphrases,
                                     **robustness_kwargs(data_cfg, aug_cfg))
        write_report(report, out / "robustness.json")
        trainer.log(log_figures(report))
        print(f"augtune: {summary_line(report)}; per item in {out / 'robustness.json'}", flush=True)
    state.wait_for_everyone()


def write_resolved_config(out: Path, *cfgs) -> None:
    import yaml
    merged = {}
    for cfg in cfgs:
        d = cfg.to_dict() if hasattr(cfg, "to_dict") else asdict(cfg)
        merged.update(d)
    from augment.backends.limits import public_url
    clean = {k: public_url(v) if isinstance(v, str) else v for k, v in merged.items()
             if not any(w in k.lower() for w in SECRET_WORDS) and _plain(v)}
    from augment.atomic import write_text_atomic
    write_text_atomic(out / "augtune_config.yaml", yaml.safe_dump(clean, sort_keys=True))


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
        "                              aug_fraction, refusal_fraction, aug_similarity_mean,",
        "                              mean_token_accuracy, entropy,",
        "                              eval_loss, eval_paraphrase_loss"
        + (", loss_consistency, consistency_pairs" if any("loss_consistency" in h for h in hist) else ""),
        "  augmentation_summary.json   variants per method (accepted/rejected/failed), counts per epoch",
        "  augtune_config.yaml         the resolved config of this run (no secrets)",
    ] + [f"  {p.name:<27} plot" for p in pngs]
    print("\n".join(lines))


if __name__ == "__main__":
    run_cli(main)
