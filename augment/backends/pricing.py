"""What a request costs, for the report and for `--dry-run` estimates.

CHECK CURRENT PRICES: the table is a snapshot (USD per million tokens, standard tier, no prompt
caching) and vendors change prices. `price_per_mtok: [in, out]` in the config overrides it for
any model. An unknown model costs 0 *with a flag* (`Cost.known is False`), so a report can say
"price unknown" instead of pretending the run was free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# model id -> (input USD / Mtok, output USD / Mtok). Check current prices.
PRICES: dict[str, tuple[float, float]] = {
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "claude-3-haiku": (0.25, 1.25),
}

# Message Batches are billed at half the standard price.
BATCH_DISCOUNT = 0.5

# A dated snapshot ("claude-haiku-4-5-20251001") or "-latest" alias shares its family's price;
# anything else ("claude-sonnet-4-6") is a different model and must not borrow a neighbour's.
_SUFFIX = re.compile(r"^(-\d{8}|-latest|@\d{8})$")


class Cost(float):
    """A USD amount that remembers whether the price was known. Behaves as a float."""

    known: bool

    def __new__(cls, usd: float, known: bool = True):
        obj = super().__new__(cls, usd)
        obj.known = known
        return obj

    def __repr__(self) -> str:
        return f"Cost({float(self)!r}, known={self.known})"


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float


def price_for(model: str, override=None) -> Price | None:
    """The price of `model`, `override` ([in, out]) first; None when unknown."""
    if override:
        inp, out = override
        return Price(float(inp), float(out))
    if model in PRICES:
        return Price(*PRICES[model])
    best = None
    for key in PRICES:
        if model.startswith(key) and _SUFFIX.match(model[len(key):]):
            if best is None or len(key) > len(best):
                best = key
    return Price(*PRICES[best]) if best else None


def cost(model: str, in_tok: int, out_tok: int, override=None, batch: bool = False) -> Cost:
    """USD for one request. Unknown model -> Cost(0.0, known=False)."""
    price = price_for(model, override)
    if price is None:
        return Cost(0.0, known=False)
    usd = (in_tok * price.input_per_mtok + out_tok * price.output_per_mtok) / 1_000_000
    return Cost(usd * (BATCH_DISCOUNT if batch else 1.0), known=True)


def describe(c: Cost) -> str:
    """`$0.0123` or `price unknown` (for --dry-run and the report)."""
    return f"${float(c):.4f}" if getattr(c, "known", True) else "price unknown"
