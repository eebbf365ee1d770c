"""Rate limiter, retry policy, HTTP error classification and pricing (no network)."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from augment.backends.limits import (RateLimiter, backoff_delay, call_with_retries,
                                     classify_http_error, parse_retry_after, redact)
from augment.backends.pricing import Cost, cost, describe, price_for
from augment.errors import AugtuneError, FatalBackendError, RetryableError


class VirtualClock:
    """Time that only moves when someone sleeps: exact, instant rate-limit tests."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    async def sleep(self, s):
        self.sleeps.append(s)
        self.now += s
        await asyncio.sleep(0)


# ---- RateLimiter ----------------------------------------------------------------------------

def _grant_times(limiter, clock, n, tokens=0):
    async def main():
        times = []
        for _ in range(n):
            await limiter.acquire(tokens)
            times.append(clock())
        return times
    return asyncio.run(main())


def _max_in_window(times, w):
    return max(sum(1 for t in times if s <= t < s + w - 1e-9) for s in times)


def test_request_limiter_spacing_virtual_clock():
    clock = VirtualClock()
    lim = RateLimiter(requests_per_minute=600, clock=clock, sleep=clock.sleep)  # 10/s, burst 10
    times = _grant_times(lim, clock, 50)
    assert times[:10] == [0.0] * 10                   # the one-second burst
    # Over any window W at most rate * (W + burst_seconds) pass: 20 per 1 s, 40 per 3 s ...
    assert _max_in_window(times, 1.0) == 19           # 10 at t=0, then 0.1, ..., 0.9
    assert _max_in_window(times, 3.0) <= 10 * (3 + 1)
    assert _max_in_window(times[10:], 1.0) == 10      # ... and 10 per second once it is steady
    assert times[-1] == pytest.approx((50 - 10) / 10)  # then exactly 10 per second


def test_token_limiter_with_requests_bigger_than_the_bucket():
    clock = VirtualClock()
    lim = RateLimiter(tokens_per_minute=6000, clock=clock, sleep=clock.sleep)  # 100 tok/s, cap 100
    times = _grant_times(lim, clock, 4, tokens=250)  # each request exceeds the bucket
    assert times[0] == 0.0                            # a full bucket lets even a big one through
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(g == pytest.approx(2.5) for g in gaps)  # then it pays its debt: 250 tok / 100 tok/s


def test_both_limits_the_slower_one_wins():
    clock = VirtualClock()
    lim = RateLimiter(requests_per_minute=6000, tokens_per_minute=600, clock=clock,
                      sleep=clock.sleep)  # 100 req/s but only 10 tok/s
    times = _grant_times(lim, clock, 5, tokens=10)
    assert times[-1] >= 4 * 1.0 - 1e-9


def test_unlimited_limiter_never_sleeps():
    clock = VirtualClock()
    lim = RateLimiter(None, None, clock=clock, sleep=clock.sleep)
    _grant_times(lim, clock, 1000, tokens=10_000)
    assert clock.sleeps == []


def test_limiter_real_clock_and_concurrent_waiters_and_reuse_across_loops():
    lim = RateLimiter(requests_per_minute=1200)  # 20/s, burst 20

    async def burst(n):
        t0 = time.monotonic()
        stamps = []

        async def one():
            await lim.acquire()
            stamps.append(time.monotonic() - t0)
        await asyncio.gather(*(one() for _ in range(n)))
        return sorted(stamps)

    stamps = asyncio.run(burst(30))
    assert len(stamps) == 30
    assert stamps[-1] >= (30 - 20) / 20 * 0.95       # lower bound only: 10 beyond the burst
    assert sum(1 for s in stamps if s < 0.2) <= 20 + 0.2 * 20 + 1
    # Same limiter in a second event loop (build, then eval): must not trip on a bound lock.
    assert len(asyncio.run(burst(3))) == 3


def test_limiter_rejects_nonsense_rates():
    with pytest.raises(ValueError):
        RateLimiter(requests_per_minute=0)


# ---- call_with_retries ----------------------------------------------------------------------

def _flaky(errors, result="ok"):
    calls = {"n": 0}

    async def fn():
        calls["n"] += 1
        if errors:
            raise errors.pop(0)
        return result
    return fn, calls


@pytest.mark.reliability
def test_retries_are_counted_and_backoff_is_seeded_full_jitter():
    clock = VirtualClock()
    fn, calls = _flaky([RetryableError("a"), RetryableError("b"), RetryableError("c")])
    result, retries = asyncio.run(call_with_retries(fn, max_retries=5, base_delay=1.0,
                                                    max_delay=3.0, seed=7, sleep=clock.sleep))
    assert (result, retries, calls["n"]) == ("ok", 3, 4)
    caps = [1.0, 2.0, 3.0]  # base * 2**k capped at max_delay
    assert all(0 <= d <= c for d, c in zip(clock.sleeps, caps))
    clock2 = VirtualClock()
    fn, _ = _flaky([RetryableError("a"), RetryableError("b"), RetryableError("c")])
    asyncio.run(call_with_retries(fn, max_retries=5, base_delay=1.0, max_delay=3.0, seed=7,
                                  sleep=clock2.sleep))
    assert clock2.sleeps == clock.sleeps  # same seed, same delays
    clock3 = VirtualClock()
    fn, _ = _flaky([RetryableError("a"), RetryableError("b"), RetryableError("c")])
    asyncio.run(call_with_retries(fn, max_retries=5, base_delay=1.0, max_delay=3.0, seed=8,
                                  sleep=clock3.sleep))
    assert clock3.sleeps != clock.sleeps


@pytest.mark.reliability
def test_retry_after_is_a_floor():
    clock = VirtualClock()
    fn, _ = _flaky([RetryableError("429", retry_after=5.0), RetryableError("429", 0.5)])
    _, retries = asyncio.run(call_with_retries(fn, max_retries=3, base_delay=0.01, seed=0,
                                               sleep=clock.sleep))
    assert retries == 2
    assert clock.sleeps[0] >= 5.0 and clock.sleeps[1] >= 0.5


def test_retry_after_real_sleep_waits_at_least_that_long():
    fn, _ = _flaky([RetryableError("429", retry_after=0.2)])
    t0 = time.monotonic()
    _, retries = asyncio.run(call_with_retries(fn, max_retries=2, base_delay=0.001))
    assert retries == 1 and time.monotonic() - t0 >= 0.2


@pytest.mark.reliability
def test_gives_up_after_max_retries_with_the_last_error():
    clock = VirtualClock()
    fn, calls = _flaky([RetryableError(f"boom {i}") for i in range(10)])
    with pytest.raises(RetryableError, match=r"gave up after 2 retries: boom 2") as ei:
        asyncio.run(call_with_retries(fn, max_retries=2, sleep=clock.sleep))
    assert calls["n"] == 3 and ei.value.retries == 2


@pytest.mark.reliability
def test_fatal_and_unexpected_errors_are_not_retried():
    clock = VirtualClock()
    fn, calls = _flaky([FatalBackendError("bad key")])
    with pytest.raises(FatalBackendError):
        asyncio.run(call_with_retries(fn, max_retries=5, sleep=clock.sleep))
    fn, calls2 = _flaky([KeyError("bug")])
    with pytest.raises(KeyError):
        asyncio.run(call_with_retries(fn, max_retries=5, sleep=clock.sleep))
    assert calls["n"] == 1 and calls2["n"] == 1 and clock.sleeps == []


def test_backoff_delay_never_exceeds_cap_without_retry_after():
    import random
    rng = random.Random(0)
    for k in range(12):
        assert 0 <= backoff_delay(k, rng, 1.0, 60.0, None) <= min(60.0, 2 ** k)


# ---- classify_http_error --------------------------------------------------------------------

@pytest.mark.reliability
@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_transient_statuses_are_retryable(status):
    err = classify_http_error(status, "3", "slow down")
    assert isinstance(err, RetryableError) and err.retry_after == 3.0
    assert str(status) in str(err) and "slow down" in str(err)


@pytest.mark.reliability
def test_529_is_called_overloaded():
    assert "overloaded" in str(classify_http_error(529, None, "Overloaded"))


@pytest.mark.parametrize("status,hint", [(400, "invalid request"), (401, "ANTHROPIC_API_KEY"),
                                         (403, "permission denied"), (404, "llm_model"),
                                         (413, "too large"), (422, "unprocessable")])
@pytest.mark.reliability
def test_client_errors_are_fatal_and_say_what_to_do(status, hint):
    err = classify_http_error(status, None, "nope", key_env="ANTHROPIC_API_KEY")
    assert isinstance(err, FatalBackendError) and isinstance(err, AugtuneError)
    assert hint in str(err) and "nope" in str(err)


@pytest.mark.reliability
def test_retry_after_parsing():
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({}) is None and parse_retry_after(None) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 20 < parse_retry_after({"retry-after": future}) <= 31


@pytest.mark.reliability
def test_redact():
    assert redact("key sk-ant-CANARY-123 leaked", ["sk-ant-CANARY-123", ""]) == "key *** leaked"


# ---- pricing ---------------------------------------------------------------------------------

def test_pricing_table_snapshot_override_and_batch_discount():
    c = cost("claude-haiku-4-5", 1_000_000, 1_000_000)
    assert c == pytest.approx(6.0) and c.known
    assert cost("claude-haiku-4-5-20251001", 2_000_000, 0) == pytest.approx(2.0)
    assert cost("claude-sonnet-4-5", 1_000_000, 0, batch=True) == pytest.approx(1.5)
    assert cost("claude-opus-4-1", 0, 1_000_000) == pytest.approx(75.0)
    assert cost("my-model", 1_000_000, 1_000_000, override=[0.5, 1.0]) == pytest.approx(1.5)


def test_unknown_model_costs_zero_with_a_flag():
    c = cost("claude-sonnet-4-6", 1000, 1000)  # not a dated snapshot of a known family
    assert float(c) == 0.0 and isinstance(c, Cost) and c.known is False
    assert price_for("qwen2.5-7b") is None
    assert describe(c) == "price unknown" and describe(cost("claude-haiku-4-5", 1, 1)).startswith("$")


# ---- URL credentials: one rule for public_url and the config's URL check ---------------------

_SECRET_PARAMS = ["key", "api_key", "apikey", "api-key", "x-api-key", "x-goog-api-key", "auth_key",
                  "auth-key", "subscription-key", "token", "access_token", "access-token",
                  "refresh_token", "id_token", "private_token", "client_secret", "secret",
                  "password", "sig", "signature", "code", "X-Amz-Signature",
                  "X-Amz-Security-Token", "X-Amz-Credential", "X-Goog-Signature", "API_KEY",
                  "Client-Secret", "api%5Fkey"]
_ORDINARY_PARAMS = ["api-version", "api_version", "deployment", "model", "region", "format",
                    "lang", "q", "from", "to", "scope", "version", "project", "location", "alt",
                    "stream", "timeout", "user", "max_tokens", "tokenizer", "keyword",
                    "country_code"]


@pytest.mark.parametrize("param", _SECRET_PARAMS)
def test_a_secret_param_is_masked_by_public_url_and_refused_in_the_config(param):
    """public_url (logs, error messages, the cache's failure reasons) and the config's URL check
    used two lists that disagreed: the check let x-goog-api-key, access-token, auth-key and code
    through (and the config saved them), and neither knew client_secret, refresh_token,
    id_token, private_token or the X-Amz-* signature. One rule now: what one masks, the other
    refuses."""
    from augment.backends.limits import is_secret_param, public_url
    from augment.config import ConfigError, _check_url
    assert is_secret_param(param)
    url = f"https://api.example.com/v1?api-version=2024-02-01&{param}=CANARY-77&lang=en"
    assert public_url(url) == \
        f"https://api.example.com/v1?api-version=2024-02-01&{param}=***&lang=en"
    with pytest.raises(ConfigError, match=r"^llm_base_url carries credentials") as info:
        _check_url("llm_base_url", url)
    assert "CANARY" not in str(info.value) and "\n" not in str(info.value)
    _check_url("OPENAI_BASE_URL", url, credentials_allowed=True)  # the environment may hold keys


@pytest.mark.parametrize("param", _ORDINARY_PARAMS)
def test_ordinary_base_url_params_are_neither_masked_nor_refused(param):
    """Azure / OpenAI-compatible servers need api-version (and deployment, model...) in the
    base URL: those stay in messages and are allowed in the config."""
    from augment.backends.limits import is_secret_param, public_url
    from augment.config import _check_url
    assert not is_secret_param(param)
    url = f"https://api.example.com/v1?{param}=2024-02-01"
    assert public_url(url) == url
    _check_url("llm_base_url", url)


@pytest.mark.parametrize("text,shown", [
    # the reported case: the userinfo regex ran on to the e-mail's "@", dropping host and field
    ('{"url":"http://localhost:8000","contact":"ops@example.com"}',
     '{"url":"http://localhost:8000","contact":"ops@example.com"}'),
    ("{'url': 'http://localhost:8000', 'contact': 'ops@example.com'}",
     "{'url': 'http://localhost:8000', 'contact': 'ops@example.com'}"),
    ('{"base_url": "http://u:pw-CANARY@h:1/v1?api-version=1&api-key=K-CANARY", "by": "a@b.c"}',
     '{"base_url": "http://***@h:1/v1?api-version=1&api-key=***", "by": "a@b.c"}'),
    # log lines
    ("INFO HTTP Request: POST http://localhost:8000/v1/chat user=ops@example.com",
     "INFO HTTP Request: POST http://localhost:8000/v1/chat user=ops@example.com"),
    ('host=http://localhost:8000,owner=ops@example.com',
     'host=http://localhost:8000,owner=ops@example.com'),
    ("<http://localhost:8000><ops@example.com>", "<http://localhost:8000><ops@example.com>"),
    ("[http://localhost:8000](mailto:ops@example.com)",
     "[http://localhost:8000](mailto:ops@example.com)"),
    ('DEBUG "GET /v2/translate?auth_key=dl-CANARY&text=hi HTTP/1.1" 200',
     'DEBUG "GET /v2/translate?auth_key=***&text=hi HTTP/1.1" 200'),
    # error messages
    ("connection error: http://alice:s3cret-CANARY@localhost:8000/v1 refused; ask ops@example.com",
     "connection error: http://***@localhost:8000/v1 refused; ask ops@example.com"),
    ("base_url='http://localhost:8000' (reported by ops@example.com)",
     "base_url='http://localhost:8000' (reported by ops@example.com)"),
    ("presigned https://b.s3.amazonaws.com/o?X-Amz-Date=1&X-Amz-Signature=CANARY expired",
     "presigned https://b.s3.amazonaws.com/o?X-Amz-Date=***&X-Amz-Signature=*** expired"),
    ("oauth redirect http://h/cb#access_token=CANARY&state=s",
     "oauth redirect http://h/cb#access_token=***&state=s"),
    # a value holding a raw "?" must not swallow the secret after it (a review found these
    # unmasked, and the config check let them through)
    ("https://h/p?next=/a?token=CANARY&x=1", "https://h/p?next=/a?token=***&x=1"),
    ("https://h/p?redirect=https://x/cb?key=CANARY", "https://h/p?redirect=https://x/cb?key=***"),
    ("http://localhost:8000/v1?x=1?api_key=CANARY", "http://localhost:8000/v1?x=1?api_key=***"),
    ("http://h/v1;jsessionid=1;token=CANARY", "http://h/v1;jsessionid=1;token=***"),
    # ...and a secret holding a raw ";" or "?" is masked whole
    ("http://h/?token=ab;CANARY&x=1", "http://h/?token=***&x=1"),
    ("http://h/?password=ab?CANARY", "http://h/?password=***"),
    ("http://h/?pwd=a;b;CANARY&x=1", "http://h/?pwd=***&x=1"),
    # a password may hold a raw "@": the userinfo ends at the last "@" before the host
    ("https://user:p@ss-CANARY@host/x?q=1", "https://***@host/x?q=1"),
    ("https://user:p@ss@CANARY@host:8443", "https://***@host:8443"),
])
def test_public_url_masks_credentials_and_leaves_the_text_around_a_url(text, shown):
    from augment.backends.limits import public_url, redact
    assert public_url(text) == shown
    assert redact(text, []) == shown
