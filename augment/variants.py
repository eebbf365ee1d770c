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
    texts: list              # [M] str

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
