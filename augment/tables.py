"""Training-side tables: the accepted variants of a cache as numpy arrays.

Why beside the cache and not in it: the cache's one job is storage; this is the read path that
hands a million variants to training quickly. Every variant row keeps a fixed 32-byte record
`pack` (id, source hash, request hash, similarity, idx, method, field; `cache.PACK_DTYPE`) next
to its text, so the load is one C-level scan turned into a numpy structured array, plus one scan
of the texts; matching to rows and ordering is numpy. Only judged, accepted variants are read:
a candidate stored but not yet judged (a build killed before QC) has NULL in every verdict
column and never reaches training (`require_judged` refuses to build a table until the build
has judged it).
"""

from __future__ import annotations

import gc

import numpy as np

from .cache import PACK_DTYPE, VariantCache, _verdict_col, hash64
from .errors import AugtuneError
from .types import METHOD_NAMES, text_hash
from .variants import FIELD_CODES, RefusalTable, VariantTable


def require_judged(cache, qc_mode: str, methods) -> None:
    """Refuse to hand training a table while candidates wait for their verdict."""
    n = cache.unjudged_count(qc_mode, methods)
    if n:
        raise AugtuneError(f"{cache.path}: {n} cached variants have no verdict under "
                           f"qc={qc_mode}; run `python -m augment.build --config CONFIG "
                           f"--qc {qc_mode}` (it judges them locally, no API calls).")

def load_table(cache: VariantCache, rows, methods, qc_mode: str, keys=None) -> VariantTable:
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
    require_judged(cache, qc_mode, methods)
    con = cache._conn()
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

def load_refusals(cache: VariantCache, methods, qc_mode: str, keys=None) -> RefusalTable:
    """Accepted refusal pairs (prompt = the instruction wording, completion = the refusal);
    `keys` restricts them to one run's requests, as in `load_table`."""
    if "refusals" not in methods:
        return RefusalTable([], [], np.zeros(0, np.int64))
    col = _verdict_col(qc_mode)
    require_judged(cache, qc_mode, ["refusals"])
    rows = cache._conn().execute(
        f"SELECT id, coalesce(prompt, source), text, request_key FROM variants "
        f"WHERE method='refusals' AND {col} = 1 ORDER BY request_key, idx").fetchall()
    if keys is not None:
        wanted = set(keys)
        rows = [r for r in rows if r[3] in wanted]
    return RefusalTable([r[1] for r in rows], [r[2] for r in rows],
                        np.array([r[0] for r in rows], np.int64))
