"""Plots of a finished run from its `log_history`, because a curve reads faster than a table."""

from __future__ import annotations

from pathlib import Path

from augment.types import METHOD_NAMES


def plot_training(log_history: list[dict], out: Path) -> list[Path]:
    """Write `loss_by_source.png`: training loss per source (originals, augmented, each method)
    and the two eval losses, against the step. Returns the files written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["loss_original", "loss_augmented"] + [f"loss_{m}" for m in METHOD_NAMES]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    drew = False
    for key in keys:
        pts = [(h["step"], h[key]) for h in log_history if key in h]
        if pts:
            style = "-" if key in ("loss_original", "loss_augmented") else "--"
            width = 2.2 if key in ("loss_original", "loss_augmented") else 1.2
            ax.plot(*zip(*pts), style, lw=width, marker="o", ms=3, label=key)
            drew = True
    ax.set(title="Training loss by source (token-weighted)", xlabel="step", ylabel="loss")
    if drew:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    series = {key: [(h["step"], h[key]) for h in log_history if key in h]
              for key in ("eval_loss", "eval_paraphrase_loss")}
    colours = {"eval_loss": "tab:blue", "eval_paraphrase_loss": "tab:red"}
    if max(len(v) for v in series.values()) == 1:  # one evaluation: bars read better than dots
        keys = [k for k in series if series[k]]
        vals = [series[k][0][1] for k in keys]
        bars = ax2.bar(keys, vals, color=[colours[k] for k in keys], width=0.5)
        ax2.bar_label(bars, fmt="%.4f")
        lo, hi = min(vals), max(vals)
        ax2.set_ylim(lo - 0.5 * (hi - lo + 1e-3), hi + 0.5 * (hi - lo + 1e-3))
        ax2.set(title=f"Eval at step {series[keys[0]][0][0]}: original vs held-out paraphrases",
                ylabel="loss")
    else:
        for key, pts in series.items():
            if pts:
                ax2.plot(*zip(*pts), marker="o", color=colours[key], label=key)
        ax2.set(title="Eval: original prompts vs held-out paraphrases", xlabel="step", ylabel="loss")
        if ax2.lines:
            ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(out) / "loss_by_source.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
