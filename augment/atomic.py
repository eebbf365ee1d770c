"""Write a file whole or not at all.

Reports, results and state files are read back by later runs (a resume, a sweep's rerun,
`augment.robustness --write`); a kill while one is being written must leave the old file or the
new one, never half of one. The text goes to a sibling temporary file named after this process
(two processes writing the same file never share one), then `os.replace` swaps it in: atomic on
one filesystem, which a sibling always is."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def write_atomic(path, write: Callable[[Path], object]) -> Path:
    """Have `write(tmp)` write the whole file to a sibling temporary path, then swap it in for
    `path` (its folder made); returns the path. For writers that take a path (a plot's
    savefig); text goes through `write_text_atomic`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left when writing or replacing failed
    return path


def write_text_atomic(path, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically, making its folder; returns the path."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding=encoding))
