"""Which rows appear in an epoch, and as what: original, which cached variant, or a refusal.

`RatioSampler` yields indices into `augment.dataset.AugmentedDataset`, whose index space is

    [0, N)            original row i
    [N, N+M)          cached variant j of the `VariantTable` (index N + j)
    [N+M, N+M+R)      refusal k of the `RefusalTable` (index N + M + k)

with N training rows, M variants (all of them, including any a zero method weight excludes)
and R refusals. The dataset decodes an index; the sampler alone decides the mix.

Epoch arithmetic (`round` is round-half-up, r = augmented_per_original, f = refusal_fraction)

    expand:  originals O = N, augmented A = round(r*N),
             refusals F = round(f*(N+A)/(1-f)),          length = N + A + F
    replace: length L = N, refusals F = round(f*N), augmented A = round((N-F)*r/(1+r)),
             originals O = N - F - A                      (same compute as no augmentation)
    then, if rounding put A above max_augmented_fraction of the epoch (a few rows: replace,
    N = 7, r = 7/3 gives round(4.9) = 5 of 7), A drops until it is not (O takes the slots in
    replace mode); `report()` counts them as augmented_rounded_down_to_the_cap.

In both modes refusals take their share f of the epoch first and originals : augmented is 1 : r
in the rest, so a refusal_fraction never changes the ratio (replace once took every refusal slot
from the originals: f = 0.2 turned 1:2 into 1:5.4). Refusals are not "augmented": the cap, A and
`augmented_fraction` count variants of training rows only.

Example, N = 10, r = 2, f = 0.1: expand gives O = 10, A = 20, F = round(3.33) = 3, length 33;
replace gives F = 1, A = round(6) = 6, O = 3, length 10.

The A augmented slots go to the N_w rows that have at least one usable variant: every such row
gets q = A // N_w slots and e = A % N_w of them one more. Rows without variants get none, so the
epoch's counts stay exact; `report()` says how many rows were left uncovered and how many slots
had to reuse a variant within the epoch (a row's quota above its variant count).

Which rows get the extra slot rotates, closed-form: the N_w rows sit on a circle in a fixed
seeded order (position p), and epoch k gives the extra slot to positions [k*e, (k+1)*e) mod N_w.
So before epoch k a row has had c(k) = k*q + max(0, ceil((k*e - p) / N_w)) slots, computable
for any k without replaying earlier epochs (resuming at epoch k gives the same plan).

Rotation: each row's usable variants are put in a fixed seeded *weighted* order (stride
scheduling: the k-th variant of method m in the row gets key (k + U) / weight_m, ascending; so
the row's first slots go to different methods, and a method with weight 2 gets two early slots
for each one of a weight-1 method, however many variants each method made). The
row's slot number s (counted over all epochs, s = c(k), c(k)+1, ...) uses variant order[s mod m].
So a variant is reused only after the row's other m-1 variants were used, and over any m
consecutive slots each is used exactly once. Method weights therefore shift the per-method share
of every epoch that does not finish whole rotation cycles (most strongly the first: with r=1 and
one paraphrase and one template per row, paraphrase=3 gives ~3/4 of epoch 0 to paraphrases);
over a complete cycle every accepted variant is used once, as rotation demands. A weight of 0
removes a method from training altogether (its variants count as absent).

Refusals rotate the same way over one seeded permutation of the R refusals: epoch k uses
permutation positions [k*F, (k+1)*F) mod R.

In replace mode the O originals are a seeded choice among rows that got no augmented slot this
epoch (so as many rows as possible appear once), topped up from augmented rows when needed.

Consistency pairs (`consistency_pairs=True`, set from `AugmentConfig.consistency_pairs`: a
weight > 0 or `consistency_pairing`): the epoch's multiset of indices is exactly the one above
(same counts, same variants); only the order changes. Each original whose row has an
instruction-side variant (paraphrase, backtranslate, templates; never `outputs`, whose answer
differs, nor a refusal) scheduled this epoch is put immediately before one of them, at an even
position of the plan: entries (2k, 2k+1). The other entries fill the remaining slots two by two,
and the units are shuffled. With an even per-device batch size every micro-batch, and so every
rank's share of a global batch, starts at an even position, so a pair never straddles two
micro-batches or two ranks (the trainer refuses an odd batch size). In replace mode the
originals are then drawn first from rows with such a variant this epoch (instead of from rows
without an augmented slot), so at 1:1 every original has its pair.

Everything comes from (seed, epoch): the plan is identical on every rank and in a fresh process.
The sampler does not shard by rank (accelerate shards the batches of one global index stream);
with `even_batches=True` accelerate repeats a few indices to fill the last global batch, so the
realised share can differ from these counts by less than one global batch.

>>> from augment.variants import VariantTable
>>> vt = VariantTable.from_lists([[("v0", "paraphrase", "prompt", 0.9)],
...                               [("v1", "templates", "prompt", 0.9)], []])
>>> s = RatioSampler(3, vt, augmented_per_original=1.0, seed=0)
>>> len(s), s.epoch_counts(0)["augmented"], s.report()["rows_without_variants"]
(6, 3, 1)
>>> sorted(s.plan(0).tolist())   # originals 0..2, variants 3..4 (one of them twice)
[0, 1, 2, 3, 3, 4]
"""

from __future__ import annotations

import math

import numpy as np
import torch.utils.data

from .errors import AugtuneError, ConfigError
from .types import INSTRUCTION_METHODS, METHOD_NAMES
from .variants import FIELD_CODES, RefusalTable, VariantTable

# Tags mixed into every seed so the streams of different purposes never coincide.
_ROW_ORDER, _VARIANT_ORDER, _REFUSAL_ORDER, _EPOCH = 101, 102, 103, 104


def _round(x: float) -> int:
    """Round half up (Python's `round` rounds half to even, which surprises in a docstring)."""
    return int(math.floor(x + 0.5 + 1e-9))


def _epoch_slots(n: int, r: float, f: float, mode: str) -> tuple[int, int, int]:
    """(originals, augmented, refusals) of an epoch before the cap (module doc). Refusals get
    their share first and the rest is split 1 : r, so the ratio the config asks for is the one
    trained in both modes, whatever refusal_fraction is."""
    if mode == "expand":
        a = _round(r * n)
        return n, a, (_round(f * (n + a) / (1.0 - f)) if f else 0)
    refusals = _round(f * n)                # f < 0.5, so at most half the epoch
    a = _round((n - refusals) * r / (1.0 + r))
    return n - refusals - a, a, refusals


def _plan_fingerprint(variants: VariantTable, refusals, **settings) -> str:
    """sha256 of what the plans of every epoch depend on: the accepted variants (cache ids,
    rows, methods, fields), the refusals, and the sampler's settings. A resumed run compares it
    with the one its checkpoint was made under (`AugmentedSFTTrainer.train`)."""
    import hashlib
    import json
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    ref = (refusals.variant_id if isinstance(refusals, RefusalTable)
           else np.asarray([int(refusals or 0)]))
    for a in (variants.offsets, variants.method, variants.field, variants.variant_id,
              variants.template, variants.turn, ref):
        h.update(b"|" if a is None else np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


class RatioSampler(torch.utils.data.Sampler[int]):
    """Epoch plans of originals, rotating variants and refusals; arithmetic in the module doc."""

    def __init__(self, n_rows: int, variants: VariantTable | None = None,
                 refusals: RefusalTable | int | None = None, *,
                 augmented_per_original: float = 2.0, max_augmented_fraction: float = 0.7,
                 augment_mode: str = "expand", method_weights: dict[str, float] | None = None,
                 refusal_fraction: float = 0.0, seed: int = 0, shuffle: bool = True,
                 consistency_pairs: bool = False):
        n = int(n_rows)
        if n <= 0:
            raise AugtuneError(f"RatioSampler: n_rows={n_rows}; there are no training rows to "
                               "sample. Check the dataset and its train split.")
        variants = VariantTable.empty(n) if variants is None else variants
        if variants.n_rows != n:
            raise AugtuneError(f"RatioSampler: the variant table covers {variants.n_rows} rows "
                               f"but training has {n}; build it from the same train rows.")
        r = float(augmented_per_original)
        if r < 0:
            raise ConfigError(f"augmented_per_original={r} is negative; use 0 for none.")
        if not 0.0 <= max_augmented_fraction < 1.0:
            raise ConfigError(f"max_augmented_fraction={max_augmented_fraction} must be in [0, 1).")
        cap = max_augmented_fraction
        if r / (1.0 + r) > cap + 1e-9:
            raise ConfigError(
                f"augmented_per_original={r} makes {r / (1 + r):.1%} of each epoch augmented, "
                f"above max_augmented_fraction={cap}. The largest allowed value is "
                f"{cap / (1 - cap):.4g}.")
        if augment_mode not in ("expand", "replace"):
            raise ConfigError(f"augment_mode={augment_mode!r} is not one of ('expand', 'replace').")
        f = float(refusal_fraction)
        if not 0.0 <= f < 0.5:
            raise ConfigError(f"refusal_fraction={f} must be in [0, 0.5).")
        if seed < 0:
            raise ConfigError(f"seed={seed} must be >= 0.")
        weights = dict(method_weights or {})
        for name, w in weights.items():
            if name not in METHOD_NAMES:
                raise ConfigError(f"method_weights: unknown method {name!r}; choose from "
                                  f"{METHOD_NAMES}.")
            if not w >= 0:
                raise ConfigError(f"method_weights: {name}={w} must be >= 0.")
        n_ref = len(refusals) if isinstance(refusals, RefusalTable) else int(refusals or 0)
        self.fingerprint = _plan_fingerprint(
            variants, refusals, r=r, f=float(refusal_fraction), cap=max_augmented_fraction,
            mode=augment_mode, seed=int(seed), shuffle=bool(shuffle),
            weights=sorted((method_weights or {}).items()), pairs=bool(consistency_pairs))

        self.n_rows, self.n_variants, self.n_refusals = n, int(variants.method.shape[0]), n_ref
        self.mode, self.seed, self.shuffle, self.epoch = augment_mode, int(seed), shuffle, 0
        self.augmented_per_original, self.refusal_fraction = r, f
        self.consistency_pairs = bool(consistency_pairs)
        self.method_weights = {m: float(weights.get(m, 1.0)) for m in METHOD_NAMES}

        self.n_originals, self.n_augmented, self.n_refusal_slots = _epoch_slots(
            n, r, f, augment_mode)
        # The cap holds after rounding too: with a few rows round-half-up can pass it (replace,
        # 5 rows, r = 7/3: 3.5 -> 4 of 5 = 80%), so the slots above it are given back, and
        # `report()` counts them. (Refusals have their own cap, refusal_fraction < 0.5.)
        self.n_rounded_down = 0
        while self.n_augmented > cap * len(self) + 1e-9:
            self.n_rounded_down += 1
            self.n_augmented -= 1
            if augment_mode == "replace":
                self.n_originals += 1
        if self.n_refusal_slots > 0 and n_ref == 0:
            raise AugtuneError(
                f"refusal_fraction={f} asks for {self.n_refusal_slots} refusal examples per "
                "epoch but the refusal table is empty; build the refusals (refusals_file with "
                "'refusals' in augment_methods) or set refusal_fraction 0.")

        # Usable variants: a method with weight 0 is removed from training.
        wvec = np.array([self.method_weights[m] for m in METHOD_NAMES], np.float64)
        w = wvec[variants.method.astype(np.intp)]
        usable = w > 0
        counts = np.diff(variants.offsets)
        row_of = np.repeat(np.arange(n, dtype=np.int64), counts)
        rng = np.random.default_rng([self.seed, _VARIANT_ORDER])
        keep = np.flatnonzero(usable)
        # Stride scheduling: the k-th variant (random order) of method m in a row gets key
        # (k + U) / weight_m. A row's first slots therefore go to different methods (a method
        # that made 3 variants does not crowd out one that made 1), and weight 2 means two
        # early slots for each one of a weight-1 method.
        u = rng.random(len(w))
        group = row_of * len(METHOD_NAMES) + variants.method.astype(np.int64)
        o = keep[np.argsort(group[keep] + u[keep], kind="stable")]
        gs = group[o]
        starts = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])
        rank = np.arange(len(o)) - np.repeat(starts, np.diff(np.r_[starts, len(o)]))
        key = np.zeros(len(w))
        key[o] = (rank + rng.random(len(o))) / w[o]
        # Sort usable variants by (row, weighted race key): each row's rotation order. The key
        # is squashed into [0, 1) and added to the row so one stable argsort does the job (a
        # lexsort is 15x slower at a million rows; rows stay exact in float64 below 2**40).
        kk = key[keep]
        order = keep[np.argsort(row_of[keep] + kk / (1.0 + kk), kind="stable")]
        m = np.bincount(row_of[keep], minlength=n).astype(np.int64)
        self._order = order                                  # int64 [M_usable]
        self._start = np.concatenate([[0], np.cumsum(m)[:-1]]).astype(np.int64)  # per row
        self._m = m
        self._with = np.flatnonzero(m > 0).astype(np.int64)  # rows that have variants
        self._start_w, self._m_w = self._start[self._with], m[self._with]
        self._method = variants.method
        self._row_of = row_of
        instruction = np.isin(variants.method, [METHOD_NAMES.index(m) for m in INSTRUCTION_METHODS])
        self._pairable = instruction & (np.asarray(variants.field) == FIELD_CODES["prompt"])
        self.n_excluded_by_weight = int(len(w) - len(keep))
        n_with = len(self._with)
        if self.n_augmented > 0 and n_with == 0:
            raise AugtuneError(
                f"augmented_per_original={r} asks for {self.n_augmented} augmented examples per "
                "epoch but no training row has an accepted variant"
                + (f" ({self.n_excluded_by_weight} excluded by zero method_weights)"
                   if self.n_excluded_by_weight else "")
                + ". Build the variant cache first (build_before_training, augment_methods), "
                "or set augmented_per_original 0.")
        # Position of each row with variants on the rotation circle (fixed for the run).
        pos = np.empty(n_with, np.int64)
        pos[np.random.default_rng([self.seed, _ROW_ORDER]).permutation(n_with)] = \
            np.arange(n_with, dtype=np.int64)
        self._pos = pos
        self._q, self._extra = divmod(self.n_augmented, n_with) if n_with else (0, 0)
        self._refusal_perm = (np.random.default_rng([self.seed, _REFUSAL_ORDER]).permutation(n_ref)
                              .astype(np.int64) if self.n_refusal_slots else np.zeros(0, np.int64))

    # -- the plan ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.n_originals + self.n_augmented + self.n_refusal_slots

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (and accelerate) before each epoch."""
        self.epoch = int(epoch)

    def __iter__(self):
        yield from self.plan(self.epoch).tolist()

    def _slots_before(self, epoch: int) -> np.ndarray:
        """c(k): augmented slots each row with variants had in epochs [0, epoch), closed form."""
        n_with = len(self._with)
        hits = np.maximum(0, (epoch * self._extra - self._pos + n_with - 1) // n_with)
        return epoch * self._q + hits

    def _quota(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(slots before this epoch, slots in this epoch) per row with variants."""
        c0 = self._slots_before(epoch)
        return c0, self._slots_before(epoch + 1) - c0             # q or q+1 each

    def _augmented(self, epoch: int, quota=None) -> np.ndarray:
        """Variant indices (into the VariantTable) scheduled for this epoch, grouped by row."""
        if self.n_augmented == 0:
            return np.zeros(0, np.int64)
        c0, per_row = quota or self._quota(epoch)
        if self._q == 0:                      # at most one slot per row: no repeats needed
            sel = np.flatnonzero(per_row)
            slot = c0[sel]
        else:
            sel = np.repeat(np.arange(len(per_row)), per_row)
            first = np.cumsum(per_row) - per_row
            slot = c0[sel] + (np.arange(len(sel), dtype=np.int64) - first[sel])
        assert len(sel) == self.n_augmented, (len(sel), self.n_augmented)
        return self._order[self._start_w[sel] + slot % self._m_w[sel]]

    def _refusals(self, epoch: int) -> np.ndarray:
        if self.n_refusal_slots == 0:
            return np.zeros(0, np.int64)
        at = (epoch * self.n_refusal_slots + np.arange(self.n_refusal_slots, dtype=np.int64))
        return self._refusal_perm[at % self.n_refusals]

    def _originals(self, rng: np.random.Generator, quota, aug: np.ndarray) -> np.ndarray:
        if self.mode == "expand":
            return np.arange(self.n_rows, dtype=np.int64)
        # replace: prefer rows that got no augmented slot this epoch, then the others; with
        # consistency pairs, rows that can pair (an instruction-side variant scheduled) first.
        augmented = np.zeros(self.n_rows, bool)
        if self.n_augmented:
            augmented[self._with[quota[1] > 0]] = True
        tiers = [np.flatnonzero(~augmented), np.flatnonzero(augmented)]
        if self.consistency_pairs:
            can = np.zeros(self.n_rows, bool)
            can[self._row_of[aug[self._pairable[aug]]]] = True
            tiers = [np.flatnonzero(can), np.flatnonzero(~augmented),
                     np.flatnonzero(augmented & ~can)]
        picked, need = [], self.n_originals
        for tier in tiers:  # whole tiers while they fit, then a seeded choice in the next one
            if len(tier) >= need:
                picked.append(rng.choice(tier, need, replace=False, shuffle=False))
                break
            picked.append(tier)
            need -= len(tier)
        out = np.concatenate(picked).astype(np.int64, copy=False)
        return out if self.shuffle else np.sort(out)

    def _pair_up(self, rng: np.random.Generator, orig: np.ndarray, aug: np.ndarray,
                 ref: np.ndarray) -> np.ndarray:
        """The epoch's entries ordered in units of two: (original, its instruction-side
        variant) pairs, then the other entries two by two, units shuffled; an odd entry out
        goes last. Plan indices, like `plan`."""
        n, m = self.n_rows, self.n_variants
        cand = np.flatnonzero(self._pairable[aug])             # positions in `aug`
        if self.shuffle:
            cand = rng.permutation(cand)                       # which variant of a row pairs
        rows, first = np.unique(self._row_of[aug[cand]], return_index=True)
        at = np.full(n, -1, np.int64)
        at[rows] = cand[first]
        mate = at[orig]                                        # originals are distinct rows
        paired = mate >= 0
        used = np.zeros(len(aug), bool)
        used[mate[paired]] = True
        pairs = np.stack([orig[paired], n + aug[mate[paired]]], axis=1)
        singles = np.concatenate([orig[~paired], n + aug[~used], n + m + ref])
        if self.shuffle:
            rng.shuffle(singles)
        odd = singles[len(singles) - len(singles) % 2:]
        units = np.concatenate([pairs, singles[:len(singles) - len(odd)].reshape(-1, 2)])
        if self.shuffle:
            units = units[rng.permutation(len(units))]
        return np.concatenate([units.reshape(-1), odd])

    def count_pairs(self, plan: np.ndarray) -> int:
        """Consistency pairs in a plan: entries (2k, 2k+1) that are an original and an
        instruction-side variant of the same row (what the collator tags)."""
        n = self.n_rows
        a, b = plan[0:len(plan) - 1:2], plan[1::2]
        if self.n_variants == 0 or len(a) == 0:
            return 0
        j = b - n
        ok = (a < n) & (j >= 0) & (j < self.n_variants)
        jj = np.where(ok, j, 0)
        return int((ok & self._pairable[jj] & (self._row_of[jj] == a)).sum())

    def plan(self, epoch: int) -> np.ndarray:
        """The epoch's dataset indices (int64, length `len(self)`), from (seed, epoch) alone.
        Unshuffled order is originals (ascending), then variants, then refusals."""
        rng = np.random.default_rng([self.seed, _EPOCH, int(epoch)])
        quota = self._quota(epoch) if self.n_augmented else None
        aug = self._augmented(epoch, quota)
        orig = self._originals(rng, quota, aug)
        if self.consistency_pairs:
            return self._pair_up(rng, orig, aug, self._refusals(epoch))
        out = np.concatenate([orig, self.n_rows + aug,
                              self.n_rows + self.n_variants + self._refusals(epoch)])
        if self.shuffle:
            rng.shuffle(out)
        return out

    # -- accounting -------------------------------------------------------------------------

    def epoch_counts(self, epoch: int) -> dict:
        """What this epoch schedules (all ranks together), for `augmentation_summary.json`.
        `by_method` covers the augmented variants; refusal examples are counted apart, so
        original + augmented + refusals == len(self)."""
        aug = self._augmented(epoch)
        per = np.bincount(self._method[aug].astype(np.intp), minlength=len(METHOD_NAMES))
        present = set(np.unique(self._method[self._order]).tolist()) if len(self._order) else set()
        by_method = {m: int(per[i]) for i, m in enumerate(METHOD_NAMES)
                     if i in present or per[i]}
        out = {"epoch": int(epoch), "original": int(self.n_originals),
               "augmented": int(len(aug)), "by_method": by_method,
               "refusals": int(self.n_refusal_slots)}
        if self.consistency_pairs:
            out["consistency_pairs"] = self.count_pairs(self.plan(epoch))
        return out

    def report(self, epoch: int | None = None) -> dict:
        """Coverage shortfall for an epoch (default: the current one): rows with no usable
        variant (their share went to other rows), and rows whose quota exceeds their variant
        count so a variant repeats within the epoch."""
        epoch = self.epoch if epoch is None else int(epoch)
        n_with = len(self._with)
        reuse_rows = reuse_slots = 0
        if self.n_augmented:
            per_row = self._quota(epoch)[1]
            over = np.maximum(0, per_row - self._m_w)
            reuse_rows, reuse_slots = int((over > 0).sum()), int(over.sum())
        return {
            "epoch": epoch, "mode": self.mode, "length": len(self),
            "n_rows": self.n_rows, "rows_with_variants": n_with,
            "rows_without_variants": self.n_rows - n_with,
            "usable_variants": int(len(self._order)),
            "variants_excluded_by_weight": self.n_excluded_by_weight,
            "original": self.n_originals, "augmented": self.n_augmented,
            "refusals": self.n_refusal_slots,
            "quota_per_row": [self._q, self._q + (1 if self._extra else 0)],
            "rows_reusing_within_epoch": reuse_rows,
            "slots_reusing_within_epoch": reuse_slots,
            "augmented_fraction": self.n_augmented / len(self),
            "augmented_rounded_down_to_the_cap": self.n_rounded_down,
            **({"consistency_pairs": self.count_pairs(self.plan(epoch))}
               if self.consistency_pairs else {}),
        }

    @classmethod
    def from_config(cls, cfg, n_rows: int, variants: VariantTable | None,
                    refusals: RefusalTable | None, seed: int, shuffle: bool = True):
        """Build from an `AugmentConfig`. `seed` is the run's data order seed (TRL's `data_seed`,
        else `seed`), never `cfg.augment_seed`: that one seeds what variants are made (and is
        part of their cache keys), so fixing it to keep a cache must not pin the data order."""
        return cls(n_rows, variants, refusals,
                   augmented_per_original=cfg.augmented_per_original,
                   max_augmented_fraction=cfg.max_augmented_fraction,
                   augment_mode=cfg.augment_mode, method_weights=cfg.weights,
                   refusal_fraction=cfg.refusal_fraction,
                   seed=seed,
                   shuffle=shuffle,
                   consistency_pairs=cfg.consistency_pairs)
