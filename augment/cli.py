"""Config parsing and error reporting shared by every entry point.

Why not `TrlParser.parse_args_and_config` as is: it copies YAML values into argparse defaults,
which skips argparse's type conversion, so `augmented_per_original: abc` in a YAML file reaches a
dataclass as a string and ends in a TypeError traceback. Here the YAML mapping is turned into
`--key value` arguments placed before the command line's own (the command line wins), so YAML
and command line are checked the same way, and unknown keys fail loudly with a suggestion.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from pathlib import Path

from .errors import AugtuneError, ConfigError


def _parser(types):
    from trl import TrlParser

    class _Parser(TrlParser):
        def error(self, message):  # argparse would print the whole usage and exit 2
            raise ConfigError(message)

    parser = _Parser(types)
    for action in parser._actions:
        # argparse formats help with %: a field's "keep 87% of ..." made --help itself fail
        # ("%o format: an integer is required"). "%(default)s" and "%%" stay as they are.
        if action.help:
            action.help = re.sub(r"%(?![(%])", "%%", action.help)
    return parser


def parse_config(argv: list[str], types: tuple) -> tuple:
    """Parse `--config FILE` plus `--key value` overrides into instances of `types`."""
    import warnings
    # TRL's own SFTConfig default sets the renamed `gradient_checkpointing`; the warning is
    # not actionable for a user of augtune.
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated",
                            category=FutureWarning)
    argv = list(argv)
    yaml_args, config_path, where = [], None, {}
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise ConfigError("--config needs a YAML file path.")
        config_path = argv[i + 1]
        del argv[i:i + 2]
        yaml_args, where = _yaml_to_args(config_path)
    parser = _parser(types)
    known = {a.dest for a in parser._actions}
    defaults = {a.dest: a.default for a in parser._actions}
    from_cli = {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}
    for key in from_cli:  # the command line sets it: a file's empty key does not matter
        where.pop(f"null:{key}", None)
    _refuse_non_finite(yaml_args + argv, where)
    for key in [k[5:] for k in where if k.startswith("null:")]:
        # `key:` with no value is read as YAML null; where the default is a value (a dataset, a
        # cache path), skipping it would silently run on that default instead.
        if key in defaults and defaults[key] not in (None, [], ()):
            raise ConfigError(f"{where['null:' + key]}: '{key}' has no value; give one, or remove "
                              f"the line for its default ({defaults[key]!r}).")
    _check_keys(yaml_args, known, config_path, where)
    _check_keys(argv, known, None, {})
    nargs = {a.dest: a.nargs for a in parser._actions}
    for key in [k[5:] for k in where if k.startswith("list:")]:
        if key in nargs and nargs[key] in (None, "?"):
            raise ConfigError(f"{where['list:' + key]}: '{key}' takes one value, not a list.")
    try:
        *parsed, remaining = parser.parse_args_into_dataclasses(yaml_args + argv,
                                                                return_remaining_strings=True)
    except ConfigError as exc:  # argparse's own refusals (our parser's error()), or ours
        m = re.search(r"^argument --(\w+)", str(exc))  # a value of a YAML key: say where
        if m and m.group(1) in where and m.group(1) not in from_cli:
            raise ConfigError(f"{where[m.group(1)]}: {exc}") from None
        raise
    except (ValueError, TypeError) as exc:  # TRL/transformers validate in __post_init__
        where = f"{config_path}: " if config_path else ""
        raise ConfigError(where + str(exc).strip().splitlines()[0])
    if remaining:
        raise ConfigError(f"unrecognised arguments {remaining}.")
    return tuple(parsed)


_NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def _refuse_non_finite(args: list[str], where: dict) -> None:
    """`nan` or `inf` for any setting (YAML's .nan/.inf included), TRL's and transformers' too:
    NaN passes every range check (it compares false) and trains as garbage."""
    key = None
    for a in args:
        if a.startswith("--"):
            key, _, value = a[2:].partition("=")
            if not value:
                continue
        else:
            value = a
        if key and value.strip().lower() in _NON_FINITE:
            at = f"{where[key]}: " if key in where else ""
            raise ConfigError(f"{at}{key}={value} is not a finite number.")


def _yaml_to_args(path: str, chain: tuple = ()) -> tuple[list[str], dict[str, str]]:
    """(`--key value` args, {key: "file:line"} so errors can say where a key is). `chain`: the
    files whose `base` led here, so a cycle of bases is an error, not a RecursionError."""
    import yaml
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: config file not found.")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8.") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)}).")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a YAML mapping of key: value.")
    if not data:  # empty or comments only: a run on every default is never what was meant
        raise ConfigError(f"{path}: sets nothing (empty, or comments only); give at least "
                          "dataset_name, or leave --config out to run on the defaults.")
    lines = {}
    for m in re.finditer(r"^([A-Za-z_][\w]*)\s*:", text, re.M):
        key, line = m.group(1), text[: m.start()].count("\n") + 1
        if key in lines:  # YAML keeps the last silently
            raise ConfigError(f"{path}:{line}: '{key}' is set twice (first at line "
                              f"{lines[key]}); keep one.")
        lines[key] = line
    args, where = [], {}
    if "base" in data:
        # `base: other.yaml` (relative to this file): that file's settings first, this file's win.
        # Ablation configs use it so each one shows only the idea it changes.
        base = p.parent / str(data.pop("base"))
        seen = (*chain, p.resolve())
        if base.resolve() in seen:
            loop = " -> ".join(str(x) for x in (*seen, base.resolve()))
            raise ConfigError(f"{path}: `base` makes a loop ({loop}).")
        args, where = _yaml_to_args(str(base), seen)
    for key, value in data.items():
        flag = f"--{key}"
        where.pop(f"null:{key}", None)  # this file sets it again: a base file's empty key goes
        if value is None:  # parse_config refuses it where the default is not "nothing"
            where[f"null:{key}"] = f"{path}:{lines.get(key, '?')}"
            continue
        if isinstance(value, bool):
            args += [flag, "true" if value else "false"]
        elif isinstance(value, list):
            if len(value) > 1:  # one item is one value, for a list field or not
                where[f"list:{key}"] = f"{path}:{lines.get(key, '?')}"
            args += [flag, *[json.dumps(v) if isinstance(v, dict) else str(v) for v in value]]
        elif isinstance(value, dict):
            args += [flag, json.dumps(value)]
        else:
            args += [flag, str(value)]
    where.update({key: f"{path}:{line}" for key, line in lines.items()})
    return args, where


def _check_keys(args: list[str], known: set, config_path: str | None, where: dict) -> None:
    for a in args:
        if not a.startswith("--"):
            continue
        key = a[2:].split("=", 1)[0]
        if key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        if config_path:
            raise ConfigError(f"{where.get(key, config_path)}: unknown config key '{key}'.{hint}")
        raise ConfigError(f"unknown option '--{key}'.{hint}")


def run_cli(main, argv=None) -> None:
    """Run `main(argv)`; a user-fixable problem ends with one line on stderr and exit 2."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        main(argv)
    except AugtuneError as err:
        print(f"augtune: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("augtune: interrupted; completed work is kept (rerun to resume).", file=sys.stderr)
        sys.exit(130)
