"""Hand the accepted variants from the main process to every other rank, without a shared disk.

Why: the variant cache is one SQLite file in WAL mode, and SQLite documents that WAL does not work
over network filesystems (NFS, Lustre, SMB: the shared-memory index cannot be shared between
hosts). So on several nodes only the main process opens the cache: it builds what is missing,
loads the accepted variants into numpy tables (`VariantTable`, `RefusalTable`), and broadcasts
them through the process group that accelerate already set up (gloo on CPU, NCCL on GPUs). The
other ranks never open, lock or even look for the file.

The tables are plain numpy arrays and one list of strings, so one pickled broadcast carries them;
at a million variants that is a few hundred MB, once per run, before the first step.
"""

from __future__ import annotations


def share_from_main(state, load):
    """Return `load()` on the main process and its pickled copy on every other rank.

    `state` is accelerate's `PartialState`; `load` is called on the main process only. With one
    process this is just `load()`. Every rank must call this at the same point (a collective)."""
    if state.num_processes == 1:
        return load()
    import torch.distributed as dist

    payload = [load() if state.is_main_process else None]
    # broadcast_object_list pickles on the source rank and sends the bytes; on NCCL it stages
    # them through the current CUDA device, which accelerate has already set per rank.
    dist.broadcast_object_list(payload, src=0)
    return payload[0]


def trace_sqlite_opens(trace_dir: str, rank: int) -> None:
    """Diagnostics for the multi-node test: record every SQLite file this process opens.

    Uses the interpreter's audit hook (`sqlite3.connect` is an audited event), so what it sees is
    what the process really opened, not what our code meant to open."""
    import os
    import sys

    path = os.path.join(trace_dir, f"sqlite-opens-rank{rank}.txt")
    os.makedirs(trace_dir, exist_ok=True)
    open(path, "a").close()  # the file exists even when nothing is opened

    def hook(event, args):
        if event == "sqlite3.connect":
            with open(path, "a") as fh:
                fh.write(f"{args[0]}\n")

    sys.addaudithook(hook)
