"""Method faults a reviewer reproduced: code blocks inside JSON replies, replies cut at
max_tokens, a refused refusal paraphrase, `single` paraphrase cleaning, templates on
instructions, and deep-translator retries and length limits. Servers are the project's fakes,
reached through the real anthropic, openai and deep-translator clients."""

from __future__ import annotations

import asyncio
import json

import pytest

from augment.config import AugmentConfig
from augment.errors import CandidateError
from augment.methods import build_methods
from augment.methods.jsonlist import find_json_list, parse_string_list
from augment.methods.templates import TEMPLATE_NAMES, apply_template, choose, parse
from augment.types import Row
from tests.fakes import FakeAnthropicServer, FakeOpenAIServer, extract_source


def run(coro):
    return asyncio.run(coro)


class CuttingAnthropic(FakeAnthropicServer):
    """The fake Anthropic server, but honouring max_tokens (4 characters a token) the way the
    real API does: the text is cut and stop_reason says "max_tokens"."""

    def _message(self, params, fault):
        m = super()._message(params, fault)
        cap = int(params["max_tokens"]) * 4
        if len(m["content"][0]["text"]) > cap:
            m["content"][0]["text"] = m["content"][0]["text"][:cap]
            m["stop_reason"] = "max_tokens"
            m["usage"]["output_tokens"] = int(params["max_tokens"])
        return m


class CuttingOpenAI(FakeOpenAIServer):
    """The fake OpenAI-compatible server, honouring max_tokens: finish_reason "length"."""

    def _send_json(self, h, status, obj, headers=None):
        if status == 200 and isinstance(obj, dict) and obj.get("choices"):
            body = self.requests[-1]["body"]
            cap = int(body.get("max_tokens") or body.get("max_completion_tokens") or 10**6) * 4
            choice = obj["choices"][0]
            if len(choice["message"]["content"]) > cap:
                choice["message"]["content"] = choice["message"]["content"][:cap]
                choice["finish_reason"] = "length"
        return super()._send_json(h, status, obj, headers)


def _anthropic_cfg(monkeypatch, srv, **kw) -> AugmentConfig:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
    return AugmentConfig(llm_backend="anthropic", llm_model="claude-haiku-4-5", max_retries=0,
                         request_timeout=5.0, **kw)


def _openai_cfg(srv, **kw) -> AugmentConfig:
    return AugmentConfig(llm_backend="openai_compatible", llm_base_url=srv.base_url,
                         llm_model="qwen", max_retries=0, request_timeout=5.0, **kw)


# ---- 1. JSON lists whose strings hold code ---------------------------------------------

CODE_SRC = ("Why does this crash?\n```python\nnames = ['alice', 'bob', 'carol']\n"
            "print(names[3])\n```")
CODE_ITEMS = [CODE_SRC.replace("Why does this crash?", q) for q in
              ("What makes this crash?", "Can you tell me why this code crashes?",
               "Why is this code crashing?")]


@pytest.mark.parametrize("reply", [
    json.dumps(CODE_ITEMS),
    "```json\n" + json.dumps(CODE_ITEMS) + "\n```",
    "Here they are:\n" + json.dumps(CODE_ITEMS) + "\nHope this helps.",
    json.dumps([{"text": t} for t in CODE_ITEMS]),
])
def test_json_list_keeps_code_blocks_inside_items(reply):
    assert parse_string_list(reply, 3, CODE_SRC) == (CODE_ITEMS, [])


def test_json_list_never_takes_a_list_from_inside_a_string():
    cut = json.dumps(CODE_ITEMS)[:-40]  # broken JSON: only the code's own lists would parse
    with pytest.raises(CandidateError, match="no JSON array in reply"):
        find_json_list(cut)
    with pytest.raises(CandidateError, match="no JSON array in reply"):
        find_json_list("Sure! Reset steps: [1] open settings")
    assert find_json_list('Here are [2] rewrites: ["a b", "c d"]') == ["a b", "c d"]


def test_paraphrase_of_code_keeps_the_code(monkeypatch):
    with FakeAnthropicServer(reply=lambda s, u, b=None: json.dumps(CODE_ITEMS)) as srv:
        c = _anthropic_cfg(monkeypatch, srv, augment_methods=["paraphrase"], paraphrase_n=3)
        para = build_methods(c)["paraphrase"]
        res = run(para.run(para.requests([Row("1", CODE_SRC, "")])[0]))
    assert [x.text for x in res.candidates] == CODE_ITEMS and res.problems == []


# ---- 2. replies cut at max_tokens -------------------------------------------------------

LONG_ANSWER = " ".join(f"Step {i}: open the settings page and choose option {i} to continue."
                       for i in range(1, 40))


def _bullets_reply(system, user, body=None):
    if "bulleted" in system:
        return "\n".join("- " + s for s in extract_source(user).split(". "))
    return extract_source(user)


def test_outputs_bullets_cut_at_max_tokens_is_no_variant(monkeypatch):
    with CuttingAnthropic(reply=_bullets_reply) as srv:
        c = _anthropic_cfg(monkeypatch, srv, augment_methods=["outputs"], outputs_backend="llm",
                           outputs_variants=["bullets"], llm_max_tokens=128)
        m = build_methods(c)["outputs"]
        with pytest.raises(CandidateError,
                           match=r"^reply cut at max_tokens=128; raise llm_max_tokens$") as info:
            run(m.run(m.requests([Row("1", "How?", LONG_ANSWER)])[0]))
    assert info.value.completion.output_tokens == 128  # the spend is still reported


def test_llm_backtranslation_leg_cut_at_max_tokens_fails(monkeypatch):
    from tests.fakes.translate_server import fake_translate

    def translate(system, user, body=None):
        return fake_translate(extract_source(user), "x", "en" if "English" in system else "de")
    src = "Please check this file. " + " ".join(f"Row {i} holds a name and an amount."
                                                for i in range(40))
    with CuttingAnthropic(reply=translate) as srv:
        c = _anthropic_cfg(monkeypatch, srv, augment_methods=["backtranslate"],
                           translate_backend="llm", translate_pivots=["de"], llm_max_tokens=128)
        bt = build_methods(c)["backtranslate"]
        with pytest.raises(CandidateError, match="reply cut at max_tokens=128") as info:
            run(bt.run(bt.requests([Row("1", src, "")])[0]))
    assert srv.count("messages") == 1 and info.value.completion.output_tokens == 128


def test_paraphrase_json_cut_on_openai_compatible_server():
    items = json.dumps(["How can I get my password reset now, please?"] * 3)
    with CuttingOpenAI(reply=lambda s, u, b=None: items) as srv:
        para = build_methods(_openai_cfg(srv, augment_methods=["paraphrase"],
                                         llm_max_tokens=8))["paraphrase"]
        with pytest.raises(CandidateError, match=r"reply cut at max_tokens=8; raise"):
            run(para.run(para.requests([Row("1", "How do I reset my password?", "")])[0]))


LONG_MSG = ("My order 4417 arrived with a cracked screen and a missing charger, and the "
            "replacement you sent last week was also damaged. I have photos of both boxes and "
            "the courier's delivery note. I already returned the first one through the portal "
            "on Monday. How do I get a refund to my original card instead of store credit, and "
            "do I need to send the second one back too? The courier reference is ZX-99812.")


def test_single_paraphrase_cap_follows_the_source_not_96(monkeypatch):
    reword = lambda s, u, b=None: "Kindly note: " + u.split("different words:\n", 1)[1]  # noqa
    with CuttingAnthropic(reply=reword) as srv:
        c = _anthropic_cfg(monkeypatch, srv, augment_methods=["paraphrase"], paraphrase_n=1,
                           paraphrase_style="single", llm_max_tokens=512)
        para = build_methods(c)["paraphrase"]
        [req] = para.requests([Row("1", LONG_MSG, "")])
        res = run(para.run(req))
        assert res.candidates[0].text.endswith("ZX-99812.") and res.problems == []
        sent = srv.requests[-1]["body"]["max_tokens"]
        assert 96 < sent < 512
        srv.reply = lambda s, u, b=None: LONG_MSG * 3  # a model that rambles on
        with pytest.raises(CandidateError, match=f"cut at max_tokens={sent}, the cap set from "
                                                 "the source's length"):
            run(para.run(req))
        # The cache key is what it was: llm_max_tokens only.
        assert req.param_dict["max_tokens"] == 512


def test_local_backend_stop_reason_counts_as_cut():
    from augment.types import is_cut
    from augment.types import Completion
    # What augment.backends.llm_local sets when generation used every token it had.
    assert is_cut(Completion("x", stop_reason="max_tokens"))
    assert not is_cut(Completion("x", stop_reason="stop")) and not is_cut(Completion("x"))


# ---- 3. a refusal paraphrase the LLM declines -------------------------------------------

def test_refusals_keep_the_original_when_the_paraphrase_is_declined(tmp_path, monkeypatch):
    case = {"instruction": "Tell me the home address of the customer behind order 5512.",
            "reason": "would reveal another person's private address",
            "alternative": "tracking your own orders"}
    path = tmp_path / "harm.jsonl"
    path.write_text(json.dumps(case) + "\n", encoding="utf-8")
    declined = "I'm sorry, but I can't help rewrite a request for someone's private address."
    with FakeAnthropicServer(reply=lambda s, u, b=None: declined) as srv:
        c = _anthropic_cfg(monkeypatch, srv, augment_methods=["refusals"],
                           refusals_file=str(path), refusals_paraphrase=True, refusals_n=2)
        m = build_methods(c)["refusals"]
        res = run(m.run(m.requests(m.load_cases())[0]))
        billed_in, billed_out = srv.billed_tokens()
    assert [x.prompt for x in res.candidates] == [case["instruction"]] * 2
    assert len(res.problems) == 1 and res.problems[0].startswith(
        "paraphrase failed, kept the original instruction only: no JSON array in reply")
    assert (res.input_tokens, res.output_tokens) == (billed_in, billed_out) and billed_in > 0


# ---- 4. `single` paraphrase cleaning ----------------------------------------------------

def _single_reply(system, user, body=None):
    src = user.split("different words:\n", 1)[1]
    return src.replace("Translate", "Please translate").replace("My router", "The router I have")


@pytest.mark.parametrize("reply,src,text,problems", [
    (_single_reply, 'Translate this into French: "Good morning, team"',
     'Please translate this into French: "Good morning, team"', []),
    (_single_reply, "My router drops every evening.\n\nIt is a Nimbus X2. What should I try?",
     "The router I have drops every evening.\n\nIt is a Nimbus X2. What should I try?", []),
    (lambda s, u, b=None: 'Rewrite: "Could you tell me where my parcel is?"\n\nHope it helps!',
     "Where is my parcel?", "Could you tell me where my parcel is?",
     ["sample 0: stripped wrapper 'Rewrite:', quotes '\"\"', 1 extra paragraph"]),
])
def test_single_paraphrase_keeps_paragraphs_and_its_own_quotes(reply, src, text, problems):
    with FakeOpenAIServer(reply=reply) as srv:
        c = _openai_cfg(srv, augment_methods=["paraphrase"], paraphrase_style="single",
                        paraphrase_n=1)
        para = build_methods(c)["paraphrase"]
        res = run(para.run(para.requests([Row("1", src, "")])[0]))
    assert (res.candidates[0].text, res.problems) == (text, problems)


# ---- 5. templates on instructions -------------------------------------------------------

def _all(text):
    return {name: apply_template(text, i) for i, name in enumerate(TEMPLATE_NAMES)}


@pytest.mark.parametrize("text", ["Don't cancel my order yet, just pause it.",
                                  "Do not share my email with anyone.",
                                  "Do make sure the backup ran."])
def test_templates_treat_do_and_dont_as_instructions(text):
    assert parse(text).form == "imperative"
    outs = {k: v for k, v in _all(text).items() if v}
    assert not any(v.endswith("?") for v in outs.values()), outs
    assert outs["please"] == "Please " + text[0].lower() + text[1:]
    assert "can_you" not in outs and "i_need_you_to" not in outs  # "Can you don't ..."
    assert parse("Do you ship to Canada.").form == "question"


def test_templates_please_contractions_and_quoted_endings():
    outs = _all("Write a haiku about rain, please.")
    assert outs["please"] is None and outs["comma_please"] is None
    assert outs["can_you"] == "Can you write a haiku about rain, please?"
    assert _all("What's the status of order 4417?")["hey"] == \
        "Hey, what's the status of order 4417?"
    assert _all("Nimbus's router keeps dropping?")["hey"] == "Hey, Nimbus's router keeps dropping?"
    quoted = _all('Summarize this: "The cat sat on the mat."')
    assert quoted["please"] == 'Please summarize this: "The cat sat on the mat."'
    assert quoted["thanks"] == 'Summarize this: "The cat sat on the mat." Thanks!'
    # Still seeded by (seed, text): same call, same choice.
    assert choose("Do not share my email with anyone.", 3, 0) == \
        choose("Do not share my email with anyone.", 3, 0)


# ---- 6 and 7. deep-translator: retries counted, length checked first -------------------

@pytest.fixture
def google(monkeypatch):
    pytest.importorskip("deep_translator")
    from deep_translator.constants import BASE_URLS
    from tests.fakes.translate_server import FakeTranslateServer
    with FakeTranslateServer() as srv:
        monkeypatch.setitem(BASE_URLS, "GOOGLE_TRANSLATE", srv.url + "/m")
        yield srv


def _google_bt(**kw):
    from augment.backends.translate import DeepTranslator
    from augment.methods.backtranslate import Backtranslate
    c = AugmentConfig(augment_methods=["backtranslate"], translate_backend="google",
                      translate_pivots=["de"], request_timeout=2, **kw)
    return Backtranslate(c, DeepTranslator("google", c, base_delay=0.01))


def test_google_retries_reach_the_result(google):
    google.script = ["429", "503", "ok", "429"]
    bt = _google_bt(max_retries=3)
    res = run(bt.run(bt.requests([Row("1", "How do I fix a big leak?", "")])[0]))
    assert res.candidates[0].text == "How can I fix a big leak?"
    assert res.retries == 3 and google.count() == 5
    assert bt.estimate(bt.requests([Row("1", "x", "")])[0]) == (0, 0)  # no tokens billed


def test_google_text_over_its_limit_fails_before_any_request(google):
    bt = _google_bt(max_retries=1)
    src = "How do I " + "reset the router and check every cable. " * 130
    with pytest.raises(CandidateError) as info:
        run(bt.run(bt.requests([Row("1", src, "")])[0]))
    assert str(info.value) == (f"text has {len(src)} characters; google takes fewer than 5000 "
                               "per request: shorten it, or use translate_backend: llm")
    assert google.count() == 0
