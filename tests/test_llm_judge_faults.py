"""The LLM judge (`qc_judge: llm`) under the faults a review found: its spend in the build's
report and the cache's totals, the dry run's count after unanswered verdicts, long or wordy
replies, one backend (rate limiter, local model) across passes, a fatal error mid-pass, a pair
asked twice in one pass, the judge's API key, and the server behind the model in the key.
Everything goes through the project's fake servers (or a tiny local model)."""

from __future__ import annotations

import json
import asyncio
import contextlib
import threading
import time

import pytest

from augment.config import AugmentConfig, DataConfig
from augment.errors import ConfigError, FatalBackendError
from augment.qc.llm_judge import LLMJudge, parse_verdict
from tests.fakes import FakeAnthropicServer, FakeOpenAIServer
from tests.test_qc_judge import _invoice_rows, _is_verdict, _judge_build, _same_or_paraphrase

VERDICT = json.dumps({"same": True, "reason": "same request"})


class _Head:
    """Every pair inside the band, so every pair goes to the LLM."""
    threshold = 0.5

    def fingerprint(self):
        return "stub"

    def judge(self, pairs, feats):
        return [{"p_changed": 0.5, "reason": None} for _ in pairs]


def _store():
    return type("S", (dict,), {"put": dict.__setitem__})()


def _judge(cfg, **kw):
    from augment.backends import make_llm
    kw.setdefault("backend_name", cfg.llm_backend)
    kw.setdefault("model", cfg.llm_model)
    return LLMJudge(_Head(), [0.15, 0.95], lambda: make_llm(cfg), **kw)


def _verdicts(srv) -> list[dict]:
    return [r for r in srv.requests if _is_verdict(r["body"])]


def test_judge_spend_is_in_the_build_report_and_the_cache_totals(monkeypatch, tmp_path, capsys):
    """Every verdict request is paid (a reply that is no verdict too): the build's spend and
    the cache's totals are what the server billed, and one line says how many were sent and
    how many gave no verdict."""
    from augment.build import build_cache
    from augment.cache import VariantCache

    n = [0]

    def every_other(endpoint, index, body):
        if _is_verdict(body):
            n[0] += 1
            return "malformed_json" if n[0] % 2 else None
    with _judge_build(monkeypatch, tmp_path) as (srv, cfg, rows):
        srv.behaviour = every_other
        rep = build_cache(DataConfig(), cfg, rows, progress=True)
        billed = srv.billed("messages")
        asked = [r for r in billed if _is_verdict(r["body"])]
        failed = sum(1 for r in asked if r["fault"] == "malformed_json")
        assert asked and failed
        assert rep.input_tokens == sum(r["usage"][0] for r in billed)
        assert rep.output_tokens == sum(r["usage"][1] for r in billed)
        assert (rep.judge_requests, rep.judge_failures) == (len(asked), failed)
        totals = VariantCache(cfg.augment_cache).totals()
        assert totals["input_tokens"] == rep.input_tokens
        assert totals["output_tokens"] == rep.output_tokens
        assert totals["judge_requests"] == len(asked)
        assert totals["cost_usd"] == pytest.approx(rep.cost_usd) and 0 < totals["judge_cost_usd"]
        err = capsys.readouterr().err
        assert (f"LLM judge: {len(asked)} verdict requests sent, {failed} gave no verdict"
                in err)


def test_dry_run_counts_the_candidates_the_llm_gave_no_verdict_for(monkeypatch, tmp_path):
    """After a build whose verdict replies were no verdicts, the dry run counts the requests
    the next build sends for them (it reopens those rejections and asks again)."""
    from augment.build import build_cache

    with _judge_build(monkeypatch, tmp_path, verdict_fault="malformed_json") as (srv, cfg, rows):
        first = build_cache(DataConfig(), cfg, rows, progress=False)
        assert first.accepted == 0 and len(_verdicts(srv)) > 0
        srv.behaviour = None
        dry = build_cache(DataConfig(), cfg, rows, progress=False, dry_run=True)
        n = len(srv.requests)
        build_cache(DataConfig(), cfg, rows, progress=False)
        sent = sum(1 for r in srv.requests[n:] if _is_verdict(r["body"]))
        assert dry.judge_requests == sent > 0


@pytest.mark.parametrize("reply", [
    VERDICT + "\n\n(Note: I ignored the {placeholder}.)",
    '<think>Output must be {"same": ..., "reason": ...}.</think>\n' + VERDICT,
    '<think>Maybe {"same": false, "reason": "draft"}; no, on reflection.</think>' + VERDICT,
])
def test_parse_verdict_finds_the_verdict_among_other_braces(reply):
    assert parse_verdict(reply) == {"same": True, "reason": "same request"}


class _CutOpenAIServer(FakeOpenAIServer):
    """A server that stops at max_tokens (4 characters a token) and says so, as llama.cpp and
    vLLM do: finish_reason "length"."""

    def _on_chat(self, h, body, arg, fault):
        self.cut = int(body["max_tokens"]) * 4
        super()._on_chat(h, body, arg, fault)

    def _send_json(self, h, status, obj, headers=None):
        for choice in obj.get("choices", []):
            if len(choice["message"]["content"]) >= self.cut:
                choice["finish_reason"] = "length"
        super()._send_json(h, status, obj, headers)


def _thinking(system, user, body):
    """A reasoning model: ~300 tokens of thought, then the verdict, cut at max_tokens."""
    text = "<think>" + "Compare the two requests word by word. " * 30 + "</think>\n" + VERDICT
    return text[: int(body["max_tokens"]) * 4]


def test_verdicts_get_llm_max_tokens_and_a_cut_reply_says_to_raise_it(monkeypatch):
    """make_judge sends the run's llm_max_tokens (a thinking model then has room for its
    verdict); a reply cut at the limit says so in the candidate's reason."""
    from augment.qc.judges import make_judge
    from augment.quality import QualityConfig

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with _CutOpenAIServer(reply=_thinking) as srv:
        cfg = AugmentConfig(llm_backend="openai_compatible", llm_model="qwen3-8b",
                            llm_base_url=srv.base_url, llm_max_tokens=4096, max_retries=0,
                            augment_methods=["paraphrase"], qc_judge="llm")
        judge = make_judge(QualityConfig.from_run(cfg), cfg, _store())
        judge.head = _Head()
        out = judge.judge([("Summarise this report.", "Give me a summary of this report.")], {})
        assert srv.requests[-1]["body"]["max_tokens"] == 4096
        assert out[0]["reason"] is None and out[0]["llm"]["same"] is True
        short = _judge(cfg, max_tokens=64)
        out = short.judge([("Summarise this report.", "Give me a summary of this report.")], {})
        assert "truncated at max_tokens 64: raise llm_max_tokens" in out[0]["reason"]
        assert short.failures == 1


def test_one_rate_limiter_paces_every_judge_pass(monkeypatch):
    """requests_per_minute=120 (two a second, a burst of two): three passes of two requests
    share the judge's one backend, so the last four wait for the limiter (about 2 s), where a
    backend per pass let every pass burst."""
    with _paced_anthropic(monkeypatch, 120) as (srv, cfg, stamps):
        built = []
        from augment.backends import make_llm
        judge = LLMJudge(_Head(), [0.15, 0.95], lambda: built.append(1) or make_llm(cfg),
                         backend_name="anthropic", model=cfg.llm_model)
        worker = threading.Thread(target=lambda: [judge.judge(
            [(f"orig {b}-{k}", f"cand {b}-{k}") for k in range(2)], {}) for b in range(3)])
        worker.start()   # in a thread of its own, as the build's JudgeThread runs it
        worker.join()
        assert srv.count("messages") == 6 and len(built) == 1
        assert stamps[-1] - stamps[0] >= 1.5


def test_a_local_model_loads_once_for_every_judge_pass(tiny_model_dir):
    cfg = AugmentConfig(llm_backend="local", llm_model=tiny_model_dir, llm_max_tokens=8,
                        augment_methods=["paraphrase"], qc_judge="llm")
    from augment.backends import make_llm
    built = []
    judge = LLMJudge(_Head(), [0.15, 0.95], lambda: built.append(make_llm(cfg)) or built[-1],
                     backend_name="local", model=tiny_model_dir, max_tokens=8)
    models = []
    for b in range(2):
        out = judge.judge([(f"Send the invoice for order {b}.", f"Email me order {b}'s invoice.")],
                          {})
        models.append(built[-1]._hf_model)
        assert out[0]["reason"].startswith("llm judge gave no verdict")  # random weights
    assert len(built) == 1 and models[0] is not None and models[0] is models[1]
    assert "truncated at max_tokens 8" in out[0]["reason"]  # noise up to the limit


def test_a_fatal_error_sends_no_new_request_and_keeps_the_one_in_flight(monkeypatch):
    """max_concurrency 2, twenty pairs: the first answer is a 401. The other request in flight
    ends and its verdict is stored; nothing else is sent; the error is raised."""
    def slow_first(system, user, body):
        if "cand 0" in user:
            time.sleep(1.0)
        return VERDICT

    def behaviour(endpoint, index, body):
        return None if "cand 0" in json.dumps(body) else "401"
    with FakeAnthropicServer(reply=slow_first, behaviour=behaviour) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-revoked")
        cfg = AugmentConfig(llm_backend="anthropic", llm_model="claude-haiku-4-5",
                            max_concurrency=2, augment_methods=["paraphrase"], qc_judge="llm")
        store = _store()
        judge = _judge(cfg, store=store)
        with pytest.raises(FatalBackendError, match="ANTHROPIC_API_KEY"):
            judge.judge([(f"orig {i}", f"cand {i}") for i in range(20)], {})
        assert srv.count("messages") == 2
        assert list(store.values()) == [json.loads(VERDICT)]


def test_the_same_pair_twice_in_a_pass_is_asked_once(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with FakeOpenAIServer(reply=lambda s, u, b: VERDICT) as srv:
        cfg = AugmentConfig(llm_backend="openai_compatible", llm_model="m",
                            llm_base_url=srv.base_url, augment_methods=["paraphrase"],
                            qc_judge="llm")
        judge = _judge(cfg)
        pair = ("Book a table for two at 7pm.", "Reserve a table for 2 people at 7 pm.")
        out = judge.judge([pair, pair], {})
        assert srv.count("chat") == 1 and srv.paid_twice("chat") == 0 and judge.requests == 1
        assert [o["llm"]["same"] for o in out] == [True, True]


def test_a_build_with_the_llm_judge_needs_its_key_before_paying_for_anything(
        monkeypatch, tmp_path):
    """Back-translation through LibreTranslate, the judge on Anthropic without its key: the
    build stops before its first (paid) translation call."""
    from augment.build import build_cache
    from tests.fakes.translate_server import FakeTranslateServer

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with FakeTranslateServer() as tr:
        cfg = AugmentConfig(augment_methods=["backtranslate"], translate_backend="libre",
                            translate_base_url=tr.url, llm_backend="anthropic",
                            llm_model="claude-haiku-4-5", qc_judge="llm",
                            augment_cache=str(tmp_path / "c.sqlite"))
        assert "ANTHROPIC_API_KEY" in cfg.required_api_keys()
        with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
            build_cache(DataConfig(), cfg, _invoice_rows(), progress=False)
        assert tr.count() == 0
    offline = AugmentConfig(augment_methods=["backtranslate"], translate_backend="libre",
                            llm_backend="anthropic", qc_judge="llm", qc="seed")
    assert offline.required_api_keys() == []   # no judge under qc=seed


def test_another_server_behind_the_same_model_name_is_asked_again(monkeypatch):
    """llm_base_url is part of each verdict's key and, hashed, of the judge's fingerprint: a
    store filled by one server is not reused for another, and no URL is written in clear."""
    from augment.qc.judges import make_judge
    from augment.quality import QualityConfig

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    store, pair = _store(), ("Book a table for two.", "Reserve a table for 2.")
    with FakeOpenAIServer(reply=lambda s, u, b: VERDICT) as a, \
            FakeOpenAIServer(reply=lambda s, u, b: VERDICT) as b:
        judges = []
        for srv in (a, a, b):
            cfg = AugmentConfig(llm_backend="openai_compatible", llm_model="m",
                                llm_base_url=srv.base_url, augment_methods=["paraphrase"],
                                qc_judge="llm")
            judge = make_judge(QualityConfig.from_run(cfg), cfg, store)
            judge.head = _Head()
            judge.judge([pair], {})
            judges.append(judge)
        assert (a.count("chat"), b.count("chat")) == (1, 1) and len(store) == 2
        fps = [j.fingerprint() for j in judges]
        assert fps[0] == fps[1] != fps[2]
        for fp in fps:
            assert "127.0.0.1" not in fp and "http" not in fp


def test_the_judge_and_the_methods_share_one_rate_limit(monkeypatch):
    """requests_per_minute=240 (four a second, a burst of four) for a build's generation and its
    LLM judge at once, in two threads as a build runs them: twelve requests through one
    limiter take at least 2 s. Apart, each backend had the whole budget (about 0.5 s here, twice
    the provider's rate)."""
    from augment.backends import make_llm
    from augment.methods import LazyLLM
    with _paced_anthropic(monkeypatch, 240) as (srv, cfg, stamps):
        assert make_llm(cfg).limiter is make_llm(cfg).limiter
        other = AugmentConfig(llm_backend="anthropic", llm_model="claude-haiku-4-5",
                              requests_per_minute=240)
        assert make_llm(other).limiter is not make_llm(cfg).limiter
        gen = LazyLLM(cfg)
        judge = LLMJudge(_Head(), [0.15, 0.95], lambda: make_llm(cfg),
                         backend_name="anthropic", model=cfg.llm_model)
        worker = threading.Thread(target=lambda: [judge.judge(
            [(f"orig {b}-{k}", f"cand {b}-{k}") for k in range(2)], {}) for b in range(3)])

        async def generate():
            await asyncio.gather(*(gen.complete("s", f"u{i}", max_tokens=16, temperature=0.9)
                                   for i in range(6)))
        worker.start()
        asyncio.run(generate())
        worker.join()
        assert srv.count("messages") == 12
        assert stamps[-1] - stamps[0] >= 1.5


@contextlib.contextmanager
def _paced_anthropic(monkeypatch, requests_per_minute: int):
    """A fake Anthropic server that stamps each request's arrival (verdicts for the judge's
    prompt, a JSON list for any other), and a run config paced at `requests_per_minute`."""
    stamps = []

    def reply(system, user, body):
        stamps.append(time.monotonic())
        return VERDICT if "exactly the same" in system else '["x"]'
    with FakeAnthropicServer(reply=reply) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
        yield srv, AugmentConfig(llm_backend="anthropic", llm_model="claude-haiku-4-5",
                                 requests_per_minute=requests_per_minute,
                                 augment_methods=["paraphrase"], qc_judge="llm"), stamps
