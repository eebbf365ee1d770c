"""Judge stored candidates: QC scores and verdicts for answers already in the cache.

Why a step of its own: an API answer is paid for, so the build stores it the moment it arrives
(`VariantCache.put_answer`) and judges it afterwards. Judging is local (an embedding model and
rules, no API call; with `qc_judge: llm` the band's verdicts are asked once and kept in the
cache), so it can be redone at any time: a build killed while the QC model loads
loses no money, and the next build only judges what it finds unjudged. The same code rescores a
whole cache when the QC rules or settings change (`rescore`, `augment.inspect --rescore`),
resumably: a rescore killed part-way goes on after the last batch of verdicts it stored.

Candidates of one request are always scored together, so the near-duplicate check sees the same
group whether they are judged during the build or years later.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from .cache import VariantCache


def judge_rows(cache: VariantCache, checker, rows, *,
               rescored_through: tuple[str, str] | None = None) -> tuple[int, int]:
    """Score `rows` (the shape of `VariantCache.unjudged`) with `checker` under its mode and
    store the verdicts and scores in one transaction (with `rescored_through`, a full
    rescore's resume point too). Returns (accepted, rejected)."""
    if not rows:
        return 0, 0
    from .quality import judge_candidates  # the one judging path: build and rescore alike
    items = [{"source": r[2], "text": r[3], "method": r[1],
              "params": json.loads(r[5]) if r[5] else None, "group": r[4]} for r in rows]
    scores = judge_candidates(checker, items)
    verdicts = [(r[0], s["is_valid"], s.get("reasons", []), s) for r, s in zip(rows, scores)]
    cache.set_verdicts(checker.config.mode, verdicts, rescored_through=rescored_through)
    acc = sum(1 for v in verdicts if v[1])
    return acc, len(verdicts) - acc


def rescore(cache: VariantCache, checker, *, only_missing: bool = True, batch: int = 256,
            stop: threading.Event | None = None, on_judged=None, progress: bool = False) -> int:
    """Judge stored candidates under `checker.config.mode` without calling any API.

    `only_missing=False` judges every candidate again (after a QC change) and stamps the
    checker's fingerprint on the cache. It is resumable: each batch stores, with its verdicts,
    how far the rescore got, so one killed (or stopped) resumes after the last batch it stored
    when the same QC rules and settings rescore again, as the next build or `inspect --rescore`
    does. On a cache of a few hundred thousand candidates that is the difference between
    minutes and hours redone. `stop` ends early between batches; `on_judged(acc, rej)` is told
    about each batch; `progress` shows a bar on a terminal (a line every 30 s in a log).
    Returns how many candidates this call judged."""
    mode = checker.config.mode
    fingerprint = None if only_missing else checker.fingerprint()
    after = "" if only_missing else cache.rescore_resume_key(mode, fingerprint)
    # Resuming: candidates stored below the resume point since the stop (a build in another
    # mode) were never judged in this mode; they are judged after the rest.
    missed = cache.unjudged_through(mode, after) if after else 0
    total = (cache.unjudged_count(mode) if only_missing
             else cache.candidates_after(after) + missed)
    if after and progress:
        print(f"augtune: resuming a stopped rescore under qc={mode}: "
              f"{cache.candidates_after('') - total} candidates already judged by these QC rules "
              f"and settings are kept, {total} to go", file=sys.stderr, flush=True)
    bar = _Progress(total, f"rescore qc={mode}", progress and total > 0)
    n = 0
    # A full rescore walks every request after the resume point, then (only_missing) picks up
    # whatever is still unjudged; a rescore of missing verdicts only does the second pass.
    passes = [(after, only_missing)] + ([("", True)] if not only_missing else [])
    try:
        for after, missing in passes:
            while True:
                if stop is not None and stop.is_set():
                    return n  # unfinished: no fingerprint stamp
                rows = cache.unjudged(mode, batch, after_key=after, only_missing=missing)
                if not rows:
                    break
                acc, rej = judge_rows(cache, checker, rows, rescored_through=None if missing
                                      else (fingerprint, rows[-1][4]))
                if on_judged is not None:
                    on_judged(acc, rej)
                n += len(rows)
                bar.update(len(rows))
                after = rows[-1][4]
    finally:
        bar.close()
    if not only_missing or cache.qc_fingerprint(mode) is None:
        cache.set_qc_fingerprint(mode, fingerprint or checker.fingerprint())
    return n


class _Progress:
    """A tqdm bar on a terminal; in a log file one plain line every `every` seconds (a bar's
    carriage returns would be noise there); nothing when not `enabled`."""

    def __init__(self, total: int, desc: str, enabled: bool, every: float = 30.0):
        self.total, self.desc, self.enabled, self.every = total, desc, enabled, every
        self.n, self.bar, self._last = 0, None, time.monotonic()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="cand", file=sys.stderr,
                            dynamic_ncols=True)

    def update(self, n: int) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            print(f"augtune: {self.desc}: {self.n}/{self.total} candidates", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.n:  # a log's last line says where it ended
            print(f"augtune: {self.desc}: {self.n}/{self.total} candidates, "
                  f"{'done' if self.n >= self.total else 'stopped'}", file=sys.stderr, flush=True)


class JudgeThread:
    """Judges what a running build stores, in a thread of its own, as answers accumulate.

    It first judges the leftovers of earlier builds (stored, never judged: a kill before QC),
    then the request keys handed to `add`, a batch at a time. The QC model loads here, on the
    first batch, so the build's requests never wait for it. It has its own connection to the
    cache (SQLite connections are not shared between threads); WAL lets the build's writer and
    this thread take turns. `finish()` judges everything left and returns; `abort()` stops
    after the current batch (what is left stays unjudged and is judged by the next build).
    A judging error (a missing QC model) is kept in `error` and stops the thread.
    """

    def __init__(self, cache_path: str, checker, *, batch: int = 64, on_judged=None):
        self.cache_path = str(cache_path)
        self.checker = checker
        self.batch = batch
        self.on_judged = on_judged
        self.error: BaseException | None = None
        self.judged = 0
        self._keys: list[str] = []
        self._cond = threading.Condition()
        self._finishing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="augtune-judge", daemon=True)

    def start(self) -> "JudgeThread":
        self._thread.start()
        return self

    def add(self, key: str) -> None:
        with self._cond:
            self._keys.append(key)
            self._cond.notify()

    def finish(self) -> None:
        """Judge everything stored so far, then end (blocks)."""
        with self._cond:
            self._finishing = True
            self._cond.notify()
        self._thread.join()

    def abort(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify()
        self._thread.join()

    def _count(self, acc: int, rej: int) -> None:
        self.judged += acc + rej
        if self.on_judged is not None:
            self.on_judged(acc, rej)

    def _run(self) -> None:
        cache = VariantCache(self.cache_path)
        try:
            rescore(cache, self.checker, batch=256, stop=self._stop, on_judged=self._count)
            while not self._stop.is_set():
                with self._cond:
                    while not self._keys and not self._finishing and not self._stop.is_set():
                        self._cond.wait()
                    keys, self._keys = self._keys[:self.batch], self._keys[self.batch:]
                    if not keys and (self._finishing or self._stop.is_set()):
                        break
                rows = cache.unjudged_of(self.checker.config.mode, keys)
                self._count(*judge_rows(cache, self.checker, rows))
        except BaseException as exc:  # noqa: BLE001 - handed to the build, which raises it
            self.error = exc
        finally:
            cache.close()
