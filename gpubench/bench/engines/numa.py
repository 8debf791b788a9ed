"""NUMA placement that is real and checked: bind memory to a node, pin threads, verify the pages.

Memory comes from anonymous mmap (page aligned, so mbind accepts the range), is bound with
mbind(MPOL_BIND, MPOL_MF_STRICT | MPOL_MF_MOVE) before the first touch, and is verified after the
first touch with move_pages (which node holds each sampled page) and, as a second opinion, with
/proc/self/numa_maps. A process started for comparison (the C reference) inherits a
set_mempolicy(MPOL_BIND) policy instead, as under `numactl --membind`. The system calls go through
libnuma's thin numaif wrappers when libnuma is installed, else straight to syscall(2). A node that
does not exist is an error from the kernel, never a silent fallback (libnuma's numa_alloc_onnode
falls back silently, so it is not used).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import platform
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

MPOL_DEFAULT = 0
MPOL_PREFERRED = 1
MPOL_BIND = 2
MPOL_INTERLEAVE = 3
MPOL_LOCAL = 4
MPOL_F_NODE = 1 << 0
MPOL_F_ADDR = 1 << 1
MPOL_F_MEMS_ALLOWED = 1 << 2
MPOL_MF_STRICT = 1 << 0
MPOL_MF_MOVE = 1 << 1

POLICY_NAMES = {MPOL_DEFAULT: "default", MPOL_PREFERRED: "preferred", MPOL_BIND: "bind", MPOL_INTERLEAVE: "interleave", MPOL_LOCAL: "local"}

# Large enough for any kernel's node count (CONFIG_NODES_SHIFT <= 10); the kernel clears the excess.
_MASK_BITS = 4096
_WORD_BITS = ctypes.sizeof(ctypes.c_ulong) * 8

# Used only when libnuma is not installed.
_SYSCALL_NUMBERS = {
    "x86_64": {"mbind": 237, "set_mempolicy": 238, "get_mempolicy": 239, "move_pages": 279},
    "aarch64": {"mbind": 235, "get_mempolicy": 236, "set_mempolicy": 237, "move_pages": 239},
    "riscv64": {"mbind": 235, "get_mempolicy": 236, "set_mempolicy": 237, "move_pages": 239},
}


class NumaError(OSError):
    """A placement system call failed; errno and the call are in the message."""


@dataclass(frozen=True)
class Placement:
    """Where the sampled pages of a range live, as move_pages reported them."""

    node: int  # the node they should be on
    pages_checked: int
    on_node: int
    not_present: int  # never touched (ENOENT) or otherwise unreadable
    elsewhere: dict[int, int] = field(default_factory=dict)  # other node -> pages

    @property
    def fraction_on_node(self) -> float:
        return self.on_node / self.pages_checked if self.pages_checked else 0.0

    @property
    def verified(self) -> bool:
        return self.pages_checked > 0 and self.on_node == self.pages_checked

    def describe(self) -> str:
        parts = [f"{self.on_node}/{self.pages_checked} sampled pages on node {self.node}"]
        parts += [f"{n} on node {k}" for k, n in sorted(self.elsewhere.items())]
        if self.not_present:
            parts.append(f"{self.not_present} not present")
        return ", ".join(parts)


@dataclass(frozen=True)
class NumaMapsEntry:
    """One mapping's line of /proc/self/numa_maps."""

    start: int
    policy: str  # e.g. "bind:1", "default"
    pages_by_node: dict[int, int]

    def fraction_on(self, node: int) -> float:
        total = sum(self.pages_by_node.values())
        return self.pages_by_node.get(node, 0) / total if total else 0.0


class _Calls:
    """mbind, get_mempolicy and move_pages, from libnuma or as raw system calls."""

    def __init__(self) -> None:
        self.source = ""
        self._libnuma = None
        name = ctypes.util.find_library("numa")
        if name:
            try:
                self._libnuma = ctypes.CDLL(name, use_errno=True)
                self.source = f"libnuma ({name})"
            except OSError:
                self._libnuma = None
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._numbers = _SYSCALL_NUMBERS.get(platform.machine(), {})
        if self._libnuma is None:
            self.source = "raw system calls" if self._numbers else ""

    @property
    def available(self) -> bool:
        return bool(self.source)

    def _call(self, name: str, *args: object) -> int:
        if self._libnuma is not None:
            fn = getattr(self._libnuma, name)
            fn.restype = ctypes.c_long
            rc = fn(*args)
        elif name in self._numbers:
            self._libc.syscall.restype = ctypes.c_long
            rc = self._libc.syscall(ctypes.c_long(self._numbers[name]), *args)
        else:
            raise NumaError(errno.ENOSYS, f"{name}: no libnuma and no known system call number on {platform.machine()}")
        if rc < 0:
            err = ctypes.get_errno()
            raise NumaError(err, f"{name}: {os.strerror(err)}")
        return int(rc)

    def mbind(self, address: int, length: int, mode: int, mask: ctypes.Array, maxnode: int, flags: int) -> None:
        self._call("mbind", ctypes.c_void_p(address), ctypes.c_ulong(length), ctypes.c_int(mode), mask, ctypes.c_ulong(maxnode), ctypes.c_uint(flags))

    def get_mempolicy(self, mode: ctypes.c_int, mask: ctypes.Array | None, maxnode: int, address: int, flags: int) -> None:
        self._call("get_mempolicy", ctypes.byref(mode), mask, ctypes.c_ulong(maxnode), ctypes.c_void_p(address), ctypes.c_ulong(flags))

    def set_mempolicy(self, mode: int, mask: ctypes.Array | None, maxnode: int) -> None:
        self._call("set_mempolicy", ctypes.c_int(mode), mask, ctypes.c_ulong(maxnode))

    def move_pages(self, pages: ctypes.Array, status: ctypes.Array) -> None:
        self._call("move_pages", ctypes.c_int(0), ctypes.c_ulong(len(pages)), pages, None, status, ctypes.c_int(0))


_calls: _Calls | None = None


def calls() -> _Calls:
    global _calls
    if _calls is None:
        _calls = _Calls()
    return _calls


def _mask(nodes: Iterable[int]) -> ctypes.Array:
    words = (ctypes.c_ulong * (_MASK_BITS // _WORD_BITS))()
    for node in nodes:
        if not 0 <= node < _MASK_BITS:
            raise NumaError(errno.EINVAL, f"node {node} is out of range")
        words[node // _WORD_BITS] |= 1 << (node % _WORD_BITS)
    return words


def _nodes_of(mask: ctypes.Array) -> list[int]:
    return [w * _WORD_BITS + b for w, word in enumerate(mask) for b in range(_WORD_BITS) if word >> b & 1]


def page_size() -> int:
    return mmap.PAGESIZE


def allowed_nodes() -> list[int]:
    """The memory nodes this process may allocate on (its cpuset's mems_allowed)."""
    mode, mask = ctypes.c_int(0), _mask(())
    calls().get_mempolicy(mode, mask, _MASK_BITS, 0, MPOL_F_MEMS_ALLOWED)
    return _nodes_of(mask)


def bind(address: int, length: int, node: int) -> None:
    """Bind [address, address+length) to `node` (MPOL_BIND, strict, moving pages already there).

    The range must be page aligned. Raises NumaError for a node that does not exist or is not
    allowed (EINVAL), and when the kernel cannot bind at all (ENOSYS, EPERM)."""
    if address % page_size():
        raise NumaError(errno.EINVAL, f"mbind: address {address:#x} is not page aligned")
    # maxnode counts one more than the mask's bits: the kernel reads maxnode - 1 bits.
    calls().mbind(address, length, MPOL_BIND, _mask([node]), _MASK_BITS + 1, MPOL_MF_STRICT | MPOL_MF_MOVE)


def set_membind(node: int) -> None:
    """Bind every later allocation of the calling thread, and of processes it starts, to `node`
    (what `numactl --membind` does before it execs). Raises NumaError for a node that does not exist."""
    calls().set_mempolicy(MPOL_BIND, _mask([node]), _MASK_BITS + 1)


def policy_at(address: int) -> tuple[str, list[int]]:
    """The memory policy of the mapping holding `address`: ("bind", [1]), ("default", [])."""
    mode, mask = ctypes.c_int(0), _mask(())
    calls().get_mempolicy(mode, mask, _MASK_BITS, address, MPOL_F_ADDR)
    return POLICY_NAMES.get(mode.value & 0xFF, f"mode {mode.value}"), _nodes_of(mask)


def placement(address: int, length: int, node: int, max_samples: int = 16384) -> Placement:
    """Ask move_pages (without moving anything) which node holds evenly spaced pages of the range."""
    psize = page_size()
    npages = max(1, length // psize)
    step = max(1, npages // max_samples)
    offsets = range(0, npages, step)
    pages = (ctypes.c_void_p * len(offsets))(*[address + i * psize for i in offsets])
    status = (ctypes.c_int * len(offsets))()
    calls().move_pages(pages, status)
    on_node = not_present = 0
    elsewhere: dict[int, int] = {}
    for s in status:
        if s == node:
            on_node += 1
        elif s < 0:
            not_present += 1
        else:
            elsewhere[s] = elsewhere.get(s, 0) + 1
    return Placement(node, len(offsets), on_node, not_present, elsewhere)


_NUMA_MAPS_NODE = re.compile(r"\bN(\d+)=(\d+)")


def numa_maps_entry(address: int, proc: Path = Path("/proc/self")) -> NumaMapsEntry | None:
    """The numa_maps line of the mapping that holds `address` (found through /proc/self/maps)."""
    start = None
    for line in (proc / "maps").read_text().splitlines():
        lo, hi = (int(x, 16) for x in line.split(None, 1)[0].split("-"))
        if lo <= address < hi:
            start = lo
            break
    if start is None:
        return None
    for line in (proc / "numa_maps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and int(fields[0], 16) == start:
            nodes = {int(n): int(p) for n, p in _NUMA_MAPS_NODE.findall(line)}
            return NumaMapsEntry(start, fields[1], nodes)
    return None


class NodeBuffer:
    """Anonymous, page-aligned memory bound to one NUMA node before anything touches it.

    Close it (or use it as a context manager) after every view of it is gone: mmap refuses to
    unmap memory that a numpy array still points to, so a view can never outlive its pages. Where
    a view is still held (a traceback on its way out keeps the measuring frame's arrays), the pages
    go with the last view instead."""

    def __init__(self, nbytes: int, node: int | None, hugepages: bool = True):
        if nbytes <= 0:
            raise ValueError("buffer size must be positive")
        self.node = node
        self.nbytes = nbytes
        self.map = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            anchor = ctypes.c_char.from_buffer(self.map)
            self.address = ctypes.addressof(anchor)
            del anchor
            self.hugepages = False
            if hugepages and hasattr(mmap, "MADV_HUGEPAGE"):
                try:
                    self.map.madvise(mmap.MADV_HUGEPAGE)
                    self.hugepages = True
                except OSError:
                    pass
            if node is not None:
                bind(self.address, nbytes, node)
        except BaseException:
            self.map.close()
            raise

    def placement(self, max_samples: int = 16384) -> Placement:
        if self.node is None:
            raise ValueError("this buffer is not bound to a node")
        return placement(self.address, self.nbytes, self.node, max_samples)

    def close(self) -> None:
        try:
            self.map.close()
        except BufferError:  # still viewed: unmapped when the mmap object goes, after its last view
            pass

    def __enter__(self) -> NodeBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tasks() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def thread_cpus() -> list[int]:
    """Every CPU that some thread of this process may run on now (the union of their affinities)."""
    cpus: set[int] = set()
    for tid in _tasks():
        try:
            cpus |= os.sched_getaffinity(tid)
        except (ProcessLookupError, OSError):
            continue
    return sorted(cpus)


@contextmanager
def pinned(cpus: Iterable[int]) -> Iterator[list[int]]:
    """Pin every thread of this process (numba's workers included) to `cpus`; restore on exit.

    Threads started inside inherit the pinning; on exit they get the process's previous CPU set."""
    wanted = sorted(set(cpus))
    if not wanted:
        raise ValueError("no CPUs to pin to")
    before: dict[int, set[int]] = {}
    for tid in _tasks():
        try:
            before[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, wanted)
        except ProcessLookupError:
            continue
    main_before = before.get(os.getpid(), set(wanted))
    try:
        yield wanted
    finally:
        for tid in _tasks():
            try:
                os.sched_setaffinity(tid, before.get(tid, main_before))
            except (ProcessLookupError, OSError):
                continue
