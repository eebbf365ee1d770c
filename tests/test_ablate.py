"""The sweep runner: reuses finished runs, checks that over-cap configs are rejected."""

from __future__ import annotations

import csv
import json

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
    real_run = ablate.subprocess.run

    def spy(cmd, **kw):
        # Only training launches count: on a fresh machine matplotlib also shells out
        # (fc-list, to build its font cache) through the same subprocess module.
        if str(cmd[0]).endswith("launch.sh"):
            launched.append(cmd)
        return real_run(cmd, **kw)

    monkeypatch.setattr(ablate.subprocess, "run", spy)
    assert ablate.main([str(sweep), "--seeds", "1", "--runs_dir", str(runs)]) == 0
    # the finished run was reused; only the over-cap config was launched, and it was rejected
    assert len(launched) == 1 and "r3.yaml" in launched[0][1]
    rows = list(csv.DictReader(open(runs / "mysweep" / "results.csv")))
    assert [(r["config"], r["status"]) for r in rows] == [("r1", "ok"), ("r3", "rejected")]
    assert "finished earlier, reusing" in capsys.readouterr().out
