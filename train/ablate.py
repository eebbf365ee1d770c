"""Run an ablation sweep: every config in a folder, several seeds, through the normal launch path.

    python -m train.ablate configs/ablation/ratio-replace [--seeds 3] [--num_processes N]
                          [--runs_dir runs/ablation] [--only r1.00,r2.00] [--dry_run]
                          [--baseline NAME] [--bootstrap 10000] [--report_only]

Each (config, seed) trains into `<runs_dir>/<sweep>/<config>/seed<k>/` via `launch.sh`, so a
sweep on a GPU box uses `accelerate launch` exactly like a single run. A run that finished
(its `run_result.json` exists) is reused, so re-running the command only runs what is missing.
A config whose header says `expect-error: <message>` must be rejected by validation; the sweep
checks that it is and records it as `rejected`.

A config whose header says `ablate: seeds=1` runs with one seed whatever --seeds says (for
a deterministic arm, such as the untrained base model: `learning_rate: 0`). The baseline
setting is the one --baseline names, else the config whose header says `ablate: baseline`,
else the first config without augmentation and without NEFTune. A config whose header says `ablate: reference`
(or one named by --compare) is a second point of comparison: every setting's robustness
differences from it, with their intervals, go to `results_vs_<name>.md`.

Everything the sweep is given (the configs and their bases, --only, --baseline, --compare,
--seeds) is checked before the first run (each run still validates its own settings). The
sweep exits 2 on such input, 1 when a run failed or a config that must be rejected was not
(the table still shows the rest), 130 when interrupted: the running training's process group
gets SIGTERM, then SIGKILL after 30 s (or at a second Ctrl-C); finished runs are kept.

Writes `<runs_dir>/<sweep>/results.csv` (one row per run, then one `seed=mean` row per setting)
and plots: eval losses against the ratio (mean and spread over seeds) and, for one run, the
training loss by source. When the runs wrote `robustness.json` (augment/robustness.py), each
robustness figure also gets, per setting, its mean and sd over seeds and a 95% paired bootstrap
interval over eval items for the setting's difference from the baseline (per item, the
setting's score averaged over its seeds minus the baseline's averaged over its seeds), in
results.csv, `results.md` (a markdown table) and `robustness_vs_setting.png` (error bars).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from augment.atomic import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
ROBUST = ("original", "avgp", "worst", "spread", "pdr", "consistency")
LOSSES = ("eval_loss", "eval_paraphrase_loss", "gap")
COLUMNS = ["config", "mode", "ratio", "methods", "qc", "neftune", "seed", "status", *LOSSES,
           *[f"{k}_sd" for k in LOSSES], "steps", "tokens", "wall_s", "metric", *ROBUST,
           "robust_items", "robust_paraphrases", "robust_gen_s",
           *[f"{f}_{k}" for f in ROBUST for k in ("sd", "diff", "lo", "hi")]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", help="folder of run configs, e.g. configs/ablation/ratio-replace")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per config (42, 43, ...)")
    ap.add_argument("--num_processes", type=int, default=1)
    ap.add_argument("--runs_dir", default="runs/ablation")
    ap.add_argument("--only", default="", help="comma-separated config names to run")
    ap.add_argument("--dry_run", action="store_true", help="list the runs and exit")
    ap.add_argument("--report_only", action="store_true",
                    help="write results.csv/.md and the plots from the runs that finished; run nothing")
    ap.add_argument("--baseline", default="", help="config the others are compared with "
                    "(default: header `ablate: baseline`, else the first without augmentation "
                    "and NEFTune)")
    ap.add_argument("--compare", default="", help="comma-separated configs to compare every setting "
                    "with too (besides the baseline; also header `ablate: reference`): "
                    "results_vs_<name>.md")
    ap.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples per interval")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                    help="--key value overrides passed to every run (put last)")
    args = ap.parse_args(argv)
    try:
        return _sweep(args)
    except SweepError as err:
        print(f"augtune: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see _on_sigterm): the run was stopped
        print("\naugtune: sweep interrupted; finished runs are kept, and rerunning the same "
              "command runs only what is missing.", file=sys.stderr)
        return 130


class SweepError(Exception):
    """Bad sweep input, found before anything runs: one line."""


def _check_sweep(args, sweep: Path, all_configs: list[Path]) -> list[Path]:
    """Everything that can be wrong with the sweep's input, before the first run trains (a
    typo in --baseline used to surface after every run had trained)."""
    if args.seeds < 1:
        raise SweepError(f"--seeds {args.seeds}: give 1 or more.")
    if not sweep.is_dir():
        raise SweepError(f"{sweep}: no such folder.")
    if not all_configs:
        raise SweepError(f"no *.yaml configs in {sweep}")
    names = [c.stem for c in all_configs]
    configs = all_configs
    if args.only:
        wanted = [n for n in args.only.split(",") if n]
        missing = [n for n in wanted if n not in names]
        if missing:
            raise SweepError(f"--only {', '.join(missing)}: not a config of {sweep} "
                             f"({', '.join(names)}).")
        configs = [c for c in all_configs if c.stem in wanted]
    for flag, value in (("--baseline", args.baseline), ("--compare", args.compare)):
        for n in [v for v in value.split(",") if v]:
            if n not in names:
                raise SweepError(f"{flag} {n!r} is not a config of this sweep ({', '.join(names)}).")
    for c in all_configs:
        describe(c)  # an unreadable config or a missing base: its file, one line
    return configs


def _on_sigterm(*_):
    raise KeyboardInterrupt  # stop the running child's process group too (see _launch)


def _sweep(args) -> int:
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():  # a host program's thread
        return _sweep_body(args)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _sweep_body(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sweep_body(args) -> int:
    sweep = Path(args.sweep)
    all_configs = sorted(p for p in sweep.glob("*.yaml"))
    configs = _check_sweep(args, sweep, all_configs)
    out_root = Path(args.runs_dir) / sweep.name
    rows = []
    plan = _plan(configs, args.seeds)
    for i, (cfg, seed) in enumerate(plan, 1):
        run_dir = out_root / cfg.stem / f"seed{seed}"
        tag = f"[{i}/{len(plan)}] {cfg.stem} seed {seed}"
        if args.dry_run:
            expect = " (must be rejected)" if _expect_error(cfg) else ""
            print(f"{tag}: {'done' if (run_dir / 'run_result.json').exists() else 'to run'}"
                  f"{expect} -> {run_dir}")
            continue
        if args.report_only and not (run_dir / "run_result.json").exists():
            print(f"{tag}: not finished, left out of the report")
            continue
        rows.append(run_one(cfg, seed, run_dir, args, tag))
    if args.dry_run:
        return 0
    # the report is the sweep's: the finished runs of configs --only left out belong in it
    for cfg, seed in _plan([c for c in all_configs if c not in configs], args.seeds):
        done = out_root / cfg.stem / f"seed{seed}" / "run_result.json"
        if done.exists():
            rows.append(json.loads(done.read_text()))
    configs = all_configs
    counts = {k: sum(1 for r in rows if r.get("status") == k) for k in ("ok", "rejected")}
    bad = [r for r in rows if r.get("status") not in ("ok", "rejected")]
    if not counts["ok"]:
        print(f"augtune: no run finished, nothing to report: {counts['rejected']} rejected as "
              f"expected, {len(bad)} failed.", file=sys.stderr)
        return 1 if bad else 0
    out_root.mkdir(parents=True, exist_ok=True)
    baseline = pick_baseline(configs, rows, args.baseline)
    summary = summarize(rows, out_root, baseline, args.bootstrap)
    # the baseline first, then the compared settings, then one-seed reference arms
    rank = {c.stem: (c.stem != baseline, seeds_cap(c) < 2, i) for i, c in enumerate(configs)}
    summary.sort(key=lambda r: rank.get(r["config"], (True, True, 0)))
    write_csv(out_root / "results.csv", rows + summary)
    pngs = plot_sweep(rows, out_root)
    if any(r.get("avgp") is not None for r in summary):
        write_text_atomic(out_root / "results.md", markdown_table(summary))
        pngs.append(plot_robustness(rows, summary, out_root))
        print(markdown_table(summary))
        refs = [c.stem for c in configs if _header(c, "reference") is not None]
        refs += [n for n in args.compare.split(",") if n and n not in refs]
        for ref in refs:
            if ref not in {r["config"] for r in rows}:
                print(f"augtune: --compare {ref}: no finished run to compare with", file=sys.stderr)
                continue
            other = summarize(rows, out_root, ref, args.bootstrap)
            other.sort(key=lambda r: (r["config"] != ref, *rank.get(r["config"], (True, True, 0))))
            path = out_root / f"results_vs_{ref}.md"
            write_text_atomic(path, markdown_table(other, ref))
            print(f"augtune: differences from {ref}: {path}")
    written = [out_root / "results.csv", *([out_root / "results.md"]
                                            if (out_root / "results.md").exists() else []), *pngs]
    print(f"augtune: wrote {', '.join(str(p) for p in written)}")
    print(f"augtune: {counts['ok']} runs ok, {counts['rejected']} rejected as expected, "
          f"{len(bad)} failed" + (": " + ", ".join(f"{r['config']} seed {r['seed']} ({r['status']})"
                                                  for r in bad) if bad else ""))
    return 1 if bad else 0  # a table with failed runs in it is not a finished sweep


def _plan(configs: list[Path], seeds: int) -> list[tuple[Path, int]]:
    """(config, seed) runs, seed-major: every setting's first seed before any second seed, so a
    sweep stopped early still compares every setting."""
    return [(c, 42 + s) for s in range(seeds) for c in configs if s < seeds_cap(c)]


def _header(cfg: Path, key: str) -> str | None:
    m = re.search(rf"^#.*\bablate:\s*{key}\b(?:=(\S+))?", cfg.read_text(), re.M)
    return None if m is None else (m.group(1) or "")


def seeds_cap(cfg: Path) -> int:
    v = _header(cfg, "seeds")
    return int(v) if v else 10**6


def pick_baseline(configs: list[Path], rows: list[dict], name: str) -> str | None:
    """The setting every other one is compared with (see the module docstring)."""
    names = [c.stem for c in configs]
    if name:
        if name not in names:
            raise SystemExit(f"augtune: error: --baseline {name!r} is not a config of this sweep "
                             f"({', '.join(names)}).")
        return name
    marked = [c.stem for c in configs if _header(c, "baseline") is not None]
    if marked:
        return marked[0]
    plain = [r["config"] for r in rows if r.get("status") == "ok" and not r.get("ratio")
             and not r.get("neftune")]
    return plain[0] if plain else None


def _items(run_dir: Path) -> dict[str, dict] | None:
    path = run_dir / "robustness.json"
    if not path.exists():
        return None
    from augment.robustness import item_table
    return {d["id"]: d for d in item_table(json.loads(path.read_text()))}


def summarize(rows: list[dict], out_root: Path, baseline: str | None, n_boot: int) -> list[dict]:
    """One `seed=mean` row per setting: mean and sd over seeds of every figure, and for the
    robustness figures the paired bootstrap interval of the difference from the baseline."""
    sys.path.insert(0, str(ROOT))
    from augment.robustness import figure_statistic, figures_from_items, paired_bootstrap, per_item_array
    ok = [r for r in rows if r.get("status") == "ok"]
    by_cfg: dict[str, list[dict]] = {}
    for r in ok:
        by_cfg.setdefault(r["config"], []).append(r)
    # per setting, per item: each figure averaged over the setting's seeds
    items: dict[str, dict[str, dict]] = {}
    for cfg, runs in by_cfg.items():
        tables = [t for r in runs if (t := _items(out_root / cfg / f"seed{r['seed']}")) is not None]
        if tables and len(tables) == len(runs):
            ids = [i for i in tables[0] if all(i in t for t in tables)]
            items[cfg] = {i: {k: sum(t[i][k] for t in tables) / len(tables) for k in ("original", "avgp", "worst", "spread", "consistency")}
                          for i in ids}
    out = []
    for cfg, runs in by_cfg.items():
        row = {k: runs[0].get(k) for k in ("mode", "ratio", "methods", "qc", "neftune", "metric")}
        row.update(config=cfg, seed="mean", status=f"{len(runs)} seed{'s' if len(runs) > 1 else ''}"
                   + (" (baseline)" if cfg == baseline else ""))
        for k in ("eval_loss", "eval_paraphrase_loss", "gap", "steps", "tokens", "wall_s", *ROBUST,
                  "robust_items", "robust_paraphrases", "robust_gen_s"):
            vals = [r[k] for r in runs if isinstance(r.get(k), (int, float))]
            if vals:
                m, sd = _mean_sd(vals)
                row[k] = round(m, 5)
                if (k in ROBUST or k in LOSSES) and len(vals) > 1:  # one seed has no sd
                    row[f"{k}_sd"] = round(sd, 5)
        if cfg != baseline and baseline in items and cfg in items:
            ids = [i for i in items[baseline] if i in items[cfg]]
            for k in ROBUST:
                a = per_item_array([items[baseline][i] for i in ids], k)
                b = per_item_array([items[cfg][i] for i in ids], k)
                ci = paired_bootstrap(a, b, figure_statistic(k), n_resamples=n_boot, seed=0)
                if all(math.isfinite(ci[x]) for x in ("diff", "lo", "hi")):  # PDR needs original > 0
                    row.update({f"{k}_diff": round(ci["diff"], 5), f"{k}_lo": round(ci["lo"], 5),
                                f"{k}_hi": round(ci["hi"], 5)})
        if cfg in items:  # the figures of the seed-averaged items (pdr is a ratio of these means)
            row["robust_items"] = len(items[cfg])
            if row.get("pdr") is None:
                row["pdr"] = figures_from_items([dict(d, all_agree=0) for d in items[cfg].values()])["pdr"]
        out.append(row)
    return out


def _pct(v) -> str:
    return "" if v is None or v == "" else f"{100 * v:.1f}"


def markdown_table(summary: list[dict], reference: str = "the baseline") -> str:
    """Figures in percent (mean ± sd over seeds) and, against the baseline, the difference in
    points with its 95% paired bootstrap interval; `*` when the interval excludes 0."""
    names = {"original": "original prompts", "avgp": "AvgP (paraphrases)", "worst": "worst case",
             "spread": "spread", "pdr": "PDR", "consistency": "consistency"}
    head = "| setting | seeds | " + " | ".join(names[k] for k in ROBUST) + " |"
    lines = [head, "|" + "---|" * (2 + len(ROBUST))]
    for r in summary:
        if r.get("avgp") is None:
            continue
        cells = []
        for k in ROBUST:
            v = r.get(k)
            many = not str(r["status"]).startswith("1 seed")
            txt = "n/a" if v is None else _pct(v) + (f" ± {_pct(r.get(f'{k}_sd') or 0)}" if many else "")
            if r.get(f"{k}_diff") is not None:
                lo, hi = r[f"{k}_lo"], r[f"{k}_hi"]
                star = "*" if lo > 0 or hi < 0 else ""
                txt += f"<br>Δ {100 * r[f'{k}_diff']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]{star}"
            cells.append(txt)
        lines.append(f"| {r['config']} | {r['status']} | " + " | ".join(cells) + " |")
    metric = next((r.get("metric") for r in summary if r.get("metric")), "")
    lines.append(f"\nMetric: {metric}, in percent; mean ± sd over seeds. Δ: difference from "
                 f"{reference} in points, 95% paired bootstrap interval over eval items (per item, "
                 "mean over seeds); * = the interval excludes 0. Lower is better for spread and "
                 "PDR, higher for the rest.\n")
    return "\n".join(lines)


def run_one(cfg: Path, seed: int, run_dir: Path, args, tag: str) -> dict:
    result_file = run_dir / "run_result.json"
    if result_file.exists():
        print(f"{tag}: finished earlier, reusing {result_file}")
        return json.loads(result_file.read_text())
    expect = _expect_error(cfg)
    cmd = [str(ROOT / "launch.sh"), str(cfg.resolve()), "--seed", str(seed), "--output_dir",
           str(run_dir.resolve()), "--num_processes", str(args.num_processes), *args.extra]
    print(f"{tag}: running -> {run_dir}", flush=True)
    t0 = time.time()
    proc = _launch(cmd, capture=bool(expect))
    wall = time.time() - t0
    meta = describe(cfg, args.extra)
    row = {**meta, "config": cfg.stem, "seed": seed, "wall_s": round(wall, 1)}
    if expect:
        msg = (proc.stderr or "").strip().splitlines()[-1:] or [""]
        ok = proc.returncode == 2 and re.search(expect.group(1).strip(), msg[0])
        row["status"] = ("rejected" if ok else "rejected with another message"
                         if proc.returncode == 2 else f"NOT REJECTED (exit {proc.returncode})")
        print(f"{tag}: {row['status']}: {msg[0]}")
        return row  # not cached: cheap, and a config change should be re-checked
    if proc.returncode != 0:
        row["status"] = f"failed (exit {proc.returncode})"
        print(f"{tag}: {row['status']}; see the output above")
        return row
    row.update(read_metrics(run_dir))
    row["status"] = "ok"
    # A run counts as finished by this file alone: write it whole or not at all, so a sweep
    # killed here reruns the run instead of failing on half a file.
    write_text_atomic(result_file, json.dumps(row, indent=2))
    return row


def _expect_error(cfg: Path):
    return re.search(r"expect-error:\s*(.+)", cfg.read_text())


def _launch(cmd: list[str], capture: bool) -> subprocess.CompletedProcess:
    """One run, in a process group of its own: an interrupted sweep (Ctrl-C, or SIGTERM to
    this process alone) stops launch.sh, accelerate and the training under it, instead of
    leaving them training with no parent."""
    import signal
    proc = subprocess.Popen(cmd, cwd=ROOT, text=True, start_new_session=True,
                            stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.PIPE if capture else None)
    try:
        out, err = proc.communicate()
    except BaseException:
        print("\naugtune: stopping the run ...", file=sys.stderr, flush=True)
        _stop_group(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _stop_group(proc) -> None:
    """SIGTERM the run's process group, then SIGKILL whatever of it is left after 30 s: the
    group, not only its leader (accelerate's training can outlive launch.sh). A second Ctrl-C
    while waiting goes straight to SIGKILL instead of leaving the run behind."""
    import signal

    def alive() -> bool:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return False
        return _group_running(proc.pid)

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.time() + 30
        while alive() and time.time() < deadline:
            proc.poll()  # reap the leader, so an empty group reads as gone
            time.sleep(0.1)
    except ProcessLookupError:
        return
    except KeyboardInterrupt:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.poll()


def _group_running(pgid: int) -> bool:
    """Whether a process of group `pgid` is still running, not only a zombie: a child killed
    with its group whose parent died first waits for PID 1 to reap it, and in a container PID 1
    may take its time (a sweep then waited 30 s for a process that had ended). Without /proc
    (not Linux) every process that answers a signal counts."""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        return True
    for stat in proc_dir.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone while we looked
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def describe(cfg: Path, extra: list[str] = ()) -> dict:
    """The swept settings of a config (base merged, then the sweep's --extra), for the csv."""
    import yaml
    data: dict = {}
    chain = [cfg]

    def load(p: Path) -> dict:
        try:
            d = yaml.safe_load(p.read_text())
        except FileNotFoundError:
            raise SweepError(f"{chain[-2] if len(chain) > 1 else p}: its base {p} does not "
                             "exist.") from None
        except (OSError, yaml.YAMLError) as exc:
            raise SweepError(f"{p}: not a readable YAML config ({exc}).") from None
        if d is not None and not isinstance(d, dict):
            raise SweepError(f"{p}: must be a YAML mapping of key: value.")
        return d or {}

    while "base" in (d := load(chain[-1])):
        if len(chain) > 20:
            raise SweepError(f"{cfg}: `base` makes a loop.")
        chain.append(chain[-1].parent / str(d["base"]))
    for p in reversed(chain):
        data.update({k: v for k, v in load(p).items() if k != "base"})
    from augment.cli import _groups  # how the training CLI reads `--key v1 v2`
    tokens = []  # --extra, `--key=value` too: what the runs were given wins over the files
    for tok in extra:
        head, *value = tok.split("=", 1) if tok.startswith("--") else [tok]
        tokens += [head, *[v for v in value if v]]
    for key, values in _groups(tokens):
        parsed = []
        for v in values:
            try:
                parsed.append(yaml.safe_load(v))
            except yaml.YAMLError:
                parsed.append(v)
        data[key] = parsed if len(parsed) > 1 or key == "augment_methods" else \
            (parsed[0] if parsed else True)
    ratio = data.get("augmented_per_original", 2.0)
    try:
        ratio = float(ratio)
    except (TypeError, ValueError):
        pass  # left as written: the run's own validation says what is wrong with it
    methods = data.get("augment_methods") or []
    return {"mode": data.get("augment_mode", "expand"),
            "ratio": ratio,
            "methods": "+".join(map(str, methods)) if isinstance(methods, list) else str(methods),
            "qc": data.get("qc", "project"),
            "neftune": data.get("neftune_noise_alpha") or 0}


def read_metrics(run_dir: Path) -> dict:
    out = _read_losses(run_dir)
    rob = run_dir / "robustness.json"
    if rob.exists():
        rep = json.loads(rob.read_text())
        out["metric"] = rep["metric"]
        out.update({k: (None if rep["figures"][k] is None else round(rep["figures"][k], 5)) for k in ROBUST})
        out.update(robust_items=rep["counts"]["items"], robust_paraphrases=rep["counts"]["paraphrases"],
                   robust_gen_s=rep["generation"]["seconds"])
    return out


def _read_losses(run_dir: Path) -> dict:
    state = json.loads((run_dir / "trainer_state.json").read_text())
    hist = state["log_history"]
    ev = [h for h in hist if "eval_loss" in h]
    para = [h for h in hist if "eval_paraphrase_loss" in h]
    out = {"steps": state.get("global_step"), "tokens": state.get("num_input_tokens_seen") or ""}
    if ev:
        out["eval_loss"] = round(ev[-1]["eval_loss"], 5)
    if para:
        out["eval_paraphrase_loss"] = round(para[-1]["eval_paraphrase_loss"], 5)
    if ev and para:
        out["gap"] = round(out["eval_paraphrase_loss"] - out["eval_loss"], 5)
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _mean_sd(xs):
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, sd


def plot_sweep(rows: list[dict], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok" and "eval_loss" in r]
    written: list[Path] = []
    if ok:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
        ratios = sorted({r["ratio"] for r in ok})
        by_cfg = {}
        for r in ok:
            by_cfg.setdefault(r["config"], []).append(r)
        xs_numeric = len(ratios) == len(by_cfg)  # a ratio sweep: one config per ratio
        for ax, key, title in ((axes[0], "eval_paraphrase_loss", "held-out paraphrased prompts"),
                               (axes[1], "eval_loss", "original eval prompts")):
            names = sorted(by_cfg, key=lambda c: (by_cfg[c][0]["ratio"], c))
            xs, ms, sds = [], [], []
            for i, c in enumerate(names):
                vals = [r[key] for r in by_cfg[c] if key in r]
                if not vals:
                    continue
                m, sd = _mean_sd(vals)
                x = by_cfg[c][0]["ratio"] if xs_numeric else i
                xs.append(x), ms.append(m), sds.append(sd)
                ax.scatter([x] * len(vals), vals, color="grey", s=12, alpha=0.6, zorder=2)
            ax.errorbar(xs, ms, yerr=sds, marker="o", capsize=4, lw=2, zorder=3,
                        label="mean ± sd over seeds")
            if not xs_numeric:
                ax.set_xticks(range(len(names)), names, rotation=20)
            ax.set(title=f"{key}\n({title})", xlabel="augmented per original" if xs_numeric else "config",
                   ylabel="loss")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"Ablation: {out.name} ({len(ok)} runs)")
        fig.tight_layout()
        p = out / "eval_vs_setting.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
        # loss curves by source for the most augmented finished run
        best = max(ok, key=lambda r: (r["ratio"], -r["seed"]))
        state = out / best["config"] / f"seed{best['seed']}" / "trainer_state.json"
        if state.exists():
            sys.path.insert(0, str(ROOT))
            from train.plots import plot_training
            tmp = plot_training(json.loads(state.read_text())["log_history"], out)
            target = out / f"loss_by_source_{best['config']}.png"
            os.replace(tmp[0], target)
            written.append(target)
    return written


def plot_robustness(rows: list[dict], summary: list[dict], out: Path) -> Path:
    """Top: each figure per setting (mean ± sd over seeds, seeds as dots). Bottom: difference
    from the baseline with its 95% paired bootstrap interval as the error bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = ("original", "avgp", "worst", "pdr")
    titles = {"original": "original prompts", "avgp": "AvgP (held-out paraphrases)",
              "worst": "worst case over wordings", "pdr": "PDR (1 - AvgP / original)"}
    summ = [r for r in summary if r.get("avgp") is not None]
    names = [r["config"] for r in summ]
    fig, axes = plt.subplots(2, len(shown), figsize=(4.2 * len(shown), 7.5))
    for j, k in enumerate(shown):
        ax = axes[0, j]
        for i, r in enumerate(summ):
            vals = [100 * x[k] for x in rows if x.get("config") == r["config"] and x.get("status") == "ok"
                    and x.get(k) is not None]
            ax.scatter([i] * len(vals), vals, color="grey", s=12, alpha=0.6, zorder=2)
            if r.get(k) is not None:
                ax.errorbar([i], [100 * r[k]], yerr=[100 * (r.get(f"{k}_sd") or 0)], marker="o",
                            capsize=4, lw=2, color="C0", zorder=3)
        ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)
        ax.set(title=titles[k], ylabel="percent" if k != "pdr" else "percent drop")
        ax.grid(alpha=0.3)
        ax = axes[1, j]
        xs = [i for i, r in enumerate(summ) if r.get(f"{k}_diff") is not None]
        if xs:
            d = [100 * summ[i][f"{k}_diff"] for i in xs]
            lo = [100 * (summ[i][f"{k}_diff"] - summ[i][f"{k}_lo"]) for i in xs]
            hi = [100 * (summ[i][f"{k}_hi"] - summ[i][f"{k}_diff"]) for i in xs]
            ax.errorbar(xs, d, yerr=[lo, hi], fmt="o", capsize=5, lw=2, color="C1")
        ax.axhline(0, color="black", lw=1)
        ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)
        ax.set(title=f"Δ {k} vs baseline, 95% paired bootstrap", ylabel="points")
        ax.grid(alpha=0.3)
    metric = next((r.get("metric") for r in summ if r.get("metric")), "")
    fig.suptitle(f"Sweep {out.name}: robustness on held-out rewordings ({metric}; mean ± sd over seeds, grey dots = seeds)")
    fig.tight_layout()
    p = out / "robustness_vs_setting.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


if __name__ == "__main__":
    sys.exit(main())
