"""Test doubles of OUR protocols (Method, checker) for the build tests, and runnable builds.

`python tests/build_helpers.py CACHE LOG N_ROWS` runs a build of a slow deterministic method so
that the SIGKILL test can kill it mid-way. Every executed request key is appended to LOG with
O_APPEND (one write per line, atomic for short lines), so the test can tell what ran when.

`python tests/build_helpers.py api CACHE N_ROWS [batches|backtranslate|single]` runs the REAL path instead: the real
methods, the real AnthropicBackend (anthropic SDK, ANTHROPIC_BASE_URL pointing at a fake
server) and the real QualityChecker, whose MiniLM model loads on first use, exactly as
`python -m augment.build` does. Only the retry backoff base is short (a constructor argument).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from augment.config import AugmentConfig, DataConfig  # noqa: E402
from augment.errors import CandidateError, FatalBackendError  # noqa: E402
from augment.types import Candidate, Request, Result, Row  # noqa: E402


def _h(*parts) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


class SlowMethod:
    """A paraphrase-shaped method: deterministic candidates, a seeded delay per request."""

    name = "paraphrase"
    field = "prompt"
    prompt_version = "slow-v1"

    def __init__(self, log: str | None = None, delay: float = 0.02, n: int = 2,
                 fail_sources=(), fatal_sources=(), counter: list | None = None):
        self.log, self.delay, self.n = log, delay, n
        self.fail_sources, self.fatal_sources = set(fail_sources), set(fatal_sources)
        self.counter = counter if counter is not None else []

    def requests(self, rows):
        return [Request.make(self.name, self.field, r.prompt, "fake", "fake-model-1",
                             self.prompt_version, n=self.n) for r in rows]

    async def run(self, request: Request) -> Result:
        await asyncio.sleep(self.delay * (0.5 + (_h(request.key) % 100) / 100))
        self.counter.append(request.key)
        if request.source in self.fatal_sources:
            raise FatalBackendError("anthropic: spend limit reached (fake); raise it in the console")
        if request.source in self.fail_sources:
            raise CandidateError("malformed JSON list")
        if self.log:
            fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (request.key + "\n").encode())
            finally:
                os.close(fd)
        return Result([Candidate(f"{request.source} (variant {i})", meta={"i": i})
                       for i in range(self.n)], input_tokens=40, output_tokens=30,
                      cost_usd=0.0001)

    def estimate(self, request: Request):
        return (40, 30)


class LengthChecker:
    """Deterministic stand-in for QualityChecker (no model): accepts odd-length variants."""

    class config:
        mode = "project"

    def fingerprint(self):
        return "length-checker-v1"

    def score_pairs(self, originals, augmenteds, method=None, group_ids=None, other_originals=None):
        return [{"semantic_similarity": 0.5 + (len(a) % 40) / 100, "is_valid": len(a) % 2 == 1,
                 "length_ratio": len(a) / max(len(o), 1), "unique_words": 2,
                 "reasons": [] if len(a) % 2 == 1 else ["even length"]}
                for o, a in zip(originals, augmenteds)]


def make_rows(n: int) -> list[Row]:
    return [Row(f"r{i}", f"Question number {i}: how do I do thing {i * 7 % 13}?", f"Answer {i}")
            for i in range(n)]


def make_cfg(cache: str, **kw) -> AugmentConfig:
    return AugmentConfig(augment_methods=["paraphrase"], augment_cache=cache,
                         llm_backend="openai_compatible", **kw)


def api_prompts(n: int) -> list[str]:
    """n distinct, natural support questions (deterministic)."""
    verbs = ["change", "cancel", "update", "reset", "export", "delete", "renew", "transfer",
             "verify", "download"]
    things = ["billing address", "subscription", "password", "invoice", "shipping label",
              "account email", "gift card", "order", "profile photo", "payment method"]
    asks = ["How do I", "How can I", "What is the way to", "Where do I go to"]
    return [f"{asks[i % 4]} {verbs[i % 10]} the {things[(i // 10) % 10]} on order {1000 + i}?"
            for i in range(n)]


def api_cfg(cache: str, batches: bool = False, **kw) -> AugmentConfig:
    base = dict(augment_methods=["paraphrase"], augment_cache=cache, llm_backend="anthropic",
                llm_model="claude-haiku-4-5", paraphrase_n=3, max_retries=8,
                request_timeout=5.0, max_concurrency=8, qc="project",
                llm_use_batches=batches, llm_batch_poll_seconds=0.05)
    base.update(kw)
    return AugmentConfig(**base)


# Multi-call requests (augment.steps): backtranslation through the LLM translator on the
# Anthropic API (two calls per request), and `single`-style paraphrases on an OpenAI-compatible
# server (n calls per request, told apart by their seed; OPENAI_BASE_URL from the environment).
MULTI_CALL = {
    "backtranslate": dict(augment_methods=["backtranslate"], translate_backend="llm",
                          translate_pivots=["de"]),
    "single": dict(llm_backend="openai_compatible", llm_model="fake-model",
                   paraphrase_style="single"),
}


def main_api(cache: str, n_rows: int, batches: bool = False, mode: str | None = None):
    from augment.backends import AnthropicBackend, OpenAICompatibleBackend
    from augment.build import build_cache
    from augment.methods import build_methods
    cfg = api_cfg(cache, batches, **MULTI_CALL.get(mode, {}))
    rows = [Row(f"r{i}", p, f"Answer {i}.") for i, p in enumerate(api_prompts(n_rows))]
    backend = OpenAICompatibleBackend if cfg.llm_backend == "openai_compatible" else AnthropicBackend
    methods = build_methods(cfg, llm_factory=lambda c: backend(c, base_delay=0.05, max_delay=0.5))
    return build_cache(DataConfig(), cfg, rows, progress=False, methods=methods)


def main(argv):
    from augment.build import build_cache
    if argv[0] == "api":
        extra = argv[3:4]
        main_api(argv[1], int(argv[2]), batches=extra == ["batches"],
                 mode=extra[0] if extra and extra[0] in MULTI_CALL else None)
        return
    cache, log, n = argv[0], argv[1], int(argv[2])
    cfg = make_cfg(cache, max_concurrency=8)
    build_cache(DataConfig(), cfg, make_rows(n), progress=False,
                methods={"paraphrase": SlowMethod(log=log)}, checker=LengthChecker())


if __name__ == "__main__":
    main(sys.argv[1:])
