"""Derive the intent-routing task from the demo data (stdlib only; deterministic).

    python data/intent/make_intent.py

Writes, next to this file:
  train.jsonl             the first ROWS_PER_INTENT demo train rows of every intent, with the
                          completion replaced by the row's intent label (150 rows, 15 labels)
  eval.jsonl              all 48 demo eval rows, completion = intent label
  eval_paraphrases.jsonl  the experiment's held-out rewordings, completion = the label: p3-p5
                          of every eval prompt from handwritten_paraphrases.jsonl (written by
                          hand for this task: casual with typos, indirect, formal/restructured)
  eval_paraphrases_all.jsonl  the same plus p1, p2 copied from data/demo/eval_paraphrases.jsonl
                          (written for the demo): 5 per eval prompt.
None was produced by an augtune backend; none is ever trained on.

Why these rows: the demo prompts are untouched, so the demo's variant cache (keyed on the prompt
text) already holds SmolLM2 paraphrases, backtranslations and templates for the billing,
cancellation and shipping rows; the rest is built once (see data/intent/README.md).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO = HERE.parent / "demo"
ROWS_PER_INTENT = 10


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    seen: Counter = Counter()
    train = []
    for r in read(DEMO / "train.jsonl"):
        if seen[r["intent"]] < ROWS_PER_INTENT:
            seen[r["intent"]] += 1
            train.append({"id": r["id"], "intent": r["intent"], "prompt": r["prompt"],
                          "completion": r["intent"]})
    evals = [{"id": r["id"], "intent": r["intent"], "prompt": r["prompt"], "completion": r["intent"]}
             for r in read(DEMO / "eval.jsonl")]
    by_id = {r["id"]: r for r in evals}
    paras = defaultdict(list)
    for r in read(DEMO / "eval_paraphrases.jsonl"):
        paras[r["source_id"]].append({"id": r["id"], "source_id": r["source_id"], "intent": r["intent"],
                                      "style": "demo", "prompt": r["prompt"],
                                      "completion": r["intent"]})
    hand = HERE / "handwritten_paraphrases.jsonl"
    for r in read(hand) if hand.exists() else []:
        src = by_id[r["source_id"]]
        paras[r["source_id"]].append({"id": r["id"], "source_id": r["source_id"],
                                      "intent": src["intent"], "style": r["style"],
                                      "prompt": r["prompt"], "completion": src["intent"]})
    write(HERE / "train.jsonl", train)
    write(HERE / "eval.jsonl", evals)
    everything = [p for e in evals for p in paras[e["id"]]]
    write(HERE / "eval_paraphrases_all.jsonl", everything)
    write(HERE / "eval_paraphrases.jsonl", [p for p in everything if p["style"] != "demo"])
    print(f"train {len(train)} rows ({len(seen)} intents x {ROWS_PER_INTENT}), eval {len(evals)}, "
          f"eval paraphrases {len(everything)} (hand-written for this task: "
          f"{sum(p['style'] != 'demo' for p in everything)})")


if __name__ == "__main__":
    main()
