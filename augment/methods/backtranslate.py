"""Backtranslation: source -> pivot language -> source, one request per pivot.

The method does not know who translates (offline MT, Google, DeepL, an LLM); it only needs
`translate(text, source, target)`. A round trip that comes back unchanged is a failure with a
reason, never a variant: counting it would train on the original twice while the report claims
augmentation.
"""

from __future__ import annotations

from ..errors import CandidateError, RetryableError
from ..steps import Steps
from ..types import Candidate, Request, Result, Row
from .jsonlist import normalise

PROMPT_VERSION = "backtranslate-v1"
SOURCE_LANG = "en"


class Backtranslate:
    name = "backtranslate"
    field = "prompt"
    prompt_version = PROMPT_VERSION
    multi_call = True  # the build hands run() a Steps store (augment.steps)

    def __init__(self, cfg, backend):
        """`backend` is a translator from `augment.backends.translate.make_translator`."""
        self.cfg = cfg
        self.backend = backend
        self.pivots = list(cfg.translate_pivots)
        # A free local translator (the offline one) costs nothing to ask again: no step writes.
        self.multi_call = not getattr(backend, "free", False)
        # An LLM translator's prompt is part of what it returns: version it in the key.
        version = getattr(backend, "prompt_version", None)
        if version:
            self.prompt_version = f"{PROMPT_VERSION}+{version}"

    def requests(self, rows: list[Row]) -> list[Request]:
        return [Request.make(self.name, self.field, row.prompt, self.backend.name,
                             self.backend.model, self.prompt_version, pivot=pivot,
                             source_lang=SOURCE_LANG)
                for row in rows for pivot in self.pivots]

    async def _translate(self, text, source, target):
        detailed = getattr(self.backend, "translate_completion", None)
        if detailed is None:
            return await self.backend.translate(text, source, target)
        return await detailed(text, source, target)

    async def run(self, request: Request, steps: Steps | None = None) -> Result:
        """Two calls. The first leg's answer is stored as a step as soon as it arrives, so a
        build killed before the way back reuses it instead of paying for it again."""
        p = request.param_dict
        steps = steps or Steps()
        try:
            pivot_text = (await steps.call("pivot", lambda: self._translate(
                request.source, p["source_lang"], p["pivot"]))).text
            if normalise(pivot_text) == normalise(request.source):
                raise CandidateError(f"translation to {p['pivot']!r} returned the source unchanged")
            back = (await steps.call("back", lambda: self._translate(
                pivot_text, p["pivot"], p["source_lang"]))).text
            if not back.strip():
                raise CandidateError("round trip returned an empty text")
            if normalise(back) == normalise(request.source):
                raise CandidateError("round trip returned the source unchanged")
        except (CandidateError, RetryableError) as exc:
            raise steps.charge(exc)  # the legs that answered were billed
        meta = {"pivot": p["pivot"], "pivot_text": pivot_text}
        if steps.reused:
            meta["reused_calls"] = list(steps.reused)
        spend = steps.spend()
        return Result([Candidate(back.strip(), meta=meta)], spend.input_tokens,
                      spend.output_tokens, spend.cost_usd, spend.retries)

    def estimate(self, request: Request) -> tuple[int, int]:
        if getattr(self.backend, "llm", None) is None:  # only an LLM translator bills tokens
            return (0, 0)
        src = len(request.source) // 4 + 1
        return (2 * (src + 60), 2 * (src + 8))
