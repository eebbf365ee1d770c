"""`sampler_plan_vs_permutation`: RatioSampler.plan vs a numpy permutation of the same length."""

from __future__ import annotations

import tracemalloc

from bench.harness import entry, interleaved, med, perf, rnd


def fig_sampler_plan_vs_permutation(S) -> dict:
    import numpy as np

    from augment.sampler import RatioSampler
    from augment.variants import VariantTable
    n_rows = S.pick(1_000_000, 1_000_000, 20_000)
    k = 3
    m = n_rows * k
    rng = np.random.default_rng(0)
    table = VariantTable(np.arange(0, m + 1, k, dtype=np.int64),
                         rng.integers(0, 3, m, dtype=np.int8),  # paraphrase/backtranslate/templates
                         np.zeros(m, np.int8), rng.random(m, dtype=np.float32),
                         np.arange(m, dtype=np.int64), [""] * m)
    repeat = S.pick(5, 7, 2)
    details = {"rows": n_rows, "variants_per_row": k}
    for mode in ("expand", "replace"):
        r = 2.0
        t = perf()
        s = RatioSampler(n_rows, table, augmented_per_original=r, augment_mode=mode, seed=1)
        init_s = perf() - t
        length = len(s)
        ep = iter(range(10_000))
        perm_rng = np.random.default_rng(7)
        t = interleaved({"plan": lambda: s.plan(next(ep)),
                         "perm": lambda: perm_rng.permutation(length)}, repeat=repeat, warmup=1)
        tracemalloc.start()
        s.plan(1234)
        plan_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        tracemalloc.start()
        perm_rng.permutation(length)
        perm_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        details[mode] = {"augmented_per_original": r, "plan_length": length,
                         "plan_ms": rnd(med(t["plan"]) * 1e3),
                         "permutation_ms": rnd(med(t["perm"]) * 1e3),
                         "ratio": rnd(med(t["plan"]) / med(t["perm"])), "init_s": rnd(init_s),
                         "plan_peak_mib": rnd(plan_peak / 2**20),
                         "permutation_peak_mib": rnd(perm_peak / 2**20)}
    value = details["expand"]["ratio"]
    details["timing"] = f"median of {repeat}, 1 warm-up, interleaved; each plan a new epoch"
    details["memory"] = "tracemalloc peak during one call (numpy allocations are traced)"
    details["value_is"] = "expand mode, augmented_per_original 2 (the default)"
    return entry(value, "x (time, plan(epoch) / numpy permutation of the plan's length)",
                 "numpy.random.Generator.permutation(len(plan))", "<= 5", value <= 5, **details)
