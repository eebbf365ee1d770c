"""The other ranks wait for the main process's build however long it takes."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.conftest import ROOT, run_env

# Two gloo processes whose group times out after 3 s; the main one "builds" for 7 s. A
# collective (the old wait) would fail at 3 s; the store's key takes its own timeout.
SCRIPT = r"""
import os, sys, time
from datetime import timedelta
import torch.distributed as dist
import torch.multiprocessing as mp

def run(rank, port, out, ok):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=3))
    from augment.distributed import announce_variants, await_variants
    state = type("S", (), {"num_processes": 2, "is_main_process": rank == 0})()
    t0 = time.time()
    try:
        if rank == 0:
            time.sleep(7)
            announce_variants(state, ok=ok == "ok")
        else:
            await_variants(state)
        result = "waited"
    except Exception as e:
        result = type(e).__name__ + ": " + str(e)
    open(f"{out}/rank{rank}", "w").write(f"{time.time() - t0:.1f} {result}")

if __name__ == "__main__":
    mp.spawn(run, args=(int(sys.argv[1]), sys.argv[2], sys.argv[3]), nprocs=2)
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_other_ranks_wait_past_the_groups_timeout_and_hear_of_a_failed_build(tmp_path):
    script = tmp_path / "wait.py"
    script.write_text(SCRIPT)
    for outcome in ("ok", "failed"):
        out = tmp_path / outcome
        out.mkdir()
        proc = subprocess.run([sys.executable, str(script), str(_port()), str(out), outcome],
                              cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        seconds, result = (out / "rank1").read_text().split(" ", 1)
        assert float(seconds) >= 6.5   # waited for the whole "build"
        if outcome == "ok":
            assert result == "waited"
        else:
            assert result.startswith("AugtuneError: the main process stopped while building")
