"""`AugmentedSFTTrainer`: TRL's SFTTrainer with the ratio sampler and per-source losses.

The loss is TRL's own: `compute_loss` pops the collator's `aug_*` tags and calls
`SFTTrainer.compute_loss`, so `loss_type` (nll, dft), label smoothing, `compute_loss_func`, the
MoE aux loss, TRL's fused LM head (per-token log-probs computed in chunks, never the
batch x length x vocabulary logits) and TRL's metrics (`mean_token_accuracy`, `entropy`,
`num_tokens`) are whatever TRL does. The per-source losses are read from the SAME forward pass:
a forward hook on the model, held only during the call, keeps the fused output (`log_probs`,
`label_mask`) that TRL computes anyway; no second pass, no logits, no restated loss formula
beyond DFT's one-line token weight.

Consistency training (`consistency_weight > 0`, augment/consistency.py) adds one term to TRL's
loss, computed from the hidden states of that same forward pass (a hook on the backbone) and the
LM head in chunks: the sampler has put each original and one of its instruction-side variants
side by side in the micro-batch.

Why a subclass and not callbacks: the per-source losses must come from that forward pass, and
they must be logged through `Trainer.log` so TensorBoard / W&B see them (a callback writing into
`logs` in `on_log` only reaches `log_history`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from trl import SFTTrainer

from .types import METHOD_NAMES

# Tag values the collator puts in `aug_source`: -1 = original, k = METHOD_NAMES[k].
N_SOURCES = len(METHOD_NAMES) + 1  # slot 0 = original, slot k+1 = method k
# Refusals are new (prompt, completion) pairs, not variants of a training row: the sampler counts
# them apart from `augmented` (and its cap), so the logged augmented share and loss do too.
REFUSAL_SLOT = METHOD_NAMES.index("refusals") + 1
AUGMENTED_SLOTS = [k + 1 for k, m in enumerate(METHOD_NAMES) if m != "refusals"]


class AugmentedSFTTrainer(SFTTrainer):
    """SFTTrainer whose train sampler is a `RatioSampler` and whose logs carry, per logging
    window and summed over all ranks before dividing (token-weighted):

    - `loss_original`, `loss_augmented`, `loss_<method>`: mean token loss of each source
      (`loss_refusals` for the refusal examples)
    - `aug_fraction`: augmented examples / all examples trained on in the window
    - `refusal_fraction`: refusal examples / all examples trained on in the window
    - `aug_similarity_mean`: mean QC similarity of the augmented examples in the window

    "Augmented" is the sampler's definition (`RatioSampler`: `augmented`, `augmented_fraction`,
    the `max_augmented_fraction` cap, augmentation_summary.json): variants of training rows, NOT
    refusals, which are new pairs with their own share. So `aug_fraction` and `loss_augmented`
    leave refusals out, and original + augmented + refusal shares sum to 1. The last logging
    window, when shorter than `logging_steps`, is reported in the final `train_loss` entry (as
    TRL reports its own metrics there).

    plus TRL's own `mean_token_accuracy`, `entropy` and `num_tokens`. With
    `consistency_weight > 0` also `loss_consistency` (the divergence per shared answer token,
    token-weighted over ranks) and `consistency_pairs` (pairs trained on in the window, all
    ranks); `loss` is then TRL's loss plus the weighted term. Every evaluation reports
    `eval_loss` (original eval prompts) and, when held-out paraphrases are given,
    `eval_paraphrase_loss` and `eval_paraphrase_gap` (= paraphrase - original); TRL's eval
    metrics carry the evaluation's prefix (`eval_entropy`, `eval_paraphrase_entropy`).

    `args.padding_free=True` is honoured by the collator (AugmentingCollator(padding_free=True)
    flattens each batch); it is hidden from TRL's constructor, which refuses custom collators
    with it, and restored afterwards.
    """

    def __init__(self, *args, ratio_sampler=None, paraphrase_eval_dataset=None,
                 consistency_weight: float | None = None, consistency_divergence: str | None = None,
                 **kwargs):
        from .pipeline import AugmentedData
        pad_model = False
        if isinstance(kwargs.get("train_dataset"), AugmentedData):
            kwargs, extra = _wire(kwargs)
            pad_model = extra["pad_model"]
            ratio_sampler = ratio_sampler or extra["ratio_sampler"]
            paraphrase_eval_dataset = paraphrase_eval_dataset or extra["paraphrase_eval_dataset"]
            if consistency_weight is None:
                consistency_weight = extra["consistency_weight"]
            consistency_divergence = consistency_divergence or extra["consistency_divergence"]
        elif any(isinstance(a, AugmentedData) for a in args):
            raise TypeError("pass augment.prepare(...)'s result by keyword: train_dataset=data.")
        sft_args = kwargs.get("args", args[1] if len(args) > 1 else None)
        padding_free = bool(getattr(sft_args, "padding_free", False))
        self.consistency_weight = float(consistency_weight or 0.0)
        self.consistency_divergence = consistency_divergence or "js"
        if self.consistency_weight:
            check_consistency_args(self.consistency_weight, self.consistency_divergence, sft_args)
            if ratio_sampler is None or not getattr(ratio_sampler, "consistency_pairs", False):
                from .errors import ConfigError
                raise ConfigError(
                    f"consistency_weight={self.consistency_weight} needs the pairs a RatioSampler "
                    "makes with consistency_pairs=True (augment.prepare builds it that way when "
                    "AugmentConfig.consistency_weight > 0).")
        if padding_free:
            # TRL refuses padding_free with a custom collator (and insists on packing to enforce
            # max_length); ours flattens the batch itself and truncates, so TRL must not see it.
            collator = kwargs.get("data_collator", args[2] if len(args) > 2 else None)
            if not getattr(collator, "padding_free", False):
                raise ValueError("padding_free=True needs a collator that emits padding-free batches: "
                                 "pass AugmentingCollator(..., padding_free=True).")
            sft_args.padding_free = False
        # Our collator masks everything but the assistant turn itself; TRL would refuse the
        # option because the dataset it sees holds row indices, not conversations.
        assistant_only = bool(getattr(sft_args, "assistant_only_loss", False))
        if assistant_only:
            sft_args.assistant_only_loss = False
        try:
            super().__init__(*args, **kwargs)
        finally:
            if padding_free:
                sft_args.padding_free = True  # what the saved config and the logs say
            if assistant_only:
                sft_args.assistant_only_loss = True
        if pad_model:  # as TRL does when it makes the collator: model and tokenizer agree
            base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            pad_id = self.processing_class.pad_token_id
            base.config.get_text_config().pad_token_id = pad_id
            if getattr(base, "generation_config", None) is not None:
                base.generation_config.pad_token_id = pad_id
        if self.consistency_weight and (self.is_fsdp_enabled or _zero3(self)):
            from .errors import ConfigError
            raise ConfigError(f"consistency_weight={self.consistency_weight} calls the LM head "
                              "outside the model's forward, which FSDP and DeepSpeed ZeRO-3 shard; "
                              "it is not supported there yet. Use DDP (the default of "
                              "accelerate launch), ZeRO-1/2, or consistency_weight: 0.")
        self._eval_prefix = "eval"
        self.ratio_sampler = ratio_sampler
        self.paraphrase_eval_dataset = paraphrase_eval_dataset
        # [loss_sum, tokens, examples, similarity_sum, similarity_count] per source slot, on the model's device.
        self._aug_acc = torch.zeros(N_SOURCES, 5, dtype=torch.float64, device=self.args.device)
        # [divergence_sum, shared_tokens, pairs] of the consistency term, same window.
        self._cons_acc = torch.zeros(3, dtype=torch.float64, device=self.args.device)
        # Diagnostics for distributed/resume checks: AUGTUNE_TRACE_DIR=dir makes every rank append
        # the plan indices of each training batch to dir/rank<k>.jsonl.
        trace_dir = os.environ.get("AUGTUNE_TRACE_DIR")
        self._trace = None
        if trace_dir:
            os.makedirs(trace_dir, exist_ok=True)
            self._trace = open(os.path.join(trace_dir, f"rank{self.args.process_index}.jsonl"), "a")

    def write_param_fingerprint(self) -> None:
        """With AUGTUNE_TRACE_DIR set, write a hash of this rank's trainable parameters, so a test
        can show that N processes really trained one synced model."""
        trace_dir = os.environ.get("AUGTUNE_TRACE_DIR")
        if not trace_dir:
            return
        import hashlib
        h = hashlib.sha256()
        for name, p in sorted(self.model.named_parameters()):
            if p.requires_grad:
                h.update(name.encode())
                h.update(p.detach().float().cpu().numpy().tobytes())
        with open(os.path.join(trace_dir, f"params{self.args.process_index}.txt"), "w") as f:
            f.write(h.hexdigest())

    # ----------------------------------------------------------------- sampling
    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """`resume_from_checkpoint=True` resumes from the newest COMPLETE checkpoint: a run killed
        while saving leaves a checkpoint folder whose trainer_state.json is missing or cut off,
        and transformers would pick it and fail on its JSON. With none, True stops, as the
        Trainer does; `"last"` starts a new run instead (a restart loop's first start)."""
        if resume_from_checkpoint is True or (isinstance(resume_from_checkpoint, str) and
                                              resume_from_checkpoint.lower() in ("true", "last")):
            asked = str(resume_from_checkpoint).lower()
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None and asked != "last":
                raise no_checkpoint_error(self.args.output_dir)  # as the Trainer stops, in one line
        self._check_same_plan(resume_from_checkpoint)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _check_same_plan(self, checkpoint) -> None:
        """A resumed run skips the batches its checkpoint trained: that is only right if the
        plan is the one it trained on. A rebuild at the restart (failed requests retried,
        candidates judged under other QC settings) changes the accepted variants and so every
        plan, and would repeat some examples and skip others. So the plan's fingerprint is kept
        beside the run (`augtune_plan.json`) and compared on a resume."""
        if self.ratio_sampler is None:
            return
        here = {"plan_fingerprint": self.ratio_sampler.fingerprint}
        record = Path(self.args.output_dir) / "augtune_plan.json"
        if checkpoint:
            saved = Path(checkpoint).parent / "augtune_plan.json"
            if saved.is_file():
                try:
                    then = json.loads(saved.read_text()).get("plan_fingerprint")
                except ValueError:
                    then = None
                if then is not None and then != here["plan_fingerprint"]:
                    from .errors import AugtuneError
                    raise AugtuneError(
                        f"cannot resume from {checkpoint}: the accepted variants or sampler "
                        "settings changed since that run started (a rebuild retried failed "
                        "requests or judged them under other QC settings), so its epoch plans "
                        "differ and the resumed run would repeat some examples and skip others. "
                        "Start a new run (another output_dir), or resume against the cache as it "
                        "was then.")
        if self.is_world_process_zero():
            from .atomic import write_text_atomic
            write_text_atomic(record, json.dumps(here) + "\n")

    def _run_epoch(self, *args, **kwargs):
        # The epoch's plan follows the epoch whatever wraps the sampler: after a resume the
        # Trainer iterates SkipBatchSampler(BatchSamplerShard(BatchSampler(ours))) with several
        # processes, and neither accelerate's set_epoch nor the Trainer's reaches that deep (a
        # resume in epoch 1 replayed epoch 0's plan).
        epoch = kwargs.get("epoch", args[1] if len(args) > 1 else None)
        if self.ratio_sampler is not None and epoch is not None:
            self.ratio_sampler.set_epoch(epoch)
        return super()._run_epoch(*args, **kwargs)

    def num_examples(self, dataloader) -> int:
        """An epoch trains the sampler's plan, not the index dataset (every original, variant
        and refusal): the Trainer's "Num examples" and train_samples_per_second use this."""
        if self.ratio_sampler is not None and getattr(dataloader, "dataset", None) is self.train_dataset:
            return len(self.ratio_sampler)
        return super().num_examples(dataloader)

    def _get_train_sampler(self, train_dataset=None):
        return self.ratio_sampler if self.ratio_sampler is not None else super()._get_train_sampler(train_dataset)

    # ----------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Tags the collator carries in the batch (aug_source, aug_similarity, aug_truncated,
        # aug_index): never model inputs.
        tags = {k: inputs.pop(k) for k in [k for k in inputs if k.startswith("aug_")]}
        source, index, pair = tags.get("aug_source"), tags.get("aug_index"), tags.get("aug_pair")
        if self._trace is not None and model.training and index is not None:
            self._trace.write(json.dumps({"step": self.state.global_step,
                                         "index": index.tolist()}) + "\n")
            self._trace.flush()
        if not (model.training and source is not None):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        fused, hidden = [], []

        def keep_fused_output(module, args, kwargs, output):
            if kwargs.get("fused_lm_head"):
                fused.append(output)

        def keep_hidden(module, args, output):
            h = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
            if h.requires_grad or not hidden:  # TRL's loss pass, not a no-grad metrics pass
                hidden[:] = [h]

        # Positions/rows as the collator made them, before TRL adds its own keys to `inputs`.
        example_of_token = _example_of_token(inputs, len(source))
        consistency = self.consistency_weight > 0 and pair is not None and bool((pair >= 0).any())
        batch = {k: inputs.get(k) for k in ("input_ids", "labels", "attention_mask")}
        hooks = [model.register_forward_hook(keep_fused_output, with_kwargs=True)]
        lm = self._causal_lm(model) if consistency else None
        if consistency:
            hooks.append(lm.base_model.register_forward_hook(keep_hidden))
        try:
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            for h in hooks:
                h.remove()
        if fused:
            self._accumulate_sources(fused[-1], example_of_token, source, tags.get("aug_similarity"))
        if consistency and hidden:
            term = self._consistency_term(lm, hidden[0], batch, pair, num_items_in_batch)
            result = (result[0] + term, *result[1:]) if return_outputs else result + term
        return result

    def _causal_lm(self, model):
        """The causal LM under accelerate's (DDP) and PEFT wrappers: its `base_model` is the
        backbone TRL's fused head runs, its output embeddings the LM head."""
        model = self.accelerator.unwrap_model(model)
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def _consistency_term(self, lm, hidden, batch, pair, num_items_in_batch):
        """consistency_weight x mean divergence over this micro-batch's shared answer tokens,
        scaled like TRL scales the MoE aux loss under gradient accumulation."""
        from .consistency import divergence_sum, head_transform, shared_answer_positions
        ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
        hidden = hidden[:, -ids.size(1):]  # prompt-learning PEFT prepends virtual tokens
        lengths = mask.sum(dim=1) if mask is not None else torch.full((ids.size(0),), ids.size(1))
        pos = shared_answer_positions(ids, labels, pair, lengths)
        softcap, scale = head_transform(lm)
        total, n = divergence_sum(hidden, pos, lm.get_output_embeddings(),
                                  kind=self.consistency_divergence, softcap=softcap, scale=scale)
        pairs = int((pair > torch.arange(len(pair), device=pair.device)).sum())
        self._cons_acc += torch.tensor([float(total.detach()), n, pairs], dtype=torch.float64,
                                       device=self._cons_acc.device)
        if n == 0:
            return total  # a differentiable zero
        steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
        return self.consistency_weight * (total / n) / steps

    @torch.no_grad()
    def _accumulate_sources(self, out, example_of_token, source, similarity) -> None:
        """Per-example token loss sums from the fused head's per-token log-probs, added to this
        logging window's per-source accumulators. The token loss is TRL's: -log p (nll), or
        -log p * p (dft). With label smoothing or `compute_loss_func` TRL's loss comes from full
        logits and these stay the plain token NLL of TRL's metrics pass."""
        n = len(source)
        width = example_of_token.size(1) - 1  # log_probs are shifted: position t scores token t+1
        # Prompt-learning PEFT prepends virtual tokens: the caller's tokens are the last ones.
        lp = out.log_probs.detach()[:, -width:].double()
        mask = out.label_mask[:, -width:]
        tok = -lp * lp.exp() if self.args.loss_type == "dft" else -lp
        ex = example_of_token[:, 1:].to(mask.device)[mask]
        per_ex_sum = torch.zeros(n, dtype=torch.float64, device=mask.device).index_add_(0, ex, tok[mask])
        per_ex_tok = torch.zeros(n, dtype=torch.float64, device=mask.device).index_add_(
            0, ex, torch.ones_like(tok[mask]))
        slot = (source.to(mask.device) + 1).long()
        sim = similarity.to(mask.device).double()
        has_sim = torch.isfinite(sim)  # refusals carry NaN: no original to compare with
        stats = torch.stack([per_ex_sum, per_ex_tok, torch.ones_like(sim), sim.nan_to_num(0.0),
                             has_sim.double()], dim=1)
        self._aug_acc.index_add_(0, slot.to(self._aug_acc.device), stats.to(self._aug_acc.device))

    # ----------------------------------------------------------------- logging
    def log(self, logs, start_time=None):
        if "loss" in logs and self.model.training:
            logs.update(self._aug_metrics())
        elif "train_loss" in logs:
            # The end of training (every rank logs it, so the reduce is collective): the steps
            # after the last logging step would otherwise never be reported.
            logs.update(self._aug_metrics(final=True))
        if not self.model.training and self._eval_prefix != "eval" and self._metrics["eval"]:
            # TRL names its eval metrics eval_<name> whatever the prefix; an evaluation under
            # another prefix (held-out paraphrases) gets its own names, eval_paraphrase_entropy.
            logs.update({f"{self._eval_prefix}_{k}": sum(v) / len(v)
                         for k, v in self._metrics["eval"].items()})
            self._metrics["eval"].clear()
        super().log(logs, start_time)

    def _aug_metrics(self, final: bool = False) -> dict:
        """Reduce the window's accumulators over ranks (a collective: every rank calls log for
        training logs at the same step) and turn them into metrics. `final`: the end-of-training
        entry, which gets nothing when the last window was already logged."""
        # one collective for both buffers (a copy: on CPU, .cpu() would alias the buffers zeroed below)
        acc = torch.cat([self._aug_acc.flatten(), self._cons_acc])
        if self.accelerator.num_processes > 1:
            acc = self.accelerator.reduce(acc, reduction="sum")
        acc = acc.cpu()
        self._aug_acc.zero_()
        self._cons_acc.zero_()
        if final and not acc.any():
            return {}
        cons, acc = acc[-3:], acc[:-3].view(N_SOURCES, 5)
        out = {}
        if self.consistency_weight:
            out["consistency_pairs"] = cons[2].item()
            if cons[1] > 0:
                out["loss_consistency"] = cons[0].item() / cons[1].item()
        out.update(source_metrics(acc))
        # 6 significant digits, not places: DFT losses are ~1e-4 and would lose their precision
        return {k: float(f"{v:.6g}") for k, v in out.items() if math.isfinite(v)}

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        self._eval_prefix = metric_key_prefix
        try:
            metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        finally:
            self._eval_prefix = "eval"
        if eval_dataset is None and metric_key_prefix == "eval" and self.paraphrase_eval_dataset is not None:
            self._eval_prefix = "eval_paraphrase"
            try:
                para = super().evaluate(self.paraphrase_eval_dataset, ignore_keys, "eval_paraphrase")
            finally:
                self._eval_prefix = "eval"
            metrics.update(para)
            if "eval_loss" in metrics and "eval_paraphrase_loss" in para:
                gap = {"eval_paraphrase_gap": para["eval_paraphrase_loss"] - metrics["eval_loss"]}
                metrics.update(gap)
                self.log(gap)
        return metrics


def source_metrics(acc: torch.Tensor) -> dict:
    """Per-source metrics of one window from its summed accumulators (N_SOURCES x [loss_sum,
    tokens, examples, similarity_sum, similarity_count]). Augmented = the variant slots only
    (AUGMENTED_SLOTS), as the sampler counts them; refusals get `refusal_fraction` and
    `loss_refusals`."""
    examples = acc[:, 2].sum().item()
    if examples == 0:
        return {}
    aug = acc[AUGMENTED_SLOTS].sum(dim=0)
    out = {"aug_fraction": aug[2].item() / examples,
           "refusal_fraction": acc[REFUSAL_SLOT, 2].item() / examples}
    if acc[0, 1] > 0:
        out["loss_original"] = acc[0, 0].item() / acc[0, 1].item()
    if aug[1] > 0:
        out["loss_augmented"] = aug[0].item() / aug[1].item()
    if aug[4] > 0:
        out["aug_similarity_mean"] = aug[3].item() / aug[4].item()
    for k, name in enumerate(METHOD_NAMES):
        if acc[k + 1, 1] > 0:
            out[f"loss_{name}"] = acc[k + 1, 0].item() / acc[k + 1, 1].item()
    return out


def _example_of_token(inputs, n_examples: int) -> torch.Tensor:
    """Example number of every token of the batch, shape (rows, length). Padded batches: the
    row. Padding-free batches (one row, no attention_mask): a new example starts wherever
    `position_ids` is 0, as in TRL's collator; padding that `pad_to_multiple_of` appends after
    the last example also has position 0 but no labels, so it is clamped onto the last example
    without changing any sum."""
    ids = inputs["input_ids"]
    if "attention_mask" not in inputs and "position_ids" in inputs and ids.size(0) == 1:
        starts = inputs["position_ids"].eq(0).long()
        return (starts.cumsum(dim=1) - 1).clamp(0, n_examples - 1)
    return torch.arange(ids.size(0), device=ids.device)[:, None].expand_as(ids)


def _wire(kwargs: dict) -> tuple[dict, dict]:
    """`AugmentedSFTTrainer(model=..., args=..., train_dataset=augment.prepare(...))`: fill in
    what the recipe passes by hand. TRL's options are checked (kept or refused with one line),
    TRL's own dataset preparation is switched off (the collator tokenises, masks and truncates
    on the fly), and the index dataset, the augmenting collator (for the tokenizer that TRL
    would use), the ratio sampler and the eval sets come from `data`."""
    from .models import EMBEDDED, load_model, load_tokenizer, resolve_model_path
    from .trl_options import check_sft_config
    kwargs = dict(kwargs)
    data = kwargs.pop("train_dataset")
    args = kwargs.get("args")
    if args is None:
        raise TypeError("AugmentedSFTTrainer(train_dataset=augment.prepare(...)) needs "
                        "args=SFTConfig(...) (its max_length, padding and loss options shape the "
                        "augmenting collator).")
    check_sft_config(args)
    from .errors import ConfigError
    if kwargs.get("formatting_func") is not None:
        raise ConfigError("formatting_func is not applied with augment.prepare(...): augmentation "
                          "rewrites the prompt of prompt/completion (or messages) rows, so map "
                          "your rows to those fields before prepare (its column_mapping, or a "
                          "datasets.map) instead.")
    data_seed = data_order_seed(args)
    if data.seed != data_seed:
        which = "data_seed" if args.data_seed is not None else "seed"
        raise ConfigError(f"train_dataset's epochs are planned with seed {data.seed}, but this "
                          f"SFTConfig orders data with {which}={data_seed}: call "
                          f"augment.prepare(..., args=<this SFTConfig>) (or seed={args.seed}, "
                          f"data_seed={args.data_seed}).")
    args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    args.remove_unused_columns = False
    model = kwargs.get("model")
    if isinstance(model, str) and model in EMBEDDED:
        # `embedded:smollm2` is a name only augtune resolves (to its converted folder): load
        # it the way train/sft.py does.
        from types import SimpleNamespace
        init = dict(getattr(args, "model_init_kwargs", None) or {})
        model = kwargs["model"] = load_model(resolve_model_path(model), SimpleNamespace(
            dtype=init.get("dtype"), attn_implementation=init.get("attn_implementation"),
            model_revision=init.get("revision", "main")), args)
    elif isinstance(model, str):
        model = kwargs["model"] = resolve_model_path(model)
    tokenizer = kwargs.get("processing_class")
    if tokenizer is None:
        init = dict(getattr(args, "model_init_kwargs", None) or {})
        tokenizer = kwargs["processing_class"] = load_tokenizer(
            model if isinstance(model, str) else model.config._name_or_path,
            revision=init.get("revision"),
            trust_remote_code=init.get("trust_remote_code", getattr(args, "trust_remote_code", None)))
    from .pipeline import IndexedCollator, check_eval_dataset
    made_collator = kwargs.get("data_collator") is None
    if not made_collator and not isinstance(kwargs["data_collator"], IndexedCollator):
        raise ConfigError("data_collator: with train_dataset=augment.prepare(...) the batches are "
                          "made by augtune's collator (it turns each planned index into an "
                          "original or a variant, then tokenises, masks and pads with TRL's); "
                          "drop data_collator, or pass data.collator(tokenizer, args).")
    if made_collator:
        # TRL's rule when it makes the collator: the tokenizer's pad, else its EOS (SFTConfig's
        # pad_token is refused by check_sft_config); the model gets it too (see __init__).
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        kwargs["data_collator"] = data.collator(tokenizer, args)
    kwargs["train_dataset"] = data.train_dataset()
    if kwargs.get("eval_dataset") is None:
        kwargs["eval_dataset"] = data.eval_dataset()
    else:
        given = kwargs["eval_dataset"]
        check_eval_dataset(given)
        ours = data.eval_dataset()
        used = given is ours or (isinstance(given, dict) and any(v is ours for v in given.values()))
        held = len(data.split.eval) if not data.data_cfg.eval_dataset_name and not used else 0
        if held and args.process_index == 0:
            print(f"augtune: prepare held out {held} training rows as its eval set "
                  f"(eval_fraction {data.data_cfg.eval_fraction}), but eval_dataset is given "
                  "here: those rows neither train nor evaluate. Call prepare(..., "
                  "eval_fraction=0) to train on them.", flush=True)
    if (data.split.eval_paraphrases and args.process_index == 0
            and getattr(getattr(kwargs["data_collator"], "collator", None), "mask_prompt", True) is False):
        print("augtune: the prompts carry labels here (completion_only_loss: false, or "
              "conversations without assistant_only_loss: true), so eval_paraphrase_loss includes "
              "the reworded prompts' own tokens and eval_paraphrase_gap compares different texts. "
              "For an answer-only comparison set assistant_only_loss: true (conversations) or "
              "leave completion_only_loss at its default.", flush=True)
    return kwargs, {"ratio_sampler": data.sampler, "pad_model": made_collator,
                    "paraphrase_eval_dataset": data.paraphrase_eval_dataset(),
                    "consistency_weight": data.aug_cfg.consistency_weight,
                    "consistency_divergence": data.aug_cfg.consistency_divergence}


def data_order_seed(args) -> int:
    """The seed TRL orders data by: `data_seed` when set, else `seed`."""
    return args.data_seed if getattr(args, "data_seed", None) is not None else args.seed


def no_checkpoint_error(output_dir):
    """The one message for resume_from_checkpoint: true with nothing to resume."""
    from .errors import ConfigError
    return ConfigError(f"resume_from_checkpoint: no complete checkpoint in {output_dir} to "
                       "resume from. Drop the option to start a new run, or use `last` (resume "
                       "if there is one, else start).")


def _zero3(trainer) -> bool:
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return plugin is not None and getattr(plugin, "zero_stage", 0) == 3


def check_consistency_args(weight, divergence, args) -> None:
    """Refuse, with one line each, the SFTConfig settings under which pairs cannot be formed or
    compared (train/sft.py calls this in its preflight, before any build or model load)."""
    from .config import CONSISTENCY_DIVERGENCES
    from .errors import ConfigError
    if divergence not in CONSISTENCY_DIVERGENCES:
        raise ConfigError(f"consistency_divergence={divergence!r} is not one of "
                          f"{CONSISTENCY_DIVERGENCES}.")
    bs = getattr(args, "per_device_train_batch_size", 0)
    if bs < 2 or bs % 2:
        raise ConfigError(f"consistency_weight={weight} puts an original and its variant at "
                          "positions (2k, 2k+1) of each micro-batch: per_device_train_batch_size "
                          f"must be even, got {bs}.")
    if getattr(args, "padding_free", False):
        raise ConfigError(f"consistency_weight={weight} compares the two examples of a pair "
                          "token by token in a padded batch; set padding_free: false.")
    if getattr(args, "completion_only_loss", None) is False:
        raise ConfigError(f"consistency_weight={weight} compares the answers given two prompts; "
                          "with completion_only_loss: false the prompt tokens (which differ) are "
                          "labelled too. Remove completion_only_loss: false.")


def last_complete_checkpoint(output_dir) -> str | None:
    """The newest `checkpoint-N` under `output_dir` whose trainer_state.json (written last by
    the Trainer) loads; None when there is none. Skipped ones are named on stderr."""
    import re
    import sys
    from pathlib import Path
    found = [(int(m.group(1)), p) for p in Path(output_dir).glob("checkpoint-*")
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and p.is_dir()]
    for _, path in sorted(found, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text())
            return str(path)
        except (OSError, ValueError):
            print(f"augtune: skipping {path}: incomplete (the run was killed while saving it)",
                  file=sys.stderr)
    return None
