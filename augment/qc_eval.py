"""Print the QC figures on a labelled pair set: project rules vs the seed rule.

Usage: ``python -m augment.qc_eval [PATH] [--method M] [--show-errors]``

PATH is a JSONL file with ``original``, ``candidate``, ``label``
(``paraphrase`` | ``meaning_change`` | ``unrelated``), ``kind`` and
``domain`` fields (default: ``tests/data/qc_pairs.jsonl``).  Why a separate
CLI: the figures justify the defaults in ``QualityConfig``; anyone changing a
threshold should rerun this and compare the side-by-side table.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from augment.quality import QualityChecker, QualityConfig

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "tests" / "data" / "qc_pairs.jsonl"
LABELS = ("paraphrase", "meaning_change", "unrelated")


def load_pairs(path: str | Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = {"original", "candidate", "label"} - row.keys()
            if missing or row["label"] not in LABELS:
                raise ValueError(f"{path}:{n}: need original/candidate/label in {LABELS}; got {row}")
            rows.append(row)
    return rows


def metrics(rows: list[dict], accepted: list[bool]) -> dict:
    """precision/recall of paraphrases; FAR = share of non-paraphrases accepted."""
    pos = [a for r, a in zip(rows, accepted) if r["label"] == "paraphrase"]
    neg = [a for r, a in zip(rows, accepted) if r["label"] != "paraphrase"]
    tp, fp = sum(pos), sum(neg)
    return {
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / len(pos) if pos else float("nan"),
        "far": fp / len(neg) if neg else float("nan"),
        "accepted": tp + fp, "n_pos": len(pos), "n_neg": len(neg), "tp": tp, "fp": fp,
    }


def evaluate(rows: list[dict], checker: QualityChecker, method: str | None = None) -> tuple[list[dict], dict]:
    res = checker.score_pairs([r["original"] for r in rows], [r["candidate"] for r in rows], method)
    return res, metrics(rows, [x["is_valid"] for x in res])


def format_table(rows: list[dict], project: list[dict], seed: list[dict]) -> str:
    mp = metrics(rows, [x["is_valid"] for x in project])
    ms = metrics(rows, [x["is_valid"] for x in seed])
    lines = [f"{len(rows)} pairs: {mp['n_pos']} paraphrases, {mp['n_neg']} meaning changes/unrelated", "",
             f"{'rule':<10}{'precision':>10}{'recall':>8}{'FAR':>8}{'accepted':>10}",
             "-" * 46]
    for name, m in (("project", mp), ("seed", ms)):
        lines.append(f"{name:<10}{m['precision']:>10.3f}{m['recall']:>8.3f}{m['far']:>8.3f}{m['accepted']:>10d}")
    lines.append("")
    lines.append("FAR = share of meaning_change + unrelated pairs accepted; recall = share of paraphrases accepted")
    for key in ("kind", "domain"):
        lines += ["", f"acceptance by {key} (accepted/total)",
                  f"{'':<24}{'label':<16}{'project':>10}{'seed':>10}"]
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, r in enumerate(rows):
            groups[(r.get(key, "?"), r["label"])].append(i)
        for (k, lab), idx in sorted(groups.items(), key=lambda kv: (kv[0][1] != "paraphrase", kv[0])):
            p = sum(project[i]["is_valid"] for i in idx)
            s = sum(seed[i]["is_valid"] for i in idx)
            lines.append(f"{k:<24}{lab:<16}{f'{p}/{len(idx)}':>10}{f'{s}/{len(idx)}':>10}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", default=str(DEFAULT_PATH))
    ap.add_argument("--method", default=None, help="augmentation method (default: paraphrase rules)")
    ap.add_argument("--show-errors", action="store_true",
                    help="list rejected paraphrases and accepted meaning changes")
    args = ap.parse_args(argv)
    rows = load_pairs(args.path)
    project_checker = QualityChecker(QualityConfig())
    # same model object: the seed run costs no second load and no re-embedding drift
    seed_checker = QualityChecker(QualityConfig.seed(), model=project_checker.model)
    project, _ = evaluate(rows, project_checker, args.method)
    seed, _ = evaluate(rows, seed_checker, args.method)
    print(format_table(rows, project, seed))
    if args.show_errors:
        print("\nrejected paraphrases:")
        for r, x in zip(rows, project):
            if r["label"] == "paraphrase" and not x["is_valid"]:
                print(f"  [{x['semantic_similarity']:.2f}] {r['original']!r} -> {r['candidate']!r}: {x['reasons']}")
        print("\naccepted non-paraphrases:")
        for r, x in zip(rows, project):
            if r["label"] != "paraphrase" and x["is_valid"]:
                print(f"  [{x['semantic_similarity']:.2f}] ({r['kind']}) {r['original']!r} -> {r['candidate']!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
