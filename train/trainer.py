"""`AugmentedSFTTrainer`: TRL's SFTTrainer with the ratio sampler and per-source losses.

Why a subclass and not callbacks: the per-source losses must come from the SAME forward pass as
the training loss (a second pass would double the cost), and they must be logged through
`Trainer.log` so TensorBoard / W&B see them (a callback writing into `logs` in `on_log` only
reaches `log_history`, see ../shared/STACK.md).
"""

from __future__ import annotations

import json
import math
import os

import torch
import torch.nn.functional as F
from trl import SFTTrainer

from augment.types import METHOD_NAMES

# Tag values the collator puts in `aug_source`: -1 = original, k = METHOD_NAMES[k].
N_SOURCES = len(METHOD_NAMES) + 1  # slot 0 = original, slot k+1 = method k


class AugmentedSFTTrainer(SFTTrainer):
    """SFTTrainer whose train sampler is a `RatioSampler` and whose logs carry, per logging
    window and summed over all ranks before dividing (token-weighted):

    - `loss_original`, `loss_augmented`, `loss_<method>`: mean token loss of each source
    - `aug_fraction`: augmented examples / all examples trained on in the window
    - `aug_similarity_mean`: mean QC similarity of the augmented examples in the window

    Every evaluation reports `eval_loss` (original eval prompts) and, when held-out paraphrases
    are given, `eval_paraphrase_loss` and `eval_paraphrase_gap` (= paraphrase - original).
    """

    def __init__(self, *args, ratio_sampler=None, paraphrase_eval_dataset=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.ratio_sampler = ratio_sampler
        self.paraphrase_eval_dataset = paraphrase_eval_dataset
        # [loss_sum, tokens, examples, similarity_sum, similarity_count] per source slot, on the model's device.
        self._aug_acc = torch.zeros(N_SOURCES, 5, dtype=torch.float64, device=self.args.device)
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
    def _get_train_sampler(self, train_dataset=None):
        return self.ratio_sampler if self.ratio_sampler is not None else super()._get_train_sampler(train_dataset)

    # ----------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Tags the collator carries in the batch (aug_source, aug_similarity, aug_truncated,
        # aug_index): never model inputs.
        tags = {k: inputs.pop(k) for k in [k for k in inputs if k.startswith("aug_")]}
        source, index = tags.get("aug_source"), tags.get("aug_index")
        if self._trace is not None and model.training and index is not None:
            self._trace.write(json.dumps({"step": self.state.global_step,
                                         "index": index.tolist()}) + "\n")
            self._trace.flush()
        similarity = tags.get("aug_similarity")
        labels = inputs.pop("labels")
        outputs = model(**inputs, use_cache=False)
        logits = outputs.logits
        # Shift the labels, not the logits: slicing logits[:, :-1] would copy a
        # batch x length x vocab tensor every step (measured ~45% of the loss's time).
        targets = F.pad(labels[:, 1:], (0, 1), value=-100).to(logits.device)
        mask = targets.ne(-100)
        # Per-token loss once; the batch loss and every per-source loss are sums of it.
        tok = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1),
                              ignore_index=-100, reduction="none").view_as(targets)
        per_ex_sum = (tok * mask).sum(dim=1)
        per_ex_tok = mask.sum(dim=1)
        total = per_ex_sum.sum()
        if num_items_in_batch is not None and self.model_accepts_loss_kwargs:
            # Mirrors Trainer.compute_loss: normalised over the whole accumulated (and, with
            # average_tokens_across_devices, global) batch, so no further GA division happens.
            loss = total / num_items_in_batch
            if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
                loss = loss * self.accelerator.num_processes
        else:
            loss = total / per_ex_tok.sum().clamp(min=1)
        if model.training and source is not None:
            with torch.no_grad():
                slot = (source.to(per_ex_sum.device) + 1).long()
                sim = similarity.to(per_ex_sum.device).double()
                has_sim = torch.isfinite(sim)  # refusals carry NaN: no original to compare with
                stats = torch.stack([per_ex_sum.detach().double(), per_ex_tok.double(),
                                     torch.ones_like(sim), sim.nan_to_num(0.0),
                                     has_sim.double()], dim=1)
                self._aug_acc.index_add_(0, slot.to(self._aug_acc.device), stats.to(self._aug_acc.device))
        return (loss, outputs) if return_outputs else loss

    # ----------------------------------------------------------------- logging
    def log(self, logs, start_time=None):
        if "loss" in logs and self.model.training:
            logs.update(self._aug_metrics())
        super().log(logs, start_time)

    def _aug_metrics(self) -> dict:
        """Reduce the window's accumulators over ranks (a collective: every rank calls log for
        training logs at the same step) and turn them into metrics."""
        acc = self._aug_acc.clone()  # clone: on CPU, .cpu() would alias the buffer zeroed below
        if self.accelerator.num_processes > 1:
            acc = self.accelerator.reduce(acc, reduction="sum")
        acc = acc.cpu()
        self._aug_acc.zero_()
        out = {}
        examples = acc[:, 2].sum().item()
        if examples == 0:
            return out
        aug = acc[1:].sum(dim=0)
        out["aug_fraction"] = aug[2].item() / examples
        if acc[0, 1] > 0:
            out["loss_original"] = acc[0, 0].item() / acc[0, 1].item()
        if aug[1] > 0:
            out["loss_augmented"] = aug[0].item() / aug[1].item()
        if aug[4] > 0:
            out["aug_similarity_mean"] = aug[3].item() / aug[4].item()
        for k, name in enumerate(METHOD_NAMES):
            if acc[k + 1, 1] > 0:
                out[f"loss_{name}"] = acc[k + 1, 0].item() / acc[k + 1, 1].item()
        return {k: round(v, 6) for k, v in out.items() if math.isfinite(v)}

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if eval_dataset is None and metric_key_prefix == "eval" and self.paraphrase_eval_dataset is not None:
            para = super().evaluate(self.paraphrase_eval_dataset, ignore_keys, "eval_paraphrase")
            metrics.update(para)
            if "eval_loss" in metrics and "eval_paraphrase_loss" in para:
                gap = {"eval_paraphrase_gap": para["eval_paraphrase_loss"] - metrics["eval_loss"]}
                metrics.update(gap)
                self.log(gap)
        return metrics
