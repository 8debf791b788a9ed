"""How fast the machine itself runs: a fixed piece of user-space work, timed before every repetition.

On a shared or virtual machine the host slows every process down for seconds at a time (busy
neighbours on the same cores), and a kernel can do the same for user space (CPU frequency governor,
mitigations). Either way every case that leans on the CPU moves with it. The reference is CRC-32
over a buffer that stays in the CPU cache: no system call, no memory traffic, nothing else. It
times the CPU while it runs (the faster of two short passes), so processes competing for the same
CPUs inside the machine do not slow it. Its readings, kept with each sample (HOST_SPEED_KEY), let a
comparison say when the machine itself ran at a different speed on the two sides
(results.model.machine_speed).
"""

from __future__ import annotations

import time
import zlib

_BUFFER = bytes(range(256)) * 256  # 64 KiB: stays in the CPU cache
_PASSES = 64  # about 1 ms of work on a current CPU


def reference() -> float:
    """MB/s of CRC-32 over an in-cache buffer; the faster of two passes, so one interrupt does not count."""
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        for _ in range(_PASSES):
            zlib.crc32(_BUFFER)
        best = min(best, time.perf_counter() - start)
    return _PASSES * len(_BUFFER) / max(best, 1e-9) / 1e6
