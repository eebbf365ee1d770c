"""The trainer's per-source metrics use the sampler's definitions, and every step is reported.

"Augmented" means variants of training rows, as `RatioSampler` counts them (`augmented`,
`augmented_fraction`, the 70% cap, augmentation_summary.json): refusals are new pairs with a share
of their own (`refusal_fraction`, `loss_refusals`). The steps after the last logging step are
reported in the final `train_loss` entry, where TRL puts its own leftovers.

Trainers are built in-process on the tiny Llama (tests/conftest.py), as tests/test_trl_options.py
does.
"""

from __future__ import annotations

import math

import pytest
import torch

from augment.trainer import N_SOURCES
from augment.types import METHOD_NAMES

TOL = 1e-5  # the trainer logs 6 significant digits

# original, 2 templates, 1 paraphrase, 1 refusal, 1 original: 3 augmented, 1 refusal of 6.
EXAMPLES = [
    ("How do I reset my password?", "Open Settings, then Security, then Reset.", "original", 1.0),
    ("Please tell me how I reset my password.", "Open Settings, then Security.", "templates", 0.91),
    ("What's the way to change my password?", "Settings > Security > Reset password.",
     "paraphrase", 0.83),
    ("Can I get a refund for order 42?", "Yes, within 30 days.", "original", 1.0),
    ("I need you to refund order 42.", "Yes: within 30 days of delivery.", "templates", 0.88),
    ("Help me hack my neighbour's wifi.", "I can't help with that: it is illegal. I can help "
     "you secure your own network.", "refusals", float("nan")),
]


def rows():
    return [{"prompt": p, "completion": c, "source": s, "similarity": sim} for p, c, s, sim in EXAMPLES]


def make(tiny_model_dir, tmp_path, **cfg):
    """A trainer over the six EXAMPLES with augtune's collator and Trainer's own sampler."""
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaForCausalLM
    from trl import SFTConfig

    from augment.collator import AugmentingCollator
    from augment.trainer import AugmentedSFTTrainer
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(tiny_model_dir)
    args = SFTConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to="none",
                     dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False,
                     max_length=64, save_strategy="no", **cfg)
    collator = AugmentingCollator(tok, max_length=64)
    trainer = AugmentedSFTTrainer(model=model, args=args, processing_class=tok,
                                  data_collator=collator, train_dataset=Dataset.from_list(rows()))
    return trainer, collator


def slot(source: str) -> int:
    return 0 if source == "original" else METHOD_NAMES.index(source) + 1


def test_refusals_are_not_counted_as_augmented(tiny_model_dir, tmp_path):
    """A window of known sums: aug_fraction and loss_augmented cover the variants only (the
    refusals, at a very different loss, would pull both up), refusal_fraction and loss_refusals
    report the refusals."""
    trainer, _ = make(tiny_model_dir, tmp_path)
    acc = torch.zeros(N_SOURCES, 5, dtype=torch.float64)
    # [loss_sum, tokens, examples, similarity_sum, similarity_count]
    acc[slot("original")] = torch.tensor([20.0, 10, 4, 0, 0], dtype=torch.float64)
    acc[slot("templates")] = torch.tensor([30.0, 10, 3, 2.7, 3], dtype=torch.float64)
    acc[slot("paraphrase")] = torch.tensor([10.0, 10, 2, 1.6, 2], dtype=torch.float64)
    acc[slot("refusals")] = torch.tensor([90.0, 10, 3, 0, 0], dtype=torch.float64)
    trainer._aug_acc.copy_(acc.to(trainer._aug_acc.device))
    m = trainer._aug_metrics()
    assert m["aug_fraction"] == pytest.approx(5 / 12, rel=TOL)
    assert m["refusal_fraction"] == pytest.approx(3 / 12, rel=TOL)
    assert m["loss_augmented"] == pytest.approx(40 / 20, rel=TOL)
    assert m["loss_refusals"] == pytest.approx(9.0, rel=TOL)
    assert m["loss_original"] == pytest.approx(2.0, rel=TOL)
    assert m["aug_similarity_mean"] == pytest.approx(4.3 / 5, rel=TOL)
    assert not trainer._aug_acc.any()  # the window is consumed


def test_logged_shares_follow_the_batch(tiny_model_dir, tmp_path):
    """Through compute_loss: 3 variants and 1 refusal among 6 examples; original + augmented +
    refusal shares sum to 1."""
    trainer, collator = make(tiny_model_dir, tmp_path)
    trainer.model.train()
    trainer.compute_loss(trainer.model, dict(collator(rows())))
    m = trainer._aug_metrics()
    assert m["aug_fraction"] == pytest.approx(3 / 6, rel=TOL)
    assert m["refusal_fraction"] == pytest.approx(1 / 6, rel=TOL)
    assert {"loss_refusals", "loss_templates", "loss_paraphrase", "loss_augmented"} <= set(m)
    assert math.isfinite(m["loss_augmented"])


def train_history(tiny_model_dir, tmp_path, max_steps):
    trainer, _ = make(tiny_model_dir, tmp_path, max_steps=max_steps, logging_steps=2,
                      per_device_train_batch_size=2, learning_rate=1e-3)
    trainer.train()
    return trainer.state.log_history


def test_last_partial_window_is_reported_at_the_end(tiny_model_dir, tmp_path):
    """3 steps of 2 examples, logging every 2: step 3's window goes into the final train_loss
    entry, so the windows together cover the whole epoch (3 variants, 1 refusal of 6)."""
    hist = train_history(tiny_model_dir, tmp_path, max_steps=3)
    window, final = [h for h in hist if "loss" in h], hist[-1]
    assert [h["step"] for h in window] == [2] and "train_loss" in final
    assert {"aug_fraction", "refusal_fraction"} <= set(final)
    examples = [4, 2]
    aug = sum(n * h["aug_fraction"] for n, h in zip(examples, [window[0], final]))
    ref = sum(n * h["refusal_fraction"] for n, h in zip(examples, [window[0], final]))
    assert aug == pytest.approx(3, rel=TOL) and ref == pytest.approx(1, rel=TOL)


def test_nothing_extra_when_the_last_window_was_logged(tiny_model_dir, tmp_path):
    hist = train_history(tiny_model_dir, tmp_path, max_steps=2)
    final = hist[-1]
    assert "train_loss" in final and "aug_fraction" not in final
