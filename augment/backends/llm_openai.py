"""OpenAI-compatible chat completions backend: vLLM, Ollama, llama.cpp server, or OpenAI itself.

Self-hosted servers usually need no key, so OPENAI_API_KEY is optional (a placeholder is
sent). The base URL must be explicit (`llm_base_url` or OPENAI_BASE_URL): silently talking to
api.openai.com when the user meant a local vLLM would spend money they did not plan to.
SDK retries are off; `call_with_retries` does them, as for every backend.
"""

from __future__ import annotations

import asyncio
import json
import os

from ..errors import ConfigError, RetryableError
from ..types import Completion
from .limits import (ConnectionBreaker, LoopLocal, RateLimiter, call_with_retries, shared_limiter,
                     classify_http_error, connect_failure, estimate_tokens,
                     install_log_redaction, is_httpx_connect_error, parse_retry_after,
                     public_url, redact)
from .pricing import cost

KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"


class OpenAICompatibleBackend:
    """LLMBackend over `openai.AsyncOpenAI` pointed at any chat-completions server.

    `seed` is passed through (vLLM and Ollama honour it), so answers can be replayed.
    """

    name = "openai_compatible"

    def __init__(self, cfg, *, base_delay: float = 1.0, max_delay: float = 60.0,
                 limiter: RateLimiter | None = None):
        try:
            import openai
        except ImportError:
            raise ConfigError("llm_backend=openai_compatible needs the openai package: "
                              "pip install 'augtune[api]'") from None
        self._openai = openai
        base_url = cfg.llm_base_url or os.environ.get(BASE_URL_ENV)
        if not base_url:
            raise ConfigError("llm_backend=openai_compatible needs llm_base_url (e.g. "
                              f"http://localhost:8000/v1 for vLLM) or {BASE_URL_ENV} set.")
        if not cfg.llm_base_url:  # the config's was checked when it loaded
            from ..config import _check_url
            _check_url(BASE_URL_ENV, base_url, credentials_allowed=True)
        self.cfg = cfg
        self.model = cfg.llm_model
        self.base_url = base_url
        self.timeout = float(cfg.request_timeout)
        self.base_delay, self.max_delay = base_delay, max_delay
        self.limiter = limiter or shared_limiter(cfg)  # one per run: judge and methods
        self._sem = LoopLocal(lambda: asyncio.Semaphore(cfg.max_concurrency))
        # One client per event loop (pooled connections belong to the loop that opened them).
        key, timeout = os.environ.get(KEY_ENV) or "not-needed", self.timeout
        self._clients = LoopLocal(lambda: openai.AsyncOpenAI(
            base_url=base_url, api_key=key, max_retries=0, timeout=timeout))
        self._calls = 0
        shown = public_url(base_url)  # OPENAI_BASE_URL may carry credentials
        install_log_redaction([os.environ.get(KEY_ENV, "")])  # httpx logs request URLs at INFO
        self._service = f"openai-compatible server {shown} ({self.model})"
        self.breaker = ConnectionBreaker(f"the OpenAI-compatible server at {shown}")

    def __repr__(self) -> str:
        return (f"OpenAICompatibleBackend(model={self.model!r}, "
                f"base_url={public_url(self.base_url)!r})")

    def _map(self, exc: BaseException) -> Exception | None:
        openai, secrets = self._openai, [os.environ.get(KEY_ENV, "")]
        if isinstance(exc, openai.APIStatusError):
            return classify_http_error(exc.status_code, parse_retry_after(exc.response.headers),
                                       redact(str(exc.message), secrets), key_env=KEY_ENV,
                                       service=self._service)
        if isinstance(exc, openai.APITimeoutError):
            return RetryableError(f"{self._service}: no answer within request_timeout="
                                  f"{self.timeout:g}s (raise request_timeout for slow servers)")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            detail = f"{type(cause).__name__}: {cause}" if cause else exc.message
            err = RetryableError(f"{self._service}: connection error "
                                 f"({redact(detail, secrets)}); is the server running?")
            return connect_failure(err) if is_httpx_connect_error(cause) else err
        if isinstance(exc, (openai.APIResponseValidationError, json.JSONDecodeError)):
            return RetryableError(f"{self._service}: malformed response body")
        return None

    async def complete(self, system: str, user: str, *, max_tokens: int, temperature: float,
                       seed: int | None = None) -> Completion:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}]
        params = dict(model=self.model, messages=messages, max_tokens=int(max_tokens),
                      temperature=float(temperature))
        if seed is not None:
            params["seed"] = int(seed)
        tokens = estimate_tokens(system, user) + int(max_tokens)
        self._calls += 1

        async def attempt():
            await self.limiter.acquire(tokens)
            async with self._sem.get():
                try:
                    resp = await self._clients.get().chat.completions.create(**params)
                except Exception as e:  # noqa: BLE001 - narrowed by _map
                    mapped = self._map(e)
                    if mapped is None:
                        raise
                else:
                    if not getattr(resp, "choices", None):
                        raise RetryableError(f"{self._service}: answer without choices")
                    return resp
            raise mapped  # outside `except`: do not chain the SDK error (it holds the request)

        resp, retries = await call_with_retries(
            attempt, max_retries=self.cfg.max_retries, base_delay=self.base_delay,
            max_delay=self.max_delay, seed=(seed or 0) * 1_000_003 + self._calls,
            breaker=self.breaker)
        text = resp.choices[0].message.content or ""
        usage = getattr(resp, "usage", None)
        in_tok = int(getattr(usage, "prompt_tokens", 0) or 0)
        out_tok = int(getattr(usage, "completion_tokens", 0) or 0)
        usd = cost(self.model, in_tok, out_tok, override=self.cfg.price_per_mtok or None)
        return Completion(text=text, input_tokens=in_tok, output_tokens=out_tok, cost_usd=usd,
                          retries=retries,
                          stop_reason=getattr(resp.choices[0], "finish_reason", None))  # "length": cut

    async def aclose(self) -> None:
        await self._clients.pop_close()

    #: Closing the loop's client is all a pass has to release: the backend (its rate limiter)
    #: stays usable from the next event loop.
    release_loop = aclose
