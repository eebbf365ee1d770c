"""`build_throughput_vs_limit`: build_cache against the fake Anthropic server vs min(rate limit,
concurrency / latency)."""

from __future__ import annotations

import os
import random
import time

from bench.harness import entry, perf, rnd, scratch_dir


def fig_build_throughput_vs_limit(S) -> dict:
    """build_cache with the real paraphrase method and AnthropicBackend against the local fake
    Anthropic server (fixed latency), under a requests_per_minute limit."""
    from augment.build import build_cache
    from augment.config import AugmentConfig, DataConfig
    from augment.quality import QualityChecker, QualityConfig
    from augment.types import Row
    from tests.fakes import FakeAnthropicServer

    latency, concurrency, rpm = 0.2, 8, 1200.0
    n_req, n_seq = S.pick(300, 600, 12), S.pick(30, 40, 4)
    words = ("account billing router invoice password refund plan upgrade device order "
             "address email").split()

    def rows(n, salt):  # short distinct prompts: QC must not be the bottleneck
        r = random.Random(salt)
        return [Row(f"{salt}-{i}", f"How do I change the {r.choice(words)} for my "
                    f"{r.choice(words)} {salt}{i}?", "Open settings.") for i in range(n)]

    class TimedChecker(QualityChecker):
        seconds = 0.0
        calls = 0

        def score_pairs(self, *a, **k):
            t = perf()
            try:
                return super().score_pairs(*a, **k)
            finally:
                TimedChecker.seconds += perf() - t
                TimedChecker.calls += 1

    checker = TimedChecker(QualityConfig(mode="project"))
    checker.model  # load the QC model before timing (a build loads it once)
    arrivals = []

    def reply(system, user, body=None):
        from tests.fakes import paraphrase_reply
        arrivals.append(time.monotonic())
        return paraphrase_reply(system, user, body)

    saved = {k: os.environ.get(k) for k in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY")}
    work = scratch_dir("augtune-bench-build-")
    res = {}
    try:
        with FakeAnthropicServer(reply=reply, latency=latency) as srv:
            os.environ["ANTHROPIC_BASE_URL"] = srv.url
            os.environ["ANTHROPIC_API_KEY"] = "sk-ant-bench-fake"
            for tag, n, conc, limit in (("limited", n_req, concurrency, rpm),
                                        ("sequential", n_seq, 1, None)):
                cfg = AugmentConfig(augment_methods=["paraphrase"], llm_backend="anthropic",
                                    llm_model="claude-haiku-4-5", max_concurrency=conc,
                                    requests_per_minute=limit,
                                    augment_cache=str(work / f"{tag}.sqlite"),
                                    qc="project", paraphrase_n=3, llm_max_tokens=256)
                TimedChecker.seconds, TimedChecker.calls = 0.0, 0
                arrivals.clear()
                t = perf()
                rep = build_cache(DataConfig(), cfg, rows(n, tag), progress=False, checker=checker)
                wall = perf() - t
                if rep.done != n:
                    raise RuntimeError(f"{tag} build: {rep.done} of {n} done, {rep.failed} failed "
                                       f"{rep.failure_reasons}")
                span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
                res[tag] = {"requests": n, "wall_s": wall, "elapsed_s": rep.elapsed_s,
                            "rate": n / wall, "request_phase_rate": (len(arrivals) - 1) / span,
                            "qc_s": TimedChecker.seconds, "qc_calls": TimedChecker.calls,
                            "accepted": rep.accepted, "rejected": rep.rejected}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    bound = min(rpm / 60.0, concurrency / latency)
    lim, seq = res["limited"], res["sequential"]
    value = lim["rate"] / bound
    return entry(value, "x (achieved requests/s / min(limit, concurrency/latency))",
                 f"min({rpm:g}/60, {concurrency}/{latency}) = {bound:g} requests/s",
                 ">= 0.9", value >= 0.9,
                 backend="AnthropicBackend (anthropic SDK) -> tests/fakes FakeAnthropicServer",
                 latency_s=latency, max_concurrency=concurrency, requests_per_minute=rpm,
                 requests=lim["requests"], achieved_rps=rnd(lim["rate"]),
                 request_phase_rps=rnd(lim["request_phase_rate"]),
                 wall_s=rnd(lim["wall_s"]), qc_s=rnd(lim["qc_s"]), qc_calls=lim["qc_calls"],
                 qc_share_of_wall=rnd(lim["qc_s"] / lim["wall_s"]),
                 candidates_accepted=lim["accepted"], candidates_rejected=lim["rejected"],
                 sequential={"requests": seq["requests"], "rps": rnd(seq["rate"]),
                             "wall_s": rnd(seq["wall_s"]), "qc_s": rnd(seq["qc_s"])},
                 speedup_vs_sequential=rnd(lim["rate"] / seq["rate"]),
                 timing="one build each (wall clock of build_cache, incl. the final QC flush); "
                        "request_phase_rps = requests / (last arrival - first) at the server",
                 note="value is end to end: the tail (last QC micro-batch, up to 1 s batching "
                      "latency) is included")
