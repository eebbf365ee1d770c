"""Rate limits, retries and HTTP error classification shared by every API backend.

Why our own and not the SDKs': the anthropic/openai clients each retry in their own way and
do not tell us how often. Doing it here (SDK retries off) lets every backend, LLM or
translation, count retries for the report, honour `retry-after` the same way, and stop at once
on errors that retrying cannot fix (bad key, spend limit) instead of burning the whole build.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import threading
import time
from typing import Awaitable, Callable, Mapping, TypeVar

from ..errors import FatalBackendError, RetryableError

logger = logging.getLogger(__name__)
T = TypeVar("T")


class LoopLocal:
    """One asyncio primitive per event loop. asyncio locks bind to the first loop that waits on
    them; a backend reused across `asyncio.run` calls (build, then eval) must not trip on it."""

    def __init__(self, factory):
        self._factory = factory
        self._items = {}

    def get(self):
        loop = asyncio.get_running_loop()
        item = self._items.get(id(loop))
        if item is None or item[0] is not loop:
            self._items = {k: v for k, v in self._items.items() if not v[0].is_closed()}
            item = self._items[id(loop)] = (loop, self._factory())
        return item[1]

    async def pop_close(self) -> None:
        """Forget the running loop's item and `await item.close()` (for SDK clients)."""
        loop = asyncio.get_running_loop()
        item = self._items.pop(id(loop), None)
        if item is not None and item[0] is loop:
            await item[1].close()


_SHARED: dict = {}  # id(config) -> (weak reference to it, its RateLimiter)
_SHARED_LOCK = threading.Lock()


def shared_limiter(cfg) -> "RateLimiter":
    """The one RateLimiter of a run's provider settings: every API backend built from the same
    config object (the methods' generation and the LLM judge's verdicts, which run at once in
    two threads) draws from it, so together they keep `requests_per_minute` and
    `tokens_per_minute` (apart, each got the whole budget: twice the rate against the
    provider's limit). Another config object gets another limiter."""
    import weakref
    with _SHARED_LOCK:
        for key in [k for k, (ref, _) in _SHARED.items() if ref() is None]:
            del _SHARED[key]  # configs that are gone
        hit = _SHARED.get(id(cfg))
        if hit is not None and hit[0]() is cfg:
            return hit[1]
        limiter = RateLimiter(cfg.requests_per_minute, cfg.tokens_per_minute)
        try:
            _SHARED[id(cfg)] = (weakref.ref(cfg), limiter)
        except TypeError:  # a config that cannot be referenced weakly: its own limiter
            pass
        return limiter


class RateLimiter:
    """Token buckets for requests/minute and tokens/minute; `None` means unlimited.

    Each bucket holds at most `burst_seconds` worth of its rate (at least one request, and at
    least one request's worth of tokens may be borrowed), so over any window of W seconds at
    most `rate * (W + burst_seconds)` units pass: a provider's per-minute limit is respected
    from the first second, not only on average. A request bigger than the token bucket is let
    through when the bucket is full and leaves it in debt, so huge prompts are slowed, never
    blocked forever. Waiters are served in arrival order (one lock), so no request starves.
    """

    def __init__(self, requests_per_minute: float | None = None,
                 tokens_per_minute: float | None = None, *, burst_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        for name, v in (("requests_per_minute", requests_per_minute),
                        ("tokens_per_minute", tokens_per_minute)):
            if v is not None and v <= 0:
                raise ValueError(f"{name}={v} must be positive (or None for unlimited)")
        self._clock, self._sleep = clock, sleep
        self._buckets = []  # [rate_per_s, capacity, level, is_tokens]
        if requests_per_minute:
            r = requests_per_minute / 60.0
            cap = max(1.0, r * burst_seconds)
            self._buckets.append([r, cap, cap, False])
        if tokens_per_minute:
            r = tokens_per_minute / 60.0
            cap = max(1.0, r * burst_seconds)
            self._buckets.append([r, cap, cap, True])
        self._last = clock()
        self._lock = LoopLocal(asyncio.Lock)
        self._thread_lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        dt = max(0.0, now - self._last)
        self._last = now
        for b in self._buckets:
            b[2] = min(b[1], b[2] + b[0] * dt)

    async def acquire(self, tokens: int = 0) -> None:
        if not self._buckets:
            return
        async with self._lock.get():
            while True:
                wait = self._take(tokens)
                if wait <= 0:
                    return
                await self._sleep(wait)

    def _take(self, tokens: int) -> float:
        """Take one request (and `tokens`) if the buckets hold them and return 0, else return
        how long to wait. Under a thread lock: the buckets are shared by every event loop that
        uses this limiter (the LLM judge's passes run in a thread of their own)."""
        with self._thread_lock:
            self._refill()
            wait = 0.0
            for rate, cap, level, is_tokens in self._buckets:
                need = min(float(tokens), cap) if is_tokens else 1.0
                if level < need - 1e-9:  # tolerance: float refill must not spin
                    wait = max(wait, (need - level) / rate)
            if wait <= 0:
                for b in self._buckets:
                    b[2] -= float(tokens) if b[3] else 1.0
            return wait


def backoff_delay(attempt: int, rng: random.Random, base_delay: float, max_delay: float,
                  retry_after: float | None) -> float:
    """Full-jitter exponential backoff: uniform(0, min(max_delay, base * 2**attempt)), but
    never shorter than the server's `retry_after` (the server knows when capacity returns)."""
    cap = min(max_delay, base_delay * (2 ** attempt))
    delay = rng.uniform(0.0, cap)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, retry_after)
    return delay


class ConnectionBreaker:
    """Stops a build that cannot reach its backend at all, instead of retrying every request.

    Nothing listening, a wrong host name or a TLS failure is not transient the way a 529 is: a
    build of 100k requests would otherwise back off and retry each of them `max_retries` times
    (hours) and then report them all as failed. Each backend keeps one breaker; every attempt
    that fails to CONNECT (`RetryableError.connect_failure`) counts, anything else (an answer,
    even an error status, proves the server is there) resets the count. The breaker trips
    when connection failures have run on for `min_seconds` with at least `min_failures` of
    them (concurrent workers pile them up fast), or for `max_seconds` with at least 3 (one
    worker): with the default backoff a dead URL stops the build in about 5-35 s.
    """

    def __init__(self, where: str, *, min_failures: int = 8, min_seconds: float = 5.0,
                 max_seconds: float = 20.0, clock: Callable[[], float] = time.monotonic):
        self.where = where
        self.min_failures, self.min_seconds = min_failures, min_seconds
        self.max_seconds = max_seconds
        self._clock = clock
        self.failures = 0
        self._first: float | None = None

    def reset(self) -> None:
        self.failures, self._first = 0, None

    def failure(self, err: Exception) -> FatalBackendError | None:
        """Count one failed connection; the FatalBackendError to raise when the run is long
        enough to stop the build."""
        now = self._clock()
        if self._first is None:
            self._first = now
        self.failures += 1
        span = now - self._first
        if (span >= self.min_seconds and self.failures >= self.min_failures) or \
                (span >= self.max_seconds and self.failures >= 3):
            return FatalBackendError(
                f"cannot connect to {self.where}: {self.failures} connection attempts in a row "
                f"failed over {span:.0f}s (last: {err}). Is the server running and the URL "
                "right? Finished work is stored; rerun to resume.")
        return None


async def call_with_retries(fn: Callable[[], Awaitable[T]], *, max_retries: int,
                            base_delay: float = 1.0, max_delay: float = 60.0, seed: int = 0,
                            sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                            breaker: ConnectionBreaker | None = None) -> tuple[T, int]:
    """Run `fn()` (a fresh call each attempt), retrying on RetryableError.

    Returns (result, retries). After `max_retries` retries raises
    RetryableError("gave up after N retries: <last error>") with `.retries = N`.
    FatalBackendError and any other exception propagate at once; so does the breaker's
    FatalBackendError once connection failures have run on too long (see ConnectionBreaker).
    """
    rng = random.Random(seed)
    attempt = 0
    while True:
        try:
            out = await fn()
        except RetryableError as e:
            if breaker is not None:
                if getattr(e, "connect_failure", False):
                    fatal = breaker.failure(e)
                    if fatal is not None:
                        raise fatal from None
                else:
                    breaker.reset()
            if attempt >= max_retries:
                err = RetryableError(f"gave up after {attempt} retries: {e}", e.retry_after)
                err.retries = attempt
                raise err from None
            delay = backoff_delay(attempt, rng, base_delay, max_delay, e.retry_after)
            log = logger.info if delay >= 10 else logger.debug
            log("retry %d/%d in %.2fs after: %s", attempt + 1, max_retries, delay, e)
            attempt += 1
            await sleep(delay)
        else:
            if breaker is not None:
                breaker.reset()
            return out, attempt


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms`, `retry-after` (seconds or an HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    return _retry_after_seconds(headers.get("retry-after"))


def _retry_after_seconds(value: str | None) -> float | None:
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


_RETRYABLE = {408: "request timeout", 409: "conflict", 429: "rate limited",
              529: "overloaded"}

_FATAL_HINTS = {
    400: "invalid request; check llm_model and llm_max_tokens, and your account's credit "
         "balance / spend limit",
    401: "authentication failed; check {key}",
    402: "payment required; check billing and the spend limit of the account behind {key}",
    403: "permission denied; the key in {key} lacks access to this model or workspace",
    404: "not found; check llm_model (and the base URL, if you set one)",
    413: "request too large; shorten the inputs or lower llm_max_tokens",
    422: "request rejected as unprocessable; check llm_model and the request parameters",
}


def classify_http_error(status: int, retry_after: str | float | None, message: str, *,
                        key_env: str | None = None, service: str = "LLM backend") -> Exception:
    """Map an HTTP status to RetryableError (transient) or FatalBackendError (stop the build).

    `message` should be the server's error text; callers must not pass anything that could hold
    a secret (request headers). `key_env` names the variable the key came from (never its value).
    """
    ra = retry_after if isinstance(retry_after, (int, float)) or retry_after is None \
        else _retry_after_seconds(retry_after)
    message = (message or "").strip()
    if status in _RETRYABLE or status >= 500:
        what = _RETRYABLE.get(status, "server error")
        hint = f" (retry-after {ra:g}s)" if ra is not None else ""
        return RetryableError(f"{service}: HTTP {status} {what}{hint}: {message}", ra)
    key = key_env or "the API key variable"
    hint = _FATAL_HINTS.get(status, "request refused; retrying will not help")
    return FatalBackendError(f"{service}: HTTP {status} {hint.format(key=key)}. "
                             f"Server said: {message}")


def connect_failure(exc: RetryableError) -> RetryableError:
    """Mark `exc` as a failure to connect at all (refused, DNS, TLS), for ConnectionBreaker."""
    exc.connect_failure = True
    return exc


def is_httpx_connect_error(cause) -> bool:
    """httpx raises ConnectError for refused connections, unknown hosts and TLS handshake
    failures, before any byte of a request was sent; a connection dropped mid-answer is a
    different error (that server is there). Matched by class name: the SDKs may ship their
    own copy of httpx (anthropic's `httpx2`)."""
    return cause is not None and any(c.__name__ == "ConnectError" for c in type(cause).__mro__)


#: Query parameters that carry a key, a token, a password or a signature. One rule, used by
#: `public_url` (masks them in logs, error messages, the cache's failure reasons) and by the
#: config's URL check (refuses a configured URL that has one: the config is saved with the run).
_SECRET_PARAM_NAMES = frozenset({
    "key", "sig", "code", "auth", "jwt", "pass", "passwd", "pwd", "x_goog_credential"})
_SECRET_PARAM_SUFFIXES = ("key", "secret", "token", "signature", "password")
_SECRET_PARAM_PREFIXES = ("x_amz_",)


def is_secret_param(name: str) -> bool:
    """Whether a URL query parameter named `name` carries a secret: API keys (`key`, `api-key`,
    `x-goog-api-key`, `subscription-key`, DeepL's `auth_key`), tokens (`access_token`,
    `refresh_token`, `id_token`, `private_token`), `client_secret`, passwords, signatures (`sig`,
    `X-Goog-Signature`) and every AWS SigV4 `X-Amz-*` parameter. Case-insensitive; "-" and "_"
    are the same; a percent-encoded name is decoded first. Ordinary base-URL parameters
    (`api-version`, `deployment`, `model`, `region`, `format`, `lang`) are not secrets."""
    from urllib.parse import unquote_plus
    n = unquote_plus(name).strip().lower().replace("-", "_")
    return (n in _SECRET_PARAM_NAMES or n.endswith(_SECRET_PARAM_SUFFIXES)
            or n.startswith(_SECRET_PARAM_PREFIXES))


#: user:password@ in a URL. The userinfo ends at the LAST "@" before the host (a password may
#: hold a raw "@"), but it never holds "/", "?", "#" (RFC 3986), whitespace, quotes, ",", "<",
#: ">", brackets or braces: text after a URL ('...:8000","contact":"ops@example.com"') is not
#: part of its userinfo.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s\"'`,<>\[\]{}|\\^]*@")
#: a query (or fragment) parameter and its value; `is_secret_param` decides whether to mask it.
#: The separator is looked behind, not consumed, and a value runs to the next "&", "#" or
#: space, or to a "?" or ";" that starts another `name=`: in "?next=/a?token=S" the value of
#: `next` must not swallow `token` (it did: left unmasked), while "?token=ab;cd" masks all
#: of "ab;cd".
_URL_PARAM = re.compile(r"(?<=[?&#;])([^=&#;?\s\"'<>/]+)="
                        r"((?:(?![?;][^=&#;?\s\"'<>/]+=)[^&#\s\"'<>])+)")


def _mask_param(m: re.Match) -> str:
    return f"{m.group(1)}=***" if is_secret_param(m.group(1)) else m.group(0)


def secret_params(text: str) -> list[str]:
    """The names of the parameters in `text` whose values `public_url` masks."""
    return [m.group(1) for m in _URL_PARAM.finditer(text) if is_secret_param(m.group(1))]


def public_url(text: str) -> str:
    """`text` with the credentials of any URL in it replaced by ***: a base URL taken from the
    environment (OPENAI_BASE_URL, ANTHROPIC_BASE_URL) may carry them, and it names the server
    in error messages, logs and the cache's failure reasons."""
    return _URL_PARAM.sub(_mask_param, _URL_USERINFO.sub(r"\1***@", text))


def redact(text: str, secrets) -> str:
    """Replace every non-empty secret value in `text`, also as a repr would print it (a key
    read with a trailing newline shows up as `...\\n` in an HTTP library's message), and any
    URL's credentials (belt and braces for error messages)."""
    for s in secrets:
        if s and len(s) >= 4:
            for form in sorted({s, repr(s)[1:-1], s.strip()}, key=len, reverse=True):
                if len(form) >= 4:
                    text = text.replace(form, "***")
    return public_url(text)


class RedactingFilter(logging.Filter):
    """Masks URL credentials and the given secrets in every record of a library logger: httpx
    logs each request URL at INFO, urllib3 each query string (DeepL's auth_key=) at DEBUG, and
    the SDKs' *_LOG variables or a caller's basicConfig turn those on."""

    def __init__(self, secrets=()):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: leave it to logging
            return True
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


# A logger's filter sees only the records logged on that logger, not its children's: every
# module logger that can print a URL is listed (urllib3.util.retry logs the retried URL).
_LIBRARY_LOGGERS = ("httpx", "httpcore.http11", "httpcore.http2", "httpcore.connection",
                    "httpcore.proxy", "urllib3.connectionpool", "urllib3.connection",
                    "urllib3.poolmanager", "urllib3.response", "urllib3.util.retry",
                    "anthropic._base_client", "openai._base_client", "anthropic", "openai")


def install_log_redaction(secrets=()) -> None:
    """Add a RedactingFilter (once; its secrets updated) to the HTTP and SDK loggers."""
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        existing = [f for f in logger.filters if isinstance(f, RedactingFilter)]
        if existing:
            existing[0].secrets = sorted({*existing[0].secrets, *[s for s in secrets if s]})
        else:
            logger.addFilter(RedactingFilter(secrets))


def estimate_tokens(*texts: str) -> int:
    """Rough token count (4 characters per token) for rate limiting and dry-run estimates."""
    return sum(len(t) for t in texts if t) // 4 + 1
