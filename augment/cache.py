"""The variant cache: one SQLite file of requests, their answers, spend, and QC verdicts.

Its one job is storage. Judging stored candidates is `augment.judge`; turning the accepted ones
into numpy tables for training is `augment.tables` (`load_table` here forwards to it).

Why SQLite: one file that many processes read at once (ranks, dataloader workers) while one
builder appends (WAL mode), with transactions so a build killed at any instant leaves each request
either fully stored or absent. Content-addressed by `Request.key`, so ablations and datasets that
share a prompt share its variants, and a rerun redoes only what is missing or failed.

Answers first, verdicts later. An answer is paid for, so `put_answer` stores it (candidates,
provenance, spend) the moment it arrives, before any QC: a kill while the QC model loads or
scores loses nothing that was paid for. Each variant row carries one verdict column per mode in
`QC_MODES` (`accepted_project`, `accepted_seed`, `accepted_none`; NULL = not judged under that
mode yet) and `reasons_json` = {mode: [reasons]}; `set_verdicts` fills them in, together with
the scores (similarity, length ratio, unique words), which do not depend on the mode. So the
qc=none/seed/project ablation trains on the SAME candidates, judged locally.

Steps. A request that takes several calls (backtranslation's two legs, `single`-style
paraphrases) stores each paid call in `steps` as it returns (`augment.steps`), so a kill between
them costs only the call in flight; the steps go when the request's outcome is stored.

Spend per attempt. Every try of a request (done or failed) is one row of `attempts` with its
retries, tokens and cost; the request row holds their sums, so redoing a failed request never
hides what the failed try cost.

Speed. Every variant row keeps a fixed 32-byte little-endian record `pack` (id, source hash,
request hash, similarity, idx, method, field) next to its text; judging patches its similarity.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .config import QC_MODES
from .errors import AugtuneError
from .types import METHOD_NAMES, Request, Result, text_hash
from .variants import FIELD_CODES

SCHEMA_VERSION = 2
_SQLITE_MAGIC = b"SQLite format 3\x00"
_FIELD_CODES = {**FIELD_CODES, "refusal": 2}
PACK_DTYPE = np.dtype([("id", "<i8"), ("source_hash", "<u8"), ("request_hash", "<u8"),
                       ("similarity", "<f4"), ("idx", "<i2"), ("method", "i1"), ("field", "i1")])
assert PACK_DTYPE.itemsize == 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS requests(
    key TEXT PRIMARY KEY, method TEXT NOT NULL, field TEXT NOT NULL, source TEXT NOT NULL,
    backend TEXT, model TEXT, prompt_version TEXT, params_json TEXT,
    status TEXT NOT NULL CHECK(status IN ('done', 'failed')), error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, retries INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0, problems_json TEXT, created REAL, updated REAL);
CREATE INDEX IF NOT EXISTS requests_method ON requests(method, status);
CREATE TABLE IF NOT EXISTS variants(
    id INTEGER PRIMARY KEY, request_key TEXT NOT NULL, idx INTEGER NOT NULL,
    method TEXT NOT NULL, field TEXT NOT NULL, source_hash TEXT NOT NULL, source TEXT NOT NULL,
    text TEXT NOT NULL, prompt TEXT, provenance_json TEXT NOT NULL,
    similarity REAL, length_ratio REAL, unique_words INTEGER,
    accepted_project INTEGER, accepted_seed INTEGER, accepted_none INTEGER,
    reasons_json TEXT NOT NULL DEFAULT '{}', qc_mode TEXT, pack BLOB NOT NULL,
    UNIQUE(request_key, idx));
CREATE INDEX IF NOT EXISTS variants_source ON variants(source_hash);
CREATE INDEX IF NOT EXISTS variants_method ON variants(method);
CREATE INDEX IF NOT EXISTS variants_unjudged_project ON variants(method) WHERE accepted_project IS NULL;
CREATE INDEX IF NOT EXISTS variants_unjudged_seed ON variants(method) WHERE accepted_seed IS NULL;
CREATE INDEX IF NOT EXISTS variants_unjudged_none ON variants(method) WHERE accepted_none IS NULL;
CREATE TABLE IF NOT EXISTS batch_state(key TEXT PRIMARY KEY, value TEXT, updated REAL);
"""
_ATTEMPTS_DDL = """
CREATE TABLE IF NOT EXISTS attempts(
    key TEXT NOT NULL, n INTEGER NOT NULL, method TEXT, status TEXT NOT NULL, error TEXT,
    retries INTEGER NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0,
    cost_known INTEGER NOT NULL DEFAULT 1, time REAL, PRIMARY KEY(key, n))
"""
_SCHEMA += _ATTEMPTS_DDL + ";"
# LLM-judge verdicts (qc_judge: llm), keyed by `augment.qc.llm_judge.verdict_key`: a rerun or a
# rescore reuses them instead of asking again. Added like `attempts`, without a schema bump.
_JUDGE_DDL = """
CREATE TABLE IF NOT EXISTS judge_verdicts(key TEXT PRIMARY KEY, verdict_json TEXT NOT NULL,
                                          created REAL)
"""
_SCHEMA += _JUDGE_DDL + ";"
# What each LLM-judge verdict request cost (`ok` = 0: the reply was no verdict), so the cache's
# totals include the judge's spend like the generation attempts'. Added like `attempts`.
_JUDGE_SPEND_DDL = """
CREATE TABLE IF NOT EXISTS judge_spend(id INTEGER PRIMARY KEY, key TEXT NOT NULL,
    ok INTEGER NOT NULL, input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0,
    cost_known INTEGER NOT NULL DEFAULT 1, retries INTEGER NOT NULL DEFAULT 0, time REAL)
"""
_SCHEMA += _JUDGE_SPEND_DDL + ";"
# The paid calls of a multi-call request whose outcome is not stored yet (`augment.steps`): a
# build killed between backtranslation's two legs reuses the first. `counted` = 1 once a
# recorded failed attempt has counted their spend. Added like `attempts`, without a schema bump.
_STEPS_DDL = """
CREATE TABLE IF NOT EXISTS steps(request_key TEXT NOT NULL, step TEXT NOT NULL, text TEXT NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,
    cost_known INTEGER NOT NULL, retries INTEGER NOT NULL, counted INTEGER NOT NULL DEFAULT 0,
    created REAL, PRIMARY KEY(request_key, step))
"""
_SCHEMA += _STEPS_DDL + ";"


# Added without a schema bump (caches written before it get it on their next writable open, with
# one row per request holding what that request's columns recorded): every attempt's spend, so
# a redone request never overwrites what its failed attempts cost.
_ATTEMPTS_BACKFILL = """
INSERT OR IGNORE INTO attempts
SELECT key, max(attempts, 1), method, status, error, retries, input_tokens, output_tokens,
       cost_usd, 1, updated FROM requests
"""


def hash64(hex_digest: str) -> int:
    """First 64 bits of a hex digest as an unsigned int (order-preserving for the hex string)."""
    return int(hex_digest[:16], 16)


def _verdict_col(qc_mode: str) -> str:
    if qc_mode not in QC_MODES:  # also keeps the column name out of reach of SQL injection
        raise AugtuneError(f"qc mode {qc_mode!r} is not one of {QC_MODES}.")
    return f"accepted_{qc_mode}"


def _with_similarity(pack: bytes, similarity) -> bytes:
    """`pack` with its similarity field replaced (judging happens after storage)."""
    off = PACK_DTYPE.fields["similarity"][1]
    b = bytearray(pack)
    b[off:off + 4] = np.float32(np.nan if similarity is None else similarity).tobytes()
    return bytes(b)


def _pack(vid, source_hash_hex, request_key, similarity, idx, method, field) -> bytes:
    rec = np.zeros(1, PACK_DTYPE)
    rec[0] = (vid, hash64(source_hash_hex), hash64(request_key),
              np.nan if similarity is None else similarity, idx,
              METHOD_NAMES.index(method), _FIELD_CODES[field])
    return rec.tobytes()


class VariantCache:
    """Open (or create) the cache at `path`. `readonly=True` for training-side readers.

    Pickles as its path: a dataloader worker or another rank reopens its own connection
    lazily (SQLite connections must not cross a fork).
    """

    def __init__(self, path, readonly: bool = False):
        self.path = str(path)
        self.readonly = readonly
        self._con = None
        self._pid = None
        self._conn()  # fail early with a clear message

    # --- connection -------------------------------------------------------------------
    def __getstate__(self):
        return {"path": self.path, "readonly": self.readonly}

    def __setstate__(self, state):
        self.path, self.readonly = state["path"], state["readonly"]
        self._con, self._pid = None, None

    def __repr__(self):
        return f"VariantCache({self.path!r}, readonly={self.readonly})"

    def _conn(self) -> sqlite3.Connection:
        if self._con is not None and self._pid == os.getpid():
            return self._con
        self._con, self._pid = self._open(), os.getpid()
        return self._con

    def _open(self) -> sqlite3.Connection:
        p = Path(self.path)
        if p.is_dir():
            raise AugtuneError(f"{self.path} is a folder; augment_cache names the cache file "
                               "itself, e.g. cache/variants.sqlite.")
        exists = p.exists() and p.stat().st_size > 0
        if exists:
            with open(p, "rb") as fh:
                if fh.read(16) != _SQLITE_MAGIC:
                    raise AugtuneError(f"{self.path} is not an augtune cache (file is not a "
                                       "database): delete it or point augment_cache elsewhere.")
        elif self.readonly:
            raise AugtuneError(f"{self.path}: no variant cache there yet; build it with "
                               "`python -m augment.build --config CONFIG`.")
        try:
            if self.readonly:
                con = sqlite3.connect(_readonly_uri(p, immutable=_unwritable(p)), uri=True,
                                      timeout=60, isolation_level=None, check_same_thread=False)
            else:
                _make_parent(p)
                con = sqlite3.connect(str(p), timeout=60, isolation_level=None,
                                      check_same_thread=False)
            con.execute("PRAGMA busy_timeout=60000")
            if not self.readonly:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise AugtuneError(f"{self.path} is not an augtune cache ({exc}): delete it or "
                               "point augment_cache elsewhere.") from None
        if tables and "meta" not in tables:
            con.close()
            raise AugtuneError(f"{self.path} is a SQLite file but not an augtune cache (no meta "
                               "table): point augment_cache elsewhere.")
        if tables:
            row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else None
            if version != SCHEMA_VERSION:
                con.close()
                raise AugtuneError(f"{self.path} was written by schema v{version}, this augtune "
                                   f"reads v{SCHEMA_VERSION}: delete it or point augment_cache "
                                   "elsewhere.")
        if tables and not self.readonly and "attempts" not in tables:
            con.execute("BEGIN IMMEDIATE")
            con.execute(_ATTEMPTS_DDL)
            con.execute(_ATTEMPTS_BACKFILL)
            con.execute("COMMIT")
        if tables and not self.readonly and "judge_verdicts" not in tables:
            con.execute(_JUDGE_DDL)
        if tables and not self.readonly and "judge_spend" not in tables:
            con.execute(_JUDGE_SPEND_DDL)
        if tables and not self.readonly and "steps" not in tables:
            con.execute(_STEPS_DDL)
        elif not tables and not self.readonly:
            con.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    con.execute(stmt)
            con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),))
            con.execute("INSERT OR REPLACE INTO meta VALUES ('created', ?)", (str(time.time()),))
            con.execute("COMMIT")
        return con

    def close(self) -> None:
        if self._con is not None and self._pid == os.getpid():
            self._con.close()
        self._con = None

    @contextmanager
    def _write(self):
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front so two builders
        queue instead of failing half-way."""
        if self.readonly:
            raise AugtuneError(f"{self.path} was opened read-only.")
        con = self._conn()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    # --- writing ------------------------------------------------------------------------
    def put_answer(self, request: Request, result: Result) -> list[int]:
        """Store a finished request's raw answer, UNJUDGED, in one transaction; returns the new
        variant ids. This is the first thing a build does with an answer it paid for: the QC
        verdicts come later (`augment.judge`), so a kill before or during judging loses no
        money. The spend of this attempt is added to what earlier attempts of the same key
        spent (see `attempts`). A re-put of a key replaces its candidates (no duplicates)."""
        with self._write() as con:
            return self._insert_answer(con, request, result)

    def put(self, request: Request, result: Result, scores: list[dict], qc_mode: str) -> list[int]:
        """`put_answer` and its verdicts under `qc_mode` in ONE transaction (tests, tools).

        `scores[i]` is `score_pairs`' dict for `result.candidates[i]` (keys
        semantic_similarity, is_valid, length_ratio, unique_words, reasons)."""
        if len(scores) != len(result.candidates):
            raise ValueError(f"{len(scores)} scores for {len(result.candidates)} candidates")
        col = _verdict_col(qc_mode)
        with self._write() as con:
            ids = self._insert_answer(con, request, result)
            self._apply_verdicts(con, qc_mode, col,
                                 [(vid, sc.get("is_valid"), sc.get("reasons", []), sc)
                                  for vid, sc in zip(ids, scores)])
        return ids

    def _insert_answer(self, con, request: Request, result: Result) -> list[int]:
        now = time.time()
        key = request.key
        src_hash = text_hash(request.source)
        base_prov = request.provenance()
        attempts, created = self._record_attempt(con, request, "done", None, result, now)
        con.execute(
            "INSERT OR REPLACE INTO requests VALUES (?,?,?,?,?,?,?,?,'done',NULL,?,"
            "?,?,?,?,?,?,?)",
            (key, request.method, request.field, request.source, request.backend,
             request.model, request.prompt_version,
             json.dumps(request.param_dict, sort_keys=True), attempts, *self._spent(con, key),
             json.dumps(result.problems), created, now))
        con.execute("DELETE FROM variants WHERE request_key=?", (key,))
        con.execute("DELETE FROM steps WHERE request_key=?", (key,))  # counted in this answer
        next_id = con.execute("SELECT coalesce(max(id), 0) + 1 FROM variants").fetchone()[0]
        rows, ids = [], []
        for i, cand in enumerate(result.candidates):
            vid = next_id + i
            prov = {**base_prov, "source_hash": src_hash, "request_key": key,
                    "created": now, "meta": cand.meta}
            rows.append((vid, key, i, request.method, request.field, src_hash, request.source,
                         cand.text, cand.prompt,
                         json.dumps(prov, ensure_ascii=False, sort_keys=True, default=str),
                         _pack(vid, src_hash, key, None, i, request.method, request.field)))
            ids.append(vid)
        con.executemany(
            "INSERT INTO variants (id, request_key, idx, method, field, source_hash, source, "
            "text, prompt, provenance_json, pack) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        return ids

    @staticmethod
    def _record_attempt(con, request: Request, status: str, error, spend: Result | None,
                        now: float) -> tuple[int, float]:
        """Append one row to `attempts` (what this try cost); returns (attempt number, the
        request's first-seen time)."""
        old = con.execute("SELECT attempts, created FROM requests WHERE key=?",
                          (request.key,)).fetchone()
        n = (old[0] if old else 0) + 1
        spend = spend or Result([])
        known = int(bool(getattr(spend.cost_usd, "known", True)))
        con.execute("INSERT OR REPLACE INTO attempts VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (request.key, n, request.method, status, error, int(spend.retries),
                     int(spend.input_tokens), int(spend.output_tokens), float(spend.cost_usd),
                     known, now))
        return n, (old[1] if old else now)

    @staticmethod
    def _spent(con, key: str) -> tuple:
        """(retries, input_tokens, output_tokens, cost_usd) summed over every attempt of `key`."""
        return con.execute("SELECT coalesce(sum(retries),0), coalesce(sum(input_tokens),0), "
                           "coalesce(sum(output_tokens),0), coalesce(sum(cost_usd),0) "
                           "FROM attempts WHERE key=?", (key,)).fetchone()

    def put_failure(self, request: Request, error: str, spend: Result | None = None, *,
                    keep_steps: bool = False) -> None:
        """Record a failed attempt and what it spent (retries, and tokens of an unusable
        answer); the next build redoes the request. A request already stored as done keeps
        its answer (never downgraded), but the spend of this attempt is still added.

        The request's stored steps (`augment.steps`; their spend is in `spend`) are deleted, or
        with `keep_steps` (a transient failure: the calls that did answer were fine) kept,
        marked counted, for the next attempt to reuse."""
        now = time.time()
        with self._write() as con:
            if keep_steps:
                con.execute("UPDATE steps SET counted=1 WHERE request_key=?", (request.key,))
            else:
                con.execute("DELETE FROM steps WHERE request_key=?", (request.key,))
            old = con.execute("SELECT status FROM requests WHERE key=?",
                              (request.key,)).fetchone()
            attempts, created = self._record_attempt(con, request, "failed", str(error), spend,
                                                     now)
            if old and old[0] == "done":
                con.execute("UPDATE requests SET attempts=?, retries=?, input_tokens=?, "
                            "output_tokens=?, cost_usd=?, updated=? WHERE key=?",
                            (attempts, *self._spent(con, request.key), now, request.key))
                return
            con.execute(
                "INSERT OR REPLACE INTO requests VALUES (?,?,?,?,?,?,?,?,'failed',?,?,?,?,?,?,"
                "'[]',?,?)",
                (request.key, request.method, request.field, request.source, request.backend,
                 request.model, request.prompt_version,
                 json.dumps(request.param_dict, sort_keys=True), str(error), attempts,
                 *self._spent(con, request.key), created, now))

    def put_step(self, key: str, step: str, comp) -> None:
        """Store one paid call of a request that is not finished yet (`augment.steps`)."""
        with self._write() as con:
            con.execute("INSERT OR REPLACE INTO steps VALUES (?,?,?,?,?,?,?,?,0,?)",
                        (key, step, comp.text, int(comp.input_tokens), int(comp.output_tokens),
                         float(comp.cost_usd), int(bool(getattr(comp.cost_usd, "known", True))),
                         int(comp.retries), time.time()))

    def get_step(self, key: str, step: str):
        """The stored answer of `step`, as a Completion carrying its spend, or (counted by a
        recorded failure already) no spend; None if it was never paid for."""
        from .backends.pricing import Cost
        from .types import Completion
        row = self._conn().execute(
            "SELECT text, input_tokens, output_tokens, cost_usd, cost_known, retries, counted "
            "FROM steps WHERE request_key=? AND step=?", (key, step)).fetchone()
        if row is None:
            return None
        if row[6]:
            return Completion(row[0])
        return Completion(row[0], row[1], row[2], Cost(row[3], known=bool(row[4])), row[5])

    def pending_steps(self, keys=None) -> dict:
        """What unfinished multi-call requests (of `keys`, default all) hold in `steps`:
        requests, calls, and of those the calls (and USD) whose spend no recorded attempt has
        counted yet (a killed build's). Counted ones were kept by a transient failure."""
        try:
            rows = self._conn().execute(
                "SELECT request_key, counted, cost_usd FROM steps").fetchall()
        except sqlite3.OperationalError:  # a cache from before steps, opened read-only
            rows = []
        if keys is not None:
            keys = set(keys)
            rows = [r for r in rows if r[0] in keys]
        fresh = [r for r in rows if not r[1]]
        return {"requests": len({r[0] for r in rows}), "calls": len(rows),
                "uncounted_calls": len(fresh), "uncounted_usd": sum(r[2] for r in fresh)}

    def set_verdicts(self, qc_mode: str, verdicts, *, rescored_through: tuple[str, str] | None = None
                     ) -> None:
        """Store verdicts judged under `qc_mode`, in one transaction. Each item is
        (variant_id, accepted, reasons) or (variant_id, accepted, reasons, scores) where
        `scores` is `score_pairs`' dict: then similarity, length ratio and unique words are
        stored too, and the similarity inside the 32-byte `pack` record that training reads.

        `rescored_through` = (fingerprint, request key): a full rescore by the checker with that
        fingerprint has judged every request up to this key. It is written in the same
        transaction as the verdicts, so a rescore killed at any point resumes after the last
        batch it stored (`rescore_resume_key`), never before it."""
        col = _verdict_col(qc_mode)
        with self._write() as con:
            self._apply_verdicts(con, qc_mode, col, verdicts)
            if rescored_through is not None:
                fingerprint, key = rescored_through
                con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            (f"qc_rescore_{col}", json.dumps({"fingerprint": fingerprint,
                                                              "through": key})))

    def _stopped_rescore(self, qc_mode: str) -> dict | None:
        """{"fingerprint", "through"} of a full rescore under `qc_mode` that stopped before it
        finished, or None. An unreadable record counts as none: the rescore then starts again."""
        row = self._conn().execute("SELECT value FROM meta WHERE key=?",
                                   (f"qc_rescore_{_verdict_col(qc_mode)}",)).fetchone()
        try:
            state = json.loads(row[0]) if row else None
        except ValueError:
            return None
        ok = isinstance(state, dict) and all(isinstance(state.get(k), str)
                                             for k in ("fingerprint", "through"))
        return state if ok else None

    def rescore_resume_key(self, qc_mode: str, fingerprint: str) -> str:
        """The request key through which a stopped full rescore under `qc_mode`, by a checker
        with this `fingerprint`, had stored its verdicts; "" when there is none to resume (none
        stopped, or it was made by other QC rules or settings, so it starts again)."""
        state = self._stopped_rescore(qc_mode)
        return state["through"] if state and state["fingerprint"] == fingerprint else ""

    def candidates_after(self, request_key: str) -> int:
        """How many stored candidates belong to requests whose key sorts after `request_key`
        (the part of a full rescore still to do)."""
        return self._conn().execute("SELECT count(*) FROM variants WHERE request_key > ?",
                                    (request_key,)).fetchone()[0]

    def unjudged_through(self, qc_mode: str, request_key: str) -> int:
        """Candidates with no verdict under `qc_mode` among requests whose key sorts up to
        `request_key`: stored after a full rescore had passed them (a build in another mode,
        between a stopped rescore and its resume), so the resumed rescore judges them too."""
        col = _verdict_col(qc_mode)
        return self._conn().execute(f"SELECT count(*) FROM variants WHERE {col} IS NULL AND "
                                    "request_key <= ?", (request_key,)).fetchone()[0]

    @staticmethod
    def _apply_verdicts(con, qc_mode: str, col: str, verdicts) -> None:
        plain, scored = [], []
        for v in verdicts:
            vid, accepted, reasons = v[0], v[1], v[2]
            plain.append((int(bool(accepted)), qc_mode, json.dumps(list(reasons or [])), vid))
            if len(v) > 3 and v[3] is not None:
                scored.append((vid, v[3]))
        con.executemany(
            f"UPDATE variants SET {col}=?, reasons_json=json_set(reasons_json, '$.' || ?, "
            f"json(?)), qc_mode=coalesce(qc_mode, ?) WHERE id=?",
            [(a, m, r, m, vid) for a, m, r, vid in plain])
        if scored:
            packs = {}
            ids = [vid for vid, _ in scored]
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                packs.update(con.execute(f"SELECT id, pack FROM variants WHERE id IN "
                                         f"({','.join('?' * len(chunk))})", chunk))
            rows = []
            for vid, sc in scored:
                sim = sc.get("semantic_similarity")
                sim = None if sim is None else float(sim)
                rows.append((sim, sc.get("length_ratio"), sc.get("unique_words"),
                             _with_similarity(packs[vid], sim), vid))
            con.executemany("UPDATE variants SET similarity=?, length_ratio=?, unique_words=?, "
                            "pack=?, provenance_json=json_set(provenance_json, '$.similarity', "
                            "?) WHERE id=?", [r[:4] + (r[0], r[4]) for r in rows])

    def qc_fingerprint(self, qc_mode: str) -> str | None:
        """The `QualityChecker.fingerprint()` that the verdicts under `qc_mode` were made with
        (None: never judged under it)."""
        row = self._conn().execute("SELECT value FROM meta WHERE key=?",
                                   (f"qc_fingerprint_{_verdict_col(qc_mode)}",)).fetchone()
        return row[0] if row else None

    def set_qc_fingerprint(self, qc_mode: str, fingerprint: str) -> None:
        """Stamp the verdicts under `qc_mode` as made by the checker with `fingerprint`; a
        stopped rescore's resume point goes with it (every verdict is now this checker's)."""
        col = _verdict_col(qc_mode)
        with self._write() as con:
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                        (f"qc_fingerprint_{col}", fingerprint))
            con.execute("DELETE FROM meta WHERE key=?", (f"qc_rescore_{col}",))

    def stale_verdicts(self, qc_mode: str, fingerprint: str) -> bool:
        """Are there verdicts under `qc_mode` made by other QC rules or settings than the checker
        whose `fingerprint()` is given? Training must not use them as they are.

        Besides the stamp, a stopped full rescore by another checker counts: the requests it
        reached carry that checker's verdicts while the stamp still names the one before it
        (settings changed, rescore killed, settings changed back)."""
        if not self.judged_count(qc_mode):
            return False
        stopped = self._stopped_rescore(qc_mode)
        return (self.qc_fingerprint(qc_mode) != fingerprint
                or (stopped is not None and stopped["fingerprint"] != fingerprint))

    def judged_count(self, qc_mode: str) -> int:
        col = _verdict_col(qc_mode)
        return self._conn().execute(f"SELECT count(*) FROM variants WHERE {col} IS NOT NULL").fetchone()[0]

    def set_batch_state(self, key: str, value) -> None:
        with self._write() as con:
            con.execute("INSERT OR REPLACE INTO batch_state VALUES (?,?,?)",
                        (key, json.dumps(value), time.time()))

    def get_batch_state(self, key: str, default=None):
        row = self._conn().execute("SELECT value FROM batch_state WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # --- reading ------------------------------------------------------------------------
    def _done_keys(self, keys: list[str]) -> set:
        con, done = self._conn(), set()
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            done.update(r[0] for r in con.execute(
                f"SELECT key FROM requests WHERE status='done' AND key IN "
                f"({','.join('?' * len(chunk))})", chunk))
        return done

    def missing(self, requests: list[Request]) -> list[Request]:
        """Requests not stored as done (absent or failed), deduplicated by key, order kept."""
        seen, unique = set(), []
        for r in requests:
            k = r.key
            if k not in seen:
                seen.add(k)
                unique.append((k, r))
        done = self._done_keys([k for k, _ in unique])
        return [r for k, r in unique if k not in done]

    def get(self, request: Request) -> dict | None:
        """The stored request row and its variants (for tests and `inspect`)."""
        con = self._conn()
        cur = con.execute("SELECT * FROM requests WHERE key=?", (request.key,))
        row = cur.fetchone()
        if row is None:
            return None
        out = dict(zip([d[0] for d in cur.description], row))
        cur = con.execute("SELECT * FROM variants WHERE request_key=? ORDER BY idx", (request.key,))
        cols = [d[0] for d in cur.description]
        out["variants"] = [dict(zip(cols, r)) for r in cur]
        for v in out["variants"]:
            v.pop("pack")
        return out

    def status_counts(self) -> dict[str, dict[str, int]]:
        """{method: {"done": n, "failed": n}}"""
        out: dict[str, dict[str, int]] = {}
        for m, s, n in self._conn().execute(
                "SELECT method, status, count(*) FROM requests GROUP BY method, status"):
            out.setdefault(m, {"done": 0, "failed": 0})[s] = n
        return out

    def stats(self, qc_mode: str, methods=None, keys=None) -> dict[str, dict[str, int]]:
        """Per method: generated / accepted / rejected candidates under `qc_mode`, failed
        requests, and `unjudged` (candidates with no verdict under this mode yet). This is the
        `methods` part of `augmentation_summary.json`. `keys` (request keys) restricts it to
        one run's requests: a cache shared across runs holds others' too."""
        col = _verdict_col(qc_mode)
        con = self._conn()
        where_v, where_r, args = "", "", []
        if keys is not None:
            con.execute("CREATE TEMP TABLE IF NOT EXISTS _run_keys(key TEXT PRIMARY KEY)")
            con.execute("DELETE FROM _run_keys")
            con.executemany("INSERT OR IGNORE INTO _run_keys VALUES (?)", [(k,) for k in keys])
            where_v = "WHERE request_key IN (SELECT key FROM _run_keys)"
            where_r = "AND key IN (SELECT key FROM _run_keys)"
        out: dict[str, dict[str, int]] = {}
        for m, gen, acc, rej in con.execute(
                f"SELECT method, count(*), sum({col} = 1), sum({col} = 0) FROM variants "
                f"{where_v} GROUP BY method", args):
            out[m] = {"generated": gen, "accepted": acc or 0, "rejected": rej or 0, "failed": 0,
                      "unjudged": gen - (acc or 0) - (rej or 0)}
        for m, n in con.execute("SELECT method, count(*) FROM requests WHERE status='failed' "
                                f"{where_r} GROUP BY method"):
            out.setdefault(m, {"generated": 0, "accepted": 0, "rejected": 0, "failed": 0,
                               "unjudged": 0})["failed"] = n
        if methods is not None:
            out = {m: v for m, v in out.items() if m in methods}
        return {m: out[m] for m in sorted(out, key=_method_order)}

    def prune(self, keep_keys) -> int:
        """Delete requests (and their variants) whose key is not in `keep_keys`, e.g. to ship a
        cache that holds exactly what one config needs. Returns how many requests went."""
        keep = set(keep_keys)
        gone = [k for (k,) in self._conn().execute("SELECT key FROM requests") if k not in keep]
        with self._write() as con:
            con.executemany("DELETE FROM variants WHERE request_key = ?", [(k,) for k in gone])
            con.executemany("DELETE FROM requests WHERE key = ?", [(k,) for k in gone])
            con.executemany("DELETE FROM attempts WHERE key = ?", [(k,) for k in gone])
            con.executemany("DELETE FROM steps WHERE request_key = ?",
                            [(k,) for (k,) in con.execute("SELECT DISTINCT request_key FROM steps")
                             .fetchall() if k not in keep])
        return len(gone)

    def totals(self) -> dict:
        """What the stored requests cost, every attempt included (failed and redone ones):
        tokens, cost, retries, attempts, and the part spent on attempts that failed."""
        con = self._conn()
        row = con.execute(
            "SELECT count(*), coalesce(sum(input_tokens),0), coalesce(sum(output_tokens),0), "
            "coalesce(sum(cost_usd),0), coalesce(sum(retries),0), coalesce(sum(attempts),0) "
            "FROM requests").fetchone()
        out = dict(zip(["requests", "input_tokens", "output_tokens", "cost_usd", "retries",
                        "attempts"], row))
        try:
            failed, unknown = con.execute(
                "SELECT coalesce(sum(cost_usd),0), coalesce(sum(cost_known = 0),0) FROM attempts "
                "WHERE status='failed' OR cost_known = 0").fetchone()
        except sqlite3.OperationalError:  # a cache from before per-attempt spend, read-only
            failed, unknown = 0.0, 0
        judge = self._judge_totals(con)
        for k in ("input_tokens", "output_tokens", "cost_usd", "retries"):
            out[k] += judge[k]
        out["judge_requests"], out["judge_cost_usd"] = judge["requests"], judge["cost_usd"]
        out["cost_failed_attempts"] = failed + judge["cost_failed"]
        out["cost_known"] = not unknown and not judge["unknown"]
        return out

    @staticmethod
    def _judge_totals(con) -> dict:
        """The LLM judge's verdict requests: count, tokens, cost (that of replies that were no
        verdict apart), retries; zeros for a cache without the table (read-only, older)."""
        names = ["requests", "input_tokens", "output_tokens", "cost_usd", "retries",
                 "cost_failed", "unknown"]
        try:
            row = con.execute(
                "SELECT count(*), coalesce(sum(input_tokens),0), coalesce(sum(output_tokens),0), "
                "coalesce(sum(cost_usd),0), coalesce(sum(retries),0), "
                "coalesce(sum(CASE WHEN ok = 0 THEN cost_usd ELSE 0 END),0), "
                "coalesce(sum(cost_known = 0),0) FROM judge_spend").fetchone()
        except sqlite3.OperationalError:
            row = (0, 0, 0, 0.0, 0, 0.0, 0)
        return dict(zip(names, row))

    def failure_reasons(self, top: int = 10) -> list[tuple[str, str, int]]:
        """Most common failures per method, grouped by `failure_kind`."""
        counts: dict[tuple[str, str], int] = {}
        for method, error in self._conn().execute(
                "SELECT method, error FROM requests WHERE status='failed'"):
            key = (method, failure_kind(error or ""))
            counts[key] = counts.get(key, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        return [(m, e, n) for (m, e), n in ranked]

    @contextmanager
    def snapshot(self):
        """One read transaction: every query inside it sees the cache as it was at the first
        read, so a report taken while a build writes does not mix counts from before and after
        an answer (a WAL reader's snapshot). Nested, it joins the outer one."""
        con = self._conn()
        if con.in_transaction:
            yield self
            return
        con.execute("BEGIN")
        try:
            yield self
        finally:
            con.execute("COMMIT")

    def iter_variants(self, methods=None, columns=("id", "method", "source", "text",
                                                       "similarity")):
        """Yield dicts of the chosen columns, in id order (for inspect and rescore)."""
        cols = ", ".join(columns)
        sql, args = f"SELECT {cols} FROM variants", []
        if methods is not None:
            sql += f" WHERE method IN ({','.join('?' * len(methods))})"
            args = list(methods)
        for r in self._conn().execute(sql + " ORDER BY id", args):
            yield dict(zip(columns, r))

    def unjudged_count(self, qc_mode: str, methods=None) -> int:
        col = _verdict_col(qc_mode)
        sql, args = f"SELECT count(*) FROM variants WHERE {col} IS NULL", []
        if methods is not None:
            sql += f" AND method IN ({','.join('?' * len(methods))})"
            args = list(methods)
        return self._conn().execute(sql, args).fetchone()[0]

    def rescore(self, checker, *, only_missing: bool = True, batch: int = 256,
                progress: bool = False) -> int:
        """Judge stored candidates under `checker.config.mode` (see `augment.judge.rescore`)."""
        from .judge import rescore
        return rescore(self, checker, only_missing=only_missing, batch=batch, progress=progress)

    def unjudged_of(self, qc_mode: str, keys) -> list[tuple]:
        """Candidates of the requests `keys` with no verdict under `qc_mode`, in the row shape
        of `unjudged`, in request order."""
        col, con, out = _verdict_col(qc_mode), self._conn(), []
        keys = list(keys)
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            out += con.execute(
                f"SELECT v.id, v.method, v.source, v.text, v.request_key, r.params_json "
                f"FROM variants v LEFT JOIN requests r ON r.key = v.request_key "
                f"WHERE v.{col} IS NULL AND v.request_key IN ({','.join('?' * len(chunk))}) "
                "ORDER BY v.request_key, v.idx", chunk).fetchall()
        return out

    def unjudged(self, qc_mode: str, limit: int = 256, after_key: str = "",
                 only_missing: bool = True) -> list[tuple]:
        """Candidates to judge, whole requests at a time, in request-key order after
        `after_key`: (id, method, source, text, request_key, params_json). About `limit`
        candidates (a request is never split). `only_missing=False`: every candidate."""
        col = _verdict_col(qc_mode)
        where = f"{col} IS NULL AND " if only_missing else ""
        con = self._conn()
        keys = [k for (k,) in con.execute(
            f"SELECT DISTINCT request_key FROM variants WHERE {where}request_key > ? "
            "ORDER BY request_key LIMIT ?", (after_key, max(1, limit // 3)))]
        if not keys:
            return []
        return con.execute(
            f"SELECT v.id, v.method, v.source, v.text, v.request_key, r.params_json "
            f"FROM variants v LEFT JOIN requests r ON r.key = v.request_key "
            f"WHERE {where.replace(col, 'v.' + col)}v.request_key IN ({','.join('?' * len(keys))}) "
            "ORDER BY v.request_key, v.idx", keys).fetchall()

    def reopen_llm_judge_failures(self, qc_mode: str) -> int:
        """Candidates rejected under `qc_mode` only because the LLM judge gave no verdict (a
        timeout, a reply that was no verdict) lose that verdict, so the build judges them
        again and asks the LLM once more. Returns how many."""
        where, args = _no_verdict_where(qc_mode)
        with self._write() as con:
            return con.execute(f"UPDATE variants SET {_verdict_col(qc_mode)}=NULL WHERE {where}",
                               args).rowcount

    def pairs_to_judge(self, qc_mode: str, methods, only_missing: bool = True
                       ) -> list[tuple[str, str]]:
        """(original, candidate) of the stored candidates of `methods` that a build judges
        next under `qc_mode`: those with no verdict, and those rejected because the LLM judge
        gave none (the build reopens them first: `reopen_llm_judge_failures`), or
        (`only_missing=False`, after a QC change) all of them. For `--dry-run`'s count of
        LLM-judge requests."""
        methods = list(methods)
        sql = (f"SELECT source, text FROM variants WHERE method IN "
               f"({','.join('?' * len(methods))})")
        args = list(methods)
        if only_missing:
            where, more = _no_verdict_where(qc_mode)
            sql += f" AND ({_verdict_col(qc_mode)} IS NULL OR ({where}))"
            args += more
        return self._conn().execute(sql, args).fetchall()

    def check(self) -> str:
        """`PRAGMA integrity_check`: "ok", or SQLite's list of problems."""
        return "\n".join(r[0] for r in self._conn().execute("PRAGMA integrity_check"))

    # --- training-side tables (augment.tables) ------------------------------------------
    def _require_judged(self, qc_mode: str, methods) -> None:
        from .tables import require_judged
        require_judged(self, qc_mode, methods)

    def load_table(self, rows, methods, qc_mode: str, keys=None):
        """Accepted variants as CSR arrays: see `augment.tables.load_table`."""
        from .tables import load_table
        return load_table(self, rows, methods, qc_mode, keys)

    def load_refusals(self, methods, qc_mode: str, keys=None):
        """Accepted refusal pairs: see `augment.tables.load_refusals`."""
        from .tables import load_refusals
        return load_refusals(self, methods, qc_mode, keys)

def _no_verdict_where(qc_mode: str) -> tuple[str, list]:
    """SQL condition (and its arguments) for candidates rejected under `qc_mode` only because
    the LLM judge gave no verdict: one definition for the build's reopening and the dry run's
    count, so the dry run counts what the build asks."""
    from .qc.llm_judge import NO_VERDICT
    col = _verdict_col(qc_mode)
    return (f"{col}=0 AND json_extract(reasons_json, '$.' || ?) LIKE ?",
            [qc_mode, f'%"{NO_VERDICT} (%'])


def _method_order(m: str):
    return (METHOD_NAMES.index(m) if m in METHOD_NAMES else len(METHOD_NAMES), m)


def failure_kind(error: str) -> str:
    """A failure reason with its particulars removed, for grouping: numbers become N and
    quoted snippets '...', so "has 43 <= 50 words" and "has 48 <= 50 words" (or two replies
    quoted back) count as one reason."""
    import re
    # Quoted snippets are Python reprs: escape-aware, so an apostrophe inside a double-quoted
    # snippet ("I'm locked out") does not split one reason into two groups.
    text = re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", "'...'", str(error))
    return re.sub(r"\d+(?:\.\d+)?", "N", text)


def source_hash(text: str) -> str:
    """The hash the cache matches rows by (same as `augment.types.text_hash`)."""
    return text_hash(text)


@contextmanager
def build_lock(path):
    """Hold `<path>.lock` while a build writes to the cache at `path`. A second build on the
    same cache stops at once with one line: both would compute what is missing at their start
    and pay for every such request, and they share the cache's batch state file. (An advisory
    `flock`: released by the kernel when the process dies, so a killed build never leaves a
    stale lock. Where `fcntl` does not exist, nothing is locked.)"""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    # beside the real file: a symlink to the cache, or another spelling of its path, is
    # the same cache and must meet the same lock
    lock = f"{Path(path).resolve()}.lock"
    os.makedirs(os.path.dirname(os.path.abspath(lock)), exist_ok=True)
    fh = open(lock, "a+", encoding="utf-8")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        who = fh.read().strip() or "another process"
        fh.close()
        raise AugtuneError(f"{path}: another build is writing to this cache ({who}); wait for "
                           "it to end, or give this one another augment_cache (two builds "
                           "would both pay for every missing request).") from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        fh.flush()
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def init_cache_from(path, init) -> bool:
    """Copy the prebuilt cache `init` to `path` when `path` does not exist yet. Uses SQLite's
    backup API (a plain file copy could miss pages still in the source's WAL). Returns whether
    it copied."""
    import os
    import re
    import sqlite3
    if not init or os.path.exists(path):
        return False
    if not os.path.exists(init):
        raise AugtuneError(f"augment_cache_init={init!r} does not exist; fix the path or unset it.")
    try:  # a folder, or not an augtune cache: one line
        probe = VariantCache(init, readonly=True)
        probe._conn()
        probe.close()
    except AugtuneError as exc:
        # the cache's own wording is about augment_cache; never advise deleting this file
        text = re.sub(r"(delete it or )?point augment_cache\s+elsewhere",
                      "point augment_cache_init at a variant cache", f"augment_cache_init: {exc}")
        text = text.replace("augment_cache names the cache file itself", "it names a cache file")
        raise AugtuneError(text) from None
    _make_parent(path)
    tmp = f"{path}.init-{os.getpid()}"
    try:
        src = sqlite3.connect(_readonly_uri(init), uri=True)
        dst = sqlite3.connect(tmp)
        try:
            with dst:
                src.backup(dst)
        finally:
            src.close()
            dst.close()
        try:  # atomic and never over a cache another process made meanwhile (os.replace would
            os.link(tmp, path)  # swap the file under that process's open connection)
        except FileExistsError:
            return False
    except sqlite3.DatabaseError as exc:
        raise AugtuneError(f"augment_cache_init={init!r} could not be copied ({exc}).") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return True


def _readonly_uri(path, immutable: bool = False) -> str:
    """A read-only SQLite URI for `path`. `as_uri` percent-encodes: a "#", "?" or "%" written
    raw into "file:..." would end the path (cache#1.sqlite opened, and created, "cache").
    `immutable`: read without locks or the WAL index (see `_unwritable`)."""
    return Path(path).resolve().as_uri() + "?mode=ro" + ("&immutable=1" if immutable else "")


def _unwritable(path) -> bool:
    """Whether a cache is to be read where nothing can write: its folder is read-only (a
    read-only checkout, image layer or dataset mount) and no write-ahead log lies beside it.
    Caches are in WAL mode, and SQLite then needs to create `<cache>-shm` even to read, so
    reading a shipped cache there failed ("unable to open database file", with advice to delete
    it). Nothing can be writing such a file, so it is read as immutable; with a WAL file
    present (a writer elsewhere) it is not, and the open fails as before."""
    p = Path(path).resolve()
    wal = p.with_name(p.name + "-wal")
    return (not os.access(p.parent, os.W_OK)
            and not (wal.exists() and wal.stat().st_size > 0))


def _make_parent(path) -> None:
    """The cache file's folder, or one line saying why it cannot be made."""
    parent = Path(path).resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise AugtuneError(f"augment_cache={str(path)!r}: a file stands where its folder should "
                           "be; point augment_cache elsewhere.") from None
    except OSError as exc:
        raise AugtuneError(f"augment_cache={str(path)!r}: cannot make its folder "
                           f"({exc.strerror}).") from None


class JudgeVerdicts:
    """The LLM judge's verdict store (`get(key) -> dict | None`, `put(key, dict)`) in the cache
    file, so a rerun, another QC mode's rescore or a training run's build never pays for the same
    verdict twice. One connection per thread: the build judges in a thread of its own."""

    def __init__(self, path):
        import threading
        self.path = str(path)
        self._local = threading.local()

    def _cache(self) -> VariantCache:
        c = getattr(self._local, "cache", None)
        if c is None:
            c = self._local.cache = VariantCache(self.path)
        return c

    def get(self, key: str):
        row = self._cache()._conn().execute(
            "SELECT verdict_json FROM judge_verdicts WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, verdict: dict) -> None:
        with self._cache()._write() as con:
            con.execute("INSERT OR REPLACE INTO judge_verdicts VALUES (?,?,?)",
                        (key, json.dumps(verdict, sort_keys=True), time.time()))

    def record_spend(self, key: str, ok: bool, input_tokens: int, output_tokens: int,
                     cost_usd: float, cost_known: bool = True, retries: int = 0) -> None:
        """Keep what one verdict request cost (`ok`: it gave a verdict), for `totals()`."""
        with self._cache()._write() as con:
            con.execute("INSERT INTO judge_spend (key, ok, input_tokens, output_tokens, "
                        "cost_usd, cost_known, retries, time) VALUES (?,?,?,?,?,?,?,?)",
                        (key, int(bool(ok)), int(input_tokens), int(output_tokens),
                         float(cost_usd), int(bool(cost_known)), int(retries), time.time()))

    def __len__(self) -> int:
        return self._cache()._conn().execute("SELECT count(*) FROM judge_verdicts").fetchone()[0]
