"""Look inside a variant cache: counts, failure reasons, examples, and an optional report.

    python -m augment.inspect CACHE [--report DIR] [--qc MODE] [--examples N]

Reads only (opens the cache read-only), so it is safe while a build is running.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from .cache import VariantCache, _verdict_col
from .config import QC_MODES
from .errors import ConfigError


def _short(text: str, width: int = 100) -> str:
    return textwrap.shorten(" ".join(str(text).split()), width=width, placeholder=" ...")


def counts_table(stats: dict) -> str:
    head = ["method", "generated", "accepted", "rejected", "unjudged", "failed req.", "accept %"]
    lines = [head]
    for m, s in stats.items():
        judged = s["accepted"] + s["rejected"]
        rate = f"{100 * s['accepted'] / judged:.1f}" if judged else "-"
        lines.append([m, s["generated"], s["accepted"], s["rejected"], s.get("unjudged", 0),
                      s["failed"], rate])
    widths = [max(len(str(r[i])) for r in lines) for i in range(len(head))]
    fmt = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(lines[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in lines[1:]])


def examples(cache: VariantCache, qc_mode: str, n: int) -> list[str]:
    col = _verdict_col(qc_mode)
    out = []
    con = cache._conn()
    methods = [m for (m,) in con.execute("SELECT DISTINCT method FROM variants ORDER BY method")]
    for m in methods:
        for verdict, label in ((1, "accepted"), (0, "rejected")):
            rows = con.execute(
                f"SELECT source, coalesce(prompt, ''), text, similarity, reasons_json FROM variants "
                f"WHERE method=? AND {col}=? ORDER BY id LIMIT ?", (m, verdict, n)).fetchall()
            if not rows:
                continue
            out.append(f"\n== {m}: {label} (qc={qc_mode}) ==")
            for src, prompt, text, sim, reasons in rows:
                sim_s = "n/a" if sim is None else f"{sim:.3f}"
                out.append(f"  source : {_short(src)}")
                if prompt:
                    out.append(f"  prompt : {_short(prompt)}")
                out.append(f"  variant: {_short(text)}")
                why = json.loads(reasons or "{}").get(qc_mode, [])
                out.append(f"  sim {sim_s}" + (f"; reasons: {'; '.join(why)}" if why else ""))
    return out


def _rescore(path, run_cfg, make_checker) -> None:
    """Judge the cache's stored candidates again under each QC mode whose verdicts other rules
    or settings made; a mode these already judged keeps its verdicts (a rerun resumes)."""
    writer = VariantCache(path)
    try:
        for mode in QC_MODES:
            # The build's own checker (every QC field of the run's config): judged identically.
            checker = make_checker(run_cfg, mode=mode)
            fingerprint = checker.fingerprint()
            if (writer.stale_verdicts(mode, fingerprint)
                    or writer.qc_fingerprint(mode) != fingerprint):
                n = writer.rescore(checker, only_missing=False, progress=True)
                print(f"rescored {n} candidates under qc={mode}")
            else:  # equal fingerprints give equal verdicts: a rerun after a kill skips this mode
                n = writer.rescore(checker, only_missing=True, progress=True)
                print(f"qc={mode}: the stored verdicts were made by these QC rules and settings; "
                      f"kept, {n} candidates without one judged")
    finally:
        writer.close()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m augment.inspect", description=__doc__.split("\n")[0])
    ap.add_argument("cache", help="path of the variant cache (augment_cache)")
    ap.add_argument("--qc", default="project", choices=QC_MODES,
                    help="QC mode whose verdicts to show")
    ap.add_argument("--examples", type=int, default=3, help="examples per method and verdict")
    ap.add_argument("--top", type=int, default=10, help="failure reasons to list")
    ap.add_argument("--report", metavar="DIR", help="also write report.json and PNG plots here")
    ap.add_argument("--rescore", action="store_true",
                    help="first judge again, under each QC mode, the stored candidates whose "
                    "verdicts other QC rules or settings made (after an upgrade or a changed "
                    "setting; a mode these rules already judged keeps its verdicts and only "
                    "gets the missing ones); resumable and local (no API call, except with "
                    "qc_judge: llm for the verdicts the cache does not hold yet)")
    ap.add_argument("--config", default=None,
                    help="with --rescore: the run's YAML config, so its QC settings (qc_model, "
                    "thresholds, brief_max_words, language, qc_judge) judge exactly as its build")
    ap.add_argument("--qc_model", default=None,
                    help="with --rescore: the sentence-transformers model to judge with; give the "
                    "run's `qc_model` if it set one (default: all-MiniLM-L6-v2)")
    args = ap.parse_args(argv)
    if args.examples < 0:
        raise ConfigError("--examples must be >= 0.")
    if args.top < 0:
        raise ConfigError("--top must be >= 0.")
    if (args.qc_model or args.config) and not args.rescore:
        raise ConfigError("--qc_model and --config: each only applies with --rescore; add "
                          "--rescore or drop them.")
    if args.rescore:
        from .build import _quiet_progress_bars, make_checker
        if not sys.stderr.isatty():  # a log: no model-loading bars, the rescore's own lines
            _quiet_progress_bars()
        run_cfg = _run_config(args)
        if not Path(args.cache).is_file():  # a typo must not become an empty cache (which
            # would also stop augment_cache_init from seeding it later)
            raise ConfigError(f"{args.cache}: no such cache; --rescore judges the candidates of "
                              "an existing augment_cache again, it does not make one.")
        from .cache import build_lock
        with build_lock(args.cache):  # a build writing verdicts meanwhile would mix two QCs
            _rescore(args.cache, run_cfg, make_checker)
    cache = VariantCache(args.cache, readonly=True)
    stats = cache.stats(args.qc)
    print(f"cache {cache.path}  (verdicts under qc={args.qc})\n")
    print(counts_table(stats) if stats else "(empty cache)")
    totals = cache.totals()
    cost = f"${totals['cost_usd']:.4f}" + ("" if totals["cost_known"] else " (some prices unknown)")
    print(f"\nrequests {totals['requests']} ({totals['attempts']} attempts), tokens in/out "
          f"{totals['input_tokens']}/{totals['output_tokens']}, spent {cost} in all "
          f"(${totals['cost_failed_attempts']:.4f} of it on failed attempts), retries "
          f"{totals['retries']}")
    pending = cache.pending_steps()
    if pending["calls"]:
        print(f"plus {pending['calls']} paid calls of {pending['requests']} unfinished "
              f"multi-call requests, kept for the next build that makes them: "
              f"{pending['uncounted_calls']} from killed builds (${pending['uncounted_usd']:.4f}, "
              "not in the totals above), the rest counted with failed attempts")
    reasons = cache.failure_reasons(args.top)
    if reasons:
        print("\nfailure reasons (top):")
        for m, err, n in reasons:
            print(f"  {n:>6}  {m:<14} {_short(err, 90)}")
    if args.examples:
        print("\n".join(examples(cache, args.qc, args.examples)))
    if args.report:
        from .report import write_report
        write_report(cache, args.report, args.qc)
        print(f"\nreport written to {args.report}/ (report.json, similarity.png, acceptance.png, "
              "length_ratio.png)")



def _run_config(args):
    """The AugmentConfig whose QC settings a rescore uses: the run's YAML (`--config`), or the
    defaults; `--qc_model` overrides either. The cache path is the one being inspected."""
    from dataclasses import replace

    from .config import AugmentConfig
    if args.config:
        from trl import ModelConfig, SFTConfig

        from .cli import parse_config
        from .config import DataConfig
        _, cfg, _, _ = parse_config(["--config", args.config, "--bf16", "false", "--fp16", "false"],
                                    (DataConfig, AugmentConfig, SFTConfig, ModelConfig))
    else:
        cfg = AugmentConfig()
    cfg = replace(cfg, augment_cache=args.cache)
    return replace(cfg, qc_model=args.qc_model) if args.qc_model else cfg


if __name__ == "__main__":
    from .cli import run_cli
    run_cli(main)
