"""Data loading: every format loads, every kind of bad input ends in one clear line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from augment.config import AugmentConfig, DataConfig
from augment.data import load_rows
from augment.errors import ConfigError, InputError
from tests.conftest import ROOT, run_env

pytestmark = pytest.mark.reliability


def write(path, text, mode="w"):
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def jsonl(path, rows):
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


def cfg(path, **kw):
    return DataConfig(dataset_name=path, eval_fraction=kw.pop("eval_fraction", 0.25), **kw)


GOOD = [{"prompt": f"How do I reset password number {i}?", "completion": f"Go to settings {i}."}
        for i in range(8)]


# ------------------------------------------------------------------ formats

def test_prompt_completion_jsonl_splits_before_augmentation(tmp_path):
    split = load_rows(cfg(jsonl(tmp_path / "d.jsonl", GOOD)), seed=1)
    assert len(split.train) == 6 and len(split.eval) == 2
    assert not {r.prompt for r in split.train} & {r.prompt for r in split.eval}
    # same seed, same split
    again = load_rows(cfg(jsonl(tmp_path / "d.jsonl", GOOD)), seed=1)
    assert [r.id for r in again.eval] == [r.id for r in split.eval]


def test_alpaca_json_array_as_a_newcomer_brings_it(tmp_path):
    rows = [{"instruction": "Summarise the text.", "input": "Cats sleep a lot.", "output": "Cats nap."},
            {"instruction": "Name a colour.", "input": "", "output": "Blue."}]
    path = write(tmp_path / "alpaca.json", json.dumps(rows, indent=2))
    split = load_rows(cfg(path, eval_fraction=0.0))
    assert split.train[0].prompt == "Summarise the text.\n\nCats sleep a lot."
    assert split.train[1].prompt == "Name a colour." and split.train[1].completion == "Blue."


def test_dolly_messages_csv_parquet_and_mapping(tmp_path):
    dolly = jsonl(tmp_path / "dolly.jsonl", [{"instruction": "Q?", "context": "C.", "response": "A."}])
    assert load_rows(cfg(dolly, eval_fraction=0)).train[0].prompt == "Q?\n\nC."
    msgs = jsonl(tmp_path / "m.jsonl", [{"messages": [{"role": "system", "content": "s"},
                                                      {"role": "user", "content": "hi"},
                                                      {"role": "assistant", "content": "hello"}]}])
    r = load_rows(cfg(msgs, eval_fraction=0)).train[0]
    assert (r.prompt, r.completion) == ("hi", "hello")
    assert r.messages == (("system", "s"), ("user", "hi"), ("assistant", "hello"))  # system kept
    csvp = write(tmp_path / "d.csv", 'question,answer\n"Where, exactly?",Here.\n')
    r = load_rows(cfg(csvp, eval_fraction=0, column_mapping=["question=prompt", "answer=completion"])).train[0]
    assert (r.prompt, r.completion) == ("Where, exactly?", "Here.")
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"prompt": ["p1"], "completion": ["c1"]}), tmp_path / "d.parquet")
    assert load_rows(cfg(str(tmp_path / "d.parquet"), eval_fraction=0)).train[0].completion == "c1"


def test_unicode_rtl_emoji_zero_width_survive(tmp_path):
    texts = ["ما هو رصيدي؟", "Refund 💸 please", "pass\u200bword reset", "注文をキャンセル"]
    path = jsonl(tmp_path / "u.jsonl", [{"prompt": t, "completion": "ok " + t} for t in texts])
    rows = load_rows(cfg(path, eval_fraction=0)).train
    assert [r.prompt for r in rows] == texts


def test_eval_duplicates_of_train_are_removed_and_reported(tmp_path):
    train = jsonl(tmp_path / "t.jsonl", GOOD)
    ev = jsonl(tmp_path / "e.jsonl", [{"prompt": GOOD[0]["prompt"].upper(), "completion": "x"}])
    split = load_rows(DataConfig(dataset_name=train, eval_dataset_name=ev))
    assert split.report["removed_train_duplicates_of_eval"] == 1
    assert GOOD[0]["prompt"] not in {r.prompt for r in split.train}


def test_conversations_ending_alike_are_not_duplicates(tmp_path):
    """The guard compares what the model is given: a conversation's last user turn with the
    turns before it. Keying on the last turn alone dropped every train conversation that ended
    with the eval set's "Thanks!" (a review lost half of a chat set that way)."""
    def chat(topic, last="Thanks!"):
        return {"messages": [{"role": "user", "content": f"How do I {topic}?"},
                             {"role": "assistant", "content": f"To {topic}, open settings."},
                             {"role": "user", "content": last},
                             {"role": "assistant", "content": "You're welcome."}]}
    train = jsonl(tmp_path / "t.jsonl", [chat(t) for t in ("reset my password", "export data",
                                                            "delete my account")])
    ev = jsonl(tmp_path / "e.jsonl", [chat("change my e-mail"), chat("EXPORT  data")])
    split = load_rows(DataConfig(dataset_name=train, eval_dataset_name=ev))
    assert split.report["removed_train_duplicates_of_eval"] == 1  # the same conversation, re-cased
    assert sorted(r.messages[0][1] for r in split.train) == ["How do I delete my account?",
                                                            "How do I reset my password?"]


def test_conversational_prompt_completion_for_training_says_how_to_write_it(tmp_path):
    """TRL's conversational prompt/completion (lists of messages) trains only the completion;
    augtune reads it for eval sets, and for training says how to write it, instead of
    "expected a string, got list. Write it as text in quotes"."""
    row = {"prompt": [{"role": "user", "content": "Hi?"}],
           "completion": [{"role": "assistant", "content": "Hello."}]}
    path = jsonl(tmp_path / "pc.jsonl", [row])
    with pytest.raises(InputError, match=r"pc\.jsonl:1, field 'prompt': .*lists of messages.*"
                                         r'\{"messages": prompt \+ completion\}'):
        load_rows(cfg(path, eval_fraction=0))


# ------------------------------------------------------------------ bad input, in-process

BAD_CASES = {
    "broken_json_line": ('{"prompt": "a", "completion": "b"}\n{"prompt": "a", \n', r"b\.jsonl:2: broken JSON"),
    "missing_field": ('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n', r"b\.jsonl:2, field 'completion': missing"),
    "non_string": ('{"prompt": 5, "completion": "b"}\n', r"b\.jsonl:1, field 'prompt': expected a string, got int"),
    "empty_text": ('{"prompt": "  ", "completion": "b"}\n', r"b\.jsonl:1, field 'prompt': empty text"),
    "not_an_object": ('["a", "b"]\n', r"b\.jsonl:1: expected a JSON object"),
    "unknown_format": ('{"q": "a", "a": "b"}\n', r"cannot tell the format from the columns \['a', 'q'\]"),
    "zero_rows": ("\n\n", r"zero usable rows"),
    "huge_text": (json.dumps({"prompt": "x" * 200_001, "completion": "b"}) + "\n", r"above the 200,000 limit"),
    "ends_with_user": (json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                                {"role": "user", "content": "c"}]}) + "\n",
                       r"field 'messages': roles \['user', 'assistant', 'user'\] do not alternate"),
    "tool_message": (json.dumps({"messages": [{"role": "user", "content": "a"},
                                              {"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]},
                                              {"role": "tool", "content": "42"}, {"role": "assistant", "content": "d"}]}) + "\n",
                     r"field 'messages': message 1 is a tool or function call"),
    "sharegpt_unknown_speaker": (json.dumps({"conversations": [{"from": "narrator", "value": "a"},
                                                               {"from": "gpt", "value": "b"}]}) + "\n",
                                 r"field 'conversations': message 0 has from='narrator'; expected system, human or gpt"),
    "null_field": ('{"prompt": null, "completion": "b"}\n', r"field 'prompt': missing"),
    "role_not_a_string": (json.dumps({"messages": [{"role": ["user"], "content": "a"},
                                                   {"role": "assistant", "content": "b"}]}) + "\n",
                          r"field 'messages': message 0 has role=\['user'\], not a string"),
    "sharegpt_speaker_not_a_string": (json.dumps({"conversations": [{"from": {"x": 1}, "value": "a"},
                                                                    {"from": "gpt", "value": "b"}]}) + "\n",
                                      r"field 'conversations': message 0 has from=\{'x': 1\}, not a string"),
}


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_input_names_file_line_field(tmp_path, name):
    text, pattern = BAD_CASES[name]
    path = write(tmp_path / "b.jsonl", text)
    with pytest.raises(InputError, match=pattern):
        load_rows(cfg(path, eval_fraction=0))


def test_non_utf8_names_line(tmp_path):
    path = write(tmp_path / "b.jsonl", b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "b"}\n', "wb")
    with pytest.raises(InputError, match=r"b\.jsonl:2: bytes at offset \d+ are not UTF-8.*iconv"):
        load_rows(cfg(path, eval_fraction=0))


def test_csv_rows_with_extra_cells_long_fields_and_line_separators(tmp_path):
    """An unquoted comma makes a cell the header has no column for: an error naming the line
    (or a counted skip), never a silently cut completion; a field longer than csv's own limit
    but within ours loads; a raw U+2028 inside a JSON string is not a line break."""
    rows = 'prompt,completion\n"What is 2+2?",It is 4, obviously\nHi,Hello\n'
    path = write(tmp_path / "c.csv", rows)
    with pytest.raises(InputError, match=r"c\.csv:2: 1 more cell\(s\) than the header's 2 columns"):
        load_rows(cfg(path, eval_fraction=0))
    split = load_rows(cfg(path, eval_fraction=0, skip_bad_rows=True))
    assert [r.completion for r in split.train] == ["Hello"] and split.report["skipped_total"] == 1
    long = write(tmp_path / "l.csv", 'prompt,completion\n"' + "a" * 150_000 + '",ok\n')
    assert len(load_rows(cfg(long, eval_fraction=0)).train[0].prompt) == 150_000
    sep = write(tmp_path / "s.jsonl", json.dumps({"prompt": "a\u2028b", "completion": "c"},
                                                 ensure_ascii=False) + "\n")
    assert load_rows(cfg(sep, eval_fraction=0)).train[0].prompt == "a\u2028b"


def test_json_array_error_names_item_line(tmp_path):
    path = write(tmp_path / "a.json", '[\n {"instruction": "a", "output": "b"},\n {"instruction": "c"}\n]')
    with pytest.raises(InputError, match=r"a\.json:3, field 'output': missing"):
        load_rows(cfg(path, eval_fraction=0))


def test_missing_file_and_bad_suffix(tmp_path):
    with pytest.raises(InputError, match="nope.jsonl: file not found"):
        load_rows(cfg(str(tmp_path / "nope.jsonl")))
    with pytest.raises(InputError, match="unsupported file type '.txt'"):
        load_rows(cfg(write(tmp_path / "x.txt", "hi")))


def test_skip_bad_rows_counts_and_reports(tmp_path):
    lines = [GOOD[0], {"prompt": "a"}, {"prompt": 3, "completion": "x"}, GOOD[1], {"prompt": "", "completion": "y"}]
    split = load_rows(cfg(jsonl(tmp_path / "s.jsonl", lines), eval_fraction=0, skip_bad_rows=True))
    assert len(split.train) == 2 and split.report["skipped_total"] == 3


def test_skip_bad_rows_also_skips_lines_that_are_not_json(tmp_path):
    """A user who asked to skip bad rows expects a broken line skipped and counted too."""
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join([json.dumps(GOOD[0]), "not json at all", "[1, 2]", json.dumps(GOOD[1])]) + "\n")
    split = load_rows(cfg(str(path), eval_fraction=0, skip_bad_rows=True))
    assert len(split.train) == 2 and split.report["skipped_total"] == 2
    assert any("broken JSON" in k for k in split.report["skipped"]), split.report["skipped"]
    with pytest.raises(InputError, match=r"s\.jsonl:2: broken JSON .*skip_bad_rows: true"):
        load_rows(cfg(str(path), eval_fraction=0))


@pytest.mark.parametrize("kw,pattern", [
    ({"augmented_per_original": 3.0}, r"largest allowed value is 2\.333"),
    ({"augmented_per_original": -1.0}, r"is negative"),
    ({"augment_methods": ["paraphrse"]}, r"unknown \['paraphrse'\]"),
    ({"augment_methods": ["refusals"]}, r"refusals_file is not set"),
    ({"method_weights": ["templates=x"]}, r"must look like 'name=1.5'"),
    ({"translate_pivots": ["de"], "augment_methods": ["backtranslate"]}, r"offline has only the pivot 'pt'"),
    ({"llm_base_url": "http://alice:s3cret@127.0.0.1:8000/v1"}, r"llm_base_url carries credentials"),
    ({"translate_base_url": "https://libre.example/?api_key=s3cret"}, r"translate_base_url carries credentials"),
    ({"llm_base_url": "http://host:notaport/v1"}, r"not a usable URL"),
    ({"llm_base_url": "localhost:8000"}, r"give an http\(s\) URL with a host"),
    ({"requests_per_minute": 0}, r"requests_per_minute=0 must be > 0"),
    ({"augmented_per_original": float("nan")}, r"augmented_per_original=nan is not a finite"),
    ({"refusal_fraction": float("inf")}, r"refusal_fraction=inf is not a finite"),
    ({"qc_judge_band": [0.2, float("nan")]}, r"qc_judge_band=\[0\.2, nan\] is not a finite"),
    ({"augment_methods": ["refusals"], "refusals_file": "x.jsonl", "refusals_n": 9},
     r"refusals_n=9: there are 8 refusal wordings"),
])
def test_bad_augment_config(kw, pattern):
    with pytest.raises(ConfigError, match=pattern):
        AugmentConfig(**kw)


@pytest.mark.parametrize("url", ["http://alice:s3cret@127.0.0.1:80a0/v1",
                                 "ftp://alice:s3cret@127.0.0.1/v1",
                                 "http://127.0.0.1:99999/?api_key=s3cret"])
def test_an_unusable_url_is_named_without_its_credentials(url, monkeypatch):
    """In the config, and in OPENAI_BASE_URL / ANTHROPIC_BASE_URL (where credentials are
    allowed): a URL that does not parse is refused in one line that never shows them."""
    from augment.backends import make_llm
    with pytest.raises(ConfigError) as info:
        AugmentConfig(llm_base_url=url)
    assert "s3cret" not in str(info.value) and "llm_base_url=" in str(info.value)
    for env, backend in (("OPENAI_BASE_URL", "openai_compatible"), ("ANTHROPIC_BASE_URL", "anthropic")):
        monkeypatch.setenv(env, url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
        with pytest.raises(ConfigError) as info:
            make_llm(AugmentConfig(llm_backend=backend, llm_model="m"))
        assert "s3cret" not in str(info.value) and env in str(info.value)


def test_a_key_with_a_newline_is_refused_without_echoing_it(monkeypatch):
    """A key read from a file often keeps its newline: every request would fail, and the HTTP
    library's message would print the key (as `...\\n`). Refused, never shown."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-CANARY-7\n")
    c = AugmentConfig(llm_backend="anthropic", llm_model="claude-haiku-4-5")
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY starts or ends with whitespace") as info:
        c.check_api_keys()
    assert "CANARY" not in str(info.value)


def test_library_logs_and_error_texts_never_show_keys_or_url_credentials(monkeypatch, caplog):
    """httpx logs every request URL at INFO and urllib3 every query string at DEBUG (on with the
    SDKs' *_LOG variables or a caller's basicConfig): the backends mask credentials there. And
    `public_url` masks a password holding "@" and the Azure/S3-style key parameters."""
    import logging

    from augment.backends import make_llm
    from augment.backends.limits import public_url, redact
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-CANARY-9")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://u:pw-CANARY@127.0.0.1:9/")
    make_llm(AugmentConfig(llm_backend="anthropic", llm_model="claude-haiku-4-5"))
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("httpx").info("HTTP Request: POST %s", "http://u:pw-CANARY@127.0.0.1:9/v1")
        logging.getLogger("urllib3.connectionpool").debug('"GET /v2/translate?auth_key=%s HTTP/1.1"',
                                                          "dl-CANARY")
        logging.getLogger("anthropic._base_client").debug("key %s", "sk-ant-CANARY-9")
        logging.getLogger("urllib3.util.retry").debug(  # a child logger: its own filter
            "Incremented Retry for (url='%s')", "/v2/translate?auth_key=dl-CANARY")
    assert caplog.records and "CANARY" not in caplog.text, caplog.text
    assert public_url("https://user:p@ss-CANARY@host/x?subscription-key=A&x-api-key=B&sig=C&q=1") \
        == "https://***@host/x?subscription-key=***&x-api-key=***&sig=***&q=1"
    assert redact("Illegal header value b'Bearer sk-CANARY\\n'", ["sk-CANARY\n"]) == \
        "Illegal header value b'Bearer ***'"


def test_missing_api_key_is_reported_before_work(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    c = AugmentConfig(llm_backend="anthropic", llm_model="claude-haiku-4-5")
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY not set in the environment"):
        c.check_api_keys()


def test_config_parser_rejects_unknown_and_mistyped_keys(tmp_path):
    from trl import ModelConfig, SFTConfig

    from augment.cli import parse_config
    types = (DataConfig, AugmentConfig, SFTConfig, ModelConfig)
    y = write(tmp_path / "c.yaml", "output_dir: o\nlerning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:2: unknown config key 'lerning_rate'\. Did you mean 'learning_rate'\?"):
        parse_config(["--config", y], types)
    y = write(tmp_path / "c2.yaml", "output_dir: o\naugmented_per_original: lots\n")
    with pytest.raises(ConfigError, match=r"c2\.yaml:2: argument --augmented_per_original.*"
                                          r"invalid float value: 'lots'"):
        parse_config(["--config", y], types)
    y = write(tmp_path / "c4.yaml", "output_dir: o\naugmented_per_original: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"c4\.yaml:2: 'augmented_per_original' takes one value, "
                                          r"not a list"):
        parse_config(["--config", y], types)
    with pytest.raises(ConfigError, match=r"unknown option '--seeed'\. Did you mean 'seed'\?"):
        parse_config(["--config", write(tmp_path / "c3.yaml", "output_dir: o\n"), "--seeed", "3"], types)
    # two files whose `base` point at each other: a loop named, not a RecursionError
    write(tmp_path / "a.yaml", "base: b.yaml\noutput_dir: o\n")
    write(tmp_path / "b.yaml", "base: a.yaml\nseed: 3\n")
    with pytest.raises(ConfigError, match=r"b\.yaml: `base` makes a loop \(.*a\.yaml -> .*b\.yaml -> .*a\.yaml\)"):
        parse_config(["--config", str(tmp_path / "a.yaml")], types)
    latin = write(tmp_path / "l.yaml", b"output_dir: caf\xe9\n", "wb")
    with pytest.raises(ConfigError, match=r"l\.yaml: not UTF-8 text \(byte 15\); save it as UTF-8"):
        parse_config(["--config", latin], types)
    # silently the defaults: a key with no value, an empty file, a key given twice
    y = write(tmp_path / "n.yaml", "output_dir: o\ndataset_name:\neval_dataset_name: null\n")
    with pytest.raises(ConfigError, match=r"n\.yaml:2: 'dataset_name' has no value; give one, or "
                                          r"remove the line for its default \('data/demo"):
        parse_config(["--config", y], types)
    ok = write(tmp_path / "n2.yaml", "output_dir: o\nbf16: false\neval_dataset_name: null\n")  # default None
    assert parse_config(["--config", ok], types)[0].eval_dataset_name is None
    with pytest.raises(ConfigError, match=r"e\.yaml: sets nothing"):
        parse_config(["--config", write(tmp_path / "e.yaml", "# only a comment\n")], types)
    y = write(tmp_path / "d.yaml", "seed: 1\noutput_dir: o\nseed: 2\n")
    with pytest.raises(ConfigError, match=r"d\.yaml:3: 'seed' is set twice \(first at line 1\)"):
        parse_config(["--config", y], types)


# ------------------------------------------------------------------ through the real entry point

def run_sft(*args, timeout=120):
    return subprocess.run([sys.executable, str(ROOT / "train/sft.py"), "--config", str(ROOT / "configs/tiny.yaml"), *args],
                          cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args,pattern", [
    (["--dataset_name", "{bad}"], r"bad\.jsonl:2, field 'completion': missing"),
    (["--augmented_per_original", "5"], r"largest allowed value is 2\.333"),
    (["--output_dir", "/proc/augtune-cannot-write"], r"output_dir '/proc/augtune-cannot-write' is not writable"),
    (["--learning_rat", "0.1"], r"unknown option '--learning_rat'\. Did you mean 'learning_rate'\?"),
    # conversations: loss options TRL ignores there, refused before the build and the model load
    (["--completion_only_loss", "true", "--dataset_name", "{chat}"],
     r"completion_only_loss: true is for prompt/completion data"),
    (["--loss_turns", "last", "--dataset_name", "{chat}"],
     r"loss_turns: last picks which assistant turns train, which needs assistant_only_loss"),
])
def test_entry_point_fails_fast_with_one_line(tmp_path, sft_entry, args, pattern):
    """The first case runs as a real process; the rest share one (`tests/sft_entry.py`)."""
    bad = jsonl(tmp_path / "bad.jsonl", [GOOD[0], {"prompt": "no completion here"}])
    args = [a.replace("{bad}", bad).replace("{chat}", str(ROOT / "data/chat/train.jsonl"))
            for a in args]
    if "--output_dir" not in args:
        args += ["--output_dir", str(tmp_path / "out")]
    if args[0] == "--dataset_name":
        proc = run_sft(*args)
    else:
        proc = sft_entry.run(["--config", str(ROOT / "configs/tiny.yaml"), *args])
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("augtune: error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    import re
    assert re.search(pattern, lines[0]), lines[0]


def test_output_dir_check_is_safe_when_every_rank_runs_it_at_once(tmp_path):
    """Every rank checks output_dir at the same moment. A shared probe-file name made one rank
    delete the probe another was about to delete, and a writable folder was reported as
    "not writable (No such file or directory)" (seen in CI with 2 processes)."""
    from concurrent.futures import ThreadPoolExecutor

    from train.sft import check_output_dir
    out = tmp_path / "shared-out"

    def hammer(_):
        for _ in range(200):
            check_output_dir(str(out))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(hammer, range(8)))  # re-raises the first ConfigError, if any
    assert out.is_dir() and not list(out.iterdir())  # no probe files left behind


def test_training_without_a_build_refuses_verdicts_of_other_qc_rules(tmp_path):
    """build_before_training: false trusts the cache as it is, so stale verdicts (made by other
    QC rules or settings) must stop the run with what to do, not train silently."""
    import sqlite3
    cache, out = tmp_path / "c.sqlite", tmp_path / "out"
    build = subprocess.run([sys.executable, "-m", "augment.build", "--config", str(ROOT / "configs/tiny.yaml"),
                            "--augment_cache", str(cache), "--max_rows", "4"],
                           cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    args = ["--augment_cache", str(cache), "--max_rows", "4", "--build_before_training", "false",
            "--output_dir", str(out)]
    con = sqlite3.connect(cache)
    with con:
        con.execute("UPDATE meta SET value='older-rules' WHERE key='qc_fingerprint_accepted_project'")
    con.close()
    proc = subprocess.run([sys.executable, str(ROOT / "train/sft.py"), "--config", str(ROOT / "configs/tiny.yaml"),
                           *args, "--max_steps", "1"],
                          cwd=ROOT, env=run_env(AUGTUNE_PREFLIGHT="0"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("augtune: error:")]
    assert len(lines) == 1 and "made by other QC rules or settings" in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_conversations_load_whole_messages_and_sharegpt(tmp_path):
    """Multi-turn rows keep every message; the last user turn is the row's prompt; a plain pair
    stays a plain row; ShareGPT speakers map to chat roles without a column mapping."""
    conv = [{"role": "system", "content": "You are Nimbus support."},
            {"role": "user", "content": "My parcel is late."},
            {"role": "assistant", "content": "Sorry! What is the order number?"},
            {"role": "user", "content": "It is 4417. And what if it shipped yesterday?"},
            {"role": "assistant", "content": "Then it arrives within 3 days."}]
    path = jsonl(tmp_path / "chat.jsonl", [{"messages": conv},
                                           {"messages": conv[1:3]}])
    rows = load_rows(cfg(path, eval_fraction=0)).train
    assert rows[0].prompt == "It is 4417. And what if it shipped yesterday?"
    assert rows[0].completion == "Then it arrives within 3 days."
    assert rows[0].messages == tuple((m["role"], m["content"]) for m in conv)
    assert rows[0].context == tuple((m["role"], m["content"]) for m in conv[:3])
    assert rows[1].messages == () and rows[1].prompt == "My parcel is late."
    share = jsonl(tmp_path / "sharegpt.jsonl", [{"conversations": [
        {"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello"}, {"from": "human", "value": "Bye"},
        {"from": "gpt", "value": "Goodbye"}]}])
    r = load_rows(cfg(share, eval_fraction=0)).train[0]
    assert r.messages == (("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"),
                          ("user", "Bye"), ("assistant", "Goodbye"))
    assert (r.prompt, r.completion) == ("Bye", "Goodbye")


def test_shipped_chat_fixtures_load_without_a_column_mapping():
    from tests.conftest import ROOT
    share = load_rows(cfg(str(ROOT / "data/chat/sharegpt.jsonl"), eval_fraction=0)).train
    chat = load_rows(cfg(str(ROOT / "data/chat/train.jsonl"), eval_fraction=0)).train
    assert len(share) == 8 and len(chat) == 60
    assert all(r.messages and r.messages[-1] == ("assistant", r.completion) for r in share + chat)
    assert sum(r.messages[0][0] == "system" for r in chat) >= 20
    assert {sum(m[0] == "user" for m in r.messages) for r in chat} == {2, 3, 4}


def test_other_input_files_that_are_not_utf8_or_not_files_get_one_line(tmp_path):
    """The harmful-cases file, a qc_eval pairs file and a cache path that is a folder: each an
    error naming the path (and line), never a UnicodeDecodeError or IsADirectoryError."""
    from augment.cache import VariantCache
    from augment.errors import AugtuneError
    from augment.methods.refusals import load_harmful_cases
    from augment.qc_sets import load_pairs
    bad = write(tmp_path / "h.jsonl", b'{"instruction": "ok"}\n{"instruction": "caf\xe9"}\n', "wb")
    for load in (load_harmful_cases, load_pairs):
        with pytest.raises(InputError, match=r"h\.jsonl:2: bytes at offset \d+ are not UTF-8"):
            load(bad)
    with pytest.raises(AugtuneError, match=r"is a folder; augment_cache names the cache file"):
        VariantCache(tmp_path).totals()


def test_a_row_in_another_format_than_the_first_is_a_line_error(tmp_path):
    """A messages file with a prompt/completion row: file:line, field 'messages' (was a
    KeyError traceback), or a counted skip with skip_bad_rows."""
    conv = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"messages": conv}) + "\n" + json.dumps({"messages": conv}) + "\n"
                    + json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    with pytest.raises(InputError, match=r"m\.jsonl:3, field 'messages': missing \(the file's "
                                         r"first row is in the messages format\)"):
        load_rows(cfg(str(path), eval_fraction=0))
    split = load_rows(cfg(str(path), eval_fraction=0, skip_bad_rows=True))
    assert len(split.train) == 2 and split.report["skipped_total"] == 1


def test_parquet_errors_name_the_row_and_a_jsonl_array_gets_a_hint(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"prompt": ["p1", None], "completion": ["c1", "c2"]}),
                   tmp_path / "d.parquet")
    with pytest.raises(InputError, match=r"d\.parquet:2, field 'prompt': missing"):
        load_rows(cfg(str(tmp_path / "d.parquet"), eval_fraction=0))
    (tmp_path / "a.jsonl").write_text('[{"prompt": "p", "completion": "c"},\n'
                                      ' {"prompt": "q", "completion": "d"}]\n')
    with pytest.raises(InputError, match=r"a\.jsonl:1: broken JSON .*This looks like a JSON "
                                         r"array: name the file \.json"):
        load_rows(cfg(str(tmp_path / "a.jsonl"), eval_fraction=0))
    # after a blank line too, and on one line (what json.dump(rows, f) writes)
    (tmp_path / "b.jsonl").write_text('\n[{"prompt": "p",\n"completion": "c"}]\n')
    with pytest.raises(InputError, match=r"b\.jsonl:2: broken JSON .*looks like a JSON array"):
        load_rows(cfg(str(tmp_path / "b.jsonl"), eval_fraction=0))
    (tmp_path / "c.jsonl").write_text('[{"prompt": "p", "completion": "c"}]')
    with pytest.raises(InputError, match=r"c\.jsonl:1: expected a JSON object, got list\. This "
                                         r"is a JSON array of rows on one line: name the file"):
        load_rows(cfg(str(tmp_path / "c.jsonl"), eval_fraction=0))


def test_config_marks_follow_the_last_setter_and_non_finite_values_are_refused(tmp_path):
    """A base file's empty key is fine once the child file or the command line sets it; a
    one-item list stands for one value; nan/inf is refused for TRL's settings too."""
    from trl import ModelConfig, SFTConfig

    from augment.cli import parse_config
    types = (DataConfig, AugmentConfig, SFTConfig, ModelConfig)
    write(tmp_path / "base.yaml", "output_dir: o\nbf16: false\ndataset_name:\nseed:\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\ndataset_name: d.jsonl\n")
    parsed = parse_config(["--config", child, "--seed", "3"], types)
    assert parsed[0].dataset_name == "d.jsonl" and parsed[2].seed == 3
    one = write(tmp_path / "one.yaml", "output_dir: o\nbf16: false\nreport_to: [none]\n")
    assert parse_config(["--config", one], types)[2].report_to == []
    nan = write(tmp_path / "nan.yaml", "output_dir: o\nbf16: false\nlearning_rate: .nan\n")
    with pytest.raises(ConfigError, match=r"nan\.yaml:3: learning_rate=nan is not a finite number"):
        parse_config(["--config", nan], types)
    with pytest.raises(ConfigError, match=r"lora_dropout=inf is not a finite number"):
        parse_config(["--config", one, "--lora_dropout", "inf"], types)


def _parse_yaml(tmp_path, text, *argv, files=()):
    from trl import ModelConfig, SFTConfig

    from augment.cli import parse_config
    for name, body in files:
        write(tmp_path / name, body)
    y = write(tmp_path / "c.yaml", text)
    return parse_config(["--config", y, *argv], (DataConfig, AugmentConfig, SFTConfig, ModelConfig))


YAML_BASE = "output_dir: o\nbf16: false\n"


def test_only_number_settings_are_checked_for_nan_and_inf(tmp_path):
    """`run_name: inf` is a name; an unknown key with .nan is named as unknown; max_grad_norm
    takes +inf (clip nothing, still log the norm, as TRL and torch allow), never NaN or -inf."""
    assert _parse_yaml(tmp_path, YAML_BASE + "run_name: inf\n")[2].run_name == "inf"
    assert _parse_yaml(tmp_path, "bf16: false\noutput_dir: nan\n")[2].output_dir == "nan"
    with pytest.raises(ConfigError, match=r"c\.yaml:3: unknown config key 'lerning_rate'"):
        _parse_yaml(tmp_path, YAML_BASE + "lerning_rate: .nan\n")
    assert _parse_yaml(tmp_path, YAML_BASE + "max_grad_norm: .inf\n")[2].max_grad_norm == float("inf")
    assert _parse_yaml(tmp_path, YAML_BASE, "--max_grad_norm", "inf")[2].max_grad_norm == float("inf")
    for bad in (".nan", "-.inf"):
        with pytest.raises(ConfigError, match=r"c\.yaml:3: max_grad_norm=-?(nan|inf) is not a finite"):
            _parse_yaml(tmp_path, YAML_BASE + f"max_grad_norm: {bad}\n")
    with pytest.raises(ConfigError, match=r"^learning_rate=nan is not a finite number"):
        _parse_yaml(tmp_path, YAML_BASE + "learning_rate: 0.1\n", "--learning_rate", "nan")  # no YAML line
    with pytest.raises(ConfigError, match=r"c\.yaml:3: max_length=inf is not a finite"):
        _parse_yaml(tmp_path, YAML_BASE + "max_length: .inf\n")


def test_an_empty_yaml_value_means_what_none_means_on_the_command_line(tmp_path):
    """`max_length:` (or null, ~) is None like `--max_length None` (no truncation); a misspelled
    empty key is an unknown key; an empty key over a base file's value unsets it or names the
    base's value (what removing the line gives), not the parser default."""
    for empty in ("", " null", " ~"):
        assert _parse_yaml(tmp_path, YAML_BASE + f"max_length:{empty}\n")[2].max_length is None
    # an empty key from a YAML merge has no line of its own: the file, not a KeyError
    with pytest.raises(ConfigError, match=r"c\.yaml:\?: 'seed' has no value"):
        _parse_yaml(tmp_path, YAML_BASE + "<<: {seed: }\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:3: `base` names the config file"):
        _parse_yaml(tmp_path, YAML_BASE + "base:\n")
    assert _parse_yaml(tmp_path, YAML_BASE, "--max_length", "None")[2].max_length is None
    with pytest.raises(ConfigError, match=r"c\.yaml:3: unknown config key 'lerning_rate'\. Did you mean"):
        _parse_yaml(tmp_path, YAML_BASE + "lerning_rate:\n")
    base = [("b.yaml", YAML_BASE + "dataset_name: mine.jsonl\nmax_length: 10\neval_dataset_name: e.jsonl\n")]
    with pytest.raises(ConfigError, match=r"c\.yaml:2: 'dataset_name' has no value; give one, or "
                                          r"remove the line for the value from .*b\.yaml:3 \('mine\.jsonl'\)\.$"):
        _parse_yaml(tmp_path, "base: b.yaml\ndataset_name:\n", files=base)
    data, _, sft, _ = _parse_yaml(tmp_path, "base: b.yaml\nmax_length:\neval_dataset_name:\n", files=base)
    assert sft.max_length is None and data.eval_dataset_name is None and data.dataset_name == "mine.jsonl"
    assert _parse_yaml(tmp_path, YAML_BASE + 'run_name: "null"\n')[2].run_name == "null"  # quoted: text


def test_duplicate_keys_are_found_by_the_yaml_parser(tmp_path):
    """A quoted string over two lines is one value, not two keys; `"seed"` and `seed` are the same
    key; lines in messages come from the parsed nodes."""
    parsed = _parse_yaml(tmp_path, YAML_BASE + 'run_name: "a\nseed: b"\nseed: 3\n')
    assert parsed[2].run_name == "a seed: b" and parsed[2].seed == 3
    with pytest.raises(ConfigError, match=r"c\.yaml:4: 'seed' is set twice \(first at line 3\); keep one"):
        _parse_yaml(tmp_path, YAML_BASE + '"seed": 1\nseed: 2\n')
    with pytest.raises(ConfigError, match=r"c\.yaml:5: unknown config key 'lerning_rate'"):
        _parse_yaml(tmp_path, YAML_BASE + 'run_name: "a\nb"\nlerning_rate: 3\n')


def test_pair_format_trl_is_refused_for_conversation_data(tmp_path):
    from augment.pipeline import check_pair_format
    conv = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"messages": conv}) + "\n")
    split = load_rows(cfg(str(path), eval_fraction=0))
    assert split.report["train_formats"] == ["messages"]
    check_pair_format(AugmentConfig(), split)
    with pytest.raises(ConfigError, match="this data is conversations \\(messages\\)"):
        check_pair_format(AugmentConfig(pair_format="trl"), split)
