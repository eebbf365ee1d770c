"""`cache_read_vs_parquet`: VariantCache.load_table vs pyarrow reading the same columns."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from bench.harness import CACHE_DIR, entry, interleaved, med, perf, rnd


_SYNTH_VERSION = 1


def synthetic_rows(n_rows: int):
    from augment.types import Row
    things = ("plan", "order", "device", "account")
    return [Row(f"r{i}", f"Question {i}: how do I move my {things[i % 4]} to the new address "
                f"before the {i % 28 + 1}th?", f"Answer {i}.")
            for i in range(n_rows)]


def synthetic_cache(n_variants: int) -> tuple[Path, Path, list]:
    """SQLite cache (the real schema, via VariantCache) and the equivalent Parquet file with
    `n_variants` accepted variants (3 per row: 2 paraphrases in one request + 1 template).
    Built once, kept under bench/.cache/."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from augment.cache import PACK_DTYPE, SCHEMA_VERSION, VariantCache, hash64
    from augment.types import METHOD_NAMES, text_hash
    n_rows = -(-n_variants // 3)
    rows = synthetic_rows(n_rows)
    stem = CACHE_DIR / f"variants-{n_variants}-s{SCHEMA_VERSION}-v{_SYNTH_VERSION}"
    db, pqf = stem.with_suffix(".sqlite"), stem.with_suffix(".parquet")
    if db.exists() and pqf.exists():
        return db, pqf, rows
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for p in (db, pqf):
        p.unlink(missing_ok=True)
    tmp = db.with_suffix(".tmp.sqlite")
    tmp.unlink(missing_ok=True)
    VariantCache(tmp).close()  # creates the schema
    import sqlite3
    con = sqlite3.connect(tmp, isolation_level=None)
    con.execute("PRAGMA synchronous=OFF")
    cols = ("id, request_key, idx, method, field, source_hash, source, text, prompt, "
            "provenance_json, similarity, length_ratio, unique_words, accepted_project, "
            "reasons_json, qc_mode, pack")
    sql = f"INSERT INTO variants ({cols}) VALUES ({','.join('?' * 17)})"
    pq_cols = {"text": [], "method": [], "similarity": [], "row_key": []}
    vid = 0
    batch = []
    rec = np.zeros(1, PACK_DTYPE)
    con.execute("BEGIN")
    for i, row in enumerate(rows):
        sh = text_hash(row.prompt)
        for j, (method, idx, text) in enumerate((
                ("paraphrase", 0, f"Could you explain {row.prompt[0].lower()}{row.prompt[1:]}"),
                ("paraphrase", 1, f"I need help. {row.prompt} Thanks in advance."),
                ("templates", 0, f"Customer question: {row.prompt}"))):
            if vid >= n_variants:
                break
            vid += 1
            rk = hashlib.sha256(f"{method}|{sh}".encode()).hexdigest()
            sim = 0.8 + (vid % 17) / 100
            prov = (f'{{"backend": "anthropic", "created": 1764000000.0, '
                    f'"meta": {{"index": {idx}}}, "method": "{method}", '
                    f'"model": "claude-haiku-4-5", "params": {{"n": 3, '
                    f'"temperature": 0.9}}, "prompt_version": "{method}-v1", "request_key": '
                    f'"{rk}", "similarity": {sim}, "source_hash": "{sh}"}}')
            rec[0] = (vid, hash64(sh), hash64(rk), sim, idx, METHOD_NAMES.index(method), 0)
            batch.append((vid, rk, idx, method, "prompt", sh, row.prompt, text, None, prov, sim,
                          1.1, 3, 1, "{}", "project", rec.tobytes()))
            pq_cols["text"].append(text)
            pq_cols["method"].append(method)
            pq_cols["similarity"].append(sim)
            pq_cols["row_key"].append(sh)
        if len(batch) >= 50_000:
            con.executemany(sql, batch)
            batch.clear()
    if batch:
        con.executemany(sql, batch)
    con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    os.replace(tmp, db)
    for suffix in ("-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    table = pa.table({"text": pa.array(pq_cols["text"], pa.string()),
                      "method": pa.array(pq_cols["method"], pa.string()),
                      "similarity": pa.array(pq_cols["similarity"], pa.float32()),
                      "row_key": pa.array(pq_cols["row_key"], pa.string())})
    part = pqf.with_name(pqf.name + ".part")  # reused when it exists: written whole or not at all
    pq.write_table(table, part)
    os.replace(part, pqf)
    return db, pqf, rows


def fig_cache_read_vs_parquet(S) -> dict:
    import pyarrow.parquet as pq

    from augment.cache import VariantCache
    n = S.pick(200_000, 1_000_000, 3_000)
    t = perf()
    db, pqf, rows = synthetic_cache(n)
    build_s = perf() - t
    cache = VariantCache(db, readonly=True)
    methods = ["paraphrase", "templates"]
    got = {}

    def ours():
        got["table"] = cache.load_table(rows, methods, "project")

    def parquet():
        tb = pq.read_table(pqf, columns=["text", "method", "similarity", "row_key"])
        return (tb.column("text").to_pylist(), tb.column("method").to_numpy(),
                tb.column("similarity").to_numpy(), tb.column("row_key").to_numpy())

    t = interleaved({"ours": ours, "parquet": parquet}, repeat=S.pick(3, 3, 1), warmup=1)
    if len(got["table"]) != n:
        raise RuntimeError(f"load_table returned {len(got['table'])} variants, expected {n}")
    value = med(t["ours"]) / med(t["parquet"])
    return entry(value, "x (time, load_table / Parquet read)",
                 "pyarrow.parquet.read_table of text, method, similarity, row key (source hash) "
                 "into Python (to_pylist for text) and numpy",
                 "<= 3", value <= 3,
                 variants=n, rows=len(rows),
                 quick_note=("--quick uses 200,000 variants (full mode: 1,000,000)"
                             if S.quick else None),
                 load_table_s=rnd(med(t["ours"])), parquet_s=rnd(med(t["parquet"])),
                 sqlite_mib=rnd(db.stat().st_size / 2**20),
                 parquet_mib=rnd(pqf.stat().st_size / 2**20),
                 synthetic_build_s=rnd(build_s),
                 timing=f"median of {len(t['ours'])}, 1 warm-up (OS file cache warm), interleaved",
                 note="load_table also matches variants to the rows (hashes every row's prompt) "
                      "and orders them; the Parquet baseline does neither")
