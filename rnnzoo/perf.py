"""Process-wide settings that make CPU training faster; applications opt in.

The fast path (``rnnzoo.fused``) writes every step into buffers of (T, B, ...) that are
tens of megabytes. glibc's malloc hands such blocks straight back to the kernel when
they are freed, so every forward pass touches fresh pages and pays a page fault per
4 KiB: about 18 ms for a 64 MB buffer on the benchmark machine, as much as the
arithmetic. Keeping freed memory in the heap makes the next pass reuse warm pages.

This changes the whole process's allocator, so a library never does it on import:
the ``rnnzoo`` command and the benchmark scripts call ``tune_cpu_allocator()``.
``RNNZOO_MALLOC=system`` leaves the allocator alone. (Preloading jemalloc or tcmalloc,
as PyTorch's CPU tuning guide suggests, has the same effect.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def tune_cpu_allocator() -> bool:
    """Keep freed blocks for reuse (glibc only); True if the setting took effect."""
    if os.environ.get("RNNZOO_MALLOC", "") == "system" or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    # Blocks up to 1 GiB come from the heap instead of mmap, and the heap is not
    # trimmed back to the kernel below 2 GiB of free space.
    ok = mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1
    return bool(ok and mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1) == 1)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: CUDA tensors on a GPU, resident set on CPU.

    The CPU figure is the whole process's high-water mark (``ru_maxrss``), so it means
    "this run" only when the run has the process to itself (``rnnzoo train``, or each
    run of ``rnnzoo compare``).
    """
    if device.type == "cuda":
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def available_memory_bytes(device: torch.device) -> int | None:
    """Memory a new allocation can still get: free GPU memory, or the kernel's
    ``MemAvailable`` on CPU; None where it cannot be told."""
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None
