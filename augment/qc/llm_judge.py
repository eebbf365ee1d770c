"""The LLM judge (`qc_judge: llm`): the configured LLM backend decides the borderline band.

Why: the head judge is cheap but small; the candidates it is unsure about (head probability in
`qc_judge_band`) go to a real model with a versioned prompt asking whether the candidate asks
for exactly the same thing. Everything at or above the band is rejected on the head's word,
everything below it accepted, so only the band costs requests. The band replaces the head's own
threshold: it should straddle it (the default does).

Verdicts are kept in a `store` (anything with `get(key) -> dict | None` and `put(key, dict)`),
keyed by `verdict_key(prompt version and text, backend, model, original, candidate, the
server's URL hashed)`: a rerun with the same store sends no request, and an edited prompt or
another server behind the same model name asks again even if the version was not bumped.
The default store is a dict in memory; a build passes one backed by its cache. A request that
fails (after the backend's own retries) or an answer that is not the JSON verdict
REJECTS the candidate with the reason, and is not stored, so the next build asks again (it
reopens such rejections before judging): no silent acceptance of unjudged text. A
`FatalBackendError` (a bad key, no credit, a model the server does not know) is raised instead:
every other request would fail alike, and a build that went on would reject the whole band: no
new request is sent after it, the ones in flight end (their verdicts are stored), and the build
stops with it; its candidates are judged by the next build.

One backend serves every pass of a judge (built on the first request): its rate limiter then
paces all of the judge's requests, and a local model loads once. Each verdict request's tokens
and cost are counted on the judge (`spend`) and, when the store can (`record_spend`), kept
beside the verdicts, so the build's spend and the cache's totals include them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from typing import Any, Callable, Sequence

from ..errors import FatalBackendError
from ..types import is_cut

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


#: How a candidate the LLM gave no verdict for is rejected; the next build finds these by it
#: and judges them again (`VariantCache.reopen_llm_judge_failures`).
NO_VERDICT = "llm judge gave no verdict"


def _prompt_digest() -> str:
    return hashlib.sha256((SYSTEM + USER).encode()).hexdigest()[:12]


def url_digest(base_url: str | None) -> str | None:
    """A short hash naming the server behind the model, or None for the backend's default: a
    URL can carry credentials, so it never appears in a key, fingerprint or log in clear."""
    if not base_url:
        return None
    return hashlib.sha256(str(base_url).rstrip("/").encode()).hexdigest()[:12]


def verdict_key(backend: str, model: str, original: str, candidate: str,
                base_url: str | None = None) -> str:
    """The store's key of one verdict. `base_url`: another server behind the same model name
    may answer differently, so it asks again (the default endpoint keeps the old keys)."""
    parts = [PROMPT_VERSION, _prompt_digest(), backend, model, original, candidate]
    url = url_digest(base_url)
    if url:
        parts.append(url)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def judge_base_url(run_cfg) -> str | None:
    """The server the run's LLM backend talks to when it is not the backend's default: the
    config's or OPENAI_BASE_URL for openai_compatible, ANTHROPIC_BASE_URL for anthropic."""
    import os
    backend = getattr(run_cfg, "llm_backend", None)
    if backend == "openai_compatible":
        return getattr(run_cfg, "llm_base_url", None) or os.environ.get("OPENAI_BASE_URL")
    if backend == "anthropic":
        return os.environ.get("ANTHROPIC_BASE_URL")
    return None


def request_tokens(original: str, candidate: str, max_tokens: int = 128) -> tuple[int, int]:
    """(input, output) tokens one verdict request is expected to cost, for `--dry-run`: about
    4 characters a token, and a verdict of about 40 tokens (never more than `max_tokens`)."""
    chars = len(SYSTEM) + len(USER.format(original=original, candidate=candidate))
    return chars // 4 + 1, min(40, max_tokens)


def parse_verdict(text: str) -> dict:
    """{"same": bool, "reason": str} from a reply; ValueError if it is not that.

    Every '{' is tried as the start of a JSON object (`raw_decode`), so braces in an aside after
    the verdict or in a reasoning block before it do not spoil it. The LAST object with a
    boolean "same" wins: a reasoning model may draft or quote a verdict while thinking, and its
    answer is what it writes last."""
    text = text or ""
    decoder, found, any_object = json.JSONDecoder(), None, False
    at = text.find("{")
    while at != -1:
        try:
            obj, _ = decoder.raw_decode(text, at)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            any_object = True
            if isinstance(obj.get("same"), bool):
                found = obj
        at = text.find("{", at + 1)
    if found is None:
        raise ValueError('the reply has no boolean "same"' if any_object
                         else "no JSON object in the reply")
    return {"same": found["same"], "reason": str(found.get("reason", ""))[:300]}


class LLMJudge:
    """The head judge, plus an LLM for head probabilities inside `band`.

    `llm_factory()` returns a backend (`make_llm(run_cfg)`); it is called once, on the first
    request, and the backend serves every pass: the backends keep their clients per event loop
    (each pass runs in its own), so one rate limiter paces all of the judge's requests and a
    local model loads once. `max_concurrency` (default: the backend config's) caps the verdict
    requests in flight, so a fatal error stops the pass before the rest are sent. `base_url`
    (the server behind the model, if not the backend's default) is part of each verdict's key
    and, hashed, of the fingerprint."""

    def __init__(self, head, band: Sequence[float], llm_factory: Callable[[], Any], *,
                 backend_name: str, model: str, store: Any = None, max_tokens: int = 128,
                 max_concurrency: int | None = None, base_url: str | None = None):
        self.head = head
        self.threshold = head.threshold
        self.band = (float(band[0]), float(band[1]))
        self.llm_factory = llm_factory
        self.backend_name, self.model = backend_name, model
        self.base_url = base_url
        self.store = store if store is not None else _DictStore()
        self.max_tokens = max_tokens
        self.max_concurrency = max_concurrency  # None: the backend's config's (else 8)
        self.requests = 0           # requests sent (for tests and the build's counts)
        self.failures = 0           # requests that gave no verdict
        self.spend = {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0,
                      "cost_known": True, "retries": 0}
        self._backend = None
        self._backend_lock = threading.Lock()

    def fingerprint(self) -> str:
        prompt = _prompt_digest()
        url = url_digest(self.base_url)
        return (f"{self.head.fingerprint()}|llm:{PROMPT_VERSION}:{prompt}:{self.backend_name}:"
                f"{self.model}:{self.band}" + (f":url={url}" if url else ""))

    def key(self, original: str, candidate: str) -> str:
        return verdict_key(self.backend_name, self.model, original, candidate, self.base_url)

    def pending(self, pairs: Sequence[tuple[str, str]], p_changed: Sequence[float]) -> list[int]:
        """Indexes of the pairs a judge pass would send to the LLM: head probability in the band
        and no stored verdict (for `--dry-run`'s count; `p_changed` from `head.judge`)."""
        return [i for i, (pair, p) in enumerate(zip(pairs, p_changed))
                if self.in_band(p) and self.store.get(self.key(*pair)) is None]

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
        todo: dict[str, list[int]] = {}  # key -> the pairs it decides: one request per key
        for i, v in enumerate(out):
            if not self.in_band(v["p_changed"]):
                continue
            key = self.key(*pairs[i])
            cached = self.store.get(key) if key not in todo else None
            if cached is not None:
                self._apply(out[i], cached)
            else:
                todo.setdefault(key, []).append(i)
        if todo:
            asks = [(pairs[idx[0]], key) for key, idx in todo.items()]
            for (_, key), v in zip(asks, _run(self._ask_all(asks))):
                for i in todo[key]:
                    if "error" in v:
                        out[i]["reason"] = f"{NO_VERDICT} ({v['error']}); asked again next build"
                        out[i]["llm"] = None
                    else:
                        self._apply(out[i], v)  # stored by _ask the moment it arrived
        return out

    @staticmethod
    def _apply(res: dict, v: dict) -> None:
        res["llm"] = v
        res["reason"] = None if v["same"] else f"llm judge: {v['reason'] or 'the request changed'}"

    def backend(self):
        """The judge's one backend, built on first use (from any thread)."""
        with self._backend_lock:
            if self._backend is None:
                self._backend = self.llm_factory()
            return self._backend

    async def _ask_all(self, asks):
        """Every ((original, candidate), key), at most `max_concurrency` in flight. Each verdict
        is stored as it arrives (a kill keeps what was paid for). After a fatal error no new
        request goes out; those in flight end (and are stored), then the error is raised."""
        backend = self.backend()
        results: list = [None] * len(asks)
        queue = list(enumerate(asks))[::-1]
        fatal: list[BaseException] = []

        async def worker():
            while queue and not fatal:
                i, ((o, c), key) = queue.pop()
                try:
                    results[i] = await self._ask(backend, o, c, key)
                except FatalBackendError as exc:
                    fatal.append(exc)
        try:
            n = min(_concurrency(backend, self.max_concurrency), len(asks))
            await asyncio.gather(*(worker() for _ in range(n)))
        finally:
            await _release_loop(backend)
        if fatal:
            raise fatal[0]
        return results

    async def _ask(self, backend, original: str, candidate: str, key: str) -> dict:
        self.requests += 1
        try:
            c = await backend.complete(SYSTEM, USER.format(original=original, candidate=candidate),
                                       max_tokens=self.max_tokens, temperature=0.0, seed=0)
        except FatalBackendError:
            raise  # a bad key or no credit: the build stops (see the module docstring)
        except Exception as exc:  # any other failure is recorded on the candidate
            self.failures += 1
            self._count(None, key, exc)
            return {"error": _one_line(exc)}
        try:
            verdict = parse_verdict(c.text)
        except ValueError as exc:
            self.failures += 1
            self._count(c, key, None, ok=False)
            why = _one_line(exc)
            if is_cut(c):  # a reasoning model that ran out of room before its verdict
                why += f"; truncated at max_tokens {self.max_tokens}: raise llm_max_tokens"
            return {"error": why}
        self.store.put(key, verdict)
        self._count(c, key, None, ok=True)
        return verdict

    def _count(self, completion, key: str, exc, ok: bool = False) -> None:
        """Add what one verdict request cost to `spend`, and to the store when it keeps spend
        (`record_spend(key, ok, input, output, cost, cost_known, retries)`)."""
        retries = int(getattr(completion, "retries", 0) or getattr(exc, "retries", 0) or 0)
        i, o = int(getattr(completion, "input_tokens", 0) or 0), \
            int(getattr(completion, "output_tokens", 0) or 0)
        usd = getattr(completion, "cost_usd", 0.0) or 0.0
        known = bool(getattr(usd, "known", True))
        s = self.spend
        s["input_tokens"] += i
        s["output_tokens"] += o
        s["cost_usd"] += float(usd)
        s["cost_known"] = s["cost_known"] and known
        s["retries"] += retries
        record = getattr(self.store, "record_spend", None)
        if record is not None and (completion is not None or retries):
            record(key, ok, i, o, float(usd), known, retries)


def make_llm_judge(head, cfg, run_cfg, store=None) -> LLMJudge:
    """`head` plus the run's LLM backend for the band `cfg.judge_band` (`judges.make_judge`).
    Verdicts get the run's `llm_max_tokens` (a reasoning model thinks before its verdict, and a
    reply cut short is no verdict) and its `max_concurrency`."""
    if run_cfg is None or not hasattr(run_cfg, "llm_backend"):
        from ..errors import ConfigError
        raise ConfigError("qc_judge=llm needs the run's LLM backend settings: build the checker "
                          "with augment.quality.make_checker(aug_cfg).")

    def factory():
        from ..backends import make_llm
        return make_llm(run_cfg)
    return LLMJudge(head, cfg.judge_band, factory, backend_name=run_cfg.llm_backend,
                    model=run_cfg.llm_model, store=store,
                    max_tokens=int(getattr(run_cfg, "llm_max_tokens", 128)),
                    max_concurrency=int(getattr(run_cfg, "max_concurrency", 8)),
                    base_url=judge_base_url(run_cfg))


def _concurrency(backend, wanted: int | None) -> int:
    """Verdict requests in flight at once: `wanted`, else the backend's `max_concurrency`."""
    if wanted is None:
        wanted = getattr(getattr(backend, "cfg", None), "max_concurrency", None) or 8
    return max(1, int(wanted))


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0][:160] if text else ''}"


async def _release_loop(backend) -> None:
    """End a pass: free what the backend holds for this event loop (an API client), keeping the
    backend for the next pass. `release_loop` where the backend has it; else `aclose`."""
    release = getattr(backend, "release_loop", None) or getattr(backend, "aclose", None)
    if release is not None:
        await release()


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
