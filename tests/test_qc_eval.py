"""qc_eval reads MRPC and STS-B in their published formats and runs issue #17's test on them
(the QC at its own recall against the cosine threshold raised to that recall)."""

import math

import numpy as np
import pytest

from augment.errors import InputError
from augment.qc_eval import against_cosine
from augment.qc_sets import load_pairs, read_pairs

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


@pytest.mark.parametrize("line,where", [
    ('{"original": "Hi", "candidate": null, "label": "paraphrase"}',
     r"p\.jsonl:1, field 'candidate': need a non-empty text, got None"),
    ('{"original": 42, "candidate": "Hi", "label": "paraphrase"}',
     r"p\.jsonl:1, field 'original': need a non-empty text, got 42")])
def test_a_bad_project_pair_names_file_line_and_field(tmp_path, line, where):
    (tmp_path / "p.jsonl").write_text(line + "\n")
    with pytest.raises(InputError, match=where):
        read_pairs(tmp_path / "p.jsonl")


def test_a_text_with_a_line_separator_is_one_pair(tmp_path):
    """U+2028 is legal inside a JSON string; str.splitlines broke the line there."""
    (tmp_path / "p.jsonl").write_text(
        '{"original": "Line one\u2028line two", "candidate": "Two lines", "label": "paraphrase"}\n',
        encoding="utf-8")
    rows, _ = read_pairs(tmp_path / "p.jsonl")
    assert rows[0]["original"] == "Line one\u2028line two"


def test_a_set_without_both_labels_or_a_bad_method_is_one_line(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT, run_env
    (tmp_path / "empty.jsonl").write_text("")
    bad = subprocess.run([sys.executable, "-m", "augment.qc_eval", str(tmp_path / "empty.jsonl"),
                          "--method", "templatez"], cwd=ROOT, env=run_env(),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice: 'templatez'" in bad.stderr
    from augment.qc_eval import run
    with pytest.raises(InputError, match=r"empty\.jsonl: 0 pairs to score after leaving out "
                                         r"near-duplicates, labelled nothing"):
        run(tmp_path / "empty.jsonl", None)


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


def _reference_at_recall(rows, res, recall):
    """judge_at_recall as first written: a python loop over thresholds and `metrics`."""
    import math

    from augment.qc_eval import metrics, rules_ok
    ok = np.array([rules_ok(x) for x in res])
    p = np.array([x.get("judge_p_changed", np.nan) for x in res], dtype=float)
    seen = ~np.isnan(p)
    for t in [*np.unique(p[seen & ok]), math.inf]:
        m = metrics(rows, list(ok & (~seen | (p < t))))
        if m["recall"] >= recall - 1e-12:
            return {"threshold": float(t), "recall": m["recall"], "far": m["far"]}
    return None


def _random_set(rng, n):
    pos = rng.random(n) < 0.5
    rows = [{"label": "paraphrase" if x else "meaning_change", "original": f"o{i // 2}"}
            for i, x in enumerate(pos)]
    res = [{"reasons": [] if rng.random() < 0.8 else ["entity changed"],
            **({} if rng.random() < 0.2 else {"judge_p_changed": round(rng.random(), 1)})}
           for _ in range(n)]
    return rows, res


def test_resampled_at_recall_is_judge_at_recall_on_the_drawn_pairs():
    """Each row of weights gives what the plain loop gives on the pairs it draws, ties in
    P(changed) and pairs the judge never saw included."""
    from augment.qc_eval import judged_arrays
    from augment.qc_stats import at_recall, resample
    rng = np.random.default_rng(3)
    for trial in range(20):
        rows, res = _random_set(rng, 30)
        is_pos, ok, p = judged_arrays(rows, res)
        W = resample([r["original"] for r in rows], 5, trial)
        assert (W[:, 0::2] == W[:, 1::2]).all()  # an original comes with both its pairs
        assert (W[:, 0::2].sum(1) == 15).all()   # 15 originals drawn each time
        recall = rng.random()
        got = at_recall(is_pos, ok, p, recall, W)
        for b, w in enumerate(W):
            drawn = [i for i in range(len(rows)) for _ in range(int(w[i]))]
            want = _reference_at_recall([rows[i] for i in drawn], [res[i] for i in drawn], recall)
            if want is None:
                assert np.isnan(got[2][b])
            else:  # the threshold may be a lower P(changed) of an undrawn pair: same verdicts
                assert got[0][b] <= want["threshold"]
                assert (got[1][b], got[2][b]) == pytest.approx((want["recall"], want["far"]))
        plain = at_recall(is_pos, ok, p, recall)  # every pair once: the loop's threshold too
        want = _reference_at_recall(rows, res, recall)
        assert (np.isnan(plain[2][0]) if want is None else
                [x[0] for x in plain] == pytest.approx(list(want.values())))


def test_a_worse_judge_is_worse_beyond_the_interval():
    """Another judge that ranks the changes at random: its false accepts at equal recall rise,
    and the 95% interval of the rise excludes 0; the shipped judge against itself gives 0."""
    from augment.qc_eval import compare_judges, format_comparison
    rng = np.random.default_rng(0)
    rows = [{"label": "paraphrase" if i % 2 else "meaning_change", "original": f"o{i // 2}"}
            for i in range(200)]
    good = [{"reasons": [], "judge_p_changed": float(rng.beta(2, 5) if i % 2 else rng.beta(5, 2)),
             "is_valid": True} for i in range(200)]
    for x in good:
        x["is_valid"] = x["judge_p_changed"] < 0.5
    bad = [dict(x, judge_p_changed=float(rng.random())) for x in good]
    c = compare_judges(rows, good, bad, seed=1)
    lo, hi = np.nanpercentile(c["far_change"], [2.5, 97.5])
    assert c["other_at_recall"]["far"] > c["shipped_at_recall"]["far"] and lo > 0
    same = compare_judges(rows, good, good, seed=1)
    assert np.nanmax(np.abs(same["far_change"])) == 0
    line = format_comparison(["s"], [c], "x").splitlines()[-1]
    assert line.endswith(f"[{lo:+.3f}, {hi:+.3f}]")


def test_pooled_line_sums_the_sets_pairs_and_gives_the_spread_over_sets():
    from augment.qc_eval import format_pooled
    from augment.qc_stats import t_interval, wilson

    def m(tp, n_pos, fp, n_neg):
        return {"tp": tp, "n_pos": n_pos, "fp": fp, "n_neg": n_neg, "far": fp / n_neg}
    a, b = m(90, 100, 20, 100), m(180, 200, 40, 200)
    line = format_pooled(["a", "b"], [a, b])
    lo, hi = wilson(60, 300)
    assert line.startswith("default QC on 2 sets pooled (a, b): recall 0.900")
    assert f"false accepts 0.200 (95% {lo:.3f}-{hi:.3f}, 300 changes" in line
    assert "over the sets" not in line  # two sets: no spread worth a t-interval
    assert line.endswith("is NOT met on the pooled pairs")
    assert format_pooled(["a", "b"], [m(90, 100, 10, 100), m(180, 200, 30, 200)]).endswith(
        "is met on the pooled pairs")  # 40 / 300 = 0.133
    # three sets of 0.10, 0.20, 0.30: mean 0.2, sd 0.1, t(0.975, 2) = 4.303: -0.048 to 0.448,
    # shown clipped to what a share can be
    assert t_interval([0.1, 0.2, 0.3]) == pytest.approx((0.2 - 0.2484, 0.2 + 0.2484), abs=1e-4)
    three = format_pooled(list("abc"), [m(90, 100, 10, 100), a, m(90, 100, 30, 100)])
    assert three.endswith("mean false accepts 0.200 (95% 0.000-0.448); the target (recall >= "
                          "0.85 at <= 0.15) is NOT met on the pooled pairs")


def test_wilson_interval():
    import doctest

    import augment.qc_stats
    from augment.qc_stats import wilson
    examples = doctest.testmod(augment.qc_stats)
    assert examples.attempted >= 1 and examples.failed == 0
    lo, hi = wilson(12, 100)
    assert lo < 0.12 < hi and (round(lo, 3), round(hi, 3)) == (0.07, 0.198)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert all(np.isnan(wilson(0, 0)))


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
    # paired resamples: a judge against itself moves by exactly nothing in every one
    assert lines[-1].split() == ["mean", "+0.000", "[+0.000,", "+0.000]"]
    assert lines[-2].split()[0] == "b" and lines[-2].endswith("+0.000  [+0.000, +0.000]")
    assert other_judge(None, None).cross_arrays is None  # --judge alone: the trees alone


def _one_array(path):
    with path.open("wb") as f:  # np.save(path) would write judge.npz.npy
        np.save(f, np.zeros(3))


def _other_encoder(path, encoder="bert-base-uncased"):
    from augment.qc.cross import CROSS_PATH
    with np.load(CROSS_PATH) as d:
        arrays = {k: d[k] for k in d.files}
    with path.open("wb") as f:
        np.savez(f, **dict(arrays, encoder=np.str_(encoder)))


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
    # MiniLM's adapters in a file that names mpnet: refused before the first set is scored
    ("--judge-cross", lambda f: _other_encoder(f, "all-mpnet-base-v2"), "'s adapters do not "
     "fit: the output layer (384 inputs) does not fit all-mpnet-base-v2, the encoder the file "
     "names"),
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
    assert str(err.value).startswith(f"{f}: {flag}: this file" + ("" if says[0] == "'" else " ")
                                     + says)
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


def test_plot_draws_every_set_and_the_pool_with_the_shipped_qc_on_its_judge_curve(tmp_path, monkeypatch, capsys):
    """`--plot` through `main`: a panel per set and one pooled; the judge's swept curve passes
    through the shipped QC's own point (the same verdicts at the shipped threshold) and agrees
    with `at_recall`; the pooled line at the target's recall is printed; the PNG is written."""
    import json

    import augment.qc_eval as qc_eval
    from augment import qc_plot
    from augment.qc_eval import DATA, FLOORS, main
    from augment.qc_stats import at_recall, cosine_curve, judge_sweep
    paths = []
    for name in ("instruction_pairs_fresh3", "instruction_pairs_fresh4"):
        rows = [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines()[:20]]
        paths.append(tmp_path / f"{name[-6:]}.jsonl")
        paths[-1].write_text("".join(json.dumps(r) + "\n" for r in rows))
    drawn, scored = [], []
    real, real_run = qc_plot.plot_curves, qc_eval.run
    monkeypatch.setattr(qc_plot, "plot_curves", lambda panels, *a: drawn.append(panels) or real(panels, *a))
    monkeypatch.setattr(qc_eval, "run", lambda *a, **k: scored.append(real_run(*a, **k)) or scored[-1])
    png = tmp_path / "figs" / "curves.png"
    assert main([*map(str, paths), "--plot", str(png)]) == 0
    printed = capsys.readouterr().out
    assert f"recall / false-accept curves: {png}" in printed
    assert "pooled, one judge threshold for all: " in printed
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    (panels,) = drawn
    assert [p["name"] for p in panels] == ["fresh3", "fresh4", "2 sets pooled"]
    assert all(set(qc_plot.ARRAYS) <= set(p) and p["target"] for p in panels)
    assert len(panels[2]["sims"]) == len(panels[0]["sims"]) + len(panels[1]["sims"])
    # each panel's arrays give the figures run() printed for its set: the shipped QC's and the
    # seed rule's points, the rules' floor sweep, the cosine threshold at the QC's recall
    for a, out in zip(panels, scored):
        pos = a["is_pos"]
        for key in ("project", "seed"):
            assert (a[key][pos].mean(), a[key][~pos].mean()) == pytest.approx(
                (out[key]["recall"], out[key]["far"]))
        blue = [[(a["rules_no_floor"] & (a["sims"] > f))[pos].mean(),
                 (a["rules_no_floor"] & (a["sims"] > f))[~pos].mean()] for f in FLOORS]
        assert np.allclose(blue, [[c["recall"], c["far"]] for c in out["curve"] if c["rule"] == "QC"])
        crec, cfar = cosine_curve(a["sims"], pos)
        vs = out["against_cosine"]
        at_t = (float((a["sims"][pos] >= vs["cosine_threshold"]).mean()), vs["cosine_far"])
        assert at_t[0] >= vs["recall"] - 1e-9
        assert any(np.isclose(r, at_t[0]) and np.isclose(f, at_t[1]) for r, f in zip(crec, cfar))
    pool = panels[2]
    t, r, f = at_recall(pool["is_pos"], pool["rules_ok"], pool["judge_p"], 0.85)
    assert (f"keeps recall {r[0]:.3f} at false accepts {f[0]:.3f}" if not np.isnan(r[0])
            else "no judge threshold meets it") in printed
    assert "false accepts it keeps at most recall" in printed
    for a in panels:
        _, rec, far = judge_sweep(a["is_pos"], a["rules_ok"], a["judge_p"])
        shipped = (a["project"][a["is_pos"]].mean(), a["project"][~a["is_pos"]].mean())
        assert any(np.isclose(r, shipped[0]) and np.isclose(f, shipped[1]) for r, f in zip(rec, far))
        assert np.isnan(a["judge_p"]).any() and not np.isnan(a["judge_p"]).all()
        # the first swept point that keeps a recall is at_recall's
        want = float(rec[len(rec) // 2])
        _, r, f = at_recall(a["is_pos"], a["rules_ok"], a["judge_p"], want)
        first = np.argmax(rec >= want - 1e-12)
        assert (r[0], f[0]) == (rec[first], far[first])


@pytest.mark.parametrize("plot,says", [("curves.pdf", "--plot curves.pdf: give a .png file name"),
                                       ("/proc/nope/c.png", "--plot /proc/nope/c.png: cannot make its folder")])
def test_plot_wants_a_writable_png_before_anything_is_scored(capsys, plot, says):
    from augment.qc_eval import main
    with pytest.raises(SystemExit) as e:
        main(["never-read.jsonl", "--plot", plot])
    assert e.value.code == 2 and says in capsys.readouterr().err


def test_floor_is_the_highest_within_its_stated_cost(tmp_path, capsys):
    """qc_sim_min is chosen for a stated target (`FLOOR_COST`): the highest floor at which the
    floor alone rejects at most that share of the faithful rewrites every other check accepts.
    Near-duplicates and pairs another check rejects do not count."""
    import json

    from augment.qc_eval import DATA, FLOORS, floor_costs, floor_for_cost, main
    rows = [{"label": "paraphrase"}] * 5 + [{"label": "meaning_change"}] * 3
    sims = [0.52, 0.68, 0.72, 0.90, 0.99, 0.60, 0.74, 0.95]
    reasons = [[], [], [], [], [], [], [], ["number 4 missing"]]
    res = [{"semantic_similarity": s, "reasons": r} for s, r in zip(sims, reasons)]
    costs = {c["floor"]: c for c in floor_costs(rows, res)}
    assert set(costs) == set(FLOORS)
    assert costs[0.70] == {"floor": 0.70, "lost": 2, "kept": 4, "caught": 1, "passing": 2}
    assert costs[0.50] == {"floor": 0.50, "lost": 0, "kept": 4, "caught": 0, "passing": 2}
    assert floor_for_cost(list(costs.values()), 0.25) == 0.65  # 0.52 only: 1 of 4
    assert floor_for_cost(list(costs.values()), 0.0) == 0.50
    lines = (DATA / "instruction_pairs_fresh.jsonl").read_text().splitlines()[:12]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert main([str(path), "--floor-cost", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "the highest floor costing at most 0.5 of them:" in out and "floor 0.90:" in out
    assert all(json.loads(line)["original"] for line in lines)
