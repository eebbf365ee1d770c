"""Accepted variants of the training rows, laid out for a sampler over a million rows.

A `VariantTable` is what the cache hands to training: CSR arrays (row -> its accepted variants)
in numpy, so an epoch plan never touches per-variant Python objects. Only `texts` is a Python
list, read one entry at a time when the collator materialises an example.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .types import METHOD_NAMES

FIELD_CODES = {"prompt": 0, "completion": 1}


@dataclass
class VariantTable:
    offsets: np.ndarray      # int64 [N+1]: variants of row i are entries offsets[i]:offsets[i+1]
    method: np.ndarray       # int8  [M]: index into METHOD_NAMES
    field: np.ndarray        # int8  [M]: FIELD_CODES (which side of the row the text replaces)
    similarity: np.ndarray   # float32 [M]: QC similarity to the original
    variant_id: np.ndarray   # int64 [M]: cache row id, for provenance
    texts: list              # [M] str, or None where `template` renders the text on the fly
    template: np.ndarray | None = None  # int16 [M]: template index rendered on the fly, -1 = text
    turn: np.ndarray | None = None  # int16 [M]: conversation user turn replaced, -1 = the last

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    @staticmethod
    def empty(n_rows: int) -> "VariantTable":
        return VariantTable(np.zeros(n_rows + 1, np.int64), np.zeros(0, np.int8),
                            np.zeros(0, np.int8), np.zeros(0, np.float32),
                            np.zeros(0, np.int64), [])

    @staticmethod
    def from_lists(per_row: list[list[tuple[str, str, str, float]]]) -> "VariantTable":
        """Build from per-row lists of (text, method, field, similarity). For tests and small
        data; the cache builds its arrays directly."""
        counts = [len(v) for v in per_row]
        offsets = np.zeros(len(per_row) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        flat = [v for row in per_row for v in row]
        return VariantTable(
            offsets,
            np.array([METHOD_NAMES.index(m) for _, m, _, _ in flat], np.int8),
            np.array([FIELD_CODES[f] for _, _, f, _ in flat], np.int8),
            np.array([s for _, _, _, s in flat], np.float32),
            np.arange(len(flat), dtype=np.int64),
            [t for t, _, _, _ in flat],
        )


@dataclass
class RefusalTable:
    """Refusal examples: whole (prompt, completion) pairs with their own epoch budget."""

    prompts: list
    completions: list
    variant_id: np.ndarray   # int64 [R]

    def __len__(self) -> int:
        return len(self.prompts)


def with_on_the_fly_templates(table: VariantTable, rows, n: int, seed: int) -> VariantTable:
    """Add up to `n` instruction templates per row as entries whose text is rendered when the
    example is materialised (`AugmentedDataset`), not stored: no cache build, no memory for the
    texts. Which templates fit each row, and their order, come from `methods.templates.choose`
    with (seed, prompt), exactly as the cached `templates` method picks them; the sampler then
    rotates among them by (seed, epoch, row). These entries are not QC-judged (similarity NaN)."""
    from .methods.templates import choose

    new_rows, new_idx = [], []
    for i, row in enumerate(rows):
        for t, _text in choose(row.prompt, n, seed):
            new_rows.append(i)
            new_idx.append(t)
    if not new_rows:
        return table
    old_rows = np.repeat(np.arange(table.n_rows, dtype=np.int64), table.counts())
    all_rows = np.concatenate([old_rows, np.asarray(new_rows, np.int64)])
    order = np.argsort(all_rows, kind="stable")   # group by row, cached entries first
    m_new = len(new_rows)
    cat = lambda a, b: np.concatenate([a, b])[order]  # noqa: E731
    offsets = np.zeros(table.n_rows + 1, np.int64)
    np.cumsum(np.bincount(all_rows, minlength=table.n_rows), out=offsets[1:])
    old_template = table.template if table.template is not None else np.full(len(table), -1, np.int16)
    texts = list(table.texts) + [None] * m_new
    return VariantTable(
        offsets,
        cat(table.method, np.full(m_new, METHOD_NAMES.index("templates"), np.int8)),
        cat(table.field, np.zeros(m_new, np.int8)),
        cat(table.similarity, np.full(m_new, np.nan, np.float32)),
        cat(table.variant_id, np.full(m_new, -1, np.int64)),
        [texts[k] for k in order],
        cat(old_template, np.asarray(new_idx, np.int16)),
        # on-the-fly templates rewrite a conversation's last user turn
        None if table.turn is None else cat(table.turn, np.full(m_new, -1, np.int16)),
    )
