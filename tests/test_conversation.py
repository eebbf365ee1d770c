"""Conversation rows: what reaches the model in an augmented example, and which tokens train."""

from __future__ import annotations

import pytest

from augment.collator import AugmentingCollator
from augment.conversation import ConversationEncoder, context_for_prompt
from augment.dataset import AugmentedDataset
from augment.errors import AugtuneError
from augment.types import Row
from augment.variants import VariantTable

CONV = (("system", "You are Nimbus support. Be concise."),
        ("user", "My parcel from order 4417 is late."),
        ("assistant", "Sorry about that! It left our warehouse on Monday."),
        ("user", "And what if it shipped yesterday?"),
        ("assistant", "Then it arrives within 3 working days."))


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def dataset():
    row = Row("c1", CONV[3][1], CONV[4][1], CONV)
    table = VariantTable.from_lists([[("Suppose it went out yesterday, what then?", "paraphrase",
                                       "prompt", 0.86),
                                      ("Within 3 days.", "outputs", "completion", 0.8)]])
    return AugmentedDataset([row], table)


def decode(tok, ids):
    return tok.decode([int(i) for i in ids])


def test_variant_replaces_only_the_last_user_turn_and_assistant_turns_carry_labels(tok):
    ds = dataset()
    item = ds[1]  # the paraphrase of the last user turn
    assert item["source"] == "paraphrase"
    assert [m["content"] for m in item["messages"]] == [
        CONV[0][1], CONV[1][1], CONV[2][1], "Suppose it went out yesterday, what then?", CONV[4][1]]
    batch = AugmentingCollator(tok, max_length=256)([item])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    text = decode(tok, ids)
    # the system prompt and the earlier turns reach the model unchanged, in order
    pos = [text.index(s) for s in (CONV[0][1], CONV[1][1], CONV[2][1],
                                   "Suppose it went out yesterday, what then?", CONV[4][1])]
    assert pos == sorted(pos)
    assert CONV[3][1] not in text
    trained = decode(tok, ids[labels != -100])
    # every assistant turn (with its end-of-turn token) and nothing else carries labels
    assert trained == f"{CONV[2][1]}<|im_end|>\n{CONV[4][1]}<|im_end|>\n"
    assert batch["aug_source"].tolist() == [0]

    last = AugmentingCollator(tok, max_length=256, loss_turns="last")([item])
    assert decode(tok, last["input_ids"][0][last["labels"][0] != -100]) == f"{CONV[4][1]}<|im_end|>\n"


def test_output_variant_replaces_the_last_answer_only(tok):
    item = dataset()[2]
    assert item["source"] == "outputs"
    assert [m["content"] for m in item["messages"]][2:] == [CONV[2][1], CONV[3][1], "Within 3 days."]


def test_plain_and_conversation_examples_share_a_batch(tok):
    ds = dataset()
    plain = {"prompt": "Reset my password", "completion": "Use Settings > Security.",
             "source": "original", "similarity": 1.0}
    batch = AugmentingCollator(tok, max_length=256)([plain, ds[0]])
    one = AugmentingCollator(tok, max_length=256)([plain])
    n = int(one["attention_mask"][0].sum())
    assert batch["input_ids"][0][:n].tolist() == one["input_ids"][0][:n].tolist()
    assert batch["labels"][0][:n].tolist() == one["labels"][0][:n].tolist()


def test_truncation_drops_oldest_exchanges_first_and_keeps_the_trained_turn(tok):
    msgs = [{"role": r, "content": c} for r, c in CONV]
    full, _, _ = ConversationEncoder(tok, None).encode(msgs)
    enc = ConversationEncoder(tok, len(full) - 5, min_completion_tokens=4)
    ids, labels, flag = enc.encode(msgs)
    text = decode(tok, ids)
    assert flag == 2 and len(ids) <= len(full) - 5
    assert CONV[0][1] in text and CONV[1][1] not in text   # system kept, oldest exchange dropped
    assert CONV[3][1] in text and CONV[4][1] in text
    assert decode(tok, ids[labels != -100]).startswith(CONV[4][1])
    # far too short: the final answer keeps its first tokens, the text right before it stays
    ids, labels, flag = ConversationEncoder(tok, 12, min_completion_tokens=4).encode(msgs)
    assert len(ids) == 12 and flag == 2 and (labels != -100).sum() == 4


def test_conversations_need_a_chat_template(tok):
    import copy
    plain = copy.deepcopy(tok)
    plain.chat_template = None
    with pytest.raises(AugtuneError, match="need a chat template"):
        ConversationEncoder(plain, 64)


def test_context_for_llm_methods_keeps_recent_turns_not_the_system_prompt():
    ctx = context_for_prompt(CONV[:3])
    assert ctx == f"user: {CONV[1][1]}\nassistant: {CONV[2][1]}"
    assert context_for_prompt(CONV[:3], max_chars=20).startswith("...")


def test_augment_turns_all_gives_every_user_turn_its_own_variants(tok):
    """`all`: unit t is the conversation cut after turn t's answer (its context is what came
    before); regrouped, each augmented example changes exactly one user turn."""
    from augment.conversation import TurnUnits
    plain = Row("p", "Hi there", "Hello!")
    row = Row("c1", CONV[3][1], CONV[4][1], CONV)
    units = TurnUnits.of([plain, row], "all")
    assert [u.id for u in units.rows] == ["p", "c1#turn0", "c1"]
    first = units.rows[1]
    assert (first.prompt, first.completion, first.turn) == (CONV[1][1], CONV[2][1], 0)
    from augment.config import AugmentConfig
    from augment.methods.outputs import Outputs
    from augment.backends.extractive import ExtractiveBackend
    outs = Outputs(AugmentConfig(augment_methods=["outputs"]), ExtractiveBackend())
    assert {r.source for r in outs.requests(units.rows)} == {"Hello!", CONV[4][1]}  # final answers only
    assert first.context == (CONV[0],)                       # only the system prompt before it
    assert units.unit_row.tolist() == [0, 1, 1] and units.unit_turn.tolist() == [-1, 0, -1]
    assert TurnUnits.of([plain, row], "last").rows == [plain, row]
    unit_table = VariantTable.from_lists([
        [("Hey", "templates", "prompt", 0.9)],
        [("My order 4417 has not arrived yet.", "paraphrase", "prompt", 0.88),
         ("Sorry.", "outputs", "completion", 0.7)],            # not for an earlier answer
        [("What if it left yesterday?", "paraphrase", "prompt", 0.87)]])
    table = units.regroup(unit_table)
    assert table.offsets.tolist() == [0, 1, 3] and table.turn.tolist() == [-1, 0, -1]
    ds = AugmentedDataset([plain, row], table)
    early, late = ds[2 + 1], ds[2 + 2]
    assert [m["content"] for m in early["messages"]] == [
        CONV[0][1], "My order 4417 has not arrived yet.", CONV[2][1], CONV[3][1], CONV[4][1]]
    assert [m["content"] for m in late["messages"]] == [
        CONV[0][1], CONV[1][1], CONV[2][1], "What if it left yesterday?", CONV[4][1]]
    assert "messages" not in ds[2]                            # the plain row's template variant


def test_truncation_keeps_a_user_turn_first_and_a_completion_whole(tiny_model_dir):
    """An eval conversation opening with the assistant's greeting, cut to fit, still opens with
    a user turn (dropping in pairs left the assistant alone: 'empty conversation'); a
    completion of several messages trains whole, whatever loss_turns says (TRL's rule)."""
    from transformers import AutoTokenizer

    from augment.conversation import ConversationEncoder
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    msgs = [{"role": "assistant", "content": "Hi, how can I help you today with your order?"},
            {"role": "user", "content": "Where is my order?"},
            {"role": "assistant", "content": "It ships tomorrow."}]
    for tail in (None, 1):
        ids, labels, flag = ConversationEncoder(tok, 40).encode(msgs, tail=tail)
        assert len(ids) <= 40 and flag == 2 and "It ships tomorrow." in tok.decode(
            [t for t in labels if t != -100])
    chat = [{"role": "user", "content": "Where is my order?"},
            {"role": "assistant", "content": "Let me check."},
            {"role": "user", "content": "Thanks!"},
            {"role": "assistant", "content": "It ships tomorrow."}]
    _, labels, _ = ConversationEncoder(tok, None, loss_turns="last").encode(chat, tail=3)
    text = tok.decode([t for t in labels if t != -100])
    assert "Let me check." in text and "It ships tomorrow." in text and "Thanks" not in text
