"""The augmentation side of a training run, callable from any TRL script.

    data = augment.prepare("data/demo/train.jsonl", augment.AugmentConfig(...), seed=42)
    trainer = augment.AugmentedSFTTrainer(model=..., args=SFTConfig(...), train_dataset=data)

`prepare` does what `train/sft.py` does before the model exists, in the same order: load and
validate the data and split off eval rows BEFORE any augmentation; build the missing variants
on the main process only (resumable; other ranks wait); load the accepted variants there and
broadcast them to the other ranks, which never open the SQLite cache; then make the per-epoch
ratio sampler from (seed, epoch) alone. What it returns, `AugmentedData`, is everything the
trainer needs: the index dataset TRL iterates, the sampler, the examples behind the indices, and
a collator factory. Nothing here touches a model, so it runs before one is loaded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import AugmentConfig, DataConfig
from .errors import AugtuneError


@dataclass
class AugmentedData:
    """What `prepare` made. Pass it as `train_dataset` to `AugmentedSFTTrainer`."""

    data_cfg: DataConfig
    aug_cfg: AugmentConfig
    split: object             # augment.data.DataSplit: train / eval / held-out paraphrase rows
    source: object            # augment.dataset.AugmentedDataset: plan index -> example
    sampler: object           # augment.sampler.RatioSampler
    methods: list             # the methods this run augments with
    seed: int                 # the data order seed the sampler plans from (data_seed, else seed)
    cache: object = None      # VariantCache, on the main process only
    run_keys: list = field(default_factory=list)  # this run's request keys (summary counts)
    build_report: object = None  # augment.build.BuildReport of the build it ran, if any
    _eval: object = field(default=None, repr=False)  # eval_dataset(), made once

    # --- what TRL's SFTTrainer is handed ------------------------------------------------------
    def train_dataset(self):
        """The dataset TRL iterates: plan indices only (TRL needs a `datasets.Dataset`); the
        collator turns each index into its example when the batch is made."""
        from datasets import Dataset
        return Dataset.from_dict({"index": list(range(len(self.source)))})

    def eval_dataset(self):
        """The held-out rows as TRL's eval set (the same object on every call)."""
        if self._eval is None:
            self._eval = _as_eval(self.split.eval)
        return self._eval

    def paraphrase_eval_dataset(self):
        return _as_eval(self.split.eval_paraphrases)

    def collator(self, tokenizer, sft_args=None, **kwargs):
        """The augmenting collator for `tokenizer`, with the TRL options of `sft_args` that act
        in collation (max_length, padding_free, completion_only_loss, ...) applied."""
        from .collator import AugmentingCollator
        opts = {}
        if sft_args is not None:
            opts = dict(max_length=sft_args.max_length, pad_to_multiple_of=sft_args.pad_to_multiple_of,
                        padding_free=sft_args.padding_free,
                        completion_only_loss=sft_args.completion_only_loss,
                        assistant_only_loss=sft_args.assistant_only_loss)
        opts.setdefault("max_length", 1024)
        if sft_args is not None:
            check_loss_options(self.aug_cfg, sft_args, self.split)
        opts.update(loss_turns=self.aug_cfg.loss_turns, pair_format=self.aug_cfg.pair_format,
                    language_modeling=conversation_data(self.split), **kwargs)
        max_length = opts.pop("max_length")
        return IndexedCollator(self.source, AugmentingCollator(tokenizer, max_length, **opts))

    def write_summary(self, trainer, out=None, world: int | None = None) -> dict:
        """`augmentation_summary.json` (stable format): per method what the cache holds, per
        epoch what the sampler scheduled over all ranks. Written by the main process only (the
        other ranks hold no cache and would overwrite it with empty counts); they get the dict."""
        out = Path(out or trainer.args.output_dir)
        world = world or trainer.accelerator.num_processes
        keys = ("generated", "accepted", "rejected", "failed")
        stats = ({m: {k: c.get(k, 0) for k in keys}
                  for m, c in self.cache.stats(self.aug_cfg.qc, methods=self.methods,
                                               keys=self.run_keys).items()}
                 if self.cache else {})
        args = trainer.args
        epochs = []
        n_epochs = max(1, math.ceil(trainer.state.epoch or args.num_train_epochs))
        global_batch = args.per_device_train_batch_size * world
        for e in range(n_epochs):
            c = self.sampler.epoch_counts(e)
            total = c["original"] + c["augmented"] + c.get("refusals", 0)
            # accelerate's even_batches repeats a few samples to complete the last global batch
            # when several processes share it; one process just gets a shorter last batch.
            fill = (-total) % global_batch if world > 1 and not args.dataloader_drop_last else 0
            epochs.append({"epoch": e, "original": c["original"], "augmented": c["augmented"],
                           "by_method": c["by_method"], "refusals": c.get("refusals", 0),
                           "even_batches_fill": fill,
                           **({"consistency_pairs": c["consistency_pairs"]}
                              if "consistency_pairs" in c else {})})
        from .build import qc_summary
        summary = {"methods": stats, "epochs": epochs, "sampler": self.sampler.report(),
                   "qc": qc_summary(self.aug_cfg)}
        if trainer.is_world_process_zero():
            from .atomic import write_text_atomic
            write_text_atomic(out / "augmentation_summary.json", json.dumps(summary, indent=2))
        return summary


def prepare(dataset: str | None = None, augment: AugmentConfig | None = None, *,
            eval_dataset: str | None = None, eval_paraphrases: str | None = None,
            max_rows: int | None = None, eval_fraction: float | None = None,
            seed: int | None = None, data_seed: int | None = None, args=None,
            data: DataConfig | None = None, split=None, state=None,
            say=print) -> AugmentedData:
    """Load `dataset` (a file, folder or hub id in any format augtune reads), build and load
    its variants as `augment` says, and return an `AugmentedData` for the trainer.

    `args`, the run's SFTConfig (optional, recommended): its loss options are checked against
    the data before anything is built (a refusal after a paid build wastes it), and `seed` and
    `data_seed` default to its own. Seeds as TRL's (42 without `args`): `seed` seeds the split
    and, unless `augment.augment_seed` is set, what variants are made; the sampler's plans
    follow `data_seed`, else `seed`, as TRL's data order does (the trainer refuses a plan whose
    seed is not its own data order seed). Give `data` (a DataConfig)
    instead of the keyword arguments for every data option; `split` skips loading (the recipe
    has already loaded it to check the data before anything expensive). Without `eval_dataset`,
    `eval_fraction` of the rows (default 0.1) is held out as the eval set; pass 0 when the
    trainer gets its own eval set."""
    from accelerate import PartialState

    from .conversation import TurnUnits
    from .data import load_rows
    from .dataset import AugmentedDataset
    from .distributed import share_from_main
    from .sampler import RatioSampler
    from .variants import RefusalTable, VariantTable

    if data is None:
        for name, value in (("dataset", dataset), ("eval_dataset", eval_dataset),
                            ("eval_paraphrases", eval_paraphrases)):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise AugtuneError(
                    f"prepare({name}=...) takes a file, a folder or a hub id, not a "
                    f"{type(value).__name__}: augtune reads the rows itself (errors name file and "
                    "line; row ids stay stable across runs). Write it out first, e.g. "
                    "ds.to_json('train.jsonl') for a datasets.Dataset, and pass the path.")
        if not dataset:
            raise AugtuneError("prepare() needs a dataset: a file, a folder or a hub id.")
        extra = {} if eval_fraction is None else {"eval_fraction": eval_fraction}
        data = DataConfig(dataset_name=str(dataset), eval_dataset_name=eval_dataset and str(eval_dataset),
                          eval_paraphrases_file=eval_paraphrases and str(eval_paraphrases),
                          max_rows=max_rows, **extra)
    if args is not None:
        from .trl_options import check_sft_config
        check_sft_config(args)
        seed = args.seed if seed is None else seed
        data_seed = getattr(args, "data_seed", None) if data_seed is None else data_seed
    seed = 42 if seed is None else seed
    aug = dataclasses.replace(augment or AugmentConfig())
    if aug.augment_seed is None:
        aug.augment_seed = seed
    state = state or PartialState()
    if split is None:
        from .data import split_line
        aug.check_api_keys()
        split = load_rows(data, seed=seed)
        if state.is_main_process:
            say("augtune: " + split_line(split.report))
    check_pair_format(aug, split)
    if args is not None:
        check_loss_options(aug, args, split)
    methods = (list(aug.augment_methods)
               if aug.augmented_per_original > 0 or aug.refusal_fraction > 0 else [])
    if "refusals" in methods:
        from .methods.refusals import load_harmful_cases
        load_harmful_cases(aug.refusals_file)  # validates the file (file:line errors)

    # Variants: built and loaded on the main process only. Other ranks never open the SQLite
    # cache (WAL does not work over network filesystems, and a node may not see the file at
    # all): they receive the accepted-variant tables by broadcast.
    on_the_fly = aug.templates_on_the_fly and "templates" in methods
    cached = [m for m in methods if not (on_the_fly and m == "templates")]
    row_methods = [m for m in methods if m != "refusals"]
    stored = [m for m in row_methods if m in cached]
    units = TurnUnits.of(split.train, aug.augment_turns)  # one per augmentable user turn
    cache, run_keys, report = None, [], None
    from .distributed import announce_variants, await_variants
    try:
        if methods and state.is_main_process:
            cache, run_keys, report = _build_on_main(data, aug, split, units, cached, say)
    except BaseException:
        announce_variants(state, ok=False)
        raise
    announce_variants(state, ok=True)
    await_variants(state)  # other ranks: however long the main process's build takes

    def load_variants():
        table = (units.regroup(cache.load_table(units.rows, stored, aug.qc, keys=run_keys))
                 if cache and stored else VariantTable.empty(len(split.train)))
        refusals = (cache.load_refusals(["refusals"], aug.qc, keys=run_keys)
                    if cache and "refusals" in methods
                    else RefusalTable([], [], __import__("numpy").zeros(0, "int64")))
        return table, refusals

    table, refusals = share_from_main(state, load_variants)
    if on_the_fly:  # rendered from (seed, prompt) alone: every rank computes the same entries
        from .variants import with_on_the_fly_templates
        table = with_on_the_fly_templates(table, split.train, aug.templates_n, aug.augment_seed)
    if not row_methods:
        aug.augmented_per_original = 0.0  # only refusals (or nothing) augment this run
    order_seed = seed if data_seed is None else data_seed
    sampler = RatioSampler.from_config(aug, len(split.train), table, refusals, seed=order_seed)
    source = AugmentedDataset(split.train, table, refusals)
    return AugmentedData(data, aug, split, source, sampler, methods, order_seed, cache, run_keys,
                         report)


CHAT_FORMATS = frozenset({"messages", "sharegpt"})  # what TRL renders with the chat template


def _train_formats(split) -> set:
    return set(getattr(split, "report", {}).get("train_formats", ()))


def conversation_data(split) -> bool:
    """Whether every training file of `split` is conversations (messages or ShareGPT), which
    TRL trains as language modelling, not as prompt/completion pairs."""
    formats = _train_formats(split)
    return bool(formats) and formats <= CHAT_FORMATS


def check_loss_options(aug, sft_args, split) -> None:
    """Loss options that mean nothing, or something else, on conversations (which TRL trains as
    language modelling: every token, or the assistant turns with assistant_only_loss). Called by
    the collator factory and by train/sft.py's preflight, before any build or model load."""
    from .errors import ConfigError
    if not conversation_data(split):
        return
    if getattr(sft_args, "completion_only_loss", None):
        raise ConfigError("completion_only_loss: true is for prompt/completion data; on "
                          "conversations TRL ignores it (every token trains, or the assistant "
                          "turns with assistant_only_loss: true). Drop it.")
    if getattr(sft_args, "assistant_only_loss", False):
        return
    if aug.consistency_weight:
        raise ConfigError(f"consistency_weight={aug.consistency_weight} compares the answers given "
                          "two prompts; on conversations TRL labels every token (the reworded "
                          "user turns too) unless assistant_only_loss: true. Set it.")
    if aug.loss_turns != "all":
        raise ConfigError(f"loss_turns: {aug.loss_turns} picks which assistant turns train, which "
                          "needs assistant_only_loss: true; without it every token of a "
                          "conversation trains, as in TRL.")


def check_pair_format(aug, split) -> None:
    """pair_format: trl is TRL's format for plain prompt/completion data. TRL renders chat data
    with the template; augtune keeps a one-exchange conversation as a plain pair, which trl
    would then format as plain text: refused, before anything is built."""
    chat = CHAT_FORMATS & _train_formats(split)
    if aug.pair_format == "trl" and chat:
        from .errors import ConfigError
        raise ConfigError(f"pair_format: trl formats plain prompt/completion pairs as TRL does; "
                          f"this data is conversations ({', '.join(sorted(chat))}), which TRL "
                          "renders with the chat template: use pair_format: chat.")


def _build_on_main(data, aug, split, units, cached, say):
    """The main process's part of `prepare`: build what is missing (or check the cache's
    verdicts), then return (cache, this run's request keys, the build's report)."""
    from .cache import VariantCache, init_cache_from
    report = None
    built_cfg = dataclasses.replace(aug, augment_methods=cached)
    if cached and aug.build_before_training:
        from .build import build_cache, rows_without_variants_by_failure
        report = build_cache(data, built_cfg, units.rows)  # prints progress, summary
        if report.failed:  # say what training goes without, then stop unless allowed
            n = rows_without_variants_by_failure(VariantCache(aug.augment_cache), units.rows,
                                                 run_request_keys(built_cfg, units.rows))
            what = "train rows" if len(units.rows) == len(split.train) else "user turns"
            say(f"augtune: {n} of {len(units.rows)} {what} have no variant from a method "
                f"whose request failed ({report.failed} failed requests; reasons above)")
            if not aug.allow_failures:
                raise AugtuneError(f"{report.failed} augmentation requests failed (reasons "
                                   "above); rerun to retry them, or set allow_failures: true "
                                   "to train without them.")
    else:
        init_cache_from(aug.augment_cache, aug.augment_cache_init)
    cache = VariantCache(aug.augment_cache)
    if cached and not aug.build_before_training:
        from .build import make_checker
        if cache.stale_verdicts(aug.qc, make_checker(aug).fingerprint()):
            raise AugtuneError(f"{aug.augment_cache}: its verdicts under qc={aug.qc} were made "
                               "by other QC rules or settings. Run `python -m augment.build "
                               "--config CONFIG` (re-judges locally, no API calls) or set "
                               "build_before_training: true.")
    # Only this run's requests: a shared cache also holds variants made with other settings.
    run_keys = run_request_keys(built_cfg, units.rows) if cached else []
    return cache, run_keys, report


def run_request_keys(aug_cfg, rows) -> list[str]:
    """Cache keys of this run's requests (cheap: no backend is built), so the table and the
    summary use what this run asked for, not everything a shared cache holds."""
    from .build import collect_requests
    from .methods import build_methods
    methods = build_methods(aug_cfg)
    return [r.key for reqs in collect_requests(methods, rows).values() for r in reqs]


class IndexedCollator:
    """The train dataset handed to TRL is just an `index` column (TRL requires a
    `datasets.Dataset`); this resolves each index through the `AugmentedDataset` and calls the
    augmenting collator. Eval features already carry prompt/completion (and, for conversations,
    messages) and pass through as originals."""

    def __init__(self, source, collator):
        self.source, self.collator = source, collator

    @property
    def padding_free(self) -> bool:
        return getattr(self.collator, "padding_free", False)

    def __call__(self, features):
        # a training feature is the plan index alone; an eval row may have an `index` column
        # of its own (pandas' reset_index makes one) and is read as an eval row
        plan = [set(f) == {"index"} for f in features]
        items = [self.source[f["index"]] if p else _eval_item(f) for f, p in zip(features, plan)]
        batch = self.collator(items)
        if plan[0]:
            import torch
            batch["aug_index"] = torch.tensor([f["index"] for f in features], dtype=torch.long)
        return batch


def _eval_item(f: dict) -> dict:
    """One row of an eval set, as an original: prompt/completion (strings, or TRL's
    conversational prompt/completion message lists) or messages, as TRL accepts them. Rows of
    prepare's own eval set (`augtune_row`) are labelled as training is; a user's own rows say
    their format (`label_as`), so each is labelled as TRL labels that format."""
    prompt, completion = f.get("prompt"), f.get("completion")
    own = {} if f.get("augtune_row") else None
    if isinstance(prompt, list) and isinstance(completion, list):
        if not prompt or not completion:
            raise AugtuneError("an eval row's prompt or completion is an empty list of messages; "
                               "give each at least one message.")
        return {"messages": prompt + completion, "source": "original", "similarity": 1.0,
                **(own if own is not None else {"label_as": "conversational_prompt_completion",
                                                "completion_turns": len(completion)})}
    if isinstance(prompt, str) and isinstance(completion, str):
        return {"prompt": prompt, "completion": completion, "source": "original",
                "similarity": 1.0, **({"messages": f["messages"]} if f.get("messages") else {}),
                **(own if own is not None else {"label_as": "prompt_completion"})}
    if isinstance(f.get("messages"), list):
        return {"messages": f["messages"], "source": "original", "similarity": 1.0,
                **(own if own is not None else {"label_as": "language_modeling"})}
    raise AugtuneError(f"an eval row has fields {sorted(f)}: eval sets need prompt/completion "
                       "(text, or lists of chat messages) or messages; text-only and "
                       "pre-tokenised eval sets are not read with augmentation.")


def check_eval_dataset(eval_dataset) -> None:
    """An eval set given to the trainer, checked when the trainer is made rather than at the
    first evaluation (`eval_steps` into training): its first row must be one `_eval_item`
    reads (a datasets.Dataset's columns have one type each). A dict of eval sets (TRL's
    `eval_dataset={name: ds}`) is checked per set."""
    from .errors import ConfigError
    sets = eval_dataset.items() if isinstance(eval_dataset, dict) else [(None, eval_dataset)]
    for name, ds in sets:
        label = "eval_dataset" + (f"[{name!r}]" if name is not None else "")
        try:
            try:
                first = ds[0] if len(ds) else None
            except TypeError:  # an IterableDataset: no len(), no indexing; peek at one row
                first = next(iter(ds), None)
            if first is not None:
                _eval_item(first)
        except AugtuneError as exc:
            raise ConfigError(f"{label}: {exc}") from None
        except (TypeError, KeyError, IndexError):
            raise ConfigError(f"{label}: a {type(ds).__name__} is not a dataset of rows; give a "
                              "datasets.Dataset of prompt/completion or messages rows.") from None


def _as_eval(rows):
    if not rows:
        return None
    from datasets import Dataset
    cols = {"prompt": [r.prompt for r in rows], "completion": [r.completion for r in rows],
            "augtune_row": [True] * len(rows)}  # labelled as training is (see _eval_item)
    if any(r.messages for r in rows):  # conversations are evaluated whole, like training
        cols["messages"] = [[{"role": a, "content": b} for a, b in r.messages] or None
                            for r in rows]
    return Dataset.from_dict(cols)
