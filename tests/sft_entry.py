"""Test helper: train/sft.py's entry point (`run_cli(main, argv)`) for many argument lists in ONE
Python process, one case per line of JSON on stdin, one result per line on stdout.

Why: each bad-input case fails in its first second, after ~5 s of importing torch, transformers
and TRL; one process per case made these checks about a minute of the default test run. A case
gets its own stderr, stdout and exit code (and the environment as it was before the case),
exactly as `run_cli` would give a process (exit 2 and one `augtune: error:` line for a user-fixable problem; an escaped exception
is printed as a traceback with exit 1, as Python would). The process-level contract itself is
still proven by one real `python train/sft.py` run per test file (`run_sft` there).

    {"argv": [...]}  ->  {"returncode": 2, "stderr": "...", "stdout": "..."}
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "AUGTUNE-SFT-ENTRY-RESULT "


def main() -> None:
    spec = importlib.util.spec_from_file_location("augtune_sft_entry", ROOT / "train" / "sft.py")
    sft = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sft)
    out = sys.stdout
    for line in sys.stdin:
        case = json.loads(line)
        saved = dict(os.environ)  # what a case's run sets must not leak into the next case
        err, std, code = io.StringIO(), io.StringIO(), 0
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
            try:
                sft.run_cli(sft.main, case["argv"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # what would have ended a real process with a traceback
                traceback.print_exc()
                code = 1
        os.environ.clear()
        os.environ.update(saved)
        out.write(MARK + json.dumps({"returncode": code, "stderr": err.getvalue(),
                                     "stdout": std.getvalue()}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
