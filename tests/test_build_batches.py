"""A cache build in Message Batches mode, through the real anthropic SDK and a fake server."""

from __future__ import annotations

from augment.build import build_cache
from augment.cache import VariantCache
from augment.config import AugmentConfig, DataConfig
from augment.types import Row
from tests.fakes import FakeAnthropicServer

PROMPTS = [f"How do I update the billing address on order {1000 + i}?" for i in range(6)]


def cfg(tmp_path, **kw):
    return AugmentConfig(augment_methods=["paraphrase"], llm_backend="anthropic",
                         llm_model="claude-haiku-4-5", llm_use_batches=True,
                         llm_batch_poll_seconds=0.05, augment_cache=str(tmp_path / "c.sqlite"),
                         qc="seed", **kw)


def test_batch_build_half_price_and_resubmits_only_failures(tmp_path, monkeypatch):
    rows = [Row(str(i), p, "ok") for i, p in enumerate(PROMPTS)]
    failing = set()

    def item_result(custom_id, params):
        # the first submission: two items expire; a resubmission succeeds
        if len(failing) < 2 and custom_id not in failing:
            failing.add(custom_id)
            return "expired"
        return None

    with FakeAnthropicServer(batch_item_result=item_result) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
        rep = build_cache(DataConfig(), cfg(tmp_path), rows, progress=False)
        assert srv.count("messages") == 0            # nothing went through the per-request API
        assert srv.count("batch_create") == 1
        assert (rep.done, rep.failed) == (4, 2)
        assert 0 < rep.cost_usd
        rep2 = build_cache(DataConfig(), cfg(tmp_path), rows, progress=False)
        assert srv.count("batch_create") == 2        # one new batch with only the 2 failed ids
        last = [r for r in srv.requests if r["endpoint"] == "batch_create"][-1]
        assert len(last["body"]["requests"]) == 2
        assert (rep2.done, rep2.failed, rep2.already_done) == (2, 0, 4)
    cache = VariantCache(tmp_path / "c.sqlite")
    assert cache.stats("seed")["paraphrase"]["failed"] == 0
