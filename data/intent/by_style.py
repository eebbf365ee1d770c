"""Accuracy per rewording style, pooled over each arm's runs: the by-style table of
docs/robustness.md. Pooled, not paired, and without intervals: a hint, not a finding.

    python data/intent/by_style.py runs/ablation/robustness
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STYLES = [("casual", "casual (typos)"), ("indirect", "indirect"), ("formal", "formal")]


def main(sweep: str) -> str:
    style = {}
    with open(HERE / "eval_paraphrases.jsonl") as f:
        for line in f:
            d = json.loads(line)
            style[d["id"]] = d["style"]
    lines = ["| arm | runs | original | " + " | ".join(t for _, t in STYLES) + " |",
             "|---|---|---|" + "---|" * len(STYLES)]
    for arm in sorted(p for p in Path(sweep).iterdir() if p.is_dir()):
        reports = [json.loads(r.read_text()) for r in sorted(arm.glob("seed*/robustness.json"))]
        if not reports:
            continue
        hits = {k: [] for k in ["original", *[s for s, _ in STYLES]]}
        for rep in reports:
            for item in rep["items"]:
                hits["original"].append(item["original"]["score"])
                for p in item["paraphrases"]:
                    if style.get(p["id"]) in hits:
                        hits[style[p["id"]]].append(p["score"])
        cells = [f"{100 * sum(v) / len(v):.1f}" if v else "n/a" for v in hits.values()]
        lines.append(f"| {arm.name} | {len(reports)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    print(main(sys.argv[1]))
