"""The paid calls inside one request, kept so that a killed build never pays for them twice.

Most requests are one API call: the cache stores the answer the moment it arrives, and a kill
loses at most the calls in flight. Two methods make several calls per request: backtranslation
(to the pivot language, then back) and `paraphrase_style: single` (n calls, one rewrite each).
Their request is stored only when its last call returns, so without this a build killed between
the calls would pay for the earlier ones again on the next run.

`Steps` wraps each call: `await steps.call("pivot", make)` returns the answer a killed or failed
earlier attempt already paid for, or awaits `make()` and persists its answer (the build's
`save`, one cache transaction) before the method goes on. The method reports `spend()`, every
call's tokens and cost, in its Result or failure; the cache then deletes the request's steps
(answer, or a content failure, which a rerun should ask again) or marks them counted (a call
that gave up on a transient error: the next attempt reuses the earlier calls, at no new spend).
`Steps()` with no store keeps nothing, for a method called outside a build.
"""

from __future__ import annotations

from .types import Completion


class Steps:
    def __init__(self, load=None, save=None):
        """`load(step) -> Completion | None` and `save(step, completion)` are async; the
        build's go through its cache writer (`augment.build._Store.steps_for`)."""
        self._load, self._save = load, save
        self.calls: list[Completion] = []
        self.reused: list[str] = []

    async def call(self, step: str, make) -> Completion:
        """The answer to `step` of this request: stored, or `await make()` (a Completion, or a
        plain str for a translator without accounting) and stored before it is returned."""
        comp = await self._load(step) if self._load else None
        if comp is not None:
            self.reused.append(step)
        else:
            comp = await make()
            if isinstance(comp, str):
                comp = Completion(comp)
            if self._save:
                await self._save(step, comp)
        self.calls.append(comp)
        return comp

    def spend(self, extra_retries: int = 0) -> Completion:
        """Tokens, cost and retries of every call so far (reused ones count what they cost the
        attempt that paid for them, or 0 once a recorded failure has counted them)."""
        return _total(self.calls, extra_retries)

    def charge(self, exc: BaseException) -> BaseException:
        """Attach what every call of this request cost to a failure (`exc.completion`, read by
        the build's `_failure_spend`), so a request that fails on its last call still records
        what the earlier calls were billed."""
        own = getattr(exc, "completion", None)
        calls = self.calls + ([own] if own is not None and all(own is not c for c in self.calls)
                              else [])
        spend = _total(calls, int(getattr(exc, "retries", 0) or 0))
        exc.completion = spend
        exc.retries = spend.retries
        return exc


def _total(calls, extra_retries: int = 0) -> Completion:
    """One Completion's worth of accounting for several calls; the cost stays flagged unknown
    (`pricing.Cost.known`) when any call's price was unknown."""
    from .backends.pricing import Cost
    known = all(getattr(c.cost_usd, "known", True) for c in calls)
    return Completion("", sum(c.input_tokens for c in calls), sum(c.output_tokens for c in calls),
                      Cost(sum(float(c.cost_usd) for c in calls), known=known),
                      sum(c.retries for c in calls) + extra_retries)
