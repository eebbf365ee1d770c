"""What a plain-TRL user keeps when `train_dataset=augment.prepare(...)` (the library path of the
README): options TRL would honour are honoured or refused in one line, never silently dropped.
Tiny Llama with SmolLM2's tokenizer; templates made on the fly, so no cache is built."""

from __future__ import annotations

import json

import torch

import pytest

from augment.errors import AugtuneError, ConfigError

pytestmark = pytest.mark.reliability


def _data(tmp_path, seed=42, data_seed=None, args=None, **aug):
    import augment
    rows = [{"prompt": f"How do I reset the password of account {i}?",
             "completion": f"Open settings for account {i}."} for i in range(12)]
    path, evals = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:10]))
    evals.write_text("".join(json.dumps(r) + "\n" for r in rows[10:]))
    cfg = augment.AugmentConfig(augment_methods=["templates"], templates_on_the_fly=True,
                                augment_cache=str(tmp_path / "c.sqlite"), **aug)
    return augment.prepare(str(path), cfg, seed=seed, data_seed=data_seed, args=args,
                           eval_dataset=str(evals), say=lambda *a: None)


def _trainer(tiny_model_dir, tmp_path, data, tokenizer=None, model=None, **args):
    from transformers import LlamaForCausalLM
    from trl import SFTConfig

    import augment
    model = model or LlamaForCausalLM.from_pretrained(tiny_model_dir)
    base = dict(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to="none",
                max_length=64, per_device_train_batch_size=4, seed=42)
    base.update(args)
    extra = {"processing_class": tokenizer} if tokenizer is not None else {}
    return augment.AugmentedSFTTrainer(model=model, args=SFTConfig(**base), train_dataset=data,
                                       **extra)


def test_formatting_func_and_a_seed_the_plan_does_not_follow_are_refused(tiny_model_dir,
                                                                         tmp_path):
    """TRL applies formatting_func and orders data by data_seed (else seed); the sampler plans
    from prepare's seed, so a trainer whose seeds disagree with it says so instead of silently
    training another order."""
    from transformers import LlamaForCausalLM
    from trl import SFTConfig

    import augment
    data = _data(tmp_path, seed=42)
    with pytest.raises(ConfigError, match="formatting_func"):
        augment.AugmentedSFTTrainer(
            model=LlamaForCausalLM.from_pretrained(tiny_model_dir),
            args=SFTConfig(output_dir=str(tmp_path / "o"), use_cpu=True, report_to="none"),
            train_dataset=data, formatting_func=lambda ex: ex["prompt"])
    with pytest.raises(ConfigError, match=r"args=<this SFTConfig>\) \(or seed=7, data_seed=None\)"):
        _trainer(tiny_model_dir, tmp_path, data, seed=7)
    with pytest.raises(ConfigError, match=r"data_seed=9: call augment\.prepare\(\.\.\., args=<this "
                                          r"SFTConfig>\) \(or seed=42, data_seed=9\)"):
        _trainer(tiny_model_dir, tmp_path, data, data_seed=9)
    _trainer(tiny_model_dir, tmp_path, _data(tmp_path, data_seed=9), data_seed=9)  # agreeing


def test_the_plans_follow_the_data_order_seed_not_augment_seed(tmp_path):
    """augment_seed fixes what variants are made (a cache's keys); the epoch plans follow the
    seed prepare is given, which the trainer checks against data_seed. When the sampler took
    augment_seed instead, data_seed changed nothing (train/sft.py always sets augment_seed)."""
    import numpy as np
    a = _data(tmp_path, seed=7, augment_seed=42)
    b = _data(tmp_path, seed=42, augment_seed=42)
    assert a.sampler.seed == 7 and b.sampler.seed == 42
    assert not np.array_equal(a.sampler.plan(0), b.sampler.plan(0))


def test_sft_recipe_plans_from_data_seed(tmp_path):
    """train/sft.py: seed 7, data_seed 9 -> variants made with 7, plans from 9."""
    import importlib.util
    from pathlib import Path

    from augment.trainer import data_order_seed
    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("augtune_sft_seed", root / "train" / "sft.py")
    sft = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sft)
    _, aug_cfg, sft_cfg, _ = sft.parse(["--config", str(root / "configs/tiny.yaml"), "--seed", "7",
                                        "--data_seed", "9", "--output_dir", str(tmp_path)])
    assert aug_cfg.augment_seed == 7 and data_order_seed(sft_cfg) == 9
    # as train/sft.py calls prepare, and as the README tells a library user to
    data = _data(tmp_path, seed=sft_cfg.seed, data_seed=sft_cfg.data_seed)
    assert data.sampler.seed == 9 and data.aug_cfg.augment_seed == 7


def test_pad_token_examples_count_and_resume_as_in_trl(tiny_model_dir, tmp_path):
    """A tokenizer without a pad token gets EOS as pad on the tokenizer, the model config and
    the generation config (TRL's rule when it makes the collator); the Trainer counts an epoch
    as the sampler's plan, not the index dataset; resume_from_checkpoint=True with no checkpoint
    stops as the Trainer does, and "last" starts a new run."""
    from transformers import AutoTokenizer, LlamaForCausalLM
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.pad_token = None
    model = LlamaForCausalLM.from_pretrained(tiny_model_dir)
    model.config.pad_token_id = model.generation_config.pad_token_id = None
    data = _data(tmp_path)
    trainer = _trainer(tiny_model_dir, tmp_path, data, tokenizer=tok, model=model, max_steps=1)
    assert tok.pad_token == tok.eos_token
    assert model.config.pad_token_id == model.generation_config.pad_token_id == tok.eos_token_id
    loader = trainer.get_train_dataloader()
    assert len(trainer.train_dataset) > len(data.sampler)  # originals + every variant
    assert trainer.num_examples(loader) == len(data.sampler)
    with pytest.raises(AugtuneError, match="no complete checkpoint"):
        trainer.train(resume_from_checkpoint=True)
    trainer.train(resume_from_checkpoint="last")
    assert trainer.state.global_step == 1


def test_eval_sets_in_trl_conversational_forms_are_evaluated(tiny_model_dir, tmp_path):
    """TRL evaluates messages rows and conversational prompt/completion rows; so does the
    trainer here (rendered with the chat template, as training renders conversations), each
    labelled as TRL labels it (every token of the messages row, the completion of the other:
    the losses differ; the labels themselves are compared with TRL's below). A text-only eval
    set is refused with one line."""
    from datasets import Dataset
    data = _data(tmp_path)
    trainer = _trainer(tiny_model_dir, tmp_path, data)
    conv = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    msgs = trainer.evaluate(Dataset.from_list([{"messages": conv}] * 2))
    split = trainer.evaluate(Dataset.from_list([{"prompt": conv[:1], "completion": conv[1:]}] * 2))
    assert msgs["eval_loss"] > 0 and split["eval_loss"] > 0
    assert split["eval_loss"] != pytest.approx(msgs["eval_loss"])
    with pytest.raises(AugtuneError, match="eval row has fields"):
        trainer.evaluate(Dataset.from_list([{"text": "Hi? Hello."}] * 2))


def test_library_inputs_a_trl_user_brings_are_refused_or_reported_up_front(tiny_model_dir,
                                                                          tmp_path, capsys):
    """From a review written as a plain-TRL user: a datasets.Dataset handed to prepare, their own
    data_collator, and a text-only eval set each stop with one line when the trainer is made
    (the collator failed with KeyError 'input_ids' at the first step, the eval set at the first
    evaluation); prepare says what loading kept; rows held out by eval_fraction while the
    trainer gets its own eval set are reported, and eval_fraction=0 keeps them for training."""
    from datasets import Dataset
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    import augment
    with pytest.raises(AugtuneError, match=r"prepare\(dataset=\.\.\.\) .* not a Dataset.*to_json"):
        augment.prepare(Dataset.from_dict({"prompt": ["a"], "completion": ["b"]}))
    said = []
    rows = [{"prompt": f"How do I reset the password of account {i}?",
             "completion": f"Open settings for account {i}."} for i in range(10)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = augment.AugmentConfig(augment_methods=["templates"], templates_on_the_fly=True,
                                augment_cache=str(tmp_path / "c.sqlite"))
    held = augment.prepare(str(path), cfg, say=said.append)
    assert said[0] == "augtune: 9 train rows, 1 eval rows, 0 held-out paraphrases"
    kept = augment.prepare(str(path), cfg, eval_fraction=0, say=said.append)
    assert len(kept.split.train) == 10 and not kept.split.eval
    with pytest.raises(ConfigError, match="data_collator: .*drop data_collator"):
        augment.AugmentedSFTTrainer(model=tiny_model_dir, args=_args(tmp_path), train_dataset=held,
                                    data_collator=DataCollatorForLanguageModeling(pad_token_id=0))
    with pytest.raises(ConfigError, match=r"eval_dataset: an eval row has fields \['text'\]"):
        augment.AugmentedSFTTrainer(model=tiny_model_dir, args=_args(tmp_path), train_dataset=held,
                                    eval_dataset=Dataset.from_dict({"text": ["a b"]}))
    capsys.readouterr()
    own_eval = Dataset.from_dict({"prompt": ["x?"], "completion": ["y."]})
    augment.AugmentedSFTTrainer(model=tiny_model_dir, args=_args(tmp_path), train_dataset=held,
                                eval_dataset=own_eval)
    assert "held out 1 training rows" in capsys.readouterr().out
    augment.AugmentedSFTTrainer(model=tiny_model_dir, args=_args(tmp_path), train_dataset=kept,
                                eval_dataset=own_eval)
    assert "held out" not in capsys.readouterr().out
    augment.AugmentedSFTTrainer(model=tiny_model_dir, args=_args(tmp_path), train_dataset=held,
                                eval_dataset={"held": held.eval_dataset(), "own": own_eval})
    assert "held out" not in capsys.readouterr().out  # prepare's rows are evaluated after all
    # an IterableDataset is read by peeking at its first row (it has no len())
    augment.AugmentedSFTTrainer(model=tiny_model_dir, args=_args(tmp_path), train_dataset=kept,
                                eval_dataset=own_eval.to_iterable_dataset())
    with pytest.raises(ConfigError, match=r"eval_dataset: an eval row has fields \['text'\]"):
        augment.AugmentedSFTTrainer(
            model=tiny_model_dir, args=_args(tmp_path), train_dataset=kept,
            eval_dataset=Dataset.from_dict({"text": ["a b"]}).to_iterable_dataset())


def _args(tmp_path):
    from trl import SFTConfig
    return SFTConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to="none",
                     max_length=64, per_device_train_batch_size=4, seed=42)


@pytest.mark.parametrize("assistant_only_loss", [False, True])
def test_conversations_are_labelled_as_trl_labels_them(tiny_model_dir, tmp_path,
                                                       assistant_only_loss):
    """Conversation files are language modelling to TRL: every token trains unless
    assistant_only_loss. augtune used to train the assistant turns only whatever the option
    said (a review compared 37 of 87 labelled tokens against TRL's 87). With the option off, the
    batch equals TRL's own preparation and collator, a one-exchange conversation (which augtune
    keeps as a plain pair) included; with it on, exactly the assistant turns train (TRL itself
    needs {% generation %} markers in the template for that, which SmolLM2's lacks)."""
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    import augment
    convs = [[{"role": "system", "content": "You are ShopCo's assistant."},
              {"role": "user", "content": "Where is my order?"},
              {"role": "assistant", "content": "It ships tomorrow."},
              {"role": "user", "content": "And how long does that take?"},
              {"role": "assistant", "content": "Two to three days."}],
             [{"role": "user", "content": "How do I reset my password?"},
              {"role": "assistant", "content": "Open Settings, then Security."}]]
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in convs))
    data = augment.prepare(str(path), augment.AugmentConfig(
        augment_methods=["templates"], templates_on_the_fly=True,
        augment_cache=str(tmp_path / "c.sqlite")), eval_fraction=0, say=lambda *a: None)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    args = SFTConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False,
                     report_to="none", max_length=None, assistant_only_loss=assistant_only_loss)
    originals = [data.source[i] for i in range(len(data.source))
                 if data.source[i]["source"] == "original"]
    assert len(originals) == 2 and sum("messages" in ex for ex in originals) == 1
    ours = data.collator(tok, args).collator(sorted(originals, key=lambda ex: "messages" in ex,
                                                    reverse=True))
    if not assistant_only_loss:
        trl = SFTTrainer(model=LlamaForCausalLM.from_pretrained(tiny_model_dir), args=args,
                         processing_class=tok, train_dataset=Dataset.from_list(
                             [{"messages": m} for m in convs]))
        theirs = trl.data_collator([trl.train_dataset[i] for i in range(2)])
        for key in ("input_ids", "labels", "attention_mask"):
            assert torch.equal(ours[key], theirs[key]), key
        assert ours["labels"].ne(-100).sum() == ours["attention_mask"].sum()
    else:
        text = tok.decode(ours["labels"][0][ours["labels"][0] != -100])
        assert "Two to three days." in text and "It ships tomorrow." in text
        assert "Where is my order" not in text and "ShopCo" not in text
    with pytest.raises(AugtuneError, match="completion_only_loss: true is for prompt/completion"):
        data.collator(tok, SFTConfig(output_dir=str(tmp_path / "o"), use_cpu=True,
                                     completion_only_loss=True))
    data.aug_cfg.consistency_weight = 0.1  # compares answers: the user turns must not train
    if not assistant_only_loss:
        with pytest.raises(ConfigError, match="consistency_weight=0.1 .* assistant_only_loss"):
            data.collator(tok, args)
    else:
        data.collator(tok, args)


def test_a_paraphrase_eval_whose_prompts_carry_labels_is_flagged(tiny_model_dir, tmp_path, capsys):
    """eval_paraphrase_gap compares answers given reworded prompts; with the prompts labelled
    (completion_only_loss: false here) it would compare different texts: the trainer says so."""
    import augment
    from augment.config import DataConfig
    root = __import__("pathlib").Path(__file__).resolve().parent.parent / "data/demo"
    data = augment.prepare(data=DataConfig(
        dataset_name=str(root / "train.jsonl"), eval_dataset_name=str(root / "eval.jsonl"),
        eval_paraphrases_file=str(root / "eval_paraphrases.jsonl"), max_rows=8),
        augment=augment.AugmentConfig(augment_methods=["templates"], templates_on_the_fly=True,
                                      augment_cache=str(tmp_path / "c.sqlite")),
        say=lambda *a: None)
    for labelled, flagged in ((None, False), (False, True)):
        args = _args(tmp_path)
        args.completion_only_loss = labelled
        augment.AugmentedSFTTrainer(model=tiny_model_dir, args=args, train_dataset=data)
        assert ("eval_paraphrase_gap compares different texts" in capsys.readouterr().out) == flagged


@pytest.mark.parametrize("train_format", ["prompt_completion", "messages"])
def test_a_users_eval_rows_are_labelled_as_trl_labels_their_format(tiny_model_dir, tmp_path,
                                                                   train_format):
    """An eval set of the user's own is labelled as TRL labels it in the same run: TRL resolves
    completion_only_loss from the TRAINING data (True for pairs, False for conversations) and
    labels each eval row by its own format with it. Reviews found a messages row with 9 of 40
    tokens against TRL's 40, a conversational pair with every assistant turn of its prompt, and
    pairs masked where TRL, training on conversations, labels every token. Each row's input
    ids and labels are compared with TRL's own preparation and collator; prepare's own eval
    rows follow training."""
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    import augment
    chat = [{"role": "user", "content": "Where is my order?"},
            {"role": "assistant", "content": "It ships tomorrow."},
            {"role": "user", "content": "And how long does that take?"}]
    answer = [{"role": "assistant", "content": "Two to three days."}]
    evals = {"pair": {"prompt": "Where is my order?", "completion": "It ships tomorrow."},
             "messages": {"messages": chat + answer},
             "conversational": {"prompt": chat, "completion": answer},
             "conversational, long completion": {"prompt": chat[:1], "completion": chat[1:2] + [
                 {"role": "user", "content": "Thanks!"}, *answer]}}
    if train_format == "messages":
        train = [{"messages": chat + answer}, {"messages": chat[:2]}]
        path = tmp_path / "chat.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in train))
        data = augment.prepare(str(path), augment.AugmentConfig(
            augment_methods=["templates"], templates_on_the_fly=True,
            augment_cache=str(tmp_path / "c.sqlite")), eval_fraction=0, say=lambda *a: None)
    else:
        train = [{"prompt": "Where is my order?", "completion": "It ships tomorrow."}]
        data = _data(tmp_path)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    args = SFTConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False,
                     report_to="none", max_length=None)
    ours = data.collator(tok, args)
    trl = SFTTrainer(model=LlamaForCausalLM.from_pretrained(tiny_model_dir), args=args,
                     processing_class=tok, train_dataset=Dataset.from_list(train),
                     eval_dataset={k: Dataset.from_list([v]) for k, v in evals.items()})
    for name, row in evals.items():
        theirs = trl.data_collator([trl.eval_dataset[name][0]])
        mine = ours([row])
        if name == "pair":  # rendered with the chat template (pair_format: chat), TRL's without
            assert mine["labels"].ne(-100).all() == theirs["labels"].ne(-100).all()
            continue
        assert torch.equal(mine["input_ids"], theirs["input_ids"]), name
        assert torch.equal(mine["labels"], theirs["labels"]), name
    if train_format == "prompt_completion":
        own = ours([data.eval_dataset()[0]])  # prepare's held-out pair: the prompt masked
        assert 0 < own["labels"].ne(-100).sum() < own["attention_mask"].sum()
        # an eval row with an `index` column of its own (pandas' reset_index) is an eval row,
        # not training example 0 of the plan
        assert torch.equal(ours([{**evals["messages"], "index": 0}])["input_ids"],
                           ours([evals["messages"]])["input_ids"])


def test_prepare_with_the_runs_sftconfig_checks_first_and_takes_its_seeds(tmp_path):
    """prepare(args=SFTConfig): a loss option that means nothing on this data is refused before
    anything is built (no cache made), and the seeds are the SFTConfig's."""
    from trl import SFTConfig

    import augment
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi?"},
                                             {"role": "assistant", "content": "Hello."}]}) + "\n")
    cfg = augment.AugmentConfig(augment_methods=["templates"],
                                augment_cache=str(tmp_path / "c.sqlite"))
    with pytest.raises(ConfigError, match="completion_only_loss: true is for prompt/completion"):
        augment.prepare(str(chat), cfg, eval_fraction=0, say=lambda *a: None, args=SFTConfig(
            output_dir=str(tmp_path / "o"), use_cpu=True, completion_only_loss=True))
    assert not (tmp_path / "c.sqlite").exists()
    args = SFTConfig(output_dir=str(tmp_path / "o"), use_cpu=True, seed=7, data_seed=9)
    data = _data(tmp_path, seed=None, args=args)
    assert data.sampler.seed == 9 and data.aug_cfg.augment_seed == 7
