"""Labelled pair sets, as `augment.qc_eval` and `augment.qc.train_judge` read them: the
project's JSONL (``original``, ``candidate``, ``label``, ``kind``, ``domain``), and the public
sets issue #17 scores on, in their own published formats (MRPC's ``msr_paraphrase_test.txt``,
GLUE's ``STS-B/dev.tsv`` or the STS benchmark's ``sts-dev.csv``), so that comparing on them
needs no conversion step.

Why its own module: the readers are the one place that knows the formats, and `load_pairs`, the
one that training uses, refuses a public set's file: the judge must never learn from the sets it
is measured on (issue #17).
"""

from __future__ import annotations

import json
from pathlib import Path

LABELS = ("paraphrase", "meaning_change", "unrelated")


def load_pairs(path: str | Path) -> list[dict]:
    """The labelled pairs of a project JSONL file, for training and tests: a public set's file
    is refused, so that the judge never learns from the sets it is measured on."""
    from augment.errors import InputError
    rows, about = read_pairs(path)
    if about["format"] != "jsonl":
        raise InputError(f"this is {about['format']}'s file, a public set the judge is measured "
                         "on and never trained on", file=str(path),
                         fix="Score it with python -m augment.qc_eval; train on pairs you write")
    return rows


#: The public sets' own files, told apart by their first line: MRPC's (``msr_paraphrase_test.txt``
#: or GLUE's ``MRPC/test.tsv`` with labels), GLUE's ``STS-B/dev.tsv``, and the STS benchmark's
#: ``sts-dev.csv`` (no header; tab-separated genre, file, year, id, score, sentence 1, sentence 2).
MRPC_HEADER = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
GLUE_STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
#: STS-B's 0-5 scores as labels, as issue #17 scored them: >= 4 a paraphrase, <= 3 a changed
#: meaning; pairs in between are skipped and counted.
STSB_PARAPHRASE, STSB_CHANGED = 4.0, 3.0


def read_pairs(path: str | Path) -> tuple[list[dict], dict]:
    """(pairs, about) of a labelled file: the project's JSONL (``original``, ``candidate``,
    ``label``), or MRPC's or STS-B's own TSV as published, so the public comparison needs no
    conversion step. `about` names the format and counts what was skipped. A bad file or line is
    an `InputError` naming it."""
    from augment.errors import InputError
    if not Path(path).is_file():
        raise InputError("no such file", file=str(path),
                         fix="Pass a JSONL file of original/candidate/label pairs, or MRPC's or "
                             "STS-B's TSV")
    from augment.data import _decode  # a file that is not UTF-8: an InputError naming it
    # "\n" only: str.splitlines also breaks at U+2028 and other separators JSON strings may hold
    lines = [ln.rstrip("\r") for ln in _decode(Path(path)).split("\n")]
    first = lines[0] if lines else ""
    if first.startswith(MRPC_HEADER):
        return _read_mrpc(path, lines), {"format": "MRPC", "skipped": 0}
    if first.startswith(GLUE_STSB_HEADER):
        return _read_stsb(path, lines, start=2, genre=1, s1=7, s2=8, score=9)
    fields = first.split("\t")
    if len(fields) >= 7 and _is_number(fields[4]):
        return _read_stsb(path, lines, start=1, genre=0, s1=5, s2=6, score=4)
    return _read_jsonl(path, lines), {"format": "jsonl", "skipped": 0}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_jsonl(path, lines: list[str]) -> list[dict]:
    from augment.errors import InputError
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"not JSON ({exc.msg})", file=str(path), line=n,
                             fix="Fix the line")
        if (not isinstance(row, dict) or {"original", "candidate", "label"} - row.keys()
                or row["label"] not in LABELS):
            raise InputError(f"need original/candidate/label in {LABELS}; got {row}",
                             file=str(path), line=n)
        for field in ("original", "candidate"):
            if not isinstance(row[field], str) or not row[field].strip():
                raise InputError(f"need a non-empty text, got {row[field]!r}", file=str(path),
                                 line=n, field=field)
        rows.append(row)
    return rows


def _read_mrpc(path, lines: list[str]) -> list[dict]:
    from augment.errors import InputError
    rows = []
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        f = line.split("\t")
        if len(f) != 5 or f[0] not in ("0", "1"):
            raise InputError(f"need 5 tab-separated fields with Quality 0 or 1; got {len(f)} "
                             f"fields starting {f[0]!r}", file=str(path), line=n)
        rows.append({"original": f[3], "candidate": f[4],
                     "label": "paraphrase" if f[0] == "1" else "meaning_change",
                     "kind": "mrpc", "domain": "news"})
    return rows


def _read_stsb(path, lines: list[str], start: int, genre: int, s1: int, s2: int, score: int
               ) -> tuple[list[dict], dict]:
    from augment.errors import InputError
    rows, skipped = [], 0
    for n, line in enumerate(lines[start - 1:], start):
        if not line.strip():
            continue
        f = line.split("\t")
        if len(f) <= max(s1, s2, score) or not _is_number(f[score]):
            raise InputError(f"need sentence 1, sentence 2 and a numeric score in fields "
                             f"{s1 + 1}, {s2 + 1}, {score + 1}; got {len(f)} fields",
                             file=str(path), line=n)
        value = float(f[score])
        if STSB_CHANGED < value < STSB_PARAPHRASE:
            skipped += 1
            continue
        same = value >= STSB_PARAPHRASE
        rows.append({"original": f[s1], "candidate": f[s2],
                     "label": "paraphrase" if same else "meaning_change",
                     "kind": f"score >= {STSB_PARAPHRASE:g}" if same else f"score <= {STSB_CHANGED:g}",
                     "domain": f[genre]})
    return rows, {"format": "STS-B", "skipped": skipped}
