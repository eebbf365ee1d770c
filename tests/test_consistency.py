"""Paraphrase-consistency training (augment/consistency.py): pairs in the plan, the collator's
pair tags, the term's maths against full logits, and the term through the real trainer and
TRL's fused forward on the tiny Llama (LoRA), single process and two processes."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest
import torch

from augment.collator import pair_partners
from augment.consistency import divergence_sum, shared_answer_positions
from augment.errors import ConfigError
from augment.sampler import RatioSampler
from augment.variants import VariantTable
from tests.conftest import ROOT, run_env


# ----------------------------------------------------------------------------- sampler
def _table(n, with_outputs=True):
    """Row i: 2 paraphrases, 1 template and (optionally) 1 outputs variant; row 0 has only an
    outputs variant (it can never pair)."""
    rows = []
    for i in range(n):
        r = [] if i == 0 else [(f"p{i}a", "paraphrase", "prompt", 0.9), (f"p{i}b", "paraphrase", "prompt", 0.8),
                               (f"t{i}", "templates", "prompt", 0.9)]
        if with_outputs:
            r.append((f"o{i}", "outputs", "completion", 0.9))
        rows.append(r)
    return VariantTable.from_lists(rows)


def _check_pairs(s: RatioSampler, plan: np.ndarray) -> int:
    n = s.n_rows
    vt_row, pairable = s._row_of, s._pairable
    pairs = 0
    for k in range(0, len(plan) - 1, 2):
        a, b = int(plan[k]), int(plan[k + 1])
        if a < n and n <= b < n + s.n_variants and pairable[b - n] and vt_row[b - n] == a:
            pairs += 1
    # a pair only ever sits at (2k, 2k+1): never at an odd offset
    for k in range(1, len(plan) - 1, 2):
        a, b = int(plan[k]), int(plan[k + 1])
        assert not (a < n and n <= b < n + s.n_variants and pairable[b - n] and vt_row[b - n] == a)
    return pairs


@pytest.mark.parametrize("mode,r", [("expand", 2.0), ("replace", 2.0), ("replace", 1.0)])
def test_pairs_keep_the_epoch_counts_and_sit_at_even_positions(mode, r):
    n = 40
    kw = dict(augmented_per_original=r, augment_mode=mode, seed=3)
    plain = RatioSampler(n, _table(n), **kw)
    paired = RatioSampler(n, _table(n), consistency_pairs=True, **kw)
    assert len(plain) == len(paired)
    for epoch in range(3):
        a, b = plain.plan(epoch), paired.plan(epoch)
        assert len(a) == len(b)
        # same counts of originals / augmented / per method (the ratio is exact either way)
        assert plain.epoch_counts(epoch)["by_method"] == {
            k: v for k, v in paired.epoch_counts(epoch)["by_method"].items()}
        if mode == "expand":  # expand: the very same entries, only their order changes
            assert sorted(a.tolist()) == sorted(b.tolist())
        pairs = _check_pairs(paired, b)
        assert pairs == paired.count_pairs(b) == paired.epoch_counts(epoch)["consistency_pairs"]
        originals = [x for x in b.tolist() if x < n]
        can_pair = {int(paired._row_of[x - n]) for x in b.tolist()
                    if n <= x < n + paired.n_variants and paired._pairable[x - n]}
        assert pairs == len(set(originals) & can_pair)
        assert np.array_equal(b, paired.plan(epoch))  # from (seed, epoch) alone
    if (mode, r) == ("replace", 1.0):  # 1:1 replace: originals drawn from rows that can pair
        b = paired.plan(0)
        can_pair = {int(paired._row_of[x - n]) for x in b.tolist()
                    if n <= x < n + paired.n_variants and paired._pairable[x - n]}
        assert paired.count_pairs(b) == min(paired.n_originals, len(can_pair)) >= 15
        assert plain.count_pairs(plain.plan(0)) < paired.n_originals // 2


def test_outputs_variants_and_refusals_never_pair():
    n = 12
    vt = VariantTable.from_lists([[(f"o{i}", "outputs", "completion", 0.9)] for i in range(n)])
    s = RatioSampler(n, vt, 4, augmented_per_original=1.0, refusal_fraction=0.2,
                     consistency_pairs=True, seed=0)
    assert s.count_pairs(s.plan(0)) == 0 and len(s.plan(0)) == len(s)


# ----------------------------------------------------------------------------- collator
def test_collator_tags_only_original_then_instruction_variant_of_the_same_row():
    ex = [{"source": "original", "row_id": "a"}, {"source": "paraphrase", "row_id": "a"},
          {"source": "original", "row_id": "b"}, {"source": "outputs", "row_id": "b"},
          {"source": "templates", "row_id": "c"}, {"source": "original", "row_id": "c"},
          {"source": "original", "row_id": "d"}, {"source": "backtranslate", "row_id": "e"},
          {"source": "original", "row_id": "f"}]
    assert pair_partners(ex) == [1, 0, -1, -1, -1, -1, -1, -1, -1]


# ----------------------------------------------------------------------------- the maths
def test_chunked_divergence_equals_full_logits_in_value_and_gradient():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=True)
    h = torch.randn(4, 6, 8)
    h[3] = h[2]  # identical inputs give identical hidden states
    h.requires_grad_()
    ids = torch.tensor([[1, 2, 3, 9, 9, 9], [1, 5, 3, 9, 9, 9], [1, 2, 7, 7, 9, 9], [1, 2, 7, 7, 9, 9]])
    labels = torch.tensor([[-100, -100, -100, 9, 9, 9]] * 2 + [[-100, -100, -100, -100, 9, 9]] * 2)
    pos = shared_answer_positions(ids, labels, torch.tensor([1, 0, 3, 2]), torch.tensor([6, 6, 6, 6]))
    # pair (0, 1) differs at position 1: labels 3, 4, 5 are shared; pair (2, 3) is identical: 4, 5
    assert [p.tolist() for p in pos] == [[0, 0, 0, 2, 2], [2, 3, 4, 3, 4], [1, 1, 1, 3, 3], [2, 3, 4, 3, 4]]
    for kind in ("js", "sym_kl"):
        total, n = divergence_sum(h, pos, head, kind=kind, chunk=2)
        ga, = torch.autograd.grad(total, h)
        p = torch.log_softmax(head(h[pos[0], pos[1]]), -1)
        q = torch.log_softmax(head(h[pos[2], pos[3]]), -1)
        if kind == "js":
            m = torch.log((p.exp() + q.exp()) / 2)
            ref = 0.5 * (torch.nn.functional.kl_div(m, p, log_target=True, reduction="sum")
                         + torch.nn.functional.kl_div(m, q, log_target=True, reduction="sum"))
        else:
            ref = (torch.nn.functional.kl_div(q, p, log_target=True, reduction="sum")
                   + torch.nn.functional.kl_div(p, q, log_target=True, reduction="sum"))
        gb, = torch.autograd.grad(ref, h)
        assert n == 5 and total.item() > 1e-4
        assert math.isclose(total.item(), ref.item(), rel_tol=1e-5)
        assert torch.allclose(ga, gb, atol=1e-6)
        # the identical pair (rows 2, 3) contributes exactly nothing
        same, _ = divergence_sum(h, tuple(x[3:] for x in pos), head, kind=kind)
        assert abs(same.item()) < 1e-7
    assert divergence_sum(h, shared_answer_positions(ids, labels, torch.tensor([-1] * 4),
                                                     torch.tensor([6] * 4)), head)[1] == 0


def test_a_truncated_answer_keeps_only_the_tokens_both_examples_share():
    ids = torch.tensor([[1, 2, 5, 6, 7, 0], [1, 3, 3, 3, 5, 6]])
    labels = torch.tensor([[-100, -100, 5, 6, 7, -100], [-100, -100, -100, -100, 5, 6]])
    pos = shared_answer_positions(ids, labels, torch.tensor([1, 0]), torch.tensor([5, 6]))
    assert [p.tolist() for p in pos] == [[0, 0], [1, 2], [1, 1], [3, 4]]


# ----------------------------------------------------------------------------- the trainer
PAIR = ("How do I reset my password?", "Open Settings, then Security, then Reset password.")


def _trainer(tiny_model_dir, tmp_path, weight=1.0, **kw):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, LlamaForCausalLM
    from trl import SFTConfig

    from augment.collator import AugmentingCollator
    from augment.trainer import AugmentedSFTTrainer
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    args = SFTConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to="none",
                     dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False,
                     max_length=64, per_device_train_batch_size=kw.pop("batch", 4), **kw)
    sampler = RatioSampler(2, VariantTable.from_lists([[("x", "paraphrase", "prompt", 0.9)], []]),
                           augmented_per_original=1.0, consistency_pairs=True)
    trainer = AugmentedSFTTrainer(
        model=LlamaForCausalLM.from_pretrained(tiny_model_dir), args=args, processing_class=tok,
        data_collator=AugmentingCollator(tok, max_length=64),
        train_dataset=Dataset.from_list([{"index": 0}]), ratio_sampler=sampler,
        peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                               target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
        consistency_weight=weight)
    trainer.model.train()
    return trainer


def _batch(trainer, variant_prompt):
    ex = [{"prompt": PAIR[0], "completion": PAIR[1], "source": "original", "row_id": "r0", "similarity": 1.0},
          {"prompt": variant_prompt, "completion": PAIR[1], "source": "paraphrase", "row_id": "r0",
           "similarity": 0.9},
          {"prompt": "Can I get a refund?", "completion": "Yes, within 30 days.", "source": "original",
           "row_id": "r1", "similarity": 1.0},
          {"prompt": "Refund please", "completion": "Yes, within 30 days.", "source": "templates",
           "row_id": "r9", "similarity": 0.9}]
    return dict(trainer.data_collator(ex))


def test_term_is_zero_for_identical_prompts_positive_otherwise_and_reaches_lora(tiny_model_dir, tmp_path):
    trainer = _trainer(tiny_model_dir, tmp_path)
    model = trainer.model
    # LoRA's B starts at zero: give it values so the adapter changes the distributions
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)

    def term(prompt):
        trainer.consistency_weight = 1.0
        with_term = trainer.compute_loss(model, _batch(trainer, prompt))
        trainer.consistency_weight = 0.0
        without = trainer.compute_loss(model, _batch(trainer, prompt))
        return with_term - without

    zero = term(PAIR[0])                       # the "variant" is the original itself
    assert abs(zero.item()) < 1e-7
    trainer._aug_metrics()
    model.zero_grad()
    t = term("What are the steps to change my password?")
    assert t.item() > 2e-5                     # a random tiny model: near-uniform distributions
    t.backward()                               # the difference is the term alone
    lora = {n: p.grad for n, p in model.named_parameters() if "lora_" in n}
    assert lora and all(g is not None for g in lora.values())
    assert sum(g.abs().sum().item() for g in lora.values()) > 0
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    assert not frozen
    trainer.consistency_weight = 1.0
    m = trainer._aug_metrics()
    # one pair since the last window (rows r1/r9 are not a pair; the weight-0 call adds none);
    # the divergence per shared answer token is the term at weight 1
    assert m["consistency_pairs"] == 1 and m["loss_consistency"] > 0
    assert math.isclose(m["loss_consistency"], t.item(), rel_tol=1e-3)


@pytest.mark.parametrize("kw,pattern", [
    ({"batch": 3}, "must be even, got 3"),
    ({"padding_free": True}, "padding_free: false"),
    ({"completion_only_loss": False}, "completion_only_loss"),
])
def test_settings_that_cannot_form_pairs_are_refused(tiny_model_dir, tmp_path, kw, pattern):
    with pytest.raises(ConfigError, match=pattern):
        _trainer(tiny_model_dir, tmp_path, **kw)


def test_config_refuses_consistency_without_instruction_variants():
    from augment.config import AugmentConfig
    with pytest.raises(ConfigError, match="augmented_per_original is 0"):
        AugmentConfig(consistency_weight=1.0, augmented_per_original=0.0)
    with pytest.raises(ConfigError, match="instruction-side method"):
        AugmentConfig(consistency_weight=1.0, augment_methods=["outputs"])
    with pytest.raises(ConfigError, match="consistency_divergence"):
        AugmentConfig(consistency_divergence="kl")
    with pytest.raises(ConfigError, match="consistency_weight"):
        AugmentConfig(consistency_weight=-1.0)


@pytest.mark.heavy
def test_two_processes_keep_every_pair_inside_one_micro_batch(tiny_model_dir, tmp_path):
    """2 CPU processes, batch 4 per rank: every pair the plan scheduled is trained as a pair
    (the logged pair count, summed over ranks, equals the plan's), each rank's batch is a
    contiguous slice of the plan, and the two ranks stay synced."""
    out, trace = tmp_path / "out", tmp_path / "trace"
    steps = 4
    cmd = [str(ROOT / "launch.sh"), str(ROOT / "configs/tiny.yaml"), "--num_processes", "2",
           "--model_name_or_path", tiny_model_dir, "--output_dir", str(out),
           "--augment_cache", str(tmp_path / "cache.sqlite"), "--max_steps", str(steps),
           "--logging_steps", "1", "--consistency_weight", "0.5",
           "--loss_eval_at_end", "false", "--robustness_eval", "false"]
    proc = subprocess.run(cmd, cwd=ROOT, env=run_env(AUGTUNE_TRACE_DIR=trace), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (trace / "params0.txt").read_text() == (trace / "params1.txt").read_text()
    plan = np.array(json.loads((trace / "plan0.json").read_text()))
    ranks = [[json.loads(line) for line in (trace / f"rank{r}.jsonl").read_text().splitlines()]
             for r in (0, 1)]
    n_rows = 24  # configs/tiny.yaml max_rows
    for k in range(steps):
        for r in (0, 1):
            assert ranks[r][k]["index"] == plan[8 * k + 4 * r: 8 * k + 4 * r + 4].tolist()
    hist = json.loads((out / "trainer_state.json").read_text())["log_history"]
    logged = [h for h in hist if "loss" in h]
    # a template rewording changes the prompt, so a window with pairs has a divergence above 0
    assert all("loss_consistency" in h for h in logged)
    assert all(h["loss_consistency"] > 0 for h in logged if h["consistency_pairs"] > 0)
    assert any(h["consistency_pairs"] > 0 for h in logged)

    # tiny.yaml: expand mode, templates for every row (instruction-side), so every original is
    # paired: each original of the trained entries sits at an even position, its variant next
    trained = plan[: 8 * steps]
    originals = np.flatnonzero(trained < n_rows)
    assert len(originals) >= steps and (originals % 2 == 0).all()
    expected = len(originals)
    assert (trained[originals + 1] >= n_rows).all()
    assert sum(h["consistency_pairs"] for h in logged) == expected
    summary = json.loads((out / "augmentation_summary.json").read_text())
    assert summary["epochs"][0]["consistency_pairs"] > 0


def test_in_a_chat_the_shared_tokens_are_the_assistant_turns_after_the_reworded_one(tiny_model_dir):
    """A conversation whose FIRST user turn is reworded (augment_turns: all, loss_turns: all):
    the pair shares every assistant token after that turn (both answers), none before it."""
    from transformers import AutoTokenizer

    from augment.collator import AugmentingCollator
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    conv = [{"role": "system", "content": "You are Nimbus support."},
            {"role": "user", "content": "How do I reset my password?"},
            {"role": "assistant", "content": "Open Settings, then Security."},
            {"role": "user", "content": "And if I lost my phone?"},
            {"role": "assistant", "content": "Use a backup code."}]
    variant = [dict(m) for m in conv]
    variant[1]["content"] = "What are the steps to change my password?"
    ex = [{"messages": conv, "prompt": conv[3]["content"], "completion": conv[4]["content"],
           "source": "original", "row_id": "c1", "similarity": 1.0},
          {"messages": variant, "prompt": conv[3]["content"], "completion": conv[4]["content"],
           "source": "paraphrase", "row_id": "c1", "similarity": 0.9}]
    batch = AugmentingCollator(tok, max_length=256)(ex)
    assert batch["aug_pair"].tolist() == [1, 0]
    ids, labels = batch["input_ids"], batch["labels"]
    lengths = batch["attention_mask"].sum(1)
    ra, pa, rb, pb = shared_answer_positions(ids, labels, batch["aug_pair"], lengths)
    answers = tok.decode(ids[0, pa + 1])
    assert "Open Settings, then Security." in answers and "Use a backup code." in answers
    assert (labels[0, pa + 1] == labels[1, pb + 1]).all()
    n_labelled = int((labels[0] != -100).sum())
    assert len(pa) == n_labelled  # every answer token of the original comes after the change
    # the LAST user turn reworded: the first answer precedes the change and is left out
    last = [dict(m) for m in conv]
    last[3]["content"] = "What if my phone is gone?"
    batch = AugmentingCollator(tok, max_length=256)([ex[0], {**ex[1], "messages": last}])
    ra, pa, rb, pb = shared_answer_positions(batch["input_ids"], batch["labels"], batch["aug_pair"],
                                             batch["attention_mask"].sum(1))
    answers = tok.decode(batch["input_ids"][0, pa + 1])
    assert "Use a backup code." in answers and "Open Settings" not in answers


def test_pairing_without_the_term_is_a_control_arm():
    """consistency_pairing: true orders the epoch in pairs at weight 0 (the control that has
    the pairs' batches without the term); it needs variants like the term does."""
    from augment.config import AugmentConfig
    cfg = AugmentConfig(consistency_pairing=True, augment_methods=["templates"], augment_mode="replace")
    s = RatioSampler.from_config(cfg, 40, _table(40), None, seed=0)
    assert s.consistency_pairs and s.count_pairs(s.plan(0)) > 0
    assert not RatioSampler.from_config(AugmentConfig(), 40, _table(40), None, seed=0).consistency_pairs
    with pytest.raises(ConfigError, match="consistency_pairing: true pairs"):
        AugmentConfig(consistency_pairing=True, augmented_per_original=0.0)


def test_module_examples_hold():
    """augment/consistency.py's doctests: positions of an identical pair, a zero divergence, and
    the logit transforms read from a config in TRL's order (Granite divides by logits_scaling)."""
    import doctest

    import augment.consistency
    res = doctest.testmod(augment.consistency)
    assert res.attempted >= 6 and res.failed == 0


def test_odd_batch_is_refused_in_the_preflight_before_any_build(tmp_path):
    """The entry point refuses an odd batch size with consistency on in its preflight (one line,
    exit 2), before a cache is built or a model loaded."""
    cache = tmp_path / "cache.sqlite"
    proc = subprocess.run([str(ROOT / "launch.sh"), str(ROOT / "configs/tiny.yaml"),
                           "--consistency_weight", "1", "--per_device_train_batch_size", "3",
                           "--output_dir", str(tmp_path / "out"), "--augment_cache", str(cache)],
                          cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "augtune: error: consistency_weight=1.0 puts an original and its variant at positions "
        "(2k, 2k+1) of each micro-batch: per_device_train_batch_size must be even, got 3.")
    assert "Traceback" not in proc.stderr and not cache.exists()
