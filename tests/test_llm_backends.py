"""LLM backends through the REAL anthropic/openai SDKs against local fake servers, the local
transformers backend on a tiny inline Llama, and (slow) the real embedded SmolLM2 conversion."""

from __future__ import annotations

import asyncio
import json
import time
import traceback

import pytest

from augment.backends import LLM_BACKENDS, make_llm
from augment.backends.batches import run_batch
from augment.backends.llm_anthropic import AnthropicBackend
from augment.backends.llm_local import LocalHFBackend
from augment.backends.llm_openai import OpenAICompatibleBackend
from augment.config import AugmentConfig
from augment.errors import ConfigError, FatalBackendError, RetryableError
from tests.fakes import FakeAnthropicServer, FakeOpenAIServer

CANARY = "sk-ant-CANARY-123"
SYSTEM = "Rewrite the user's request. Reply with a JSON array of 3 paraphrases, nothing else."
USER = "<text>How do I cancel my subscription?</text>"
EXPECTED = ["Could you tell me: how do I cancel my subscription?",
            "I would like to know: how do I cancel my subscription?",
            "Please help with this: how do I cancel my subscription?"]


def cfg_for(backend="anthropic", **kw):
    base = dict(llm_backend=backend, llm_model="claude-haiku-4-5", max_retries=3,
                request_timeout=5.0, augment_methods=["paraphrase"])
    base.update(kw)
    return AugmentConfig(**base)


@pytest.fixture
def fake_anthropic(monkeypatch):
    with FakeAnthropicServer() as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY)
        yield srv


def anthropic_backend(**kw) -> AnthropicBackend:
    # base_delay tiny: only retry-after (when sent) makes a test wait.
    return make_llm(cfg_for(**kw), base_delay=0.001)


def complete(backend, system=SYSTEM, user=USER, **kw):
    async def main():
        try:
            return await backend.complete(system, user, max_tokens=kw.get("max_tokens", 64),
                                          temperature=kw.get("temperature", 0.7),
                                          seed=kw.get("seed"))
        finally:
            await backend.aclose()
    return asyncio.run(main())


# ---- Anthropic Messages ----------------------------------------------------------------------

def test_anthropic_round_trip_through_the_real_sdk(fake_anthropic):
    c = complete(anthropic_backend())
    assert json.loads(c.text) == EXPECTED
    assert c.retries == 0 and c.input_tokens > 0 and c.output_tokens > 0
    assert c.cost_usd == pytest.approx((c.input_tokens * 1 + c.output_tokens * 5) / 1e6)
    (req,) = fake_anthropic.requests
    assert req["path"] == "/v1/messages"
    h = req["headers"]  # the key reaches the server (SDK 2.x sends it as a bearer token)
    assert h.get("x-api-key") == CANARY or h.get("authorization") == f"Bearer {CANARY}"
    body = req["body"]
    assert body["model"] == "claude-haiku-4-5" and body["system"] == SYSTEM
    assert body["messages"] == [{"role": "user", "content": USER}]
    assert body["max_tokens"] == 64 and body["temperature"] == 0.7


def test_429_retry_after_is_honoured_and_counted(fake_anthropic):
    fake_anthropic.script = ["429", "ok"]
    fake_anthropic.retry_after = "0.2"
    t0 = time.monotonic()
    c = complete(anthropic_backend())
    assert time.monotonic() - t0 >= 0.2
    assert c.retries == 1 and fake_anthropic.count("messages") == 2
    assert json.loads(c.text) == EXPECTED


@pytest.mark.parametrize("script", [["529", "529"], ["500"], ["503"], ["drop"],
                                    ["malformed_body"]])
def test_transient_failures_are_retried(fake_anthropic, script):
    fake_anthropic.script = script + ["ok"]
    fake_anthropic.retry_after = "0.01"
    c = complete(anthropic_backend())
    assert c.retries == len(script) and fake_anthropic.count("messages") == len(script) + 1
    assert json.loads(c.text) == EXPECTED


def test_persistent_overload_gives_up_after_max_retries(fake_anthropic):
    fake_anthropic.script = ["529"] * 10
    fake_anthropic.retry_after = "0.01"
    with pytest.raises(RetryableError, match=r"gave up after 2 retries: .*529 overloaded"):
        complete(anthropic_backend(max_retries=2))
    assert fake_anthropic.count("messages") == 3


def test_401_is_fatal_names_the_variable_and_never_leaks_the_key(fake_anthropic):
    fake_anthropic.script = ["401:invalid x-api-key"]
    with pytest.raises(FatalBackendError) as ei:
        complete(anthropic_backend())
    err = ei.value
    assert "ANTHROPIC_API_KEY" in str(err) and "401" in str(err)
    text = str(err) + repr(err) + "".join(traceback.format_exception(err))
    assert CANARY not in text
    assert fake_anthropic.count("messages") == 1  # not retried


@pytest.mark.parametrize("fault,hint", [("400", "invalid request"), ("403", "permission"),
                                        ("404", "llm_model")])
def test_client_errors_are_fatal_without_retries(fake_anthropic, fault, hint):
    fake_anthropic.script = [fault]
    with pytest.raises(FatalBackendError, match=hint):
        complete(anthropic_backend())
    assert fake_anthropic.count("messages") == 1


def test_timeout_is_retried_then_gives_up_with_a_clear_message(fake_anthropic):
    fake_anthropic.script = ["hang"] * 5
    fake_anthropic.hang_seconds = 3
    with pytest.raises(RetryableError) as ei:
        complete(anthropic_backend(request_timeout=0.3, max_retries=1))
    assert "gave up after 1 retries" in str(ei.value)
    assert "request_timeout=0.3" in str(ei.value)
    assert fake_anthropic.count("messages") == 2


def test_timeout_then_success(fake_anthropic):
    fake_anthropic.script = ["hang", "ok"]
    fake_anthropic.hang_seconds = 3
    c = complete(anthropic_backend(request_timeout=0.3))
    assert c.retries == 1 and json.loads(c.text) == EXPECTED


def test_model_that_rejects_temperature_gets_requests_without_it(fake_anthropic):
    def behaviour(endpoint, index, body):
        if "temperature" in body:
            return "400:`temperature` is deprecated for this model."
        return None
    fake_anthropic.behaviour = behaviour
    backend = anthropic_backend()
    c = complete(backend)
    assert json.loads(c.text) == EXPECTED and backend.send_temperature is False
    assert [("temperature" in r["body"]) for r in fake_anthropic.requests] == [True, False]


def test_content_faults_reach_the_caller_unjudged(fake_anthropic):
    """The backend returns what the model said; judging it is the method's and QC's job."""
    fake_anthropic.script = ["prose_json", "echo", "wrong_count", "empty_reply", "empty",
                             "answer", "malformed_json"]
    b = anthropic_backend()
    texts = [complete(b).text for _ in range(7)]
    assert texts[0].startswith("Sure!") and json.loads(texts[0][texts[0].index("["):
                                                               texts[0].rindex("]") + 1]) == EXPECTED
    assert json.loads(texts[1]) == ["How do I cancel my subscription?"] * 3
    assert len(json.loads(texts[2])) == 2
    assert texts[3] == ""
    assert json.loads(texts[4]) == ["", "", ""]
    assert len(json.loads(texts[5])) == 3 and "cancel" not in texts[5]
    with pytest.raises(ValueError):
        json.loads(texts[6])
    assert fake_anthropic.count("messages") == 7


def test_random_fault_rates_are_survived(fake_anthropic):
    fake_anthropic.fault_rates = {"500": 0.4}
    b = anthropic_backend(max_retries=20)

    async def main():
        return await asyncio.gather(*(b.complete(SYSTEM, USER, max_tokens=8, temperature=0.5)
                                      for _ in range(10)))
    out = asyncio.run(main())
    assert all(json.loads(c.text) == EXPECTED for c in out)
    assert sum(c.retries for c in out) == fake_anthropic.count("messages") - 10 > 0


def test_backend_survives_several_event_loops(fake_anthropic):
    b = anthropic_backend()
    for _ in range(2):
        c = asyncio.run(b.complete(SYSTEM, USER, max_tokens=16, temperature=0.5))
        assert c.retries == 0  # no "event loop is closed" retry on the second loop


def test_rate_limit_applies_to_requests(fake_anthropic):
    b = anthropic_backend(requests_per_minute=600)  # 10/s, burst of 10

    async def main():
        t0 = time.monotonic()
        await asyncio.gather(*(b.complete(SYSTEM, USER, max_tokens=8, temperature=0.5)
                               for _ in range(15)))
        return time.monotonic() - t0
    elapsed = asyncio.run(main())
    assert fake_anthropic.count("messages") == 15
    assert elapsed >= (15 - 10) / 10 * 0.9  # lower bound only


def test_make_llm_without_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        make_llm(cfg_for())
    assert set(LLM_BACKENDS) == {"anthropic", "openai_compatible", "local"}


def test_repr_holds_no_key(fake_anthropic):
    b = anthropic_backend()
    assert CANARY not in repr(b) and CANARY not in str(vars(b))


# ---- Anthropic Message Batches ---------------------------------------------------------------

ITEMS = [(f"id{i}", SYSTEM, f"<text>Question number {i}?</text>", 64, 0.5) for i in range(3)]


class Killed(Exception):
    pass


def test_batch_submit_poll_results_at_half_price(fake_anthropic, tmp_path):
    fake_anthropic.batch_polls = 2
    b = anthropic_backend()
    state = tmp_path / "batch.json"
    out = asyncio.run(b.complete_many(ITEMS, state_path=state, poll_interval=0.01))
    assert list(out) == ["id0", "id1", "id2"]
    for i, (status, comp) in enumerate(out.values()):
        assert status == "succeeded"
        assert json.loads(comp.text)[0] == f"Could you tell me: question number {i}?"
        full = (comp.input_tokens * 1 + comp.output_tokens * 5) / 1e6
        assert comp.cost_usd == pytest.approx(full / 2)
    assert fake_anthropic.count("batch_create") == 1 and not state.exists()
    sent = fake_anthropic.requests[0]["body"]["requests"]
    assert [r["custom_id"] for r in sent] == ["id0", "id1", "id2"]
    assert sent[0]["params"]["temperature"] == 0.5 and sent[0]["params"]["system"] == SYSTEM


def test_batch_resumes_the_same_batch_after_a_kill(fake_anthropic, tmp_path):
    fake_anthropic.batch_polls = 3
    b = anthropic_backend()
    state = tmp_path / "batch.json"
    requests = [(cid, b._params(s, u, m, t)) for cid, s, u, m, t in ITEMS]

    async def killed_sleep(_):
        raise Killed()

    async def first_build():  # the build dies while waiting for the batch
        await run_batch(b._client, requests, state, 0.01, backend=b, sleep=killed_sleep)

    with pytest.raises(Killed):
        asyncio.run(first_build())
    saved = json.loads(state.read_text())
    assert saved["batch_ids"] == ["msgbatch_0001"]
    out = asyncio.run(b.complete_many(ITEMS, state_path=state, poll_interval=0.01))
    assert fake_anthropic.count("batch_create") == 1  # resumed, not paid for twice
    assert all(status == "succeeded" for status, _ in out.values())
    assert not state.exists()


def test_batch_item_failures_are_reported_and_only_they_resubmitted(fake_anthropic, tmp_path):
    outcome = {"id1": "errored", "id2": "expired"}
    fake_anthropic.batch_item_result = lambda cid, params: outcome.get(cid)
    b = anthropic_backend()
    state = tmp_path / "batch.json"
    out = asyncio.run(b.complete_many(ITEMS, state_path=state, poll_interval=0.01))
    assert out["id0"][0] == "succeeded"
    assert out["id1"] == ("errored", "invalid_request_error: injected item error")
    assert out["id2"] == ("expired", "the batch expired before this request was processed")
    failed = [it for it in ITEMS if out[it[0]][0] != "succeeded"]
    outcome.clear()
    again = asyncio.run(b.complete_many(failed, state_path=state, poll_interval=0.01))
    assert fake_anthropic.count("batch_create") == 2
    assert fake_anthropic.requests[-1]["endpoint"] == "batch_results"
    creates = [r for r in fake_anthropic.requests if r["endpoint"] == "batch_create"]
    assert [r["custom_id"] for r in creates[1]["body"]["requests"]] == ["id1", "id2"]
    assert {k: v[0] for k, v in again.items()} == {"id1": "succeeded", "id2": "succeeded"}


def test_batch_state_for_other_requests_is_not_reused(fake_anthropic, tmp_path):
    state = tmp_path / "batch.json"
    state.write_text(json.dumps({"version": 1, "fingerprint": "other", "chunk_size": 100000,
                                 "batch_ids": ["msgbatch_9999"]}))
    out = asyncio.run(anthropic_backend().complete_many(ITEMS[:1], state_path=state,
                                                        poll_interval=0.01))
    assert out["id0"][0] == "succeeded" and fake_anthropic.count("batch_create") == 1


def test_batch_transient_errors_on_the_batch_api_are_retried(fake_anthropic, tmp_path):
    fake_anthropic.script = {"batch_create": ["529"], "batch_retrieve": ["500"]}
    fake_anthropic.retry_after = "0.01"
    out = asyncio.run(anthropic_backend().complete_many(ITEMS[:2], state_path=tmp_path / "s.json",
                                                        poll_interval=0.01))
    assert [v[0] for v in out.values()] == ["succeeded", "succeeded"]
    assert fake_anthropic.count("batch_create") == 2


def test_batch_submission_without_a_clear_answer_is_not_sent_twice(fake_anthropic, tmp_path):
    """A 500 or a timeout on submitting a batch may come after the API accepted (and will bill)
    it: no second submission, a stop that says where to look (429/529 are retried, above)."""
    for fault in ("500", "hang"):
        fake_anthropic.script = {"batch_create": [fault]}
        fake_anthropic.hang_seconds = 3
        before = fake_anthropic.count("batch_create")
        with pytest.raises(FatalBackendError, match=r"may have accepted it and will bill it.*"
                                                    r"Anthropic console"):
            asyncio.run(anthropic_backend(request_timeout=1.0).complete_many(
                ITEMS[:2], state_path=tmp_path / f"{fault}.json", poll_interval=0.01))
        assert fake_anthropic.count("batch_create") == before + 1, fault


def test_batch_rejects_bad_custom_ids(fake_anthropic, tmp_path):
    with pytest.raises(ValueError, match="custom_id"):
        asyncio.run(anthropic_backend().complete_many([("bad id!", "s", "u", 8, 0.5)],
                                                      state_path=tmp_path / "s.json"))
    assert fake_anthropic.count() == 0


# ---- OpenAI-compatible -----------------------------------------------------------------------

@pytest.fixture
def fake_openai(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with FakeOpenAIServer() as srv:
        yield srv


def test_openai_compatible_round_trip_without_key(fake_openai):
    b = make_llm(cfg_for("openai_compatible", llm_model="qwen2.5-0.5b-instruct",
                         llm_base_url=fake_openai.base_url), base_delay=0.001)
    assert isinstance(b, OpenAICompatibleBackend)
    c = complete(b, seed=11)
    assert json.loads(c.text) == EXPECTED and c.retries == 0 and c.input_tokens > 0
    assert float(c.cost_usd) == 0.0 and c.cost_usd.known is False  # no price for this model
    (req,) = fake_openai.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == "Bearer not-needed"
    assert req["body"]["seed"] == 11 and req["body"]["temperature"] == 0.7
    assert req["body"]["messages"] == [{"role": "system", "content": SYSTEM},
                                       {"role": "user", "content": USER}]


def test_openai_compatible_retries_and_fatal(fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)  # from the environment this time
    monkeypatch.setenv("OPENAI_API_KEY", "sk-CANARY-456")
    fake_openai.script = ["429", "drop", "ok", "401"]
    fake_openai.retry_after = "0.2"
    b = make_llm(cfg_for("openai_compatible", llm_model="m"), base_delay=0.001)
    t0 = time.monotonic()
    c = complete(b)
    assert c.retries == 2 and time.monotonic() - t0 >= 0.2
    with pytest.raises(FatalBackendError, match="OPENAI_API_KEY") as ei:
        complete(b)
    assert "sk-CANARY-456" not in str(ei.value) + repr(ei.value)


def test_openai_compatible_needs_a_base_url(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="llm_base_url"):
        make_llm(cfg_for("openai_compatible", llm_model="m"))


# ---- local transformers ----------------------------------------------------------------------

def test_local_backend_is_seeded_and_replayable(tiny_model_dir):
    b = make_llm(cfg_for("local", llm_model=tiny_model_dir), device="cpu")
    assert isinstance(b, LocalHFBackend)

    async def main():
        out = []
        for seed in (7, 7, 8):
            out.append(await b.complete(SYSTEM, "How do I cancel?", max_tokens=12,
                                        temperature=1.0, seed=seed))
        out.append(await b.complete(SYSTEM, "How do I cancel?", max_tokens=12, temperature=0))
        return out
    a, a2, c, greedy = asyncio.run(main())
    assert a.text == a2.text and a.text != c.text  # same seed replays; another seed differs
    assert 0 < a.output_tokens <= 12 and a.input_tokens > 10 and a.cost_usd == 0.0
    assert greedy.output_tokens <= 12
    # the global torch RNG is untouched by a seeded call
    import torch
    torch.manual_seed(123)
    x = torch.rand(1)
    torch.manual_seed(123)
    asyncio.run(b.complete("", "hi", max_tokens=2, temperature=1.0, seed=5))
    assert torch.equal(torch.rand(1), x)


def test_local_backend_without_chat_template_is_a_config_error(tiny_model_dir, tmp_path):
    import shutil
    d = tmp_path / "nochat"
    shutil.copytree(tiny_model_dir, d)
    (d / "chat_template.jinja").unlink(missing_ok=True)
    cfg_file = d / "tokenizer_config.json"
    tc = json.loads(cfg_file.read_text())
    tc.pop("chat_template", None)
    cfg_file.write_text(json.dumps(tc))
    b = LocalHFBackend(cfg_for("local", llm_model=str(d)), device="cpu")
    with pytest.raises(ConfigError, match="chat template"):
        asyncio.run(b.complete("", "hi", max_tokens=2, temperature=0))


def test_unknown_embedded_model_is_a_config_error():
    b = LocalHFBackend(cfg_for("local", llm_model="embedded:gpt5"))
    with pytest.raises(ConfigError, match="embedded:smollm2"):
        asyncio.run(b.complete("", "hi", max_tokens=2, temperature=0))


@pytest.mark.slow
def test_embedded_smollm2_conversion_loads_and_answers(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from augment.backends.llm_local import embedded_smollm2_path

    path = embedded_smollm2_path(tmp_path / "smol")
    assert embedded_smollm2_path(tmp_path / "smol") == path  # second call: no reconversion
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temp leftovers
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert tok.chat_template and sum(p.numel() for p in model.parameters()) > 130_000_000
    import json
    assert json.loads((tmp_path / "smol" / "config.json").read_text())["architectures"] == [
        "LlamaForCausalLM"]  # what TRL's loader reads to build the model from the folder
    b = LocalHFBackend(cfg_for("local", llm_model=path), device="cpu")
    c = asyncio.run(b.complete("", "What is the capital of France?", max_tokens=20,
                               temperature=0))
    assert "Paris" in c.text


def test_a_folder_converted_before_the_architecture_was_named_gets_it(tmp_path):
    """Converted folders that predate `architectures` in config.json get it on the next call
    (a plain TRL SFTTrainer given the folder failed on config.architectures[0])."""
    import json

    from augment.backends.llm_local import _DONE_MARKER, embedded_smollm2_path
    folder = tmp_path / "smol"
    folder.mkdir()
    (folder / _DONE_MARKER).write_text("converted\n")
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    assert embedded_smollm2_path(folder) == str(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config == {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8}


def test_local_backend_batches_concurrent_requests(tiny_model_dir):
    """llm_batch_size 4: six concurrent requests take two generate calls, and the same batch
    composition replays the same texts."""
    b = make_llm(cfg_for("local", llm_model=tiny_model_dir, llm_batch_size=4), device="cpu")
    b._load()
    calls = []
    real = b._hf_model.generate

    def counting(**kw):
        calls.append(kw["input_ids"].shape[0])
        return real(**kw)

    b._hf_model.generate = counting

    async def six():
        return await asyncio.gather(*[b.complete("Rewrite.", f"Message number {i} about billing",
                                                 max_tokens=6, temperature=0.8, seed=i) for i in range(6)])

    first = asyncio.run(six())
    assert calls == [4, 2]
    assert all(isinstance(c.text, str) and c.output_tokens <= 6 and c.input_tokens > 0 for c in first)
    second = asyncio.run(six())
    assert [c.text for c in first] == [c.text for c in second]
