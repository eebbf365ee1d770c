"""Build the variant cache: run every missing (row, method) request, judge it, store it.

    python -m augment.build --config configs/base.yaml [--key value ...] [--dry-run]

Why this shape:
- Only train rows are ever augmented (the caller passes them; eval rows never reach here).
- A bounded pool of `max_concurrency` worker tasks pulls from a queue, instead of gathering
  100k coroutines at once: memory stays flat and a fatal error stops new work immediately.
- Quality control embeds text (CPU-bound), so candidates are scored in micro-batches in a
  thread (`asyncio.to_thread`), keeping the event loop free for network I/O.
- Each request is written in its own transaction as soon as it is judged, by one writer, so a
  SIGKILL at any moment loses at most the requests in flight, and a rerun does only what is
  missing or failed.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import asdict, dataclass, field

from .cache import VariantCache, qc_method
from .errors import AugtuneError, CandidateError, ConfigError, FatalBackendError, RetryableError
from .types import Request, Result

SCORE_BATCH = 64        # candidates per QC micro-batch
SCORE_LATENCY_S = 1.0   # ... or whatever arrived within this long


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
    rejudged: int = 0           # stored candidates judged locally under this qc mode
    per_method: dict = field(default_factory=dict)   # dry run: estimates; build: stats
    failure_reasons: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary_line(self) -> str:
        cost = f"${self.cost_usd:.4f}" if self.cost_known else "price unknown"
        if self.dry_run:
            return (f"augtune build --dry-run: {self.requests - self.already_done} of "
                    f"{self.requests} requests to run, ~{self.input_tokens} input + "
                    f"~{self.output_tokens} output tokens, estimated cost {cost}")
        return (f"augtune build: {self.done} done, {self.failed} failed, {self.accepted} accepted, "
                f"{self.rejected} rejected, {self.retries} retries, {self.already_done} already "
                f"cached, cost {cost}, {self.elapsed_s:.1f}s")


def make_checker(aug_cfg):
    """The quality checker for `aug_cfg.qc` (model loaded lazily on first use)."""
    from .quality import QualityChecker, QualityConfig
    return QualityChecker(QualityConfig(mode=aug_cfg.qc, model_name_or_path=aug_cfg.qc_model))


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
    Raises `FatalBackendError` (after storing finished work) when a backend cannot go on."""
    dry_run = dry_run or aug_cfg.dry_run
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
    if dry_run:
        _estimate(report, methods, todo, counts, aug_cfg)
        if progress:
            _print_dry_run(report)
        return report
    t0 = time.monotonic()
    checker = checker or make_checker(aug_cfg)
    # Verdicts made under other QC rules or settings (an upgrade, a changed threshold) are
    # re-judged here, locally, before anything new is added: training never mixes judges.
    fingerprint = checker.fingerprint()
    if cache.stale_verdicts(aug_cfg.qc, fingerprint):
        if progress:
            print(f"augtune build: the cached verdicts under qc={aug_cfg.qc} were made by other "
                  "QC rules or settings; judging every stored candidate again (local, no API "
                  "calls)", file=sys.stderr)
        report.rejudged += cache.rescore(checker, only_missing=False)  # stamps the fingerprint
    elif cache.qc_fingerprint(aug_cfg.qc) != fingerprint:
        cache.set_qc_fingerprint(aug_cfg.qc, fingerprint)  # nothing judged yet under this mode
    try:
        if todo:
            asyncio.run(_run_all(todo, methods, cache, checker, aug_cfg, report, progress))
    finally:
        report.elapsed_s = time.monotonic() - t0
    # Candidates cached by a build under another qc mode: judge them here, locally.
    if cache.unjudged_count(aug_cfg.qc, list(methods)):
        report.rejudged += cache.rescore(checker)
    report.per_method = cache.stats(aug_cfg.qc, methods=list(methods))
    if progress:
        print(report.summary_line(), file=sys.stderr)
    return report


# --- dry run -----------------------------------------------------------------------------
def _estimate(report, methods, todo, counts, aug_cfg) -> None:
    try:
        from .backends import pricing
    except ImportError:  # pragma: no cover - the pricing module ships with augtune
        pricing = None
    per = {n: {"requests": t, "to_run": m, "input_tokens": 0, "output_tokens": 0,
               "cost_usd": 0.0, "cost_known": True} for n, (t, m) in counts.items()}
    for name, req in todo:
        i, o = methods[name].estimate(req)
        e = per[name]
        e["input_tokens"] += i
        e["output_tokens"] += o
        if (i or o) and req.backend != "local":  # a local model costs compute, not money
            override = aug_cfg.price_per_mtok if req.model == aug_cfg.llm_model else None
            c = (pricing.cost(req.model, i, o, override=override or None,
                              batch=aug_cfg.llm_use_batches and req.backend == "anthropic")
                 if pricing else None)
            if c is None or not getattr(c, "known", True):
                e["cost_known"] = False
            else:
                e["cost_usd"] += float(c)
    report.per_method = per
    report.input_tokens = sum(e["input_tokens"] for e in per.values())
    report.output_tokens = sum(e["output_tokens"] for e in per.values())
    report.cost_usd = sum(e["cost_usd"] for e in per.values())
    report.cost_known = all(e["cost_known"] for e in per.values())


def _print_dry_run(report: BuildReport) -> None:
    print(f"{'method':<14}{'requests':>10}{'to run':>10}{'in tokens':>12}{'out tokens':>12}"
          f"{'cost':>16}")
    for name, e in report.per_method.items():
        cost = f"${e['cost_usd']:.4f}" if e["cost_known"] else "price unknown"
        print(f"{name:<14}{e['requests']:>10}{e['to_run']:>10}{e['input_tokens']:>12}"
              f"{e['output_tokens']:>12}{cost:>16}")
    print(report.summary_line())


# --- the build loop ----------------------------------------------------------------------
_DONE = object()


async def _run_all(todo, methods, cache, checker, aug_cfg, report, progress) -> None:
    queue: asyncio.Queue = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)
    out: asyncio.Queue = asyncio.Queue()
    fatal: list[BaseException] = []
    bar = _Progress(len(todo), report, enabled=progress)

    async def worker():
        while not fatal:
            try:
                name, req = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                result = await methods[name].run(req)
                if not result.candidates:
                    raise CandidateError("no candidates returned")
                await out.put((req, result, None))
            except (CandidateError, RetryableError) as exc:
                # A failed request still spent retries (and, for an unusable answer, tokens):
                # the report must count them, or a flaky backend looks cheaper than it is.
                await out.put((req, _failure_spend(exc), f"{type(exc).__name__}: {exc}"))
            except FatalBackendError as exc:
                fatal.append(exc)
            except Exception as exc:  # a bug: stop, keep what is done, show it
                fatal.append(exc)

    writer = asyncio.create_task(_writer(out, cache, checker, aug_cfg.qc, report, bar))
    workers = []
    try:
        if aug_cfg.llm_use_batches:
            await _run_batches(queue, methods, out, aug_cfg)
        workers = [asyncio.create_task(worker()) for _ in range(min(aug_cfg.max_concurrency,
                                                                       queue.qsize()))]
        while any(not w.done() for w in workers):
            await asyncio.wait(workers, return_when=asyncio.FIRST_COMPLETED)
            if fatal:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                break
    finally:
        await out.put(_DONE)
        await writer  # flush everything completed, even on fatal errors
        bar.close()
        await _close_backends(methods)
    if fatal:
        exc = fatal[0]
        if isinstance(exc, AugtuneError):
            raise exc
        raise exc


async def _run_batches(queue, methods, out, aug_cfg) -> None:
    """Send every batchable request (a method with `batch_prompt`, a backend with
    `complete_many`, i.e. Anthropic's Message Batches at half price) as one batch per backend.
    The batch id is kept next to the cache (`<augment_cache>.<backend>-batch.json`), so a killed
    build resumes polling the same batch instead of paying twice. Results go through the same
    QC and writer as everything else; errored/expired items are recorded as failed, and the
    next build resubmits only those."""
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
        by_id = {req.key[:64]: (name, req) for name, req, _ in items}
        state = f"{aug_cfg.augment_cache}.{backend.name}-batch.json"
        results = await backend.complete_many(
            [(req.key[:64], *prompt) for _, req, prompt in items], state_path=state,
            poll_interval=aug_cfg.llm_batch_poll_seconds)
        for cid, (status, value) in results.items():
            name, req = by_id[cid]
            if status != "succeeded":
                await out.put((req, None, f"batch {status}: {value}"))
                continue
            try:
                await out.put((req, methods[name].parse(req, value), None))
            except CandidateError as exc:
                await out.put((req, None, f"CandidateError: {exc}"))


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


async def _writer(out, cache, checker, qc_mode, report, bar) -> None:
    """Single writer: micro-batches QC off the loop, then one transaction per request."""
    finished = False
    while not finished:
        batch, n_cand, deadline = [], 0, 0.0
        while True:
            try:
                item = out.get_nowait()
            except asyncio.QueueEmpty:
                if batch and time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.005)
                continue
            if item is _DONE:
                finished = True
                break
            if not batch:
                deadline = time.monotonic() + SCORE_LATENCY_S
            batch.append(item)
            n_cand += len(item[1].candidates) if item[2] is None else 0
            if n_cand >= SCORE_BATCH:
                break
        if batch:
            await asyncio.to_thread(_score_and_store, batch, cache, checker, qc_mode, report)
            bar.update(len(batch))


def _score_and_store(batch, cache, checker, qc_mode, report) -> None:
    ok = [(req, res) for req, res, err in batch if err is None]
    scores = _score(ok, checker)
    for (req, res), sc in zip(ok, scores):
        cache.put(req, res, sc, qc_mode)
        report.executed += 1
        report.done += 1
        report.accepted += sum(1 for s in sc if s["is_valid"])
        report.rejected += sum(1 for s in sc if not s["is_valid"])
        _add_spend(report, res)
    for req, spend, err in batch:
        if err is not None:
            spend = spend or Result([])  # batch-mode failures carry no spend
            cache.put_failure(req, err, retries=spend.retries)
            report.executed += 1
            report.failed += 1
            _add_spend(report, spend)
            reason = err.split(":", 1)[0] if len(err) > 80 else err
            report.failure_reasons[reason] = report.failure_reasons.get(reason, 0) + 1


def _add_spend(report, spend: Result) -> None:
    """Retries, tokens and money of one request, done or failed: both were paid for."""
    report.retries += spend.retries
    report.input_tokens += spend.input_tokens
    report.output_tokens += spend.output_tokens
    report.cost_usd += float(spend.cost_usd)
    if not getattr(spend.cost_usd, "known", True):
        report.cost_known = False


def _score(ok: list[tuple[Request, Result]], checker) -> list[list[dict]]:
    """One `score_pairs` call per (method, qc variant) group of the micro-batch."""
    groups: dict[str, list[tuple[int, int]]] = {}
    for ri, (req, res) in enumerate(ok):
        m = qc_method(req.method, req.param_dict)
        groups.setdefault(m, []).extend((ri, ci) for ci in range(len(res.candidates)))
    out = [[None] * len(res.candidates) for _, res in ok]
    for m, items in groups.items():
        originals = [ok[ri][0].source for ri, _ in items]
        augmenteds = [ok[ri][1].candidates[ci].text for ri, ci in items]
        scores = checker.score_pairs(originals, augmenteds, m,
                                     group_ids=[ok[ri][0].key for ri, _ in items])
        for (ri, ci), s in zip(items, scores):
            out[ri][ci] = s
    return out


def _failure_spend(exc) -> Result:
    """What a failed request cost: retries (RetryableError.retries after giving up) and, for
    an unusable answer, the completion the method attached to its CandidateError."""
    comp = getattr(exc, "completion", None)
    retries = int(getattr(exc, "retries", 0) or getattr(comp, "retries", 0) or 0)
    return Result([], getattr(comp, "input_tokens", 0) or 0, getattr(comp, "output_tokens", 0)
                  or 0, getattr(comp, "cost_usd", 0.0) or 0.0, retries)


class _Progress:
    """tqdm bar on a TTY; otherwise silent (the caller prints one summary line)."""

    def __init__(self, total: int, report: BuildReport, enabled: bool):
        self.report = report
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc="augment", unit="req", file=sys.stderr,
                            dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self.bar is None:
            return
        r = self.report
        cost = f"${r.cost_usd:.4f}" if r.cost_known else "?"
        self.bar.set_postfix_str(f"acc={r.accepted} rej={r.rejected} failed={r.failed} "
                                 f"retries={r.retries} cost={cost}", refresh=False)
        self.bar.update(n)

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
    from .conversation import TurnUnits  # the same units (user turns) that training loads
    units = TurnUnits.of(split.train, aug_cfg.augment_turns)
    return build_cache(data_cfg, aug_cfg, units.rows, progress=True)


def _flag_alone(argv, a) -> bool:
    i = argv.index(a)
    return i + 1 >= len(argv) or argv[i + 1].startswith("--")


if __name__ == "__main__":
    from .cli import run_cli
    run_cli(main)
