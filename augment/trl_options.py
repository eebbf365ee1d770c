"""What augtune does with each TRL option that touches data, batching or the loss.

Why a table: augtune hands TRL a dataset of plan indices and does tokenisation, truncation,
masking and padding in its own collator (TRL's dataset preparation is skipped), so every TRL
option that would have acted in that preparation is either re-implemented by the collator and
trainer (kept, each with a test that shows its effect) or stops the run before anything is
loaded, with one line saying why and what to do instead. Nothing is silently ignored.
`tests/test_trl_options.py` walks this table: every field below is covered, every refusal fires
with its message and every kept field names a test that exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import ConfigError


@dataclass(frozen=True)
class Option:
    field: str
    verdict: str            # "kept" (observable effect, tested), "refused", "set by augtune"
    how: str                # what augtune does with it (README table)
    refused_if: Callable[[Any], bool] | None = None
    message: str = ""       # one line: why it cannot combine with augmentation, what to do
    refused_value: Any = None  # a value the walk test sets to see the refusal
    test: str = ""          # tests/test_trl_options.py function that shows the kept effect


OPTIONS: list[Option] = [
    Option("padding_free", "kept",
           "the augmenting collator flattens each batch itself (TRL's collator, padding_free=True); "
           "per-source metrics split it by position_ids",
           test="test_padding_free_matches_padded_loss_grads_and_sources"),
    Option("loss_type", "kept", "TRL's compute_loss (nll, dft); per-source losses use the same token loss",
           test="test_dft_changes_loss_and_per_source_losses_follow"),
    Option("label_smoothing_factor", "kept",
           "TRL's compute_loss (TRL builds full logits for it, with an extra pass: deprecated in TRL); "
           "per-source losses stay the token NLL",
           test="test_label_smoothing_and_compute_loss_func_reach_trl"),
    Option("use_liger_kernel", "kept",
           "TRL/Trainer apply liger's layer kernels (TRL itself refuses its fused cross-entropy); "
           "needs liger-kernel and a GPU",
           test="test_liger_reaches_trainer"),
    Option("max_length", "kept", "the collator truncates (prompt kept, response tail cut; see collator); None = no cut",
           test="test_max_length_and_pad_to_multiple_of_shape_the_batch"),
    Option("pad_to_multiple_of", "kept", "passed to TRL's padding collator inside ours",
           test="test_max_length_and_pad_to_multiple_of_shape_the_batch"),
    Option("completion_only_loss", "kept", "None/True: prompt masked (TRL's default for prompt-completion); "
           "False: the prompt trains too; True on conversations refused (TRL ignores it there)",
           test="test_completion_and_assistant_only_loss_set_the_labels"),
    Option("assistant_only_loss", "kept", "conversations: every token trains unless True (then the "
           "assistant turns); pairs: prompt masked even with completion_only_loss=False; needs a "
           "chat template",
           test="test_completion_and_assistant_only_loss_set_the_labels"),
    Option("router_aux_loss_coef", "kept", "TRL's compute_loss adds the MoE aux loss",
           test="test_moe_aux_loss_is_added"),
    Option("truncation_mode", "refused",
           "keep_start (default) is the collator's policy",
           lambda c: c.truncation_mode != "keep_start",
           "truncation_mode=keep_end cannot combine with augmentation: the collator keeps the end "
           "of the prompt and the start of the response (min_completion_tokens); remove it.",
           "keep_end"),
    Option("packing", "refused", "",
           lambda c: bool(c.packing),
           "packing=True cannot combine with augmentation: TRL packs a prepared dataset once, but "
           "variants are chosen per epoch in the collator; use padding_free: true instead.", True),
    Option("packing_strategy", "refused", "only read with packing",
           lambda c: c.packing_strategy != "bfd",
           "packing_strategy only applies to packing, which cannot combine with augmentation; "
           "remove it and use padding_free: true.", "wrapped"),
    Option("eval_packing", "refused", "",
           lambda c: bool(c.eval_packing),
           "eval_packing=True cannot combine with augmentation: eval batches go through the same "
           "collator and are never packed; remove it (padding_free: true also applies to eval).", True),
    Option("dataset_text_field", "refused", "augtune reads prompt/completion rows",
           lambda c: c.dataset_text_field != "text",
           "dataset_text_field cannot combine with augmentation: variants are made from "
           "prompt/completion pairs; map your columns with column_mapping (DataConfig, or the config file) instead.", "content"),
    Option("shuffle_dataset", "refused", "the ratio sampler orders every epoch from (seed, epoch)",
           lambda c: bool(c.shuffle_dataset),
           "shuffle_dataset=True cannot combine with augmentation: the ratio sampler already "
           "shuffles every epoch from (seed, epoch); remove it.", True),
    Option("train_sampling_strategy", "refused", "the ratio sampler replaces Trainer's sampler",
           lambda c: c.train_sampling_strategy != "random",
           "train_sampling_strategy cannot combine with augmentation: the ratio sampler decides "
           "the order of each epoch; remove it.", "group_by_length"),
    Option("dataset_num_proc", "refused", "no dataset preparation happens",
           lambda c: c.dataset_num_proc is not None,
           "dataset_num_proc cannot combine with augmentation: tokenisation runs in the collator, "
           "not a dataset map; use dataloader_num_workers instead.", 2),
    Option("eos_token", "refused", "the collator ends the response with the chat template's end of turn",
           lambda c: c.eos_token is not None,
           "eos_token cannot combine with augmentation: the collator takes the end of turn from "
           "the tokenizer's chat template (or eos_token); set it on the tokenizer instead.", "</s>"),
    Option("chat_template_path", "refused", "the collator renders with the tokenizer's own template",
           lambda c: c.chat_template_path is not None,
           "chat_template_path cannot combine with augmentation: the collator renders with the "
           "tokenizer's template before TRL would swap it; save the template in your tokenizer "
           "folder instead.", "template.jinja"),
    Option("pad_token", "refused", "deprecated in TRL; the collator pads with the tokenizer's pad (or eos)",
           lambda c: c.pad_token is not None,
           "pad_token cannot combine with augmentation (and is deprecated in TRL): the collator "
           "pads with the tokenizer's pad or eos token; set tokenizer.pad_token instead.", "<pad>"),
    Option("dataset_kwargs", "set by augtune", "skip_prepare_dataset=True (the collator prepares each batch)"),
    Option("remove_unused_columns", "set by augtune", "False (the collator needs the plan index column)"),
]

BY_FIELD = {o.field: o for o in OPTIONS}


def check_sft_config(cfg) -> None:
    """Stop on the first TRL option that cannot combine with augmentation (one line)."""
    for opt in OPTIONS:
        if opt.refused_if is not None and opt.refused_if(cfg):
            raise ConfigError(opt.message)

