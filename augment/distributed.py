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


#: The key through which the main process tells the others its build is over (numbered per
#: call, as every rank calls `prepare` the same number of times).
_READY_KEY = "augtune/variants-ready"
_calls = {"announce": 0, "await": 0}
#: How long the other ranks wait for the main process's build: a build against a real API can
#: take hours, far past a collective's timeout (NCCL/gloo default 30 min, `ddp_timeout`), so
#: they wait on the process group's key-value store instead, which takes its own timeout.
BUILD_WAIT = 7 * 24 * 3600


def announce_variants(state, ok: bool) -> None:
    """Main process: the build is over (ok) or failed; the other ranks stop waiting."""
    if state.num_processes > 1 and state.is_main_process:
        from torch.distributed.distributed_c10d import _get_default_store
        _calls["announce"] += 1
        _get_default_store().set(f"{_READY_KEY}/{_calls['announce']}", "ok" if ok else "failed")


def await_variants(state, timeout_s: float = BUILD_WAIT) -> None:
    """Other ranks: wait (up to `timeout_s`) until the main process has built the variants."""
    if state.num_processes == 1 or state.is_main_process:
        return
    from datetime import timedelta

    from torch.distributed.distributed_c10d import _get_default_store

    from .errors import AugtuneError
    store = _get_default_store()
    _calls["await"] += 1
    key = f"{_READY_KEY}/{_calls['await']}"
    store.wait([key], timedelta(seconds=timeout_s))
    if store.get(key) != b"ok":
        raise AugtuneError("the main process stopped while building the variants; its error "
                           "is in its log.")


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
