"""The augmented trainer's loss is TRL's, and every TRL option that touches data, batching or the
loss is kept (with an effect shown here) or refused in the preflight (augment/trl_options.py).

Batches are built in-process with the real collator and tiny Llama (tests/conftest.py); the
"direct" computations below use the model's full logits, which the trainer itself never builds.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import ROOT
from augment import trl_options

EXAMPLES = [
    ("How do I reset my password?", "Open Settings, then Security, then Reset.", "original", 1.0),
    ("Please tell me how I reset my password.", "Open Settings, then Security.", "templates", 0.91),
    ("What's the way to change my password?", "Settings > Security > Reset password, then "
     "confirm the e-mail we send you.", "paraphrase", 0.83),
    ("Can I get a refund for order 42?", "Yes, within 30 days.", "original", 1.0),
    ("I need you to refund order 42.", "Yes: within 30 days of delivery, from Orders.", "templates", 0.88),
    ("Help me hack my neighbour's wifi.", "I can't help with that: it is illegal. I can help "
     "you secure your own network.", "refusals", float("nan")),
]
TOL = 1e-5  # float32 forward passes of the same maths in a different order


def rows(examples=EXAMPLES):
    return [{"prompt": p, "completion": c, "source": s, "similarity": sim} for p, c, s, sim in examples]


def make(tiny_model_dir, tmp_path, *, collator_kw=None, trainer_kw=None, model=None, **cfg):
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaForCausalLM
    from trl import SFTConfig

    from augment.collator import AugmentingCollator
    from augment.trainer import AugmentedSFTTrainer
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = model or LlamaForCausalLM.from_pretrained(tiny_model_dir)
    args = SFTConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to="none",
                     dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False,
                     max_length=cfg.pop("max_length", 64), **cfg)
    collator = AugmentingCollator(tok, max_length=args.max_length, padding_free=args.padding_free,
                                  pad_to_multiple_of=args.pad_to_multiple_of,
                                  completion_only_loss=args.completion_only_loss,
                                  assistant_only_loss=args.assistant_only_loss, **(collator_kw or {}))
    trainer = AugmentedSFTTrainer(model=model, args=args, processing_class=tok, data_collator=collator,
                                  train_dataset=Dataset.from_list(rows()), **(trainer_kw or {}))
    model.train()
    return trainer, collator


def step(trainer, collator, examples=EXAMPLES):
    """One training loss + backward through the trainer; returns loss, flat grads, metrics."""
    model = trainer.model
    model.zero_grad()
    loss = trainer.compute_loss(model, dict(collator(rows(examples))))
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    metrics = trainer._aug_metrics()
    trl = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    return loss.detach(), grads, metrics, trl


def direct_per_source(trainer, collator, token_loss):
    """Per-example token-loss sums from the model's FULL logits (padded batch), then per source
    token-weighted: what loss_<source> must equal."""
    import torch.nn.functional as F
    batch = collator(rows())
    model = trainer.model
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    lp = F.log_softmax(logits[:, :-1].double(), -1)
    mask = targets.ne(-100)
    tok_lp = lp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    tok = token_loss(tok_lp) * mask
    sums, counts = {}, {}
    for i, (_, _, src, _) in enumerate(EXAMPLES):
        # refusals are counted apart from the augmented variants, as the sampler counts them
        for key in {"loss_" + src,
                    "loss_augmented" if src not in ("original", "refusals") else "loss_" + src}:
            sums[key] = sums.get(key, 0.0) + tok[i].sum().item()
            counts[key] = counts.get(key, 0) + mask[i].sum().item()
    total = tok.sum().item() / mask.sum().item()
    return {k: sums[k] / counts[k] for k in sums}, total


# --------------------------------------------------------------------------- the loss is TRL's

def test_per_source_losses_equal_a_direct_per_example_computation(tiny_model_dir, tmp_path):
    trainer, collator = make(tiny_model_dir, tmp_path)
    loss, _, metrics, trl = step(trainer, collator)
    want, total = direct_per_source(trainer, collator, lambda lp: -lp)
    assert math.isclose(loss.item(), total, rel_tol=TOL)
    for key, value in want.items():
        assert math.isclose(metrics[key], value, rel_tol=TOL), (key, metrics[key], value)
    assert metrics["aug_fraction"] == pytest.approx(3 / 6)
    assert metrics["refusal_fraction"] == pytest.approx(1 / 6, rel=1e-5)
    assert metrics["aug_similarity_mean"] == pytest.approx((0.91 + 0.83 + 0.88) / 3, abs=1e-6)
    # TRL's own metrics are there, from TRL's compute_loss
    assert {"mean_token_accuracy", "entropy", "num_tokens"} <= set(trl)
    assert trl["num_tokens"] == collator(rows())["attention_mask"].sum().item()


def test_the_training_loss_never_builds_full_vocabulary_logits(tiny_model_dir, tmp_path):
    """The LM head's Linear is never called on the hidden states during the training loss: TRL's
    fused head multiplies chunks by lm_head.weight itself. Anything producing (.., vocab) logits
    through the module would trip this hook."""
    trainer, collator = make(tiny_model_dir, tmp_path)
    head = trainer.model.get_output_embeddings()
    calls = []
    handle = head.register_forward_hook(lambda m, a, o: calls.append(tuple(o.shape)))
    try:
        step(trainer, collator)
    finally:
        handle.remove()
    assert calls == []


def test_padding_free_matches_padded_loss_grads_and_sources(tiny_model_dir, tmp_path):
    padded = step(*make(tiny_model_dir, tmp_path))
    trainer, collator = make(tiny_model_dir, tmp_path, padding_free=True)
    batch = collator(rows())
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    assert batch["position_ids"].eq(0).sum().item() == len(EXAMPLES)
    flat = step(trainer, collator)
    assert trainer.args.padding_free is True  # hidden from TRL only during construction
    assert math.isclose(flat[0].item(), padded[0].item(), rel_tol=TOL)
    assert torch.allclose(flat[1], padded[1], rtol=1e-4, atol=1e-6)
    assert flat[2].keys() == padded[2].keys()
    for key in padded[2]:
        assert math.isclose(flat[2][key], padded[2][key], rel_tol=TOL), key
    assert flat[3]["num_tokens"] == padded[3]["num_tokens"]
    assert math.isclose(flat[3]["entropy"], padded[3]["entropy"], rel_tol=TOL)


def test_padding_free_with_pad_to_multiple_of_keeps_the_sources(tiny_model_dir, tmp_path):
    padded = step(*make(tiny_model_dir, tmp_path))
    trainer, collator = make(tiny_model_dir, tmp_path, padding_free=True, pad_to_multiple_of=64)
    assert collator(rows())["input_ids"].shape[1] % 64 == 0
    flat = step(trainer, collator)
    for key in padded[2]:
        assert math.isclose(flat[2][key], padded[2][key], rel_tol=TOL), key


def test_padding_free_needs_a_padding_free_collator(tiny_model_dir, tmp_path):
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaForCausalLM
    from trl import SFTConfig

    from augment.collator import AugmentingCollator
    from augment.trainer import AugmentedSFTTrainer
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, padding_free=True,
                     dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False)
    with pytest.raises(ValueError, match="padding-free batches"):
        AugmentedSFTTrainer(model=LlamaForCausalLM.from_pretrained(tiny_model_dir), args=args,
                            processing_class=tok, data_collator=AugmentingCollator(tok, 64),
                            train_dataset=Dataset.from_list(rows()))


def test_dft_changes_loss_and_per_source_losses_follow(tiny_model_dir, tmp_path):
    nll = step(*make(tiny_model_dir, tmp_path))
    trainer, collator = make(tiny_model_dir, tmp_path, loss_type="dft")
    dft = step(trainer, collator)
    want, total = direct_per_source(trainer, collator, lambda lp: -lp * lp.exp())
    assert math.isclose(dft[0].item(), total, rel_tol=TOL)
    assert dft[0].item() < nll[0].item() / 100  # p ~ 1/vocab for a random model
    for key, value in want.items():
        assert math.isclose(dft[2][key], value, rel_tol=1e-4), key


def test_label_smoothing_and_compute_loss_func_reach_trl(tiny_model_dir, tmp_path):
    base = step(*make(tiny_model_dir, tmp_path))
    smooth = step(*make(tiny_model_dir, tmp_path, label_smoothing_factor=0.1))
    assert abs(smooth[0].item() - base[0].item()) > 1e-3
    # per-source losses stay the plain token NLL (TRL's metrics pass)
    for key in base[2]:
        assert math.isclose(smooth[2][key], base[2][key], rel_tol=TOL), key

    calls = []

    def my_loss(outputs, labels, num_items_in_batch=None):
        calls.append(outputs.logits.shape)
        return outputs.logits.float().pow(2).mean()

    custom = step(*make(tiny_model_dir, tmp_path, trainer_kw={"compute_loss_func": my_loss}))
    assert len(calls) == 1 and abs(custom[0].item() - base[0].item()) > 1e-3
    assert custom[2]["loss_original"] == pytest.approx(base[2]["loss_original"], rel=TOL)


def test_liger_reaches_trainer(tiny_model_dir, tmp_path):
    """use_liger_kernel goes through TRL and Trainer exactly as without augmentation: TRL turns
    off liger's fused cross-entropy (it would replace the fused head) and Trainer applies the
    layer kernels when training starts; where liger-kernel is not installed (here) Trainer says
    so instead of ignoring the option."""
    import importlib.util
    trainer, _ = make(tiny_model_dir, tmp_path, use_liger_kernel=True, max_steps=1)
    assert trainer.args.liger_kernel_config["fused_linear_cross_entropy"] is False
    if importlib.util.find_spec("liger_kernel") is None:
        with pytest.raises(ImportError, match="liger-kernel"):
            trainer.train()


def test_moe_aux_loss_is_added(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer, MixtralConfig, MixtralForCausalLM
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)

    def moe():
        torch.manual_seed(0)
        return MixtralForCausalLM(MixtralConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
            num_experts_per_tok=2, max_position_embeddings=256, pad_token_id=tok.pad_token_id))

    off = step(*make(tiny_model_dir, tmp_path, model=moe(), router_aux_loss_coef=0.0))
    on = step(*make(tiny_model_dir, tmp_path, model=moe(), router_aux_loss_coef=0.5))
    assert "aux_loss" in on[3] and "aux_loss" not in off[3]
    assert on[0].item() == pytest.approx(off[0].item() + 0.5 * on[3]["aux_loss"], rel=1e-4)
    assert on[2]["loss_original"] == pytest.approx(off[2]["loss_original"], rel=TOL)


def test_max_length_and_pad_to_multiple_of_shape_the_batch(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    from augment.collator import AugmentingCollator
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    long = rows([("word " * 80, "answer " * 40, "original", 1.0)] + EXAMPLES[:2])
    assert AugmentingCollator(tok, 48)(long)["input_ids"].shape[1] == 48
    assert AugmentingCollator(tok, None)(long)["input_ids"].shape[1] > 120  # None: no cut
    batch = AugmentingCollator(tok, 48, pad_to_multiple_of=32)(rows(EXAMPLES[:2]))
    assert batch["input_ids"].shape[1] % 32 == 0


def test_completion_and_assistant_only_loss_set_the_labels(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    from augment.collator import AugmentingCollator
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ex = rows(EXAMPLES[:1])

    def trained(**kw):
        b = AugmentingCollator(tok, 64, **kw)(ex)
        return b["labels"].ne(-100).sum().item(), b["attention_mask"].sum().item()

    masked, length = trained()
    assert trained(completion_only_loss=True)[0] == masked < length
    assert trained(completion_only_loss=False)[0] == length  # the prompt trains too (TRL's False)
    assert trained(completion_only_loss=False, assistant_only_loss=True)[0] == masked
    from augment.errors import AugtuneError
    with pytest.raises(AugtuneError, match="chat template"):
        AugmentingCollator(tok, 64, use_chat_template=False, assistant_only_loss=True)


# --------------------------------------------------------------------------- the walk

ISSUE_FIELDS = ["packing", "packing_strategy", "padding_free", "completion_only_loss",
                "assistant_only_loss", "loss_type", "label_smoothing_factor", "use_liger_kernel",
                "truncation_mode", "max_length", "dataset_text_field", "eval_packing",
                "pad_to_multiple_of"]


def test_walk_covers_every_sft_option_touching_data_batching_or_loss():
    import dataclasses

    from trl import SFTConfig
    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    table = set(trl_options.BY_FIELD)
    assert set(ISSUE_FIELDS) <= table
    assert table <= fields, table - fields
    for name in ["shuffle_dataset", "dataset_num_proc", "eos_token", "chat_template_path",
                 "pad_token", "dataset_kwargs", "router_aux_loss_coef", "train_sampling_strategy"]:
        assert name in table, name
    this = __import__(__name__, fromlist=["x"])
    for opt in trl_options.OPTIONS:
        assert opt.verdict in ("kept", "refused", "set by augtune"), opt.field
        if opt.verdict == "kept":
            assert callable(getattr(this, opt.test, None)), f"{opt.field}: no test {opt.test}"
        if opt.verdict == "refused":
            assert opt.message and "\n" not in opt.message and opt.field in opt.message


@pytest.mark.parametrize("opt", [o for o in trl_options.OPTIONS if o.verdict == "refused"],
                         ids=lambda o: o.field)
def test_each_refused_option_stops_the_preflight_with_its_line(opt, tmp_path):
    from augment.errors import ConfigError
    from train.sft import parse
    value = str(opt.refused_value).lower() if isinstance(opt.refused_value, bool) else str(opt.refused_value)
    argv = ["--config", str(ROOT / "configs/tiny.yaml"), "--output_dir", str(tmp_path),
            f"--{opt.field}", value]
    with pytest.raises(ConfigError) as err:
        parse(argv)
    assert str(err.value) == opt.message
    # and the default value of the same field passes
    parse(["--config", str(ROOT / "configs/tiny.yaml"), "--output_dir", str(tmp_path)])


def test_readme_has_the_table():
    readme = (ROOT / "README.md").read_text()
    for opt in trl_options.OPTIONS:
        assert f"`{opt.field}`" in readme, opt.field
