"""`python -m augment.qc_eval --plot FILE.png`: recall against false accepts, one panel per
labelled set (and one for the held-out sets pooled), so the QC's curves, the cosine threshold
alone and the maintainers' target can be seen side by side instead of read off tables.

What each panel draws, all on the same set of pairs:
- the cosine threshold alone, every threshold (grey): what any QC has to beat;
- the rules without the judge as their similarity floor moves over `qc_eval.FLOORS` (blue);
- rules and judge at the default floor as the judge's threshold moves over every value that
  changes a verdict (orange): the ranking the judge gives;
- the shipped QC (black star) and the seed rule 0.7 < sim < 0.98 (red cross);
- on instruction sets, the target (recall >= 0.85 at <= 0.15 false accepts) shaded green: a
  curve that never enters it cannot meet the target at any threshold.

matplotlib with the Agg backend, imported only when a plot is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from augment.qc_stats import cosine_curve, judge_sweep


#: What a panel holds besides its `name` and `target` (draw the target box): per pair, is it a
#: faithful rewrite, its cosine, do all rules but the floor accept it, do the shipped QC's rules
#: accept it, the judge's P(changed) (NaN where it never looked), the shipped QC's and the seed
#: rule's verdicts. `qc_eval.run` returns them as its "arrays".
ARRAYS = ("is_pos", "sims", "rules_no_floor", "rules_ok", "judge_p", "project", "seed")


def pooled(name: str, panels: Sequence[dict]) -> dict:
    """The pairs of several panels as one (curves over the pooled pairs, not averaged)."""
    return {"name": name, "target": all(p["target"] for p in panels),
            **{k: np.concatenate([p[k] for p in panels]) for k in ARRAYS}}


def _point(is_pos: np.ndarray, accepted: np.ndarray) -> tuple[float, float]:
    return float(accepted[~is_pos].mean()), float(accepted[is_pos].mean())


def plot_curves(panels: Sequence[dict], path, floors: Sequence[float],
                default_floor: float, target_point: tuple[float, float]) -> Path:
    """Write the figure to `path` (its folder is made) and return the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(panels), 3)
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 4.2 * rows + 0.7), squeeze=False)
    fig.suptitle("Recall of faithful rewrites against false accepts of meaning changes",
                 fontsize=13)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    want_recall, want_far = target_point
    for ax, p in zip(axes.flat, panels):
        is_pos, sims = p["is_pos"], p["sims"]
        if p["target"]:
            ax.fill_between([0, want_far], want_recall, 1.0, color="tab:green", alpha=0.15,
                            label=f"target: recall >= {want_recall}, FA <= {want_far}")
        rec, far = cosine_curve(sims, is_pos)
        ax.step(far, rec, where="post", color="0.55", lw=1.2, label="cosine threshold alone")
        pts = [_point(is_pos, p["rules_no_floor"] & (sims > f)) for f in floors]
        ax.plot(*zip(*pts), "o-", color="tab:blue", ms=3, lw=1,
                label=f"rules alone, floor {floors[0]:.2f}-{floors[-1]:.2f}")
        _, jrec, jfar = judge_sweep(is_pos, p["rules_ok"], p["judge_p"])
        ax.plot(jfar, jrec, "-", color="tab:orange", lw=1.5,
                label=f"rules + judge at floor {default_floor}, threshold swept")
        x, y = _point(is_pos, p["project"])
        ax.plot([x], [y], "*", color="black", ms=12, label=f"shipped QC ({y:.3f} / {x:.3f})")
        x, y = _point(is_pos, p["seed"])
        ax.plot([x], [y], "x", color="tab:red", ms=8, mew=2, label="seed rule 0.7-0.98")
        ax.set_title(f"{p['name']} ({int(is_pos.sum())} + {int((~is_pos).sum())} pairs)",
                     fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("false accepts (share of meaning changes accepted)")
        ax.set_ylabel("recall (share of faithful rewrites accepted)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))  # room for the title
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
