"""PNG plots of what quality control did, one question per figure.

- similarity.png: where each method's candidates fall in similarity, with the QC window shaded
  (are we rejecting for the right reason?)
- acceptance.png: accepted share per method with counts (is a method wasting money?)
- length_ratio.png: candidate length / source length per method (truncations, rambling)

matplotlib with the Agg backend (no display needed), imported only here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _grid(plt, n: int, title: str):
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows + 0.6), squeeze=False)
    fig.suptitle(title, fontsize=13)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def plot_similarity(data: dict, window: dict, path) -> None:
    """data: {method: {"accepted": [sims], "rejected": [sims]}}; window: {method: (lo, hi)}."""
    plt = _plt()
    methods = [m for m in data if data[m]["accepted"] or data[m]["rejected"]]
    fig, axes = _grid(plt, max(len(methods), 1), "Semantic similarity to the source, by method")
    bins = np.linspace(-0.2, 1.0, 49)
    for ax, m in zip(axes, methods):
        lo, hi = window.get(m, (None, None))
        if lo is not None:
            ax.axvspan(lo, hi, color="tab:green", alpha=0.12,
                       label=f"QC window ({lo:.2f}, {hi:.2f})")
        ax.hist([data[m]["accepted"], data[m]["rejected"]], bins=bins, stacked=True,
                color=["tab:blue", "tab:red"],
                label=[f"accepted ({len(data[m]['accepted'])})",
                       f"rejected ({len(data[m]['rejected'])})"])
        ax.set_title(m)
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("candidates")
        ax.legend(fontsize=8, loc="upper left")
    if not methods:
        axes[0].text(0.5, 0.5, "no candidates", ha="center", va="center")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_acceptance(stats: dict, path, qc_mode: str) -> None:
    """stats: {method: {"accepted": n, "rejected": n, "failed": n, ...}}."""
    plt = _plt()
    methods = list(stats)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.5 * len(methods) + 2), 4.2))
    acc = np.array([stats[m]["accepted"] for m in methods], float)
    judged = np.array([stats[m]["accepted"] + stats[m]["rejected"] for m in methods], float)
    rate = np.divide(acc, judged, out=np.zeros_like(acc), where=judged > 0)
    bars = ax.bar(methods, rate * 100, color="tab:blue", width=0.6)
    for b, a, j, m in zip(bars, acc, judged, methods):
        failed = stats[m].get("failed", 0)
        note = f"{int(a)}/{int(j)}" + (f"\n{failed} failed req." if failed else "")
        ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 1.5, note, ha="center",
                va="bottom", fontsize=9)
    ax.set_ylim(0, 118)
    ax.set_ylabel("accepted candidates (%)")
    ax.set_xlabel("method")
    ax.set_title(f"Acceptance rate per method (qc={qc_mode})")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_length_ratio(data: dict, path) -> None:
    """data: {method: [length ratios]} -> box plot per method (log scale)."""
    plt = _plt()
    methods = [m for m in data if len(data[m])]
    fig, ax = plt.subplots(figsize=(max(5.5, 1.5 * len(methods) + 2), 4.2))
    if methods:
        vals = [np.clip(np.asarray(data[m], float), 1e-2, 1e2) for m in methods]
        ax.boxplot(vals, showfliers=True, widths=0.5)
        ax.set_xticks(range(1, len(methods) + 1), [f"{m}\n(n={len(data[m])})" for m in methods])
        ax.set_yscale("log")
        lo = min(float(v.min()) for v in vals)
        hi = max(float(v.max()) for v in vals)
        ticks = [t for t in (0.1, 0.25, 0.5, 1, 2, 4, 10) if lo / 1.5 <= t <= hi * 1.5] or [1]
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.axhline(1.0, color="grey", ls="--", lw=1, label="same length as source")
        ax.legend(fontsize=8, loc="upper right")
    else:
        ax.text(0.5, 0.5, "no candidates", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("candidate words / source words (log)")
    ax.set_xlabel("method")
    ax.set_title("Length ratio of candidates to their source")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def qc_windows(qc_mode: str) -> dict:
    """The similarity window each method is held to under `qc_mode`, for shading."""
    try:
        from .quality import SEED_SIM_MAX, SEED_SIM_MIN, QualityConfig
    except ImportError:  # pragma: no cover
        return {}
    from .types import METHOD_NAMES
    if qc_mode == "none":
        return {}
    if qc_mode == "seed":
        return {m: (SEED_SIM_MIN, SEED_SIM_MAX) for m in METHOD_NAMES}
    cfg = QualityConfig()
    out = {m: (cfg.sim_min, cfg.sim_max) for m in ("paraphrase", "backtranslate")}
    out["templates"] = (cfg.sim_min, cfg.templates_sim_max)
    out["outputs"] = (cfg.outputs_sim_min, 1.0)
    return out


def _save(fig, path) -> None:
    """Save a plot whole or not at all, so a report interrupted while plotting never leaves
    half a PNG (the temporary name hides the format: it is given)."""
    from .atomic import write_atomic
    fmt = Path(path).suffix.lstrip(".") or "png"
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format=fmt))


def _open_folder(out_dir) -> tuple[Path, str | None]:
    """The report folder, made if needed, with its old report.json removed first; returns the QC
    mode of the report it held, if any. Why remove it first: the plots are replaced one by one,
    and a report interrupted half way must not keep a report.json that vouches for plots of
    another mode; report.json is written last."""
    import json
    from .errors import ConfigError
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--report {out_dir}: cannot make that folder ({e.strerror or e}); "
                          "give a folder you can write.") from None
    old, mode = out / "report.json", None
    if old.is_file():
        try:
            mode = json.loads(old.read_text(encoding="utf-8")).get("qc_mode")
        except (OSError, ValueError, AttributeError):
            mode = "unknown"
        old.unlink()
    return out, mode


def write_report(cache, out_dir, qc_mode: str) -> dict:
    """report.json + similarity.png + acceptance.png + length_ratio.png in `out_dir`, report.json
    last (a folder without it holds an interrupted report). Says so when it replaces a report of
    another QC mode (the file names carry no mode)."""
    import sys
    out, replaced = _open_folder(out_dir)
    if replaced is not None and replaced != qc_mode:
        print(f"augtune: {out}: replacing the report of qc={replaced} there with qc={qc_mode}'s",
              file=sys.stderr)
    with cache.snapshot():  # one state of the cache, even while a build writes to it
        return _write_report(cache, out, qc_mode)


def _write_report(cache, out: Path, qc_mode: str) -> dict:
    import json
    from .cache import _verdict_col
    col = _verdict_col(qc_mode)
    sims: dict = {}
    ratios: dict = {}
    for v in cache.iter_variants(columns=("method", "similarity", "length_ratio", col)):
        m = v["method"]
        d = sims.setdefault(m, {"accepted": [], "rejected": []})
        if v["similarity"] is not None and v[col] is not None:
            d["accepted" if v[col] else "rejected"].append(v["similarity"])
        if v["length_ratio"] is not None:
            ratios.setdefault(m, []).append(v["length_ratio"])
    stats = cache.stats(qc_mode)
    order = list(stats)
    sims = {m: sims[m] for m in order if m in sims}
    ratios = {m: ratios[m] for m in order if m in ratios}
    plot_similarity(sims, qc_windows(qc_mode), out / "similarity.png")
    plot_acceptance(stats, out / "acceptance.png", qc_mode)
    plot_length_ratio(ratios, out / "length_ratio.png")
    report = {"cache": cache.path, "qc_mode": qc_mode, "methods": stats,
              "requests": cache.status_counts(), "totals": cache.totals(),
              "failure_reasons": [{"method": m, "error": e, "count": n}
                                  for m, e, n in cache.failure_reasons(20)],
              "similarity_mean": {m: float(np.mean(d["accepted"] + d["rejected"]))
                                  for m, d in sims.items() if d["accepted"] + d["rejected"]},
              "plots": ["similarity.png", "acceptance.png", "length_ratio.png"]}
    from .atomic import write_text_atomic
    write_text_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report
