"""The checker: embeds each distinct text once, runs the rules per method, asks the judge about
requests, and adds the set-level checks: near-duplicate siblings, and, for a caller that passes
`other_originals`, a candidate that repeats another row's original. The build and the rescore
pass none: one cache serves runs and ablations over different rows, so a verdict must not
depend on which other rows a run holds.

One entry point for every caller that stores verdicts: `make_checker(run_cfg)` builds the
checker from the run's config (every QC knob, see `settings.RUN_FIELDS`) and
`judge_candidates(checker, items)` judges stored or fresh candidates, so a build and a rescore
of the same cache give the same verdicts.
"""

from __future__ import annotations

import hashlib
import io
import json
import tokenize
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from . import embed as _embed
from .features import _Features, _features
from .rules import (ENGLISH_ONLY, english_checks_on, norm, outputs_reasons, paraphrase_reasons,
                    refusal_reasons, sim_reason)
from .settings import METHODS, PARAPHRASE_LIKE, SEED_SIM_MAX, SEED_SIM_MIN, QualityConfig
from .words import _WORD

_HERE = Path(__file__).resolve().parent
#: Modules whose code decides a verdict. Their tokens (comments and blank lines dropped, so a
#: reworded comment does not invalidate every cache) go into the fingerprint: a changed rule, word
#: list or threshold default changes it, with no version number to remember to bump.
RULE_MODULES = ("words.py", "features.py", "rules.py", "roles.py", "embed.py", "checker.py",
                "judges.py", "attention.py", "cross.py")


def normalise_method(method: str | None) -> str:
    m = "paraphrase" if method is None else method.strip().lower().replace("_", ":")
    if m not in METHODS:
        raise ValueError(f"unknown augmentation method {method!r}: use one of {METHODS} or None.")
    return m


def _code_tokens(path: Path) -> str:
    """The module's tokens without comments and layout-only newlines (stable across Python
    versions, unlike bytecode or `ast.dump`)."""
    skip = (tokenize.COMMENT, tokenize.NL)
    toks = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    return " ".join(t.string for t in toks if t.type not in skip)


_RULES_DIGEST: str | None = None


def rules_digest() -> str:
    """sha256 over the code and data of every module in `RULE_MODULES`."""
    global _RULES_DIGEST
    if _RULES_DIGEST is None:
        h = hashlib.sha256()
        for name in RULE_MODULES:
            h.update(name.encode() + b"\0" + _code_tokens(_HERE / name).encode() + b"\0")
        _RULES_DIGEST = h.hexdigest()
    return _RULES_DIGEST


class QualityChecker:
    """Scores (original, augmented) pairs; one instance holds one config and model.

    `config` is a `QualityConfig` or the run's `AugmentConfig` (taken whole: every QC field of
    it is read). The model is resolved lazily unless one is passed in, so constructing a
    checker is free; `judge` (optional) replaces the default judge for `config.judge`.
    """

    def __init__(self, config: Any = None, model: Any = None, judge: Any = None) -> None:
        if config is None:
            config = QualityConfig()
        elif not isinstance(config, QualityConfig):
            config = QualityConfig.from_run(config)
        self.config = config
        self._model = model
        self._judge = judge

    # -- what a verdict depends on ---------------------------------------------------------
    def fingerprint(self) -> str:
        """Rules' code and data + every setting except where and how fast the model runs
        (+ the judge's weights when a judge is on). Equal fingerprints give equal verdicts."""
        # settings.py's constants that decide verdicts (the seed window, which methods the
        # paraphrase rules judge) are not settings and not in a rule module: hashed here.
        parts = [rules_digest(), self.config.settings(),
                 {"seed_window": [SEED_SIM_MIN, SEED_SIM_MAX],
                  "paraphrase_like": list(PARAPHRASE_LIKE)}]
        if self.config.mode == "project" and self.judge_active:
            parts.append(self.judge.fingerprint())
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def checks_off(self) -> list[str]:
        """English-only checks that `config.language` switched off (empty for English)."""
        if self.config.mode != "project" or english_checks_on(self.config):
            return []
        return list(ENGLISH_ONLY)

    @property
    def judge_active(self) -> bool:
        return self.config.judge != "none" and english_checks_on(self.config)

    @property
    def judge(self):
        if self._judge is None:
            from .judges import make_judge
            self._judge = make_judge(self.config)
        return self._judge

    @property
    def model(self):
        if self._model is None:
            # resolved through the facade so `augment.quality.load_model` stays the one place to
            # patch or wrap the loader
            from .. import quality
            self._model = quality.load_model(self.config.model_name_or_path, self.config.device)
        return self._model

    # -- embeddings --------------------------------------------------------------------------
    def _chunks(self, text: str) -> list[str] | None:
        return _embed.chunks(self.model, text)

    def embed(self, texts: Sequence[str]) -> tuple[dict[str, np.ndarray], set[str]]:
        """Unit embeddings for the distinct texts, in ONE ``encode`` call.
        Returns (text -> vector, set of texts that were chunked as long)."""
        return _embed.embed(self.model, texts, self.config.batch_size)

    # -- scoring -----------------------------------------------------------------------------
    def score_pairs(self, originals: Sequence[str], augmenteds: Sequence[str],
                    method: str | None = None, *, group_ids: Sequence[Any] | None = None,
                    other_originals: Iterable[str] | None = None) -> list[dict]:
        """Score each (original, augmented) pair.

        ``group_ids`` (optional, one per pair): pairs sharing an id are variants of one row; a
        variant with cosine >= ``near_duplicate_threshold`` to an EARLIER variant of the same
        group is rejected. ``other_originals`` (optional): originals of the whole dataset; a
        variant equal (case/space-insensitive) to an original other than its own would
        duplicate that row and is rejected.
        """
        if len(originals) != len(augmenteds):
            raise ValueError(f"score_pairs: {len(originals)} originals but {len(augmenteds)} "
                             "augmented texts.")
        if group_ids is not None and len(group_ids) != len(originals):
            raise ValueError("score_pairs: group_ids must have one id per pair.")
        m = normalise_method(method)
        emb, long_texts = self.embed(list(originals) + list(augmenteds))
        feats: dict[str, _Features] = {}
        if self.config.mode == "project":
            for t in dict.fromkeys(list(originals) + list(augmenteds)):
                feats[t] = _features(t)
        others = {norm(t) for t in other_originals} if other_originals else set()
        results = [self._score_one(o, a, m, emb, feats, long_texts)
                   for o, a in zip(originals, augmenteds)]
        if self.config.mode == "project" and self.judge_active and m in ("paraphrase", "backtranslate"):
            self._ask_judge(originals, augmenteds, results, feats)
        seen_by_group: dict[Any, list[int]] = {}
        for i, (o, a) in enumerate(zip(originals, augmenteds)):
            res = results[i]
            if self.config.mode != "none":
                if others and norm(a) != norm(o) and norm(a) in others:
                    res["reasons"].append("duplicates another row's original")
                if group_ids is not None and m != "templates":  # frames differ by design
                    earlier = seen_by_group.setdefault(group_ids[i], [])
                    for j in earlier:
                        cos = float(emb[a] @ emb[augmenteds[j]])
                        if cos >= self.config.near_duplicate_threshold:
                            res["reasons"].append(f"near-duplicate of variant {j} (cos {cos:.3f})")
                            break
                    earlier.append(i)
            res["is_valid"] = not res["reasons"]
        return results

    def _ask_judge(self, originals, augmenteds, results, feats) -> None:
        """The judge sees every pair the rules accepted: it exists for the instruction-level
        changes the rules cannot see (a dropped constraint, a changed operation, ...). It does
        not ask whether the original reads as a request: augtune's originals are instructions by
        construction, and that test misses imperatives whose verb it does not know ("Clean up
        this list ...", "Forecast next month's traffic ...") and requests without a question
        mark ("what's a good way to memorize the periodic table"), whose meaning changes then
        went unjudged."""
        idx = [i for i, (o, a) in enumerate(zip(originals, augmenteds))
               if not results[i]["reasons"] and a.strip() and not results[i]["long_text"]]
        if not idx:
            return
        pairs = [(originals[i], augmenteds[i]) for i in idx]
        verdicts = self.judge.judge(pairs, feats)
        for i, v in zip(idx, verdicts):
            results[i]["judge_p_changed"] = v["p_changed"]
            if v.get("reason"):
                results[i]["reasons"].append(v["reason"])

    def _score_one(self, o: str, a: str, method: str, emb: dict, feats: dict,
                   long_texts: set) -> dict:
        cfg = self.config
        sim = float(emb[o] @ emb[a])
        ow, aw = _WORD.findall(o), _WORD.findall(a)
        ratio = len(aw) / max(len(ow), 1)
        new_words = {w.lower() for w in aw} - {w.lower() for w in ow}
        res: dict[str, Any] = {
            "semantic_similarity": sim, "is_valid": True, "length_ratio": ratio,
            "unique_words": len(new_words), "reasons": [], "method": method, "mode": cfg.mode,
            "long_text": o in long_texts or a in long_texts,
        }
        if self.checks_off:
            res["checks_off"] = self.checks_off
        if cfg.mode == "none":
            return res
        if cfg.mode == "seed":
            if not SEED_SIM_MIN < sim < SEED_SIM_MAX:
                res["reasons"].append(sim_reason(sim, SEED_SIM_MIN, SEED_SIM_MAX))
            return res
        if not a.strip():
            res["reasons"].append("empty variant")
            return res
        fo, fa = feats[o], feats[a]
        if method in PARAPHRASE_LIKE:
            res["reasons"] = paraphrase_reasons(cfg, fo, fa, sim, ratio, method)
        elif method.startswith("outputs"):
            res["reasons"] = outputs_reasons(cfg, fo, fa, sim, method)
        else:
            res["reasons"] = refusal_reasons(cfg, fa)
        return res

    def measure(self, original: str, augmented: str, method: str | None = None) -> dict:
        return self.score_pairs([original], [augmented], method)[0]

    def check_variant_set(self, original: str, variants: Sequence[str],
                          other_originals: Iterable[str] | None = None,
                          method: str | None = None) -> list[list[str]]:
        """Per-variant reasons for one row, pair checks plus set checks."""
        res = self.score_pairs([original] * len(variants), list(variants), method,
                               group_ids=[0] * len(variants), other_originals=other_originals)
        return [r["reasons"] for r in res]


def make_checker(run_cfg: Any, *, mode: str | None = None, model: Any = None,
                 verdict_store: Any = None) -> QualityChecker:
    """The checker for a run: `run_cfg` (an `AugmentConfig`) is taken whole; `mode` overrides
    `run_cfg.qc` (to judge a cache under every mode with the run's other settings).
    `verdict_store` (qc_judge=llm): where LLM verdicts are kept between runs (`get`/`put`)."""
    override = {"mode": mode} if mode else {}
    cfg = QualityConfig.from_run(run_cfg, **override)
    judge = None
    if cfg.judge == "llm" and cfg.mode == "project":
        from .judges import make_judge
        judge = make_judge(cfg, run_cfg, verdict_store)
    return QualityChecker(cfg, model=model, judge=judge)


def qc_method(method: str, params: dict | None = None) -> str:
    """The method name `score_pairs` expects: outputs variants state their form."""
    if method == "outputs" and params and params.get("variant") in ("brief", "bullets"):
        return f"outputs:{params['variant']}"
    return method


def judge_candidates(checker: QualityChecker, items: Sequence[dict],
                     other_originals: Iterable[str] | None = None) -> list[dict]:
    """Score stored or fresh candidates the same way wherever they come from.

    `items`: dicts with `source` (the original), `text` (the candidate), `method` (cache
    method name), `params` (the request's parameters, e.g. `{"variant": "brief"}`; optional) and
    `group` (the request key: candidates of one request are siblings for the near-duplicate
    check). `other_originals`: every train row's prompt, for the "duplicates another row's
    original" check (the build and the rescore pass none: see the module docstring). Returns one
    `score_pairs` dict per item, in order. Build and rescore both call this, so they cannot
    judge differently.
    """
    out: list[dict | None] = [None] * len(items)
    by_method: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_method.setdefault(qc_method(it["method"], it.get("params")), []).append(i)
    others = list(other_originals) if other_originals is not None else None
    for m, idx in by_method.items():
        scores = checker.score_pairs([items[i]["source"] for i in idx],
                                     [items[i]["text"] for i in idx], m,
                                     group_ids=[items[i].get("group", ("item", i)) for i in idx],
                                     other_originals=others)
        for i, s in zip(idx, scores):
            out[i] = s
    return out  # type: ignore[return-value]
