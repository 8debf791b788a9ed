"""File I/O through io_uring (`iouring`) and through positional reads and writes (`psync`).

Both run in the same harness so the comparison is fair (gpubench.bench.io.measure): the same
scratch file, offsets, block size and latency accounting; only the engine differs. A job is one
process with one ring (or, for psync, `qd` threads); jobs > 1 run in separate processes
(gpubench.bench.io.pool) and their figures are merged: throughputs add up, latency histograms add
up. The liburing binding is used only through gpubench.bench.engines (uring_binding, uring), and only after the
probe loaded it safely in a child process.

    plan     the matrix per size, --param overrides, the run's settings, validation
    measure  the case's file and jobs, one repetition, verify read-back, the fio cross-check
    pool     the jobs of a case, in this process or in child processes
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Callable, ClassVar

from gpubench.bench.core.interface import Case, Context, Sample
from gpubench.bench.core.settings import RunSettings, Setting
from gpubench.bench.io import measure
from gpubench.bench.io.plan import IOURING_OPTIONS, PSYNC_OPTIONS, SETTINGS, IoParams, plan_cases
from gpubench.probe.model import Profile, Status
from gpubench.probe.views import IoUringView


class _FileBenchmark:
    key: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = IOURING_OPTIONS
    honours: ClassVar[frozenset[Setting]] = SETTINGS
    description: ClassVar[str]
    engine: ClassVar[str]

    def cases(self, profile: Profile, size: str, options: dict[str, str],
              settings: RunSettings = RunSettings()) -> list[Case]:
        return [Case(p.case_name(), p.to_params(), "MB/s") for p in plan_cases(self.engine, size, options, settings)]

    def prepare(self, case: Case, ctx: Context) -> AbstractContextManager[Callable[[], Sample]]:
        return measure.prepare(IoParams(self.engine, **case.params), ctx)


class IoUring(_FileBenchmark):
    key: ClassVar[str] = "iouring"
    engine: ClassVar[str] = "iouring"
    description: ClassVar[str] = (
        "File reads and writes through io_uring (liburing): throughput, IOPS and completion "
        "latency per pattern, block size, queue depth and job count; O_DIRECT or buffered"
    )

    def requires(self, profile: Profile) -> str | None:
        return iouring_waiver(profile)


class Psync(_FileBenchmark):
    key: ClassVar[str] = "psync"
    engine: ClassVar[str] = "psync"
    options: ClassVar[tuple[str, ...]] = PSYNC_OPTIONS
    description: ClassVar[str] = (
        "The baseline: positional reads and writes (preadv/pwritev) from threads, one I/O per "
        "thread in flight, on the same files and patterns as iouring"
    )

    def requires(self, profile: Profile) -> str | None:
        return None


def iouring_waiver(profile: Profile) -> str | None:
    """Why io_uring cannot be measured on the probed machine, or None."""
    view = IoUringView.from_profile(profile)
    if view.config == "n":
        return "the kernel was built without io_uring (CONFIG_IO_URING is not set)"
    if view.disabled == 2:
        return ("io_uring is switched off: sysctl kernel.io_uring_disabled = 2 "
                "(sysctl -w kernel.io_uring_disabled=0 allows it)")
    if view.kernel is not None and view.kernel.status is Status.NO:
        return view.kernel.why or "the probe found io_uring unavailable"
    return _binding_waiver(view)


def _binding_waiver(view: IoUringView) -> str | None:
    binding = view.binding
    if binding is None or not binding.probed:
        why = binding.why if binding is not None else "the probe did not check it"
        return f"the liburing binding was not checked in a child process ({why}); run the iouring probe area"
    if not view.binding_loaded:
        reason = view.binding_error or binding.why or "it failed to load"
        return f"the liburing binding cannot be used here: {reason}" + (f" ({binding.fix})" if binding.fix else "")
    if not view.binding_ring:
        err = view.binding_errno
        how = os.strerror(err) if err else view.binding_error or "unknown error"
        if view.disabled == 1:
            return (f"no io_uring ring could be created ({how}): sysctl kernel.io_uring_disabled = 1 "
                    f"limits rings to kernel.io_uring_group and CAP_SYS_ADMIN")
        return f"no io_uring ring could be created ({how})"
    return None
