"""The psync engine: positional reads and writes (os.preadv / os.pwritev) from threads, one I/O
per thread in flight; the baseline io_uring is measured against, on the same files and patterns."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from typing import Any, Callable

from gpubench.bench.engines import iofile, iojob
from gpubench.bench.engines.iojob import JobSpec, JobTotals, LatencyHistogram


class PsyncJob:
    """`qd` threads, each with one I/O in flight through os.preadv / os.pwritev."""

    def __init__(self, spec: JobSpec):
        self.spec = spec
        self.fd = os.open(spec.path, spec.open_flags())
        self.facts = {"threads": spec.queue_depth}

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def run(self, seconds: float, io_limit: int = 0, generation: int = 1) -> JobTotals:
        spec = self.spec
        n = spec.queue_depth
        ios = iojob.io_count(io_limit, spec.block_size)
        ios_each = [ios // n + (i < ios % n) for i in range(n)]  # the job's I/Os, shared out
        specs = [replace(spec, seed=spec.seed * 131 + i, base=base, span=span)
                 for i, (base, span) in enumerate(iojob.regions(spec, n))]
        if n == 1:
            results = [self._thread(specs[0], seconds, ios, generation)]
        else:
            # every thread sets up before any starts, and all run to one deadline, so that the
            # job's time spans all of their I/O (not one thread's, set up while others ran)
            started: list[int] = []
            start_line = threading.Barrier(n, action=lambda: started.append(time.perf_counter_ns()))

            def ready() -> int:
                start_line.wait()
                return started[0]

            results: list[Any] = [None] * n

            def work(i: int) -> None:
                try:
                    results[i] = self._thread(specs[i], seconds, ios_each[i], generation, ready)
                except BaseException as e:
                    start_line.abort()  # the others stop waiting for this one
                    results[i] = e

            threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                raise next((e for e in failures if not isinstance(e, threading.BrokenBarrierError)), failures[0])
        total = JobTotals(facts=dict(self.facts))
        for r, _, _ in results:
            total.reads += r.reads
            total.writes += r.writes
            total.bytes += r.bytes
            total.histogram.merge(r.histogram)
            total.problem = total.problem or r.problem
        total.seconds = (max(end for _, _, end in results) - min(start for _, start, _ in results)) / 1e9
        return total

    def _thread(self, spec: JobSpec, seconds: float, ios: int, generation: int,
                ready: Callable[[], int] = time.perf_counter_ns) -> tuple[JobTotals, int, int]:
        """One thread's I/O, from when `ready` returns the start line (perf_counter ns) until
        `seconds` after it; its totals, and when it started and ended."""
        from gpubench.bench.engines.iofile import block_problem, pattern_block
        from gpubench.bench.engines.iojob import offsets, primed, read_choices

        fd, bs, verify = self.fd, spec.block_size, spec.verify
        buf = iofile.aligned_buffer(bs)
        if spec.writes:
            buf[:] = os.urandom(bs)
        bufs = [buf]
        preadv, pwritev, clock = os.preadv, os.pwritev, time.perf_counter_ns
        next_offset = primed(offsets(spec))
        mixed = 0 < spec.read_percent < 100
        all_reads = spec.read_percent >= 100
        next_is_read = primed(read_choices(spec))
        lat: dict[int, int] = {}
        reads = writes = 0
        lat_max = 0
        problem = ""
        done = 0
        line = ready()
        start = now = clock()
        stop = line + int(seconds * 1e9)
        while now < stop and done < ios:
            off = next_offset()
            is_read = next_is_read() if mixed else all_reads
            if not is_read and verify:
                buf[:] = pattern_block(off, bs, generation)
            t0 = clock()
            n = preadv(fd, bufs, off) if is_read else pwritev(fd, bufs, off)
            now = clock()
            if n != bs:
                problem = str(iojob.io_error("read" if is_read else "write", off, bs, n, spec.path))
                break
            if is_read:
                reads += 1
                if verify:
                    mismatch = block_problem(buf, off)
                    if mismatch:
                        problem = f"verify failed: {mismatch}"
                        break
            else:
                writes += 1
            d = now - t0
            if d > lat_max:
                lat_max = d
            d >>= 5
            lat[d] = lat.get(d, 0) + 1
            done += 1
        hist = LatencyHistogram()
        hist.add_raw(lat, lat_max, 5)
        return JobTotals(reads, writes, (reads + writes) * bs, (now - start) / 1e9, hist, {}, problem), start, now
