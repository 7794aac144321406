"""Process-wide settings that make CPU training faster; applications opt in.

The fast path (``rnnzoo.fused``) writes every step into buffers of (T, B, ...) that are
tens of megabytes. glibc's malloc hands such blocks straight back to the kernel when
they are freed, so every forward pass touches fresh pages and pays a page fault per
4 KiB: about 18 ms for a 64 MB buffer on the benchmark machine, as much as the
arithmetic. Keeping freed memory in the heap makes the next pass reuse warm pages.

Kept memory must not outlive its use: a run's working set shrinks after each epoch's
training (the autograd buffers are gone) and after each evaluation, and what was freed
then would otherwise stay resident until the process ends. ``release_free_memory()``
(glibc's ``malloc_trim``) hands it back at those points, once per epoch: the next
epoch's first step faults those pages in again (about 18 ms per 64 MB, once per
epoch), every later step reuses them. A lower trim threshold would not do: once the
heap's free top passes it, glibc returns all of it, so a model whose step frees more
than the threshold would fault its buffers in on every step again.

This changes the whole process's allocator, so a library never does it on import:
the ``rnnzoo`` command and the benchmark scripts call ``tune_cpu_allocator()``.
``RNNZOO_MALLOC=system`` leaves the allocator alone. (Preloading jemalloc or tcmalloc,
as PyTorch's CPU tuning guide suggests, has the same effect.)

``LoadSampler`` records how busy the machine was while something was timed, so that a
benchmark's JSON says whether its timings were taken on an idle machine.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

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
    # trimmed back to the kernel below 2 GiB of free space: a step's large buffers
    # reuse the pages the previous step freed. The trainer gives the rest back where
    # its working set shrinks (release_free_memory).
    ok = mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1
    return bool(ok and mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1) == 1)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None (not Linux, or a C library without it)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        return None if name is None else ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # musl has no malloc_trim
        return None


def release_free_memory() -> bool:
    """Give the memory that malloc holds free back to the kernel; True if any went.

    For the points where a run's working set shrinks (after an epoch's training, after
    evaluation). A no-op where the C library has no ``malloc_trim``, and under
    ``RNNZOO_MALLOC=system``, which leaves the allocator alone."""
    trim = _malloc_trim()
    if trim is None or os.environ.get("RNNZOO_MALLOC", "") == "system":
        return False
    return bool(trim(0))


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


IDLE_MARGIN = 0.5  # load above the core count plus this means other work shared the cores


def cpu_cores() -> int:
    """The cores this process may run on (a container's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _load_now() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has no load average
        return None


class LoadSampler:
    """The 1-minute load average, sampled in a background thread while a timing runs.

    A time measured while other work shares the cores says little about the code, and a
    load read only before and after a run misses a job that came and went during it.
    ``record()`` gives what a benchmark's JSON keeps beside the timing::

        with LoadSampler() as load:
            seconds = time_the_thing()
        row = {"seconds": seconds, "load": load.record()}

    The kernel refreshes the load average every 5 seconds, so a shorter interval only
    repeats samples; the first and last samples are taken on entry and exit.
    """

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LoadSampler:
        self._sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        load = _load_now()
        if load is not None:
            self.samples.append(load)

    def record(self) -> dict[str, Any]:
        """Max and mean of the samples, their count and the core count, for a JSON."""
        cores = cpu_cores()
        if not self.samples:
            return {"max": None, "mean": None, "samples": 0, "cores": cores, "idle": None}
        worst = max(self.samples)
        return {
            "max": round(worst, 2),
            "mean": round(sum(self.samples) / len(self.samples), 2),
            "samples": len(self.samples),
            "interval_s": self.interval_s,
            "cores": cores,
            "idle": worst <= cores + IDLE_MARGIN,
        }


def merge_load(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One record for several timed runs: the worst max, the sample-weighted mean."""
    known = [r for r in records if r.get("samples")]
    cores = max((r["cores"] for r in records), default=cpu_cores())
    if not known:
        return {"max": None, "mean": None, "samples": 0, "cores": cores, "idle": None}
    count = sum(r["samples"] for r in known)
    worst = max(r["max"] for r in known)
    return {
        "max": worst,
        "mean": round(sum(r["mean"] * r["samples"] for r in known) / count, 2),
        "samples": count,
        "cores": cores,
        "idle": all(r["idle"] for r in known),
    }


def describe_load(record: dict[str, Any]) -> str:
    """The sentence a document puts beside a timing: idle, under load, or not recorded."""
    if not record.get("samples"):
        return "load not recorded"
    numbers = (
        f"1-minute load average at most {record['max']:.1f}, mean {record['mean']:.1f}, "
        f"on {record['cores']} cores"
    )
    return f"idle machine ({numbers})" if record["idle"] else f"under load ({numbers})"
