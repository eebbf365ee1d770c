"""Robustness figures against hand-computed examples, the bootstrap against known cases, the
metrics, and generation on a real (tiny) model. The training entry point's robustness report
and logging are checked by tests/test_train.py::test_single_process_trains_and_writes_outputs
(one training run serves both)."""

from __future__ import annotations

import json

import pytest

from augment import robustness as rb
from augment.config import DataConfig
from augment.errors import ConfigError
from augment.types import Row


def half_credit(prediction: str, reference: str) -> float:
    """A user metric, imported by path in a test below."""
    return 1.0 if prediction == reference else 0.5 if reference in prediction else 0.0


# --------------------------------------------------------------------------- figures

def hand_items():
    # A: right on the original, 2 of 3 paraphrases right; answers billing, billing, refunds, billing
    # B: wrong everywhere, always the same wrong answer
    # C: right everywhere, always the same answer
    # D: no paraphrase: excluded from the figures and counted
    return [rb.ItemResult("A", 1.0, [1.0, 0.0, 1.0], "billing", ["billing", "refunds", "billing"]),
            rb.ItemResult("B", 0.0, [0.0, 0.0], "refunds", ["refunds", "refunds"]),
            rb.ItemResult("C", 1.0, [1.0, 1.0], "shipping", ["shipping", "shipping"]),
            rb.ItemResult("D", 1.0, [], "shipping", [])]


def test_every_figure_matches_a_hand_computed_example():
    f = rb.robustness_figures(hand_items())
    assert f["original"] == pytest.approx(2 / 3)            # (1 + 0 + 1) / 3
    assert f["avgp"] == pytest.approx((2 / 3 + 0 + 1) / 3)   # 5/9
    assert f["worst"] == pytest.approx(1 / 3)               # min per item: 0, 0, 1
    assert f["spread"] == pytest.approx(1 / 3)              # max - min per item: 1, 0, 0
    assert f["pdr"] == pytest.approx(1 - (5 / 9) / (2 / 3))  # 1/6
    # A: 4 answers, 6 pairs, 3 agree (the three "billing"); B and C: all pairs agree
    assert f["consistency"] == pytest.approx((3 / 6 + 1 + 1) / 3)
    assert f["all_agree"] == pytest.approx(2 / 3)


def test_pdr_is_undefined_when_nothing_is_right_on_the_originals():
    f = rb.robustness_figures([rb.ItemResult("A", 0.0, [0.0], "x", ["y"])])
    assert f["pdr"] is None and f["worst"] == 0.0 and f["consistency"] == 0.0


# --------------------------------------------------------------------------- bootstrap

def test_bootstrap_of_a_constant_difference_is_that_constant():
    a = [0.0, 1.0, 0.5, 0.25]
    ci = rb.paired_bootstrap(a, [x + 0.2 for x in a], n_resamples=500)
    assert ci["diff"] == pytest.approx(0.2) and ci["lo"] == pytest.approx(0.2) and ci["hi"] == pytest.approx(0.2)


def test_bootstrap_of_two_items_has_the_exact_resampling_distribution():
    # differences 0 and 1: a resample's mean is 0 (p 1/4), 0.5 (1/2) or 1 (1/4), so the 2.5% and
    # 97.5% quantiles are exactly 0 and 1
    ci = rb.paired_bootstrap([0.0, 0.0], [0.0, 1.0], n_resamples=4000, seed=3)
    assert (ci["diff"], ci["lo"], ci["hi"]) == (0.5, 0.0, 1.0)


def test_bootstrap_interval_matches_the_normal_approximation_for_many_items():
    # 400 items, differences 1 on half of them: mean 0.5, standard error 0.5 / sqrt(400) = 0.025
    a = [0.0] * 400
    b = [1.0, 0.0] * 200
    ci = rb.paired_bootstrap(a, b, n_resamples=20000, seed=1)
    assert ci["diff"] == 0.5
    assert ci["lo"] == pytest.approx(0.5 - 1.96 * 0.025, abs=0.005)
    assert ci["hi"] == pytest.approx(0.5 + 1.96 * 0.025, abs=0.005)


def test_bootstrap_is_paired_item_difficulty_cancels():
    # b beats a by exactly 0.1 on every item, while items differ wildly in difficulty: an
    # unpaired interval would be wide, the paired one is a point
    a = [0.0, 0.9, 0.1, 0.8, 0.2, 0.7]
    ci = rb.paired_bootstrap(a, [x + 0.1 for x in a], n_resamples=2000)
    assert ci["hi"] - ci["lo"] == pytest.approx(0.0, abs=1e-12)


def test_bootstrap_of_pdr_uses_the_ratio_and_counts_undefined_resamples():
    # per item (original, avgp); a: PDR 1 - 0.5/1 = 0.5; b: original 0 on one item
    a = [[1.0, 0.5], [1.0, 0.5]]
    b = [[1.0, 1.0], [0.0, 0.0]]
    ci = rb.paired_bootstrap(a, b, rb.figure_statistic("pdr"), n_resamples=2000, seed=0)
    assert ci["diff"] == pytest.approx(0.0 - 0.5)  # b: 1 - 0.5/0.5 = 0
    assert ci["undefined_resamples"] > 0  # resamples holding only the second item have no PDR
    assert ci["lo"] == pytest.approx(-0.5) and ci["hi"] == pytest.approx(-0.5)


# --------------------------------------------------------------------------- metrics

def test_label_match_takes_the_first_label_named():
    s = rb.make_scorer("label_match", [], labels=["billing", "refunds", "order_status", "order"])
    assert s.score("Billing.", "billing") == 1.0
    assert s.score("order status", "order_status") == 1.0      # longest label wins over `order`
    assert s.score("refunds, not billing", "billing") == 0.0   # the first label named is the answer
    assert s.score("I'm sorry to hear that", "billing") == 0.0  # no label named
    assert s.key("password_reset") == "" and s.key("ORDER_STATUS!") == "order status"
    # consistency compares labels; replies naming no label agree only when they are the same text
    assert s.identity("Order status.") == s.identity("order_status") == "order status"
    assert s.identity("I'm sorry") != s.identity("Hello there")


def test_auto_picks_label_match_for_label_answers_and_token_f1_for_free_text():
    assert rb.make_scorer("auto", ["billing", "refunds", "billing", "refunds"]).name == "label_match"
    assert rb.make_scorer("auto", ["Paris", "Rome"]).name == "exact_match"
    assert rb.make_scorer("auto", ["Open Account > Billing History and check both entries."]).name == "token_f1"


def test_exact_match_and_token_f1():
    assert rb.make_scorer("exact_match", []).score("  Paris. ", "paris") == 1.0
    f1 = rb.make_scorer("token_f1", [])
    # prediction "open the billing page" vs reference "open billing history": 2 common words,
    # precision 2/4, recall 2/3, F1 = 2 * (1/2 * 2/3) / (1/2 + 2/3) = 4/7
    assert f1.score("open the billing page", "open billing history") == pytest.approx(4 / 7)


def test_user_metric_by_import_path_and_bad_paths_fail_in_one_line():
    s = rb.make_scorer("tests.test_robustness:half_credit", [])
    assert s.score("billing issue", "billing") == 0.5 and s.score("billing", "billing") == 1.0
    with pytest.raises(ConfigError, match="cannot import"):
        rb.make_scorer("tests.no_such_module:f", [])
    with pytest.raises(ConfigError, match="import path"):
        DataConfig(robustness_metric="accuracy")
    with pytest.raises(ConfigError, match="robustness_max_new_tokens=0"):
        DataConfig(robustness_max_new_tokens=0)


def test_paraphrases_link_to_their_source_by_column_then_by_id(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"id": "x1", "source_id": "e1", "prompt": "p", "completion": "c"}) + "\n")
    rows = [Row("x1", "p", "c"), Row("e2-p7", "p", "c"), Row("zz", "p", "c")]
    assert rb.paraphrase_links(str(f), rows, ["e1", "e2"]) == ["e1", "e2", None]
    # read as the loader reads it: a byte-order mark, and a bad line the loader skipped and
    # counted, do not crash this step, which runs after training
    f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes() + b"not json\n")
    assert rb.paraphrase_links(str(f), rows, ["e1", "e2"]) == ["e1", "e2", None]


# --------------------------------------------------------------------------- generation

@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    return (AutoModelForCausalLM.from_pretrained(tiny_model_dir),
            AutoTokenizer.from_pretrained(tiny_model_dir))


def test_batched_generation_equals_one_by_one_and_respects_the_cap(tiny):
    model, tok = tiny
    prompts = ["Where is my order?", "My card was charged twice this month for the same thing.",
               "Reset password", "Can I return a StreamBox Plus after 45 days if it was a gift?"]
    batched, stats = rb.generate_answers(model, tok, prompts, max_new_tokens=5, batch_size=4)
    single = [rb.generate_answers(model, tok, [p], max_new_tokens=5, batch_size=1)[0][0] for p in prompts]
    assert batched == single  # left padding changes nothing
    assert stats["prompts"] == 4 and stats["new_tokens"] <= 4 * 5 and 0 <= stats["hit_cap"] <= 4
    assert all(len(tok(a, add_special_tokens=False)["input_ids"]) <= 6 for a in batched)


EVALS = [Row("e1", "My card was charged twice.", "billing"),
         Row("e2", "Where is my parcel?", "shipping"),
         Row("e3", "I want my money back.", "refunds")]
PARAS = [Row("e1-p1", "Double charge on my card?", "billing"),
         Row("e1-p2", "why 2 charges", "billing"),
         Row("e2-p1", "Has my package shipped yet?", "shipping")]


def test_evaluate_robustness_scores_every_answer_it_generated(tiny):
    model, tok = tiny
    model.train()
    evals, paras = EVALS, PARAS
    rep = rb.evaluate_robustness(model, tok, evals, paras, metric="label_match", max_new_tokens=4,
                                 batch_size=2)
    assert model.training  # restored after generation
    assert rep["metric"] == "label_match"
    assert rep["counts"] == {"items": 2, "paraphrases": 3, "items_without_paraphrases": 1,
                             "paraphrases_without_source": 0, "eval_rows": 3}
    assert rep["generation"]["prompts"] == 6 and rep["generation"]["max_new_tokens"] == 4
    scorer = rb.make_scorer("label_match", ["billing", "shipping", "refunds"])
    rebuilt = []
    for it in rep["items"]:
        assert it["original"]["score"] == scorer.score(it["original"]["answer"], it["reference"])
        for p in it["paraphrases"]:
            assert p["score"] == scorer.score(p["answer"], it["reference"])
        rebuilt.append(rb.ItemResult(it["id"], it["original"]["score"],
                                     [p["score"] for p in it["paraphrases"]],
                                     scorer.identity(it["original"]["answer"]),
                                     [scorer.identity(p["answer"]) for p in it["paraphrases"]]))
    assert rep["figures"] == rb.robustness_figures(rebuilt)
    assert set(rep["figures"]) == set(rb.FIGURES)
    # rescoring from the stored answers reproduces the report; another metric changes only scores
    assert rb.rescore(rep) == rep
    assert rb.rescore(rep, "exact_match")["metric"] == "exact_match"


def test_evaluate_robustness_figures_from_known_answers(monkeypatch):
    """With the answers fixed (the tiny random model above only ever answers a newline, so its
    scores are all 0), every score and figure is checked against hand-computed values."""
    evals, paras = EVALS, PARAS
    answers = {"My card was charged twice.": "billing", "Where is my parcel?": "refunds",
               "I want my money back.": "refunds", "Double charge on my card?": "Billing.",
               "why 2 charges": "shipping", "Has my package shipped yet?": "shipping"}
    seen = []

    def fixed(model, tok, prompts, max_new_tokens, batch_size, pair_format):
        seen.extend(prompts)
        return [answers[p] for p in prompts], {"prompts": len(prompts)}
    monkeypatch.setattr(rb, "generate_answers", fixed)
    rep = rb.evaluate_robustness(None, None, evals, paras, metric="label_match")
    assert seen == [r.prompt for r in evals] + [p.prompt for p in paras]
    by_id = {it["id"]: it for it in rep["items"]}
    assert [by_id["e1"]["original"]["score"], *[p["score"] for p in by_id["e1"]["paraphrases"]]] == [1, 1, 0]
    assert [by_id["e2"]["original"]["score"], *[p["score"] for p in by_id["e2"]["paraphrases"]]] == [0, 1]
    assert by_id["e3"]["original"]["score"] == 1 and "figures" not in by_id["e3"]
    # e1: original 1, avgp 0.5, worst 0, labels (billing, billing, shipping) agree in 1 of 3 pairs;
    # e2: original 0, avgp 1, worst 0, (refunds, shipping) agree in 0 of 1; e3 has no rewordings
    f = rep["figures"]
    assert f["original"] == 0.5 and f["avgp"] == 0.75 and f["worst"] == 0 and f["spread"] == 1
    assert f["consistency"] == pytest.approx(1 / 6) and f["all_agree"] == 0
    assert f["pdr"] == pytest.approx(1 - 0.75 / 0.5)


def test_cli_bad_inputs_are_one_line_errors(tmp_path):
    """`python -m augment.robustness` on a missing file, a folder, something that is not a
    report, a cut-off report, a bad metric and a paraphrases file whose ids match nothing:
    exit 2 and one line each (were tracebacks, and the last printed empty figures)."""
    import subprocess
    import sys

    from tests.conftest import ROOT, run_env
    good = tmp_path / "robustness.json"
    rb.write_report({"metric": "exact_match", "figures": {}, "counts": {"items": 1},
                     "generation": {"prompts": 2, "seconds": 1.0, "hit_cap": 0,
                                    "max_new_tokens": 16},
                     "items": [{"id": "e1", "reference": "a",
                                "original": {"prompt": "p", "answer": "a", "score": 1.0},
                                "paraphrases": [{"id": "e1-p", "prompt": "q", "answer": "a",
                                                 "score": 1.0}]}]}, good)
    (tmp_path / "state.json").write_text('{"log_history": []}')
    (tmp_path / "cut.json").write_text(good.read_text()[:40])
    (tmp_path / "other.jsonl").write_text('{"id": "x1"}\n')
    no_id = json.loads(good.read_text())  # a paraphrase without its id: was KeyError 'id'
    del no_id["items"][0]["paraphrases"][0]["id"]
    (tmp_path / "no_id.json").write_text(json.dumps(no_id))
    cases = [([str(tmp_path / "no_id.json"), "--paraphrases", str(tmp_path / "other.jsonl")],
              "is not a robustness report"),([str(tmp_path / "nope.json")], "no such file"),
             ([str(tmp_path)], "no such file (it is a folder)"),
             ([str(tmp_path / "state.json")], "is not a robustness report"),
             ([str(tmp_path / "cut.json")], "not JSON"),
             ([str(good), "--metric", "foo"], "foo"),
             ([str(good), "--paraphrases", str(tmp_path / "other.jsonl")], "none of its ids")]
    for args, text in cases:
        proc = subprocess.run([sys.executable, "-m", "augment.robustness", *args], cwd=ROOT,
                              env=run_env(), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert text in proc.stderr and proc.stderr.startswith("augtune: error:"), (args, proc.stderr)
    ok = subprocess.run([sys.executable, "-m", "augment.robustness", str(good)], cwd=ROOT,
                        env=run_env(), capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
