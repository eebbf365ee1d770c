"""Fail loudly: grouped failure reasons, exit codes, an unreachable backend, spend per attempt.

Through `python -m augment.build` and the real anthropic SDK against the fake Messages API.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys

import pytest

from augment.build import EXIT_FAILURES, build_cache
from augment.cache import VariantCache
from augment.config import AugmentConfig, DataConfig
from augment.types import Row
from tests.build_helpers import api_prompts
from tests.conftest import ROOT, run_env
from tests.fakes import FakeAnthropicServer, extract_source

pytestmark = pytest.mark.reliability


def _config(tmp_path, n_rows=20, **extra) -> str:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "completion": "Done."}) + "\n"
                            for p in api_prompts(n_rows)))
    cfg = {"dataset_name": str(data), "eval_fraction": 0.0, "augment_methods": ["paraphrase"],
           "llm_backend": "anthropic", "llm_model": "claude-haiku-4-5",
           "augment_cache": str(tmp_path / "c.sqlite"), "output_dir": str(tmp_path / "out"),
           "qc": "seed", **extra}
    path = tmp_path / "cfg.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in cfg.items()))
    return str(path)


def _build_cli(cfg, env, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "augment.build", "--config", cfg, *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nothing_listening_stops_the_build_early_with_one_line_naming_the_url(tmp_path):
    url = f"http://127.0.0.1:{_free_port()}"  # bound, then closed: nothing listens there
    env = run_env(ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY="sk-ant-fake")
    # Default retries (6, backoff from 1 s): without the breaker, 20 requests x 7 attempts
    # would take minutes (the issue saw 6.4 minutes and exit 0). 60 s is a hang guard here.
    res = _build_cli(_config(tmp_path), env, timeout=60)
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    naming = [ln for ln in res.stderr.splitlines() if url in ln]
    assert len(naming) == 1, res.stderr[-3000:]
    assert naming[0].startswith("augtune: error: cannot connect to the Anthropic API at " + url)
    assert "connection attempts in a row failed" in naming[0]
    assert "Is the server running" in naming[0]


PLAN = {0: "malformed_json", 1: "malformed_json", 2: "malformed_json", 3: "echo", 4: "echo"}


def _faulty(prompts):
    bad = {prompts[i]: f for i, f in PLAN.items()}
    return lambda endpoint, index, body: bad.get(extract_source(
        body["messages"][-1]["content"] if body.get("messages") else ""))


@pytest.mark.heavy
def test_failures_are_grouped_with_counts_and_the_build_exits_3(tmp_path):
    prompts = api_prompts(20)
    cfg = _config(tmp_path, progress_seconds=0.2)
    with FakeAnthropicServer(behaviour=_faulty(prompts), latency=0.2) as srv:
        env = run_env(ANTHROPIC_BASE_URL=srv.url, ANTHROPIC_API_KEY="sk-ant-fake")
        res = _build_cli(cfg, env)
        assert res.returncode == EXIT_FAILURES == 3, res.stderr[-3000:]
        err = res.stderr
        assert "15 done, 5 failed" in err
        assert "5 requests failed; reasons" in err
        lines = err.splitlines()
        grouped = [ln for ln in lines if ln.lstrip().startswith(("3 x", "2 x"))]
        assert len(grouped) == 2, err[-3000:]
        assert grouped[0].strip().startswith("3 x CandidateError: no JSON array in reply")
        assert grouped[1].strip().startswith("2 x CandidateError:") and "identical to the source" \
            in grouped[1]
        assert lines[-1].startswith("augtune build: exit 3: 5 requests failed")
        # not a terminal: periodic plain progress lines, never a bar's carriage returns
        assert any(ln.startswith("augtune build: ") and "/20 requests, accepted" in ln
                   for ln in lines), err[-3000:]
        assert "\r" not in err
        # --allow_failures: the same failures (retried, failing again), exit 0, still listed
        res = _build_cli(cfg, env, "--allow_failures", "true")
        assert res.returncode == 0, res.stderr[-3000:]
        assert "0 done, 5 failed" in res.stderr and "3 x CandidateError" in res.stderr


def test_spend_is_recorded_per_attempt_and_summed(tmp_path, monkeypatch):
    """A redone request keeps what its failed attempt cost: inspect and the reports add up."""
    prompts = api_prompts(4)
    rows = [Row(str(i), p, "ok") for i, p in enumerate(prompts)]
    cfg = AugmentConfig(augment_methods=["paraphrase"], llm_backend="anthropic",
                        llm_model="claude-haiku-4-5", augment_cache=str(tmp_path / "c.sqlite"),
                        qc="seed", max_retries=1)
    # the first answer to prompts[0] is unusable (billed), its redo in the next build is fine
    calls = []

    def behaviour(endpoint, index, body):
        src = extract_source(body["messages"][-1]["content"])
        calls.append(src)
        return "malformed_json" if src == prompts[0] and calls.count(src) == 1 else None

    with FakeAnthropicServer(behaviour=behaviour) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
        rep1 = build_cache(DataConfig(), cfg, rows, progress=False)
        rep2 = build_cache(DataConfig(), cfg, rows, progress=False)
        billed = srv.billed()
    assert (rep1.done, rep1.failed, rep2.done, rep2.failed) == (3, 1, 1, 0)
    assert len(billed) == 5  # 4 requests, one of them answered twice (unusable, then fine)
    cache = VariantCache(tmp_path / "c.sqlite")
    totals = cache.totals()
    assert totals["attempts"] == 5 and totals["requests"] == 4
    assert totals["cost_usd"] == pytest.approx(rep1.cost_usd + rep2.cost_usd)
    assert totals["cost_failed_attempts"] == pytest.approx(rep1.cost_usd - sum(
        a for (a,) in sqlite3.connect(tmp_path / "c.sqlite").execute(
            "SELECT cost_usd FROM attempts WHERE status='done' AND n=1")))
    assert 0 < totals["cost_failed_attempts"] < totals["cost_usd"]
    from augment.methods import build_methods
    key = build_methods(cfg)["paraphrase"].requests(rows[:1])[0].key
    con = sqlite3.connect(tmp_path / "c.sqlite")
    per_attempt = con.execute("SELECT n, status, cost_usd FROM attempts WHERE key=? ORDER BY n",
                              (key,)).fetchall()
    assert [(n, s) for n, s, _ in per_attempt] == [(1, "failed"), (2, "done")]
    assert all(c > 0 for _, _, c in per_attempt)
    stored = con.execute("SELECT attempts, cost_usd FROM requests WHERE key=?", (key,)).fetchone()
    assert stored[0] == 2 and stored[1] == pytest.approx(sum(c for _, _, c in per_attempt))
    # inspect reports the total, failed attempts included
    out = subprocess.run([sys.executable, "-m", "augment.inspect", str(tmp_path / "c.sqlite"),
                          "--qc", "seed", "--examples", "0"], cwd=ROOT, env=run_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"spent ${totals['cost_usd']:.4f} in all" in out.stdout
    assert f"(${totals['cost_failed_attempts']:.4f} of it on failed attempts)" in out.stdout
    assert "(5 attempts)" in out.stdout


def test_a_training_run_says_which_rows_failures_left_without_variants(tmp_path):
    """train/sft.py builds first: with failed requests it says how many train rows go without
    a variant, and stops before loading a model unless allow_failures is set."""
    first_two: list[str] = []

    def behaviour(endpoint, index, body):
        src = extract_source(body["messages"][-1]["content"])
        if len(first_two) < 2 and src not in first_two:
            first_two.append(src)
        return "malformed_json" if src in first_two else None

    with FakeAnthropicServer(behaviour=behaviour) as srv:
        env = run_env(ANTHROPIC_BASE_URL=srv.url, ANTHROPIC_API_KEY="sk-ant-fake")
        res = subprocess.run(
            [sys.executable, str(ROOT / "train/sft.py"), "--config",
             str(ROOT / "configs/tiny.yaml"),
             "--output_dir", str(tmp_path / "out"), "--augment_cache", str(tmp_path / "c.sqlite"),
             "--augment_methods", "paraphrase", "--llm_backend", "anthropic", "--llm_model",
             "claude-haiku-4-5", "--max_rows", "10", "--qc", "seed"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-3000:]
    assert "augtune: 2 of 10 train rows have no variant from a method whose request failed " \
           "(2 failed requests; reasons above)" in out, out[-3000:]
    assert "2 x CandidateError: no JSON array in reply" in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith(
        "augtune: error: 2 augmentation requests failed (reasons above); rerun to retry them, "
        "or set allow_failures: true")
    assert not (tmp_path / "out" / "adapter_model.safetensors").exists()


def test_unreachable_openai_compatible_and_translation_servers_stop_the_build(tmp_path):
    """The same breaker guards the OpenAI-compatible backend and deep-translator providers."""
    from augment.backends import LLM_BACKENDS
    from augment.backends.translate import DeepTranslator
    from augment.errors import FatalBackendError
    from augment.methods import Backtranslate, build_methods
    url = f"http://127.0.0.1:{_free_port()}"
    rows = [Row(str(i), p, "ok") for i, p in enumerate(api_prompts(12))]
    cfg = AugmentConfig(augment_methods=["paraphrase"], llm_backend="openai_compatible",
                        llm_base_url=url + "/v1", llm_model="qwen-fake", max_retries=6,
                        augment_cache=str(tmp_path / "a.sqlite"), qc="seed")
    methods = build_methods(cfg, llm_factory=lambda c: LLM_BACKENDS[c.llm_backend](
        c, base_delay=0.5))
    with pytest.raises(FatalBackendError, match=r"cannot connect to the OpenAI-compatible "
                                                r"server at " + url):
        build_cache(DataConfig(), cfg, rows, progress=False, methods=methods)
    assert VariantCache(tmp_path / "a.sqlite").totals()["requests"] == 0  # nothing paid for
    cfg = AugmentConfig(augment_methods=["backtranslate"], translate_backend="libre",
                        translate_base_url=url, translate_pivots=["pt"], max_retries=6,
                        augment_cache=str(tmp_path / "b.sqlite"), qc="seed")
    methods = {"backtranslate": Backtranslate(cfg, DeepTranslator("libre", cfg, base_delay=0.5))}
    with pytest.raises(FatalBackendError, match="cannot connect to " + url):
        build_cache(DataConfig(), cfg, rows, progress=False, methods=methods)


def test_failure_reasons_group_even_when_a_quoted_reply_holds_an_apostrophe():
    """Two unusable replies quoted back in their reasons are one kind of failure, also when one
    snippet holds an apostrophe (escaped or double-quoted in its repr): CI once printed them as
    two groups, because the snippet of "I'm locked out" broke the quote matching."""
    from augment.cache import failure_kind
    from augment.methods.jsonlist import snippet
    plain, apostrophe = '["How do I reset my password', '["I' + chr(39) + 'm locked out of it'
    a = "CandidateError: no JSON array in reply: " + repr(snippet(plain))
    b = "CandidateError: no JSON array in reply: " + repr(snippet(apostrophe))
    assert "\\'" in b                              # the apostrophe is escaped inside the repr
    assert failure_kind(a) == failure_kind(b) == "CandidateError: no JSON array in reply: '...'"
    assert failure_kind("brief has 43 <= 50 words") == failure_kind("brief has 48 <= 50 words")


def test_credentials_in_a_base_url_from_the_environment_never_reach_messages_or_the_cache(
        tmp_path, monkeypatch):
    """OPENAI_BASE_URL may carry user:password@ (the environment is where secrets live); the URL
    names the server in error messages, the breaker's line and the cache's failure reasons, so
    the credentials are replaced by *** there, through the real openai client."""
    import sqlite3

    from augment.backends import LLM_BACKENDS, make_llm
    from augment.errors import FatalBackendError
    from augment.methods import build_methods
    port = _free_port()
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://alice:s3cr3tpass@127.0.0.1:{port}/v1")
    rows = [Row(str(i), p, "ok") for i, p in enumerate(api_prompts(6))]
    cfg = AugmentConfig(augment_methods=["paraphrase"], llm_backend="openai_compatible",
                        llm_model="qwen-fake", max_retries=2,
                        augment_cache=str(tmp_path / "a.sqlite"), qc="seed")
    assert "s3cr3tpass" not in repr(make_llm(cfg))
    methods = build_methods(cfg, llm_factory=lambda c: LLM_BACKENDS[c.llm_backend](
        c, base_delay=0.1))
    try:  # six requests may fail one by one (stored as failed) or trip the breaker (raised)
        build_cache(DataConfig(), cfg, rows, progress=False, methods=methods)
        message = ""
    except FatalBackendError as e:
        message = str(e)
    with sqlite3.connect(tmp_path / "a.sqlite") as con:
        text = message + " ".join(str(v) for t in ("requests", "attempts")
                                  for row in con.execute(f"SELECT * FROM {t}") for v in row)
    assert f"http://***@127.0.0.1:{port}/v1" in text   # the server is named, its password not
    assert "s3cr3tpass" not in text
    assert b"s3cr3tpass" not in b"".join(p.read_bytes() for p in tmp_path.glob("a.sqlite*"))


def test_a_second_build_on_the_same_cache_stops_at_once(tmp_path):
    """Two builds on one cache would both pay for every missing request: while one holds the
    cache, another stops with one line naming it, having sent nothing; after it, builds run."""
    import fcntl

    from augment.errors import AugtuneError
    cfg = AugmentConfig(augment_methods=["templates"], augment_cache=str(tmp_path / "c.sqlite"),
                        qc="seed")
    rows = [Row("1", "Explain how a VPN works.", "It tunnels traffic.")]
    with open(tmp_path / "c.sqlite.lock", "a+") as other:   # a build in another process
        other.write("pid 4242, since earlier")
        other.flush()
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(AugtuneError, match=r"another build is writing to this cache "
                                               r"\(pid 4242, since earlier\)"):
            build_cache(DataConfig(), cfg, rows, progress=False)
        assert not (tmp_path / "c.sqlite").exists()  # nothing done
        build_cache(DataConfig(), cfg, rows, progress=False, dry_run=True)  # a dry run may
    assert build_cache(DataConfig(), cfg, rows, progress=False).done == 1
    assert build_cache(DataConfig(), cfg, rows, progress=False).already_done == 1


def test_a_fatal_error_keeps_the_answers_already_on_their_way(tmp_path, monkeypatch):
    """One request refused for good (400) stops the build, but the requests already sent are
    billed: their answers are waited for and stored, not cancelled and lost."""
    from augment.errors import FatalBackendError
    from tests.fakes import FakeAnthropicServer
    prompts = api_prompts(8)

    def first_refused(endpoint, index, body):
        return "400" if endpoint == "messages" and index == 0 else None

    with FakeAnthropicServer(latency=0.5, behaviour=first_refused) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
        cfg = AugmentConfig(augment_methods=["paraphrase"], llm_backend="anthropic",
                            llm_model="claude-haiku-4-5", max_concurrency=4, request_timeout=5.0,
                            augment_cache=str(tmp_path / "c.sqlite"), qc="seed")
        with pytest.raises(FatalBackendError, match="400"):
            build_cache(DataConfig(), cfg, [Row(str(i), p, "ok") for i, p in enumerate(prompts)],
                        progress=False)
        billed = len(srv.billed("messages"))
    assert billed >= 1   # answers were on their way when the 400 came
    assert VariantCache(tmp_path / "c.sqlite").totals()["requests"] == billed


def test_a_backtranslation_failing_on_its_way_back_keeps_the_paid_first_leg(tmp_path,
                                                                             monkeypatch):
    """translate_backend: llm through the real anthropic SDK. The way back gets 500s until the
    retries give up: the failed attempt records what the first leg was billed, and keeps that
    leg (a transient failure), so the rerun asks only the way back and the cache's spend counts
    every billed call once. A content failure (the round trip came back unchanged) drops the
    first leg instead: asking again is the point of retrying it."""
    from augment.backends import AnthropicBackend
    from augment.methods import build_methods

    phase = {"back": None}

    def translate(system, user, body=None):
        text = user.split("<text>\n", 1)[1].rsplit("\n</text>", 1)[0]
        if "into English" not in system:
            return f"<text>[de] {text}</text>"
        return f"<text>{text[5:] if phase['back'] == 'echo' else 'Tell me: ' + text[5:]}</text>"

    def behaviour(endpoint, index, body):
        back = "into English" in FakeAnthropicServer._system_text(body.get("system"))
        return "500" if back and phase["back"] == "500" else None

    def steps(path):
        return sqlite3.connect(path).execute("SELECT count(*), sum(counted) FROM steps").fetchone()

    with FakeAnthropicServer(reply=translate, behaviour=behaviour) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
        rows = [Row(str(i), p, "ok") for i, p in enumerate(api_prompts(4))]
        cache = tmp_path / "c.sqlite"
        cfg = AugmentConfig(augment_methods=["backtranslate"], translate_backend="llm",
                            translate_pivots=["de"], llm_backend="anthropic",
                            llm_model="claude-haiku-4-5", max_retries=1,
                            augment_cache=str(cache), qc="seed")

        def build():
            methods = build_methods(cfg, llm_factory=lambda c: AnthropicBackend(
                c, base_delay=0.001, max_delay=0.01))
            return build_cache(DataConfig(), cfg, rows, progress=False, methods=methods)

        def firsts():
            return sum("into German" in r["body"]["system"] for r in srv.billed())

        def spent():
            t = VariantCache(cache).totals()
            return t["input_tokens"], t["output_tokens"]

        phase["back"] = "500"
        assert build().failed == 4
        assert firsts() == 4 and steps(cache) == (4, 4)   # kept, their spend counted
        assert spent() == srv.billed_tokens() and spent()[0] > 0
        phase["back"] = None
        assert build().done == 4
        assert firsts() == 4 and steps(cache) == (0, None)  # no first leg asked again
        assert spent() == srv.billed_tokens()
        # a content failure drops the first leg, and its retry asks again
        rows = [Row(str(i), p, "ok") for i, p in enumerate(api_prompts(6)[4:])]
        phase["back"] = "echo"
        assert build().failed == 2 and steps(cache) == (0, None)
        phase["back"] = None
        assert build().done == 2
        assert firsts() == 4 + 2 * 2 and spent() == srv.billed_tokens()


def test_the_build_reports_the_rows_it_skipped(tmp_path):
    """`python -m augment.build --skip_bad_rows true` says what loading skipped, as training
    does (it built silently on what was left)."""
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "How do I reset my password?", "completion": "Settings."}\n'
                    '{"prompt": null, "completion": "x"}\n'
                    '{"prompt": "How do I cancel my order?", "completion": "Orders page."}\n')
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"dataset_name: {data}\neval_fraction: 0.0\naugment_methods: [templates]\n"
                   f"augment_cache: {tmp_path / 'c.sqlite'}\nqc: none\nskip_bad_rows: true\n")
    proc = subprocess.run([sys.executable, "-m", "augment.build", "--config", str(cfg)], cwd=ROOT,
                          env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "augtune build: 2 train rows, 0 eval rows, 0 held-out paraphrases; skipped 1 bad rows" \
        in proc.stderr, proc.stderr[-2000:]
