"""Anthropic Messages API backend (and Message Batches for bulk builds).

SDK retries are off (`max_retries=0`): `call_with_retries` retries instead, so every backend
counts retries and honours `retry-after` the same way. The SDK reads ANTHROPIC_BASE_URL by
itself (tests point it at a fake server), so no base URL is passed here. The key is read from
ANTHROPIC_API_KEY, handed to the client, and never kept on this object or put in a message.

Temperature: anthropic SDK >= 1.0 removed `temperature` from `messages.create()` (the API still
takes it for models that support sampling options), so it travels in `extra_body`. Models newer
than Opus 4.6 reject it with a 400; then this backend stops sending it, logs a warning once,
and repeats the request, so a config written for older models keeps working.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from ..errors import ConfigError, FatalBackendError, RetryableError
from ..types import Completion
from .limits import (ConnectionBreaker, LoopLocal, RateLimiter, call_with_retries, shared_limiter,
                     classify_http_error, connect_failure, estimate_tokens,
                     install_log_redaction, is_httpx_connect_error, parse_retry_after,
                     public_url, redact)
from .pricing import cost

logger = logging.getLogger(__name__)

KEY_ENV = "ANTHROPIC_API_KEY"
_API_EXTRA = "pip install 'augtune[api]'"


def import_anthropic():
    try:
        import anthropic
    except ImportError:
        raise ConfigError(f"llm_backend=anthropic needs the anthropic package: {_API_EXTRA}") \
            from None
    return anthropic


def map_anthropic_error(exc: BaseException, *, timeout: float, service: str) -> Exception | None:
    """The RetryableError/FatalBackendError for an anthropic SDK exception, or None when `exc`
    is not a transport/API error (a bug then, which must propagate unchanged)."""
    anthropic = import_anthropic()
    secrets = [os.environ.get(KEY_ENV, "")]
    if isinstance(exc, anthropic.APIStatusError):
        msg = getattr(exc, "api_message", None) or exc.message
        return classify_http_error(exc.status_code, parse_retry_after(exc.response.headers),
                                   redact(str(msg), secrets), key_env=KEY_ENV, service=service)
    if isinstance(exc, anthropic.APITimeoutError):
        return RetryableError(f"{service}: no answer within request_timeout={timeout:g}s "
                              "(raise request_timeout for long outputs)")
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f"{type(cause).__name__}: {cause}" if cause else exc.message
        err = RetryableError(f"{service}: connection error ({redact(detail, secrets)})")
        return connect_failure(err) if is_httpx_connect_error(cause) else err
    if isinstance(exc, (anthropic.APIResponseValidationError, json.JSONDecodeError)):
        return RetryableError(f"{service}: malformed response body from the server")
    return None


def message_text(message) -> str:
    """Concatenated text blocks of a Message (other block kinds are not ours to interpret)."""
    return "".join(getattr(b, "text", "") for b in message.content
                   if getattr(b, "type", None) == "text")


class AnthropicBackend:
    """LLMBackend over `anthropic.AsyncAnthropic`, rate-limited and retried.

    `complete()` is one Messages call; `complete_many()` sends many at half price through the
    Message Batches API (minutes to hours; see `augment.backends.batches`).
    """

    name = "anthropic"

    def __init__(self, cfg, *, base_delay: float = 1.0, max_delay: float = 60.0,
                 limiter: RateLimiter | None = None):
        anthropic = import_anthropic()
        key = os.environ.get(KEY_ENV)
        if not key:
            raise ConfigError(f"llm_backend=anthropic needs {KEY_ENV} in the environment "
                              "(keys are read from the environment only); export it, or use "
                              "llm_backend=local.")
        self.cfg = cfg
        self.model = cfg.llm_model
        self.timeout = float(cfg.request_timeout)
        self.base_delay, self.max_delay = base_delay, max_delay
        self.limiter = limiter or shared_limiter(cfg)  # one per run: judge and methods
        self._sem = LoopLocal(lambda: asyncio.Semaphore(cfg.max_concurrency))
        # One client per event loop: pooled connections belong to the loop that opened them, and
        # the build may run several `asyncio.run` phases with the same backend.
        timeout = self.timeout
        self._clients = LoopLocal(lambda: anthropic.AsyncAnthropic(
            api_key=key, max_retries=0, timeout=timeout))
        self._calls = 0
        self._service = f"anthropic ({self.model})"
        # The SDK's own default when ANTHROPIC_BASE_URL is unset.
        self.base_url = os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"
        from ..config import _check_url
        _check_url("ANTHROPIC_BASE_URL", self.base_url, credentials_allowed=True)
        self.breaker = ConnectionBreaker(f"the Anthropic API at {public_url(self.base_url)}")
        install_log_redaction([key])  # httpx logs request URLs (with any credentials) at INFO
        self.send_temperature = True  # cleared when the model rejects it (see module docstring)

    def __repr__(self) -> str:
        return f"AnthropicBackend(model={self.model!r})"

    @property
    def _client(self):
        """The AsyncAnthropic client of the running event loop."""
        return self._clients.get()

    async def _guarded(self, make_call):
        try:
            return await make_call()
        except Exception as e:  # noqa: BLE001 - narrowed by map_anthropic_error
            mapped = map_anthropic_error(e, timeout=self.timeout, service=self._service)
            if mapped is None:
                raise
        # Raised outside the except block so the SDK exception (whose request carries the key
        # in its headers) is not chained onto ours.
        raise mapped

    def _params(self, system: str, user: str, max_tokens: int, temperature: float) -> dict:
        """Wire-format request (as used by Message Batches): temperature is a plain key."""
        params = dict(model=self.model, max_tokens=int(max_tokens),
                      messages=[{"role": "user", "content": user}])
        if system:
            params["system"] = system
        if self.send_temperature:
            params["temperature"] = float(temperature)
        return params

    def _create_kwargs(self, params: dict) -> dict:
        """SDK kwargs: `temperature` moves into extra_body (not a create() argument in SDK 1.x)."""
        kwargs = dict(params)
        if "temperature" in kwargs:
            kwargs["extra_body"] = {"temperature": kwargs.pop("temperature")}
        return kwargs

    def _temperature_rejected(self, err: Exception, params: dict) -> bool:
        if not (isinstance(err, FatalBackendError) and "temperature" in params
                and "HTTP 400" in str(err) and "temperature" in str(err).lower()):
            return False
        if self.send_temperature:
            logger.warning("%s rejects `temperature`; sending requests without it from now on "
                           "(the model's default sampling applies)", self.model)
        self.send_temperature = False
        return True

    async def complete(self, system: str, user: str, *, max_tokens: int, temperature: float,
                       seed: int | None = None) -> Completion:
        # The Messages API has no seed: `seed` only makes the retry jitter replayable.
        tokens = estimate_tokens(system, user) + int(max_tokens)
        self._calls += 1

        async def attempt():
            await self.limiter.acquire(tokens)
            params = self._params(system, user, max_tokens, temperature)
            async with self._sem.get():
                try:
                    return await self._guarded(
                        lambda: self._client.messages.create(**self._create_kwargs(params)))
                except FatalBackendError as e:
                    if not self._temperature_rejected(e, params):
                        raise
                params = self._params(system, user, max_tokens, temperature)
                return await self._guarded(
                    lambda: self._client.messages.create(**self._create_kwargs(params)))

        message, retries = await call_with_retries(
            attempt, max_retries=self.cfg.max_retries, base_delay=self.base_delay,
            max_delay=self.max_delay, seed=(seed or 0) * 1_000_003 + self._calls,
            breaker=self.breaker)
        return self.to_completion(message, retries)

    def to_completion(self, message, retries: int = 0, *, batch: bool = False) -> Completion:
        usage = message.usage
        in_tok, out_tok = int(usage.input_tokens or 0), int(usage.output_tokens or 0)
        usd = cost(self.model, in_tok, out_tok, override=self.cfg.price_per_mtok or None,
                   batch=batch)
        return Completion(text=message_text(message), input_tokens=in_tok,
                          output_tokens=out_tok, cost_usd=usd, retries=retries,
                          stop_reason=getattr(message, "stop_reason", None))  # "max_tokens": cut

    async def complete_many(self, items, *, state_path: str | os.PathLike | None = None,
                            poll_interval: float = 30.0, keep_state: bool = False) -> dict:
        """Half-price bulk completion through Message Batches.

        items: list of (custom_id, system, user, max_tokens, temperature); custom_id must match
        ^[a-zA-Z0-9_-]{1,64}$ (a sha256 hex cache key fits). Returns {custom_id:
        ("succeeded", Completion) | ("errored" | "expired" | "canceled", reason)}. A call with
        a state_path that records batches (a killed build) first fetches those, and submits
        only what they did not answer, so nothing is paid twice. `keep_state=True`: the
        caller deletes the state (`batches.clear_state`) once it has stored every result.
        Resubmit only the failed ids (a new call).
        """
        from .batches import run_batch

        if state_path is None:
            state_path = Path(self.cfg.augment_cache).with_suffix(".anthropic-batch.json")
        requests = [(cid, self._params(system, user, max_tokens, temperature))
                    for cid, system, user, max_tokens, temperature in items]
        return await run_batch(self._client, requests, state_path, poll_interval,
                               backend=self, keep_state=keep_state)

    async def aclose(self) -> None:
        """Close the running loop's client (clients of finished loops died with them)."""
        await self._clients.pop_close()

    #: Closing the loop's client is all a pass has to release: the backend (its rate limiter)
    #: stays usable from the next event loop.
    release_loop = aclose
