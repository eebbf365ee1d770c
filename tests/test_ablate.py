"""The sweep runner: reuses finished runs, checks that over-cap configs are rejected."""

from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import ROOT
from train import ablate


def test_rerun_reuses_finished_runs_and_records_rejections(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "mysweep"
    sweep.mkdir()
    (sweep / "r1.yaml").write_text(f"# one idea\nbase: {ROOT / 'configs/ablation/base.yaml'}\naugmented_per_original: 1.0\n")
    (sweep / "r3.yaml").write_text(f"# beyond the cap\n# expect-error: largest allowed value is 2.333\n"
                                   f"base: {ROOT / 'configs/ablation/base.yaml'}\naugmented_per_original: 3.0\n")
    runs = tmp_path / "runs"
    done = runs / "mysweep" / "r1" / "seed42"
    done.mkdir(parents=True)
    (done / "run_result.json").write_text(json.dumps(
        {"config": "r1", "seed": 42, "status": "ok", "ratio": 1.0, "mode": "replace", "methods": "templates",
         "eval_loss": 3.1, "eval_paraphrase_loss": 3.2, "gap": 0.1, "steps": 16}))
    launched = []
    real_launch = ablate._launch

    def spy(cmd, **kw):
        launched.append(cmd)
        return real_launch(cmd, **kw)

    monkeypatch.setattr(ablate, "_launch", spy)
    assert ablate.main([str(sweep), "--seeds", "1", "--runs_dir", str(runs)]) == 0
    # the finished run was reused; only the over-cap config was launched, and it was rejected
    assert len(launched) == 1 and "r3.yaml" in launched[0][1]
    rows = list(csv.DictReader(open(runs / "mysweep" / "results.csv")))
    assert [(r["config"], r["status"]) for r in rows if r["seed"] != "mean"] == [("r1", "ok"), ("r3", "rejected")]
    assert [(r["config"], r["status"]) for r in rows if r["seed"] == "mean"] == [("r1", "1 seed")]
    assert "finished earlier, reusing" in capsys.readouterr().out


def _robustness_json(scores: dict[str, tuple[float, list[float]]]) -> dict:
    """A robustness.json as augment.robustness writes it, from per-item (original, paraphrases)."""
    from augment import robustness as rb
    items, results = [], []
    for i, (orig, paras) in scores.items():
        res = rb.ItemResult(i, orig, paras, str(orig), [str(p) for p in paras])
        results.append(res)
        items.append({"id": i, "reference": "x", "original": {"prompt": i, "answer": "", "score": orig},
                      "paraphrases": [{"id": f"{i}-p{k}", "prompt": "", "answer": "", "score": s}
                                      for k, s in enumerate(paras)], "figures": rb.item_figures(res)})
    return {"metric": "label_match", "figures": rb.robustness_figures(results),
            "counts": {"items": len(items), "paraphrases": sum(len(p) for _, p in scores.values()),
                       "items_without_paraphrases": 0, "paraphrases_without_source": 0,
                       "eval_rows": len(items)},
            "generation": {"seconds": 1.0}, "items": items}


def test_summary_gives_seed_means_and_paired_intervals_against_the_baseline(tmp_path):
    from augment import robustness as rb
    sweep = tmp_path / "rob"
    sweep.mkdir()
    base = ROOT / "configs/ablation/robustness-base.yaml"
    (sweep / "originals.yaml").write_text(f"# ablate: baseline\nbase: {base}\naugmented_per_original: 0.0\n")
    (sweep / "augment.yaml").write_text(f"base: {base}\naugmented_per_original: 2.0\n")
    (sweep / "untrained.yaml").write_text(f"# ablate: seeds=1\nbase: {base}\nlearning_rate: 0.0\n")
    runs = tmp_path / "runs"
    # originals: 4 items, right on originals, paraphrases right half the time (seed 43: one more wrong)
    # augment: the same originals, every paraphrase right
    plans = {("originals", 42): {"a": (1.0, [1.0, 0.0]), "b": (1.0, [0.0, 1.0]), "c": (1.0, [1.0, 0.0]), "d": (0.0, [0.0, 0.0])},
             ("originals", 43): {"a": (1.0, [0.0, 0.0]), "b": (1.0, [0.0, 1.0]), "c": (1.0, [1.0, 0.0]), "d": (0.0, [0.0, 0.0])},
             ("augment", 42): {"a": (1.0, [1.0, 1.0]), "b": (1.0, [1.0, 1.0]), "c": (1.0, [1.0, 1.0]), "d": (0.0, [1.0, 1.0])},
             ("augment", 43): {"a": (1.0, [1.0, 1.0]), "b": (1.0, [1.0, 1.0]), "c": (1.0, [1.0, 1.0]), "d": (0.0, [1.0, 1.0])},
             ("untrained", 42): {"a": (0.0, [0.0, 0.0]), "b": (0.0, [0.0, 0.0]), "c": (0.0, [0.0, 0.0]), "d": (0.0, [0.0, 0.0])}}
    for (cfg, seed), scores in plans.items():
        d = runs / "rob" / cfg / f"seed{seed}"
        d.mkdir(parents=True)
        rep = _robustness_json(scores)
        (d / "robustness.json").write_text(json.dumps(rep))
        row = {"config": cfg, "seed": seed, "status": "ok", "ratio": 2.0 if cfg == "augment" else 0.0,
               "neftune": 0, "steps": 60, "eval_loss": 1.0, **{k: rep["figures"][k] for k in ablate.ROBUST},
               "metric": "label_match"}
        (d / "run_result.json").write_text(json.dumps(row))
    assert ablate.main([str(sweep), "--seeds", "2", "--runs_dir", str(runs), "--bootstrap", "2000"]) == 0
    rows = list(csv.DictReader(open(runs / "rob" / "results.csv")))
    assert len([r for r in rows if r["seed"] != "mean"]) == 5  # untrained ran with one seed only
    summ = {r["config"]: r for r in rows if r["seed"] == "mean"}
    assert summ["originals"]["status"] == "2 seeds (baseline)" and summ["originals"]["avgp_diff"] == ""
    # AvgP per seed: originals (0.5+0.5+0.5+0)/4 = 0.375 and (0+0.5+0.5+0)/4 = 0.25; augment 1.0
    assert float(summ["originals"]["avgp"]) == pytest.approx(0.3125)
    assert float(summ["originals"]["avgp_sd"]) == pytest.approx(0.0883883, abs=1e-5)
    # eval losses get their sd over seeds too; one seed has none (it was written as 0.0)
    assert float(summ["originals"]["eval_loss_sd"]) == 0.0 and summ["untrained"]["avgp_sd"] == ""
    # the paired difference: per item, augment's seed mean minus originals' seed mean
    per_item_base = [0.5, 0.5, 0.5, 0.0]
    per_item_base[0] = (0.5 + 0.0) / 2
    diffs = [1 - x for x in per_item_base]
    assert float(summ["augment"]["avgp_diff"]) == pytest.approx(sum(diffs) / 4)
    ci = rb.paired_bootstrap(per_item_base, [1.0] * 4, n_resamples=2000, seed=0)
    assert float(summ["augment"]["avgp_lo"]) == pytest.approx(ci["lo"], abs=1e-5)
    assert float(summ["augment"]["avgp_hi"]) == pytest.approx(ci["hi"], abs=1e-5)
    # the original-prompt score is identical: a zero-width interval at 0
    assert (float(summ["augment"]["original_lo"]), float(summ["augment"]["original_hi"])) == (0.0, 0.0)
    # untrained: everything wrong, 75 points below on originals, the interval excludes 0
    assert float(summ["untrained"]["original_diff"]) == pytest.approx(-0.75)
    assert float(summ["untrained"]["original_hi"]) < 0
    md = (runs / "rob" / "results.md").read_text()
    assert "| augment | 2 seeds |" in md and "Δ +" in md and "*" in md
    assert (runs / "rob" / "robustness_vs_setting.png").stat().st_size > 10_000
    # a second point of comparison (--compare, or header `ablate: reference`): differences from augment
    assert ablate.main([str(sweep), "--seeds", "2", "--runs_dir", str(runs), "--bootstrap", "2000",
                        "--report_only", "--compare", "augment"]) == 0
    vs = (runs / "rob" / "results_vs_augment.md").read_text()
    assert vs.index("| augment | 2 seeds (baseline) |") < vs.index("| originals | 2 seeds |")
    assert f"Δ {-100 * sum(diffs) / 4:+.1f}" in vs and "difference from augment" in vs
    assert ablate.main([str(sweep), "--runs_dir", str(runs), "--report_only", "--compare",
                        "nope"]) == 2


def test_sweep_input_is_checked_before_any_run_and_failures_fail_the_sweep(tmp_path, monkeypatch,
                                                                           capsys):
    """From a review run as a user: a missing base crashed the sweep part-way with a traceback,
    --seeds 0 replaced a finished sweep's results.csv with a header, --only with a missing name
    said the folder had no configs, a --baseline typo surfaced after every run had trained, and
    a sweep with failed runs exited 0. Each is now one line before anything runs, or exit 1."""
    import subprocess
    sweep = tmp_path / "s"
    sweep.mkdir()
    base = ROOT / "configs/ablation/base.yaml"
    (sweep / "a.yaml").write_text(f"base: {base}\naugmented_per_original: 0.0\n")
    (sweep / "b.yaml").write_text(f"base: {base}\naugmented_per_original: 1.0\n")
    runs = tmp_path / "runs"
    launched = []
    monkeypatch.setattr(ablate, "_launch", lambda cmd, **kw: launched.append(cmd) or
                        subprocess.CompletedProcess(cmd, 1, "", ""))
    for extra, text in ((["--seeds", "0"], "--seeds 0: give 1 or more"),
                        (["--only", "a,zz"], "--only zz: not a config of"),
                        (["--baseline", "aa"], "--baseline 'aa' is not a config of this sweep"),
                        (["--compare", "a,bb"], "--compare 'bb' is not a config")):
        assert ablate.main([str(sweep), "--runs_dir", str(runs), *extra]) == 2, extra
        assert text in capsys.readouterr().err, extra
    (sweep / "c.yaml").write_text("base: missing.yaml\nseed: 1\n")
    assert ablate.main([str(sweep), "--runs_dir", str(runs)]) == 2
    assert f"{sweep / 'c.yaml'}: its base {sweep / 'missing.yaml'} does not exist" in \
        capsys.readouterr().err
    assert not launched and not runs.exists()  # nothing ran, nothing written
    (sweep / "c.yaml").unlink()
    done = runs / "s" / "a" / "seed42"
    done.mkdir(parents=True)
    (done / "run_result.json").write_text(json.dumps(
        {"config": "a", "seed": 42, "status": "ok", "ratio": 0.0, "eval_loss": 3.0, "steps": 4}))
    assert ablate.main([str(sweep), "--seeds", "1", "--runs_dir", str(runs)]) == 1
    out = capsys.readouterr().out
    assert len(launched) == 1 and "1 runs ok, 0 rejected as expected, 1 failed: b seed 42" in out
    # --only runs a subset; the report stays the sweep's (a's finished run is in it)
    assert ablate.main([str(sweep), "--seeds", "1", "--runs_dir", str(runs), "--only", "b"]) == 1
    rows = list(csv.DictReader(open(runs / "s" / "results.csv")))
    assert {r["config"] for r in rows if r["seed"] != "mean"} == {"a", "b"}


def test_an_interrupted_sweep_stops_the_training_under_it(tmp_path):
    """SIGTERM to the sweep alone left launch.sh's accelerate and training running with no
    parent (seen by a review); a run now sits in a process group of its own, which the sweep
    stops on SIGTERM or Ctrl-C before saying so in one line (exit 130)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    pidfile = tmp_path / "child.pid"
    code = ("import signal, sys; sys.path.insert(0, %r); from train import ablate; "
            "signal.signal(signal.SIGTERM, ablate._on_sigterm)\n"
            "try:\n    ablate._launch(['bash', '-c', 'sleep 60 & echo $! > %s; wait'], capture=False)\n"
            "except KeyboardInterrupt:\n    sys.exit(130)") % (str(ROOT), pidfile)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    for _ in range(300):  # the grandchild was signalled with its group; give it a moment
        if not _running(grandchild):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the run's child process outlived the interrupted sweep")


def _running(pid: int) -> bool:
    """Whether `pid` runs: a zombie has ended. The grandchild, killed with its group after its
    parent, waits for PID 1 to reap it, which in a container can take seconds under load (this
    test failed once so, in CI on a loaded 2-core machine)."""
    import os
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_describe_reads_extra_as_the_training_cli_does_and_main_restores_sigterm(tmp_path):
    """--extra with several values, key=value and YAML-unfriendly text is recorded as the runs
    got it (it was joined letter by letter, or a ScannerError after the run had trained); a
    ratio the run will reject is left as written; main() leaves the caller's SIGTERM handler
    as it found it."""
    import signal
    cfg = tmp_path / "a.yaml"
    cfg.write_text("augmented_per_original: lots\naugment_methods: [templates]\n")
    assert ablate.describe(cfg)["ratio"] == "lots"
    d = ablate.describe(cfg, ["--augment_methods", "paraphrase", "templates",
                              "--augment_mode=replace", "--system_prompt", "Rule: answer: briefly"])
    assert (d["methods"], d["mode"]) == ("paraphrase+templates", "replace")
    before = signal.getsignal(signal.SIGTERM)
    ablate.main([str(tmp_path / "none"), "--runs_dir", str(tmp_path / "runs")])
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_group_of_zombies_is_not_waited_for():
    """An interrupted sweep waits while the run's process group runs; a group left with only a
    zombie (ended, not yet reaped by PID 1 in a container) has ended: it waited 30 s before."""
    import os
    import subprocess
    import time
    if not os.path.isdir("/proc"):
        pytest.skip("reads /proc")
    from train import ablate
    p = subprocess.Popen(["sleep", "5"], start_new_session=True)
    try:
        assert ablate._group_running(p.pid)
        p.kill()
        for _ in range(100):  # killed, not reaped: a zombie answers signals
            if open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.02)
        os.killpg(p.pid, 0)  # still "there" for a signal
        assert not ablate._group_running(p.pid)
    finally:
        p.wait()
