"""The cache build: resumable under SIGKILL, dry run, failures, fatal errors, API keys."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from augment.build import build_cache
from augment.cache import VariantCache
from augment.config import DataConfig
from augment.errors import ConfigError, FatalBackendError

sys.path.insert(0, str(Path(__file__).parent))
from build_helpers import LengthChecker, SlowMethod, make_cfg, make_rows  # noqa: E402

HELPER = Path(__file__).parent / "build_helpers.py"
ROOT = Path(__file__).resolve().parents[1]


def _snapshot(path):
    con = sqlite3.connect(path)
    reqs = sorted(con.execute("SELECT key, status FROM requests"))
    variants = sorted(con.execute("SELECT request_key, idx, text, accepted_project FROM variants"))
    dups = con.execute("SELECT count(*) FROM (SELECT request_key, idx, count(*) n FROM variants "
                       "GROUP BY request_key, idx HAVING n > 1)").fetchone()[0]
    integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    con.close()
    return reqs, variants, dups, integrity


def _done_keys(path) -> set:
    if not os.path.exists(path):
        return set()
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return {k for (k,) in con.execute("SELECT key FROM requests WHERE status='done'")}
    except sqlite3.OperationalError:  # schema not created yet
        return set()
    finally:
        con.close()


def _log_lines(log) -> list[str]:
    return Path(log).read_text().split("\n")[:-1] if os.path.exists(log) else []


@pytest.mark.reliability
def test_sigkill_at_random_points_then_resume(tmp_path):
    n_rows = 240
    ref_cache = str(tmp_path / "ref.sqlite")
    build_cache(DataConfig(), make_cfg(ref_cache, max_concurrency=8), make_rows(n_rows),
                progress=False, methods={"paraphrase": SlowMethod(delay=0.0)},
                checker=LengthChecker())

    cache, log = str(tmp_path / "c.sqlite"), str(tmp_path / "executed.log")
    rng = random.Random(1234)
    targets = sorted(rng.sample(range(10, n_rows - 10), 6))
    kills = []  # (done keys at the kill, number of log lines at the kill)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for target in targets:
        proc = subprocess.Popen([sys.executable, str(HELPER), cache, log, str(n_rows)], env=env)
        deadline = time.monotonic() + 30
        while len(_done_keys(cache)) < target and proc.poll() is None:
            assert time.monotonic() < deadline, "build made no progress"
            time.sleep(0.005)
        assert proc.poll() is None, "build finished before the kill point; slow it down"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        kills.append((_done_keys(cache), len(_log_lines(log))))
    # Final uninterrupted resume.
    subprocess.run([sys.executable, str(HELPER), cache, log, str(n_rows)], env=env, check=True,
                   timeout=60)
    reqs, variants, dups, integrity = _snapshot(cache)
    ref = _snapshot(ref_cache)
    assert integrity == "ok" and dups == 0
    assert reqs == ref[0] and len(reqs) == n_rows
    assert variants == ref[1]
    lines = _log_lines(log)
    for done_before, n_lines in kills:
        assert done_before, "a kill happened before anything was stored"
        re_executed = done_before & set(lines[n_lines:])
        assert not re_executed, f"{len(re_executed)} completed requests ran again"
    # Every request executed at least once; only in-flight ones at a kill may run twice.
    assert set(lines) == {k for k, _ in reqs}
    # Only requests in flight at a kill may run twice: every answer is stored as it arrives,
    # before any QC (max_concurrency = 8 in flight).
    assert len(lines) - len(set(lines)) <= len(kills) * 8


@pytest.mark.reliability
def test_failures_recorded_then_redone(tmp_path):
    rows = make_rows(12)
    cache = str(tmp_path / "c.sqlite")
    bad = {rows[3].prompt, rows[7].prompt}
    rep = build_cache(DataConfig(), make_cfg(cache), rows, progress=False, checker=LengthChecker(),
                      methods={"paraphrase": SlowMethod(delay=0.001, fail_sources=bad)})
    assert (rep.done, rep.failed, rep.already_done) == (10, 2, 0)
    assert rep.failure_reasons == {"CandidateError: malformed JSON list": 2}
    assert rep.per_method["paraphrase"]["failed"] == 2
    assert rep.per_method["paraphrase"]["generated"] == 20
    ran = []
    rep = build_cache(DataConfig(), make_cfg(cache), rows, progress=False, checker=LengthChecker(),
                      methods={"paraphrase": SlowMethod(delay=0.001, counter=ran)})
    assert sorted(ran) == sorted(r.key for r in SlowMethod().requests([rows[3], rows[7]]))
    assert (rep.done, rep.failed, rep.already_done) == (2, 0, 10)
    assert VariantCache(cache).status_counts() == {"paraphrase": {"done": 12, "failed": 0}}


@pytest.mark.reliability
def test_fatal_error_stops_and_keeps_finished_work(tmp_path):
    rows = make_rows(40)
    cache = str(tmp_path / "c.sqlite")
    ran = []
    m = SlowMethod(delay=0.01, fatal_sources={rows[20].prompt}, counter=ran)
    with pytest.raises(FatalBackendError, match="spend limit reached"):
        build_cache(DataConfig(), make_cfg(cache, max_concurrency=2), rows, progress=False,
                    methods={"paraphrase": m}, checker=LengthChecker())
    assert len(ran) < 40  # stopped early
    done = _done_keys(cache)
    assert 10 <= len(done) < 40  # finished work before the fatal error was flushed
    assert VariantCache(cache).check() == "ok"


def test_dry_run_spends_nothing(tmp_path, capsys):
    rows = make_rows(10)
    cache = str(tmp_path / "c.sqlite")
    ran = []
    cfg = make_cfg(cache, llm_model="claude-haiku-4-5")
    m = SlowMethod(counter=ran)
    m.requests = lambda rows: [r.__class__(r.method, r.field, r.source, "anthropic",
                                           "claude-haiku-4-5", r.prompt_version, r.params)
                               for r in SlowMethod.requests(m, rows)]
    rep = build_cache(DataConfig(), cfg, rows, dry_run=True, methods={"paraphrase": m},
                      checker=LengthChecker())
    assert ran == []
    assert VariantCache(cache).totals()["requests"] == 0
    assert (rep.input_tokens, rep.output_tokens) == (400, 300)
    assert rep.cost_usd == pytest.approx((400 * 1.0 + 300 * 5.0) / 1e6)
    out = capsys.readouterr().out
    assert "paraphrase" in out and "$0.0019" in out and "10 of 10 requests to run" in out
    cfg2 = make_cfg(cache, llm_model="mystery-model")
    rep = build_cache(DataConfig(), cfg2, rows, dry_run=True, methods={"paraphrase": SlowMethod()})
    assert not rep.cost_known and "price unknown" in capsys.readouterr().out


@pytest.mark.reliability
def test_missing_api_key_fails_before_any_work(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    ran = []
    cfg = make_cfg(str(tmp_path / "c.sqlite"))
    cfg.llm_backend = "anthropic"
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY not set"):
        build_cache(DataConfig(), cfg, make_rows(3), progress=False,
                    methods={"paraphrase": SlowMethod(counter=ran)}, checker=LengthChecker())
    assert ran == [] and not (tmp_path / "c.sqlite").exists()


def _cli(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "augment.build", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.reliability
def test_cli_dry_run_and_errors(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(f'{{"prompt": "How do I fix problem {i}?", "completion": "Do {i}."}}\n'
                            for i in range(12)))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"dataset_name: {data}\naugment_methods: [templates]\n"
                   f"augment_cache: {tmp_path / 'c.sqlite'}\noutput_dir: {tmp_path / 'out'}\n"
                   "eval_fraction: 0.25\n")
    res = _cli(["--config", str(cfg), "--dry-run"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "9 of 9 requests to run" in res.stdout  # 12 rows minus 3 eval rows: eval never runs
    assert not (tmp_path / "c.sqlite").exists() or VariantCache(tmp_path / "c.sqlite").totals()[
        "requests"] == 0
    res = _cli(["--config", str(cfg), "--qc", "bogus"], tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == \
        "augtune: error: qc='bogus' is not one of ('project', 'seed', 'none')."
    assert "Traceback" not in res.stderr


class EvenChecker(LengthChecker):
    """Other rules (an upgrade, a changed threshold): accepts even-length variants instead."""

    def fingerprint(self):
        return "length-checker-v2"

    def score_pairs(self, originals, augmenteds, method=None, group_ids=None, other_originals=None):
        out = super().score_pairs(originals, augmenteds, method, group_ids)
        return [{**s, "is_valid": not s["is_valid"], "reasons": [] if not s["is_valid"] else ["odd length"]}
                for s in out]


def test_verdicts_of_other_qc_rules_are_judged_again_once(tmp_path, capsys):
    rows = make_rows(6)
    cache = str(tmp_path / "c.sqlite")
    ran = []
    build_cache(DataConfig(), make_cfg(cache), rows, progress=False, checker=LengthChecker(),
                methods={"paraphrase": SlowMethod(delay=0.001)})
    c = VariantCache(cache)
    assert c.qc_fingerprint("project") == "length-checker-v1"
    before = dict(c._conn().execute("SELECT id, accepted_project FROM variants"))
    rep = build_cache(DataConfig(), make_cfg(cache), rows, progress=True, checker=EvenChecker(),
                      methods={"paraphrase": SlowMethod(delay=0.001, counter=ran)})
    assert ran == []  # nothing regenerated: judging is local
    assert rep.rejudged == len(before) > 0
    assert "made by other QC rules or settings" in capsys.readouterr().err
    after = dict(c._conn().execute("SELECT id, accepted_project FROM variants"))
    assert after == {k: 1 - v for k, v in before.items()}
    assert c.qc_fingerprint("project") == "length-checker-v2"
    rep = build_cache(DataConfig(), make_cfg(cache), rows, progress=False, checker=EvenChecker(),
                      methods={"paraphrase": SlowMethod(delay=0.001)})
    assert rep.rejudged == 0  # same rules: nothing to do


def test_shipped_demo_cache_was_judged_by_the_current_qc_rules():
    """data/demo/variants.sqlite trains the demo: after a QC change, refresh it with
    `python -m augment.inspect data/demo/variants.sqlite --rescore --config configs/demo.yaml`."""
    from augment.build import make_checker
    from augment.config import AugmentConfig
    assert "qc_model" not in (ROOT / "configs/demo.yaml").read_text()  # the demo judges with the default
    shipped = VariantCache(ROOT / "data/demo/variants.sqlite", readonly=True)
    for mode in ("project", "seed", "none"):
        want = make_checker(AugmentConfig(qc=mode)).fingerprint()
        assert shipped.qc_fingerprint(mode) == want, (
            f"the demo cache's qc={mode} verdicts are stale: run `python -m augment.inspect "
            "data/demo/variants.sqlite --rescore`")
