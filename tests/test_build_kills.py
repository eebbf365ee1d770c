"""Never pay twice: SIGKILLs of REAL builds (anthropic SDK -> fake Messages API, real methods,
real QC model loading lazily), then a resume, counted on the fake server's own request log.

test_build.py's SIGKILL test uses a slow local method and a stand-in checker, so it cannot see
what a kill costs when answers wait for the QC model. Here the build runs in a subprocess
(`tests/build_helpers.py api ...`) exactly as `python -m augment.build` would, and the server
counts every identical request body it answered twice: money paid twice. At most the requests
in flight at a kill (`max_concurrency` = 8) may be paid twice; in batch mode, nothing.
The last test kills a rescore (`python -m augment.inspect --rescore`): its rerun must keep the
verdicts the killed one stored.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_env
from tests.fakes import FakeAnthropicServer

pytestmark = pytest.mark.reliability

HELPER = ROOT / "tests" / "build_helpers.py"
CONCURRENCY = 8  # build_helpers.api_cfg


def _counts(cache) -> tuple[int, int, int]:
    """(requests stored as done, candidates stored, candidates judged under qc=project)."""
    if not os.path.exists(cache):
        return 0, 0, 0
    con = sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=10)
    try:
        done = con.execute("SELECT count(*) FROM requests WHERE status='done'").fetchone()[0]
        stored, judged = con.execute(
            "SELECT count(*), count(accepted_project) FROM variants").fetchone()
        return done, stored, judged
    except sqlite3.OperationalError:  # schema not created yet
        return 0, 0, 0
    finally:
        con.close()


def _start(cache, n_rows, env, *extra):
    return subprocess.Popen([sys.executable, str(HELPER), "api", str(cache), str(n_rows), *extra],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _wait(cond, proc, what, timeout=90.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)
    return True


def _kill(proc) -> bool:
    """SIGKILL; False if the build had already finished."""
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    return proc.returncode == -signal.SIGKILL


def _final(cache, n_rows, env, *extra):
    res = subprocess.run([sys.executable, str(HELPER), "api", str(cache), str(n_rows), *extra],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.mark.heavy
def test_sigkills_of_a_real_build_pay_at_most_the_requests_in_flight(tmp_path):
    n_rows = 40
    cache = tmp_path / "c.sqlite"
    rng = random.Random(20261201)
    kills, during_qc_load = 0, None
    # 25% transient faults (retried inside the build); none is billed, so every billed
    # duplicate is an answer the client had and lost.
    with FakeAnthropicServer(fault_rates={"429": 0.1, "500": 0.08, "529": 0.07}, latency=0.4,
                             retry_after="0.1", seed=5) as srv:
        env = run_env(ANTHROPIC_BASE_URL=srv.url, ANTHROPIC_API_KEY="sk-ant-fake")
        for k in range(5):
            asked = len(srv.requests)
            proc = _start(cache, n_rows, env)
            if k == 0:
                # The first answers are in the cache while the QC model is still loading:
                # kill exactly then (old code stored nothing before QC had scored).
                _wait(lambda: _counts(cache)[1] > 0, proc, "an answer stored before QC")
                done, stored, judged = _counts(cache)
                during_qc_load = (stored, judged)
            else:
                # 1-3 s after the build's first request reached the server (or, once every
                # answer is stored, 1-3 s into judging them)
                if _wait(lambda: len(srv.requests) > asked or _counts(cache)[0] == n_rows, proc,
                         "a request"):
                    time.sleep(rng.uniform(1.0, 3.0))
            kills += _kill(proc)
        billed_before_final = len(srv.billed())
        final = _final(cache, n_rows, env)
        paid_twice = srv.paid_twice()
        billed = len(srv.billed())
    assert kills == 5, "a build finished before its kill; the test proved less than it says"
    assert during_qc_load[0] > 0 and during_qc_load[1] == 0, during_qc_load
    done, stored, judged = _counts(cache)
    assert done == n_rows and stored == judged == 3 * n_rows  # all stored, all judged
    assert billed >= n_rows and billed_before_final > 0
    # The promise: a kill loses at most the requests in flight.
    assert paid_twice <= CONCURRENCY * kills, (paid_twice, billed, final.stderr[-2000:])
    con = sqlite3.connect(cache)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # no unjudged candidate ever reaches training
    from augment.cache import VariantCache
    from augment.types import Row
    from tests.build_helpers import api_prompts
    rows = [Row(f"r{i}", p, "a") for i, p in enumerate(api_prompts(n_rows))]
    table = VariantCache(cache, readonly=True).load_table(rows, ["paraphrase"], "project")
    assert len(table) == int(con.execute(
        "SELECT count(*) FROM variants WHERE accepted_project = 1").fetchone()[0]) > 0


@pytest.mark.heavy
def test_sigkill_between_batch_end_and_result_storage_pays_nothing_twice(tmp_path):
    n_rows = 24
    cache = tmp_path / "c.sqlite"
    state = tmp_path / "c.sqlite.anthropic-batch.json"
    with FakeAnthropicServer(batch_polls=1) as srv:
        env = run_env(ANTHROPIC_BASE_URL=srv.url, ANTHROPIC_API_KEY="sk-ant-fake")
        # kill 1: while the batch is processing (the id is recorded, nothing answered yet)
        proc = _start(cache, n_rows, env, "batches")
        _wait(lambda: srv.count("batch_retrieve") >= 1, proc, "a poll")
        assert _kill(proc) and state.exists()
        # kills 2 and 3: the moment the server has served the results (before or while the
        # client stores them), then 0.3 s after (old code: the id already deleted, the results
        # waiting for the QC model)
        for delay in (0.0, 0.3):
            served = srv.count("batch_results")
            proc = _start(cache, n_rows, env, "batches")
            _wait(lambda: srv.count("batch_results") > served, proc, "results served")
            time.sleep(delay)
            killed = _kill(proc)
            stored_at_kill = _counts(cache)[0]
            # the id is forgotten only once every result is stored
            assert state.exists() or stored_at_kill == n_rows, (delay, stored_at_kill)
            assert killed or stored_at_kill == n_rows
        _final(cache, n_rows, env, "batches")
        creates = [r for r in srv.requests if r["endpoint"] == "batch_create"]
        assert srv.count("messages") == 0
    assert len(creates) == 1, "the batch was submitted (and paid for) again"
    assert len(creates[0]["body"]["requests"]) == n_rows
    done, stored, judged = _counts(cache)
    assert done == n_rows and stored == judged == 3 * n_rows
    assert not state.exists()


def test_sigkilled_rescore_resumes_after_the_last_batch_it_stored(tmp_path):
    """`python -m augment.inspect --rescore` on a copy of the demo cache, SIGKILLed the moment
    its first batch of verdicts is stored under qc=project: the rerun keeps that batch (judges
    only the rest, says so) and ends with the verdicts of an unbroken rescore."""
    import json
    import shutil

    from augment.build import make_checker
    from augment.cache import VariantCache
    from augment.config import AugmentConfig
    config = tmp_path / "run.yaml"  # the judge off keeps this quick; its path is the same
    config.write_text((ROOT / "configs" / "tiny.yaml").read_text() + "\nqc_judge: none\n")
    cache, whole = tmp_path / "kill.sqlite", tmp_path / "whole.sqlite"
    shutil.copy(ROOT / "data" / "demo" / "variants.sqlite", cache)
    con = sqlite3.connect(cache)  # 100 of its 323 requests: batches of 85 and 15, quicker
    with con:
        con.execute("DELETE FROM variants WHERE request_key NOT IN (SELECT DISTINCT "
                    "request_key FROM variants ORDER BY request_key LIMIT 100)")
    con.close()  # the last connection: the WAL is checkpointed into the file copied next
    shutil.copy(cache, whole)
    total = sqlite3.connect(cache).execute("SELECT count(*) FROM variants").fetchone()[0]

    def resume_point():
        con = sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute("SELECT value FROM meta WHERE key='qc_rescore_accepted_project'"
                               ).fetchone()
        finally:
            con.close()
    argv = [sys.executable, "-m", "augment.inspect", str(cache), "--rescore", "--config",
            str(config), "--examples", "0"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=run_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    assert _wait(lambda: resume_point() is not None, proc, "a stored batch"), proc.stderr.read()
    assert _kill(proc)
    kept = total - VariantCache(cache, readonly=True).candidates_after(
        json.loads(resume_point()[0])["through"])
    assert 0 < kept < total
    again = subprocess.run(argv, cwd=ROOT, env=run_env(), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    assert (f"resuming a stopped rescore under qc=project: {kept} candidates already judged "
            f"by these QC rules and settings are kept, {total - kept} to go") in again.stderr
    assert f"rescored {total - kept} candidates under qc=project" in again.stdout
    assert f"rescored {total} candidates under qc=seed" in again.stdout
    assert resume_point() is None  # finished: stamped, nothing left to resume
    # the same verdicts as one unbroken rescore with the same settings
    cfg = AugmentConfig(qc_judge="none", augment_cache=str(whole))
    VariantCache(whole).rescore(make_checker(cfg), only_missing=False)
    q = ("SELECT id, accepted_project, reasons_json, round(similarity, 5) FROM variants "
         "ORDER BY id")
    assert sqlite3.connect(cache).execute(q).fetchall() == sqlite3.connect(whole).execute(q).fetchall()


# ---- multi-call requests: the calls that answered before a kill are not paid again ----------

def _rows_of(cache, sql):
    if not os.path.exists(cache):
        return []
    con = sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:  # schema not created yet
        return []
    finally:
        con.close()


def _steps(cache) -> int:
    return (_rows_of(cache, "SELECT count(*) FROM steps") or [(0,)])[0][0]


def _killed_between_calls(tmp_path, srv, env, mode, stored_at_kill):
    """A build whose later calls hang (`srv.hold` set) is SIGKILLed once `stored_at_kill`
    earlier calls are stored as steps; the rerun (nothing hangs) finishes it. Returns the
    cache path."""
    n_rows = 12
    cache = tmp_path / "c.sqlite"
    srv.hold.set()
    proc = _start(cache, n_rows, env, mode)
    _wait(lambda: _steps(cache) >= stored_at_kill, proc, f"{stored_at_kill} calls stored")
    assert _steps(cache) == stored_at_kill  # the workers are all waiting on a later call
    assert _kill(proc)
    seen = subprocess.run([sys.executable, "-m", "augment.inspect", str(cache)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert f"plus {stored_at_kill} paid calls" in seen.stdout, seen.stdout + seen.stderr
    assert f"{stored_at_kill} from killed builds" in seen.stdout
    srv.hold.clear()
    _final(cache, n_rows, env, mode)
    assert _counts(cache)[0] == n_rows and _steps(cache) == 0
    # every call was paid once, and the cache's spend counts each paid call exactly once
    assert srv.paid_twice(srv.endpoint) == 0
    spent = _rows_of(cache, "SELECT sum(input_tokens), sum(output_tokens) FROM requests")[0]
    assert tuple(spent) == srv.billed_tokens(srv.endpoint)
    return cache


@pytest.mark.heavy
def test_sigkill_between_backtranslation_legs_pays_no_first_leg_twice(tmp_path):
    """translate_backend: llm on the Anthropic API: the way back hangs, so each of the 8
    workers holds a request whose first leg (English -> German) is paid; SIGKILL then. The
    rerun reuses those 8 first legs (provenance says so) and asks only the way back."""
    import json
    import threading

    def translate(system, user, body=None):  # a round trip that comes back reworded
        text = user.split("<text>\n", 1)[1].rsplit("\n</text>", 1)[0]
        back = "into English" in system
        return f"<text>{'Tell me: ' + text[5:] if back else '[de] ' + text}</text>"

    def behaviour(endpoint, index, body):
        back = "into English" in FakeAnthropicServer._system_text(body.get("system"))
        return "hang" if srv.hold.is_set() and back else None

    with FakeAnthropicServer(reply=translate, behaviour=behaviour, hang_seconds=60) as srv:
        srv.hold, srv.endpoint = threading.Event(), "messages"
        env = run_env(ANTHROPIC_BASE_URL=srv.url, ANTHROPIC_API_KEY="sk-ant-fake")
        cache = _killed_between_calls(tmp_path, srv, env, "backtranslate", CONCURRENCY)
        firsts = [r for r in srv.billed() if "into German" in r["body"]["system"]]
        assert len(firsts) == 12
    metas = [json.loads(p)["meta"] for (p,) in _rows_of(cache, "SELECT provenance_json FROM variants")]
    assert sum(m.get("reused_calls") == ["pivot"] for m in metas) == CONCURRENCY


@pytest.mark.heavy
def test_sigkill_between_single_style_samples_pays_no_sample_twice(tmp_path):
    """paraphrase_style: single on an OpenAI-compatible server (n = 3 calls per request, each
    with its own seed): the third call of every request hangs, so 8 workers hold 2 paid samples
    each; SIGKILL then. The rerun asks only the third samples."""
    import json
    import threading

    from tests.fakes import FakeOpenAIServer
    from tests.fakes.anthropic_server import _REWRITES, extract_source

    def reply(system, user, body=None):
        return _REWRITES[int(body["seed"]) % len(_REWRITES)].format(s=extract_source(user))

    asked: dict[str, int] = {}

    def behaviour(endpoint, index, body):
        user = srv._user_text(body["messages"])
        with lock:
            asked[user] = asked.get(user, 0) + 1
            third = asked[user] >= 3
        return "hang" if srv.hold.is_set() and third else None

    lock = threading.Lock()
    with FakeOpenAIServer(reply=reply, behaviour=behaviour, hang_seconds=60) as srv:
        srv.hold, srv.endpoint = threading.Event(), "chat"
        env = run_env(OPENAI_BASE_URL=srv.base_url, OPENAI_API_KEY="sk-fake")
        cache = _killed_between_calls(tmp_path, srv, env, "single", 2 * CONCURRENCY)
        assert len(srv.billed("chat")) == 3 * 12
    metas = [json.loads(p)["meta"] for (p,) in _rows_of(cache, "SELECT provenance_json FROM variants")]
    reused = [m for m in metas if "reused_calls" in m]
    assert len(reused) == 2 * CONCURRENCY
    assert all(m["reused_calls"] == [f"sample-{m['index']}"] and m["index"] < 2 for m in reused)
