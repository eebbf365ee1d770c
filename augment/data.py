"""Load, validate and split the training data, before anything expensive happens.

Every problem is reported with its file, line and field and what to do, because the alternative
(a KeyError deep inside tokenisation twenty minutes into a run) is what users otherwise get.
The train/eval split is made here, before augmentation, so no variant of an eval row can train.

Formats (detected per file from the first record's keys, after `column_mapping`):
    prompt / completion                      (TRL's prompt-completion)
    messages: [{role, content}, ...]         (optional system message, then alternating user
                                              and assistant turns, ending with an assistant turn)
    conversations: [{from, value}, ...]      (ShareGPT: from = system / human / gpt)
    instruction / input (optional) / output  (Alpaca)
    instruction / context (optional) / response  (Dolly)
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .types import Row

MAX_FIELD_CHARS = 200_000  # a single prompt beyond this is almost surely a broken export
SUFFIXES = {".jsonl": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}

FORMATS = {
    # name: (required keys, optional keys)
    "prompt_completion": (("prompt", "completion"), ()),
    "messages": (("messages",), ()),
    "sharegpt": (("conversations",), ()),
    "alpaca": (("instruction", "output"), ("input",)),
    "dolly": (("instruction", "response"), ("context",)),
}


@dataclass
class DataSplit:
    train: list[Row]
    eval: list[Row]
    eval_paraphrases: list[Row] = field(default_factory=list)
    report: dict = field(default_factory=dict)


@dataclass
class _Record:
    data: object
    file: str
    line: int | None  # 1-based line (jsonl/csv/json) or None
    where: str        # "line 12" / "row 12" for messages


def load_rows(data_cfg, seed: int = 42) -> DataSplit:
    """Read train (and eval) data as configured and split it. Raises InputError on bad input."""
    mapping = dict(item.split("=", 1) for item in data_cfg.column_mapping)
    skipped: dict[str, int] = {}
    formats: set[str] = set()
    train = _load_source(data_cfg.dataset_name, mapping, data_cfg, skipped,
                         split=data_cfg.dataset_train_split, formats=formats)
    if data_cfg.max_rows:
        train = train[: data_cfg.max_rows]
    if data_cfg.eval_dataset_name:
        eval_rows = _load_source(data_cfg.eval_dataset_name, mapping, data_cfg, skipped)
    elif data_cfg.eval_fraction > 0:
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        n_eval = max(1, round(len(train) * data_cfg.eval_fraction))
        held = set(order[:n_eval])
        eval_rows = [r for i, r in enumerate(train) if i in held]
        train = [r for i, r in enumerate(train) if i not in held]
    else:
        eval_rows = []
    # Leakage guard: a train row whose input equals an eval row's would train on the eval set.
    eval_inputs = {_input_key(r) for r in eval_rows}
    dup = [r for r in train if _input_key(r) in eval_inputs]
    if dup:
        train = [r for r in train if _input_key(r) not in eval_inputs]
    if not train:
        raise InputError("no training rows left after loading and splitting",
                         file=data_cfg.dataset_name, fix="Check the file and eval_fraction")
    paraphrases = []
    if data_cfg.eval_paraphrases_file:
        paraphrases = _load_source(data_cfg.eval_paraphrases_file, mapping, data_cfg, skipped)
    report = {"train_rows": len(train), "eval_rows": len(eval_rows),
              "eval_paraphrase_rows": len(paraphrases),
              "removed_train_duplicates_of_eval": len(dup),
              "skipped": dict(skipped), "skipped_total": sum(skipped.values()),
              "train_formats": sorted(formats)}
    return DataSplit(train, eval_rows, paraphrases, report)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _input_key(row: Row) -> tuple:
    """What the model is given for `row`: the last user turn and, for a conversation, every
    message before it. Two conversations that end with the same follow-up ("Thanks!") are
    different examples."""
    return tuple((role, _norm(text)) for role, text in row.context) + (_norm(row.prompt),)


# --------------------------------------------------------------------------- reading files

def _load_source(name: str, mapping: dict, data_cfg, skipped: dict, split: str = "train",
                 formats: set | None = None) -> list[Row]:
    path = Path(name)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES)
        if not files:
            raise InputError(f"folder has no {sorted(SUFFIXES)} files", file=name,
                             fix="Point dataset_name at a data file or a folder of them")
    elif path.exists():
        if path.suffix not in SUFFIXES:
            raise InputError(f"unsupported file type {path.suffix!r}", file=name,
                             fix=f"Use one of {sorted(SUFFIXES)}")
        files = [path]
    elif _looks_like_hub_id(name):
        return _rows_from_records(_hub_records(name, data_cfg, split), mapping, data_cfg, skipped,
                                  formats)
    else:
        raise InputError("file not found", file=name,
                         fix="Check the path (relative paths start at the working directory)")
    rows = []
    for f in files:
        rows += _rows_from_records(_read_records(f, data_cfg.skip_bad_rows, skipped), mapping,
                                   data_cfg, skipped, formats)
    if not rows:
        raise InputError("zero usable rows", file=name, fix="The file is empty or every row was "
                         "skipped; check the format (see data/README.md)")
    return rows


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/")) and \
        Path(name).suffix not in SUFFIXES


def _hub_records(name: str, data_cfg, split: str):
    from datasets import load_dataset  # heavy; only for hub ids
    try:
        ds = load_dataset(name, data_cfg.dataset_config, split=split)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; we report one line
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise InputError(f"could not load hub dataset ({type(exc).__name__})", file=name,
                         fix=("HF_HUB_OFFLINE=1 is set: download it once with network access, or "
                              "pass a local file" if offline else "Check the id and split"))
    for i, rec in enumerate(ds):
        yield _Record(rec, name, None, f"row {i}")


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"bytes at offset {exc.start} are not UTF-8", file=str(path), line=line,
                         fix="Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)")


def _skip_or_raise(err: InputError, skip: bool, skipped: dict | None) -> None:
    """A row-level error: counted as "file: reason" when the user asked to skip bad rows,
    raised otherwise."""
    if not skip or skipped is None:
        raise err
    key = f"{err.file}: {str(err).split(': ', 1)[-1].split(' (')[0].split('.')[0]}"
    skipped[key] = skipped.get(key, 0) + 1


def _read_records(path: Path, skip_bad: bool = False, skipped: dict | None = None):
    """Records of one file. Whole-file problems (not UTF-8, not Parquet) always stop; a broken
    line or item is skipped and counted with `skip_bad`."""
    kind = SUFFIXES[path.suffix]
    if kind == "parquet":
        import pyarrow.parquet as pq
        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"not a readable Parquet file ({exc})", file=str(path),
                             fix="Re-export it, or give the data as .jsonl/.csv")
        for i, rec in enumerate(table.to_pylist()):  # errors name the row, 1-based: file:3
            yield _Record(rec, str(path), i + 1, f"row {i}")  # `where` makes ids: unchanged
        return
    text = _decode(path)
    if kind == "jsonl":
        # split on newlines only: str.splitlines also breaks at U+2028 and friends, which JSON
        # allows raw inside strings
        first = True  # the first non-blank line: where a JSON array would start
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            at_start, first = first, False
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                array = at_start and line.lstrip().startswith("[")
                _skip_or_raise(InputError(f"broken JSON ({exc.msg} at column {exc.colno})",
                                          file=str(path), line=lineno,
                                          fix="This looks like a JSON array: name the file .json, "
                                          "or write one object per line" if array else
                                          "Fix or remove that line (or skip_bad_rows: true)"),
                               skip_bad, skipped)
                continue
            if not isinstance(rec, dict):
                whole = at_start and isinstance(rec, list) and rec and isinstance(rec[0], dict)
                _skip_or_raise(InputError(f"expected a JSON object, got {type(rec).__name__}",
                                          file=str(path), line=lineno,
                                          fix="This is a JSON array of rows on one line: name the "
                                          "file .json, or write one object per line" if whole else
                                          'Each line must be one object such as {"prompt": ..., '
                                          '"completion": ...}'), skip_bad, skipped)
                continue
            yield _Record(rec, str(path), lineno, f"line {lineno}")
    elif kind == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"broken JSON ({exc.msg})", file=str(path), line=exc.lineno,
                             fix="A .json file must hold one array of objects; JSON Lines "
                             "files should end in .jsonl")
        if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
            data = next(iter(data.values()))  # {"data": [...]} wrappers
        if not isinstance(data, list):
            raise InputError("expected a JSON array of objects", file=str(path),
                             fix="Wrap the rows in [...], or save one object per line as .jsonl")
        starts = _json_item_lines(text, len(data))
        for i, rec in enumerate(data):
            line = starts[i] if i < len(starts) else None
            if not isinstance(rec, dict):
                _skip_or_raise(InputError(f"item {i} is a {type(rec).__name__}, expected an object",
                                          file=str(path), line=line,
                                          fix="Make every item an object with the row's fields"),
                               skip_bad, skipped)
                continue
            yield _Record(rec, str(path), line, f"item {i}")
    else:  # csv
        # csv's own field limit (131,072) is below ours: a long field gets our error, not its
        csv.field_size_limit(max(csv.field_size_limit(), 2 * MAX_FIELD_CHARS))
        reader = csv.DictReader(io.StringIO(text))
        try:
            for rec in reader:
                if None in rec:  # more cells than the header has columns: DictReader drops them
                    _skip_or_raise(InputError(
                        f"{len(rec[None])} more cell(s) than the header's {len(reader.fieldnames)} "
                        "columns", file=str(path), line=reader.line_num,
                        fix="Quote fields that contain commas (\"It is 4, obviously\")"),
                        skip_bad, skipped)
                    continue
                yield _Record(rec, str(path), reader.line_num, f"line {reader.line_num}")
        except csv.Error as exc:
            raise InputError(f"not readable as CSV ({exc})", file=str(path),
                             line=reader.line_num, fix="Re-export it as CSV, or as .jsonl") from None


def _json_item_lines(text: str, n: int) -> list[int]:
    """Line where each top-level array item starts, so errors can name a line in .json files."""
    lines, depth, in_str, esc, line = [], 0, False, False, 1
    for ch in text:
        if ch == "\n":
            line += 1
        if in_str:
            esc = (ch == "\\") and not esc
            if ch == '"' and not esc:
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "[{":
            if depth == 1 and ch == "{":
                lines.append(line)
            depth += 1
        elif ch in "]}":
            depth -= 1
        if len(lines) >= n and n:
            break
    return lines


# --------------------------------------------------------------------------- records -> rows

def detect_format(keys) -> str | None:
    keys = set(keys)
    for name, (required, _) in FORMATS.items():
        if set(required) <= keys:
            return name
    return None


def split_line(report: dict) -> str:
    """What loading kept and dropped, one line (training and the build both print it)."""
    return (f"{report['train_rows']} train rows, {report['eval_rows']} eval rows, "
            f"{report['eval_paraphrase_rows']} held-out paraphrases"
            + (f"; skipped {report['skipped_total']} bad rows: {report['skipped']}"
               if report["skipped_total"] else "")
            + (f"; removed {report['removed_train_duplicates_of_eval']} train rows whose input "
               "equals an eval row's" if report["removed_train_duplicates_of_eval"] else ""))


def _rows_from_records(records, mapping: dict, data_cfg, skipped: dict,
                       formats: set | None = None) -> list[Row]:
    rows, fmt = [], None
    for rec in records:
        data = {mapping.get(k, k): v for k, v in rec.data.items()}
        if fmt is None:
            fmt = detect_format(data)
            if fmt is None:
                raise InputError(
                    f"cannot tell the format from the columns {sorted(data)}", file=rec.file,
                    line=rec.line, fix="Use prompt/completion, messages, instruction/input/output "
                    "or instruction/context/response, or map columns with "
                    "column_mapping: ['question=prompt', 'answer=completion']")
            if formats is not None:
                formats.add(fmt)
        try:
            rows.append(_to_row(fmt, data, rec))
        except InputError as err:
            _skip_or_raise(err, data_cfg.skip_bad_rows, skipped)
    return rows


def _text(data: dict, key: str, rec: _Record, optional: bool = False) -> str:
    if key not in data or data[key] is None:
        if optional:
            return ""
        raise InputError("missing", file=rec.file, line=rec.line, field=key,
                         fix="Every row needs it (or use skip_bad_rows: true to skip such rows)")
    value = data[key]
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {type(value).__name__}", file=rec.file,
                         line=rec.line, field=key,
                         fix="Write it as text in quotes (or skip_bad_rows: true to skip such rows)")
    if not value.strip() and not optional:
        raise InputError("empty text", file=rec.file, line=rec.line, field=key,
                         fix="Fill it in or remove the row (or skip_bad_rows: true)")
    if len(value) > MAX_FIELD_CHARS:
        raise InputError(f"text is {len(value):,} characters, above the {MAX_FIELD_CHARS:,} limit",
                         file=rec.file, line=rec.line, field=key,
                         fix="This is usually a broken export; split or drop the row")
    return value


def _to_row(fmt: str, data: dict, rec: _Record) -> Row:
    row_id = data.get("id")
    row_id = str(row_id) if row_id not in (None, "") else f"{Path(rec.file).name}:{rec.where}"
    if fmt == "prompt_completion":
        if isinstance(data.get("prompt"), list) and isinstance(data.get("completion"), list):
            raise InputError(
                "prompt and completion are lists of messages (TRL's conversational "
                "prompt/completion), which augtune reads for eval sets but not for training",
                file=rec.file, line=rec.line, field="prompt",
                fix='Write each row as {"messages": prompt + completion}; set '
                    'assistant_only_loss: true to train the answers only (TRL trains only the '
                    'completion of this format)')
        return Row(row_id, _text(data, "prompt", rec), _text(data, "completion", rec))
    if fmt == "alpaca":
        prompt, extra = _text(data, "instruction", rec), _text(data, "input", rec, optional=True)
        return Row(row_id, prompt + ("\n\n" + extra if extra.strip() else ""), _text(data, "output", rec))
    if fmt == "dolly":
        prompt, extra = _text(data, "instruction", rec), _text(data, "context", rec, optional=True)
        return Row(row_id, prompt + ("\n\n" + extra if extra.strip() else ""), _text(data, "response", rec))
    key = "conversations" if fmt == "sharegpt" else "messages"
    if data.get(key) is None:  # a row in another format than the file's first row
        raise InputError(f"missing (the file's first row is in the {fmt} format)", file=rec.file,
                         line=rec.line, field=key,
                         fix="Give every row the same format (or skip_bad_rows: true to skip such rows)")
    messages = _conversation(data[key], rec, key, sharegpt=fmt == "sharegpt")
    user, answer = messages[-2][1], messages[-1][1]
    # A plain user/assistant pair stays a plain row (same cache keys as prompt/completion data);
    # anything more (a system prompt, earlier turns) is kept whole and trained as it is.
    return Row(row_id, user, answer, messages if len(messages) > 2 else ())


# ShareGPT speaker names -> chat roles (axolotl / LLaMA-Factory spellings).
_SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                   "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant",
                   "bard": "assistant"}
_TOOL_ROLES = {"tool", "function", "function_call", "observation", "ipython", "tool_call"}
_SHAPE_FIX = ("Give an optional system message, then user and assistant turns in turn, ending "
              "with an assistant turn")


def _conversation(msgs, rec: _Record, key: str, sharegpt: bool) -> tuple:
    """Validate one conversation and return it as ((role, content), ...).

    Tool and function-call messages are refused, not silently dropped: removing them would
    change what the assistant's later turns answer. Messages with any other shape error out
    with the message's index, so a broken export is found at its line."""
    role_key, text_key = ("from", "value") if sharegpt else ("role", "content")
    example = ('[{"from": "human", "value": ...}, {"from": "gpt", "value": ...}]' if sharegpt
               else '[{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]')
    if isinstance(msgs, str):
        try:
            msgs = json.loads(msgs)
        except json.JSONDecodeError:
            raise InputError("not a JSON list of messages", file=rec.file, line=rec.line,
                             field=key, fix=f"Give {example}")
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
        raise InputError(f"expected a non-empty list of {{{role_key}, {text_key}}} objects",
                         file=rec.file, line=rec.line, field=key, fix=f"Give {example}")
    out = []
    for i, m in enumerate(msgs):
        raw = m.get(role_key)
        if not isinstance(raw, str):
            raise InputError(f"message {i} has {role_key}={raw!r}, not a string", file=rec.file,
                             line=rec.line, field=key, fix=f"Give {example}")
        role = _SHAREGPT_ROLES.get(raw.lower()) if sharegpt else raw
        if raw in _TOOL_ROLES or m.get("tool_calls") or m.get("function_call"):
            raise InputError(f"message {i} is a tool or function call ({role_key}={raw!r}), "
                             "which augtune does not train on yet", file=rec.file, line=rec.line,
                             field=key, fix="Drop the tool messages and the turns that depend on "
                             "them, or skip_bad_rows: true to skip such rows")
        if role not in ("system", "user", "assistant"):
            raise InputError(f"message {i} has {role_key}={raw!r}; expected "
                             + ("system, human or gpt" if sharegpt else "system, user or assistant"),
                             file=rec.file, line=rec.line, field=key, fix=_SHAPE_FIX)
        text = _text(m, text_key, rec)
        out.append((role, text))
    roles = [r for r, _ in out]
    body = roles[1:] if roles[0] == "system" else roles
    expected = ["user", "assistant"] * (len(body) // 2)
    if not body or body != expected or len(body) % 2:
        raise InputError(f"roles {roles} do not alternate user/assistant ending with an assistant "
                         "turn", file=rec.file, line=rec.line, field=key, fix=_SHAPE_FIX)
    return tuple(out)
