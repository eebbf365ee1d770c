"""Benchmarks of augtune's hot paths, each a RATIO against a baseline measured in the same run.

    python bench/run.py [--quick] [--only a,b] [--out bench/results.json]

Why ratios: these machines are shared and noisy, so absolute seconds mean little from one run to
the next; a ratio against a baseline timed in the same process, interleaved with it, is stable.
Timing: warm-ups first, then the median of k repeats (k per figure in its `details`), baseline
and subject alternated so drift hits both. `bench/results.json` (stable format) holds one entry
per figure, {"value", "unit", "baseline", "target", "meets_target", "details"}, plus "_machine".
With --only, entries of figures not rerun are kept from the existing file (each entry's
details say when and in which mode it was measured). See bench/README.md for what each means.

Layout: bench/harness.py (timing, sizes, machine record, shared fixtures), one module per figure
under bench/figures/ with its baseline beside it; this file is the registry and the command line.
Child processes (a training run timed from inside, one side of a memory comparison) re-enter this
script with a hidden first argument: `--_sft-child OUT -- ARGV` or `--_child MODULE:FUNC ARGS...`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from augment.atomic import write_text_atomic  # noqa: E402
from bench.harness import ROOT, Sizes, loadavg, machine, perf, print_table, rnd  # noqa: E402
from bench.figures import (build, cache, collator, consistency, padding_free, qc, sampler,  # noqa: E402
                           training, vs_trl)

FIGURES = {
    "collator_overhead": collator.fig_collator_overhead,
    "step_time_ratio": training.fig_step_time_ratio,
    "qc_speedup_vs_seed": qc.fig_qc_speedup_vs_seed,
    "qc_overhead_vs_encode": qc.fig_qc_overhead_vs_encode,
    "qc_judge_cost": qc.fig_qc_judge_cost,
    "build_throughput_vs_limit": build.fig_build_throughput_vs_limit,
    "sampler_plan_vs_permutation": sampler.fig_sampler_plan_vs_permutation,
    "cache_read_vs_parquet": cache.fig_cache_read_vs_parquet,
    "dataloader_wait_fraction": training.fig_dataloader_wait_fraction,
    "peak_memory_vs_trl": vs_trl.fig_peak_memory_vs_trl,
    "step_time_vs_trl": vs_trl.fig_step_time_vs_trl,
    "padding_free_tokens_per_s": padding_free.fig_padding_free_tokens_per_s,
    "consistency_peak_memory_ratio": consistency.fig_consistency_peak_memory_ratio,
}


def _write(out: Path, mach: dict, results: dict) -> dict:
    """The results file, written whole or not at all (`--only` reads it back)."""
    ordered = {"_machine": mach, **{k: results[k] for k in FIGURES if k in results}}
    write_text_atomic(out, json.dumps(ordered, indent=2) + "\n")
    return ordered


def main(argv: list[str]) -> int:
    if argv[:1] == ["--_sft-child"]:
        training.sft_child(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:])
        return 0
    if argv[:1] == ["--_child"]:  # a figure's child process: MODULE:FUNC then its arguments
        mod, func = argv[1].split(":")
        getattr(importlib.import_module(mod), func)(*argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes: < 15 min on 2 cores")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(FIGURES)}")
    ap.add_argument("--out", default=None,
                    help="results file (default bench/results.json; --smoke needs its own)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes for the test suite only")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        ap.error(f"unknown figure(s) {unknown}; choose from {list(FIGURES)}")
    if args.smoke and args.out is None:  # smoke figures mean nothing: never in the real file
        ap.error("--smoke writes figures at sizes that mean nothing: give --out FILE (not "
                 "bench/results.json)")
    S = Sizes(args.quick, args.smoke)
    out = Path(args.out or ROOT / "bench" / "results.json")
    results = {}
    if args.only and out.exists():
        try:
            old = json.loads(out.read_text())
            results = {k: v for k, v in old.items() if not k.startswith("_")}
        except (OSError, ValueError):
            results = {}
    mach = machine(S.quick)
    mach["smoke"] = S.smoke
    t_all = perf()
    for name in names:
        print(f"[bench] {name} ...", flush=True)
        t = perf()
        try:
            e = FIGURES[name](S)
        except Exception as exc:  # one broken figure must not lose the others
            import traceback
            traceback.print_exc()
            e = {"value": None, "unit": None, "baseline": None, "target": None,
                 "meets_target": False, "details": {"error": f"{type(exc).__name__}: {exc}"[:2000]}}
        e["details"].update(seconds=rnd(perf() - t), measured=mach["date"], quick=S.quick,
                            smoke=S.smoke, loadavg_after=loadavg())
        results[name] = e
        print(f"[bench] {name}: {e['value']} ({perf() - t:.1f}s)", flush=True)
        _write(out, mach, results)  # after each figure: a killed run keeps what it measured
    mach["loadavg_end"] = loadavg()
    mach["wall_s"] = rnd(perf() - t_all)
    ordered = _write(out, mach, results)
    print_table(ordered)
    print(f"\nwrote {out} in {mach['wall_s']}s (load average {mach['loadavg_start']} -> "
          f"{mach['loadavg_end']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
