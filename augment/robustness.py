"""Robustness to rewording, measured the way the literature does: by generating answers.

A loss on the reference answer barely moves when a prompt is reworded; what a user sees is the
answer the model generates. So after training (and, optionally, at every evaluation) the model
answers every eval prompt and each of its held-out paraphrases greedily, in batches, with a cap
on new tokens, and a task metric scores each answer against the reference. From those scores:

  original     mean score on the original eval prompts
  avgp         mean over items of the mean score over the item's held-out paraphrases (AvgP,
               Sun et al. ICLR 2024; Mizrahi et al. TACL 2024 average over instructions)
  worst        mean over items of the LOWEST score among all the item's wordings (original and
               paraphrases): the share of items the model gets right however it is asked
  spread       mean over items of (highest - lowest) score over the item's wordings; for a 0/1
               metric, the share of items whose correctness depends on the wording
  pdr          performance drop rate (PromptBench, Zhu et al. 2023): 1 - avgp / original;
               None when original is 0
  consistency  mean over items of the share of pairs of wordings whose answers agree (the
               predicted label for `label_match`, the normalised text otherwise, so two
               different replies that name no label disagree), right or wrong
  all_agree    share of items where every wording got the same answer

Every figure is a fraction in [0, 1] computed over the items that have at least one paraphrase
(the others are counted, never silently dropped). `paired_bootstrap` gives a percentile interval
for the difference of any figure between two runs, resampling eval items (paired: the same
items for both runs), which is what `train.ablate` reports against its baseline setting.

Metrics (`robustness_metric`): `label_match` (classification-style answers: the first label the
answer names must be the reference), `exact_match` (normalised string equality), `token_f1`
(SQuAD-style word-overlap F1, for free text), `auto` (label_match when every reference is a short
label, else exact_match for short answers, else token_f1), or `package.module:function`, called
as `function(prediction, reference) -> float in [0, 1]`.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import AugtuneError, ConfigError, InputError

METRICS = ("auto", "exact_match", "label_match", "token_f1")
FIGURES = ("original", "avgp", "worst", "spread", "pdr", "consistency", "all_agree")
_PUNCT = re.compile(r"[^\w\s]|_")


# --------------------------------------------------------------------------- metrics

def normalize(text: str) -> str:
    """Lowercase, punctuation and underscores to spaces, whitespace collapsed: `Password_Reset.`
    and `password reset` are the same answer."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


class Scorer:
    """`score(prediction, reference)` in [0, 1] and `identity(prediction)`, what consistency
    compares (two answers agree when their identities are equal)."""

    name = "exact_match"

    def score(self, prediction: str, reference: str) -> float:
        return float(normalize(prediction) == normalize(reference))

    def key(self, prediction: str) -> str:
        return normalize(prediction)

    def identity(self, prediction: str) -> str:
        return self.key(prediction)


class LabelMatch(Scorer):
    """The answer's label is the label it names first (`"Billing."`, `"billing - the charge..."`
    and `"This is about billing"` all name billing); an answer naming no label matches nothing."""

    name = "label_match"

    def __init__(self, labels):
        self.labels = sorted({normalize(x) for x in labels if normalize(x)}, key=len, reverse=True)
        if not self.labels:
            raise ConfigError("robustness_metric=label_match needs labels: give "
                              "robustness_labels, or eval rows whose completions are the labels.")
        alts = "|".join(re.escape(x) for x in self.labels)  # longest first: `order status` before `order`
        self._find = re.compile(rf"(?<!\w)({alts})(?!\w)")

    def key(self, prediction: str) -> str:
        m = self._find.search(normalize(prediction))
        return m.group(1) if m else ""

    def identity(self, prediction: str) -> str:
        """The label named; an answer naming none is only its own text, so two different
        label-less replies do not count as agreeing."""
        return self.key(prediction) or "text: " + normalize(prediction)

    def score(self, prediction: str, reference: str) -> float:
        k = self.key(prediction)
        return float(bool(k) and k == normalize(reference))


class TokenF1(Scorer):
    name = "token_f1"

    def score(self, prediction: str, reference: str) -> float:
        p, r = normalize(prediction).split(), normalize(reference).split()
        if not p or not r:
            return float(p == r)
        common = sum((Counter(p) & Counter(r)).values())
        if common == 0:
            return 0.0
        precision, recall = common / len(p), common / len(r)
        return 2 * precision * recall / (precision + recall)


class UserMetric(Scorer):
    def __init__(self, path: str):
        self.name = path
        module, _, fn = path.partition(":")
        try:
            self.fn = getattr(importlib.import_module(module), fn)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"robustness_metric={path!r}: cannot import it ({exc}). Give "
                              "`package.module:function`, importable from the working directory.")

    def score(self, prediction: str, reference: str) -> float:
        value = float(self.fn(prediction, reference))
        if not 0.0 <= value <= 1.0 or math.isnan(value):
            raise InputError(f"returned {value} for prediction {prediction[:40]!r}",
                             file=self.name, fix="A metric function must return a number in [0, 1]")
        return value


def check_metric_name(name: str) -> None:
    """Config-time check (cheap: imports nothing)."""
    if name in METRICS:
        return
    module, sep, fn = name.partition(":")
    if not (sep and module and fn.isidentifier()):
        raise ConfigError(f"robustness_metric={name!r} is not one of {METRICS} nor an import path "
                          "`package.module:function`.")


def make_scorer(name: str, references: list[str], labels=()) -> Scorer:
    """The scorer for `name`; `auto` decides from the references (short labels -> label_match)."""
    check_metric_name(name)
    if name == "auto":
        short = all(len(normalize(r).split()) <= 4 for r in references)
        distinct = len({normalize(r) for r in references})
        if labels or (short and references and distinct <= len(references) // 2):
            name = "label_match"
        else:
            name = "exact_match" if short else "token_f1"
    if name == "label_match":
        return LabelMatch(labels or references)
    if name == "exact_match":
        return Scorer()
    if name == "token_f1":
        return TokenF1()
    return UserMetric(name)


# --------------------------------------------------------------------------- figures

@dataclass
class ItemResult:
    """One eval item: the score and answer key of its original prompt and of each paraphrase."""

    id: str
    original: float
    paraphrases: list[float]
    original_key: str = ""
    paraphrase_keys: list[str] = field(default_factory=list)


def item_figures(item: ItemResult) -> dict:
    """Per-item figures; `pdr` is a ratio of means, so it exists only for a set of items."""
    scores = [item.original, *item.paraphrases]
    keys = [item.original_key, *item.paraphrase_keys]
    pairs = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]]
    return {"original": item.original,
            "avgp": sum(item.paraphrases) / len(item.paraphrases),
            "worst": min(scores), "spread": max(scores) - min(scores),
            "consistency": sum(a == b for a, b in pairs) / len(pairs) if pairs else 1.0,
            "all_agree": float(len(set(keys)) == 1)}


def figures_from_items(per_item: list[dict]) -> dict:
    """Aggregate per-item figures (from `item_figures`) into the run's figures."""
    n = len(per_item)
    if n == 0:
        return {k: None for k in FIGURES}
    out = {k: sum(d[k] for d in per_item) / n for k in FIGURES if k != "pdr"}
    out["pdr"] = pdr(out["original"], out["avgp"])
    return {k: out[k] for k in FIGURES}


def pdr(original: float, paraphrased: float):
    return None if original == 0 else 1.0 - paraphrased / original


def robustness_figures(items: list[ItemResult]) -> dict:
    return figures_from_items([item_figures(i) for i in items if i.paraphrases])


# --------------------------------------------------------------------------- statistics

def paired_bootstrap(a, b, statistic=None, n_resamples: int = 10000, seed: int = 0,
                     confidence: float = 0.95) -> dict:
    """Percentile bootstrap interval of `statistic(b) - statistic(a)` over paired items.

    `a` and `b` are arrays whose first axis is the eval item, in the same order (the same items
    answered by two settings); each resample draws items with replacement and applies the SAME
    draw to both, so item difficulty cancels. `statistic` maps an array (items first) to a
    number; the default is the mean over items of a 1-D array. Resamples where the statistic is
    undefined (NaN, e.g. a PDR whose original score is 0) are dropped and counted."""
    import numpy as np
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.shape[0] == 0:
        raise ValueError(f"paired_bootstrap needs two equal, non-empty arrays, got {a.shape} and {b.shape}")
    stat = statistic or (lambda x: x.mean(axis=0))
    n = a.shape[0]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    if statistic is None and a.ndim == 1:  # vectorised fast path for a mean
        diffs = b[idx].mean(axis=1) - a[idx].mean(axis=1)
    else:
        diffs = np.array([stat(b[i]) - stat(a[i]) for i in idx], dtype=float)
    ok = diffs[np.isfinite(diffs)]
    alpha = (1.0 - confidence) / 2
    lo, hi = (np.quantile(ok, [alpha, 1 - alpha]) if ok.size else (float("nan"), float("nan")))
    point = float(stat(b) - stat(a))
    return {"diff": point, "lo": float(lo), "hi": float(hi), "n_items": int(n),
            "n_resamples": int(n_resamples), "undefined_resamples": int(diffs.size - ok.size)}


def figure_statistic(name: str):
    """A `paired_bootstrap` statistic for a figure, over an (items x 2) array of per-item
    (original, avgp) for `pdr`, or a 1-D array of the per-item figure otherwise."""
    import numpy as np
    if name == "pdr":
        def stat(x):
            o = x[:, 0].mean()
            return np.nan if o == 0 else 1.0 - x[:, 1].mean() / o
        return stat
    return None


def per_item_array(items: list[dict], name: str):
    """Per-item values for `figure_statistic(name)` from `item_figures` dicts."""
    if name == "pdr":
        return [[d["original"], d["avgp"]] for d in items]
    return [d[name] for d in items]


# --------------------------------------------------------------------------- generation

def format_prompt(tokenizer, prompt, pair_format: str = "chat") -> str:
    """Exactly the prompt part the collator trains on: the user turn rendered with the chat
    template and `add_generation_prompt=True` (any default system prompt included), or
    `prompt + "\\n\\n"` when the tokenizer has no chat template (BOS is added by tokenisation),
    or with `pair_format="trl"` the prompt as it is (TRL's plain prompt/completion format).
    A conversation (a list of chat messages up to the last user turn) is rendered whole, so the
    answer is generated in its context, as it was trained."""
    if pair_format == "trl" and not isinstance(prompt, list):
        return prompt
    msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in msgs) + "\n\n"


def _prompt_of(row):
    """What the model is asked: the prompt, or a conversation without its final answer."""
    if getattr(row, "messages", None):
        return [{"role": r, "content": c} for r, c in row.messages[:-1]]
    return row.prompt


def generate_answers(model, tokenizer, prompts: list[str], max_new_tokens: int = 16,
                     batch_size: int = 32, pair_format: str = "chat") -> tuple[list[str], dict]:
    """Greedy answers, batched (prompts sorted by length so a batch pads little; left padding so
    every row's answer starts at the same column). Returns (answers, timing/counts)."""
    import torch
    t0 = time.time()
    chat = bool(getattr(tokenizer, "chat_template", None))
    texts = [format_prompt(tokenizer, p, pair_format) for p in prompts]
    # A rendered template holds its special tokens; plain text gets them from tokenisation.
    templated = [chat and (isinstance(p, list) or pair_format != "trl") for p in prompts]
    enc = [tokenizer(t, add_special_tokens=not tpl)["input_ids"] for t, tpl in zip(texts, templated)]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = {tokenizer.eos_token_id} | ({tokenizer.convert_tokens_to_ids("<|im_end|>")} if chat else set())
    stops.discard(None)
    answers: list[str] = [""] * len(prompts)
    new_tokens = hit_cap = 0
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for s in range(0, len(order), batch_size):
                ids = [enc[i] for i in order[s:s + batch_size]]
                width = max(len(x) for x in ids)
                input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
                mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
                out = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=False,
                                     max_new_tokens=max_new_tokens, pad_token_id=pad,
                                     eos_token_id=sorted(stops) or None, use_cache=True,
                                     temperature=None, top_p=None, top_k=None)
                for j, i in enumerate(order[s:s + batch_size]):
                    gen = out[j, width:].tolist()
                    cut = next((k for k, t in enumerate(gen) if t in stops), None)
                    if cut is None:
                        hit_cap += 1
                    gen = gen[:cut]
                    new_tokens += len(gen)
                    answers[i] = tokenizer.decode(gen, skip_special_tokens=True).strip()
    finally:
        model.train(was_training)
    seconds = time.time() - t0
    return answers, {"prompts": len(prompts), "seconds": round(seconds, 2),
                     "prompts_per_second": round(len(prompts) / seconds, 2) if seconds > 0 else None,
                     "new_tokens": new_tokens, "hit_cap": hit_cap,
                     "max_new_tokens": max_new_tokens, "batch_size": batch_size}


# --------------------------------------------------------------------------- one evaluation

def paraphrase_links(path: str | None, paraphrases, eval_ids) -> list[str | None]:
    """The eval id each paraphrase rewords: the file's `source_id` column (the loader keeps only
    id/prompt/completion), else the `<eval id>-<suffix>` id convention; None when neither works."""
    sources: dict[str, str] = {}
    p = Path(path) if path else None
    if p is not None and p.is_file():
        # Read as the loader read it (a byte-order mark allowed); a line it skipped as bad is
        # skipped here too: it was counted and reported then, and this runs after training.
        if p.suffix == ".jsonl":
            recs = []
            for x in p.read_text(encoding="utf-8-sig").split("\n"):
                try:
                    recs.append(json.loads(x))
                except ValueError:
                    continue
        elif p.suffix == ".json":
            recs = json.loads(p.read_text(encoding="utf-8-sig"))
        elif p.suffix == ".csv":
            import csv
            with open(p, newline="", encoding="utf-8-sig") as f:
                recs = list(csv.DictReader(f))
        else:
            import pyarrow.parquet as pq
            recs = pq.read_table(p).to_pylist()
        sources = {str(r["id"]): str(r["source_id"]) for r in recs
                   if isinstance(r, dict) and r.get("id") is not None and r.get("source_id") is not None}
    ids = set(eval_ids)
    out = []
    for row in paraphrases:
        src = sources.get(str(row.id))
        if src is None:
            src = next((str(row.id)[:k] for k in range(len(str(row.id)) - 1, 0, -1)
                        if str(row.id)[k] == "-" and str(row.id)[:k] in ids), None)
        out.append(src if src in ids else None)
    return out


def evaluate_robustness(model, tokenizer, eval_rows, paraphrase_rows, *, metric: str = "auto",
                        labels=(), max_new_tokens: int = 16, batch_size: int = 32,
                        paraphrases_file: str | None = None, pair_format: str = "chat") -> dict:
    """Generate for every eval prompt and paraphrase, score, and return the report that
    `robustness.json` holds (figures, counts, timing, and every answer per item)."""
    links = paraphrase_links(paraphrases_file, paraphrase_rows, [r.id for r in eval_rows])
    by_item: dict[str, list] = {r.id: [] for r in eval_rows}
    unlinked = 0
    for row, src in zip(paraphrase_rows, links):
        if src is None:
            unlinked += 1
        else:
            by_item[src].append(row)
    scorer = make_scorer(metric, [r.completion for r in eval_rows], labels)
    prompts = ([_prompt_of(r) for r in eval_rows]
               + [_prompt_of(p) for r in eval_rows for p in by_item[r.id]])
    answers, timing = generate_answers(model, tokenizer, prompts, max_new_tokens, batch_size,
                                       pair_format)
    it = iter(answers[len(eval_rows):])
    items, results = [], []
    for r, ans in zip(eval_rows, answers[: len(eval_rows)]):
        paras = [(p, next(it)) for p in by_item[r.id]]
        res = ItemResult(r.id, scorer.score(ans, r.completion),
                         [scorer.score(a, r.completion) for _, a in paras],
                         scorer.identity(ans), [scorer.identity(a) for _, a in paras])
        results.append(res)
        items.append({"id": r.id, "reference": r.completion,
                      "original": {"prompt": r.prompt, "answer": ans, "score": res.original},
                      "paraphrases": [{"id": p.id, "prompt": p.prompt, "answer": a, "score": s}
                                      for (p, a), s in zip(paras, res.paraphrases)],
                      **({"figures": item_figures(res)} if res.paraphrases else {})})
    figures = robustness_figures(results)
    return {"metric": scorer.name,
            "figures": figures,
            "counts": {"items": sum(1 for r in results if r.paraphrases),
                       "paraphrases": sum(len(r.paraphrases) for r in results),
                       "items_without_paraphrases": sum(1 for r in results if not r.paraphrases),
                       "paraphrases_without_source": unlinked,
                       "eval_rows": len(eval_rows)},
            "generation": timing,
            "items": items}


def rescore(report: dict, metric: str | None = None, labels=(), keep_ids=None) -> dict:
    """The same report scored again from its stored answers (no generation): with another
    metric, after a change to a metric's rules, or on a subset of the paraphrases (`keep_ids`),
    so runs evaluated on more paraphrases compare with runs evaluated on fewer. Timing is kept."""
    items = report["items"]
    if keep_ids is not None:
        keep = set(keep_ids)
        items = [{**it, "paraphrases": [p for p in it["paraphrases"] if p["id"] in keep]} for it in items]
    scorer = make_scorer(metric or report["metric"], [it["reference"] for it in items], labels)
    results, out_items = [], []
    for it in items:
        paras = it["paraphrases"]
        res = ItemResult(it["id"], scorer.score(it["original"]["answer"], it["reference"]),
                         [scorer.score(p["answer"], it["reference"]) for p in paras],
                         scorer.identity(it["original"]["answer"]),
                         [scorer.identity(p["answer"]) for p in paras])
        results.append(res)
        new = {**it, "original": {**it["original"], "score": res.original},
               "paraphrases": [{**p, "score": sc} for p, sc in zip(paras, res.paraphrases)]}
        new.pop("figures", None)
        if res.paraphrases:
            new["figures"] = item_figures(res)
        out_items.append(new)
    counts = {**report["counts"], "items": sum(1 for r in results if r.paraphrases),
              "paraphrases": sum(len(r.paraphrases) for r in results),
              "items_without_paraphrases": sum(1 for r in results if not r.paraphrases)}
    return {**report, "metric": scorer.name, "figures": robustness_figures(results),
            "counts": counts, "items": out_items}


def main(argv=None) -> int:
    """`python -m augment.robustness RUN/robustness.json [--metric M] [--write]`: print the
    figures, optionally rescored from the stored answers with another metric."""
    import argparse
    ap = argparse.ArgumentParser(description=main.__doc__.split("\n\n")[0])
    ap.add_argument("report")
    ap.add_argument("--metric", default=None, help="rescore with this metric (default: the report's)")
    ap.add_argument("--labels", nargs="*", default=[], help="label set for label_match")
    ap.add_argument("--paraphrases", default=None,
                    help="keep only the paraphrases whose ids are in this jsonl file")
    ap.add_argument("--write", action="store_true", help="write the rescored report back")
    args = ap.parse_args(argv)
    keep = None
    if args.paraphrases:
        keep = [rec.get("id") for rec in _read_jsonl(args.paraphrases)]
    report = _read_report(args.report)
    if keep is not None:
        stored = {p["id"] for it in report["items"] for p in it["paraphrases"]}
        if not stored & set(keep):
            raise AugtuneError(f"{args.paraphrases}: none of its ids is a paraphrase in "
                               f"{args.report}; give the paraphrases file that run was "
                               "evaluated on (or a subset of it).")
    report = rescore(report, args.metric, args.labels, keep)
    print(summary_line(report))
    if args.write:
        write_report(report, args.report)
    return 0


def _read_text(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise AugtuneError(f"{path}: no such file" + (" (it is a folder)" if p.is_dir() else ""))
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AugtuneError(f"{path}: cannot read it ({exc})") from None


def _read_jsonl(path: str) -> list[dict]:
    out = []
    for n, line in enumerate(_read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            raise AugtuneError(f"{path}:{n}: not JSON ({exc})") from None
        if not isinstance(rec, dict) or "id" not in rec:
            raise AugtuneError(f"{path}:{n}: each line needs an object with an 'id'")
        out.append(rec)
    return out


def _read_report(path: str) -> dict:
    """A robustness.json that `evaluate_robustness` wrote, or one line saying what it is not."""
    try:
        report = json.loads(_read_text(path))
    except ValueError as exc:
        raise AugtuneError(f"{path}: not JSON ({exc}); is the file cut off?") from None
    def answered(entry, *keys):  # what rescore reads from an original or a paraphrase
        return isinstance(entry, dict) and {"answer", *keys} <= set(entry)

    ok = (isinstance(report, dict) and isinstance(report.get("items"), list)
          and all(isinstance(it, dict) and {"id", "reference", "original", "paraphrases"} <= set(it)
                  and answered(it["original"]) and isinstance(it["paraphrases"], list)
                  and all(answered(p, "id") for p in it["paraphrases"])
                  for it in report["items"])
          and {"metric", "counts", "generation"} <= set(report))
    if not ok:
        raise AugtuneError(f"{path} is not a robustness report (robustness.json from a run with "
                           "eval_paraphrases_file set).")
    return report


def item_table(report: dict) -> list[dict]:
    """Per-item figures of a `robustness.json` report, in eval order (items with paraphrases)."""
    return [dict(it["figures"], id=it["id"]) for it in report["items"] if "figures" in it]


def write_report(report: dict, path) -> None:
    """Saved whole or not at all: `--write` replaces a report a kill must not destroy."""
    from .atomic import write_text_atomic
    write_text_atomic(path, json.dumps(report, indent=2, ensure_ascii=False))


def log_figures(report: dict, prefix: str = "robustness_") -> dict:
    """Flat numeric metrics for a trainer log: `robustness_avgp`, ... and the generation time."""
    out = {f"{prefix}{k}": round(v, 6) for k, v in report["figures"].items() if v is not None}
    out[f"{prefix}items"] = report["counts"]["items"]
    out[f"{prefix}seconds"] = report["generation"]["seconds"]
    return out


def summary_line(report: dict) -> str:
    f, c, g = report["figures"], report["counts"], report["generation"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}"  # noqa: E731
    return (f"robustness ({report['metric']}, {c['items']} items x {c['paraphrases']} held-out "
            f"paraphrases): original {pct(f['original'])}, AvgP {pct(f['avgp'])}, worst "
            f"{pct(f['worst'])}, spread {pct(f['spread'])}, PDR {pct(f['pdr'])}%, consistency "
            f"{pct(f['consistency'])} ({g['prompts']} prompts generated in {g['seconds']:.0f} s, "
            f"{g['hit_cap']} hit the {g['max_new_tokens']}-token cap)")


def make_callback(tokenizer, eval_rows, paraphrase_rows, **kwargs):
    """A TrainerCallback that runs `evaluate_robustness` after every evaluation (on the main
    process) and appends the figures to `state.log_history` at that step. (A callback cannot
    reach the reporting integrations, which run before it; the final evaluation in train/sft.py
    logs through `Trainer.log` and does.)"""
    from transformers import TrainerCallback

    class RobustnessCallback(TrainerCallback):
        last_step = None

        def on_evaluate(self, args, state, control, model=None, **_):
            # once per evaluation step: the paraphrase loss eval is a second evaluate() call
            if not state.is_world_process_zero or model is None or self.last_step == state.global_step:
                return
            self.last_step = state.global_step
            report = evaluate_robustness(model, tokenizer, eval_rows, paraphrase_rows, **kwargs)
            state.log_history.append({**log_figures(report), "step": state.global_step})
            print(f"augtune: step {state.global_step}: {summary_line(report)}", flush=True)

    return RobustnessCallback()


if __name__ == "__main__":
    from .cli import run_cli
    run_cli(main)
