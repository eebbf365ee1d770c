"""write_text_atomic: the old file or the new one, never half, and no temporary left."""
import os

import pytest

from augment.atomic import write_text_atomic


def test_replaces_whole_and_makes_the_folder(tmp_path):
    target = tmp_path / "a" / "b" / "report.json"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new é")
    assert target.read_text(encoding="utf-8") == "new é"
    assert os.listdir(target.parent) == ["report.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "robustness.json"
    target.write_text("the finished report")

    def killed(*_):
        raise KeyboardInterrupt  # what a Ctrl-C between writing and swapping raises

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic(target, "half")
    assert target.read_text() == "the finished report"
    assert os.listdir(tmp_path) == ["robustness.json"]


def test_the_reports_that_runs_read_back_are_written_atomically(tmp_path, monkeypatch):
    """Each writer of a file a later run reads goes through write_text_atomic (a plain
    write_text here would leave half a file on a kill)."""
    import augment.atomic as atomic
    from augment.backends.batches import _save_state
    from augment.robustness import write_report
    seen = []
    real = atomic.write_text_atomic
    monkeypatch.setattr(atomic, "write_text_atomic", lambda p, t, **k: seen.append(p.name) or real(p, t, **k))
    write_report({"x": 1}, tmp_path / "robustness.json")
    _save_state(tmp_path / "batch_state.json", {"batches": []})
    assert seen == ["robustness.json", "batch_state.json"]
