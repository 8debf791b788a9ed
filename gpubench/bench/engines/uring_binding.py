"""Loading the PyPI `liburing` binding, and what it reports about the kernel (the selftest).

The binding is native code that can kill the process (SIGILL on CPUs without the instructions a
wheel was built for), so gpubench imports it only after
`python -m gpubench.bench.engines.uring_binding selftest` succeeded in a child process (see
gpubench.probe.iouring). Named constants are not relied on: builds made with recent Cython lack
them, so the kernel's uapi numbers are used. The measuring loop is gpubench.bench.engines.uring.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator

# include/uapi/linux/io_uring.h, enum io_uring_op, in order
OPCODES = (
    "NOP READV WRITEV FSYNC READ_FIXED WRITE_FIXED POLL_ADD POLL_REMOVE SYNC_FILE_RANGE SENDMSG "
    "RECVMSG TIMEOUT TIMEOUT_REMOVE ACCEPT ASYNC_CANCEL LINK_TIMEOUT CONNECT FALLOCATE OPENAT CLOSE "
    "FILES_UPDATE STATX READ WRITE FADVISE MADVISE SEND RECV OPENAT2 EPOLL_CTL SPLICE "
    "PROVIDE_BUFFERS REMOVE_BUFFERS TEE SHUTDOWN RENAMEAT UNLINKAT MKDIRAT SYMLINKAT LINKAT MSG_RING "
    "FSETXATTR SETXATTR FGETXATTR GETXATTR SOCKET URING_CMD SEND_ZC SENDMSG_ZC READ_MULTISHOT WAITID "
    "FUTEX_WAIT FUTEX_WAKE FUTEX_WAITV FIXED_FD_INSTALL FTRUNCATE BIND LISTEN RECV_ZC EPOLL_WAIT "
    "READV_FIXED WRITEV_FIXED PIPE"
).split()

# IORING_FEAT_* bit order
FEATURES = (
    "SINGLE_MMAP NODROP SUBMIT_STABLE RW_CUR_POS CUR_PERSONALITY FAST_POLL POLL_32BITS "
    "SQPOLL_NONFIXED EXT_ARG NATIVE_WORKERS RSRC_TAGS CQE_SKIP LINKED_FILE REG_REG_RING "
    "RECVSEND_BUNDLE MIN_TIMEOUT RW_ATTR NO_IOWAIT"
).split()


def opcode_name(op: int) -> str:
    return OPCODES[op] if op < len(OPCODES) else f"OP_{op}"


def feature_names(mask: int) -> list[str]:
    return [FEATURES[i] if i < len(FEATURES) else f"BIT_{i}" for i in range(mask.bit_length()) if mask >> i & 1]


def load_liburing():
    """Import the binding. Its loader (dynamic_import) rewrites a cache file under the package's
    __pycache__ whenever it looks stale, without any locking: processes importing at the same
    moment remove the file under each other (FileNotFoundError), and a retried import then finds
    the loader marked as done and yields a bare module without the API. So gpubench's processes
    take turns (a lock file), and a failed or bare import is forgotten, loader mark included,
    and tried again."""
    loaded = sys.modules.get("liburing")
    if loaded is not None and hasattr(loaded, "io_uring"):
        return loaded
    with _import_turn():
        for attempt in range(8):
            try:
                import liburing

                if hasattr(liburing, "io_uring"):
                    return liburing
            except FileNotFoundError:
                pass
            _forget_liburing()
            time.sleep(0.02 * (attempt + 1))
        import liburing

    if not hasattr(liburing, "io_uring"):
        raise ImportError("the liburing binding loaded without its API (no io_uring)")
    return liburing


def _forget_liburing() -> None:
    for name in [m for m in sys.modules if m == "liburing" or m.startswith("liburing.")]:
        del sys.modules[name]
    try:
        from dynamic_import import check
    except ImportError:
        return
    called = getattr(check, "IMPORTER_CALLED", {})
    for path in [p for p in called if p.rstrip("/").endswith("/liburing")]:
        del called[path]


def own_directory() -> str | None:
    """gpubench's own directory for files that matter only while it runs (the import lock):
    $XDG_RUNTIME_DIR/gpubench, else $XDG_CACHE_HOME/gpubench (~/.cache/gpubench); None when
    neither can be made. (os.path only: this runs in the probe's child process, whose start-up
    every `gpubench probe` waits for.)"""
    home = os.path.expanduser("~")
    cache = os.path.join(home, ".cache") if home != "~" else None
    candidates = []
    for variable, fallback in (("XDG_RUNTIME_DIR", None), ("XDG_CACHE_HOME", cache)):
        value = os.environ.get(variable)
        base = value if value and os.path.isabs(value) else fallback
        if base is not None:
            candidates.append(os.path.join(base, "gpubench"))
    for directory in candidates:
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError:
            continue
        if os.access(directory, os.W_OK):
            return directory
    return None


@contextmanager
def _import_turn() -> Iterator[None]:
    """One gpubench process at a time imports the binding (an flock on a file in gpubench's own
    directory, see own_directory; without one, no turns)."""
    directory = own_directory()
    try:
        fd = os.open(os.path.join(directory, "liburing-import.lock"), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except (OSError, TypeError):  # TypeError: no directory
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def selftest() -> dict:
    """Load the binding, open a small ring, and report what the kernel supports."""
    liburing = load_liburing()
    binding_version = str(getattr(liburing, "__version__", "unknown"))
    ring = liburing.io_uring()
    rc = liburing.io_uring_queue_init(8, ring, 0)
    if rc < 0:
        return {"loaded": True, "ring": False, "errno": -rc, "version": binding_version}
    try:
        probe = liburing.io_uring_get_probe_ring(ring)
        try:
            last_op = int(probe.last_op)
            supported = [opcode_name(op) for op in range(last_op + 1) if liburing.io_uring_opcode_supported(probe, op)]
        finally:
            liburing.io_uring_free_probe(probe)
        features = int(ring.features)
    finally:
        liburing.io_uring_queue_exit(ring)
    return {
        "loaded": True,
        "ring": True,
        "version": binding_version,
        "last_op": last_op,
        "opcodes": supported,
        "features": features,
        "feature_names": feature_names(features),
    }


USAGE = "usage: python -m gpubench.bench.engines.uring_binding selftest (prints what the binding and kernel support, as JSON)"

if __name__ == "__main__":
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(USAGE)
        sys.exit(0)
    if sys.argv[1:] != ["selftest"]:
        sys.exit(USAGE)
    try:
        print(json.dumps(selftest()))
    except OSError as e:  # e.g. io_uring disabled: the ring cannot be created
        print(json.dumps({"loaded": True, "ring": False, "errno": e.errno, "error": str(e)}))
