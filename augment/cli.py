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
    actions = {}
    for a in parser._actions:  # the field's own action first (`--no_bf16` shares bf16's dest)
        actions.setdefault(a.dest, a)
    _check_keys(yaml_args, set(actions), config_path, where)  # a misspelled key, empty or not
    _check_keys(argv, set(actions), None, {})
    from_cli = {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}
    yaml_args = _resolve_nulls(yaml_args, actions, where, from_cli)
    numeric = {k for k, a in actions.items() if getattr(a.type, "__name__", None) in ("float", "int")}
    _refuse_non_finite(yaml_args, where, numeric)
    _refuse_non_finite(argv, {}, numeric)
    for key in [k[5:] for k in where if k.startswith("list:")]:
        if key in actions and actions[key].nargs in (None, "?"):
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


class _Null(str):
    """The value of a YAML `key:` with nothing (null) in `_yaml_to_args`' output, until
    `_resolve_nulls` decides what it means; no YAML value is this object."""


_NULL = _Null("null")


def _groups(args: list[str]) -> list[tuple[str, list[str]]]:
    """`--key v1 v2 --other v` -> [(key, [v1, v2]), (other, [v])]."""
    out = []
    for a in args:
        if a.startswith("--"):
            out.append((a[2:], []))
        elif out:
            out[-1][1].append(a)
    return out


def _is_null(values: list[str]) -> bool:
    return len(values) == 1 and values[0] is _NULL  # identity: `key: "null"` is the text null


def _accepts_none(action) -> bool:
    """The command line gives None for `--key None` (TRL wraps the type of an `int | None`,
    `float | None`, ... field so that it does; a `str | None` field reads the text "None")."""
    try:
        return action.type is not None and action.type("None") is None
    except Exception:
        return False


def _resolve_nulls(args: list[str], actions: dict, where: dict, from_cli: set) -> list[str]:
    """YAML's `key:` with nothing (or `null`, `~`) for the file's last setting of a key: None
    where the command line takes `--key None` (max_length: no truncation); the default where the
    default is nothing (a base file's value is unset, not kept); else refused, naming what
    removing the line would give. The command line setting the key makes the file's null moot."""
    groups = _groups(args)
    last = {key: i for i, (key, _) in enumerate(groups)}
    out = []
    for i, (key, values) in enumerate(groups):
        if last[key] != i:  # a later file (the child) sets it again
            continue
        if not _is_null(values):
            out += [f"--{key}", *values]
            continue
        action = actions[key]
        if key in from_cli:
            continue
        if _accepts_none(action):
            out += [f"--{key}", "None"]
            continue
        if action.default in (None, [], ()):  # unset: the default, not a base file's value
            continue
        earlier = [(j, v) for j, (k, v) in enumerate(groups) if k == key and j < i]
        if earlier and not _is_null(earlier[-1][1]):  # a base file's value is what stays
            v = earlier[-1][1]
            shown = repr(v[0]) if len(v) == 1 else repr(v)
            source = where.get(f"prev:{key}", "a base file")
            raise ConfigError(f"{where[key]}: '{key}' has no value; give one, or remove the "
                              f"line for the value from {source} ({shown}).")
        raise ConfigError(f"{where[key]}: '{key}' has no value; give one, or remove the line "
                          f"for its default ({action.default!r}).")
    return out


_NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
# max_grad_norm: +inf is a real setting, not an accident: TRL's SFTConfig takes it and
# torch's clip_grad_norm_(max_norm=inf) scales by min(1, inf) = 1, so nothing is clipped while the
# gradient norm is still computed and logged (0 would skip the norm as well). NaN never is.
_INF_ALLOWED = {"max_grad_norm": {"inf", "+inf", "infinity", "+infinity"}}


def _refuse_non_finite(args: list[str], where: dict, numeric: set) -> None:
    """`nan` or `inf` for a number setting (YAML's .nan/.inf included), TRL's and transformers'
    too: NaN passes every range check (it compares false) and trains as garbage. Text settings
    (`run_name: inf`) are text."""
    key = None
    for a in args:
        if a.startswith("--"):
            key, _, value = a[2:].partition("=")
            if not value:
                continue
        else:
            value = a
        v = value.strip().lower()
        if key in numeric and v in _NON_FINITE and v not in _INF_ALLOWED.get(key, ()):
            at = f"{where[key]}: " if key in where else ""
            raise ConfigError(f"{at}{key}={value} is not a finite number.")


class _DuplicateKey(Exception):
    pass


def _loader():
    import yaml

    class _Loader(yaml.SafeLoader):
        """safe_load, except that a top-level key given twice is an error (YAML keeps the last
        silently), and `key_lines` records the 1-based line of each top-level key."""

        def construct_document(self, node):
            self.top, self.key_lines = node, {}
            return super().construct_document(node)

        def construct_mapping(self, node, deep=False):
            if node is self.top:
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *x`: keys may repeat
                        continue
                    key, line = self.construct_object(key_node), key_node.start_mark.line + 1
                    try:
                        if key in self.key_lines:
                            raise _DuplicateKey(key, line, self.key_lines[key])
                        self.key_lines[key] = line
                    except TypeError:  # an unhashable key: SafeLoader's own error says so
                        pass
            return super().construct_mapping(node, deep)

    return _Loader


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
    loader = _loader()(text)
    try:
        data = loader.get_single_data() or {}
    except _DuplicateKey as dup:
        key, line, first = dup.args
        raise ConfigError(f"{path}:{line}: '{key}' is set twice (first at line {first}); "
                          "keep one.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)}).")
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a YAML mapping of key: value.")
    if not data:  # empty or comments only: a run on every default is never what was meant
        raise ConfigError(f"{path}: sets nothing (empty, or comments only); give at least "
                          "dataset_name, or leave --config out to run on the defaults.")
    lines = getattr(loader, "key_lines", {})  # {key: 1-based line}, from the parsed nodes
    args, where = [], {}
    if "base" in data:
        # `base: other.yaml` (relative to this file): that file's settings first, this file's win.
        # Ablation configs use it so each one shows only the idea it changes.
        name = data.pop("base")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{path}:{lines.get('base', '?')}: `base` names the config file "
                              "this one builds on (e.g. base: ../demo.yaml); give one or remove "
                              "the line.")
        base = p.parent / name
        seen = (*chain, p.resolve())
        if base.resolve() in seen:
            loop = " -> ".join(str(x) for x in (*seen, base.resolve()))
            raise ConfigError(f"{path}: `base` makes a loop ({loop}).")
        args, where = _yaml_to_args(str(base), seen)
    for key, value in data.items():
        flag = f"--{key}"
        where.pop(f"list:{key}", None)  # this file sets it again: a base file's list goes
        if value is None:  # `key:` with nothing: parse_config's _resolve_nulls decides
            if key in where:  # where a base file set it, for "remove the line" advice
                where[f"prev:{key}"] = where[key]
            args += [flag, _NULL]
        elif isinstance(value, bool):
            args += [flag, "true" if value else "false"]
        elif isinstance(value, list):
            if len(value) > 1:  # one item is one value, for a list field or not
                where[f"list:{key}"] = f"{path}:{lines.get(key, '?')}"
            args += [flag, *[json.dumps(v) if isinstance(v, dict) else str(v) for v in value]]
        elif isinstance(value, dict):
            args += [flag, json.dumps(value)]
        else:
            args += [flag, str(value)]
    # keys from a YAML merge (`<<: *defaults`) have no line of their own: the file, at least
    where.update({key: f"{path}:{lines.get(key, '?')}" for key in data})
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
    except BrokenPipeError:  # `... | head` closed the pipe: the reader has what it wanted
        import os
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        sys.exit(141)
