"""The io_uring engine: one ring on one file and the loop that keeps its queue full.

Every call into the PyPI `liburing` binding outside of loading it (gpubench.bench.engines.uring_binding)
lives here. Named constants are not relied on: builds made with recent Cython lack them, so the
kernel's uapi numbers are used.
"""

from __future__ import annotations

import array
import os
import time

from gpubench.bench.engines.iofile import aligned_buffer, block_problem, pattern_block
from gpubench.bench.engines.iojob import (
    JobTotals, LatencyHistogram, io_count, io_error, offsets, primed, read_choices,
)
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
        self.L = liburing
        self.spec = spec
        self.facts: dict = {}
        qd = spec.queue_depth
        self.slot_offset = [-1] * (qd + 1)  # what each slot's I/O in flight (or last) does: its offset
        self.slot_read = [spec.read_percent >= 100] * (qd + 1)  # and whether it reads
        self._cq_head = 0  # the completion ring's head, carried from one run to the next
        self._offsets_left: list[int] = []  # offsets a one-direction run drew but did not use
        self.fd = os.open(spec.path, spec.open_flags())
        self.ring = None
        try:
            self._open_ring()
            bs = spec.block_size
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
        then drain. Returns gpubench.bench.engines.iojob.JobTotals.

        Latency of an I/O is its completion latency as the loop sees it: from the clock read just
        before the io_uring_enter that submitted it to the clock read just after the wake-up that
        reaped it (every I/O submitted or reaped by one system call shares that call's time).

        Reads only or writes only, without verify, is the hot path: the loop prepares each slot's
        next I/O inline from a list of offsets drawn in bulk (a call per I/O costs more). A mix of
        reads and writes, or verify, goes through `prepare` and checks what each read brought."""
        L, spec, reap_batch = self.L, self.spec, self.reap_batch
        ring, sqes, fixed_bufs, iovs, fd = self.ring, self.sqes, self.fixed_bufs, self.iovs, self.file_arg
        slot_offset = self.slot_offset
        qd, bs, verify, fixed = spec.queue_depth, spec.block_size, spec.verify, self.fixed_buffers
        reading, mixed = spec.read_percent >= 100, 0 < spec.read_percent < 100
        inline = not (verify or mixed)  # the hot path: the loop prepares each next I/O itself
        prep_fixed = L.io_uring_prep_read_fixed if reading else L.io_uring_prep_write_fixed
        prep_readv, prep_writev = L.io_uring_prep_readv, L.io_uring_prep_writev
        put, submit_and_wait = L.io_uring_put_sqe, L.io_uring_submit_and_wait
        cq_ready, peek, cq_advance = L.io_uring_cq_ready, L.io_uring_peek_cqe, L.io_uring_cq_advance
        clock = time.perf_counter_ns
        refill = self._offset_block
        if inline:
            offs = refill()
            prepare = self._preparer(iter(offs).__next__, generation)  # for the first fill
        else:
            offs = []
            prepare = self._preparer(self.next_offset, generation)
        n_offs = len(offs)
        cqe = L.io_uring_cqe()
        cq_entries = self.cq_entries
        cq_mask = cq_entries - 1
        head = self._cq_head
        slot_time = [0] * (qd + 1)
        latencies = array.array("q")
        record = latencies.append
        hist = LatencyHistogram()
        done = reads = 0  # done: I/Os that moved a whole block; reads among them, counted by _settle
        problem = ""
        limit = io_count(io_limit, bs)
        fresh = list(range(1, min(qd, limit) + 1))
        for ud in fresh:
            prepare(ud)
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
            issuing = issuing and now < stop
            fresh = []
            again = fresh.append
            ready = cq_ready(ring)
            while ready:
                peek(ring, cqe)
                chunk = cq_entries - (head & cq_mask)  # never index past the ring's end
                if chunk > ready:
                    chunk = ready
                if not inline:  # before prepare() reuses a slot's buffer
                    read_count, problem = self._settle(cqe, chunk, problem)
                    reads += read_count
                    issuing = issuing and not problem
                for i in range(chunk):
                    c = cqe[i]
                    ud = c.user_data
                    record(now - slot_time[ud])
                    if c.res != bs:
                        problem = problem or self._failure(ud, c.res)
                        issuing = False
                        done -= 1
                    if not issuing:
                        in_flight -= 1
                        continue
                    if not inline:
                        prepare(ud)
                    else:  # as prepare() does for one direction, without a call per I/O
                        if k == n_offs:
                            offs, k = refill(), 0
                            n_offs = len(offs)
                        off = slot_offset[ud] = offs[k]
                        k += 1
                        if fixed:
                            prep_fixed(sqes[ud], fd, fixed_bufs[ud], bs, off, ud - 1)
                        elif reading:
                            prep_readv(sqes[ud], fd, iovs[ud], off)
                        else:
                            prep_writev(sqes[ud], fd, iovs[ud], 1, off)
                        put(ring, sqes[ud])
                    again(ud)
                    issued += 1
                    issuing = issued < limit
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
        if inline:  # one direction: every I/O done went that way
            reads = done if reading else 0
        return JobTotals(reads, done - reads, done * bs, (now - start) / 1e9, hist, dict(self.facts), problem)

    def _failure(self, ud: int, res: int) -> str:
        """What went wrong with slot ud's I/O, which completed with `res`."""
        op = "read" if self.slot_read[ud] else "write"
        return str(io_error(op, self.slot_offset[ud], self.spec.block_size, res, self.spec.path))

    def _settle(self, cqe, count: int, problem: str) -> tuple[int, str]:
        """In a run that mixes reads and writes or verifies: how many of the next `count`
        completions are reads that moved a whole block, and the run's problem: `problem` when it
        has one already, else under verify what is wrong with the first read block that is not
        intact ("" when none)."""
        slot_read, block_size, verify = self.slot_read, self.spec.block_size, self.spec.verify
        reads = 0
        for i in range(count):
            c = cqe[i]
            ud = c.user_data
            if c.res != block_size or not slot_read[ud]:
                continue
            reads += 1
            if verify and not problem:
                wrong = block_problem(self.bufs[ud], self.slot_offset[ud])
                if wrong:
                    problem = f"verify failed: {wrong}"
        return reads, problem

    def _preparer(self, next_offset, generation: int):
        """prepare(ud): set slot ud up for its next I/O at the next offset and queue it: a read or a
        write by read_percent; under verify, at an offset no other slot has in flight, and a write
        carries the pattern of its offset and generation. It serves the first fill of every run and
        every I/O of a run that mixes reads and writes or verifies."""
        L, spec = self.L, self.spec
        ring, sqes, bufs, fixed_bufs, iovs, fd = (
            self.ring, self.sqes, self.bufs, self.fixed_bufs, self.iovs, self.file_arg)
        slot_offset, slot_read = self.slot_offset, self.slot_read
        bs, verify, fixed = spec.block_size, spec.verify, self.fixed_buffers
        prep_read_fixed, prep_write_fixed = L.io_uring_prep_read_fixed, L.io_uring_prep_write_fixed
        prep_readv, prep_writev, put = L.io_uring_prep_readv, L.io_uring_prep_writev, L.io_uring_put_sqe
        next_is_read = self.next_is_read
        mixed = 0 < spec.read_percent < 100
        all_reads = spec.read_percent >= 100
        in_flight_offsets: set[int] = set()
        slot_offset[:] = [-1] * len(slot_offset)  # no offset of this run is in flight yet

        def prepare(ud: int) -> None:
            off = next_offset()
            if verify:
                in_flight_offsets.discard(slot_offset[ud])  # the slot's last I/O has completed
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

        return prepare

    def _offset_block(self) -> list[int]:
        """The next offsets, many at a time: what a repetition left over comes first, with a fresh
        block behind it when fewer than a queue's worth are left (the first fill takes that many
        without looking for the end)."""
        left = self._offsets_left
        self._offsets_left = []
        if len(left) >= self.spec.queue_depth:
            return left
        draw = self.next_offset
        return left + [draw() for _ in range(65536)]

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
