"""How many CPU threads multibox's torch computations use (`--threads N`, :func:`set_threads`).

Torch starts one OpenMP thread per core whatever else runs, and its threads spin while they wait for
each other; on a busy machine they then wait for cores that another process holds (a 120-step run took
3.5x longer beside one busy process, issue 22). The default is the CPUs this process may run on (its
affinity, which taskset, cgroups' cpusets and schedulers set), less those other processes keep busy
when it starts; bench/contention.py measures the alternatives and docs/threads.md gives the numbers and
the choice. Kept free of torch imports until a thread count is set, so `multibox --help` stays light.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from multibox.errors import UserError

__all__ = ["available_cpus", "busy_cpus", "default_threads", "omp_threads", "set_threads", "torch_threads"]


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; the CPU count where there is none)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def busy_cpus(samples: int = 5, interval: float = 0.01) -> int:
    """CPUs other processes keep busy right now: the median, over a few samples, of the runnable tasks in
    /proc/loadavg ("r/t") less this process; 0 where that file does not exist. Not the load average,
    which lags a minute behind (a run that just ended would still count)."""
    try:
        counts = []
        for _ in range(samples):
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
            time.sleep(interval)
    except (OSError, ValueError, IndexError):
        return 0
    return max(0, sorted(counts)[len(counts) // 2])


def omp_threads() -> int | None:
    """OMP_NUM_THREADS when it holds a positive count (torchrun sets 1 for several processes a node), else None."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def default_threads() -> int:
    """OMP_NUM_THREADS where set (torchrun sets 1 for several processes a node); else this process's share
    of the CPUs it may run on (the affinity, divided among torchrun's LOCAL_WORLD_SIZE processes), less
    the CPUs other processes keep busy now: OpenMP threads that wait for a core another process holds
    spin and stall each other (docs/threads.md, bench/contention.py: 2 threads beside one busy process took
    24.2 s where 1 thread took 13.8 s; alone, 9.8 s with 2 and 13.4 s with 1)."""
    omp = omp_threads()
    if omp is not None:
        return omp
    local = os.environ.get("LOCAL_WORLD_SIZE", "1")
    share = max(1, available_cpus() // (int(local) if local.isdigit() and int(local) > 0 else 1))
    return max(1, min(share, (os.cpu_count() or share) - busy_cpus()))


def set_threads(threads: int | None = None) -> int:
    """Use ``threads`` intra-op threads in this process (default :func:`default_threads`); the count set."""
    count = default_threads() if threads is None else int(threads)
    if count < 1:
        raise UserError(f"threads must be at least 1, not {threads}")
    import torch  # here, not at the top: the command line's --help and --version stay torch-free

    torch.set_num_threads(count)
    return count


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` inside the block (None: left as they are), restored after.
    For the light torch work around another runtime's network (ONNX Runtime, OpenVINO): torch's OpenMP
    threads spin for a while after each parallel op, on the cores that runtime's own threads then need
    (2 cores: an ONNX model's predict ran at 39-53 images/s with 2 torch threads, 81-98 with 1)."""
    if count is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
