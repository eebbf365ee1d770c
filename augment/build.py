"""Build the variant cache: run every missing (row, method) request, store it, judge it.

    python -m augment.build --config configs/demo.yaml [--key value ...] [--dry-run]

Exit codes: 0 every request done (or `--allow_failures true`); 3 the build finished but some
requests failed (their reasons are printed grouped; rerun to retry them); 2 a config, data or
backend problem stopped it (one line; e.g. a bad key, or nothing listening at the base URL);
130 interrupted. Finished work is kept in every case.

Why this shape:
- Only train rows are ever augmented (the caller passes them; eval rows never reach here).
- A bounded pool of `max_concurrency` worker tasks pulls from a queue, instead of gathering
  100k coroutines at once: memory stays flat and a fatal error stops new work immediately.
- Never pay twice: each answer (candidates, usage, cost, provenance) is written, unjudged, in
  its own transaction the moment it arrives, by one writer thread. A SIGKILL at any moment loses
  at most the requests in flight, and a rerun does only what is missing or failed.
- Judging is a separate, local, re-runnable step (`augment.judge`): a thread scores what was
  stored as answers accumulate (the QC model loads there, so requests never wait for it), and
  judges the leftovers of a killed build first. A build killed before judging loses no money;
  the next one only judges.
- Fail loudly: failed requests are grouped by reason in the summary, a build with failures
  exits 3, and a backend that cannot be reached at all stops the build within seconds
  (`backends.limits.ConnectionBreaker`) instead of retrying every request.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from .cache import VariantCache, failure_kind
from .errors import AugtuneError, CandidateError, ConfigError, RetryableError
from .steps import Steps
from .types import Request, Result

EXIT_FAILURES = 3       # `python -m augment.build` exit code when requests failed
TOP_REASONS = 5         # failure reasons printed in the summary


@dataclass
class BuildReport:
    """What a build did (or, with dry_run, would do)."""

    qc_mode: str
    dry_run: bool = False
    requests: int = 0           # unique requests for the selected methods and rows
    already_done: int = 0
    executed: int = 0           # attempted this build
    done: int = 0
    failed: int = 0
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True
    elapsed_s: float = 0.0
    rejudged: int = 0           # candidates stored earlier, judged by this build (QC change,
                                # or a killed build's leftovers)
    judge_requests: int = 0     # qc_judge: llm: verdict requests sent (dry run: at most)
    judge_failures: int = 0     # qc_judge: llm: requests that gave no verdict (asked again)
    qc: dict = field(default_factory=dict)   # `qc_summary`: mode, language, checks off
    per_method: dict = field(default_factory=dict)   # dry run: estimates; build: stats
    failure_reasons: dict = field(default_factory=dict)   # reason -> count (grouped)
    failure_examples: dict = field(default_factory=dict)  # reason group -> first full message

    def to_dict(self) -> dict:
        return asdict(self)

    def summary_line(self) -> str:
        cost = f"${self.cost_usd:.4f}" if self.cost_known else "price unknown"
        if self.dry_run:
            judge = (f" + at most {self.judge_requests} LLM-judge verdicts"
                     if self.judge_requests else "")
            return (f"augtune build --dry-run: {self.requests - self.already_done} of "
                    f"{self.requests} requests to run{judge}, ~{self.input_tokens} input + "
                    f"~{self.output_tokens} output tokens, estimated cost {cost}")
        return (f"augtune build: {self.done} done, {self.failed} failed, {self.accepted} accepted, "
                f"{self.rejected} rejected, {self.retries} retries, {self.already_done} already "
                f"cached, spent {cost} (failed attempts included), {self.elapsed_s:.1f}s")

    def failure_lines(self, top: int = TOP_REASONS) -> list[str]:
        """The most common failure reasons, one line each, with counts."""
        ranked = sorted(self.failure_reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        lines = [f"  {n:>5} x {_one_line(self.failure_examples.get(k, k))}"
                 for k, n in ranked[:top]]
        rest = sum(n for _, n in ranked[top:])
        if rest:
            lines.append(f"  {rest:>5} x {len(ranked) - top} other reasons (python -m "
                         f"augment.inspect CACHE --top {len(ranked)} lists them)")
        return lines

    def add_failure(self, reason: str) -> None:
        kind = failure_kind(reason)
        self.failure_reasons[kind] = self.failure_reasons.get(kind, 0) + 1
        self.failure_examples.setdefault(kind, reason)

    def add_judged(self, accepted: int, rejected: int) -> None:
        self.accepted += accepted
        self.rejected += rejected


def _one_line(text: str, width: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 4] + " ..."


def make_checker(aug_cfg, mode: str | None = None):
    """The quality checker for the run (`aug_cfg` taken whole: every QC knob is one of its
    fields), under `aug_cfg.qc` or `mode`; the model loads lazily on first use. With
    `qc_judge: llm` the judge's verdicts are kept in the cache file beside the candidates."""
    from .quality import make_checker as checker_for
    store = None
    if getattr(aug_cfg, "qc_judge", None) == "llm" and getattr(aug_cfg, "augment_cache", None):
        from .cache import JudgeVerdicts, VariantCache
        VariantCache(aug_cfg.augment_cache).close()  # creates the file and its tables
        store = JudgeVerdicts(aug_cfg.augment_cache)
    return checker_for(aug_cfg, mode=mode, verdict_store=store)


def qc_summary(aug_cfg) -> dict:
    """The QC a run judges with, for its reports: mode, language and the English-only checks
    (the judge among them) that another language switches off, so a run on German data says
    what it did not check instead of passing what English rules would have caught."""
    from .quality import QualityChecker
    chk = QualityChecker(aug_cfg)  # free: nothing loads until it judges
    return {"mode": chk.config.mode, "language": chk.config.language,
            "checks_off": list(chk.checks_off)}


def qc_language_line(summary: dict) -> str | None:
    """One line for the log when `summary` (`qc_summary`) has checks off, else None."""
    if not summary["checks_off"]:
        return None
    return (f"augtune: language={summary['language']}: the English-only QC checks are off "
            f"({', '.join(summary['checks_off'])}); similarity, length, digits, URLs, e-mails, "
            "code, placeholders, swaps and duplicates still run")


def collect_requests(methods: dict, rows) -> dict[str, list[Request]]:
    """Per method, its unique requests over `rows` (first occurrence order)."""
    out = {}
    for name, method in methods.items():
        # refusals work on the harmful cases of refusals_file, not on the training rows
        source = method.load_cases() if name == "refusals" and hasattr(method, "load_cases") \
            else rows
        seen, reqs = set(), []
        for r in method.requests(source):
            k = r.key
            if k not in seen:
                seen.add(k)
                reqs.append(r)
        out[name] = reqs
    return out


def build_cache(data_cfg, aug_cfg, rows, *, progress: bool = True, dry_run: bool = False,
                methods: dict | None = None, checker=None, cache: VariantCache | None = None
                ) -> BuildReport:
    """Make sure every selected method's variants of `rows` (TRAIN rows only) are cached.

    `methods` (name -> Method) and `checker` default to `build_methods(aug_cfg)` and a
    `QualityChecker` for `aug_cfg.qc`; tests and the training entry point may pass their own.
    Raises `FatalBackendError` (after storing finished work) when a backend cannot go on.
    One build at a time per cache (`cache.build_lock`); a dry run writes nothing and takes
    no lock."""
    dry_run = dry_run or aug_cfg.dry_run
    if dry_run or not aug_cfg.augment_methods:
        return _build_cache(data_cfg, aug_cfg, rows, progress, dry_run, methods, checker, cache)
    from .cache import build_lock
    with build_lock(cache.path if cache is not None else aug_cfg.augment_cache):
        return _build_cache(data_cfg, aug_cfg, rows, progress, dry_run, methods, checker, cache)


def _build_cache(data_cfg, aug_cfg, rows, progress, dry_run, methods, checker, cache
                 ) -> BuildReport:
    report = BuildReport(qc_mode=aug_cfg.qc, dry_run=dry_run)
    if not aug_cfg.augment_methods:
        return report
    if not dry_run:
        aug_cfg.check_api_keys()
    if methods is None:
        from .methods import build_methods
        methods = build_methods(aug_cfg)
    methods = {n: m for n, m in methods.items() if n in aug_cfg.augment_methods}
    if cache is None:
        from .cache import init_cache_from
        init_cache_from(aug_cfg.augment_cache, aug_cfg.augment_cache_init)
        cache = VariantCache(aug_cfg.augment_cache)
    by_method = collect_requests(methods, rows)
    todo, counts = [], {}
    for name, reqs in by_method.items():
        miss = cache.missing(reqs)
        counts[name] = (len(reqs), len(miss))
        todo += [(name, r) for r in miss]
    report.requests = sum(t for t, _ in counts.values())
    report.already_done = report.requests - len(todo)
    report.qc = qc_summary(aug_cfg)
    line = qc_language_line(report.qc)
    if line and progress:
        print(line, file=sys.stderr)
    if dry_run:
        _estimate(report, methods, todo, counts, aug_cfg)
        _estimate_llm_judge(report, cache, todo, aug_cfg)
        if progress:
            _print_dry_run(report)
        return report
    t0 = time.monotonic()
    checker = checker or make_checker(aug_cfg)
    llm = _llm_judge_of(checker)
    before = _judge_counts(llm)
    if not sys.stderr.isatty():
        _quiet_progress_bars()
    # Verdicts made under other QC rules or settings (an upgrade, a changed threshold) are
    # re-judged here, locally, before anything new is added: training never mixes judges.
    fingerprint = checker.fingerprint()
    llm_judge = getattr(checker.config, "judge", None) == "llm"
    if cache.stale_verdicts(aug_cfg.qc, fingerprint):
        if progress:
            calls = ("only LLM-judge verdicts the cache does not hold yet are asked"
                     if llm_judge else "no API calls")
            print(f"augtune build: the cached verdicts under qc={aug_cfg.qc} were made by other "
                  f"QC rules or settings; judging the stored candidates again (local; {calls})",
                  file=sys.stderr)
        report.rejudged += cache.rescore(checker, only_missing=False,  # stamps the fingerprint
                                         progress=progress)
    elif cache.qc_fingerprint(aug_cfg.qc) != fingerprint:
        cache.set_qc_fingerprint(aug_cfg.qc, fingerprint)  # nothing judged yet under this mode
    from .judge import JudgeThread
    if llm_judge:  # candidates the LLM gave no verdict for last time are asked again
        cache.reopen_llm_judge_failures(aug_cfg.qc)
    # Judging runs beside the requests from the start: first whatever earlier builds stored
    # but never judged (killed before QC), then each answer as it is stored.
    leftovers = cache.unjudged_count(aug_cfg.qc)
    pending = cache.pending_steps(r.key for _, r in todo)
    if pending["calls"] and progress:
        print(f"augtune build: reusing {pending['calls']} calls already paid for by "
              f"{pending['requests']} unfinished multi-call requests (a killed build or a "
              "transient failure left them)", file=sys.stderr)
    _forget_collected_batches(methods, aug_cfg, cache)
    judge = JudgeThread(cache.path, checker, on_judged=report.add_judged).start()
    try:
        if todo:
            asyncio.run(_run_all(todo, methods, cache, judge, aug_cfg, report, progress))
    except BaseException:
        judge.abort()  # what is stored stays; the next build judges the rest
        report.elapsed_s = time.monotonic() - t0
        _add_judge_spend(report, llm, before, progress)
        if progress:
            _print_summary(report)
        raise
    judge.finish()
    report.rejudged += leftovers
    report.elapsed_s = time.monotonic() - t0
    _add_judge_spend(report, llm, before, progress)
    if judge.error is not None:
        raise judge.error
    report.per_method = cache.stats(aug_cfg.qc, methods=list(methods))
    if progress:
        _print_summary(report)
    return report


def _llm_judge_of(checker):
    """The checker's LLM judge (`qc_judge: llm` under qc=project), for its counts and spend;
    None otherwise (asking a seed-mode checker for its judge would build one)."""
    cfg = getattr(checker, "config", None)
    if getattr(cfg, "judge", None) != "llm" or getattr(cfg, "mode", None) != "project":
        return None
    judge = checker.judge
    return judge if hasattr(judge, "spend") else None


def _judge_counts(llm) -> dict:
    """The LLM judge's running counts (requests, failures, spend) at this moment."""
    if llm is None:
        return {}
    return {"requests": llm.requests, "failures": llm.failures, **llm.spend}


def _add_judge_spend(report, llm, before: dict, progress: bool) -> None:
    """Add what the LLM judge sent and spent during this build to the report (its verdict
    requests are paid like the methods' requests), and say so in one line."""
    if llm is None:
        return
    now = _judge_counts(llm)
    report.judge_requests = now["requests"] - before["requests"]
    report.judge_failures = now["failures"] - before["failures"]
    for k in ("input_tokens", "output_tokens", "retries"):
        setattr(report, k, getattr(report, k) + now[k] - before[k])
    report.cost_usd += now["cost_usd"] - before["cost_usd"]
    report.cost_known = report.cost_known and now["cost_known"]
    if progress:
        print(f"augtune build: LLM judge: {report.judge_requests} verdict requests sent, "
              f"{report.judge_failures} gave no verdict (those candidates are rejected; the "
              "next build asks again)", file=sys.stderr)


def _print_summary(report: BuildReport) -> None:
    print(report.summary_line(), file=sys.stderr)
    if report.failed:
        print(f"augtune build: {report.failed} requests failed; reasons (the next build "
              "retries them):", file=sys.stderr)
        for line in report.failure_lines():
            print(line, file=sys.stderr)


def _quiet_progress_bars() -> None:
    """No progress bars in a log file: the QC model's loading bar (transformers, hub) would
    write carriage-return noise into it. The build prints its own progress lines instead."""
    import os
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers ships with the QC model's deps
        pass


def rows_without_variants_by_failure(cache: VariantCache, rows, keys) -> int:
    """How many of `rows` miss a method's variants because that request failed (among the
    request `keys` of one run): what a training run must say before it trains without them."""
    keys = list(keys)
    failed: dict[str, set] = {"prompt": set(), "completion": set()}
    con = cache._conn()
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        for fld, src in con.execute(
                f"SELECT field, source FROM requests WHERE status='failed' AND key IN "
                f"({','.join('?' * len(chunk))})", chunk):
            failed.setdefault(fld, set()).add(src)
    return sum(1 for r in rows if r.prompt in failed["prompt"]
               or r.completion in failed["completion"])


# --- dry run -----------------------------------------------------------------------------
def _estimate(report, methods, todo, counts, aug_cfg) -> None:
    per = {n: {"requests": t, "to_run": m, "input_tokens": 0, "output_tokens": 0,
               "cost_usd": 0.0, "cost_known": True} for n, (t, m) in counts.items()}
    for name, req in todo:
        i, o = methods[name].estimate(req)
        e = per[name]
        e["input_tokens"] += i
        e["output_tokens"] += o
        _add_cost(e, aug_cfg, req.backend, req.model, i, o,
                  batch=aug_cfg.llm_use_batches and req.backend == "anthropic")
    report.per_method = per
    _sum_rows(report)


def _add_cost(row: dict, aug_cfg, backend: str, model: str, i: int, o: int,
              batch: bool = False) -> None:
    """Add the price of `i` input and `o` output tokens of `model` to a dry-run row (or mark
    its cost unknown). A local model costs compute, not money."""
    if not (i or o) or backend == "local":
        return
    from .backends import pricing
    override = aug_cfg.price_per_mtok if model == aug_cfg.llm_model else None
    c = pricing.cost(model, i, o, override=override or None, batch=batch)
    if not getattr(c, "known", True):
        row["cost_known"] = False
    else:
        row["cost_usd"] += float(c)


def _sum_rows(report) -> None:
    """The dry run's totals from its rows."""
    rows = report.per_method.values()
    report.input_tokens = sum(e["input_tokens"] for e in rows)
    report.output_tokens = sum(e["output_tokens"] for e in rows)
    report.cost_usd = sum(e["cost_usd"] for e in rows)
    report.cost_known = all(e["cost_known"] for e in rows)


#: The cache methods whose candidates the judge sees when the rules accept them
#: (`QualityChecker.score_pairs` asks it for paraphrases and back-translations only).
JUDGED_METHODS = ("paraphrase", "backtranslate")
#: `per_method`'s row for the LLM judge's verdict requests in a dry run.
LLM_JUDGE_ROW = "qc_judge:llm"


def _estimate_llm_judge(report, cache, todo, aug_cfg) -> None:
    """With `qc_judge: llm`, add the verdict requests this build may send to the LLM as a row
    of `report.per_method` and to the totals.

    An upper bound: one request per paraphrase or back-translation candidate that the build
    will judge and whose verdict is not stored yet: the new ones (each request's `n`,
    counted as long as their original) and the stored ones still to judge (all of them after
    a QC change, else those without a verdict). The LLM sees only the candidates the rules
    accept and the offline judge scores inside `qc_judge_band`; which those are needs the QC
    models, and a dry run loads none. The same prices as the methods' rows apply."""
    checker = make_checker(aug_cfg)
    if not (checker.config.mode == "project" and checker.config.judge == "llm"
            and checker.judge_active):
        return
    from .qc.llm_judge import request_tokens
    judge = checker.judge
    new = [(req.source, req.source) for name, req in todo if name in JUDGED_METHODS
           for _ in range(int(req.param_dict.get("n", 1)))]
    stale = cache.stale_verdicts(aug_cfg.qc, checker.fingerprint())
    stored = cache.pairs_to_judge(aug_cfg.qc, JUDGED_METHODS, only_missing=not stale)
    pairs = new + stored
    ask = [pairs[i] for i in judge.pending(pairs, [judge.band[0]] * len(pairs))]
    tokens = [request_tokens(o, c, judge.max_tokens) for o, c in ask]
    row = {"requests": len(ask), "to_run": len(ask),
           "input_tokens": sum(i for i, _ in tokens), "output_tokens": sum(o for _, o in tokens),
           "cost_usd": 0.0, "cost_known": True}
    _add_cost(row, aug_cfg, aug_cfg.llm_backend, aug_cfg.llm_model, row["input_tokens"],
              row["output_tokens"])  # verdicts are asked one by one, never in a batch
    report.per_method[LLM_JUDGE_ROW] = row
    _sum_rows(report)
    report.judge_requests = len(ask)


def _print_dry_run(report: BuildReport) -> None:
    print(f"{'method':<14}{'requests':>10}{'to run':>10}{'in tokens':>12}{'out tokens':>12}"
          f"{'cost':>16}")
    for name, e in report.per_method.items():
        cost = f"${e['cost_usd']:.4f}" if e["cost_known"] else "price unknown"
        print(f"{name:<14}{e['requests']:>10}{e['to_run']:>10}{e['input_tokens']:>12}"
              f"{e['output_tokens']:>12}{cost:>16}")
    print(report.summary_line())


# --- the build loop ----------------------------------------------------------------------
async def _run_all(todo, methods, cache, judge, aug_cfg, report, progress) -> None:
    queue: asyncio.Queue = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)
    fatal: list[BaseException] = []
    bar = _Progress(len(todo), report, enabled=progress, every=aug_cfg.progress_seconds)
    store = _Store(cache, judge, report, bar)

    async def worker():
        while not fatal:
            try:
                name, req = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                method = methods[name]
                result = await (method.run(req, steps=store.steps_for(req))
                                if getattr(method, "multi_call", False) else method.run(req))
                if not result.candidates:
                    raise CandidateError("no candidates returned")
            except (CandidateError, RetryableError) as exc:
                # A failed request still spent retries (and, for an unusable answer, tokens):
                # the report must count them, or a flaky backend looks cheaper than it is.
                # The calls of a multi-call request that did answer are kept for the next try
                # when the failure was transient; a content failure asks again.
                try:
                    await store.failure(req, f"{type(exc).__name__}: {exc}", _failure_spend(exc),
                                        keep_steps=isinstance(exc, RetryableError))
                except Exception as exc2:  # the cache cannot be written: stop loudly
                    fatal.append(exc2)
                    return
                continue
            except Exception as exc:  # FatalBackendError, or a bug: stop, keep what is done
                fatal.append(exc)
                return
            try:
                await store.answer(req, result)
            except Exception as exc:  # the cache cannot be written (disk full): stop loudly
                fatal.append(exc)
                return

    ticker = asyncio.create_task(bar.tick_forever())
    workers = []
    try:
        if not aug_cfg.llm_use_batches:
            _refuse_unfetched_batches(methods, aug_cfg)
        else:
            try:
                await _run_batches(queue, methods, store, aug_cfg, report)
            except Exception as exc:
                fatal.append(exc)
        if not fatal:
            workers = [asyncio.create_task(worker())
                       for _ in range(min(aug_cfg.max_concurrency, queue.qsize()))]
        while any(not w.done() for w in workers):
            await asyncio.wait(workers, return_when=asyncio.FIRST_COMPLETED)
            if fatal:
                # The other workers take nothing new, but what they already sent may be billed:
                # give it a request's time to answer and be stored, then cancel what is left.
                _, pending = await asyncio.wait(workers, timeout=float(aug_cfg.request_timeout) + 5)
                for w in pending:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                break
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        store.close()  # every answer handed to the writer is stored before this returns
        bar.close()
        await _close_backends(methods)
    if fatal:
        raise fatal[0]


class _Store:
    """The build's one writer: a single thread that owns the cache connection, so answers from
    many coroutines are written one transaction at a time without blocking the event loop.
    Counting happens in that thread right after the commit, so a worker cancelled while its
    answer is being written still has it stored and counted."""

    def __init__(self, cache, judge, report, bar):
        self.cache, self.judge, self.report, self.bar = cache, judge, report, bar
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="augtune-writer")

    async def _run(self, fn, *args):
        """`fn(*args)` on the writer thread. Shielded: a worker cancelled after a fatal error
        must not cancel a write still queued behind others (a paid answer would be lost);
        `close()` waits for every queued write."""
        loop = asyncio.get_running_loop()
        return await asyncio.shield(loop.run_in_executor(self.pool, fn, *args))

    async def answer(self, req, result: Result) -> None:
        await self._run(self._answer, req, result)

    async def failure(self, req, reason: str, spend: Result | None, keep_steps: bool = False
                      ) -> None:
        await self._run(self._failure, req, reason, spend, keep_steps)

    def steps_for(self, req) -> Steps:
        """The store of `req`'s paid calls (augment.steps), read and written by this writer
        thread: each call's answer is committed before the method makes its next call."""
        async def load(step):
            return await self._run(self.cache.get_step, req.key, step)

        async def save(step, comp):
            await self._run(self.cache.put_step, req.key, step, comp)
        return Steps(load, save)

    def _answer(self, req, result: Result) -> None:
        self.cache.put_answer(req, result)
        r = self.report
        r.executed += 1
        r.done += 1
        _add_spend(r, result)
        self.judge.add(req.key)
        self.bar.update(1)

    def _failure(self, req, reason: str, spend: Result | None, keep_steps: bool) -> None:
        self.cache.put_failure(req, reason, spend, keep_steps=keep_steps)
        r = self.report
        r.executed += 1
        r.failed += 1
        _add_spend(r, spend or Result([]))
        r.add_failure(reason)
        self.bar.update(1)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


async def _run_batches(queue, methods, store, aug_cfg, report) -> None:
    """Send every batchable request (a method with `batch_prompt`, a backend with
    `complete_many`, i.e. Anthropic's Message Batches at half price) as one batch per backend.

    The batch ids are kept next to the cache (`<augment_cache>.<backend>-batch.json`) until
    every result of those batches is stored: a build killed while a batch runs, or after it
    ended but before its results were stored, fetches the same batch on the next run instead
    of paying twice (`backends.batches`). Answers are stored unjudged, like every other
    answer. Errored or expired items go into a new batch in the same build, up to
    `max_retries` times; what still fails is recorded as failed with its reason."""
    from .backends.batches import clear_state
    rest, groups = [], {}
    while not queue.empty():
        name, req = queue.get_nowait()
        m = methods[name]
        backend = getattr(m, "backend", None)
        prompt = m.batch_prompt(req) if hasattr(m, "batch_prompt") else None
        batchable = getattr(backend, "supports_batches", hasattr(backend, "complete_many"))
        if prompt is None or not batchable:
            rest.append((name, req))
            continue
        groups.setdefault(id(backend), (backend, []))[1].append((name, req, prompt))
    for item in rest:
        queue.put_nowait(item)
    for backend, items in groups.values():
        by_id = {req.key[:64]: (name, req, prompt) for name, req, prompt in items}
        state = _batch_state(aug_cfg, backend.name)
        pending, why = list(by_id), {}
        for round_ in range(aug_cfg.max_retries + 1):
            if round_:
                report.retries += len(pending)  # a resubmission is a retry of each item
            results = await backend.complete_many(
                [(cid, *by_id[cid][2]) for cid in pending], state_path=state,
                poll_interval=aug_cfg.llm_batch_poll_seconds, keep_state=True)
            retry, asked = [], set(pending)
            # Answers to requests this build does not make (custom id = request key) that the
            # cache does not hold yet: paid for by a build with other rows or settings.
            other = [cid for cid in results if cid not in asked and results[cid][0] == "succeeded"]
            orphans = 0
            if other:
                reader = VariantCache(store.cache.path)  # the writer thread owns store.cache
                try:
                    orphans = len(other) - len(reader._done_keys(other))
                finally:
                    reader.close()
            for cid, (status, value) in results.items():
                if cid not in asked:
                    continue  # a recorded batch answered a request this build does not make
                name, req, _ = by_id[cid]
                if status != "succeeded":
                    retry.append(cid)
                    why[cid] = f"batch item {status} ({value})"
                    continue
                try:
                    res = methods[name].parse(req, value)
                    if not res.candidates:
                        raise CandidateError("no candidates returned")
                except CandidateError as exc:
                    await store.failure(req, f"CandidateError: {exc}", _failure_spend(exc))
                    continue
                await store.answer(req, res)
            if orphans:
                # Paid for, by a build whose rows or settings differed: keep the record, so a
                # build with those settings collects them instead of paying again.
                print(f"augtune build: {orphans} answers of a batch recorded in {state} belong to "
                      "requests this build does not make (its rows or settings changed since); "
                      "the record is kept so a build with those settings stores them (delete it "
                      "to give them up)", file=sys.stderr)
            else:
                clear_state(state)  # every answer of those batches is stored now
            pending = retry
            if not pending:
                break
        for cid in pending:
            await store.failure(by_id[cid][1], why[cid], None)


def _batch_state(aug_cfg, backend_name: str) -> Path:
    """Where the ids of a backend's submitted batches are kept beside the cache."""
    return Path(f"{aug_cfg.augment_cache}.{backend_name}-batch.json")


def _forget_collected_batches(methods, aug_cfg, cache) -> None:
    """A build killed after storing every answer of its batch, but before deleting the record,
    leaves a record whose answers the cache already holds: the next build forgets it (else a
    build with nothing to do kept it forever, and a batches-off build refused to run)."""
    from .backends.batches import clear_state, recorded_custom_ids
    names = {getattr(getattr(m, "backend", None), "name", None) for m in methods.values()}
    for name in sorted(n for n in names if n):
        state = _batch_state(aug_cfg, name)
        held = recorded_custom_ids(state) if state.is_file() else None
        if held and len(cache._done_keys(held)) == len(held):
            clear_state(state)


def _refuse_unfetched_batches(methods, aug_cfg) -> None:
    """With llm_use_batches off, a batch an earlier build submitted and recorded beside the cache
    is never read, and its requests would be paid for again one by one: stop and say so."""
    names = {getattr(getattr(m, "backend", None), "name", None) for m in methods.values()}
    for name in sorted(n for n in names if n):
        state = _batch_state(aug_cfg, name)
        if state.is_file():
            raise AugtuneError(
                f"{state} records a batch an earlier build submitted (paid for); with "
                "llm_use_batches: false it would not be read and its requests would be paid "
                "again. Run once with llm_use_batches: true to store its answers, or delete the "
                "file to give them up.")


async def _close_backends(methods) -> None:
    seen = set()
    for m in methods.values():
        b = getattr(m, "backend", None)
        if b is not None and id(b) not in seen and hasattr(b, "aclose"):
            seen.add(id(b))
            try:
                await b.aclose()
            except Exception:  # closing must not hide the build's own outcome
                pass


def _add_spend(report, spend: Result) -> None:
    """Retries, tokens and money of one request, done or failed: both were paid for."""
    report.retries += spend.retries
    report.input_tokens += spend.input_tokens
    report.output_tokens += spend.output_tokens
    report.cost_usd += float(spend.cost_usd)
    if not getattr(spend.cost_usd, "known", True):
        report.cost_known = False


def _failure_spend(exc) -> Result:
    """What a failed request cost: retries (RetryableError.retries after giving up) and, for
    an unusable answer, the completion the method attached to its CandidateError."""
    comp = getattr(exc, "completion", None)
    retries = int(getattr(exc, "retries", 0) or getattr(comp, "retries", 0) or 0)
    return Result([], getattr(comp, "input_tokens", 0) or 0, getattr(comp, "output_tokens", 0)
                  or 0, getattr(comp, "cost_usd", 0.0) or 0.0, retries)


class _Progress:
    """A tqdm bar on a terminal. Otherwise (a log file, CI) one plain line every `every`
    seconds: done/total, accepted, failed, spend; never a bar's carriage returns."""

    def __init__(self, total: int, report: BuildReport, enabled: bool, every: float = 30.0):
        self.report, self.total, self.every = report, total, every
        self.enabled = enabled
        self.n = 0
        self.bar = None
        self._last = time.monotonic()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc="augment", unit="req", file=sys.stderr,
                            dynamic_ncols=True)

    def _postfix(self) -> str:
        r = self.report
        cost = f"${r.cost_usd:.4f}" if r.cost_known else "price unknown"
        return (f"accepted {r.accepted}, rejected {r.rejected}, failed {r.failed}, "
                f"retries {r.retries}, spent {cost}")

    def update(self, n: int) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.set_postfix_str(self._postfix(), refresh=False)
            self.bar.update(n)

    def tick(self) -> None:
        if not self.enabled or self.bar is not None:
            return
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            print(f"augtune build: {self.n}/{self.total} requests, {self._postfix()}",
                  file=sys.stderr, flush=True)

    async def tick_forever(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.every))
            self.tick()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- CLI ---------------------------------------------------------------------------------
def main(argv: list[str]) -> BuildReport:
    argv = ["--dry_run" if a == "--dry-run" else a for a in argv]
    argv = [x for a in argv for x in ((a, "true") if a == "--dry_run" and _flag_alone(argv, a)
                                      else (a,))]
    from trl import ModelConfig, SFTConfig

    from .cli import parse_config
    from .config import AugmentConfig, DataConfig
    from .data import load_rows
    # The build never trains: precision flags are irrelevant here, and SFTConfig's bf16 check
    # would refuse to parse on a CPU-only machine (where building a cache is perfectly fine).
    argv = argv + ["--bf16", "false", "--fp16", "false"]
    try:
        data_cfg, aug_cfg, sft_cfg, _ = parse_config(argv, (DataConfig, AugmentConfig, SFTConfig,
                                                            ModelConfig))
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc).strip().splitlines()[0]) from None
    if aug_cfg.augment_seed is None:
        aug_cfg.augment_seed = sft_cfg.seed  # exactly as training resolves it: same cache keys
    split = load_rows(data_cfg, seed=sft_cfg.seed)
    from .data import split_line
    print("augtune build: " + split_line(split.report), file=sys.stderr)
    from .conversation import TurnUnits  # the same units (user turns) that training loads
    units = TurnUnits.of(split.train, aug_cfg.augment_turns)
    report = build_cache(data_cfg, aug_cfg, units.rows, progress=True)
    if report.failed and not aug_cfg.allow_failures and not report.dry_run:
        print(f"augtune build: exit {EXIT_FAILURES}: {report.failed} requests failed (see above); "
              "rerun to retry them, or pass --allow_failures true to accept the build as it is.",
              file=sys.stderr)
        raise SystemExit(EXIT_FAILURES)
    return report


def _flag_alone(argv, a) -> bool:
    i = argv.index(a)
    return i + 1 >= len(argv) or argv[i + 1].startswith("--")


if __name__ == "__main__":
    from .cli import run_cli
    run_cli(main)
