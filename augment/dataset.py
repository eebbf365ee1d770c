"""Turns a sampler index into one text example: original row, cached variant, or refusal.

Index space (shared with `augment.sampler.RatioSampler`), N rows, M variants, R refusals:

    [0, N)          original row i
    [N, N+M)        variant j = i - N of the VariantTable; it replaces the row's prompt
                    (field=prompt) or its completion (field=completion, the `outputs` method)
    [N+M, N+M+R)    refusal k = i - N - M: a whole (prompt, completion) pair

The dataset has every index; the sampler picks which ones an epoch uses. It holds only plain
lists and numpy arrays so it pickles into DataLoader workers cheaply.

`similarity` is 1.0 for an original (it is itself), the QC similarity for a variant, and NaN for
a refusal (there is no original to compare it with; the trainer's `aug_similarity_mean` must use
a nan-aware mean over augmented examples).

>>> from augment.types import Row
>>> from augment.variants import VariantTable
>>> rows = [Row("r0", "Say hi", "Hi!")]
>>> vt = VariantTable.from_lists([[("Greet me", "paraphrase", "prompt", 0.8),
...                                ("Hi.", "outputs", "completion", 0.9)]])
>>> ds = AugmentedDataset(rows, vt)
>>> len(ds), ds[1]["prompt"], ds[1]["source"], ds[2]["prompt"], ds[2]["completion"]
(3, 'Greet me', 'paraphrase', 'Say hi', 'Hi.')
"""

from __future__ import annotations

import numpy as np
import torch.utils.data

from .errors import AugtuneError
from .methods.templates import apply_template
from .types import METHOD_NAMES, Row
from .variants import FIELD_CODES, RefusalTable, VariantTable

_COMPLETION = FIELD_CODES["completion"]


class AugmentedDataset(torch.utils.data.Dataset):
    """Originals + variants + refusals behind one integer index (see the module doc)."""

    def __init__(self, rows: list[Row], variants: VariantTable | None = None,
                 refusals: RefusalTable | None = None):
        self.prompts = [r.prompt for r in rows]
        self.completions = [r.completion for r in rows]
        self.ids = [str(r.id) for r in rows]
        # Conversation rows only (None for plain pairs): the variant goes back into its turn.
        self.messages = [r.messages or None for r in rows]
        n = len(rows)
        variants = VariantTable.empty(n) if variants is None else variants
        if variants.n_rows != n:
            raise AugtuneError(f"AugmentedDataset: the variant table covers {variants.n_rows} "
                               f"rows but there are {n} train rows; build both from the same "
                               "train split.")
        if len(variants.texts) != len(variants.method):
            raise AugtuneError("AugmentedDataset: the variant table has "
                               f"{len(variants.method)} entries but {len(variants.texts)} texts.")
        self.offsets = variants.offsets
        self.method = variants.method
        self.field = variants.field
        self.similarity = variants.similarity
        self.texts = variants.texts
        self.template = variants.template  # on-the-fly templates: rendered in __getitem__
        self.turn = variants.turn  # conversations with augment_turns=all: which user turn
        refusals = refusals or RefusalTable([], [], np.zeros(0, np.int64))
        self.refusal_prompts = list(refusals.prompts)
        self.refusal_completions = list(refusals.completions)
        self.refusal_ids = np.asarray(refusals.variant_id, np.int64)
        self.n_rows, self.n_variants, self.n_refusals = n, len(self.texts), len(refusals)

    def __len__(self) -> int:
        return self.n_rows + self.n_variants + self.n_refusals

    def __getitem__(self, i) -> dict:
        i = int(i)
        n, m = self.n_rows, self.n_variants
        if i < 0 or i >= len(self):
            raise IndexError(f"index {i} outside [0, {len(self)})")
        if i < n:
            return self._chat({"prompt": self.prompts[i], "completion": self.completions[i],
                               "source": "original", "similarity": 1.0, "row_id": self.ids[i],
                               "index": i}, i)
        if i < n + m:
            j = i - n
            row = int(np.searchsorted(self.offsets, j, side="right")) - 1
            prompt, completion = self.prompts[row], self.completions[row]
            if self.field[j] == _COMPLETION:
                completion = self.texts[j]
            elif self.template is not None and self.template[j] >= 0:
                prompt = apply_template(prompt, int(self.template[j]))
            else:
                prompt = self.texts[j]
            turn = -1 if self.turn is None else int(self.turn[j])
            if turn >= 0:  # an earlier user turn: the row's own prompt stays as it is
                variant, prompt = prompt, self.prompts[row]
            item = self._chat({"prompt": prompt, "completion": completion,
                               "source": METHOD_NAMES[int(self.method[j])],
                               "similarity": float(self.similarity[j]), "row_id": self.ids[row],
                               "index": i}, row)
            if turn >= 0:
                item["messages"] = [m if k != self._user_slot(row, turn) else
                                    {"role": "user", "content": variant}
                                    for k, m in enumerate(item["messages"])]
            return item
        k = i - n - m
        return {"prompt": self.refusal_prompts[k], "completion": self.refusal_completions[k],
                "source": "refusals", "similarity": float("nan"),
                "row_id": f"refusal:{int(self.refusal_ids[k])}", "index": i}

    def _chat(self, item: dict, row: int) -> dict:
        """A conversation row also carries its whole chat, with this item's prompt in the last
        user turn and its completion in the last assistant turn (the collator renders it)."""
        conv = self.messages[row]
        if conv is not None:
            from .conversation import with_variant
            msgs = with_variant(conv, item["prompt"], completion_side=False)
            msgs[-1]["content"] = item["completion"]
            item["messages"] = msgs
        return item

    def _user_slot(self, row: int, turn: int) -> int:
        """Index in the row's messages of user turn `turn`."""
        return [k for k, (role, _) in enumerate(self.messages[row]) if role == "user"][turn]
