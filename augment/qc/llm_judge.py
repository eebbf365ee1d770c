"""The LLM judge (`qc_judge: llm`): the configured LLM backend decides the borderline band.

Why: the head judge is cheap but small; the candidates it is unsure about (head probability in
`qc_judge_band`) go to a real model with a versioned prompt asking whether the candidate asks
for exactly the same thing. Everything at or above the band is rejected on the head's word,
everything below it accepted, so only the band costs requests. The band replaces the head's own
threshold: it should straddle it (the default does).

Verdicts are kept in a `store` (anything with `get(key) -> dict | None` and `put(key, dict)`),
keyed by `verdict_key(prompt version and text, backend, model, original, candidate)`: a rerun
with the same store sends no request, and an edited prompt asks again even if its version was
not bumped. The default store is a dict in memory; a build passes one backed by its cache. A
request that fails (after the backend's own retries) or an answer that is not the JSON verdict
REJECTS the candidate with the reason, and is not stored, so the next build asks again (it
reopens such rejections before judging): no silent acceptance of unjudged text. A
`FatalBackendError` (a bad key, no credit, a model the server does not know) is raised instead:
every other request would fail alike, and a build that went on would reject the whole band; the
build stops with it, and what it stored stays (its candidates are judged by the next build).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from typing import Any, Callable, Sequence

from ..errors import FatalBackendError

#: v2 (2026-12-03): names scope and roles, the two kinds the offline judge misses most (role
#: swaps in reworded text pass it even on the training writers' own unseen pairs).
PROMPT_VERSION = "qc-judge-v2"
SYSTEM = (
    "You check training data for a model that follows user requests. You get an ORIGINAL "
    "request and a CANDIDATE rewrite of it. Decide whether the candidate asks for exactly the "
    "same thing: same task and operation, same constraints (length, audience, tone, format, "
    "deadlines), same numbers, names and details, same parts, same scope (not wider or "
    "narrower), same roles and direction (who does what for or to whom: who writes to whom, "
    "who pays, lends or sells to whom, from what to what), same speaker perspective. Wording "
    "and sentence order may differ. Do not answer either request. Reply with one JSON object "
    'and nothing else: {"same": true or false, "reason": "<one short sentence>"}.')
USER = "ORIGINAL:\n{original}\n\nCANDIDATE:\n{candidate}"
_OBJECT = re.compile(r"\{.*\}", re.S)


#: How a candidate the LLM gave no verdict for is rejected; the next build finds these by it
#: and judges them again (`VariantCache.reopen_llm_judge_failures`).
NO_VERDICT = "llm judge gave no verdict"


def _prompt_digest() -> str:
    return hashlib.sha256((SYSTEM + USER).encode()).hexdigest()[:12]


def verdict_key(backend: str, model: str, original: str, candidate: str) -> str:
    blob = json.dumps([PROMPT_VERSION, _prompt_digest(), backend, model, original, candidate])
    return hashlib.sha256(blob.encode()).hexdigest()


def request_tokens(original: str, candidate: str, max_tokens: int = 128) -> tuple[int, int]:
    """(input, output) tokens one verdict request is expected to cost, for `--dry-run`: about
    4 characters a token, and a verdict of about 40 tokens (never more than `max_tokens`)."""
    chars = len(SYSTEM) + len(USER.format(original=original, candidate=candidate))
    return chars // 4 + 1, min(40, max_tokens)


def parse_verdict(text: str) -> dict:
    """{"same": bool, "reason": str} from a reply; ValueError if it is not that."""
    m = _OBJECT.search(text or "")
    if not m:
        raise ValueError("no JSON object in the reply")
    obj = json.loads(m.group(0))
    if not isinstance(obj, dict) or not isinstance(obj.get("same"), bool):
        raise ValueError('the reply has no boolean "same"')
    return {"same": obj["same"], "reason": str(obj.get("reason", ""))[:300]}


class LLMJudge:
    """The head judge, plus an LLM for head probabilities inside `band`.

    `llm_factory()` returns a fresh backend (`make_llm(run_cfg)`); it is built per batch and
    closed after it, because the async clients are bound to the event loop that made them."""

    def __init__(self, head, band: Sequence[float], llm_factory: Callable[[], Any], *,
                 backend_name: str, model: str, store: Any = None, max_tokens: int = 128):
        self.head = head
        self.threshold = head.threshold
        self.band = (float(band[0]), float(band[1]))
        self.llm_factory = llm_factory
        self.backend_name, self.model = backend_name, model
        self.store = store if store is not None else _DictStore()
        self.max_tokens = max_tokens
        self.requests = 0           # requests sent (for tests and the build's counts)
        self.failures = 0

    def fingerprint(self) -> str:
        prompt = _prompt_digest()
        return (f"{self.head.fingerprint()}|llm:{PROMPT_VERSION}:{prompt}:{self.backend_name}:"
                f"{self.model}:{self.band}")

    def pending(self, pairs: Sequence[tuple[str, str]], p_changed: Sequence[float]) -> list[int]:
        """Indexes of the pairs a judge pass would send to the LLM: head probability in the band
        and no stored verdict (for `--dry-run`'s count; `p_changed` from `head.judge`)."""
        return [i for i, (pair, p) in enumerate(zip(pairs, p_changed))
                if self.in_band(p) and self.store.get(
                    verdict_key(self.backend_name, self.model, *pair)) is None]

    def in_band(self, p: float) -> bool:
        return self.band[0] <= p < self.band[1]

    def judge(self, pairs: Sequence[tuple[str, str]], feats: dict) -> list[dict]:
        out = self.head.judge(pairs, feats)
        lo, hi = self.band
        for v in out:  # outside the band the head decides, against the band's edges
            p = v["p_changed"]
            if p >= hi:
                v["reason"] = f"judge: the request likely changed (p={p:.2f} >= {hi:.2f})"
            elif p < lo:
                v["reason"] = None
        ask = [i for i, v in enumerate(out) if self.in_band(v["p_changed"])]
        todo = []
        for i in ask:
            key = verdict_key(self.backend_name, self.model, *pairs[i])
            cached = self.store.get(key)
            if cached is not None:
                self._apply(out[i], cached)
            else:
                todo.append((i, key))
        if todo:
            verdicts = _run(self._ask_all([(pairs[i], key) for i, key in todo]))
            for (i, key), v in zip(todo, verdicts):
                if "error" in v:
                    self.failures += 1
                    out[i]["reason"] = f"{NO_VERDICT} ({v['error']}); asked again next build"
                    out[i]["llm"] = None
                    continue
                self._apply(out[i], v)  # stored by _ask the moment it arrived
        return out

    @staticmethod
    def _apply(res: dict, v: dict) -> None:
        res["llm"] = v
        res["reason"] = None if v["same"] else f"llm judge: {v['reason'] or 'the request changed'}"

    async def _ask_all(self, asks):
        """Every ((original, candidate), key) at once. Each verdict is stored as it arrives (a
        kill keeps what was paid for); a fatal error is raised once every request in flight
        has ended, so their answers are stored too."""
        backend = self.llm_factory()
        try:
            got = await asyncio.gather(*(self._ask(backend, o, c, key) for (o, c), key in asks),
                                       return_exceptions=True)
        finally:
            close = getattr(backend, "aclose", None)
            if close:
                await close()
        for g in got:
            if isinstance(g, BaseException):
                raise g
        return got

    async def _ask(self, backend, original: str, candidate: str, key: str) -> dict:
        self.requests += 1
        try:
            c = await backend.complete(SYSTEM, USER.format(original=original, candidate=candidate),
                                       max_tokens=self.max_tokens, temperature=0.0, seed=0)
            verdict = parse_verdict(c.text)
            self.store.put(key, verdict)
            return verdict
        except FatalBackendError:
            raise  # a bad key or no credit: the build stops (see the module docstring)
        except Exception as exc:  # any other failure is recorded on the candidate
            return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"}


def _run(coro):
    """Run `coro` to completion from sync code, also when called inside a running loop's thread
    (the build scores in `asyncio.to_thread`, which has no loop of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class _DictStore(dict):
    def put(self, key: str, value: dict) -> None:
        self[key] = value
