"""Conversations: put a variant back into its turn, and tokenise a whole chat with its labels.

A conversation row (`Row.messages`: an optional system message, then user/assistant turns,
ending with an assistant turn) is augmented on its LAST user turn: `Row.prompt` is that turn and
a prompt-side variant replaces it, while the system message and every earlier turn reach the
model unchanged. An `outputs` variant replaces the last assistant turn. QC judges a variant
against that turn alone; LLM methods see the earlier turns as context, so a follow-up ("And
what if it shipped yesterday?") is rewritten as a follow-up, not as a standalone question.

Labels follow TRL's `assistant_only_loss`: only assistant turns carry labels, every assistant
turn by default (`loss_turns="all"`) or only the final one (`"last"`). The assistant spans are
found by rendering the chat template on growing prefixes of the conversation (the text that
rendering `messages[:i+1]` adds after `messages[:i]` with `add_generation_prompt=True` is
assistant turn i, its end-of-turn token included), so any template whose prefixes render as
prefixes works, with no `{% generation %}` markers needed. Tokens are then labelled by their
character offsets in the full rendering.

Truncation keeps the turn being trained on: the oldest user/assistant exchanges after the system
message are dropped first; if the last exchange alone is still too long, the single-turn policy
applies (the final answer keeps its first `min_completion_tokens` tokens and the text right
before it).
"""

from __future__ import annotations

import numpy as np

from .errors import AugtuneError

LOSS_TURNS = ("all", "last")


def with_variant(messages: tuple, text: str, completion_side: bool) -> list[dict]:
    """The conversation as chat dicts, with `text` in the last user turn (or, for an output
    variant, in the last assistant turn)."""
    out = [{"role": r, "content": c} for r, c in messages]
    target = "assistant" if completion_side else "user"
    for m in reversed(out):
        if m["role"] == target:
            m["content"] = text
            break
    return out


def context_for_prompt(context: tuple, max_chars: int = 4000) -> str:
    """The turns before the one being rewritten, as plain text for an LLM method's prompt.
    Long histories keep their most recent part: that is what a follow-up refers to."""
    lines = [f"{role}: {content}" for role, content in context if role != "system"]
    text = "\n".join(lines)
    return text if len(text) <= max_chars else "..." + text[-max_chars:]


class ConversationEncoder:
    """Chat messages -> (input_ids, labels, truncation flag) with the tokenizer's chat template.

    Flags as in `AugmentingCollator`: 0 nothing cut, 1 the final answer lost its tail, 2 the
    text before the final answer was cut (older turns dropped or the prompt cut)."""

    def __init__(self, tokenizer, max_length: int | None, min_completion_tokens: int = 1,
                 loss_turns: str = "all"):
        if loss_turns not in LOSS_TURNS:
            raise AugtuneError(f"loss_turns={loss_turns!r}; choose one of {LOSS_TURNS}.")
        if not getattr(tokenizer, "chat_template", None):
            raise AugtuneError("conversation rows need a chat template to be rendered; give the "
                               "tokenizer a chat_template or flatten the data to prompt/completion.")
        if not getattr(tokenizer, "is_fast", False):
            raise AugtuneError("conversation rows need a fast tokenizer (character offsets label "
                               "the assistant turns); load it with use_fast=True.")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.k = max(1, int(min_completion_tokens))
        self.loss_turns = loss_turns

    def _render(self, msgs: list[dict], generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(msgs, tokenize=False,
                                                  add_generation_prompt=generation_prompt)

    def _spans(self, msgs: list[dict]) -> tuple[str, list[tuple[int, int]]]:
        full = self._render(msgs)
        spans = []
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            head = self._render(msgs[:i], generation_prompt=True)
            upto = self._render(msgs[: i + 1])
            if not (upto.startswith(head) and full.startswith(upto)):
                raise AugtuneError(
                    "the chat template does not render a conversation's prefixes as prefixes "
                    "of the whole (it rewrites earlier turns), so assistant turns cannot be "
                    "located; use a template that renders turns in order.")
            spans.append((len(head), len(upto)))
        if self.loss_turns == "last":
            spans = spans[-1:]
        return full, spans

    def _encode(self, msgs: list[dict]):
        full, spans = self._spans(msgs)
        enc = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = np.asarray(enc["input_ids"], np.int64)
        starts = np.asarray([s for s, _ in enc["offset_mapping"]], np.int64)
        trained = np.zeros(len(ids), bool)
        for a, b in spans:
            trained |= (starts >= a) & (starts < b)
        labels = np.where(trained, ids, -100)
        last_start = int(np.searchsorted(starts, spans[-1][0], side="left")) if spans else len(ids)
        return ids, labels, last_start

    def encode(self, messages: list[dict]) -> tuple[np.ndarray, np.ndarray, int]:
        msgs = list(messages)
        ids, labels, a = self._encode(msgs)
        L = self.max_length
        if L is None or len(ids) <= L:
            return ids, labels, 0
        # Drop the oldest exchanges (never the system message, never the last exchange).
        first = 1 if msgs and msgs[0]["role"] == "system" else 0
        dropped = False
        while len(ids) > L and len(msgs) - first > 2:
            msgs, dropped = msgs[:first] + msgs[first + 2:], True
            ids, labels, a = self._encode(msgs)
        if len(ids) <= L:
            return ids, labels, 2
        keep_c = min(len(ids) - a, self.k)
        if a <= L - keep_c:
            return ids[:L], labels[:L], 2 if dropped else 1
        lo = a - (L - keep_c)
        return ids[lo: a + keep_c], labels[lo: a + keep_c], 2
