"""The variant cache: storage, idempotence, errors, concurrent readers, CSR tables."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import sqlite3

import numpy as np
import pytest

from augment.cache import SCHEMA_VERSION, VariantCache
from augment.errors import AugtuneError
from augment.types import Candidate, Request, Result, Row


def req(source, method="paraphrase", field="prompt", **params):
    return Request.make(method, field, source, "fake", "m1", f"{method}-v1", **params)


def score(sim=0.9, ok=True, reasons=()):
    return {"semantic_similarity": sim, "is_valid": ok, "length_ratio": 1.0, "unique_words": 2,
            "reasons": list(reasons)}


def put(cache, r, texts, sims=None, oks=None, mode="project"):
    sims = sims or [0.9] * len(texts)
    oks = oks or [True] * len(texts)
    res = Result([Candidate(t, meta={"i": i}) for i, t in enumerate(texts)], input_tokens=10,
                 output_tokens=20, cost_usd=0.001)
    return cache.put(r, res, [score(s, o, [] if o else ["too far"]) for s, o in zip(sims, oks)],
                     mode)


@pytest.mark.reliability
def test_put_get_missing_and_idempotent(tmp_path):
    c = VariantCache(tmp_path / "c.sqlite")
    a, b = req("How do I reset my password?"), req("What is a VPN?")
    assert c.missing([a, b, a]) == [a, b]  # deduplicated by key
    put(c, a, ["How can I reset my password?", "Password reset: how?"], oks=[True, False])
    assert c.missing([a, b]) == [b]
    got = c.get(a)
    assert got["status"] == "done" and got["attempts"] == 1 and got["output_tokens"] == 20
    assert [v["text"] for v in got["variants"]] == ["How can I reset my password?",
                                                   "Password reset: how?"]
    prov = __import__("json").loads(got["variants"][0]["provenance_json"])
    assert prov["method"] == "paraphrase" and prov["model"] == "m1" and prov["similarity"] == 0.9
    assert prov["meta"] == {"i": 0} and prov["request_key"] == a.key
    # Re-put replaces, never duplicates.
    put(c, a, ["How can I reset my password?", "Password reset: how?"])
    n = c._conn().execute("SELECT count(*) FROM variants").fetchone()[0]
    assert n == 2 and c.get(a)["attempts"] == 2
    assert c.stats("project") == {"paraphrase": {"generated": 2, "accepted": 2, "rejected": 0,
                                                 "failed": 0, "unjudged": 0}}


@pytest.mark.reliability
def test_failures_are_redone_and_counted(tmp_path):
    c = VariantCache(tmp_path / "c.sqlite")
    a = req("Explain DNS.")
    c.put_failure(a, "CandidateError: malformed JSON")
    c.put_failure(a, "CandidateError: malformed JSON")
    assert c.missing([a]) == [a]
    assert c.get(a)["attempts"] == 2 and c.get(a)["status"] == "failed"
    assert c.stats("project")["paraphrase"]["failed"] == 1
    assert c.failure_reasons() == [("paraphrase", "CandidateError: malformed JSON", 1)]
    put(c, a, ["Describe DNS."])
    assert c.missing([a]) == [] and c.get(a)["attempts"] == 3
    c.put_failure(a, "late failure")  # never downgrades stored work
    assert c.get(a)["status"] == "done"


@pytest.mark.reliability
def test_schema_mismatch_and_corrupt_files(tmp_path):
    p = tmp_path / "old.sqlite"
    VariantCache(p).close()
    con = sqlite3.connect(p)
    con.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(AugtuneError, match=rf"old.sqlite was written by schema v1, this augtune "
                                           rf"reads v{SCHEMA_VERSION}: delete it"):
        VariantCache(p)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"\x00garbage bytes, not a database at all" * 40)
    with pytest.raises(AugtuneError, match=r"junk.sqlite is not an augtune cache \(file is not a "
                                           r"database\)"):
        VariantCache(junk)
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t(x)")
    con.commit()
    con.close()
    with pytest.raises(AugtuneError, match="not an augtune cache"):
        VariantCache(other)
    with pytest.raises(AugtuneError, match="no variant cache there yet"):
        VariantCache(tmp_path / "absent.sqlite", readonly=True)


def _reader(path, n_rounds, q):
    """Another process: read while the parent writes; report what it saw."""
    c = VariantCache(path, readonly=True)
    seen = []
    for _ in range(n_rounds):
        row = c._conn().execute("SELECT count(*), count(DISTINCT request_key) FROM variants").fetchone()
        assert row[0] == 2 * row[1]  # never a half-written request
        seen.append(row[0])
    q.put(seen)


@pytest.mark.reliability
def test_wal_concurrent_reader_process(tmp_path):
    p = tmp_path / "c.sqlite"
    c = VariantCache(p)
    assert c._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    put(c, req("seed row"), ["a", "b"])
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_reader, args=(str(p), 300, q))
    proc.start()
    for i in range(150):
        put(c, req(f"prompt {i}"), [f"x{i}", f"y{i}"])
    seen = q.get(timeout=30)
    proc.join(timeout=30)
    assert proc.exitcode == 0
    assert seen == sorted(seen) and len(seen) == 300  # monotone snapshots, no errors
    assert c.check() == "ok"


def test_pickles_as_path_and_reopens(tmp_path):
    c = VariantCache(tmp_path / "c.sqlite")
    put(c, req("p"), ["q"])
    c2 = pickle.loads(pickle.dumps(c))
    assert c2._con is None and c2.missing([req("p")]) == []


def test_load_table_csr_exact(tmp_path):
    c = VariantCache(tmp_path / "c.sqlite")
    rows = [Row("r0", "P zero", "C zero"), Row("r1", "P one", "C one"),
            Row("r2", "P zero", "C two"),  # shares r0's prompt: shares its prompt variants
            Row("r3", "P three", "C three")]
    t1, t2 = req("P zero", "templates", n=3), req("P zero", "paraphrase", n=2)
    o1 = req("C two", "outputs", "completion", variant="brief")
    ids_t1 = put(c, t1, ["T0a", "T0b"], sims=[0.8, 0.7])
    ids_t2 = put(c, t2, ["Q0a", "Q0b", "Q0c"], sims=[0.9, 0.95, 0.5], oks=[True, True, False])
    ids_o1 = put(c, o1, ["brief two"], sims=[0.6])
    put(c, req("not in rows"), ["zzz"])
    put(c, req("P one", "backtranslate"), ["B1"], mode="seed")  # unjudged under project
    with pytest.raises(AugtuneError, match="no verdict under qc=project"):
        c.load_table(rows, ["paraphrase", "templates", "outputs", "backtranslate"], "project")
    tab = c.load_table(rows, ["paraphrase", "templates", "outputs"], "project")
    # order: row, then method (METHOD_NAMES order: paraphrase, backtranslate, templates, ...)
    np.testing.assert_array_equal(tab.offsets, [0, 4, 4, 9, 9])
    assert tab.texts == ["Q0a", "Q0b", "T0a", "T0b", "Q0a", "Q0b", "T0a", "T0b", "brief two"]
    np.testing.assert_array_equal(tab.method, [0, 0, 2, 2, 0, 0, 2, 2, 4])
    np.testing.assert_array_equal(tab.field, [0, 0, 0, 0, 0, 0, 0, 0, 1])
    np.testing.assert_allclose(tab.similarity, [0.9, 0.95, 0.8, 0.7] * 2 + [0.6], rtol=1e-6)
    vid = ids_t2[:2] + ids_t1
    np.testing.assert_array_equal(tab.variant_id, vid + vid + ids_o1)
    assert tab.method.dtype == np.int8 and tab.offsets.dtype == np.int64
    only_t = c.load_table(rows, ["templates"], "project")
    assert only_t.texts == ["T0a", "T0b", "T0a", "T0b"]
    assert c.load_table(rows, [], "project").n_rows == 4


class _SeedChecker:
    """Stands in for QualityChecker under qc=seed: the seed rule on a fixed similarity."""

    class config:
        mode = "seed"

    def fingerprint(self):
        return "seed-checker-v1"

    def score_pairs(self, originals, augmenteds, method=None, group_ids=None, other_originals=None):
        return [{"is_valid": a != "Q0c", "reasons": [] if a != "Q0c" else ["sim"]}
                for a in augmenteds]


def test_rescore_adds_a_mode_without_touching_others(tmp_path):
    c = VariantCache(tmp_path / "c.sqlite")
    rows = [Row("r0", "P zero", "C")]
    put(c, req("P zero"), ["Q0a", "Q0b", "Q0c"], oks=[True, False, False])
    assert c.unjudged_count("seed") == 3
    assert c.rescore(_SeedChecker()) == 3
    assert c.rescore(_SeedChecker()) == 0  # only missing ones
    assert c.qc_fingerprint("seed") == "seed-checker-v1"
    assert c.load_table(rows, ["paraphrase"], "seed").texts == ["Q0a", "Q0b"]
    assert c.load_table(rows, ["paraphrase"], "project").texts == ["Q0a"]
    assert c.stats("seed")["paraphrase"]["accepted"] == 2


class _OtherSeedChecker(_SeedChecker):
    def fingerprint(self):
        return "seed-checker-v2"


def test_a_stopped_full_rescore_resumes_after_its_last_stored_batch(tmp_path):
    """A full rescore stopped after its first batch keeps that batch: the next one by the same
    QC judges only the rest and stamps the fingerprint; one by other QC starts again."""
    import threading

    from augment.judge import rescore
    c = VariantCache(tmp_path / "c.sqlite")
    for i in range(3):
        put(c, req(f"P {i}"), [f"Q{i}a", f"Q{i}b", f"Q{i}c"], mode="seed")
    c.set_qc_fingerprint("seed", "seed-checker-v0")  # verdicts of an older QC: all stale
    stop, seen = threading.Event(), []
    n = rescore(c, _SeedChecker(), only_missing=False, batch=3, stop=stop,
                on_judged=lambda acc, rej: (seen.append(acc + rej), stop.set()))
    first = c.unjudged("seed", 3, only_missing=False)[0][4]  # the first request, by key
    assert n == 3 and seen == [3]
    assert c.qc_fingerprint("seed") == "seed-checker-v0"  # unfinished: not stamped
    assert c.rescore_resume_key("seed", "seed-checker-v1") == first
    assert c.rescore_resume_key("seed", "seed-checker-v2") == ""  # other QC: nothing to resume
    assert c.candidates_after(first) == 6
    judged = []
    assert rescore(c, _SeedChecker(), only_missing=False, batch=3,
                   on_judged=lambda acc, rej: judged.append(acc + rej)) == 6
    assert judged == [3, 3]
    assert c.qc_fingerprint("seed") == "seed-checker-v1"
    assert c.rescore_resume_key("seed", "seed-checker-v1") == ""  # done: nothing to resume
    # stopped again, then rescored by other QC rules: every candidate is judged again
    stop.clear()
    rescore(c, _SeedChecker(), only_missing=False, batch=3, stop=stop,
            on_judged=lambda acc, rej: stop.set())
    assert rescore(c, _OtherSeedChecker(), only_missing=False, batch=3) == 9
    assert c.qc_fingerprint("seed") == "seed-checker-v2"


def test_a_stopped_rescore_by_other_qc_makes_verdicts_stale_and_its_resume_judges_newcomers(
        tmp_path, capsys):
    """Settings changed, their rescore stopped part-way, settings changed back: the stamp still
    names the old checker but the first requests carry the new one's verdicts, so neither may
    train on the cache as it is. The resume also judges candidates stored below its resume
    point since the stop (a build under another QC mode), which it would otherwise skip."""
    import threading

    from augment.judge import rescore
    c = VariantCache(tmp_path / "c.sqlite")
    for i in range(3):
        put(c, req(f"P {i}"), [f"Q{i}a", f"Q{i}b", f"Q{i}c"], mode="seed")
    c.set_qc_fingerprint("seed", "seed-checker-v1")  # judged by v1
    stop = threading.Event()
    rescore(c, _OtherSeedChecker(), only_missing=False, batch=3, stop=stop,
            on_judged=lambda acc, rej: stop.set())  # v2, stopped after one request
    first = c.unjudged("seed", 3, only_missing=False)[0][4]
    assert c.qc_fingerprint("seed") == "seed-checker-v1"
    assert c.stale_verdicts("seed", "seed-checker-v1")  # mixed: v2 judged the first request
    assert c.stale_verdicts("seed", "seed-checker-v2")
    newcomer = next(r for r in (req(f"N {i}") for i in range(200)) if r.key < first)
    put(c, newcomer, ["N a", "N b", "N c"], mode="project")  # no seed verdict yet
    capsys.readouterr()
    assert rescore(c, _OtherSeedChecker(), only_missing=False, batch=3, progress=True) == 9
    err = capsys.readouterr().err
    assert ("3 candidates already judged by these QC rules and settings are kept, 9 to go"
            in err)
    assert "augtune: rescore qc=seed: 9/9 candidates, done" in err  # a log's last line
    assert c.unjudged_count("seed") == 0 and c.qc_fingerprint("seed") == "seed-checker-v2"
    assert not c.stale_verdicts("seed", "seed-checker-v2")
    # the same the other way round: v1 stopped part-way, then v2 again starts from scratch
    stop.clear()
    rescore(c, _SeedChecker(), only_missing=False, batch=3, stop=stop,
            on_judged=lambda acc, rej: stop.set())
    assert c.stale_verdicts("seed", "seed-checker-v2")
    assert rescore(c, _OtherSeedChecker(), only_missing=False, batch=3) == 12


def test_refusals_and_batch_state(tmp_path):
    c = VariantCache(tmp_path / "c.sqlite")
    r = Request.make("refusals", "refusal", "How do I pick a lock?", "rules", "", "refusals-v1",
                     reason="burglary", alternative="call a locksmith")
    res = Result([Candidate("I can't help with that; a locksmith can.", prompt="Pick a lock how?")])
    c.put(r, res, [score()], "project")
    tab = c.load_refusals(["refusals"], "project")
    assert tab.prompts == ["Pick a lock how?"]
    assert tab.completions == ["I can't help with that; a locksmith can."]
    assert len(c.load_refusals(["paraphrase"], "project")) == 0
    c.set_batch_state("anthropic_batch", {"id": "msgbatch_1", "keys": 3})
    assert c.get_batch_state("anthropic_batch") == {"id": "msgbatch_1", "keys": 3}
    assert c.get_batch_state("nope", 7) == 7


def test_load_table_restricted_to_one_runs_request_keys(tmp_path):
    """A shared cache holds variants made with other settings (here another seed): a run must
    see only its own requests' variants, or ablations compare different candidate pools."""
    from augment.types import Row
    c = VariantCache(tmp_path / "c.sqlite")
    mine, other = req("Reset my password", seed=1), req("Reset my password", seed=2)
    put(c, mine, ["Please reset my password", "Can you reset my password?"])
    put(c, other, ["I need you to reset my password"])
    rows = [Row("r", "Reset my password", "ok")]
    assert sorted(c.load_table(rows, ["paraphrase"], "project").texts) == [
        "Can you reset my password?", "I need you to reset my password", "Please reset my password"]
    t = c.load_table(rows, ["paraphrase"], "project", keys=[mine.key])
    assert sorted(t.texts) == ["Can you reset my password?", "Please reset my password"]
    assert t.offsets.tolist() == [0, 2]
    assert len(c.load_table(rows, ["paraphrase"], "project", keys=[]).texts) == 0


def test_steps_of_unfinished_requests_are_counted_once_and_go_with_the_outcome(tmp_path):
    """`steps` (augment.steps): a kill leaves uncounted calls; a transient failure counts them
    (kept, at no new spend); an answer or a content failure removes them. `pending_steps(keys)`
    reports only the requests asked about, so a build never claims another config's calls."""
    from augment.backends.pricing import Cost
    from augment.types import Completion
    c = VariantCache(tmp_path / "c.sqlite")
    a, b = req("one"), req("two")
    c.put_step(a.key, "pivot", Completion("eins", 10, 5, Cost(0.25, known=False), 1))
    c.put_step(b.key, "pivot", Completion("zwei", 10, 5, 0.5))
    got = c.get_step(a.key, "pivot")
    assert (got.text, got.input_tokens, got.output_tokens, got.retries) == ("eins", 10, 5, 1)
    assert float(got.cost_usd) == 0.25 and got.cost_usd.known is False
    assert c.get_step(a.key, "back") is None
    assert c.pending_steps() == {"requests": 2, "calls": 2, "uncounted_calls": 2,
                                 "uncounted_usd": 0.75}
    assert c.pending_steps([b.key]) == {"requests": 1, "calls": 1, "uncounted_calls": 1,
                                        "uncounted_usd": 0.5}
    c.put_failure(a, "RetryableError: 500", Result([], 10, 5, 0.25), keep_steps=True)
    again = c.get_step(a.key, "pivot")
    assert again.text == "eins" and (again.input_tokens, float(again.cost_usd)) == (0, 0.0)
    assert c.pending_steps()["uncounted_calls"] == 1
    c.put_answer(a, Result([Candidate("One, again")], 3, 3, 0.1))
    c.put_failure(b, "CandidateError: unchanged", Result([], 10, 5, 0.5))
    assert c.pending_steps()["calls"] == 0
    assert c.totals()["input_tokens"] == 10 + 3 + 10  # each call counted once


def test_bad_cache_paths_are_one_line_errors(tmp_path):
    """augment_cache_init that is a folder or not a cache, and an augment_cache whose folder is
    a file: AugtuneError naming the path (were sqlite3 / FileExistsError tracebacks), and no
    half-copied file left behind."""
    from augment.cache import init_cache_from
    text = tmp_path / "train.jsonl"
    text.write_text('{"prompt": "a", "completion": "b"}\n')
    with pytest.raises(AugtuneError, match=r"augment_cache_init: .*train\.jsonl is not an augtune cache"):
        init_cache_from(str(tmp_path / "x.sqlite"), str(text))
    with pytest.raises(AugtuneError, match=r"augment_cache_init: .* is a folder"):
        init_cache_from(str(tmp_path / "x.sqlite"), str(tmp_path))
    import sqlite3
    foreign = tmp_path / "foreign.db"  # a SQLite file, but not a cache: no meta table
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.close()
    for bad in (text, foreign):  # the advice is about augment_cache_init, never augment_cache
        with pytest.raises(AugtuneError) as err:
            init_cache_from(str(tmp_path / "x.sqlite"), str(bad))
        assert str(err.value).endswith("point augment_cache_init at a variant cache.")
    foreign.unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]
    with pytest.raises(AugtuneError, match=r"a file stands where its folder should be"):
        VariantCache(text / "c.sqlite").stats("project")


@pytest.mark.reliability
@pytest.mark.parametrize("name", ["cache#1.sqlite", "c?mode=rw.sqlite", "c%41 b#2?x%3F.sqlite"])
def test_a_cache_path_with_uri_characters_opens_readonly_and_inits(tmp_path, name):
    """A SQLite URI built by pasting the path in: "#", "?" and "%" ended it, so
    augment_cache_init: cache#1.sqlite opened (and created) "cache", and copied an empty
    database without error. The path is percent-encoded: the right file, read-only, no stray."""
    from augment.cache import init_cache_from
    folder = tmp_path / "odd #dir ?a %20"
    folder.mkdir()
    src = folder / name
    c = VariantCache(src)
    a = req("How do I reset my password?")
    put(c, a, ["How can I reset my password?", "Password reset: how?"])
    c.close()
    ro = VariantCache(src, readonly=True)
    assert [v["text"] for v in ro.get(a)["variants"]] == ["How can I reset my password?",
                                                          "Password reset: how?"]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro._conn().execute("DELETE FROM variants")
    ro.close()
    dst = tmp_path / "copy.sqlite"
    assert init_cache_from(str(dst), str(src))
    copy = VariantCache(dst)
    assert copy.get(a) == VariantCache(src, readonly=True).get(a) and copy.get(a) is not None
    copy.close()
    # only the source (and SQLite's -wal/-shm beside it) and the copy: no file named by a cut path
    assert {p.name for p in tmp_path.iterdir()} <= {folder.name, "copy.sqlite", "copy.sqlite-wal",
                                                    "copy.sqlite-shm"}
    assert {p.name for p in folder.iterdir()} <= {name, name + "-wal", name + "-shm"}
