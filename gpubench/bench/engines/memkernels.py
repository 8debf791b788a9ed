"""The memtier kernels in numba: STREAM copy/scale/add/triad and a dependent-load pointer chase.

Import this module only where the kernels run (a benchmark's prepare(), the calibration): it
imports numba and compiles lazily, each kernel on its first call (cached on disk afterwards:
beside this file or in the home's cache directory, as numba chooses; where neither is writable, as
on a read-only root filesystem, in a private directory removed at exit; see CACHE).

STREAM conventions: copy c = a; scale b = s*c; add c = a + b; triad a = b + s*c, counting 16, 16,
24 and 24 bytes per element. Each kernel splits the arrays into one contiguous chunk per thread
(as OpenMP's static schedule does), in whole 64-byte blocks so that every chunk starts aligned.

Two store variants: "plain" stores go through the cache (a write allocates the line first:
read-for-ownership), "streaming" stores are non-temporal (vmovntpd on x86-64, stnp on arm64) and
are how STREAM's ceiling is reached on most CPUs. numba cannot emit them from Python code, so a
small LLVM intrinsic stores 8 float64 at once with !nontemporal metadata; each thread ends its
chunk with a store fence. Note that LLVM turns a plain copy loop into a call to memcpy, which in
glibc uses non-temporal stores itself for large sizes: compare copy with copy of the same variant.
"""

from __future__ import annotations

import atexit
import platform
import shutil
import tempfile
from dataclasses import dataclass

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

KERNELS = ("copy", "scale", "add", "triad")
BYTES_PER_ELEMENT = {"copy": 16, "scale": 16, "add": 24, "triad": 24}
STORES = ("streaming", "plain")
BLOCK = 8  # float64 per streaming store: one 64-byte cache line
ALIGNMENT = BLOCK * 8
SCALAR = 3.0  # STREAM's q


@dataclass(frozen=True)
class KernelCache:
    """Where numba keeps this module's compiled kernels, and the sentence a result carries."""

    enabled: bool
    private_dir: str | None  # None: numba's own choice
    note: str


def _where_numba_caches() -> None:
    """Never called: decorating it with cache=True asks numba for a cache of this file's kernels."""


def _numba_can_cache() -> bool:
    try:
        njit(cache=True)(_where_numba_caches)  # looks for a writable cache directory; compiles nothing
    except RuntimeError:  # "cannot cache function ...: no locator available for file ..."
        return False
    return True


def _choose_cache() -> KernelCache:
    """cache=True raises at decoration when neither this package's __pycache__ nor the home's cache
    directory is writable (a container's or a VM guest's read-only root): every kernel would fail.
    Then the kernels compile into a private directory, or without a cache where none can be made."""
    if _numba_can_cache():
        return KernelCache(True, None, "numba's default cache")
    why = "gpubench's package directory and the home's cache directory are not writable"
    try:
        private = tempfile.mkdtemp(prefix="gpubench-numba-")
    except OSError as e:
        return KernelCache(False, None, f"off: {why}, nor the temporary directory ({e.strerror or e}); kernels compile in every run")
    atexit.register(shutil.rmtree, private, ignore_errors=True)
    numba.config.CACHE_DIR = private  # numba reads it whenever a function asks for a cache
    if _numba_can_cache():
        return KernelCache(True, private, f"private directory {private}, removed at exit: {why}")
    return KernelCache(False, None, f"off: {why}, nor {private}; kernels compile in every run")


CACHE = _choose_cache()


def _streaming_block(op: str):
    """An intrinsic storing dst[i:i+8] = op(x[i:i+8], y[i:i+8], s) with one non-temporal store.

    dst + i must be 64-byte aligned (the callers guarantee it); x and y may be unaligned."""

    @intrinsic
    def block(typingctx, dst, x, y, s, i):
        sig = types.void(dst, x, y, s, i)

        def codegen(context, builder, signature, args):
            dst_v, x_v, y_v, s_v, i_v = args
            dst_t, x_t, y_t = signature.args[:3]
            vec_t = ir.VectorType(ir.DoubleType(), BLOCK)

            def pointer(arr_t, arr_v):
                data = context.make_array(arr_t)(context, builder, arr_v).data
                return builder.bitcast(builder.gep(data, [i_v]), vec_t.as_pointer())

            def load(arr_t, arr_v):
                return builder.load(pointer(arr_t, arr_v), align=8)

            def splat(value):
                vec = ir.Constant(vec_t, ir.Undefined)
                for k in range(BLOCK):
                    vec = builder.insert_element(vec, value, ir.Constant(ir.IntType(32), k))
                return vec

            if op == "copy":
                out = load(x_t, x_v)
            elif op == "scale":
                out = builder.fmul(splat(s_v), load(x_t, x_v))
            elif op == "add":
                out = builder.fadd(load(x_t, x_v), load(y_t, y_v))
            else:
                out = builder.fadd(load(x_t, x_v), builder.fmul(splat(s_v), load(y_t, y_v)))
            store = builder.store(out, pointer(dst_t, dst_v), align=ALIGNMENT)
            store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
            return context.get_dummy_value()

        return sig, codegen

    return block


@intrinsic
def _store_fence(typingctx):
    """Order this thread's non-temporal stores before what follows (sfence on x86-64)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if platform.machine() in ("x86_64", "AMD64"):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse.sfence")
            builder.call(fn, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


_copy_block = _streaming_block("copy")
_scale_block = _streaming_block("scale")
_add_block = _streaming_block("add")
_triad_block = _streaming_block("triad")


@njit(parallel=True, cache=CACHE.enabled)
def _first_touch(a, b, c, nthreads):
    nblocks = a.size // BLOCK
    for t in prange(nthreads):
        lo, hi = nblocks * t // nthreads * BLOCK, nblocks * (t + 1) // nthreads * BLOCK
        a_t, b_t, c_t = a[lo:hi], b[lo:hi], c[lo:hi]
        for i in range(a_t.size):
            a_t[i] = 1.0
            b_t[i] = 2.0
            c_t[i] = 0.0
    for i in range(nblocks * BLOCK, a.size):
        a[i] = 1.0
        b[i] = 2.0
        c[i] = 0.0


@njit(parallel=True, cache=CACHE.enabled)
def copy_plain(a, b, c, s, nthreads):
    nblocks = a.size // BLOCK
    for t in prange(nthreads):
        lo, hi = nblocks * t // nthreads * BLOCK, nblocks * (t + 1) // nthreads * BLOCK
        a_t, c_t = a[lo:hi], c[lo:hi]
        for i in range(a_t.size):
            c_t[i] = a_t[i]
    for i in range(nblocks * BLOCK, a.size):
        c[i] = a[i]


@njit(parallel=True, cache=CACHE.enabled)
def scale_plain(a, b, c, s, nthreads):
    nblocks = a.size // BLOCK
    for t in prange(nthreads):
        lo, hi = nblocks * t // nthreads * BLOCK, nblocks * (t + 1) // nthreads * BLOCK
        a_t, b_t, c_t = a[lo:hi], b[lo:hi], c[lo:hi]
        for i in range(a_t.size):
            b_t[i] = s * c_t[i]
    for i in range(nblocks * BLOCK, a.size):
        b[i] = s * c[i]


@njit(parallel=True, cache=CACHE.enabled)
def add_plain(a, b, c, s, nthreads):
    nblocks = a.size // BLOCK
    for t in prange(nthreads):
        lo, hi = nblocks * t // nthreads * BLOCK, nblocks * (t + 1) // nthreads * BLOCK
        a_t, b_t, c_t = a[lo:hi], b[lo:hi], c[lo:hi]
        for i in range(a_t.size):
            c_t[i] = a_t[i] + b_t[i]
    for i in range(nblocks * BLOCK, a.size):
        c[i] = a[i] + b[i]


@njit(parallel=True, cache=CACHE.enabled)
def triad_plain(a, b, c, s, nthreads):
    nblocks = a.size // BLOCK
    for t in prange(nthreads):
        lo, hi = nblocks * t // nthreads * BLOCK, nblocks * (t + 1) // nthreads * BLOCK
        a_t, b_t, c_t = a[lo:hi], b[lo:hi], c[lo:hi]
        for i in range(a_t.size):
            a_t[i] = b_t[i] + s * c_t[i]
    for i in range(nblocks * BLOCK, a.size):
        a[i] = b[i] + s * c[i]


@njit(parallel=True, cache=CACHE.enabled)
def copy_streaming(a, b, c, s, nthreads):
    nblocks = a.size // BLOCK
    for t in prange(nthreads):
        for k in range(nblocks * t // nthreads, nblocks * (t + 1) // nthreads):
            _copy_block(c, a, a, s, k * BLOCK)
        _store_fence()
    for i in range(nblocks * BLOCK, a.size):
        c[i] = a[i]


@njit(parallel=True, cache=CACHE.enabled)
def scale_streaming(a, b, c, s, nthreads):
    nblocks = a.size // BLOCK
    for t in prange(nthreads):
        for k in range(nblocks * t // nthreads, nblocks * (t + 1) // nthreads):
            _scale_block(b, c, c, s, k * BLOCK)
        _store_fence()
    for i in range(nblocks * BLOCK, a.size):
        b[i] = s * c[i]


@njit(parallel=True, cache=CACHE.enabled)
def add_streaming(a, b, c, s, nthreads):
    nblocks = a.size // BLOCK
    for t in prange(nthreads):
        for k in range(nblocks * t // nthreads, nblocks * (t + 1) // nthreads):
            _add_block(c, a, b, s, k * BLOCK)
        _store_fence()
    for i in range(nblocks * BLOCK, a.size):
        c[i] = a[i] + b[i]


@njit(parallel=True, cache=CACHE.enabled)
def triad_streaming(a, b, c, s, nthreads):
    nblocks = a.size // BLOCK
    for t in prange(nthreads):
        for k in range(nblocks * t // nthreads, nblocks * (t + 1) // nthreads):
            _triad_block(a, b, c, s, k * BLOCK)
        _store_fence()
    for i in range(nblocks * BLOCK, a.size):
        a[i] = b[i] + s * c[i]


def first_touch(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    """Write STREAM's initial values (a=1, b=2, c=0) from the threads that will run the kernels."""
    check_arrays(a, b, c)
    _first_touch(a, b, c, numba.get_num_threads())


_STREAM = {
    ("copy", "plain"): copy_plain,
    ("scale", "plain"): scale_plain,
    ("add", "plain"): add_plain,
    ("triad", "plain"): triad_plain,
    ("copy", "streaming"): copy_streaming,
    ("scale", "streaming"): scale_streaming,
    ("add", "streaming"): add_streaming,
    ("triad", "streaming"): triad_streaming,
}


def stream_kernel(kernel: str, stores: str):
    """The compiled kernel f(a, b, c, s) for one STREAM operation and store variant."""
    try:
        fn = _STREAM[(kernel, stores)]
    except KeyError:
        raise ValueError(f"unknown kernel {kernel!r} with {stores!r} stores") from None

    def run(a: np.ndarray, b: np.ndarray, c: np.ndarray, s: float = SCALAR) -> None:
        check_arrays(a, b, c)
        fn(a, b, c, s, numba.get_num_threads())

    run.__name__ = f"{kernel}_{stores}"
    return run


def check_arrays(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    """Streaming stores fault on unaligned addresses: refuse arrays they cannot take."""
    for name, arr in (("a", a), ("b", b), ("c", c)):
        if arr.dtype != np.float64 or arr.ndim != 1 or not arr.flags.c_contiguous or not arr.flags.writeable:
            raise ValueError(f"array {name} must be a writable, contiguous 1-d float64 array")
        if arr.size != a.size:
            raise ValueError("arrays a, b and c must have the same length")
        if arr.ctypes.data % ALIGNMENT:
            raise ValueError(f"array {name} is not {ALIGNMENT}-byte aligned")


def set_threads(n: int) -> None:
    numba.set_num_threads(n)


def get_threads() -> int:
    return numba.get_num_threads()


def max_threads() -> int:
    return numba.config.NUMBA_NUM_THREADS


def threading_layer() -> str:
    """numba's threading layer (omp, tbb or workqueue); known once a parallel kernel has run."""
    try:
        return numba.threading_layer()
    except ValueError:
        return "not started"


# One 64-byte line per hop: line k's first word holds the word index of the next line.
WORDS_PER_LINE = 8


def build_chase(nxt: np.ndarray, seed: int = 0) -> int:
    """Link the lines of `nxt` (uint64) into one random cycle through every line; return the start.

    A random order of all lines, each pointing at the next and the last at the first: a cyclic
    permutation, so a walk of n_lines hops visits every line once (Sattolo's property)."""
    n_lines = nxt.size // WORDS_PER_LINE
    if n_lines < 2:
        raise ValueError("a pointer chase needs at least 2 cache lines")
    order = np.random.default_rng(seed).permutation(n_lines).astype(np.uint64) * np.uint64(WORDS_PER_LINE)
    nxt[order] = np.roll(order, -1)
    return int(order[0])


@njit(cache=CACHE.enabled)
def _chase(nxt, start, hops):
    p = start
    for _ in range(hops):
        p = nxt[p]
    return p


def chase(nxt: np.ndarray, start: int, hops: int) -> int:
    """Follow `hops` dependent loads from `start`; return where the walk ended."""
    return int(_chase(nxt, np.uint64(start), np.int64(hops)))
