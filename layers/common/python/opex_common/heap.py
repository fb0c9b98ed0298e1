"""Keeping CPython's garbage collector off a long-running process's hot path.

Full collections walk every tracked object. In a server, most of those live
for the whole process (the engine's state; FastAPI's, pydantic's and redis'
objects in the API) and never become garbage, so each full collection is a
pause that grows with them. ``settle`` moves everything alive now into the
permanent generation (``gc.freeze()``): later collections look only at what
was allocated since. Nothing is switched off; cycles made afterwards are
still collected.

``hold_freed_memory`` is the same idea one level down, for glibc's heap.
"""

from __future__ import annotations

import ctypes
import gc


def settle(gen0_threshold: int, *, collect: bool = False, older: tuple[int, int] | None = None) -> None:
    """Freeze what is alive; young collections every ``gen0_threshold`` net
    allocations (CPython's default is 700), the older generations at
    ``older`` (default: unchanged). ``collect`` first so no garbage cycle is
    frozen with the rest; skip it where a full collection is the very pause
    to avoid (a large heap of acyclic objects)."""
    gen1, gen2 = older if older is not None else gc.get_threshold()[1:]
    gc.set_threshold(gen0_threshold, gen1, gen2)
    if collect:
        gc.collect()
    gc.freeze()


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2


def hold_freed_memory(trim_threshold: int = 256 << 20, top_pad: int = 16 << 20) -> bool:
    """Keep memory freed at the top of glibc's heap instead of handing it back
    to the kernel at once. A process that builds and frees many buffers per
    batch (orjson's output starts in a buffer larger than the JSON; objects
    over 512 bytes bypass pymalloc) otherwise has the heap trimmed after each
    batch and faults the same pages in again in the next, a page fault per few
    kilobytes of output. Returns False (nothing changed) where the C library
    has no ``mallopt`` (musl)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold)) and bool(mallopt(_M_TOP_PAD, top_pad))


_MADV_HUGEPAGE = 14
_MADV_COLLAPSE = 25  # Linux 6.1+
_EINVAL = 22
_HUGE = 1 << 21  # 2 MiB on x86-64 and arm64 with 4 KiB pages


def _heap_ranges(min_bytes: int) -> list[tuple[int, int]]:
    """2 MiB-aligned parts of this process's private, writable, anonymous
    mappings (pymalloc's arenas, glibc's [heap] and its mmapped chunks)."""
    out: list[tuple[int, int]] = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if parts[1] != "rw-p" or (len(parts) > 5 and parts[5] != "[heap]"):
                continue  # files, stacks, vdso, shared memory
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            start, end = (lo + _HUGE - 1) & ~(_HUGE - 1), hi & ~(_HUGE - 1)
            if end - start >= min_bytes:
                out.append((start, end))
    return out


def collapse_to_huge_pages(min_bytes: int = _HUGE) -> int | None:
    """Back the process's heap with transparent huge pages (2 MiB) where it
    is dense enough: ``madvise(MADV_HUGEPAGE)`` then ``MADV_COLLAPSE`` on every
    2 MiB-aligned stretch of its anonymous memory.

    What for: ``fork()`` copies the parent's page tables, one entry per 4 KiB
    page; a 2 MiB page is one entry. A snapshot fork of a 300 MB engine goes
    from ~15 ms to ~2 ms. After the fork, the first write to a huge page
    splits its mapping (the kernel copies 4 KiB, not 2 MiB); the next call
    here puts it back together. The system call releases the GIL (ctypes),
    so it can run on a thread while the process works.

    Returns the bytes submitted, or None where this is not possible (not
    Linux, no ``madvise``, or a kernel older than 6.1)."""
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
        ranges = _heap_ranges(min_bytes)
    except (OSError, AttributeError):
        return None
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    done = refused = 0
    for start, end in ranges:
        if madvise(start, end - start, _MADV_HUGEPAGE) != 0:
            refused += 1  # not a mapping huge pages apply to (or gone since the listing)
            continue
        if madvise(start, end - start, _MADV_COLLAPSE) != 0 and ctypes.get_errno() == _EINVAL:
            refused += 1  # no MADV_COLLAPSE in this kernel, or not for this mapping
            continue
        done += end - start  # EAGAIN/ENOMEM: what could be collapsed was
    return None if refused and not done else done
