"""A cache build in Message Batches mode, through the real anthropic SDK and a fake server."""

from __future__ import annotations

from augment.build import build_cache
from augment.cache import VariantCache
from augment.config import AugmentConfig, DataConfig
from augment.types import Row
from tests.fakes import FakeAnthropicServer

PROMPTS = [f"How do I update the billing address on order {1000 + i}?" for i in range(6)]


def cfg(tmp_path, **kw):
    kw = {"llm_use_batches": True, **kw}
    return AugmentConfig(augment_methods=["paraphrase"], llm_backend="anthropic",
                         llm_model="claude-haiku-4-5", llm_batch_poll_seconds=0.05,
                         augment_cache=str(tmp_path / "c.sqlite"), qc="seed", **kw)


def test_batch_build_half_price_and_resubmits_failed_items_in_the_same_build(tmp_path,
                                                                              monkeypatch):
    rows = [Row(str(i), p, "ok") for i, p in enumerate(PROMPTS)]
    failing = set()

    def item_result(custom_id, params):
        # the first submission: two items expire, one errors; a resubmission succeeds
        if len(failing) < 3 and custom_id not in failing:
            failing.add(custom_id)
            return "errored" if len(failing) == 3 else "expired"
        return None

    with FakeAnthropicServer(batch_item_result=item_result) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
        rep = build_cache(DataConfig(), cfg(tmp_path, max_retries=2), rows, progress=False)
        assert srv.count("messages") == 0            # nothing went through the per-request API
        creates = [r for r in srv.requests if r["endpoint"] == "batch_create"]
        assert [len(c["body"]["requests"]) for c in creates] == [6, 3]  # only the failed ids
        assert (rep.done, rep.failed, rep.retries) == (6, 0, 3)
        assert 0 < rep.cost_usd
        rep2 = build_cache(DataConfig(), cfg(tmp_path), rows, progress=False)
        assert srv.count("batch_create") == 2        # nothing left to do
        assert (rep2.done, rep2.failed, rep2.already_done) == (0, 0, 6)
    cache = VariantCache(tmp_path / "c.sqlite")
    assert cache.stats("seed")["paraphrase"]["failed"] == 0
    assert not (tmp_path / "c.sqlite.anthropic-batch.json").exists()


def test_batch_items_that_keep_failing_are_recorded_with_a_clean_reason(tmp_path, monkeypatch):
    rows = [Row(str(i), p, "ok") for i, p in enumerate(PROMPTS[:3])]
    bad = {}

    def item_result(custom_id, params):
        if not bad:
            bad[custom_id] = True
        return "errored" if custom_id in bad else None

    with FakeAnthropicServer(batch_item_result=item_result) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
        rep = build_cache(DataConfig(), cfg(tmp_path, max_retries=1), rows, progress=False)
        assert srv.count("batch_create") == 2        # the first, and one resubmission
    assert (rep.done, rep.failed) == (2, 1)
    assert rep.failure_reasons == {
        "batch item errored (invalid_request_error: injected item error)": 1}
    (reason,) = [e for _, e, _ in VariantCache(tmp_path / "c.sqlite").failure_reasons()]
    assert reason == "batch item errored (invalid_request_error: injected item error)"


def test_a_recorded_batch_is_collected_by_the_build_it_belongs_to_never_paid_again(
        tmp_path, monkeypatch):
    """A batch paid for by a build that stopped before storing its results (here its results
    endpoint refused, 401) stays recorded: a build of other rows leaves it recorded (its answers
    are not that build's), a build with llm_use_batches off refuses to pay for its requests one
    by one, and the build it belongs to stores its answers without submitting it again."""
    import pytest

    from augment.errors import AugtuneError, FatalBackendError
    rows_a = [Row(str(i), p, "ok") for i, p in enumerate(PROMPTS[:3])]
    rows_b = [Row(str(i), p, "ok") for i, p in enumerate(PROMPTS[3:])]
    state = tmp_path / "c.sqlite.anthropic-batch.json"
    with FakeAnthropicServer(script={"batch_results": ["401"]}) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
        with pytest.raises(FatalBackendError):
            build_cache(DataConfig(), cfg(tmp_path), rows_a, progress=False)
        assert srv.count("batch_create") == 1 and state.exists()
        # the record names the requests its batch holds: what lets a later build forget it
        # once their answers are stored, without asking the API
        import json

        from augment.methods import build_methods
        keys = [r.key for r in build_methods(cfg(tmp_path))["paraphrase"].requests(rows_a)]
        assert json.loads(state.read_text())["custom_ids"] == sorted(keys)
        build_cache(DataConfig(), cfg(tmp_path), rows_b, progress=False)
        assert state.exists()                       # rows_a's answers are still to be stored
        with pytest.raises(AugtuneError, match=r"records a batch an earlier build submitted"):
            build_cache(DataConfig(), cfg(tmp_path, llm_use_batches=False), rows_a,
                        progress=False)
        assert srv.count("messages") == 0
        creates = srv.count("batch_create")         # rows_b's own batch came in between
        rep = build_cache(DataConfig(), cfg(tmp_path), rows_a, progress=False)
        assert rep.done == 3 and srv.count("batch_create") == creates  # collected, not resent
        assert not state.exists()


def test_a_batch_item_error_that_quotes_the_key_is_stored_without_it(tmp_path, monkeypatch):
    """The API's per-item error text is copied into the failure reason (stderr, the cache): a
    text that quotes the key (or a key-bearing URL) is redacted first."""
    rows = [Row(str(i), p, "ok") for i, p in enumerate(PROMPTS[:2])]
    with FakeAnthropicServer(batch_item_result=lambda cid, params:
                             "errored:bad key sk-ant-CANARY-42 at https://u:pw@x.example") as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-CANARY-42")
        rep = build_cache(DataConfig(), cfg(tmp_path, max_retries=0), rows, progress=False)
    assert rep.failed == 2
    reasons = [e for _, e, _ in VariantCache(tmp_path / "c.sqlite").failure_reasons()]
    assert reasons and all("CANARY" not in r and "pw@" not in r for r in reasons), reasons
    assert "bad key *** at https://***@x.example" in reasons[0]
    import sqlite3
    dump = "\n".join(sqlite3.connect(tmp_path / "c.sqlite").iterdump())
    assert "CANARY" not in dump


def test_a_record_whose_answers_are_all_stored_is_forgotten_by_a_build_with_nothing_to_do(
        tmp_path, monkeypatch):
    """A build killed after storing its batch's last answer but before deleting the record (a
    race the SIGKILL test hits now and then): the next build, with nothing left to do, forgets
    the record without calling the API, so a later llm_use_batches: false build is not refused.
    A record from before custom ids were kept, or with an answer the cache lacks, stays."""
    import json

    import pytest

    from augment.errors import AugtuneError
    from augment.methods import build_methods
    rows = [Row(str(i), p, "ok") for i, p in enumerate(PROMPTS[:3])]
    state = tmp_path / "c.sqlite.anthropic-batch.json"
    with FakeAnthropicServer() as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
        build_cache(DataConfig(), cfg(tmp_path), rows, progress=False)
        assert not state.exists()
        keys = [r.key for r in build_methods(cfg(tmp_path))["paraphrase"].requests(rows)]
        record = {"version": 1, "batch_ids": ["msgbatch_x"], "custom_ids": keys}
        asked = len(srv.requests)
        for held, kept in ((keys, False), (keys + ["f" * 64], True), (None, True)):
            state.write_text(json.dumps({**record, "custom_ids": held} if held else
                                        {"version": 1, "batch_ids": ["msgbatch_x"]}))
            rep = build_cache(DataConfig(), cfg(tmp_path), rows, progress=False)
            assert rep.already_done == 3 and state.exists() == kept, held
        assert len(srv.requests) == asked                # no API call for any of it
        with pytest.raises(AugtuneError, match="records a batch an earlier build submitted"):
            build_cache(DataConfig(), cfg(tmp_path, llm_use_batches=False),
                        rows + [Row("9", "How do I close my account?", "ok")], progress=False)
