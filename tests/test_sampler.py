"""RatioSampler epoch arithmetic, rotation, determinism; AugmentedDataset decoding."""

from __future__ import annotations

import doctest
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import augment.dataset
import augment.sampler
from augment.config import AugmentConfig
from augment.dataset import AugmentedDataset
from augment.errors import AugtuneError, ConfigError
from augment.sampler import RatioSampler
from augment.types import METHOD_NAMES, Row
from augment.variants import RefusalTable, VariantTable

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("paraphrase", "backtranslate", "templates", "outputs")


def make_table(counts, seed=0):
    """A VariantTable with counts[i] variants on row i, methods cycling through METHODS."""
    per_row = []
    for i, c in enumerate(counts):
        per_row.append([(f"row{i}-v{j}", METHODS[(i + j) % len(METHODS)],
                         "completion" if METHODS[(i + j) % len(METHODS)] == "outputs" else "prompt",
                         0.5 + 0.01 * j) for j in range(c)])
    return VariantTable.from_lists(per_row)


def refusal_table(n):
    return RefusalTable([f"harm {k}" for k in range(n)], [f"no {k}" for k in range(n)],
                        np.arange(100, 100 + n, dtype=np.int64))


def split(plan, n, m):
    """Plan -> (original rows, variant indices, refusal indices)."""
    return plan[plan < n], plan[(plan >= n) & (plan < n + m)] - n, plan[plan >= n + m] - n - m


def rnd(x):
    return math.floor(x + 0.5 + 1e-9)


@pytest.mark.parametrize("n", [1, 7, 10, 101])
@pytest.mark.parametrize("r", [0.0, 1.0, 2.0, 2.333])
@pytest.mark.parametrize("mode", ["expand", "replace"])
def test_exact_epoch_counts(n, r, mode):
    counts = np.random.default_rng(n).integers(0, 4, n)
    counts[0] = 2                                     # at least one row has variants
    vt = make_table(counts)
    s = RatioSampler(n, vt, augmented_per_original=r, augment_mode=mode, seed=3)
    if mode == "expand":
        orig, aug = n, rnd(r * n)
    else:
        aug = rnd(n * r / (1 + r))
        orig = n - aug
    while aug > 0.7 * (orig + aug) + 1e-9:   # rounding never passes the 70% cap
        aug -= 1
        orig += mode == "replace"
    assert aug / max(1, orig + aug) <= 0.7 + 1e-9
    assert s.report()["augmented_rounded_down_to_the_cap"] == (
        (rnd(r * n) if mode == "expand" else rnd(n * r / (1 + r))) - aug)
    assert len(s) == orig + aug
    with_rows = np.flatnonzero(counts > 0)
    for epoch in range(3):
        plan = s.plan(epoch)
        assert plan.dtype == np.int64 and len(plan) == len(s)
        o, v, f = split(plan, n, len(vt))
        assert (len(o), len(v), len(f)) == (orig, aug, 0)
        assert len(np.unique(o)) == len(o)            # an original appears at most once
        rows = np.searchsorted(vt.offsets, v, side="right") - 1
        per_row = np.bincount(rows, minlength=n)
        assert per_row[counts == 0].sum() == 0        # rows without variants get none
        if aug:                                       # spread as evenly as possible
            q = aug // len(with_rows)
            assert set(per_row[with_rows].tolist()) <= {q, q + 1}
        c = s.epoch_counts(epoch)
        assert (c["original"], c["augmented"], c["refusals"]) == (orig, aug, 0)
        assert sum(c["by_method"].values()) == aug
        assert c["by_method"] == {m: int((vt.method[v] == METHOD_NAMES.index(m)).sum())
                                  for m in c["by_method"]}


def test_worked_example_in_docstring():
    vt = make_table([3] * 10)
    s = RatioSampler(10, vt, refusal_table(4), augmented_per_original=2, refusal_fraction=0.1)
    assert (s.n_originals, s.n_augmented, s.n_refusal_slots, len(s)) == (10, 20, 3, 33)
    s = RatioSampler(10, vt, refusal_table(4), augmented_per_original=2, refusal_fraction=0.1,
                     augment_mode="replace")
    assert (s.n_originals, s.n_augmented, s.n_refusal_slots, len(s)) == (3, 6, 1, 10)


def test_rows_without_variants_are_covered_by_others_and_reported():
    counts = [0, 0, 0, 1, 1, 0, 1, 0, 0, 0]            # 3 of 10 rows have one variant each
    s = RatioSampler(10, make_table(counts), augmented_per_original=1.0, seed=1)
    o, v, _ = split(s.plan(0), 10, 3)
    assert len(o) == 10 and len(v) == 10              # exact despite the shortfall
    rep = s.report(0)
    assert rep["rows_without_variants"] == 7 and rep["rows_with_variants"] == 3
    assert rep["quota_per_row"] == [3, 4]
    # 10 slots over 3 rows of one variant: every slot beyond the first per row is a reuse
    assert rep["slots_reusing_within_epoch"] == 10 - 3
    assert rep["rows_reusing_within_epoch"] == 3


def test_no_variants_at_all_is_an_error_unless_ratio_is_zero():
    with pytest.raises(AugtuneError, match="augmented_per_original 0"):
        RatioSampler(5, VariantTable.empty(5), augmented_per_original=1.0)
    s = RatioSampler(5, VariantTable.empty(5), augmented_per_original=0.0)
    assert sorted(s.plan(0).tolist()) == [0, 1, 2, 3, 4]


def test_ratio_above_cap_names_largest_allowed_value():
    with pytest.raises(ConfigError, match="largest allowed value is 2.333"):
        RatioSampler(5, make_table([2] * 5), augmented_per_original=3.0,
                     max_augmented_fraction=0.7)
    with pytest.raises(ConfigError, match="largest allowed value is 1"):
        RatioSampler(5, make_table([2] * 5), augmented_per_original=1.5,
                     max_augmented_fraction=0.5)


def test_rotation_uses_each_variant_once_per_cycle():
    n, m = 50, 3
    vt = make_table([m] * n)
    s = RatioSampler(n, vt, augmented_per_original=1.0, seed=5)
    for cycle in range(2):
        used = np.concatenate([split(s.plan(e), n, len(vt))[1]
                               for e in range(cycle * m, (cycle + 1) * m)])
        assert sorted(used.tolist()) == list(range(len(vt)))   # each variant exactly once


@pytest.mark.parametrize("r", [0.5, 1.0, 2.333])
def test_rotation_is_balanced_at_every_epoch_boundary(r):
    """Uneven quotas and variant counts: after any number of epochs, a row's variants have been
    used equally often up to one (never reused before the others)."""
    counts = np.random.default_rng(0).integers(0, 6, 37)
    vt = make_table(counts)
    s = RatioSampler(37, vt, augmented_per_original=r, seed=9)
    used = np.zeros(len(vt), np.int64)
    for e in range(8):
        used += np.bincount(split(s.plan(e), 37, len(vt))[1], minlength=len(vt))
        for i in np.flatnonzero(counts):
            row = used[vt.offsets[i]:vt.offsets[i + 1]]
            assert row.max() - row.min() <= 1, (e, i, row)


def test_ceil_rows_rotate_so_totals_even_out():
    vt = make_table([2] * 7)
    s = RatioSampler(7, vt, augmented_per_original=3 / 7, max_augmented_fraction=0.5, seed=2)
    totals = np.zeros(7, np.int64)
    for e in range(7):                                # 3 extra slots move around the circle
        rows = np.searchsorted(vt.offsets, split(s.plan(e), 7, len(vt))[1], side="right") - 1
        totals += np.bincount(rows, minlength=7)
    assert totals.tolist() == [3] * 7


def test_same_plan_from_seed_and_epoch_in_a_fresh_sampler():
    vt = make_table(np.random.default_rng(1).integers(0, 5, 200))
    a = RatioSampler(200, vt, refusal_table(7), augmented_per_original=2.0,
                     refusal_fraction=0.05, seed=11)
    plans = [a.plan(e) for e in range(4)]
    b = RatioSampler(200, vt, refusal_table(7), augmented_per_original=2.0,
                     refusal_fraction=0.05, seed=11)
    assert np.array_equal(b.plan(3), plans[3])       # resume at epoch 3 without replaying 0..2
    assert not np.array_equal(plans[0], plans[1])
    assert not np.array_equal(np.sort(plans[0]), np.sort(plans[1]))  # different variants too
    c = RatioSampler(200, vt, refusal_table(7), augmented_per_original=2.0,
                     refusal_fraction=0.05, seed=12)
    assert not np.array_equal(c.plan(0), plans[0])


def test_set_epoch_len_and_iter():
    vt = make_table([2] * 9)
    s = RatioSampler(9, vt, augmented_per_original=1.0, seed=0)
    assert list(s) == s.plan(0).tolist()
    s.set_epoch(4)
    assert list(s) == s.plan(4).tolist() and len(list(s)) == len(s) == 18


def test_shuffle_off_keeps_blocks_in_order():
    vt = make_table([1] * 4)
    s = RatioSampler(4, vt, refusal_table(2), augmented_per_original=1.0,
                     refusal_fraction=0.2, shuffle=False)
    p = s.plan(0).tolist()
    assert p[:4] == [0, 1, 2, 3] and sorted(p[4:8]) == [4, 5, 6, 7] and min(p[8:]) >= 8


def _plan_in_subprocess(hashseed: str) -> str:
    code = ("from tests.test_sampler import make_table, refusal_table\n"
            "from augment.sampler import RatioSampler\n"
            "import numpy as np, hashlib\n"
            "s = RatioSampler(300, make_table(np.arange(300) % 4), refusal_table(5),\n"
            "    augmented_per_original=2.333, refusal_fraction=0.1, seed=7,\n"
            "    method_weights={'paraphrase': 2.0})\n"
            "print(hashlib.sha256(s.plan(2).tobytes()).hexdigest())\n")
    env = dict(os.environ, PYTHONHASHSEED=hashseed, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True, timeout=300)  # importing torch is slow on a loaded machine
    return out.stdout.strip()


def test_plan_identical_in_two_fresh_processes():
    """What two ranks do: build the sampler independently and get the same global stream."""
    import hashlib

    a, b = _plan_in_subprocess("1"), _plan_in_subprocess("2")
    s = RatioSampler(300, make_table(np.arange(300) % 4), refusal_table(5),
                     augmented_per_original=2.333, refusal_fraction=0.1, seed=7,
                     method_weights={"paraphrase": 2.0})
    assert a == b == hashlib.sha256(s.plan(2).tobytes()).hexdigest()


def _two_method_table(n):
    return VariantTable.from_lists([[(f"p{i}", "paraphrase", "prompt", 0.9),
                                     (f"t{i}", "templates", "prompt", 0.9)] for i in range(n)])


def test_method_weights_shift_the_share_of_augmented_slots():
    vt = _two_method_table(4000)

    def share(weights, epoch=0):
        s = RatioSampler(4000, vt, augmented_per_original=1.0, method_weights=weights, seed=4)
        c = s.epoch_counts(epoch)["by_method"]
        return c["paraphrase"] / (c["paraphrase"] + c["templates"])

    assert 0.47 < share({}) < 0.53
    assert 0.80 < share({"paraphrase": 3.0}) < 0.87   # stride keys U/3 vs U: P = 1 - 1/6 = 5/6
    assert 0.13 < share({"templates": 3.0}) < 0.20   # symmetric: 1/6
    s = RatioSampler(4000, vt, augmented_per_original=1.0, method_weights={"templates": 0.0})
    assert s.epoch_counts(0)["by_method"] == {"paraphrase": 4000}
    assert s.report()["variants_excluded_by_weight"] == 4000


def test_refusal_counts_and_rotation():
    n, r_n = 40, 6
    vt = make_table([2] * n)
    s = RatioSampler(n, vt, refusal_table(r_n), augmented_per_original=1.0,
                     refusal_fraction=0.1, seed=2)
    f = rnd(0.1 * (n + n) / 0.9)
    assert s.n_refusal_slots == f == 9 and len(s) == n + n + f
    used = np.zeros(r_n, np.int64)
    for e in range(5):
        _, _, ref = split(s.plan(e), n, len(vt))
        assert len(ref) == f and s.epoch_counts(e)["refusals"] == f
        used += np.bincount(ref, minlength=r_n)
        assert used.max() - used.min() <= 1
    rs = RatioSampler(n, vt, refusal_table(r_n), augmented_per_original=1.0,
                      refusal_fraction=0.1, augment_mode="replace")
    o, v, ref = split(rs.plan(0), n, len(vt))
    assert (len(o), len(v), len(ref), len(rs)) == (18, 18, 4, 40)
    with pytest.raises(AugtuneError, match="refusal table is empty"):
        RatioSampler(n, vt, None, augmented_per_original=1.0, refusal_fraction=0.1)


@pytest.mark.parametrize("n", [7, 10, 64, 101])
@pytest.mark.parametrize("r", [0.5, 1.0, 2.0, 7 / 3])
@pytest.mark.parametrize("f", [0.05, 0.2, 0.3])
def test_replace_refusals_keep_the_ratio(n, r, f):
    """Refusals get their share first and the rest is split 1 : r, as in expand mode; the
    refusal slots used to come from the originals alone (f = 0.2, 1:2 trained 8 : 43, 1:5.4).
    The 70% cap still bounds the augmented share of all slots."""
    vt = make_table([3] * n)
    s = RatioSampler(n, vt, refusal_table(5), augmented_per_original=r, augment_mode="replace",
                     refusal_fraction=f, seed=4)
    refusals = rnd(f * n)
    aug = rnd((n - refusals) * r / (1 + r))
    while aug > 0.7 * n + 1e-9:
        aug -= 1
    assert (s.n_originals, s.n_augmented, s.n_refusal_slots, len(s)) == (
        n - refusals - aug, aug, refusals, n)
    if aug == rnd((n - refusals) * r / (1 + r)):   # not cut by the cap: ratio within rounding
        assert abs(s.n_augmented - r * s.n_originals) <= (1 + r) / 2 + 1e-9
    o, v, ref = split(s.plan(0), n, len(vt))
    assert (len(o), len(v), len(ref)) == (s.n_originals, aug, refusals)
    assert len(np.unique(o)) == len(o)
    assert s.report()["augmented_fraction"] == aug / n <= 0.7 + 1e-9


def test_replace_with_refusals_trains_the_asked_ratio():
    """The reviewer's case (repl.py): 64 rows, 1:2, refusal_fraction 0.2."""
    c = RatioSampler(64, make_table([3] * 64), refusal_table(10), augmented_per_original=2.0,
                     augment_mode="replace", refusal_fraction=0.2).epoch_counts(0)
    assert (c["original"], c["augmented"], c["refusals"]) == (17, 34, 13)


def test_replace_prefers_rows_not_augmented_this_epoch():
    vt = make_table([1] * 20)
    s = RatioSampler(20, vt, augmented_per_original=1.0, augment_mode="replace", seed=8)
    for e in range(3):
        o, v, _ = split(s.plan(e), 20, len(vt))
        aug_rows = np.searchsorted(vt.offsets, v, side="right") - 1
        assert len(o) == len(v) == 10
        assert sorted(o.tolist() + aug_rows.tolist()) == list(range(20))   # each row once


def test_from_config_uses_augment_config_fields():
    cfg = AugmentConfig(augmented_per_original=1.0, augment_mode="replace",
                        method_weights=["templates=0"], augment_seed=5)
    s = RatioSampler.from_config(cfg, 6, _two_method_table(6), None, seed=42)
    # the plans follow the run's data order seed; augment_seed only seeds what variants exist
    assert s.seed == 42 and s.mode == "replace" and len(s) == 6
    assert s.epoch_counts(0)["by_method"] == {"paraphrase": 3}


def test_bad_arguments():
    with pytest.raises(AugtuneError, match="covers 3 rows"):
        RatioSampler(4, make_table([1, 1, 1]), augmented_per_original=1.0)
    with pytest.raises(ConfigError, match="augment_mode"):
        RatioSampler(3, make_table([1, 1, 1]), augmented_per_original=1.0, augment_mode="mix")
    with pytest.raises(ConfigError, match="unknown method"):
        RatioSampler(3, make_table([1, 1, 1]), method_weights={"paraphrases": 1.0})
    with pytest.raises(AugtuneError, match="no training rows"):
        RatioSampler(0, None)


def test_docstrings_run():
    for mod, examples in ((augment.sampler, 5), (augment.dataset, 6)):
        res = doctest.testmod(mod)
        assert res.attempted >= examples and res.failed == 0, mod.__name__


# -- AugmentedDataset ---------------------------------------------------------------------

def test_dataset_decodes_every_index_of_a_plan():
    rows = [Row(f"id{i}", f"prompt {i}", f"answer {i}") for i in range(5)]
    vt = make_table([2, 0, 1, 3, 1])
    ds = AugmentedDataset(rows, vt, refusal_table(2))
    assert len(ds) == 5 + 7 + 2
    s = RatioSampler(5, vt, refusal_table(2), augmented_per_original=2.0,
                     refusal_fraction=0.1, seed=0)
    for i in s.plan(0):
        ex = ds[i]
        assert ex["index"] == i
        if i < 5:
            assert ex == {"prompt": f"prompt {i}", "completion": f"answer {i}",
                          "source": "original", "similarity": 1.0, "row_id": f"id{i}", "index": i}
        elif i < 12:
            j = i - 5
            row = int(np.searchsorted(vt.offsets, j, side="right") - 1)
            assert ex["row_id"] == f"id{row}"
            assert ex["source"] == METHOD_NAMES[vt.method[j]]
            assert ex["similarity"] == pytest.approx(float(vt.similarity[j]))
            if ex["source"] == "outputs":             # completion-side variant
                assert (ex["prompt"], ex["completion"]) == (f"prompt {row}", vt.texts[j])
            else:
                assert (ex["prompt"], ex["completion"]) == (vt.texts[j], f"answer {row}")
        else:
            k = i - 12
            assert (ex["prompt"], ex["completion"], ex["source"]) == (f"harm {k}", f"no {k}",
                                                                       "refusals")
            assert math.isnan(ex["similarity"]) and ex["row_id"] == f"refusal:{100 + k}"
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_dataset_completion_field_variant_and_pickle():
    import pickle

    rows = [Row("a", "Explain tides", "Tides are caused by the moon's gravity and more.")]
    vt = VariantTable.from_lists([[("Tides: moon gravity.", "outputs", "completion", 0.8),
                                   ("Why do tides happen?", "paraphrase", "prompt", 0.9)]])
    ds = pickle.loads(pickle.dumps(AugmentedDataset(rows, vt)))
    assert ds[1]["prompt"] == "Explain tides" and ds[1]["completion"] == "Tides: moon gravity."
    assert ds[2]["prompt"] == "Why do tides happen?"
    assert ds[2]["completion"] == rows[0].completion
    with pytest.raises(AugtuneError, match="covers 1 rows"):
        AugmentedDataset(rows + rows, vt)


def test_a_method_with_more_variants_does_not_crowd_out_the_others():
    """3 templates and 1 paraphrase per row, one slot per row: each method's first variant
    competes on equal terms, so paraphrases take about half the slots (not 1/4)."""
    from augment.variants import VariantTable
    rows = [[(f"t{i}a", "templates", "prompt", 0.9), (f"t{i}b", "templates", "prompt", 0.9),
             (f"t{i}c", "templates", "prompt", 0.9), (f"p{i}", "paraphrase", "prompt", 0.9)]
            for i in range(4000)]
    s = RatioSampler(4000, VariantTable.from_lists(rows), augmented_per_original=1.0, seed=5)
    c = s.epoch_counts(0)["by_method"]
    assert 0.46 < c["paraphrase"] / (c["paraphrase"] + c["templates"]) < 0.54


def test_on_the_fly_templates_merge_into_the_table_and_render_lazily():
    from augment.dataset import AugmentedDataset
    from augment.methods.templates import apply_template, choose
    from augment.types import Row
    from augment.variants import with_on_the_fly_templates
    rows = [Row("a", "Reset my password for the Nimbus app", "ok"),
            Row("b", "How do I cancel order 12?", "ok"), Row("c", "x", "ok")]
    cached = VariantTable.from_lists([[("Please reset my Nimbus password", "paraphrase", "prompt", 0.9)], [], []])
    t = with_on_the_fly_templates(cached, rows, 2, seed=3)
    assert t.texts[0] == "Please reset my Nimbus password" and t.template[0] == -1
    ds = AugmentedDataset(rows, t)
    for i, row in enumerate(rows):
        expect = [text for _, text in choose(row.prompt, 2, 3)]
        got = [ds[len(rows) + j]["prompt"] for j in range(t.offsets[i], t.offsets[i + 1])
               if t.template[j] >= 0]
        assert got == expect
        assert all(ds[len(rows) + j]["row_id"] == row.id for j in range(t.offsets[i], t.offsets[i + 1]))
    j = int(np.flatnonzero(t.template >= 0)[0])
    assert ds[len(rows) + j]["prompt"] == apply_template(rows[0].prompt, int(t.template[j]))
    s = RatioSampler(3, t, augmented_per_original=1.0, seed=0)
    assert s.epoch_counts(0)["augmented"] == 3


def test_the_trainer_sets_the_plans_epoch_itself_before_each_epoch(monkeypatch):
    """After a resume with several processes the Trainer iterates SkipBatchSampler(
    BatchSamplerShard(BatchSampler(ours))), which no set_epoch call reaches: the trainer sets
    our sampler's epoch itself before the epoch runs, or a resume in epoch 1 replays epoch 0."""
    from trl import SFTTrainer

    from augment.sampler import RatioSampler
    from augment.trainer import AugmentedSFTTrainer
    seen = []
    monkeypatch.setattr(SFTTrainer, "_run_epoch",
                        lambda self, **kw: seen.append((kw["epoch"], self.ratio_sampler.epoch)))
    trainer = AugmentedSFTTrainer.__new__(AugmentedSFTTrainer)  # no model: the hook alone
    trainer.ratio_sampler = RatioSampler(4, augmented_per_original=0)
    for epoch in (1, 2):
        trainer._run_epoch(model=None, epoch=epoch, train_dataloader=None)
    assert seen == [(1, 1), (2, 2)]
