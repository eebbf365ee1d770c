"""qc_eval reads MRPC and STS-B in their published formats and runs issue #17's test on them
(the QC at its own recall against the cosine threshold raised to that recall)."""

import math

import numpy as np
import pytest

from augment.errors import InputError
from augment.qc_eval import against_cosine, load_pairs, read_pairs

MRPC = ("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        "1\t702876\t702977\tAmrozi accused his brother.\tAmrozi accused his own brother.\n"
        "0\t2108705\t2108831\tShares rose 5 percent.\tShares fell on Friday.\n")
GLUE_STSB = ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
             "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man dances.\tA man is dancing.\t5.000\n"
             "1\tmain-captions\tMSRvid\t2012test\t0002\tnone\tnone\tA cat sleeps.\tA dog sleeps.\t3.500\n"
             "2\tmain-news\theadlines\t2013\t0004\tnone\tnone\tRain in Paris.\tSun in Rome.\t0.400\n")
BENCH_STSB = ("main-captions\tMSRvid\t2012test\t0001\t4.000\tA boy sings.\tA boy is singing.\n"
              "main-forum\tdeft\t2014\t0003\t3.000\tI agree.\tI do not agree.\tsource\textra\n")


def test_mrpc_and_both_stsb_formats_read_as_labelled_pairs(tmp_path):
    (tmp_path / "m.txt").write_text(MRPC, encoding="utf-8")
    (tmp_path / "g.tsv").write_text(GLUE_STSB)
    (tmp_path / "b.csv").write_text(BENCH_STSB)
    rows, about = read_pairs(tmp_path / "m.txt")
    assert about == {"format": "MRPC", "skipped": 0}
    assert [(r["original"], r["label"]) for r in rows] == [
        ("Amrozi accused his brother.", "paraphrase"), ("Shares rose 5 percent.", "meaning_change")]
    rows, about = read_pairs(tmp_path / "g.tsv")
    assert about == {"format": "STS-B", "skipped": 1}  # 3.5 is neither >= 4 nor <= 3
    assert [(r["candidate"], r["label"], r["domain"]) for r in rows] == [
        ("A man is dancing.", "paraphrase", "main-captions"),
        ("Sun in Rome.", "meaning_change", "main-news")]
    rows, about = read_pairs(tmp_path / "b.csv")
    assert about == {"format": "STS-B", "skipped": 0}
    assert [(r["original"], r["candidate"], r["label"]) for r in rows] == [
        ("A boy sings.", "A boy is singing.", "paraphrase"),
        ("I agree.", "I do not agree.", "meaning_change")]


@pytest.mark.parametrize("text,where", [
    (MRPC + "2\t1\t2\ta\tb\n", "m.txt:4: need 5 tab-separated fields with Quality 0 or 1"),
    (MRPC + "1\t1\t2\tonly four\n", "m.txt:4: need 5"),
    (GLUE_STSB.replace("0.400", "n/a"), "m.txt:4: need sentence 1, sentence 2 and a numeric score")])
def test_a_bad_public_line_names_file_and_line(tmp_path, text, where):
    (tmp_path / "m.txt").write_text(text)
    with pytest.raises(InputError, match=where):
        read_pairs(tmp_path / "m.txt")


def test_training_refuses_a_public_set(tmp_path):
    """load_pairs feeds train_judge: the public sets measure the judge and never train it."""
    (tmp_path / "m.txt").write_text(MRPC)
    with pytest.raises(InputError, match="m.txt: this is MRPC's file, a public set"):
        load_pairs(tmp_path / "m.txt")
    from augment.qc.train_judge import main
    with pytest.raises(InputError, match="MRPC's file"):
        main(["--written", str(tmp_path / "m.txt"), "--out", str(tmp_path / "head.npz")])
    assert not (tmp_path / "head.npz").exists()


def _scored(pairs):
    """rows, cosines and the QC's verdicts of (paraphrase?, cosine, accepted?) triples."""
    rows = [{"label": "paraphrase" if pos else "meaning_change"} for pos, _, _ in pairs]
    return rows, np.array([sim for _, sim, _ in pairs]), [ok for _, _, ok in pairs]


def test_against_cosine_compares_at_the_qcs_own_recall():
    # (paraphrase?, cosine, QC accepts?): the QC keeps 2 of 4 paraphrases; the cosine keeps the
    # same 2 at threshold 0.90, above which 1 of the 3 changes also lies.
    base = [(True, 0.95, True), (True, 0.90, True), (True, 0.85, False), (True, 0.80, False),
            (False, 0.92, False), (False, 0.70, False), (False, 0.60, False)]
    vs = against_cosine(*_scored(base))
    assert (vs["recall"], vs["far"], vs["cosine_threshold"]) == (0.5, 0.0, 0.90)
    assert vs["cosine_far"] == pytest.approx(1 / 3) and vs["ok"]
    # The QC lets the 0.70 change through: 1 of 3, as many as the cosine: a tie is no worse.
    tie = base[:5] + [(False, 0.70, True), base[6]]
    vs = against_cosine(*_scored(tie))
    assert vs["far"] == pytest.approx(1 / 3) and vs["ok"]
    # And the 0.60 one too: 2 of 3 against the cosine's 1 of 3.
    vs = against_cosine(*_scored(tie[:6] + [(False, 0.60, True)]))
    assert vs["far"] == pytest.approx(2 / 3) and not vs["ok"]


def test_llm_ceiling_decides_the_band_by_label_and_leaves_the_rest_to_the_head():
    """A perfect LLM in [0.2, 0.9): inside, each pair gets its label; below, the head accepts;
    at or above, it rejects; what the rules reject or the judge never saw keeps its verdict."""
    from augment.qc_eval import llm_ceiling
    pairs = [  # (paraphrase?, reasons, judge p)
        (True, [], 0.10),          # below: accepted
        (True, [], 0.50),          # in the band: the LLM keeps it
        (True, [], 0.95),          # at/above high: rejected
        (True, ["entity changed"], None),  # rules reject: stays rejected
        (False, [], 0.15),         # below: a change accepted unasked
        (False, [], 0.60),         # in the band: the LLM catches it
        (False, [], None),         # not a request: the rules accepted it, the judge never saw it
        (False, ["judge: the request likely changed (p=0.95 >= 0.46)"], 0.95)]  # above: rejected
    rows = [{"label": "paraphrase" if pos else "meaning_change"} for pos, _, _ in pairs]
    res = [{"reasons": reasons, **({} if p is None else {"judge_p_changed": p})}
           for _, reasons, p in pairs]
    c = llm_ceiling(rows, res, (0.2, 0.9))
    assert (c["tp"], c["fp"], c["sent"], c["judged"]) == (2, 2, 2, 6)
    assert (c["recall"], c["far"]) == (0.5, 0.5)


def test_band_edge_is_the_cheapest_that_leaves_few_changes_unasked():
    from augment.qc.train_judge import band_edge
    y = np.array([1] * 20 + [0] * 20)
    p = np.concatenate([np.linspace(0.12, 0.99, 20), np.linspace(0.0, 0.5, 20)])
    # changes below 0.15: 1 of 20 (5%); below 0.2: 2 (10%)
    edge, unasked, sent = band_edge(p, y, unasked=0.05, edges=(0.1, 0.15, 0.2))
    assert (edge, unasked) == (0.15, 0.05)
    assert sent == ((p >= 0.15) & (p < 0.95)).mean()
    assert band_edge(p, y, unasked=0.0, edges=(0.15, 0.2))[0] == 0.15  # none meets it: the lowest


def test_judge_at_recall_lowers_the_threshold_only_as_far_as_the_recall_allows():
    """Accept = rules accept and (the judge never saw it or p < threshold)."""
    from augment.qc_eval import judge_at_recall
    pairs = [  # (paraphrase?, reasons, judge p)
        (True, [], 0.10), (True, [], 0.60), (True, [], None),  # None: the judge never saw it
        (True, ["entity changed"], None),                      # the rules reject: always out
        (False, [], 0.20), (False, [], 0.50), (False, [], 0.70), (False, [], None)]
    rows = [{"label": "paraphrase" if pos else "meaning_change"} for pos, _, _ in pairs]
    res = [{"reasons": reasons, **({} if p is None else {"judge_p_changed": p})}
           for _, reasons, p in pairs]
    # 1 of 4 paraphrases needs no judge; t = 0.2 adds the 0.10 one and no change but the unseen
    assert judge_at_recall(rows, res, 0.5) == {"threshold": 0.2, "recall": 0.5, "far": 0.25}
    # the 0.60 paraphrase costs the 0.20 and 0.50 changes
    assert judge_at_recall(rows, res, 0.75) == {"threshold": 0.7, "recall": 0.75, "far": 0.75}
    assert judge_at_recall(rows, res, 1.0) is None  # the rules alone keep 3 of 4


def test_compare_with_the_shipped_judge_itself_changes_nothing(tmp_path):
    """`--judge-cross` with the shipped files rebuilds the shipped judge through the compare
    path: both lines must agree, at their own thresholds and at equal recall."""
    import json

    from augment.qc.cross import CROSS_PATH
    from augment.qc_eval import DATA, format_comparison, other_judge, run
    rows = [json.loads(line) for line in
            (DATA / "instruction_pairs_fresh.jsonl").read_text().splitlines()[:16]]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = run(path, "paraphrase", judge=other_judge(None, str(CROSS_PATH)))
    c = out["comparison"]
    assert c["shipped"] == c["other"] and c["shipped_at_recall"] == c["other_at_recall"]
    assert c["shipped_at_recall"]["recall"] >= c["shipped"]["recall"]
    assert c["shipped_at_recall"]["far"] <= c["shipped"]["far"]
    lines = format_comparison(["a", "b"], [c, c], "x").splitlines()
    assert lines[-1].split() == ["mean", "+0.000"]
    assert lines[-2].split()[0] == "b" and lines[-2].endswith("+0.000")
    assert other_judge(None, None).cross_arrays is None  # --judge alone: the trees alone


def _one_array(path):
    with path.open("wb") as f:  # np.save(path) would write judge.npz.npy
        np.save(f, np.zeros(3))


def _other_encoder(path):
    from augment.qc.cross import CROSS_PATH
    with np.load(CROSS_PATH) as d:
        arrays = {k: d[k] for k in d.files}
    with path.open("wb") as f:
        np.savez(f, **dict(arrays, encoder=np.str_("bert-base-uncased")))


@pytest.mark.parametrize("flag,make,says", [
    ("--judge", None, "cannot be read (FileNotFoundError)"),
    ("--judge", lambda f: f.write_text("not numpy"), "cannot be read (ValueError)"),
    ("--judge", lambda f: _one_array(f), "is one array, not an .npz"),
    # the two files swapped: the cross-encoder's file is not trees
    ("--judge", "cross", "lacks feature, init, left"),
    ("--judge-cross", "head", "lacks out_b, out_w, scaling, weight"),
    # an encoder no package ships: loading it would go to a model hub
    ("--judge-cross", lambda f: _other_encoder(f), "names the encoder bert-base-uncased; the "
     "judge loads the packaged all-MiniLM-L6-v2 or all-mpnet-base-v2 only"),
])
def test_a_wrong_judge_file_is_refused_before_any_scoring(tmp_path, flag, make, says):
    import shutil

    from augment.qc.cross import CROSS_PATH
    from augment.qc.judges import HEAD_PATH
    from augment.qc_eval import main
    f = tmp_path / "judge.npz"
    if callable(make):
        make(f)
    elif make is not None:
        shutil.copy(CROSS_PATH if make == "cross" else HEAD_PATH, f)
    with pytest.raises(InputError) as err:
        main([str(tmp_path / "never-read.jsonl"), flag, str(f)])
    assert str(err.value).startswith(f"{f}: {flag}: this file {says}")
    assert "train_judge" in str(err.value)


def test_the_line_at_the_target_says_whether_ranking_or_threshold_misses_it():
    from augment.qc_eval import format_at_target
    assert format_at_target({"threshold": 0.316, "recall": 0.854, "far": 0.144}) == (
        "at judge threshold 0.316 the QC keeps recall 0.854 at false accepts 0.144: the target "
        "is a matter of where the threshold sits")
    assert format_at_target({"threshold": 0.44, "recall": 0.852, "far": 0.223}).endswith(
        "the judge's ranking, not its threshold, misses the target")
    assert format_at_target({"threshold": math.inf, "recall": 0.85, "far": 0.2}).startswith(
        "with the judge rejecting nothing the QC keeps")
    assert "no judge threshold meets it" in format_at_target(None)
