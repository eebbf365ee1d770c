"""Conversations: put a variant back into its turn, and tokenise a whole chat with its labels.

A conversation row (`Row.messages`: an optional system message, then user/assistant turns,
ending with an assistant turn) is augmented on its LAST user turn by default
(`augment_turns="last"`): `Row.prompt` is that turn and a prompt-side variant replaces it, while
the system message and every other turn reach the model unchanged. With `augment_turns="all"`
every user turn gets variants of its own (`TurnUnits`), and each augmented example still changes
exactly one turn. An `outputs` variant replaces the last assistant turn. QC judges a variant
against that turn alone; LLM methods see the earlier turns as context, so a follow-up ("And
what if it shipped yesterday?") is rewritten as a follow-up, not as a standalone question.

Labels: TRL trains conversations as language modelling (every token) unless
`assistant_only_loss`; the collator applies that choice (`language_modeling`), and this encoder
gives the assistant-turn labels: every assistant turn by default (`loss_turns="all"`) or only
the final one (`"last"`). The assistant spans are
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

from dataclasses import dataclass

import numpy as np

from .errors import AugtuneError
from .types import Row
from .variants import FIELD_CODES, VariantTable

LOSS_TURNS = ("all", "last")
AUGMENT_TURNS = ("last", "all")


@dataclass
class TurnUnits:
    """The texts augmentation works on: one unit per augmentable user turn.

    With `last` the units are the rows themselves. With `all`, a conversation with k user turns
    gives k units: unit t is the conversation cut after turn t's answer, so its `prompt` is user
    turn t, its `context` the turns before it (what an LLM method sees) and its id
    `<row id>#turn<t>`. Variants are built, cached, QC-judged and loaded per unit, exactly like
    rows (content-addressed: turn t's variants are judged against turn t alone), then
    `regroup` gathers each row's units back into one row of the table, with `turn` saying
    which user turn a variant replaces (-1 = the last)."""

    rows: list            # the units, as Rows
    unit_row: np.ndarray  # int64 [U]: the training row of each unit
    unit_turn: np.ndarray  # int16 [U]: user-turn index the unit rewrites; -1 = the last turn
    n_rows: int

    @staticmethod
    def of(rows: list[Row], augment_turns: str = "last") -> "TurnUnits":
        if augment_turns not in AUGMENT_TURNS:
            raise AugtuneError(f"augment_turns={augment_turns!r}; choose one of {AUGMENT_TURNS}.")
        n = len(rows)
        if augment_turns == "last" or not any(r.messages for r in rows):
            return TurnUnits(list(rows), np.arange(n, dtype=np.int64), np.full(n, -1, np.int16), n)
        units, unit_row, unit_turn = [], [], []
        for i, row in enumerate(rows):
            users = [k for k, (role, _) in enumerate(row.messages) if role == "user"]
            for t, k in enumerate(users[:-1]):  # earlier user turns; the last one is the row
                cut = row.messages[: k + 2]      # ... up to and including that turn's answer
                units.append(Row(f"{row.id}#turn{t}", cut[-2][1], cut[-1][1],
                                 cut if len(cut) > 2 else (), turn=t))
                unit_row.append(i)
                unit_turn.append(t)
            units.append(row)
            unit_row.append(i)
            unit_turn.append(-1)
        return TurnUnits(units, np.asarray(unit_row, np.int64), np.asarray(unit_turn, np.int16), n)

    def regroup(self, table: VariantTable) -> VariantTable:
        """A table over units -> a table over rows, with `turn` per variant. Output variants
        (completion side) are kept only for the last turn: they replace the final answer."""
        if len(self.rows) == self.n_rows:
            return table
        counts = table.counts()
        var_unit = np.repeat(np.arange(len(self.rows)), counts)
        turn = self.unit_turn[var_unit]
        keep = (table.field != FIELD_CODES["completion"]) | (turn < 0)
        idx = np.flatnonzero(keep)
        offsets = np.zeros(self.n_rows + 1, np.int64)
        np.cumsum(np.bincount(self.unit_row[var_unit[idx]], minlength=self.n_rows),
                  out=offsets[1:])
        take = lambda a: None if a is None else a[idx]  # noqa: E731
        return VariantTable(offsets, table.method[idx], table.field[idx], table.similarity[idx],
                            table.variant_id[idx], [table.texts[i] for i in idx.tolist()],
                            take(table.template), turn[idx].astype(np.int16))


def with_variant(messages: tuple, text: str, completion_side: bool, turn: int = -1) -> list[dict]:
    """The conversation as chat dicts, with `text` in user turn `turn` (-1: the last one), or,
    for an output variant, in the last assistant turn."""
    out = [{"role": r, "content": c} for r, c in messages]
    target = "assistant" if completion_side else "user"
    slots = [m for m in out if m["role"] == target]
    slots[-1 if completion_side else turn]["content"] = text
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

    def _spans(self, msgs: list[dict], tail: int | None = None,
               assistant: bool = True) -> tuple[str, list[tuple[int, int]]]:
        """The rendering and the character spans that carry labels: the assistant turns
        (`loss_turns` of them), or, with `tail`, the last `tail` messages (TRL's completion of a
        conversational prompt/completion row: everything after the prompt rendered with the
        generation prompt), within the assistant turns when `assistant`."""
        full = self._render(msgs)
        if tail is not None:
            region = (len(self._render(msgs[:-tail], generation_prompt=True)), len(full))
            if not assistant:
                return full, [region]
            return full, [(max(a, region[0]), b) for a, b in self._assistant_spans(msgs, full)
                          if b > region[0]]  # every assistant turn of it, whatever loss_turns
        spans = self._assistant_spans(msgs, full)
        if self.loss_turns == "last":
            spans = spans[-1:]
        return full, spans

    def _assistant_spans(self, msgs: list[dict], full: str) -> list[tuple[int, int]]:
        spans = []
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            # an assistant turn first (an eval row opening with a greeting) has nothing before it
            head = self._render(msgs[:i], generation_prompt=True) if i else ""
            upto = self._render(msgs[: i + 1])
            if not (upto.startswith(head) and full.startswith(upto)):
                raise AugtuneError(
                    "the chat template does not render a conversation's prefixes as prefixes "
                    "of the whole (it rewrites earlier turns), so assistant turns cannot be "
                    "located; use a template that renders turns in order.")
            spans.append((len(head), len(upto)))
        return spans

    def _encode(self, msgs: list[dict], tail: int | None = None, assistant: bool = True):
        full, spans = self._spans(msgs, tail, assistant)
        enc = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = np.asarray(enc["input_ids"], np.int64)
        starts = np.asarray([s for s, _ in enc["offset_mapping"]], np.int64)
        trained = np.zeros(len(ids), bool)
        for a, b in spans:
            trained |= (starts >= a) & (starts < b)
        labels = np.where(trained, ids, -100)
        last_start = int(np.searchsorted(starts, spans[-1][0], side="left")) if spans else len(ids)
        return ids, labels, last_start

    def encode(self, messages: list[dict], tail: int | None = None,
               assistant: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
        """`tail`: label only the last `tail` messages (a conversational prompt/completion
        row's completion), within the assistant turns when `assistant`; see `_spans`."""
        msgs = list(messages)
        ids, labels, a = self._encode(msgs, tail, assistant)
        L = self.max_length
        if L is None or len(ids) <= L:
            return ids, labels, 0
        # Drop the oldest exchanges (never the system message, never the last exchange).
        first = 1 if msgs and msgs[0]["role"] == "system" else 0
        dropped = False
        while len(ids) > L and len(msgs) - first > max(2, (tail or 0) + 1):
            # an exchange (user + assistant); a leading non-user turn (an eval row may open
            # with the assistant's greeting) alone, so the rest still opens with a user turn
            n = 2 if msgs[first]["role"] == "user" else 1
            msgs, dropped = msgs[:first] + msgs[first + n:], True
            ids, labels, a = self._encode(msgs, tail, assistant)
        if len(ids) <= L:
            return ids, labels, 2
        keep_c = min(len(ids) - a, self.k)
        if a <= L - keep_c:
            return ids[:L], labels[:L], 2 if dropped else 1
        lo = a - (L - keep_c)
        return ids[lo: a + keep_c], labels[lo: a + keep_c], 2
