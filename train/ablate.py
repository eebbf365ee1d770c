"""Run an ablation sweep: every config in a folder, several seeds, through the normal launch path.

    python -m train.ablate configs/ablation/ratio-replace [--seeds 3] [--num_processes N]
                          [--runs_dir runs/ablation] [--only r1.00,r2.00] [--dry_run]

Each (config, seed) trains into `<runs_dir>/<sweep>/<config>/seed<k>/` via `launch.sh`, so a
sweep on a GPU box uses `accelerate launch` exactly like a single run. A run that finished
(its `run_result.json` exists) is reused, so re-running the command only runs what is missing.
A config whose header says `expect-error: <message>` must be rejected by validation; the sweep
checks that it is and records it as `rejected`.

Writes `<runs_dir>/<sweep>/results.csv` (one row per run) and plots: eval losses against the
ratio (mean and spread over seeds) and, for one run, the training loss by source.
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

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ["config", "mode", "ratio", "methods", "qc", "neftune", "seed", "status", "eval_loss",
           "eval_paraphrase_loss", "gap", "steps", "tokens", "wall_s"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", help="folder of run configs, e.g. configs/ablation/ratio-replace")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per config (42, 43, ...)")
    ap.add_argument("--num_processes", type=int, default=1)
    ap.add_argument("--runs_dir", default="runs/ablation")
    ap.add_argument("--only", default="", help="comma-separated config names to run")
    ap.add_argument("--dry_run", action="store_true", help="list the runs and exit")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                    help="--key value overrides passed to every run (put last)")
    args = ap.parse_args(argv)

    sweep = Path(args.sweep)
    configs = sorted(p for p in sweep.glob("*.yaml"))
    if args.only:
        keep = set(args.only.split(","))
        configs = [p for p in configs if p.stem in keep]
    if not configs:
        print(f"augtune: error: no *.yaml configs in {sweep}", file=sys.stderr)
        return 2
    out_root = Path(args.runs_dir) / sweep.name
    out_root.mkdir(parents=True, exist_ok=True)
    rows = []
    plan = [(c, 42 + s) for c in configs for s in range(args.seeds)]
    for i, (cfg, seed) in enumerate(plan, 1):
        run_dir = out_root / cfg.stem / f"seed{seed}"
        tag = f"[{i}/{len(plan)}] {cfg.stem} seed {seed}"
        if args.dry_run:
            print(f"{tag}: {'done' if (run_dir / 'run_result.json').exists() else 'to run'} -> {run_dir}")
            continue
        rows.append(run_one(cfg, seed, run_dir, args, tag))
    if args.dry_run:
        return 0
    write_csv(out_root / "results.csv", rows)
    pngs = plot_sweep(rows, out_root)
    print(f"augtune: wrote {out_root / 'results.csv'} and {', '.join(str(p) for p in pngs)}")
    return 0


def run_one(cfg: Path, seed: int, run_dir: Path, args, tag: str) -> dict:
    result_file = run_dir / "run_result.json"
    if result_file.exists():
        print(f"{tag}: finished earlier, reusing {result_file}")
        return json.loads(result_file.read_text())
    expect = re.search(r"expect-error:\s*(.+)", cfg.read_text())
    cmd = [str(ROOT / "launch.sh"), str(cfg), "--seed", str(seed), "--output_dir", str(run_dir),
           "--num_processes", str(args.num_processes), *args.extra]
    print(f"{tag}: running -> {run_dir}", flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=bool(expect), text=True)
    wall = time.time() - t0
    meta = describe(cfg)
    row = {**meta, "config": cfg.stem, "seed": seed, "wall_s": round(wall, 1)}
    if expect:
        msg = (proc.stderr or "").strip().splitlines()[-1:] or [""]
        ok = proc.returncode == 2 and re.search(expect.group(1).strip(), msg[0])
        row["status"] = "rejected" if ok else f"NOT REJECTED (exit {proc.returncode})"
        print(f"{tag}: {row['status']}: {msg[0]}")
        return row  # not cached: cheap, and a config change should be re-checked
    if proc.returncode != 0:
        row["status"] = f"failed (exit {proc.returncode})"
        print(f"{tag}: {row['status']}; see the output above")
        return row
    row.update(read_metrics(run_dir))
    row["status"] = "ok"
    run_dir.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(row, indent=2))
    return row


def describe(cfg: Path) -> dict:
    """The swept settings of a config (base merged), for the csv."""
    import yaml
    data: dict = {}
    chain = [cfg]
    while "base" in (d := yaml.safe_load(chain[-1].read_text()) or {}):
        chain.append(chain[-1].parent / d["base"])
    for p in reversed(chain):
        data.update({k: v for k, v in (yaml.safe_load(p.read_text()) or {}).items() if k != "base"})
    return {"mode": data.get("augment_mode", "expand"),
            "ratio": float(data.get("augmented_per_original", 2.0)),
            "methods": "+".join(data.get("augment_methods", [])),
            "qc": data.get("qc", "project"),
            "neftune": data.get("neftune_noise_alpha") or 0}


def read_metrics(run_dir: Path) -> dict:
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
    written = []
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


if __name__ == "__main__":
    sys.exit(main())
