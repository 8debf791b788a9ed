"""The io_uring engine: one ring on one file and the loops that keep its queue full.

Every call into the PyPI `liburing` binding outside of loading it (gpubench.bench.engines.uring_binding)
lives here. Named constants are not relied on: builds made with recent Cython lack them, so the
kernel's uapi numbers are used.
"""

from __future__ import annotations

import os
import time

from gpubench.bench.engines.uring_binding import load_liburing

# --- the measuring loop ----------------------------------------------------------------------
# uapi numbers (include/uapi/linux/io_uring.h); builds made with recent Cython lack the names
SETUP_SQPOLL = 1 << 1
SETUP_COOP_TASKRUN = 1 << 8
SETUP_SINGLE_ISSUER = 1 << 12
SETUP_DEFER_TASKRUN = 1 << 13
SQE_FIXED_FILE = 1 << 0
LATENCY_QUANTUM_SHIFT = 5  # the loop counts latencies in 32 ns steps


class UringJob:
    """One ring on one file: buffers, sqes and the loop that keeps `queue_depth` I/Os in flight.

    Each slot owns a page-aligned buffer and a private sqe (user_data = slot number, never 0)
    that is prepared in place and copied into the ring with io_uring_put_sqe. Completions are
    reaped with cq_ready + peek_cqe + indexed access, never past the end of the CQ ring, then
    released with one cq_advance. Registered buffers and files are used when the kernel and
    RLIMIT_MEMLOCK allow; otherwise readv/writev with one iovec per slot, and `facts` says so.
    """

    def __init__(self, spec):
        liburing = load_liburing()

        from gpubench.bench.engines.iofile import aligned_buffer, pattern_block

        self.L = liburing
        self.spec = spec
        self.facts: dict = {}
        self.fd = os.open(spec.path, spec.open_flags())
        self.ring = None
        try:
            self._open_ring()
            qd, bs = spec.queue_depth, spec.block_size
            self.bufs = [None] + [aligned_buffer(bs) for _ in range(qd)]
            # prep_*_fixed takes only bytes or bytearray: the aligned bytearray behind each view
            self.fixed_bufs = [None] + [b.obj for b in self.bufs[1:]]
            if spec.writes:
                fill = os.urandom(bs)
                for ud in range(1, qd + 1):
                    self.bufs[ud][:] = fill if not spec.verify else pattern_block(0, bs)
            self.sqes = [None] + [liburing.io_uring_sqe() for _ in range(qd)]
            for ud in range(1, qd + 1):
                self.sqes[ud].user_data = ud
            self._register()
            from gpubench.bench.engines.iojob import offsets, primed, read_choices

            self.next_offset = primed(offsets(spec))
            self.next_is_read = primed(read_choices(spec))
        except BaseException:
            self.close()
            raise

    def _open_ring(self) -> None:
        L, spec = self.L, self.spec
        entries = 1 << max(spec.queue_depth - 1, 0).bit_length()
        if spec.sqpoll:
            attempts = [SETUP_SQPOLL]
        else:
            attempts = [SETUP_SINGLE_ISSUER | SETUP_DEFER_TASKRUN, SETUP_COOP_TASKRUN, 0]
        error = None
        for flags in attempts:
            ring = L.io_uring()
            try:
                L.io_uring_queue_init(entries, ring, flags)
            except OSError as e:
                error = e
                continue
            self.ring, self.setup_flags = ring, flags
            break
        if self.ring is None:
            raise error
        self.cq_entries = 2 * entries  # io_uring_queue_init asks for no CQSIZE: the CQ is twice the SQ
        self.facts["ring"] = {"entries": entries, "setup_flags": hex(self.setup_flags)}
        # I/Os reaped per wake-up: one for buffered I/O (the kernel completes it inline); under
        # O_DIRECT an eighth of the queue, so that a wake-up does not come per completion
        self.reap_batch = self.facts["reap_batch"] = max(1, spec.queue_depth // 8) if spec.direct else 1

    def _register(self) -> None:
        L, spec = self.L, self.spec
        qd = spec.queue_depth
        self.fixed_buffers = False
        if spec.registered_buffers:
            try:
                L.io_uring_register_buffers(self.ring, L.iovec(self.bufs[1:]), qd)
                self.fixed_buffers = True
                self.facts["buffers"] = "registered"
            except OSError as e:
                self.facts["buffers"] = (
                    f"unregistered: io_uring_register_buffers refused {qd} x {spec.block_size} bytes "
                    f"({os.strerror(e.errno)}; RLIMIT_MEMLOCK {_memlock_text()})"
                )
        else:
            self.facts["buffers"] = "unregistered (as asked)"
        self.iovs = [None] + [None if self.fixed_buffers else L.iovec(b) for b in self.bufs[1:]]
        self.file_arg = self.fd
        if spec.registered_files:
            try:
                L.io_uring_register_files(self.ring, [self.fd])
                self.file_arg = 0
                for sqe in self.sqes[1:]:
                    sqe.flags = SQE_FIXED_FILE
                self.facts["files"] = "registered"
            except OSError as e:
                self.facts["files"] = f"unregistered: io_uring_register_files failed ({os.strerror(e.errno)})"
        else:
            self.facts["files"] = "unregistered (as asked)"

    def close(self) -> None:
        if self.ring is not None:
            self.L.io_uring_queue_exit(self.ring)
            self.ring = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def run(self, seconds: float, io_limit: int = 0, generation: int = 1):
        """Keep queue_depth I/Os in flight for `seconds` (or until io_limit bytes were issued),
        then drain. Returns gpubench.bench.engines.iofile.JobTotals.

        Latency of an I/O is its completion latency as the loop sees it: from the clock read just
        before the io_uring_enter that submitted it to the clock read just after the wake-up that
        reaped it (every I/O submitted or reaped by one system call shares that call's time)."""
        if not self.spec.verify and self.spec.read_percent in (0, 100):
            return self._run_one_direction(seconds, io_limit)
        return self._run_general(seconds, io_limit, generation)

    def _run_one_direction(self, seconds: float, io_limit: int):
        """The loop for reads only or writes only, without verify: the least Python per I/O.
        Offsets come from a list filled in bulk; latencies go into an int64 array that numpy
        folds into the histogram."""
        import array

        from gpubench.bench.engines.iojob import JobTotals, LatencyHistogram, io_count, io_error

        L, spec, reap_batch = self.L, self.spec, self.reap_batch
        ring, sqes, fixed_bufs, iovs, fd = self.ring, self.sqes, self.fixed_bufs, self.iovs, self.file_arg
        qd, bs = spec.queue_depth, spec.block_size
        fixed, reading = self.fixed_buffers, spec.read_percent >= 100
        if fixed:
            prep = L.io_uring_prep_read_fixed if reading else L.io_uring_prep_write_fixed
        else:
            prep_readv, prep_writev = L.io_uring_prep_readv, L.io_uring_prep_writev
        put, submit_and_wait = L.io_uring_put_sqe, L.io_uring_submit_and_wait
        cq_ready, peek, cq_advance = L.io_uring_cq_ready, L.io_uring_peek_cqe, L.io_uring_cq_advance
        clock = time.perf_counter_ns
        refill = self._offset_block
        offs = refill()
        n_offs = len(offs)
        cqe = L.io_uring_cqe()
        cq_entries = self.cq_entries
        cq_mask = cq_entries - 1
        head = getattr(self, "_cq_head", 0)
        slot_offset = [0] * (qd + 1)
        slot_time = [0] * (qd + 1)
        latencies = array.array("q")
        record = latencies.append
        hist = LatencyHistogram()
        done = 0
        problem = ""
        limit = io_count(io_limit, bs)
        fresh = self._fill_queue(offs, slot_offset, min(qd, limit))
        k = issued = in_flight = len(fresh)
        issuing = issued < limit
        start = now = clock()
        stop = start + int(seconds * 1e9)
        while in_flight:
            t_submit = clock()
            for ud in fresh:
                slot_time[ud] = t_submit
            submit_and_wait(ring, reap_batch if reap_batch <= in_flight else in_flight)
            now = clock()
            if issuing and now >= stop:
                issuing = False
            fresh = []
            again = fresh.append
            ready = cq_ready(ring)
            while ready:
                peek(ring, cqe)
                chunk = cq_entries - (head & cq_mask)
                if chunk > ready:
                    chunk = ready
                for i in range(chunk):
                    c = cqe[i]
                    ud = c.user_data
                    record(now - slot_time[ud])
                    if c.res != bs:
                        if not problem:
                            problem = str(io_error("read" if reading else "write", slot_offset[ud], bs, c.res,
                                                   spec.path))
                        issuing = False
                        done -= 1
                    if issuing:  # the next I/O is prepared inline, as in the first fill above: a call per I/O costs more
                        if k == n_offs:
                            offs, k = refill(), 0
                            n_offs = len(offs)
                        off = offs[k]
                        k += 1
                        slot_offset[ud] = off
                        if fixed:
                            prep(sqes[ud], fd, fixed_bufs[ud], bs, off, ud - 1)
                        elif reading:
                            prep_readv(sqes[ud], fd, iovs[ud], off)
                        else:
                            prep_writev(sqes[ud], fd, iovs[ud], 1, off)
                        put(ring, sqes[ud])
                        again(ud)
                        issued += 1
                        if issued >= limit:
                            issuing = False
                    else:
                        in_flight -= 1
                cq_advance(ring, chunk)
                head += chunk
                ready -= chunk
                done += chunk
                if len(latencies) >= 1 << 20:
                    _fold(hist, latencies)
                    latencies = array.array("q")
                    record = latencies.append
        self._cq_head = head
        self._offsets_left = offs[k:]
        _fold(hist, latencies)
        reads, writes = (done, 0) if reading else (0, done)
        return JobTotals(reads, writes, done * bs, (now - start) / 1e9, hist, dict(self.facts), problem)

    def _fill_queue(self, offsets: list[int], slot_offset: list[int], count: int) -> list[int]:
        """Queue the first `count` I/Os of a one-direction run, at the first offsets, one per slot
        from slot 1 (the loop then prepares each slot's next I/O inline); the slots queued."""
        L, spec, sqes, fd = self.L, self.spec, self.sqes, self.file_arg
        reading = spec.read_percent >= 100
        for ud in range(1, count + 1):
            off = slot_offset[ud] = offsets[ud - 1]
            if self.fixed_buffers:
                prep = L.io_uring_prep_read_fixed if reading else L.io_uring_prep_write_fixed
                prep(sqes[ud], fd, self.fixed_bufs[ud], spec.block_size, off, ud - 1)
            elif reading:
                L.io_uring_prep_readv(sqes[ud], fd, self.iovs[ud], off)
            else:
                L.io_uring_prep_writev(sqes[ud], fd, self.iovs[ud], 1, off)
            L.io_uring_put_sqe(self.ring, sqes[ud])
        return list(range(1, count + 1))

    def _offset_block(self) -> list[int]:
        """The next offsets, many at a time: what a repetition left over comes first, with a fresh
        block behind it when fewer than a queue's worth are left (the first fill takes that many
        without looking for the end)."""
        left = getattr(self, "_offsets_left", None) or []
        self._offsets_left = None
        if len(left) >= self.spec.queue_depth:
            return left
        draw = self.next_offset
        return left + [draw() for _ in range(65536)]

    def _run_general(self, seconds: float, io_limit: int, generation: int):
        """Any mix of reads and writes, with or without verify."""
        from gpubench.bench.engines.iofile import block_problem, pattern_block
        from gpubench.bench.engines.iojob import JobTotals, LatencyHistogram, io_count, io_error

        L, spec, reap_batch = self.L, self.spec, self.reap_batch
        ring, sqes, bufs, fixed_bufs, iovs, fd = (
            self.ring, self.sqes, self.bufs, self.fixed_bufs, self.iovs, self.file_arg)
        qd, bs, verify = spec.queue_depth, spec.block_size, spec.verify
        fixed = self.fixed_buffers
        prep_read_fixed, prep_write_fixed = L.io_uring_prep_read_fixed, L.io_uring_prep_write_fixed
        prep_readv, prep_writev = L.io_uring_prep_readv, L.io_uring_prep_writev
        put, submit_and_wait = L.io_uring_put_sqe, L.io_uring_submit_and_wait
        cq_ready, peek, cq_advance = L.io_uring_cq_ready, L.io_uring_peek_cqe, L.io_uring_cq_advance
        clock = time.perf_counter_ns
        next_offset = self.next_offset
        mixed = 0 < spec.read_percent < 100
        next_is_read = self.next_is_read
        all_reads = spec.read_percent >= 100
        cqe = L.io_uring_cqe()
        cq_mask = self.cq_entries - 1
        head = getattr(self, "_cq_head", 0)
        quantum = LATENCY_QUANTUM_SHIFT

        slot_offset = [0] * (qd + 1)
        slot_read = [all_reads] * (qd + 1)
        slot_time = [0] * (qd + 1)
        lat: dict[int, int] = {}
        in_flight_offsets: set[int] = set()
        reads = writes = 0
        lat_max = 0
        problem = ""
        issued = 0
        limit = io_count(io_limit, bs)

        def prepare(ud: int) -> None:
            nonlocal issued
            off = next_offset()
            if verify:
                while off in in_flight_offsets:
                    off = next_offset()
                in_flight_offsets.add(off)
            is_read = next_is_read() if mixed else all_reads
            slot_offset[ud] = off
            slot_read[ud] = is_read
            if is_read:
                if fixed:
                    prep_read_fixed(sqes[ud], fd, fixed_bufs[ud], bs, off, ud - 1)
                else:
                    prep_readv(sqes[ud], fd, iovs[ud], off)
            else:
                if verify:
                    bufs[ud][:] = pattern_block(off, bs, generation)
                if fixed:
                    prep_write_fixed(sqes[ud], fd, fixed_bufs[ud], bs, off, ud - 1)
                else:
                    prep_writev(sqes[ud], fd, iovs[ud], 1, off)
            put(ring, sqes[ud])
            issued += 1

        start = clock()
        stop = start + int(seconds * 1e9)
        fresh = []
        for ud in range(1, qd + 1):
            if issued >= limit:
                break
            prepare(ud)
            fresh.append(ud)
        in_flight = len(fresh)
        issuing = True
        now = start
        while in_flight:
            t_submit = clock()
            for ud in fresh:
                slot_time[ud] = t_submit
            submit_and_wait(ring, reap_batch if reap_batch <= in_flight else in_flight)
            now = clock()
            ready = cq_ready(ring)
            if issuing and (now >= stop or issued >= limit):
                issuing = False
            fresh = []
            while ready:
                peek(ring, cqe)
                chunk = self.cq_entries - (head & cq_mask)
                if chunk > ready:
                    chunk = ready
                for i in range(chunk):
                    c = cqe[i]
                    res = c.res
                    ud = c.user_data
                    if res != bs:
                        if not problem:
                            problem = str(io_error("read" if slot_read[ud] else "write",
                                                   slot_offset[ud], bs, res, spec.path))
                        issuing = False
                    elif slot_read[ud]:
                        reads += 1
                        if verify and not problem:
                            mismatch = block_problem(bufs[ud], slot_offset[ud])
                            if mismatch:
                                problem = f"verify failed: {mismatch}"
                                issuing = False
                    else:
                        writes += 1
                    if verify:
                        in_flight_offsets.discard(slot_offset[ud])
                    d = now - slot_time[ud]
                    if d > lat_max:
                        lat_max = d
                    d >>= quantum
                    lat[d] = lat.get(d, 0) + 1
                    if issuing:
                        prepare(ud)
                        fresh.append(ud)
                        if issued >= limit:
                            issuing = False
                    else:
                        in_flight -= 1
                cq_advance(ring, chunk)
                head += chunk
                ready -= chunk
        self._cq_head = head
        hist = LatencyHistogram()
        hist.add_raw(lat, lat_max, quantum)
        return JobTotals(reads, writes, (reads + writes) * bs, (now - start) / 1e9, hist, dict(self.facts), problem)


def _fold(hist, latencies) -> None:
    """Add raw ns latencies (an int64 array) to a LatencyHistogram."""
    if not latencies:
        return
    import numpy as np

    values = np.frombuffer(latencies, dtype=np.int64)
    quanta, counts = np.unique(values >> LATENCY_QUANTUM_SHIFT, return_counts=True)
    hist.add_raw(dict(zip(quanta.tolist(), counts.tolist())), int(values.max()), LATENCY_QUANTUM_SHIFT)


def _memlock_text() -> str:
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return "unlimited" if soft == resource.RLIM_INFINITY else f"{soft // 1024} KiB"
