"""The variant cache: one SQLite file of requests, candidates, scores and verdicts.

Why SQLite: one file that many processes read at once (ranks, dataloader workers) while one
builder appends (WAL mode), with transactions so a build killed at any instant leaves each request
either fully stored or absent. Content-addressed by `Request.key`, so ablations and datasets that
share a prompt share its variants, and a rerun redoes only what is missing or failed.

Verdicts per QC mode. Scores (similarity, length ratio, unique words) do not depend on the QC mode;
the accept/reject verdict does. Each variant row therefore carries one verdict column per mode in
`QC_MODES` (`accepted_project`, `accepted_seed`, `accepted_none`; NULL = not judged under that mode
yet) and `reasons_json` = {mode: [reasons]}. A build judges under its own mode; `rescore(checker)`
judges the stored candidates under another mode without calling any API, so the qc=none/seed/
project ablation trains on the SAME candidates. `load_table` then reads one column: no join and no
recomputation on the training path.

Speed. `load_table` must hand a million variants to training quickly. Every variant row keeps a
fixed 32-byte little-endian record `pack` (id, source hash, request hash, similarity, idx, method,
field) next to its text, so the load is one C-level scan `group_concat(hex(pack))` turned into a
numpy structured array, plus one scan of the texts; matching to rows and ordering is numpy.
"""

from __future__ import annotations

import gc
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
from .variants import FIELD_CODES, RefusalTable, VariantTable

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


def hash64(hex_digest: str) -> int:
    """First 64 bits of a hex digest as an unsigned int (order-preserving for the hex string)."""
    return int(hex_digest[:16], 16)


def _verdict_col(qc_mode: str) -> str:
    if qc_mode not in QC_MODES:  # also keeps the column name out of reach of SQL injection
        raise AugtuneError(f"qc mode {qc_mode!r} is not one of {QC_MODES}.")
    return f"accepted_{qc_mode}"


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
                con = sqlite3.connect(f"file:{p.resolve()}?mode=ro", uri=True, timeout=60,
                                      isolation_level=None, check_same_thread=False)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
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
        elif not self.readonly:
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
    def put(self, request: Request, result: Result, scores: list[dict], qc_mode: str) -> list[int]:
        """Store a finished request and all its candidates atomically; returns variant ids.

        `scores[i]` is `score_pairs`' dict for `result.candidates[i]` under `qc_mode`
        (keys semantic_similarity, is_valid, length_ratio, unique_words, reasons). A re-put of
        the same key replaces the previous candidates (no duplicates)."""
        if len(scores) != len(result.candidates):
            raise ValueError(f"{len(scores)} scores for {len(result.candidates)} candidates")
        col = _verdict_col(qc_mode)
        now = time.time()
        key = request.key
        src_hash = text_hash(request.source)
        base_prov = request.provenance()
        ids = []
        with self._write() as con:
            old = con.execute("SELECT attempts, created FROM requests WHERE key=?", (key,)).fetchone()
            attempts = (old[0] if old else 0) + 1
            created = old[1] if old else now
            con.execute(
                "INSERT OR REPLACE INTO requests VALUES (?,?,?,?,?,?,?,?,'done',NULL,?,?,?,?,?,?,?,?)",
                (key, request.method, request.field, request.source, request.backend,
                 request.model, request.prompt_version, json.dumps(request.param_dict,
                                                                   sort_keys=True),
                 attempts, result.retries, result.input_tokens, result.output_tokens,
                 float(result.cost_usd), json.dumps(result.problems), created, now))
            con.execute("DELETE FROM variants WHERE request_key=?", (key,))
            next_id = con.execute("SELECT coalesce(max(id), 0) + 1 FROM variants").fetchone()[0]
            rows = []
            for i, (cand, sc) in enumerate(zip(result.candidates, scores)):
                vid = next_id + i
                sim = sc.get("semantic_similarity")
                sim = None if sim is None else float(sim)
                prov = {**base_prov, "source_hash": src_hash, "request_key": key,
                        "similarity": sim, "created": now, "meta": cand.meta}
                rows.append((vid, key, i, request.method, request.field, src_hash,
                             request.source, cand.text, cand.prompt,
                             json.dumps(prov, ensure_ascii=False, sort_keys=True, default=str),
                             sim, sc.get("length_ratio"), sc.get("unique_words"),
                             int(bool(sc.get("is_valid"))),
                             json.dumps({qc_mode: list(sc.get("reasons", []))}), qc_mode,
                             _pack(vid, src_hash, key, sim, i, request.method, request.field)))
                ids.append(vid)
            con.executemany(
                f"INSERT INTO variants (id, request_key, idx, method, field, source_hash, source, "
                f"text, prompt, provenance_json, similarity, length_ratio, unique_words, {col}, "
                f"reasons_json, qc_mode, pack) VALUES ({','.join('?' * 17)})", rows)
        return ids

    def put_failure(self, request: Request, error: str, attempts: int = 1, retries: int = 0) -> None:
        """Record a failed request (counts attempts across builds); the next build redoes it."""
        now = time.time()
        with self._write() as con:
            old = con.execute("SELECT attempts, created, status FROM requests WHERE key=?",
                              (request.key,)).fetchone()
            if old and old[2] == "done":
                return  # never downgrade stored work
            con.execute(
                "INSERT OR REPLACE INTO requests VALUES (?,?,?,?,?,?,?,?,'failed',?,?,?,0,0,0,'[]',?,?)",
                (request.key, request.method, request.field, request.source, request.backend,
                 request.model, request.prompt_version,
                 json.dumps(request.param_dict, sort_keys=True), str(error),
                 (old[0] if old else 0) + attempts, retries, old[1] if old else now, now))

    def set_verdicts(self, qc_mode: str, verdicts: list[tuple[int, bool, list[str]]]) -> None:
        """Store (variant_id, accepted, reasons) judged under `qc_mode`."""
        col = _verdict_col(qc_mode)
        with self._write() as con:
            con.executemany(
                f"UPDATE variants SET {col}=?, reasons_json=json_set(reasons_json, '$.' || ?, "
                f"json(?)) WHERE id=?",
                [(int(bool(a)), qc_mode, json.dumps(list(r)), vid) for vid, a, r in verdicts])

    def qc_fingerprint(self, qc_mode: str) -> str | None:
        """The `QualityChecker.fingerprint()` that the verdicts under `qc_mode` were made with
        (None: never judged under it)."""
        row = self._conn().execute("SELECT value FROM meta WHERE key=?",
                                   (f"qc_fingerprint_{_verdict_col(qc_mode)}",)).fetchone()
        return row[0] if row else None

    def set_qc_fingerprint(self, qc_mode: str, fingerprint: str) -> None:
        with self._write() as con:
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                        (f"qc_fingerprint_{_verdict_col(qc_mode)}", fingerprint))

    def stale_verdicts(self, qc_mode: str, fingerprint: str) -> bool:
        """Are there verdicts under `qc_mode` made by other QC rules or settings than the checker
        whose `fingerprint()` is given? Training must not use them as they are."""
        return bool(self.judged_count(qc_mode)) and self.qc_fingerprint(qc_mode) != fingerprint

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
        return len(gone)

    def totals(self) -> dict:
        """Tokens, cost and retries spent on stored requests."""
        row = self._conn().execute(
            "SELECT count(*), coalesce(sum(input_tokens),0), coalesce(sum(output_tokens),0), "
            "coalesce(sum(cost_usd),0), coalesce(sum(retries),0) FROM requests").fetchone()
        return dict(zip(["requests", "input_tokens", "output_tokens", "cost_usd", "retries"], row))

    def failure_reasons(self, top: int = 10) -> list[tuple[str, str, int]]:
        """Most common failures per method. Numbers are replaced by N before grouping, so
        "has 43 <= 50 words" and "has 48 <= 50 words" count as one reason."""
        import re
        counts: dict[tuple[str, str], int] = {}
        for method, error in self._conn().execute(
                "SELECT method, error FROM requests WHERE status='failed'"):
            key = (method, re.sub(r"\d+(?:\.\d+)?", "N", error or ""))
            counts[key] = counts.get(key, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        return [(m, e, n) for (m, e), n in ranked]

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

    def rescore(self, checker, *, only_missing: bool = True, batch: int = 256) -> int:
        """Judge stored candidates under `checker.config.mode` without calling any API.

        `checker` is a `augment.quality.QualityChecker` (anything with its `score_pairs` and
        `config.mode`). Candidates of one request are scored together so the near-duplicate
        check sees the same group as at build time. Returns how many were (re)judged."""
        mode = checker.config.mode
        col = _verdict_col(mode)
        where = f"WHERE {col} IS NULL" if only_missing else ""
        todo = list(self._conn().execute(
            f"SELECT id, method, source, text, request_key FROM variants {where} "
            "ORDER BY method, request_key, idx"))
        n, i = 0, 0
        while i < len(todo):
            j = min(i + batch, len(todo))
            while j < len(todo) and todo[j][4] == todo[j - 1][4]:
                j += 1  # keep a request's candidates in one batch
            by_method: dict[str, list] = {}
            for r in todo[i:j]:
                by_method.setdefault(r[1], []).append(r)
            verdicts = []
            for method, items in by_method.items():
                scores = checker.score_pairs([r[2] for r in items], [r[3] for r in items],
                                             qc_method(method), group_ids=[r[4] for r in items])
                verdicts += [(r[0], s["is_valid"], s.get("reasons", []))
                             for r, s in zip(items, scores)]
            self.set_verdicts(mode, verdicts)
            n += j - i
            i = j
        if not only_missing or self.qc_fingerprint(mode) is None:
            self.set_qc_fingerprint(mode, checker.fingerprint())
        return n

    def check(self) -> str:
        """`PRAGMA integrity_check`: "ok", or SQLite's list of problems."""
        return "\n".join(r[0] for r in self._conn().execute("PRAGMA integrity_check"))

    # --- training-side tables -----------------------------------------------------------
    def _require_judged(self, qc_mode: str, methods) -> None:
        n = self.unjudged_count(qc_mode, methods)
        if n:
            raise AugtuneError(f"{self.path}: {n} cached variants have no verdict under "
                               f"qc={qc_mode}; run `python -m augment.build --config CONFIG "
                               f"--qc {qc_mode}` (it judges them locally, no API calls).")

    def load_table(self, rows, methods, qc_mode: str, keys=None) -> VariantTable:
        """Accepted variants of `rows` for `methods` under `qc_mode`, as CSR arrays.

        `keys` (request keys) restricts the table to one run's requests: a cache shared across
        runs also holds variants made with other settings (another seed's templates, another
        prompt version), which must not leak into this run or an ablation would compare
        different candidate pools.

        A variant belongs to every row whose prompt (field prompt) or completion (field
        completion) hashes to its source hash. Order: row, method (METHOD_NAMES order), request
        key, idx, so the table is the same on every rank and every run."""
        methods = [m for m in methods if m in METHOD_NAMES and m != "refusals"]
        n_rows = len(rows)
        if not methods or not n_rows:
            return VariantTable.empty(n_rows)
        col = _verdict_col(qc_mode)
        self._require_judged(qc_mode, methods)
        con = self._conn()
        marks = ",".join("?" * len(methods))
        gc_was = gc.isenabled()
        gc.disable()  # a million tuples would trigger many useless collections
        try:
            # One straight scan (NOT INDEXED: walking the method index is slower when most rows
            # qualify) reads the packed keys and the texts together: one consistent snapshot,
            # and ~1.5x faster than a scan for each.
            rows_ = con.execute(f"SELECT pack, text FROM variants NOT INDEXED "
                                f"WHERE {col} = 1 AND method IN ({marks})", methods).fetchall()
            if not rows_:
                return VariantTable.empty(n_rows)
            pack = np.frombuffer(b"".join([r[0] for r in rows_]), PACK_DTYPE)
            texts = [r[1] for r in rows_]
            del rows_
            if keys is not None:
                wanted = np.fromiter((hash64(k) for k in keys), np.uint64)
                keep = np.isin(pack["request_hash"], wanted)
                if not keep.all():
                    pack = pack[keep]
                    texts = [texts[i] for i in np.flatnonzero(keep).tolist()]
                if not len(pack):
                    return VariantTable.empty(n_rows)
            fields_used = set(pack["field"].tolist())
            row_idx_parts, var_idx_parts = [], []
            for fname, fcode in FIELD_CODES.items():
                if fcode not in fields_used:
                    continue
                row_h = np.fromiter((hash64(text_hash(getattr(r, fname))) for r in rows),
                                    np.uint64, n_rows)
                order = np.argsort(row_h, kind="stable")
                sorted_h = row_h[order]
                sel = np.flatnonzero(pack["field"] == fcode)
                h = pack["source_hash"][sel]
                lo = np.searchsorted(sorted_h, h, "left")
                hi = np.searchsorted(sorted_h, h, "right")
                cnt = hi - lo
                var_rep = np.repeat(sel, cnt)
                start = np.repeat(lo, cnt)
                within = np.arange(len(var_rep)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
                row_idx_parts.append(order[start + within])
                var_idx_parts.append(var_rep)
            row_idx = np.concatenate(row_idx_parts) if row_idx_parts else np.zeros(0, np.int64)
            var_idx = np.concatenate(var_idx_parts) if var_idx_parts else np.zeros(0, np.int64)
            p = pack[var_idx]
            perm = np.lexsort((p["idx"], p["request_hash"], p["method"], row_idx))
            row_idx, var_idx, p = row_idx[perm], var_idx[perm], p[perm]
            offsets = np.zeros(n_rows + 1, np.int64)
            np.cumsum(np.bincount(row_idx, minlength=n_rows), out=offsets[1:])
            out_texts = [texts[i] for i in var_idx.tolist()]
            return VariantTable(offsets, p["method"].astype(np.int8), p["field"].astype(np.int8),
                                p["similarity"].astype(np.float32), p["id"].astype(np.int64),
                                out_texts)
        finally:
            if gc_was:
                gc.enable()

    def load_refusals(self, methods, qc_mode: str, keys=None) -> RefusalTable:
        """Accepted refusal pairs (prompt = the instruction wording, completion = the refusal);
        `keys` restricts them to one run's requests, as in `load_table`."""
        if "refusals" not in methods:
            return RefusalTable([], [], np.zeros(0, np.int64))
        col = _verdict_col(qc_mode)
        self._require_judged(qc_mode, ["refusals"])
        rows = self._conn().execute(
            f"SELECT id, coalesce(prompt, source), text, request_key FROM variants "
            f"WHERE method='refusals' AND {col} = 1 ORDER BY request_key, idx").fetchall()
        if keys is not None:
            wanted = set(keys)
            rows = [r for r in rows if r[3] in wanted]
        return RefusalTable([r[1] for r in rows], [r[2] for r in rows],
                            np.array([r[0] for r in rows], np.int64))


def _method_order(m: str):
    return (METHOD_NAMES.index(m) if m in METHOD_NAMES else len(METHOD_NAMES), m)


def qc_method(method: str, params: dict | None = None) -> str:
    """The method name `score_pairs` expects (outputs variants state their form)."""
    if method == "outputs" and params and params.get("variant") in ("brief", "bullets"):
        return f"outputs:{params['variant']}"
    return method


def source_hash(text: str) -> str:
    """The hash the cache matches rows by (same as `augment.types.text_hash`)."""
    return text_hash(text)


def init_cache_from(path, init) -> bool:
    """Copy the prebuilt cache `init` to `path` when `path` does not exist yet. Uses SQLite's
    backup API (a plain file copy could miss pages still in the source's WAL). Returns whether
    it copied."""
    import os
    import sqlite3
    if not init or os.path.exists(path):
        return False
    if not os.path.exists(init):
        raise AugtuneError(f"augment_cache_init={init!r} does not exist; fix the path or unset it.")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.init-{os.getpid()}"
    src = sqlite3.connect(f"file:{init}?mode=ro", uri=True)
    dst = sqlite3.connect(tmp)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    os.replace(tmp, path)  # atomic: a killed copy never leaves a half cache at `path`
    return True
