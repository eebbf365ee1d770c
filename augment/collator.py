"""Tokenises prompt/completion examples, masks the prompt, pads with TRL, and tags each example.

Why our own collator: augmented examples are chosen per epoch by the sampler, so they cannot be
tokenised once up front the way TRL prepares a dataset (SFTTrainer then runs with
`skip_prepare_dataset=True` and no longer truncates: this collator must).

Format. With a chat template the example is the conversation
`[{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]`; the prompt
part is the user turn rendered with `add_generation_prompt=True` (including any default system
prompt the template injects) and the response part is everything the full rendering adds after
it (the completion and the end-of-turn token). The two parts are tokenised separately and
concatenated, which is exactly what the model sees at inference (prompt tokens, then generated
tokens). At construction the template is probed to confirm the prompt rendering is a prefix of
the full one (else `AugtuneError`); when the template also renders a completion as plain
substitution (no trimming or rewriting), prompt and response are tokenised from cached pieces
without re-rendering jinja per example. Without a chat template the format is
`prompt + "\\n\\n"` (after BOS when the tokenizer adds one) then `completion + EOS`. With
`pair_format="trl"` a pair is tokenised the way TRL's SFTTrainer prepares plain prompt/completion
data (no template, no separator: prompt + completion + EOS as one text; see `_trl_pairs`).

Labels are -100 on the prompt and on padding, the token ids on the response (TRL's default for
prompt-completion data). `completion_only_loss=False` trains on the prompt too, as in TRL;
`assistant_only_loss=True` keeps only the assistant turn (the response), which for a
prompt/completion pair rendered with a chat template is exactly the default masking.
`language_modeling=True` says the rows come from conversation files (messages, ShareGPT), which
TRL trains as language modelling: every token carries labels unless `assistant_only_loss=True`
(then the assistant turns only, `loss_turns` of them), and `completion_only_loss=True`, which
TRL ignores there, is refused rather than silently ignored.

Padding-free (`padding_free=True`, TRL's option of the same name): the batch is ONE flattened row
with `position_ids` restarting at 0 for each example and no `attention_mask`, made by TRL's own
`DataCollatorForLanguageModeling(padding_free=True)` (which also sets each example's first label
to -100 and adds `cu_seq_lens_*`/`max_length_*`/`seq_idx` for varlen kernels). transformers 5
builds the block-diagonal mask from `position_ids` for sdpa and eager attention too, so the loss
equals the padded batch's; with flash attention it is TRL's fastest path.

Truncation policy (`max_length=None`: nothing is cut; L = max_length, k = min_completion_tokens, default min(32, L // 2), P/C =
prompt/response lengths, the response including its end-of-turn/EOS token):
  1. P + C <= L: nothing is cut.
  2. else if P <= L - min(C, k): the whole prompt stays and the response loses its tail.
  3. else: the response keeps its first min(C, k) tokens and the prompt keeps its LAST
     L - min(C, k) tokens (cut from the left: the end of a prompt, next to the answer, matters
     most, and the assistant header survives).
Per example, `aug_truncated` in the batch is 0, 1 (response cut) or 2 (prompt cut);
`self.stats` counts them too, but only in the process that ran the collator (with DataLoader
workers use the batch tag).

Batch tags, which the trainer must pop before the forward pass:
  `aug_source`     LongTensor: -1 for an original, else the index in `METHOD_NAMES`
                   (refusals use METHOD_NAMES.index("refusals")); an example without a
                   "source" key is an original (plain eval data).
  `aug_similarity` FloatTensor: QC similarity (1.0 originals, NaN refusals).
  `aug_truncated`  LongTensor: see above.
  `aug_pair`       LongTensor: for a consistency pair, the batch position of its partner; -1
                   otherwise. A pair is two examples at positions (2k, 2k+1): an original and
                   an instruction-side variant of the same row (`row_id`), which is how the
                   sampler places them when `consistency_pairs` is on (augment/sampler.py).

Tokenisation is cached per text (an LRU per process, so per DataLoader worker) and misses are
tokenised batch-wise with the fast tokenizer: originals recur every epoch and share prompts with
their completion-side variants.

>>> from tokenizers import Tokenizer, models, pre_tokenizers
>>> from transformers import PreTrainedTokenizerFast
>>> words = ["<pad>", "<eos>", "[UNK]", "say", "hi", "hello", "there"]
>>> tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
>>> tk.pre_tokenizer = pre_tokenizers.Whitespace()
>>> tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>")
>>> collate = AugmentingCollator(tok, max_length=16, min_completion_tokens=2)
>>> batch = collate([
...     {"prompt": "say hi", "completion": "hello there", "source": "original", "similarity": 1.0},
...     {"prompt": "hi", "completion": "hello", "source": "paraphrase", "similarity": 0.85}])
>>> batch["input_ids"]
tensor([[3, 4, 5, 6, 1],
        [4, 5, 1, 0, 0]])
>>> batch["labels"]
tensor([[-100, -100,    5,    6,    1],
        [-100,    5,    1, -100, -100]])
>>> batch["attention_mask"].tolist(), batch["aug_source"].tolist(), batch["aug_truncated"].tolist()
([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], [-1, 0], [0, 0])
>>> AugmentingCollator(tok, max_length=4, min_completion_tokens=2)(
...     [{"prompt": "say hi there", "completion": "hello there"}])["input_ids"].tolist()
[[4, 6, 5, 6]]
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import numpy as np

from .errors import AugtuneError
from .types import INSTRUCTION_METHODS, METHOD_NAMES

_SOURCE_CODE = {"original": -1, **{m: i for i, m in enumerate(METHOD_NAMES)}}
_P, _C = "AUGTUNEPROMPTSENTINEL", "AUGTUNECOMPLETIONSENTINEL"
# Probe texts with edge whitespace and newlines: a template that trims or rewrites content
# would render them differently from plain substitution.
_PROBES = [(" Hello there,\n\nfriend ", "  Hi!\nHow can I help?\n"), ("x", "")]
# Texts that stress token boundaries: joining separately tokenised pieces is only used when it
# gives exactly the tokens of the whole rendering for all of these.
_JOIN_PROBES = ["How do I reset my password?", "42 is a number",
                "'quoted' text", "emoji 🚀 end", "ÜBER café", "{order_id}?", "a\n\n  b",
                "- a bullet\n- another", "x"]


class _LRU:
    """Text -> int32 token ids, bounded. Per process; never shared between workers."""

    def __init__(self, size: int):
        self.size, self.data = size, OrderedDict()

    def get(self, key):
        ids = self.data.get(key)
        if ids is not None:
            self.data.move_to_end(key)
        return ids

    def put(self, key, ids):
        self.data[key] = ids
        if len(self.data) > self.size:
            self.data.popitem(last=False)


class AugmentingCollator:
    """Example dicts (`AugmentedDataset` items) -> padded batch with masked labels and tags."""

    def __init__(self, tokenizer, max_length: int | None, *, min_completion_tokens: int | None = None,
                 use_chat_template: bool | None = None, cache_size: int = 65536,
                 pad_to_multiple_of: int | None = None, pad_collator=None,
                 padding_free: bool = False, completion_only_loss: bool | None = None,
                 assistant_only_loss: bool = False, loss_turns: str = "all",
                 pair_format: str = "chat", language_modeling: bool = False):
        try:
            from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
        except ImportError as err:  # pragma: no cover - trl is a core dependency
            raise ImportError("AugmentingCollator needs trl: pip install augtune") from err
        if max_length is not None and max_length < 2:
            raise AugtuneError(f"max_length={max_length} is too small to hold a prompt and a "
                               "response; use e.g. 512.")
        if max_length is None:  # TRL's meaning: no truncation
            min_completion_tokens = 1 if min_completion_tokens is None else min_completion_tokens
        else:
            if min_completion_tokens is None:  # enough of an answer to be worth a gradient
                min_completion_tokens = max(1, min(32, max_length // 2))
            if not 1 <= min_completion_tokens < max_length:
                raise AugtuneError(f"min_completion_tokens={min_completion_tokens} must be in "
                                   f"[1, max_length={max_length}).")
        self.tokenizer = tokenizer
        self.max_length = None if max_length is None else int(max_length)
        self.loss_turns = loss_turns  # conversation rows: which assistant turns carry labels
        self._conversations = None    # ConversationEncoder, made on the first conversation
        self.min_completion_tokens = int(min_completion_tokens)
        self.padding_free = bool(padding_free)
        if language_modeling and completion_only_loss:
            raise AugtuneError("completion_only_loss=True is for prompt/completion data; this data "
                               "is conversations, which TRL trains as language modelling (it "
                               "ignores the option there): use assistant_only_loss=True to train "
                               "the assistant turns only.")
        # TRL resolves completion_only_loss once, from the TRAINING data's format (None: True
        # for prompt/completion, False for conversations) and applies it to every eval set;
        # assistant_only_loss keeps the assistant turns (for a pair rendered with a chat template,
        # the response).
        self._col = completion_only_loss if completion_only_loss is not None \
            else not language_modeling
        self._aol = bool(assistant_only_loss)
        # Whether a training row's prompt side gets no labels: conversations are language
        # modelling (every token, or the assistant turns); pairs mask the prompt unless
        # completion_only_loss is False.
        self.mask_prompt = self._aol if language_modeling else (self._col or self._aol)
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            # Padding positions are masked (attention 0, label -100): their id never matters.
            pad_id = tokenizer.eos_token_id
        if pad_id is None:
            raise AugtuneError("AugmentingCollator: the tokenizer has neither a pad nor an eos "
                               "token; set tokenizer.pad_token.")
        self.pad_collator = pad_collator or DataCollatorForLanguageModeling(
            pad_token_id=int(pad_id), pad_to_multiple_of=pad_to_multiple_of,
            padding_free=self.padding_free)
        if pair_format not in ("chat", "trl"):
            raise AugtuneError(f"pair_format={pair_format!r}: choose chat or trl.")
        self.pair_format = pair_format
        if pair_format == "trl":
            if assistant_only_loss:
                raise AugtuneError("assistant_only_loss=True trains the assistant turn, which "
                                   "pair_format: trl does not render; use pair_format: chat.")
            if tokenizer.eos_token is None:
                raise AugtuneError("pair_format: trl appends the tokenizer's eos_token to every "
                                   "completion, as TRL does; set tokenizer.eos_token.")
            use_chat_template = False
        if use_chat_template is None:
            use_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.use_chat_template = use_chat_template
        if assistant_only_loss and not use_chat_template:
            raise AugtuneError("assistant_only_loss=True needs a chat template (the assistant turn "
                               "is what it renders); give the tokenizer a chat_template or drop "
                               "assistant_only_loss.")
        self._prompt_cache, self._completion_cache = _LRU(cache_size), _LRU(cache_size)
        self._pair_cache = _LRU(cache_size)  # pair_format: trl, (prompt, completion) -> ids
        self.stats = {"examples": 0, "completion_truncated": 0, "prompt_truncated": 0}
        self._fast = True  # chat template renders by plain substitution (see _probe_template)
        self._pieces = None  # template pieces as token ids, when joining is exact
        self._bos: list[int] = []
        self._eos: list[int] = []
        self._warned_merge = False
        if use_chat_template:
            self._probe_template()
        elif pair_format == "chat":
            eos = tokenizer.eos_token_id
            if eos is None:
                raise AugtuneError("AugmentingCollator: the tokenizer has no chat template and "
                                   "no eos token, so the model could not learn to stop; set "
                                   "tokenizer.eos_token or give it a chat_template.")
            self._eos = [int(eos)]
            bos = tokenizer.bos_token_id
            if bos is not None and tokenizer("x")["input_ids"][:1] == [bos]:
                self._bos = [int(bos)]

    # -- formatting ------------------------------------------------------------------------

    def _render(self, prompt: str, completion: str | None) -> str:
        msgs = [{"role": "user", "content": prompt}]
        if completion is None:
            return self.tokenizer.apply_chat_template(msgs, tokenize=False,
                                                      add_generation_prompt=True)
        msgs.append({"role": "assistant", "content": completion})
        return self.tokenizer.apply_chat_template(msgs, tokenize=False)

    def _split(self, prompt: str, completion: str) -> tuple[str, str]:
        """(prompt text, response text) by rendering the template for this pair."""
        head, full = self._render(prompt, None), self._render(prompt, completion)
        if not full.startswith(head):
            raise AugtuneError(
                "AugmentingCollator: the chat template's prompt rendering (add_generation_prompt"
                "=True) is not a prefix of the full conversation, so the response cannot be "
                "found; pass use_chat_template=False or fix the template.")
        return head, full[len(head):]

    def _probe_template(self) -> None:
        head, rest = self._split(_P, _C)
        self._fast = head.count(_P) == 1 and rest.count(_C) == 1
        if self._fast:
            self._p_pre, self._p_post = head.split(_P)
            self._c_pre, self._c_post = rest.split(_C)
            self._fast = all(self._split(p, c) == (self._p_pre + p + self._p_post,
                                                   self._c_pre + c + self._c_post)
                             for p, c in _PROBES)
        if self._fast:
            self._pieces = self._probe_pieces()

    def _probe_pieces(self):
        """Token ids of the template's constant pieces, when tokenising a message alone and
        joining it with them gives exactly the tokens of the whole rendering (true for byte-BPE
        tokenizers whose template pieces end in special tokens or newlines, such as SmolLM2's).
        Then only the message text is tokenised per example: half the work, since the template
        may add a default system prompt as long as the message. None when it would differ."""
        enc = lambda t: self.tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
        pieces = [enc(t) for t in (self._p_pre, self._p_post, self._c_pre, self._c_post)]
        for t in _JOIN_PROBES:
            if enc(self._p_pre + t + self._p_post) != pieces[0] + enc(t) + pieces[1]:
                return None
            if enc(self._c_pre + t + self._c_post) != pieces[2] + enc(t) + pieces[3]:
                return None
        return [np.asarray(p, dtype=np.int32) for p in pieces]

    def _prompt_text(self, prompt: str) -> str:
        if not self.use_chat_template:
            return prompt + "\n\n"
        return self._p_pre + prompt + self._p_post

    def _completion_text(self, completion: str) -> str:
        return self._c_pre + completion + self._c_post if self.use_chat_template else completion

    # -- tokenisation ----------------------------------------------------------------------

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        if not texts:
            return []
        enc = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [np.asarray(ids, dtype=np.int32) for ids in enc]

    def _lookup(self, cache: _LRU, keys: list[str], render, wrap=None) -> list[np.ndarray]:
        out = [cache.get(k) for k in keys]
        missing = list(dict.fromkeys(k for k, ids in zip(keys, out) if ids is None))
        if missing:
            # Tokenise the message alone and join the template's pieces, except where the
            # message starts or ends with whitespace (byte-BPE merges it with the template's
            # newline, e.g. "\n  odd"): those are rendered whole.
            joinable = [k for k in missing if wrap is not None and k and not k[0].isspace()
                        and not k[-1].isspace()]
            whole = [k for k in missing if k not in set(joinable)] if joinable else missing
            fresh = ({k: np.concatenate([wrap[0], ids, wrap[1]])
                      for k, ids in zip(joinable, self._encode(joinable))} if joinable else {})
            if whole:
                fresh.update(zip(whole, self._encode([render(k) for k in whole])))
            for k, ids in fresh.items():
                cache.put(k, ids)
            out = [ids if ids is not None else fresh[k] for k, ids in zip(keys, out)]
        return out

    def _tokenize(self, examples: list[dict]) -> tuple[list, list]:
        prompts = [ex["prompt"] for ex in examples]
        completions = [ex["completion"] for ex in examples]
        if self.pair_format == "trl":
            return self._trl_pairs(prompts, completions)
        if self.use_chat_template and not self._fast:
            # Template is not plain substitution: render each pair (correct, just slower).
            pairs = [self._split(p, c) for p, c in zip(prompts, completions)]
            ids = self._encode([t for pair in pairs for t in pair])
            return ids[0::2], ids[1::2]
        if self.use_chat_template and self._pieces is not None:
            pre_p, post_p, pre_c, post_c = self._pieces
            p_ids = self._lookup(self._prompt_cache, prompts, self._prompt_text, (pre_p, post_p))
            c_ids = self._lookup(self._completion_cache, completions, self._completion_text,
                                 (pre_c, post_c))
            return p_ids, c_ids
        p_ids = self._lookup(self._prompt_cache, prompts, self._prompt_text)
        c_ids = self._lookup(self._completion_cache, completions, self._completion_text)
        return p_ids, c_ids

    def _trl_pairs(self, prompts: list[str], completions: list[str]) -> tuple[list, list]:
        """TRL's own tokenisation of a plain prompt/completion pair (SFTTrainer's dataset
        preparation, not conversational): EOS appended to the completion unless it ends with
        it, the prompt and prompt + completion tokenised as text (special tokens such as BOS
        included, no template), and the completion starting where the two tokenisations part
        (`trl.data_utils.common_prefix_length`: tokens can merge across the boundary). Such a
        merge also changes a completion's first tokens, so a consistency pair whose two prompts
        end differently there shares no answer tokens and adds no consistency term."""
        from trl.data_utils import common_prefix_length
        eos = self.tokenizer.eos_token
        keys = [(p, c if c.endswith(eos) else c + eos) for p, c in zip(prompts, completions)]
        out = [self._pair_cache.get(k) for k in keys]
        missing = list(dict.fromkeys(k for k, v in zip(keys, out) if v is None))
        if missing:
            p_ids = self.tokenizer([p for p, _ in missing])["input_ids"]
            full = self.tokenizer([p + c for p, c in missing])["input_ids"]
            fresh = {}
            for k, pi, fi in zip(missing, p_ids, full):
                n = common_prefix_length(pi, fi)
                if n < len(pi) and not self._warned_merge:
                    self._warned_merge = True
                    warnings.warn("pair_format: trl: a tokenised prompt is not a prefix of its "
                                  "prompt + completion (tokens merge across the boundary); as in "
                                  "TRL, the completion starts where the two part, and this end of "
                                  f"the prompt is not trained as it is: "
                                  f"{self.tokenizer.decode(pi[n:])!r}. Shown once.", stacklevel=2)
                fi = np.asarray(fi, dtype=np.int32)
                fresh[k] = (fi[:n], fi[n:])
                self._pair_cache.put(k, fresh[k])
            out = [v if v is not None else fresh[k] for k, v in zip(keys, out)]
        return [p for p, _ in out], [c for _, c in out]

    # -- collation -------------------------------------------------------------------------

    def features(self, examples: list[dict]) -> tuple[list[dict], list[int]]:
        """Per-example `input_ids`/`labels` (int64 arrays, truncated) and truncation flags:
        exactly what the TRL padding collator receives."""
        if any("messages" in ex for ex in examples):
            return self._mixed_features(examples)
        p_ids, c_ids = self._tokenize(examples)
        bos = np.asarray(self._bos, np.int64)
        eos = np.asarray(self._eos, np.int64)
        L, k = self.max_length, self.min_completion_tokens
        feats, flags = [], []
        for ex, p, c in zip(examples, p_ids, c_ids):
            if len(bos):
                p = np.concatenate([bos, p])
            if len(eos):
                c = np.concatenate([c, eos])
            flag = 0
            if L is not None and len(p) + len(c) > L:
                keep_c = min(len(c), k)
                if len(p) <= L - keep_c:
                    c, flag = c[:L - len(p)], 1
                else:
                    p, c, flag = p[len(p) - (L - keep_c):], c[:keep_c], 2
            ids = np.concatenate([p, c]).astype(np.int64)
            labels = ids.copy()
            if self._mask_for(ex):
                labels[:len(p)] = -100
            feats.append({"input_ids": ids, "labels": labels})
            flags.append(flag)
        self.stats["examples"] += len(flags)
        self.stats["completion_truncated"] += flags.count(1)
        self.stats["prompt_truncated"] += flags.count(2)
        return feats, flags

    def _mixed_features(self, examples: list[dict]) -> tuple[list[dict], list[int]]:
        """Conversation examples (a `messages` key, see `augment.conversation`) are rendered
        whole with their assistant turns labelled; plain pairs take the path above."""
        if self._conversations is None:
            from .conversation import ConversationEncoder
            self._conversations = ConversationEncoder(
                self.tokenizer, self.max_length, self.min_completion_tokens, self.loss_turns)
        plain = [i for i, ex in enumerate(examples) if "messages" not in ex]
        feats, flags = [None] * len(examples), [0] * len(examples)
        if plain:
            f, fl = self.features([examples[i] for i in plain])
            for i, a, b in zip(plain, f, fl):
                feats[i], flags[i] = a, b
        for i, ex in enumerate(examples):
            if feats[i] is None:
                if ex.get("label_as") == "conversational_prompt_completion" and self._col:
                    # TRL's completion mask: every message of the completion (within the
                    # assistant turns with assistant_only_loss)
                    ids, labels, flag = self._conversations.encode(
                        ex["messages"], tail=ex["completion_turns"], assistant=self._aol)
                else:
                    ids, labels, flag = self._conversations.encode(ex["messages"])
                    if not self._mask_for(ex):  # every token, as TRL labels this row
                        labels = ids.copy()
                feats[i], flags[i] = {"input_ids": ids, "labels": labels}, flag
                self.stats["examples"] += 1
                self.stats["completion_truncated"] += flag == 1
                self.stats["prompt_truncated"] += flag == 2
        return feats, flags

    def _mask_for(self, ex: dict) -> bool:
        """Whether `ex`'s prompt side (everything but the assistant turns) gets no labels.
        Training rows follow the run's data (`mask_prompt`); a user's eval row says its format
        (`label_as`, set by `pipeline._eval_item`) and is labelled as TRL labels it in this run:
        a pair by completion_only_loss as TRL resolved it from the training data, a conversation
        as language modelling."""
        how = ex.get("label_as")
        if how is None:
            return getattr(self, "mask_prompt", True)
        return self._aol if how != "prompt_completion" else (self._col or self._aol)

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        feats, flags = self.features(examples)
        batch = self.pad_collator(feats)
        sources = []
        for ex in examples:
            src = ex.get("source", "original")
            if src not in _SOURCE_CODE:
                raise AugtuneError(f"AugmentingCollator: unknown example source {src!r}; "
                                   f"expected 'original' or one of {METHOD_NAMES}.")
            sources.append(_SOURCE_CODE[src])
        batch["aug_source"] = torch.tensor(sources, dtype=torch.long)
        batch["aug_similarity"] = torch.tensor(
            [float(ex.get("similarity", 1.0)) for ex in examples], dtype=torch.float32)
        batch["aug_truncated"] = torch.tensor(flags, dtype=torch.long)
        batch["aug_pair"] = torch.tensor(pair_partners(examples), dtype=torch.long)
        return batch


def pair_partners(examples: list[dict]) -> list[int]:
    """Per example, the position of its consistency partner in the batch, or -1: positions
    (2k, 2k+1) holding an original and an instruction-side variant of the same row."""
    out = [-1] * len(examples)
    for k in range(0, len(examples) - 1, 2):
        a, b = examples[k], examples[k + 1]
        if (a.get("source", "original") == "original" and b.get("source") in INSTRUCTION_METHODS
                and a.get("row_id") is not None and a.get("row_id") == b.get("row_id")):
            out[k], out[k + 1] = k + 1, k
    return out
